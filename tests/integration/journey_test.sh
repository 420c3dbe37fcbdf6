#!/usr/bin/env bash
# The user journey end to end, non-interactively: the functions of hack/lib/journey.sh
# that the README's command (hack/run.sh) runs, step by step, each step asserted on what
# a user would see. Against hack/cluster.sh's control plane:
#   `helm install` into nutshell-system (release deployed, CRDs established); the real
#   nutshell-operator as a local process with the chart ServiceAccount's token, in local
#   mode, and nutshell-injector from the files it writes; the Mesh Ready; a labelled
#   namespace where every Bookinfo pod is injected (the app and nutshell-proxy, after
#   nutshell-init) and Ready; the reviews Canary Initialized (reviews-primary serving, the
#   apex Service reviews with ready endpoints); reviews v2 promoted with the weight moving
#   (Succeeded, the primary on v2, Promoted True); a broken v3 rolled back (Failed, the
#   primary still v2 with every replica ready and the only endpoints of the apex);
#   `kubectl nutshell status reviews` showing the phase; the Canary deleted; `helm
#   uninstall` (the pre-delete hook's command run as its ServiceAccount, since kwok runs
#   no Job) leaving no webhook configuration or Mesh, and a pod created, uninjected, in
#   the labelled namespace.
#
# Usage: journey_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector PATH/TO/kubectl-nutshell
#
# Its own state directory, ports, namespace and Lease identity: nothing of a user's
# hack/run.sh is read or written, and it refuses (skip) to run while hack/run.sh's
# install is there. nutshell-system, the release name and the Mesh are the product's
# own, shared with chart_test.sh and the operator tests: it waits (up to 5 min) until no
# Mesh, webhook configuration, live Lease or release has been there for 10 s, and cleans up
# everything it made, also after a failure.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USAGE="usage: journey_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector PATH/TO/kubectl-nutshell"
OPERATOR="${1:?${USAGE}}"
INJECTOR="${2:?${USAGE}}"
PLUGIN="${3:?${USAGE}}"
HELM="${NUTSHELL_BIN}/helm"
[ -x "${HELM}" ] || skip_all "no helm at ${HELM} (build it with hack/tools.sh)"
require_cluster

WORK="$(mktemp -d)"
# helm's and kubectl's caches and config in the work dir: nothing of the user's is
# read or written, and a stale discovery cache cannot hide the CRDs.
export HELM_CACHE_HOME="${WORK}/helm/cache" HELM_CONFIG_HOME="${WORK}/helm/config"
export HELM_DATA_HOME="${WORK}/helm/data" KUBECACHEDIR="${WORK}/kube-cache"
# kubectl finds the plugin on PATH, as a user's would.
mkdir -p "${WORK}/bin"
ln -s "$(cd "$(dirname "${PLUGIN}")" && pwd)/$(basename "${PLUGIN}")" "${WORK}/bin/kubectl-nutshell"
export PATH="${WORK}/bin:${PATH}"

J_STATE="${WORK}/state"
J_OPERATOR="${OPERATOR}"
J_INJECTOR="${INJECTOR}"
J_HELM="${HELM}"
J_APP_NS="journey-test-$$"
# The Canary controller watches the test's namespace only: on a shared cluster another
# suite's own operator may be running Canaries elsewhere (CI runs the suites one by one).
J_CANARY_NS="${J_APP_NS}"
J_IDENTITY="journey-test-$$"
J_TOKEN_DURATION=1h
# hack/run.sh's 30 s deadline leaves little room on a cluster busy with other suites (a
# controller-manager with a long queue is slow to roll a Deployment out); the broken
# version then takes 30 s longer to be rolled back.
J_CANARY_DEADLINE=60
J_INJ_PORT="$(free_port)"
J_INJ_METRICS_PORT="$(free_port)"
J_OP_METRICS_PORT="$(free_port)"
J_OP_ROUTES_PORT="$(free_port)"
# shellcheck source=../../hack/lib/journey.sh
source "${ROOT}/hack/lib/journey.sh"

