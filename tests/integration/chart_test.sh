#!/usr/bin/env bash
# The Helm chart (charts/nutshell) and the manifests rendered from it.
#
# Without a cluster: `helm lint` (also --strict) is clean; `helm template` with the
# default values and with variants gives the objects it should (labels, pod security,
# least-privilege RBAC with no wildcard, the operator's flags as the operator itself
# documents them, the Mesh with the images of the values and only CRD fields, the
# pre-delete hook); bad values are refused by values.schema.json with the key's path;
# hack/render-manifests.sh --check finds manifests/install/ and the chart's crds/ in sync;
# every value is documented in docs/install.md.
#
# Against hack/cluster.sh's control plane: `helm install` into nutshell-system creates the
# CRDs, the RBAC, the operator Deployment and the Mesh "default". kwok "runs" the
# Deployment's pod without executing it, so the real operator runs here as a local
# process, in local mode (docs/operator.md), with a kubeconfig holding the token of the
# chart's ServiceAccount: the Mesh becoming Ready, a pod injected, and an upgrade that
# prunes the PodDisruptionBudget, all without one "forbidden" in its log, prove the RBAC
# sufficient; `kubectl auth can-i` shows what it does not allow. `helm upgrade` with
# changed values keeps the Mesh Ready. Uninstall: kwok also completes Job pods without
# running them, so the test does the kubelet's part for the pre-delete hook, as local mode
# does for the injector: it runs the hook Job's exact kubectl arguments with the token of
# the hook's own ServiceAccount, then `helm uninstall`; no webhook configuration, Mesh or
# RBAC is left, and a pod is created (uninjected) in the labelled namespace.
#
# Usage: chart_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector
#
# The cluster may be shared: the install waits (up to 5 min) until no Mesh exists, no
# webhook configuration nutshell-sidecar-injector, no live Lease nutshell-operator and no
# release in nutshell-system; it deletes the CRDs only if it installed them, and the
# namespace only if it created it.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USAGE="usage: chart_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector"
OPERATOR="${1:?${USAGE}}"
INJECTOR="${2:?${USAGE}}"
HELM="${NUTSHELL_BIN}/helm"
[ -x "${HELM}" ] || skip_all "no helm at ${HELM} (build it with hack/tools.sh)"
CHART="${ROOT}/charts/nutshell"
RELEASE=nutshell
NS=nutshell-system
MESH=default
WEBHOOK=nutshell-sidecar-injector
SA=nutshell-operator
CRDS=(meshes.nutshell.io canaries.nutshell.io)
APP_VERSION="$(sed -nE 's/^project\(nutshell VERSION ([^ )]+).*/\1/p' "${ROOT}/CMakeLists.txt")"

WORK="$(mktemp -d)"
# helm's and kubectl's caches and config in the work dir: nothing of the user's is
# read or written, and a stale discovery cache cannot hide the CRDs.
export HELM_CACHE_HOME="${WORK}/helm/cache" HELM_CONFIG_HOME="${WORK}/helm/config"
export HELM_DATA_HOME="${WORK}/helm/data" KUBECACHEDIR="${WORK}/kube-cache"

PREEXISTING=()
NS_CREATED=""
LEASE_PREEXISTING=""
CLUSTER_USED=""
INSTALLED=""
APPNS="chart-test-$$"
APPNS_CREATED=""
OP_PID=""
INJ_PID=""

stop_pid() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

cleanup() {
  local crd
  stop_pid "${INJ_PID}"
  if [ -n "${INSTALLED}" ]; then
    # Only after a failure: the Mesh's finalizer needs a running operator, which is
    # stopped (or has lost its RBAC) by now.
    if kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
      kubectl delete mesh.nutshell.io "${MESH}" --wait=false >/dev/null 2>&1
      kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"metadata":{"finalizers":null}}' \
        >/dev/null 2>&1
    fi
    "${HELM}" uninstall "${RELEASE}" -n "${NS}" --no-hooks --wait --timeout 60s >/dev/null 2>&1
    kubectl delete clusterrole,clusterrolebinding nutshell-cleanup --ignore-not-found >/dev/null 2>&1
    kubectl -n "${NS}" delete serviceaccount,job nutshell-cleanup --ignore-not-found >/dev/null 2>&1
  fi
  stop_pid "${OP_PID}"
  kubectl delete mutatingwebhookconfiguration "${WEBHOOK}" --ignore-not-found >/dev/null 2>&1
  if [ -n "${APPNS_CREATED}" ]; then
    kubectl delete namespace "${APPNS}" --wait=false --ignore-not-found >/dev/null 2>&1
  fi
  if [ -n "${NS_CREATED}" ]; then
    kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  elif [ -z "${LEASE_PREEXISTING}" ] && [ -n "${CLUSTER_USED}" ]; then
    kubectl -n "${NS}" delete lease nutshell-operator --ignore-not-found >/dev/null 2>&1
  fi
  if [ -n "${CLUSTER_USED}" ]; then
    for crd in "${CRDS[@]}"; do
      [[ " ${PREEXISTING[*]-} " == *" ${crd} "* ]] && continue
      kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
    done
  fi
  if [ "${FAILED}" -gt 0 ]; then
    local f
    for f in operator injector cleanup-hook; do
      [ -f "${WORK}/${f}.log" ] || continue
      echo "--- last lines of the ${f}'s log" >&2
      tail -25 "${WORK}/${f}.log" >&2
    done
  fi
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# Rendered-object checks, in Python (PyYAML): `checks.py MODE FILE [ARG]` prints
# "PASS|what" or "FAIL|what|why" lines, counted by py_checks.
cat >"${WORK}/checks.py" <<'PY'
import sys
import yaml

mode, path = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else ""
docs = [d for d in yaml.safe_load_all(open(path)) if d]
out = []

def check(ok, what, why=""):
    out.append(("PASS|" + what) if ok else ("FAIL|%s|%s" % (what, why)))

