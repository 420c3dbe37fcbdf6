#!/usr/bin/env bash
# The README's run command, from a fresh clone: installs the Debian packages, builds the
# pinned Kubernetes tools and Nutshell, starts the local control plane (hack/cluster.sh),
# `helm install`s Nutshell, runs the operator and the sidecar injector as local
# processes, deploys Bookinfo in a namespace labelled for injection, declares a Canary
# for reviews, ships reviews v2 (promoted) and a broken v3 (rolled back), and shows what
# a user would see. The steps are hack/lib/journey.sh's, which the end-to-end test
# (tests/integration/journey_test.sh) runs too.
#
#   hack/run.sh            set up and run (safe to re-run: each step is skipped when done)
#   hack/run.sh uninstall  delete the Canary and Bookinfo, `helm uninstall` Nutshell, stop
#                          the operator and the injector; the control plane keeps running
#   hack/run.sh down       the same, then stop the control plane too
#
# There is no container runtime here (kwok fakes the pods): the operator runs on this
# machine with a token of the chart's ServiceAccount, in local mode, and the injector
# from the files it writes (hack/lib/journey.sh says why and how).
#
# Environment: NUTSHELL_INJECTOR_PORT (19443), NUTSHELL_INJECTOR_METRICS_PORT (19090),
# NUTSHELL_OPERATOR_METRICS_PORT (19091); NUTSHELL_CANARY_NAMESPACE: the operator watches
# Canaries in that namespace only (default: every namespace, as the chart's operator);
# NUTSHELL_BUILD_DIR: where to build Nutshell (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${NUTSHELL_BUILD_DIR:-build}"
J_CANARY_NS="${NUTSHELL_CANARY_NAMESPACE:-}"
J_OPERATOR="${BUILD}/operator/nutshell-operator"
J_INJECTOR="${BUILD}/injector/nutshell-injector"
source hack/lib/journey.sh
source hack/lib/progress.sh

B="" R=""
[ -t 1 ] && B=$'\033[1m' && R=$'\033[0m'
TOTAL=12
N=0
step() {
  N=$((N + 1))
  printf '\n%s==> %d/%d %s%s\n' "${B}" "${N}" "${TOTAL}" "$*" "${R}"
}
# show COMMAND...: prints the command as typed, then runs it.
show() {
  printf '\n%s$ %s%s\n' "${B}" "$*" "${R}"
  "$@"
}

teardown() {
  local rc=0
  if hack/cluster.sh status >/dev/null 2>&1; then
    eval "$(hack/cluster.sh env)"
    journey_remove_canary
    journey_uninstall || rc=1
    if kubectl get namespace "${J_APP_NS}" >/dev/null 2>&1; then
      kubectl delete namespace "${J_APP_NS}" --wait=false
    fi
  else
    journey_stop_operator
    journey_stop_injector
  fi
  # What hack/run.sh started before it installed with Helm (state in NUTSHELL_STATE).
  j_stop "${NUTSHELL_STATE}/operator.pid" nutshell-operator
  j_stop "${NUTSHELL_STATE}/injector/injector.pid" nutshell-injector
  return "${rc}"
}

case "${1:-}" in
"") ;;
uninstall)
  teardown
  echo "Nutshell uninstalled. As after any helm uninstall, the CRDs stay (kubectl delete -f charts/nutshell/crds/)"
  echo "and so does the namespace nutshell-system (kubectl delete namespace nutshell-system)."
  exit 0
  ;;
down)
  teardown || true
  exec hack/cluster.sh down
  ;;
*)
  echo "usage: hack/run.sh [uninstall|down]" >&2
  exit 2
  ;;
esac

START=${SECONDS}
mkdir -p "${J_LOGS}"

step "Debian packages (hack/deps.sh)"
# sudo asks for the password here, not inside the hidden log.
[ "$(id -u)" -eq 0 ] || sudo -v
with_progress "${J_LOGS}/deps.log" '^deps:' bash hack/deps.sh || exit 1

step "Kubernetes tools (hack/tools.sh; the first build takes about 35 minutes, then cached in ${NUTSHELL_CACHE})"
with_progress "${J_LOGS}/tools.log" '^tools\.sh:' bash hack/tools.sh || exit 1