CRDS=(meshes.nutshell.io canaries.nutshell.io)
PREEXISTING=()
NS_CREATED=""
LEASE_PREEXISTING=""
CLUSTER_USED=""
APPNS_USED=""

cleanup() {
  local crd
  if [ -n "${CLUSTER_USED}" ]; then
    # After a failure: the same teardown as the journey's, forcing what the operator
    # could not finish.
    journey_remove_canary >/dev/null 2>&1
    journey_uninstall >/dev/null 2>&1
    if [ -n "$(journey_release_status)" ]; then
      kubectl delete mesh.nutshell.io "${J_MESH}" --wait=false >/dev/null 2>&1
      kubectl patch mesh.nutshell.io "${J_MESH}" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
      "${HELM}" uninstall "${J_RELEASE}" -n "${J_CP_NS}" --no-hooks --wait --timeout 60s >/dev/null 2>&1
      kubectl delete clusterrole,clusterrolebinding "${J_FULLNAME}-cleanup" --ignore-not-found >/dev/null 2>&1
      kubectl -n "${J_CP_NS}" delete serviceaccount,job "${J_FULLNAME}-cleanup" --ignore-not-found >/dev/null 2>&1
    fi
    kubectl delete mutatingwebhookconfiguration "${J_WEBHOOK}" --ignore-not-found >/dev/null 2>&1
  fi
  journey_stop_operator >/dev/null
  journey_stop_injector >/dev/null
  if [ -n "${APPNS_USED}" ]; then
    kubectl delete namespace "${J_APP_NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  fi
  if [ -n "${NS_CREATED}" ]; then
    kubectl delete namespace "${J_CP_NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  elif [ -z "${LEASE_PREEXISTING}" ] && [ -n "${CLUSTER_USED}" ]; then
    kubectl -n "${J_CP_NS}" delete lease nutshell-operator --ignore-not-found >/dev/null 2>&1
  fi
  if [ -n "${CLUSTER_USED}" ]; then
    for crd in "${CRDS[@]}"; do
      [[ " ${PREEXISTING[*]-} " == *" ${crd} "* ]] && continue
      kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
    done
  fi
  if [ "${FAILED}" -gt 0 ]; then
    local f
    for f in operator injector; do
      [ -f "${J_LOGS}/${f}.log" ] || continue
      echo "--- last lines of the ${f} log" >&2
      tail -25 "${J_LOGS}/${f}.log" >&2
    done
  fi
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# --- never over a user's hack/run.sh
for p in "operator.pid nutshell-operator" "injector.pid nutshell-injector"; do
  read -r file bin <<<"${p}"
  if pid="$(j_running_pid "${JOURNEY_RUN_STATE}/${file}" "${bin}")"; then
    skip_all "hack/run.sh's ${bin} is running (pid ${pid}): not touching a user's install (hack/run.sh uninstall first)"
  fi
done
if [ -f "${JOURNEY_RUN_STATE}/installed" ] &&
  "${HELM}" status "${J_RELEASE}" -n "${J_CP_NS}" >/dev/null 2>&1; then
  skip_all "hack/run.sh's release ${J_RELEASE} is installed in ${J_CP_NS}: not touching a user's install (hack/run.sh uninstall first)"
fi

# --- wait until nutshell-system is nobody's (chart_test.sh and the operator suites use it)
busy_reason() {
  local meshes phase holder renew age crd
  meshes="$(kubectl get meshes.nutshell.io -o name 2>/dev/null | xargs)"
  [ -z "${meshes}" ] || { echo "Mesh in use: ${meshes}"; return; }
  kubectl get mutatingwebhookconfiguration "${J_WEBHOOK}" >/dev/null 2>&1 &&
    { echo "webhook configuration ${J_WEBHOOK} exists"; return; }
  phase="$(kubectl get namespace "${J_CP_NS}" -o 'jsonpath={.status.phase}' 2>/dev/null)"
  [ "${phase}" != Terminating ] || { echo "namespace ${J_CP_NS} is being deleted"; return; }
  for crd in "${CRDS[@]}"; do
    [ -z "$(kubectl get crd "${crd}" -o 'jsonpath={.metadata.deletionTimestamp}' 2>/dev/null)" ] ||
      { echo "CRD ${crd} is being deleted"; return; }
  done
  holder="$(kubectl -n "${J_CP_NS}" get lease nutshell-operator -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null)"
  renew="$(kubectl -n "${J_CP_NS}" get lease nutshell-operator -o 'jsonpath={.spec.renewTime}' 2>/dev/null)"
  if [ -n "${holder}" ] && [ -n "${renew}" ]; then
    age=$(($(date +%s) - $(date -d "${renew}" +%s)))
    [ "${age}" -gt 30 ] || { echo "Lease nutshell-operator held by ${holder}"; return; }
  fi
  [ -z "$("${HELM}" list -n "${J_CP_NS}" -q -a 2>/dev/null)" ] || { echo "a Helm release in ${J_CP_NS}"; return; }
}
# Free for 10 s in a row: a suite finishing removes its release and Mesh a few seconds
# before its namespace and CRDs, which an install in between would lose.
deadline=$((SECONDS + 300))
said=""
free_since=""
while :; do
  reason="$(busy_reason)"
  if [ -n "${reason}" ]; then
    free_since=""
    [ -n "${said}" ] || echo "waiting for the control plane: ${reason}"
    said=1
  else
    [ -n "${free_since}" ] || free_since=${SECONDS}
    [ $((SECONDS - free_since)) -lt 10 ] || break
  fi
  [ "${SECONDS}" -lt "${deadline}" ] || break
  sleep 1
done
if [ -n "${reason}" ]; then
  skip_all "the control plane stayed busy for 5 min (${reason}): not touching someone else's install"
fi
for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
kubectl get namespace "${J_CP_NS}" >/dev/null 2>&1 || NS_CREATED=1
kubectl -n "${J_CP_NS}" get lease nutshell-operator >/dev/null 2>&1 && LEASE_PREEXISTING=1
CLUSTER_USED=1
JOURNEY_START=${SECONDS}

# step NAME COMMAND...: runs one journey step in this shell (it may set variables), its
# output indented; PASS, or FAIL and the end of the script, since the next steps build on
# this one.
step() {
  local what="$1" t0=${SECONDS} rc=0
  shift
  "$@" >"${WORK}/step.out" 2>&1 || rc=$?
  sed 's/^/    /' "${WORK}/step.out"
  if [ "${rc}" -eq 0 ]; then
    pass "${what} ($((SECONDS - t0)) s)"
  else
    fail "${what}"
    exit 1
  fi
}
app() { kubectl -n "${J_APP_NS}" "$@" 2>&1; }
cfield() { app get canary.nutshell.io reviews -o "jsonpath=$1"; }
dfield() { app get deployment "$1" -o "jsonpath=$2"; }
# The apex Service's ready endpoints, as "POD_NAME ..." sorted.
apex_ready_pods() {
  app get endpointslices -l kubernetes.io/service-name=reviews -o json |
    jq -r '[.items[].endpoints[]? | select(.conditions.ready == true) | .targetRef.name] | sort | join(" ")'
}

# --- 1. helm install
step "helm install ${J_RELEASE} charts/nutshell -n ${J_CP_NS} --create-namespace" journey_install_chart
check "the release is deployed" "$(journey_release_status)" "deployed"
for crd in "${CRDS[@]}"; do
  kubectl wait --for condition=Established "crd/${crd}" --timeout=30s >/dev/null 2>&1 &&
    pass "CRD ${crd} established" || fail "CRD ${crd} not established"
done

# --- 2. the operator and the injector, local processes
step "nutshell-operator started with the chart ServiceAccount's token, both controllers" journey_start_operator
check "the operator authenticates as the chart's ServiceAccount" \
  "$(kubectl --kubeconfig "${J_STATE}/operator.kubeconfig" auth whoami -o 'jsonpath={.status.userInfo.username}' 2>&1)" \
  "system:serviceaccount:${J_CP_NS}:${J_SA}"
step "nutshell-injector started from the operator's files" journey_start_injector

# --- 3. the Mesh
step "Mesh ${J_MESH} Ready" journey_wait_mesh_ready 120
check "the webhook calls the local injector" \
  "$(kubectl get mutatingwebhookconfiguration "${J_WEBHOOK}" -o 'jsonpath={.webhooks[0].clientConfig.url}' 2>&1)" \
  "https://127.0.0.1:${J_INJ_PORT}/inject"

# --- 4. Bookinfo, injected
APPNS_USED=1
step "namespace ${J_APP_NS} labelled, Bookinfo applied" journey_deploy_bookinfo
step "every Bookinfo Deployment rolled out, every pod injected and Ready" journey_wait_app 180
pods="$(app get pods -o json | jq -r '.items[] | select(.metadata.deletionTimestamp == null) | .metadata.name')"
check "five Bookinfo pods (details, ratings, productpage, two reviews)" "$(echo "${pods}" | grep -c .)" "5"
for pod in ${pods}; do
  label="$(app get pod "${pod}" -o 'jsonpath={.metadata.labels.app}')"
  check "${pod}: containers ${label} and nutshell-proxy" \
    "$(app get pod "${pod}" -o 'jsonpath={.spec.containers[*].name}')" "${label} nutshell-proxy"
  check "${pod}: init container nutshell-init" \
    "$(app get pod "${pod}" -o 'jsonpath={.spec.initContainers[*].name}')" "nutshell-init"
done
check "kubectl get pods shows every pod 2/2 Running" \
  "$(app get pods --no-headers | awk '$2 != "2/2" || $3 != "Running"' | grep -v Terminating)" ""

# --- 5. the Canary
step "Canary reviews applied (interval ${J_CANARY_INTERVAL}) and initialized" journey_apply_canary 120
check "Canary phase Initialized" "$(cfield '{.status.phase}')" "Initialized"
check "the demo's interval applied" "$(cfield '{.spec.strategy.canary.interval}')" "${J_CANARY_INTERVAL}"
step "reviews-primary pods injected and Ready" journey_wait_app 120
check "reviews-primary serving v1 with 2 ready replicas" \
  "$(dfield reviews-primary '{.spec.template.spec.containers[0].image} {.status.readyReplicas}')" "${J_V1_IMAGE} 2"
check "reviews (the target) scaled to 0" "$(dfield reviews '{.spec.replicas}')" "0"
apex="$(apex_ready_pods)"
[[ "${apex}" =~ ^reviews-primary-[^\ ]+\ reviews-primary-[^\ ]+$ ]] &&
  pass "the apex Service reviews has the primary's 2 pods as ready endpoints" ||
  fail "apex Service reviews ready endpoints: '${apex}'"

# --- 6. v2, promoted
step "kubectl set image reviews v2: followed to Succeeded" journey_ship "${J_V2_IMAGE}" Succeeded 180
[ "${JOURNEY_MAX_WEIGHT}" -gt 0 ] && pass "the canary's weight moved during the rollout (up to ${JOURNEY_MAX_WEIGHT})" ||
  fail "kubectl get canaries -w never showed a weight above 0"
check "Canary Succeeded" "$(cfield '{.status.phase}')" "Succeeded"
check "the primary runs v2" "$(dfield reviews-primary '{.spec.template.spec.containers[0].image}')" "${J_V2_IMAGE}"
check "condition Promoted True" "$(cfield '{.status.conditions[?(@.type=="Promoted")].status}')" "True"
V2_REV="$(cfield '{.status.lastPromotedRevision}')"
check "lastPromotedRevision is the rolled out revision" "${V2_REV}" "$(cfield '{.status.currentRevision}')"

# --- 7. a broken version, rolled back
step "kubectl set image reviews v3-broken: followed to Failed" journey_ship "${J_BROKEN_IMAGE}" Failed 180
check "Canary Failed" "$(cfield '{.status.phase}')" "Failed"
[ -n "$(cfield '{.status.message}')" ] && pass "the Canary says why: $(cfield '{.status.message}')" ||
  fail "no status.message after the rollback"
check "the primary untouched: still v2" "$(dfield reviews-primary '{.spec.template.spec.containers[0].image}')" "${J_V2_IMAGE}"
check "lastPromotedRevision still v2's" "$(cfield '{.status.lastPromotedRevision}')" "${V2_REV}"
if wait_for 30 bash -c "[ \"\$(kubectl -n ${J_APP_NS} get deployment reviews-primary -o 'jsonpath={.status.readyReplicas}/{.spec.replicas}')\" = 2/2 ]"; then
  pass "the primary serves with all its replicas ready (2/2)"
else
  fail "reviews-primary ready/replicas: $(dfield reviews-primary '{.status.readyReplicas}/{.spec.replicas}')"
fi
check "the broken canary scaled to 0 by the operator" "$(dfield reviews '{.spec.replicas}')" "0"
if wait_for 60 bash -c "[ \"\$(kubectl -n ${J_APP_NS} get deployment reviews -o 'jsonpath={.status.replicas}')\" = '' ] || [ \"\$(kubectl -n ${J_APP_NS} get deployment reviews -o 'jsonpath={.status.replicas}')\" = 0 ]"; then
  pass "and its pods gone"
else
  fail "reviews pods left: $(dfield reviews '{.status.replicas}')"
fi
apex="$(apex_ready_pods)"
[[ "${apex}" =~ ^reviews-primary-[^\ ]+\ reviews-primary-[^\ ]+$ ]] &&
  pass "the apex Service's ready endpoints are the primary's 2 pods only" ||
  fail "apex Service reviews ready endpoints: '${apex}'"

# --- 8. the plugin
out="$(kubectl nutshell status reviews -n "${J_APP_NS}" 2>&1)"
[[ "${out}" == *Failed* ]] && pass "kubectl nutshell status reviews shows the phase Failed" ||
  fail "kubectl nutshell status reviews: ${out}"

# --- 9. tear down
step "Canary deleted (the operator handles its finalizer)" journey_remove_canary
check "no Canary left" "$(app get canaries.nutshell.io -o name)" ""
check "reviews has its replicas back, on v2" \
  "$(dfield reviews '{.status.readyReplicas}/{.spec.replicas} {.spec.template.spec.containers[0].image}')" "2/2 ${J_V2_IMAGE}"
# The garbage collector removes it once the Canary is gone: a moment later.
if wait_for 30 bash -c "! kubectl -n '${J_APP_NS}' get deployment reviews-primary >/dev/null 2>&1"; then
  pass "reviews-primary is gone"
else fail "reviews-primary still there"; fi
reviews_serve() { [[ "$(apex_ready_pods)" =~ ^reviews-[0-9a-f]+-[^\ ]+\ reviews-[0-9a-f]+-[^\ ]+$ ]]; }
if wait_for 30 reviews_serve; then
  pass "the Service reviews still serves, from reviews' own 2 pods"
else
  fail "Service reviews ready endpoints after the Canary's deletion: '$(apex_ready_pods)'"
fi
step "helm uninstall (pre-delete hook's command as its ServiceAccount, operator and injector stopped)" journey_uninstall
check "no webhook configuration left" "$(kubectl get mutatingwebhookconfiguration "${J_WEBHOOK}" -o name 2>/dev/null)" ""
check "no Mesh left" "$(kubectl get meshes.nutshell.io -o name 2>/dev/null)" ""
check "no release left" "$("${HELM}" list -n "${J_CP_NS}" -q -a)" ""
check "operator and injector stopped" "$(journey_operator_pid)$(journey_injector_pid)" ""
if out="$(app run after-uninstall --image=nginx:1.27 --restart=Never 2>&1)"; then
  pass "a pod is created in the labelled namespace after helm uninstall"
else
  fail "pod creation blocked after helm uninstall: ${out}"
fi
check "that pod is not injected" "$(app get pod after-uninstall -o 'jsonpath={.spec.containers[*].name}')" "after-uninstall"
echo "the journey took $((SECONDS - JOURNEY_START)) s"