def of(kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]

def one(kind, name=None):
    found = of(kind, name)
    return found[0] if len(found) == 1 else None

def hooked(d):
    return "helm.sh/hook" in (d["metadata"].get("annotations") or {})

def main_docs():
    return [d for d in docs if not hooked(d)]

def container(dep):
    return dep["spec"]["template"]["spec"]["containers"][0]

NS = "nutshell-system"

if mode == "default":
    app_version = arg
    kinds = sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in main_docs())
    want = sorted(["ServiceAccount/nutshell-operator", "ClusterRole/nutshell-operator",
                   "ClusterRoleBinding/nutshell-operator", "Role/nutshell-operator",
                   "RoleBinding/nutshell-operator", "Deployment/nutshell-operator",
                   "Service/nutshell-operator", "Service/nutshell-operator-metrics",
                   "Mesh/default"])
    check(kinds == want, "default render: exactly the expected objects", "%s" % kinds)

    # Labels on every object, and on the pod template.
    bad = []
    for d in docs:
        l = d["metadata"].get("labels") or {}
        want_l = {"app.kubernetes.io/name": "nutshell", "app.kubernetes.io/instance": "nutshell",
                  "app.kubernetes.io/version": app_version, "app.kubernetes.io/part-of": "nutshell",
                  "app.kubernetes.io/managed-by": "Helm"}
        for k, v in want_l.items():
            if l.get(k) != v:
                bad.append("%s/%s %s=%r" % (d["kind"], d["metadata"]["name"], k, l.get(k)))
        if l.get("app.kubernetes.io/component") not in ("operator", "mesh", "cleanup"):
            bad.append("%s/%s has no component" % (d["kind"], d["metadata"]["name"]))
    check(not bad, "every object has the six app.kubernetes.io labels", "; ".join(bad[:5]))
    ns_bad = [d["metadata"]["name"] for d in docs
              if d["kind"] in ("ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "Job")
              and d["metadata"].get("namespace") != NS]
    check(not ns_bad, "namespaced objects are in the release namespace", ns_bad)
    cluster_bad = [d["metadata"]["name"] for d in docs
                   if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Mesh") and "namespace" in d["metadata"]]
    check(not cluster_bad, "cluster-scoped objects have no namespace", cluster_bad)

    dep = one("Deployment", "nutshell-operator")
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    tl = dep["spec"]["template"]["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    check(all(tl.get(k) == v for k, v in sel.items()) and tl.get("app.kubernetes.io/version") == app_version,
          "pod template carries the selector and the version labels", "%s vs %s" % (tl, sel))
    check(set(sel) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"},
          "selector has no label that changes across versions", sel)
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532
          and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          "pod securityContext: non-root 65532, seccomp RuntimeDefault", psc)
    check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
          and csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 65532
          and csc.get("capabilities") == {"drop": ["ALL"]} and not csc.get("privileged")
          and csc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          "container securityContext: read-only root, no escalation, drop ALL, nothing added", csc)
    check(pod.get("serviceAccountName") == "nutshell-operator" and pod.get("automountServiceAccountToken") is True,
          "operator pod runs as the chart's ServiceAccount with its token", pod.get("serviceAccountName"))
    check(c["image"] == "nutshell/operator:" + app_version and c["imagePullPolicy"] == "IfNotPresent",
          "operator image defaults to the appVersion tag", c["image"])
    args = c.get("args", [])
    for a in ("--namespace=nutshell-system", "--leader-elect=true", "--metrics-listen=0.0.0.0:9090",
              "--routes-listen=0.0.0.0:15010", "--log-level=info", "--log-format=json"):
        check(a in args, "operator arg " + a, args)
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports == {"metrics": 9090, "discovery": 15010},
          "container ports: metrics 9090, route discovery 15010", ports)
    # The injector points every sidecar at nutshell-operator.<ns>.svc:15010 (the Mesh
    # renders that name): the Service must have it, whatever the release is called.
    disc = [d for d in main_docs() if d["kind"] == "Service" and d["metadata"]["name"] == "nutshell-operator"]
    check(len(disc) == 1 and [(p["port"], p["targetPort"]) for p in disc[0]["spec"]["ports"]] == [(15010, "discovery")]
          and disc[0]["spec"]["selector"] == sel,
          "Service nutshell-operator: port 15010 to the operator pods' discovery port", disc)
    lp, rp = c.get("livenessProbe", {}).get("httpGet", {}), c.get("readinessProbe", {}).get("httpGet", {})
    check(lp == {"path": "/healthz", "port": "metrics"} and rp == {"path": "/readyz", "port": "metrics"},
          "probes: liveness /healthz, readiness /readyz on 9090", (lp, rp))
    r = c.get("resources", {})
    check(bool(r.get("requests", {}).get("cpu")) and bool(r.get("requests", {}).get("memory"))
          and bool(r.get("limits", {}).get("memory")), "operator has requests and a memory limit", r)

    svc = one("Service", "nutshell-operator-metrics")
    check(svc is not None and svc["spec"]["selector"] == sel and svc["spec"]["ports"][0]["targetPort"] == "metrics",
          "metrics Service selects the operator pods on port metrics", svc and svc["spec"])

    # RBAC: no wildcard, nothing that escalates, bindings to the right subject.
    wild, danger = [], []
    for d in of("ClusterRole") + of("Role"):
        for rule in d.get("rules", []):
            for k in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if any("*" in x for x in rule.get(k, [])):
                    wild.append("%s %s" % (d["metadata"]["name"], rule))
            if set(rule.get("verbs", [])) & {"escalate", "bind", "impersonate", "deletecollection"}:
                danger.append("%s %s" % (d["metadata"]["name"], rule))
            if "nonResourceURLs" in rule:
                danger.append("%s %s" % (d["metadata"]["name"], rule))
    check(not wild, "no wildcard in any RBAC rule", wild[:3])
    check(not danger, "no escalate/bind/impersonate/deletecollection/non-resource rule", danger[:3])

    def grants(role, group, resource):
        v = set()
        for rule in role.get("rules", []):
            if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
                v |= set(rule.get("verbs", []))
        return v
    cr, ro = one("ClusterRole", "nutshell-operator"), one("Role", "nutshell-operator")
    for res in ("secrets", "configmaps", "serviceaccounts", "namespaces", "nodes"):
        check(not grants(cr, "", res), "ClusterRole grants nothing on " + res, grants(cr, "", res))
    check(not grants(cr, "coordination.k8s.io", "leases"), "leases only in the namespace Role",
          grants(cr, "coordination.k8s.io", "leases"))
    check(not grants(cr, "rbac.authorization.k8s.io", "clusterroles") and
          not grants(cr, "rbac.authorization.k8s.io", "clusterrolebindings"),
          "ClusterRole grants nothing on RBAC objects")
    check(grants(cr, "nutshell.io", "meshes") == {"list", "watch", "patch"},
          "meshes: list, watch, patch (informer, finalizer)", grants(cr, "nutshell.io", "meshes"))
    check(grants(cr, "nutshell.io", "meshes/status") == {"update"}, "meshes/status: update",
          grants(cr, "nutshell.io", "meshes/status"))
    check(grants(cr, "", "events") == {"create", "patch"}, "events: create, patch",
          grants(cr, "", "events"))
    check(grants(ro, "", "secrets") == {"get", "list", "watch", "create", "patch", "delete"},
          "Role: secrets get/list/watch/create/patch/delete", grants(ro, "", "secrets"))
    lease_named = [r for r in ro["rules"] if "leases" in r.get("resources", []) and r.get("resourceNames")]
    check(lease_named and all(r["resourceNames"] == ["nutshell-operator"] and set(r["verbs"]) <= {"get", "update"}
                              for r in lease_named),
          "Lease get/update limited to the name nutshell-operator", lease_named)
    for b, kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        bd = one(b, "nutshell-operator")
        check(bd["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "nutshell-operator"}
              and bd["subjects"] == [{"kind": "ServiceAccount", "name": "nutshell-operator", "namespace": NS}],
              b + " binds the operator's ServiceAccount to its " + kind, bd)

    mesh = one("Mesh", "default")
    spec = mesh["spec"]
    check(mesh["apiVersion"] == "nutshell.io/v1alpha1", "Mesh apiVersion nutshell.io/v1alpha1", mesh["apiVersion"])
    check(spec["proxy"]["image"] == "nutshell/proxy:" + app_version
          and spec["injector"]["image"] == "nutshell/injector:" + app_version
          and spec["proxy"]["imagePullPolicy"] == "IfNotPresent",
          "Mesh images default to images.* at the appVersion", (spec["proxy"], spec["injector"]))
    check(spec["injector"]["failurePolicy"] == "Fail" and spec["injector"]["replicas"] == 2
          and spec["revision"] == "default", "Mesh defaults: failurePolicy Fail, 2 injectors, revision default")
    check("resources" not in spec["injector"], "an empty resources map is left out of the Mesh", spec["injector"])

    hooks = [d for d in docs if hooked(d)]
    check(sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in hooks) ==
          ["ClusterRole/nutshell-cleanup", "ClusterRoleBinding/nutshell-cleanup", "Job/nutshell-cleanup",
           "ServiceAccount/nutshell-cleanup"]
          and all(d["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete" for d in hooks),
          "pre-delete hook: ServiceAccount, ClusterRole, binding, Job")
    job = one("Job", "nutshell-cleanup")
    jc = container(job)
    check(jc["args"][:3] == ["delete", "meshes.nutshell.io", "default"] and "--wait=true" in jc["args"],
          "hook Job deletes the chart's Mesh and waits", jc["args"])
    jsc = jc.get("securityContext", {})
    check(jsc.get("readOnlyRootFilesystem") is True and jsc.get("runAsNonRoot") is True
          and jsc.get("capabilities") == {"drop": ["ALL"]}, "hook Job container is locked down too", jsc)
    hcr = one("ClusterRole", "nutshell-cleanup")
    check(hcr["rules"] == [{"apiGroups": ["nutshell.io"], "resources": ["meshes"], "resourceNames": ["default"],
                            "verbs": ["get", "list", "watch", "delete"]}],
          "hook ClusterRole: only the chart's Mesh", hcr["rules"])

elif mode == "args":
    # Every flag the Deployment passes is one that `nutshell-operator --help` documents.
    help_text = open(arg).read()
    args = container(one("Deployment"))["args"]
    missing = [a for a in args if a.split("=")[0] not in help_text]
    check(not missing and len(args) >= 5, "every operator arg is a flag of nutshell-operator --help", missing)

elif mode == "crd-fields":
    # The Mesh's spec uses only fields of the Mesh CRD (the API server would prune the rest
    # silently).
    crd = yaml.safe_load(open(arg))
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    unknown = []
    def walk(val, sch, where):
        if not isinstance(val, dict) or "properties" not in sch:
            return
        for k, v in val.items():
            if k not in sch["properties"]:
                unknown.append(where + "." + k)
            else:
                walk(v, sch["properties"][k], where + "." + k)
    walk(one("Mesh")["spec"], root, "spec")
    check(not unknown, "the Mesh spec has only Mesh CRD fields", unknown)

for line in out:
    print(line)
PY

# py_checks MODE FILE [ARG]: runs checks.py and counts its verdicts.
py_checks() {
  local st what why n=0
  while IFS='|' read -r st what why; do
    n=$((n + 1))
    if [ "${st}" = PASS ]; then pass "${what}"; else fail "${what}: ${why}"; fi
  done < <(python3 "${WORK}/checks.py" "$@" 2>&1 | sed 's/^Traceback.*/FAIL|checks.py crashed|see below/')
  [ "${n}" -gt 0 ] || fail "checks.py $1 gave no verdict"
}
# render [helm template args...]: the chart rendered as release nutshell in nutshell-system.
render() { "${HELM}" template "${RELEASE}" "${CHART}" -n "${NS}" "$@"; }
# q FILE PYTHON-EXPR: evaluates EXPR with `docs` (the objects of FILE) and prints it.
q() {
  python3 -c 'import sys, yaml; docs=[d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def one(k, n=None):
    return [d for d in docs if d["kind"] == k and (n is None or d["metadata"]["name"] == n)][0]
def names(k): return " ".join(sorted(d["metadata"]["name"] for d in docs if d["kind"] == k))
print(eval(sys.argv[2]))' "$1" "$2" 2>&1
}

START=${SECONDS}
python3 -c 'import yaml' 2>/dev/null || skip_all "python3 with PyYAML is needed (apt-get install python3-yaml)"

# ---------------------------------------------------------------- lint
out="$("${HELM}" lint "${CHART}" 2>&1)" && [[ "${out}" == *"0 chart(s) failed"* ]] &&
  pass "helm lint" || fail "helm lint: ${out}"
out="$("${HELM}" lint --strict "${CHART}" 2>&1)" && pass "helm lint --strict" || fail "helm lint --strict: ${out}"
out="$("${HELM}" lint --strict "${CHART}" --set mesh.create=false --set operator.replicas=3 \
  --set serviceAccount.create=false --set serviceAccount.name=mine 2>&1)" &&
  pass "helm lint --strict with other values" || fail "helm lint --strict (variant): ${out}"
check "Chart.yaml appVersion is the project version (${APP_VERSION})" \
  "$(sed -nE 's/^appVersion: *"?([^"]*)"?$/\1/p' "${CHART}/Chart.yaml")" "${APP_VERSION}"

# ---------------------------------------------------------------- template: defaults
if render >"${WORK}/default.yaml" 2>"${WORK}/err"; then
  pass "helm template with the default values"
  py_checks default "${WORK}/default.yaml" "${APP_VERSION}"
  "${OPERATOR}" --help >"${WORK}/operator-help.txt" 2>&1
  py_checks args "${WORK}/default.yaml" "${WORK}/operator-help.txt"
  py_checks crd-fields "${WORK}/default.yaml" "${ROOT}/manifests/crds/meshes.nutshell.io.yaml"
else
  fail "helm template: $(cat "${WORK}/err")"
fi
# Each RBAC rule has its reason: the line before every rule is a comment.
uncommented="$(awk '/^  - apiGroups:/ && prev !~ /^ *#/ {print FILENAME ":" NR} {prev=$0}' \
  "${CHART}/templates/rbac.yaml" "${CHART}/templates/cleanup.yaml")"
check "every RBAC rule has a comment saying why" "${uncommented}" ""

# ---------------------------------------------------------------- template: variants
f="${WORK}/v.yaml"
render --set mesh.create=false >"${f}"
check "mesh.create=false: no Mesh" "$(q "${f}" 'names("Mesh")')" ""
check "mesh.create=false: no cleanup hook" "$(q "${f}" 'names("Job")')" ""
render --set cleanup.enabled=false >"${f}"
check "cleanup.enabled=false: no hook Job" "$(q "${f}" 'names("Job")')" ""

render --set operator.replicas=3 --set operator.logLevel=debug --set operator.workers=4 >"${f}"
check "operator.replicas=3" "$(q "${f}" 'one("Deployment")["spec"]["replicas"]')" "3"
check "operator args follow the values" \
  "$(q "${f}" '" ".join(a for a in one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith(("--leader-elect", "--log-level", "--workers")))')" \
  "--leader-elect=true --log-level=debug --workers=4"
render --set operator.replicas=0 >"${f}" && check "operator.replicas=0 is allowed" \
  "$(q "${f}" 'one("Deployment")["spec"]["replicas"]')" "0"

render --set images.proxy.tag=9.9.9 --set images.injector.repository=reg.example/nutshell/injector \
  --set images.proxy.pullPolicy=Always \
  --set images.operator.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef >"${f}"
check "images.proxy.tag reaches the Mesh" "$(q "${f}" 'one("Mesh")["spec"]["proxy"]["image"]')" "nutshell/proxy:9.9.9"
check "images.proxy.pullPolicy reaches the Mesh" "$(q "${f}" 'one("Mesh")["spec"]["proxy"]["imagePullPolicy"]')" "Always"
check "images.injector.repository reaches the Mesh" "$(q "${f}" 'one("Mesh")["spec"]["injector"]["image"]')" \
  "reg.example/nutshell/injector:${APP_VERSION}"
check "images.operator.digest pins the operator image" \
  "$(q "${f}" 'one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]')" \
  "nutshell/operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
render --set mesh.spec.proxy.image=mirror.example/proxy:1 --set images.proxy.tag=9.9.9 >"${f}"
check "mesh.spec.proxy.image wins over images.proxy" "$(q "${f}" 'one("Mesh")["spec"]["proxy"]["image"]')" \
  "mirror.example/proxy:1"
render --set mesh.spec.injector.failurePolicy=Ignore --set mesh.spec.injector.replicas=3 \
  --set mesh.spec.proxy.logLevel=debug --set-string mesh.spec.traffic.excludeOutboundPorts=5432 >"${f}"
check "Mesh spec follows mesh.spec values" \
  "$(q "${f}" '"%s %s %s %s" % (one("Mesh")["spec"]["injector"]["failurePolicy"], one("Mesh")["spec"]["injector"]["replicas"], one("Mesh")["spec"]["proxy"]["logLevel"], one("Mesh")["spec"]["traffic"]["excludeOutboundPorts"])')" \
  "Ignore 3 debug 5432"

render --set serviceAccount.create=false --set serviceAccount.name=mine >"${f}"
check "serviceAccount.create=false: no ServiceAccount but the hook's" "$(q "${f}" 'names("ServiceAccount")')" "nutshell-cleanup"
check "bindings and pod use serviceAccount.name" \
  "$(q "${f}" '" ".join([one("ClusterRoleBinding", "nutshell-operator")["subjects"][0]["name"], one("RoleBinding")["subjects"][0]["name"], one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]])')" \
  "mine mine mine"

"${HELM}" template mesh "${CHART}" -n other >"${f}"
check "another release and namespace: names and --namespace follow" \
  "$(q "${f}" '" ".join([one("Deployment")["metadata"]["name"], one("Deployment")["metadata"]["namespace"], [a for a in one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--namespace")][0], one("ClusterRoleBinding", "mesh-nutshell-operator")["subjects"][0]["namespace"]])')" \
  "mesh-nutshell-operator other --namespace=other other"

