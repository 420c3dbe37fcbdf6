#!/usr/bin/env bash
# Smoke test of the integration-test cluster (hack/cluster.sh): a Ready fake node,
# a Deployment that becomes Ready pods, the pinned server version, and the API server
# dialling a `url:` webhook on 127.0.0.1. Leaves the cluster as it found it: stops it
# only if this script started it (so do not run it in parallel with other suites on a
# stopped cluster; hack/test.sh starts the cluster first).
set -euo pipefail

# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STARTED=0
NS="nutshell-smoke-$$"

# Like the other integration suites: exit 77 (CTest: skipped) with a reason when the
# cluster is not running and the tools are not built, rather than start a build that
# takes half an hour on a fresh machine.
if ! "${ROOT}/hack/cluster.sh" status >/dev/null 2>&1; then
  if [ "${NUTSHELL_SKIP_TOOLS:-0}" = 1 ] || [ ! -x "${NUTSHELL_BIN}/kube-apiserver" ]; then
    skip_all "cluster not running and Kubernetes tools not built (run hack/tools.sh)"
  fi
fi

cleanup() {
  if [ "${STARTED}" -eq 1 ]; then
    "${ROOT}/hack/cluster.sh" down >/dev/null 2>&1 || true
  elif [ -n "${KUBECONFIG:-}" ]; then
    # Someone else's cluster: remove only what this test created.
    kubectl delete namespace "${NS}" --wait=false >/dev/null 2>&1 || true
    kubectl delete validatingwebhookconfiguration "${NS}" >/dev/null 2>&1 || true
  fi
}
trap 'end_tests cleanup' EXIT

if "${ROOT}/hack/cluster.sh" status >/dev/null 2>&1; then
  echo "cluster already up; reusing it"
else
  "${ROOT}/hack/cluster.sh" up || { fail "hack/cluster.sh up (logs: ${NUTSHELL_STATE}/logs)"; exit 1; }
  STARTED=1
fi
eval "$("${ROOT}/hack/cluster.sh" env)"

# --- a Ready node
ready="$( (kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' || true) | grep -c '=True$' || true)"
if [ "${ready}" -ge 1 ]; then
  pass "kubectl get nodes shows ${ready} Ready node(s)"
else
  fail "no Ready node: $(kubectl get nodes --no-headers 2>&1 | tr '\n' ';')"
fi

# --- server version matches the pin (helm's kubeVersion checks read it)
versions="$(kubectl version -o json 2>/dev/null || true)"
server="$(jq -r '.serverVersion.gitVersion // empty' <<<"${versions}" 2>/dev/null || true)"
if [ "${server}" = "${KUBERNETES_VERSION}" ]; then
  pass "server version ${server}"
else
  fail "server version '${server}', want ${KUBERNETES_VERSION}"
fi
client="$(jq -r '.clientVersion.gitVersion // empty' <<<"${versions}" 2>/dev/null || true)"
if [ "${client}" = "${KUBERNETES_VERSION}" ]; then
  pass "kubectl version ${client}"
else
  fail "kubectl version '${client}', want ${KUBERNETES_VERSION}"
fi
helm_v="$(helm version --template '{{.Version}}' 2>/dev/null || true)"
if [ "${helm_v}" = "${HELM_VERSION}" ]; then
  pass "helm version ${helm_v}"
else
  fail "helm version '${helm_v}', want ${HELM_VERSION}"
fi

# --- a Deployment becomes 2 Ready pods (kwok fakes the containers)
kubectl create namespace "${NS}" >/dev/null || { fail "create namespace ${NS}"; exit 1; }
kubectl -n "${NS}" create deployment smoke --image=registry.k8s.io/pause:3.10 --replicas=2 >/dev/null \
  || { fail "create deployment"; exit 1; }
if kubectl -n "${NS}" rollout status deployment/smoke --timeout=60s >/dev/null 2>&1; then
  running="$(kubectl -n "${NS}" get pods -l app=smoke \
    -o jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | grep -c '^Running/True$' || true)"
  if [ "${running}" -eq 2 ]; then
    pass "deployment with 2 replicas has 2 Running, Ready pods"
  else
    fail "rollout finished but ${running}/2 pods Running and Ready"
  fi
else
  fail "deployment not ready in 60 s: $(kubectl -n "${NS}" get pods --no-headers 2>&1 | tr '\n' ';')"
fi

# --- the API server calls `url:` webhooks on 127.0.0.1 (nothing listens on the port,
# so the create must fail with the dial error; proves the call is attempted there)
port=29999
kubectl apply -f - >/dev/null <<EOF || { fail "create ValidatingWebhookConfiguration"; exit 1; }
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: ${NS}
webhooks:
- name: smoke.nutshell.test
  clientConfig:
    url: https://127.0.0.1:${port}/validate
    caBundle: $(base64 -w0 "${NUTSHELL_STATE}/pki/ca.crt")
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: ${NS}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
EOF
out=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  # The webhook configuration takes effect asynchronously; retry until it does.
  if out="$(kubectl -n "${NS}" create configmap smoke 2>&1)"; then
    kubectl -n "${NS}" delete configmap smoke >/dev/null 2>&1 || true
    sleep 0.5
    continue
  fi
  break
done
if grep -q "127.0.0.1:${port}" <<<"${out}"; then
  pass "API server dials url webhook at https://127.0.0.1:${port}"
else
  fail "webhook on 127.0.0.1:${port} was not called: ${out:-configmap create kept succeeding}"
fi
kubectl delete validatingwebhookconfiguration "${NS}" >/dev/null 2>&1 || true
kubectl delete namespace "${NS}" --wait=false >/dev/null 2>&1 || true