step "building nutshell-operator, nutshell-injector and the kubectl plugin (${BUILD}/)"
with_progress "${J_LOGS}/build.log" '(error|warning):' bash -c \
  "cmake -S . -B '${BUILD}' -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
   cmake --build '${BUILD}' -j$(nproc) --target nutshell-operator nutshell-injector kubectl-nutshell" || exit 1

step "local control plane (hack/cluster.sh up)"
with_progress "${J_LOGS}/cluster.log" '.' hack/cluster.sh up || exit 1
eval "$(hack/cluster.sh env)"
PLUGIN_DIR="$(cd "${BUILD}/plugin" && pwd)"
export PATH="${PLUGIN_DIR}:${PATH}"

step "Nutshell with Helm, into ${J_CP_NS}"
journey_install_chart || exit 1

step "nutshell-operator, as the chart's ServiceAccount (local mode: the webhook calls https://127.0.0.1:${J_INJ_PORT}/inject)"
journey_start_operator || exit 1

step "nutshell-injector on https://127.0.0.1:${J_INJ_PORT}, from the files the operator writes"
journey_start_injector || exit 1

step "the Mesh"
journey_wait_mesh_ready 120 || exit 1

step "Bookinfo in namespace ${J_APP_NS}, labelled for injection"
journey_deploy_bookinfo || exit 1
journey_wait_app 180 || exit 1

step "a Canary for reviews"
journey_apply_canary 120 || exit 1
journey_wait_app 120 || exit 1

step "ship reviews v2: the Canary moves traffic step by step, then promotes it"
if journey_v2_promoted; then
  echo "already done: reviews-primary runs ${J_V2_IMAGE}"
else
  journey_ship "${J_V2_IMAGE}" Succeeded 180 || exit 1
fi

step "ship a broken reviews v3 (the fake node keeps it unready): the Canary rolls it back"
if journey_broken_rolled_back; then
  echo "already done: the Canary rolled ${J_BROKEN_IMAGE} back"
else
  journey_ship "${J_BROKEN_IMAGE}" Failed 180 || exit 1
fi

printf '\n%s==> What you have (%d s)%s\n' "${B}" $((SECONDS - START)) "${R}"
show kubectl get meshes
show kubectl get pods -n "${J_APP_NS}"
show kubectl get deployments -n "${J_APP_NS}" \
  -o 'custom-columns=NAME:.metadata.name,READY:.status.readyReplicas,WANTED:.spec.replicas,IMAGE:.spec.template.spec.containers[0].image'
show kubectl get canaries -n "${J_APP_NS}"
show kubectl nutshell status reviews -n "${J_APP_NS}"
cat <<MSG

Every pod shows 2/2: the app and the nutshell-proxy sidecar, added by the injector
(nutshell-init ran first). The Mesh "default" is Ready. The Canary moved reviews v2
through its steps and promoted it: reviews-primary runs v2. The broken v3 never became
ready, so the Canary rolled it back after ${J_CANARY_DEADLINE} s: Failed, with reviews-primary untouched and
serving, and reviews (the Deployment you edit) scaled to 0. For the demo the Canary steps
every ${J_CANARY_INTERVAL} (the sample says 1m) with a deadline of ${J_CANARY_DEADLINE} s (the sample: 600).

Try it yourself:
  eval "\$(hack/cluster.sh env)"; export PATH="${PLUGIN_DIR}:\$PATH"
  kubectl -n ${J_APP_NS} set image deployment/reviews reviews=${J_V2_IMAGE%-v2:*}-v3:1.20.2
  kubectl -n ${J_APP_NS} get canaries -w
  kubectl nutshell status reviews -n ${J_APP_NS}
  kubectl get pod -n ${J_APP_NS} -l app=productpage -o jsonpath='{.items[0].spec.containers[*].name}'
  helm status ${J_RELEASE} -n ${J_CP_NS}
Logs: ${J_LOGS}/operator.log, ${J_LOGS}/injector.log

Tear down:  hack/run.sh uninstall   (helm uninstall; the control plane keeps running)
            hack/run.sh down        (and stop the control plane)
MSG