render --set operator.metrics.service.enabled=false >"${f}"
check "metrics Service optional (the discovery Service stays)" "$(q "${f}" 'names("Service")')" "nutshell-operator"

render --set 'imagePullSecrets[0].name=regcred' --set operator.nodeSelector.disk=ssd \
  --set 'operator.tolerations[0].key=dedicated' --set 'operator.tolerations[0].operator=Exists' \
  --set operator.podAnnotations.team=mesh >"${f}"
check "imagePullSecrets, nodeSelector, tolerations, podAnnotations reach the pod" \
  "$(q "${f}" 'str([one("Deployment")["spec"]["template"]["spec"].get(k) for k in ("imagePullSecrets", "nodeSelector", "tolerations")] + [one("Deployment")["spec"]["template"]["metadata"].get("annotations")])')" \
  "[[{'name': 'regcred'}], {'disk': 'ssd'}, [{'key': 'dedicated', 'operator': 'Exists'}], {'team': 'mesh'}]"

# ---------------------------------------------------------------- schema: bad values refused
# refused WHAT WANT-IN-MESSAGE HELM-ARGS...: helm template fails, naming the problem.
refused() {
  local what="$1" want="$2"
  shift 2
  if out="$(render "$@" 2>&1 >/dev/null)"; then
    fail "${what}: accepted"
  elif [[ "${out}" == *"${want}"* ]]; then
    pass "${what} refused: $(grep -m1 -F -- "${want}" <<<"${out}" | sed 's/^ *//')"
  else
    fail "${what}: refused, but the message lacks '${want}': ${out}"
  fi
}
refused "log level verbose" "at '/operator/logLevel': value must be one of 'debug', 'info', 'warn', 'error'" \
  --set operator.logLevel=verbose
refused "log format yaml" "at '/operator/logFormat'" --set operator.logFormat=yaml
refused "failurePolicy Retry" "at '/mesh/spec/injector/failurePolicy': value must be one of 'Fail', 'Ignore'" \
  --set mesh.spec.injector.failurePolicy=Retry
refused "pullPolicy Sometimes" "at '/images/proxy/pullPolicy'" --set images.proxy.pullPolicy=Sometimes
refused "negative operator replicas" "at '/operator/replicas': minimum: got -1, want 0" --set operator.replicas=-1
refused "replicas as a word" "at '/operator/replicas': got string, want integer" --set-string operator.replicas=two
refused "zero injector replicas" "at '/mesh/spec/injector/replicas'" --set mesh.spec.injector.replicas=0
refused "resources not a map" "at '/operator/resources/requests'" --set operator.resources.requests=5
refused "a CPU that is no quantity" "at '/operator/resources/limits/cpu'" --set operator.resources.limits.cpu=lots
refused "an unknown resources key" "additional properties 'request' not allowed" --set operator.resources.request.cpu=1
refused "a misspelt top-level key" "additional properties 'opertor' not allowed" --set opertor.replicas=2
refused "a bad duration" "at '/mesh/spec/certificates/validity'" --set mesh.spec.certificates.validity=90days
refused "a tag given as a number" "at '/images/proxy/tag'" --set images.proxy.tag=1
refused "a malformed digest" "at '/images/operator/digest'" --set images.operator.digest=latest
refused "two replicas without leader election" "operator.leaderElect" \
  --set operator.replicas=2 --set operator.leaderElect=false
refused "no ServiceAccount at all" "serviceAccount.name is required" --set serviceAccount.create=false

# ---------------------------------------------------------------- rendered manifests, docs
if out="$(bash "${ROOT}/hack/render-manifests.sh" --check 2>&1)"; then
  pass "hack/render-manifests.sh --check: manifests/install/ and the chart's crds/ in sync"
else
  fail "hack/render-manifests.sh --check: ${out}"
fi
for crd in "${ROOT}"/manifests/crds/*.yaml; do
  cmp -s "${crd}" "${CHART}/crds/$(basename "${crd}")" && pass "chart crds/$(basename "${crd}") = manifests/crds/" ||
    fail "chart crds/$(basename "${crd}") differs from manifests/crds/"
done
inst="${ROOT}/manifests/install/nutshell.yaml"
check "manifests/install has no Helm hook (kubectl would run it at once)" "$(grep -c 'helm.sh/hook' "${inst}")" "0"
check "manifests/install makes the namespace" "$(q "${inst}" 'names("Namespace")')" "nutshell-system"
# Every value (maps expanded down to their leaves, a resources map counting as one) has a
# row in docs/install.md.
undocumented="$(python3 - "${CHART}/values.yaml" "${ROOT}/docs/install.md" <<'PY'
import sys, yaml
vals, doc = yaml.safe_load(open(sys.argv[1])), open(sys.argv[2]).read()
def leaves(v, p):
    if isinstance(v, dict) and v and not p.endswith("resources"):
        for k, x in v.items():
            yield from leaves(x, (p + "." if p else "") + k)
    else:
        yield p
print(" ".join(k for k in leaves(vals, "") if "`%s`" % k not in doc))
PY
)"
check "every value is documented in docs/install.md" "${undocumented}" ""

# ---------------------------------------------------------------- against the control plane
if ! "${ROOT}/hack/cluster.sh" status >/dev/null 2>&1; then
  if [ "${FAILED}" -eq 0 ]; then
    trap - EXIT
    rm -rf "${WORK}"
    echo "${PASSED} passed, 0 failed (without a cluster)"
    skip_all "no local control plane running for the install checks (start it with: hack/cluster.sh up)"
  fi
  exit 1
fi
eval "$("${ROOT}/hack/cluster.sh" env)"

# The control plane is someone else's while any of these holds.
busy_reason() {
  local meshes phase holder renew age
  meshes="$(kubectl get meshes.nutshell.io -o name 2>/dev/null | xargs)"
  [ -z "${meshes}" ] || { echo "Mesh in use: ${meshes}"; return; }
  kubectl get mutatingwebhookconfiguration "${WEBHOOK}" >/dev/null 2>&1 &&
    { echo "webhook configuration ${WEBHOOK} exists"; return; }
  phase="$(kubectl get namespace "${NS}" -o 'jsonpath={.status.phase}' 2>/dev/null)"
  [ "${phase}" != Terminating ] || { echo "namespace ${NS} is being deleted"; return; }
  for crd in "${CRDS[@]}"; do
    [ -z "$(kubectl get crd "${crd}" -o 'jsonpath={.metadata.deletionTimestamp}' 2>/dev/null)" ] ||
      { echo "CRD ${crd} is being deleted"; return; }
  done
  holder="$(kubectl -n "${NS}" get lease nutshell-operator -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null)"
  renew="$(kubectl -n "${NS}" get lease nutshell-operator -o 'jsonpath={.spec.renewTime}' 2>/dev/null)"
  if [ -n "${holder}" ] && [ -n "${renew}" ]; then
    age=$(($(date +%s) - $(date -d "${renew}" +%s)))
    [ "${age}" -gt 30 ] || { echo "Lease nutshell-operator held by ${holder}"; return; }
  fi
  [ -z "$("${HELM}" list -n "${NS}" -q 2>/dev/null)" ] || { echo "a Helm release in ${NS}"; return; }
}
deadline=$((SECONDS + 300))
said=""
while reason="$(busy_reason)" && [ -n "${reason}" ] && [ "${SECONDS}" -lt "${deadline}" ]; do
  [ -n "${said}" ] || echo "waiting for the control plane: ${reason}"
  said=1
  sleep 2
done
if [ -n "${reason}" ]; then
  if [ "${FAILED}" -eq 0 ]; then
    trap - EXIT
    cleanup
    echo "${PASSED} passed, 0 failed (before the install checks)"
    skip_all "the control plane stayed busy for 5 min (${reason}): not touching someone else's install"
  fi
  exit 1
fi

for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
kubectl get namespace "${NS}" >/dev/null 2>&1 || NS_CREATED=1
kubectl -n "${NS}" get lease nutshell-operator >/dev/null 2>&1 && LEASE_PREEXISTING=1
CLUSTER_USED=1
echo "static checks and waiting for the control plane: $((SECONDS - START)) s"

# --- install
T0=${SECONDS}
if out="$("${HELM}" install "${RELEASE}" "${CHART}" -n "${NS}" --create-namespace --wait --timeout 120s 2>&1)"; then
  INSTALLED=1
  pass "helm install into ${NS} ($((SECONDS - T0)) s)"
else
  INSTALLED=1 # whatever got made is cleaned up
  fail "helm install: ${out}"
  exit 1
fi
[[ "${out}" == *"kubectl label namespace"*"nutshell.io/inject=enabled"* ]] &&
  pass "NOTES tell how to label a namespace" || fail "NOTES lack the namespace label: ${out}"
for crd in "${CRDS[@]}"; do
  kubectl wait --for condition=Established "crd/${crd}" --timeout=30s >/dev/null 2>&1 &&
    pass "CRD ${crd} established" || fail "CRD ${crd} not established"
done
for o in "serviceaccount/${SA}" "role/${SA}" "rolebinding/${SA}" "deployment/${SA}" "service/${SA}-metrics"; do
  kubectl -n "${NS}" get "${o}" >/dev/null 2>&1 && pass "${o} created" || fail "${o} missing"
done
for o in "clusterrole/${SA}" "clusterrolebinding/${SA}"; do
  kubectl get "${o}" >/dev/null 2>&1 && pass "${o} created" || fail "${o} missing"
done
check "Mesh ${MESH} created by the release" \
  "$(kubectl get mesh.nutshell.io "${MESH}" -o 'jsonpath={.metadata.labels.app\.kubernetes\.io/managed-by}' 2>&1)" "Helm"
check "operator Deployment available (kwok's pod, not executed)" \
  "$(kubectl -n "${NS}" get deployment "${SA}" -o 'jsonpath={.status.availableReplicas}')" "1"

# --- the real operator, with nothing but the chart's ServiceAccount token
# kubeconfig_for SA FILE: a kubeconfig with SA's token (in nutshell-system) and the
# current cluster's server and CA; shared with hack/run.sh's journey.
source "${ROOT}/hack/lib/kubeconfig.sh"
SAKC="${WORK}/operator.kubeconfig"
if kubeconfig_for "${SA}" "${SAKC}"; then pass "token for ServiceAccount ${SA}"; else fail "kubectl create token ${SA}"; exit 1; fi
check "the kubeconfig authenticates as the chart's ServiceAccount" \
  "$(kubectl --kubeconfig "${SAKC}" auth whoami -o 'jsonpath={.status.userInfo.username}' 2>&1)" \
  "system:serviceaccount:${NS}:${SA}"

OMPORT="$(free_port)"
IPORT="$(free_port)"
IMPORT="$(free_port)"
URL="https://127.0.0.1:${IPORT}/inject"
DIR="${WORK}/injector"
# Leader election on, as in the cluster, so that the Lease rules are exercised too.
POD_NAME="chart-test-$$" KUBECONFIG="" "${OPERATOR}" --kubeconfig "${SAKC}" --namespace "${NS}" \
  --leader-elect=true --metrics-listen "127.0.0.1:${OMPORT}" --routes-listen 127.0.0.1:0 --log-level debug --resync-period 5 \
  --webhook-url "${URL}" --local-injector-dir "${DIR}" >>"${WORK}/operator.log" 2>&1 &
OP_PID=$!
# The first refusal the operator logged, if any (for the messages of early failures).
first_forbidden() { grep -m1 -i forbidden "${WORK}/operator.log" | cut -c1-400; }
if wait_for 60 curl -fsS "http://127.0.0.1:${OMPORT}/readyz"; then
  pass "operator ready with the ServiceAccount's token (every informer listed)"
else
  fail "operator never became ready: $(first_forbidden)"
  exit 1
fi
if wait_for 30 test -s "${DIR}/tls.crt"; then
  pass "operator wrote the injector's files"
else
  fail "no ${DIR}/tls.crt: $(first_forbidden)"
  exit 1
fi
"${INJECTOR}" serve --listen "127.0.0.1:${IPORT}" --metrics-listen "127.0.0.1:${IMPORT}" \
  --tls-cert "${DIR}/tls.crt" --tls-key "${DIR}/tls.key" --config "${DIR}/config.json" \
  >>"${WORK}/injector.log" 2>&1 &
INJ_PID=$!
wait_for 30 curl -fsS "http://127.0.0.1:${IMPORT}/readyz" && pass "injector ready" || fail "injector not ready"

mesh_field() { kubectl get mesh.nutshell.io "${MESH}" -o "jsonpath=$1" 2>/dev/null; }
mesh_ready() {
  [ "$(mesh_field '{.status.phase}')" = Ready ] &&
    [ "$(mesh_field '{.status.observedGeneration}')" = "$(mesh_field '{.metadata.generation}')" ]
}
if wait_for 90 mesh_ready; then pass "Mesh ${MESH} Ready"; else fail "Mesh not Ready: $(mesh_field '{.status}')"; fi
check "the operator holds the Lease" \
  "$(kubectl -n "${NS}" get lease nutshell-operator -o 'jsonpath={.spec.holderIdentity}' 2>&1)" "chart-test-$$"
check "the Mesh's images are the chart's" "$(mesh_field '{.spec.proxy.image} {.spec.injector.image}')" \
  "nutshell/proxy:${APP_VERSION} nutshell/injector:${APP_VERSION}"
check "the injector Deployment uses the chart's injector image" \
  "$(kubectl -n "${NS}" get deployment nutshell-injector -o 'jsonpath={.spec.template.spec.containers[0].image}')" \
  "nutshell/injector:${APP_VERSION}"
check "the operator recorded the Event Ready" \
  "$(kubectl get events -A --field-selector "involvedObject.uid=$(mesh_field '{.metadata.uid}'),reason=Ready" -o name | wc -l | tr -d ' ')" "1"

kubectl create namespace "${APPNS}" >/dev/null && APPNS_CREATED=1
kubectl label namespace "${APPNS}" nutshell.io/inject=enabled >/dev/null
wait_for 30 kubectl -n "${APPNS}" get serviceaccount default
make_pod() {
  kubectl -n "${APPNS}" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  containers:
  - {name: app, image: nginx:1.27}
YAML
}
pod_containers() { kubectl -n "${APPNS}" get pod "$1" -o 'jsonpath={.spec.containers[*].name}' 2>&1; }
if out="$(make_pod before 2>&1)"; then pass "pod created in a labelled namespace"; else fail "pod refused: ${out}"; fi
check "pod injected through the chart's Mesh" "$(pod_containers before)" "app nutshell-proxy"

# --- what the ServiceAccount may not do (and a few things it may)
AS="system:serviceaccount:${NS}:${SA}"
# can NAMESPACE-FLAGS... VERB RESOURCE: kubectl auth can-i as the operator.
can() { kubectl auth can-i --as "${AS}" "$@" 2>/dev/null; }
# Word-split on purpose, with globbing off for "* *". RESOURCE/NAME is one object.
set -f
for c in "list secrets -A" "get secrets -n default" "list configmaps -A" "delete namespaces" \
  "create clusterrolebindings" "escalate clusterroles" "bind clusterroles" "impersonate serviceaccounts" \
  "create pods -n default" "delete pods -A" "list nodes" "update meshes" "delete meshes" \
  "create leases -n default" "update leases/someone-else -n ${NS}" \
  "create serviceaccounts --subresource=token -n ${NS}" "update canaries --subresource=scale -A" \
  "create secrets -n default" "* *"; do
  # shellcheck disable=SC2086
  check "the operator may not: ${c}" "$(can ${c})" "no"
done
for c in "list secrets -n ${NS}" "patch mutatingwebhookconfigurations" "update meshes --subresource=status" \
  "create events -n default" "update leases/nutshell-operator -n ${NS}" "list canaries -A" "patch pods -A"; do
  # shellcheck disable=SC2086
  check "the operator may: ${c}" "$(can ${c})" "yes"
done
set +f

# --- upgrade with changed values: one injector (the PodDisruptionBudget is pruned),
# debug logging; the Mesh follows and stays Ready
check "PodDisruptionBudget exists with 2 injectors" \
  "$(kubectl -n "${NS}" get pdb nutshell-injector -o name 2>&1)" "poddisruptionbudget.policy/nutshell-injector"
gen="$(mesh_field '{.metadata.generation}')"
if out="$("${HELM}" upgrade "${RELEASE}" "${CHART}" -n "${NS}" --set mesh.spec.injector.replicas=1 \
  --set operator.logLevel=debug --wait --timeout 120s 2>&1)"; then
  pass "helm upgrade with changed values"
else
  fail "helm upgrade: ${out}"
fi
check "release at revision 2" "$("${HELM}" status "${RELEASE}" -n "${NS}" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" "2"
[ "$(mesh_field '{.metadata.generation}')" -gt "${gen}" ] && pass "the upgrade changed the Mesh's spec" ||
  fail "Mesh generation still ${gen}"
if wait_for 60 mesh_ready; then pass "Mesh Ready after the upgrade"; else fail "Mesh not Ready after the upgrade: $(mesh_field '{.status}')"; fi
wait_for 30 bash -c "[ \"\$(kubectl -n ${NS} get deployment nutshell-injector -o 'jsonpath={.spec.replicas}')\" = 1 ]" &&
  pass "injector Deployment scaled to 1 by the operator" || fail "injector replicas not 1"
wait_for 30 bash -c "! kubectl -n ${NS} get pdb nutshell-injector" &&
  pass "PodDisruptionBudget pruned (delete allowed by the Role)" || fail "PodDisruptionBudget still there"
check "operator Deployment args follow the upgrade" \
  "$(kubectl -n "${NS}" get deployment "${SA}" -o 'jsonpath={.spec.template.spec.containers[0].args}' | grep -o -- '--log-level=[a-z]*')" \
  "--log-level=debug"
if out="$(make_pod after-upgrade 2>&1)"; then pass "pod created after the upgrade"; else fail "pod refused: ${out}"; fi
check "pod injected after the upgrade" "$(pod_containers after-upgrade)" "app nutshell-proxy"

# --- uninstall: first the pre-delete hook, run here as its kubelet would
"${HELM}" get hooks "${RELEASE}" -n "${NS}" >"${WORK}/hooks.yaml"
python3 - "${WORK}/hooks.yaml" "${WORK}/hook-rbac.yaml" "${WORK}/hook-args" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
yaml.safe_dump_all([d for d in docs if d["kind"] != "Job"], open(sys.argv[2], "w"))
job = [d for d in docs if d["kind"] == "Job"][0]
open(sys.argv[3], "w").write("\n".join(job["spec"]["template"]["spec"]["containers"][0]["args"]) + "\n")
PY
mapfile -t HOOK_ARGS <"${WORK}/hook-args"
check "the release's pre-delete hook deletes the Mesh" "${HOOK_ARGS[*]:0:3}" "delete meshes.nutshell.io ${MESH}"
kubectl apply -f "${WORK}/hook-rbac.yaml" >/dev/null
HOOKKC="${WORK}/hook.kubeconfig"
kubeconfig_for nutshell-cleanup "${HOOKKC}" || fail "no token for nutshell-cleanup"
forbidden_before="$(grep -ci forbidden "${WORK}/operator.log")"
T0=${SECONDS}
if KUBECONFIG="${HOOKKC}" timeout 150 kubectl "${HOOK_ARGS[@]}" >"${WORK}/cleanup-hook.log" 2>&1; then
  pass "the hook's command, as the hook's ServiceAccount, deleted the Mesh and waited ($((SECONDS - T0)) s)"
else
  fail "the hook's command failed: $(cat "${WORK}/cleanup-hook.log")"
fi
check "Mesh gone" "$(kubectl get mesh.nutshell.io "${MESH}" -o name 2>/dev/null)" ""
check "webhook configuration removed by the operator's finalizer" \
  "$(kubectl get mutatingwebhookconfiguration "${WEBHOOK}" -o name 2>/dev/null)" ""
check "no 'forbidden' in the operator's log, install to Mesh deletion" "${forbidden_before}" "0"
wait_for 60 bash -c "! kubectl -n ${NS} get deployment nutshell-injector" &&
  pass "the Mesh's objects garbage-collected" || fail "injector Deployment still there"
grep -ci forbidden "${WORK}/cleanup-hook.log" >/dev/null && fail "forbidden in the hook's output" ||
  pass "no 'forbidden' in the hook's output"

# In a cluster the operator's pod would get SIGTERM now; stopped first here, it
# releases its Lease while its RBAC still exists.
stop_pid "${OP_PID}"
OP_PID=""
check "the operator released the Lease on SIGTERM" \
  "$(kubectl -n "${NS}" get lease nutshell-operator -o 'jsonpath={.spec.holderIdentity}' 2>&1)" ""
T0=${SECONDS}
if out="$("${HELM}" uninstall "${RELEASE}" -n "${NS}" --wait --timeout 120s 2>&1)"; then
  INSTALLED=""
  pass "helm uninstall ($((SECONDS - T0)) s)"
else
  fail "helm uninstall: ${out}"
fi
check "no webhook configuration left" "$(kubectl get mutatingwebhookconfiguration "${WEBHOOK}" -o name 2>/dev/null)" ""
check "no Mesh left" "$(kubectl get meshes.nutshell.io -o name 2>/dev/null)" ""
check "no cluster RBAC left" "$(kubectl get clusterrole,clusterrolebinding "${SA}" nutshell-cleanup -o name 2>/dev/null)" ""
check "nothing of the release left in ${NS}" \
  "$(kubectl -n "${NS}" get serviceaccount,role,rolebinding,deployment,service,job -l app.kubernetes.io/instance=${RELEASE} -o name 2>/dev/null)" ""
check "no release left" "$("${HELM}" list -n "${NS}" -q)" ""
if out="$(make_pod after-uninstall 2>&1)"; then
  pass "pod created in the labelled namespace after helm uninstall"
else
  fail "pod creation blocked after helm uninstall: ${out}"
fi
check "that pod is not injected" "$(pod_containers after-uninstall)" "app"
