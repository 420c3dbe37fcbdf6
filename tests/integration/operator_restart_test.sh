#!/usr/bin/env bash
# The operator survives a crash of the API server: with a Mesh Ready, kube-apiserver is
# killed and started again (hack/cluster.sh restart-apiserver, etcd keeps the data);
# the operator's watches must reconnect, so that a spec change afterwards is reconciled
# and a managed object deleted afterwards is put back.
#
# Usage: operator_restart_test.sh PATH/TO/nutshell-operator   (needs: hack/cluster.sh up)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPERATOR="${1:?usage: operator_restart_test.sh PATH/TO/nutshell-operator}"
require_cluster

WORK="$(mktemp -d)"
export KUBECACHEDIR="${WORK}/kube-cache" # a stale discovery cache would miss the CRDs
NS=nutshell-system
MESH=default
CRDS=(meshes.nutshell.io canaries.nutshell.io)
CREATED_CRDS=()
NS_CREATED=""
OP_PID=""
PORT="$(free_port)"

if kubectl get crd meshes.nutshell.io >/dev/null 2>&1 &&
  kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
  skip_all "a Mesh ${MESH} already exists on this cluster; not touching it"
fi

cleanup() {
  if [ -n "${OP_PID}" ] && kill -0 "${OP_PID}" 2>/dev/null; then
    # the operator is still running: it removes its finalizer on deletion
    kubectl delete mesh.nutshell.io "${MESH}" --timeout=30s >/dev/null 2>&1
    kill -TERM "${OP_PID}" 2>/dev/null
    wait "${OP_PID}" 2>/dev/null
  fi
  kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"metadata":{"finalizers":null}}' \
    >/dev/null 2>&1
  kubectl delete mesh.nutshell.io "${MESH}" --ignore-not-found --wait=false >/dev/null 2>&1
  kubectl delete mutatingwebhookconfiguration nutshell-sidecar-injector --ignore-not-found \
    >/dev/null 2>&1
  [ -z "${NS_CREATED}" ] || kubectl delete namespace "${NS}" --wait=false >/dev/null 2>&1
  local crd
  for crd in "${CREATED_CRDS[@]}"; do
    kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  [ "${FAILED}" -eq 0 ] || tail -20 "${WORK}/operator.log" >&2
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 || CREATED_CRDS+=("${crd}")
done
kubectl apply -f "${ROOT}/manifests/crds/" >/dev/null
kubectl wait --for=condition=Established crd/meshes.nutshell.io --timeout=30s >/dev/null
NS_CREATED="$(claim_namespace "${NS}")" || { fail "namespace ${NS}"; exit 1; }

"${OPERATOR}" --leader-elect=false --metrics-listen "127.0.0.1:${PORT}" --routes-listen 127.0.0.1:0 --log-level debug \
  >>"${WORK}/operator.log" 2>&1 &
OP_PID=$!
wait_for 30 curl -fsS "http://127.0.0.1:${PORT}/readyz" || fail "operator not ready"

mesh_field() { kubectl get mesh.nutshell.io "${MESH}" -o "jsonpath=$1" 2>/dev/null; }
mesh_ready() {
  [ "$(mesh_field '{.status.phase}')" = Ready ] &&
    [ "$(mesh_field '{.status.observedGeneration}')" = "$(mesh_field '{.metadata.generation}')" ]
}
replicas_are() {
  [ "$(kubectl -n "${NS}" get deployment nutshell-injector -o jsonpath='{.spec.replicas}')" = "$1" ]
}

kubectl apply -f "${ROOT}/manifests/samples/mesh-default.yaml" >/dev/null
if wait_for 60 mesh_ready; then pass "Mesh Ready before the crash"; else fail "Mesh not Ready"; fi

if "${ROOT}/hack/cluster.sh" restart-apiserver >"${WORK}/restart.log" 2>&1; then
  pass "kube-apiserver killed and started again"
else
  fail "restart-apiserver: $(tail -3 "${WORK}/restart.log")"
fi
check "the operator process survived" "$(kill -0 "${OP_PID}" 2>/dev/null && echo alive)" alive

kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"spec":{"injector":{"replicas":3}}}' \
  >/dev/null
if wait_for 60 replicas_are 3; then
  pass "a spec change after the crash reaches the Deployment"
else
  fail "Deployment replicas: $(kubectl -n "${NS}" get deployment nutshell-injector -o jsonpath='{.spec.replicas}')"
fi
if wait_for 60 mesh_ready; then
  pass "status follows: observedGeneration == generation, Ready"
else
  fail "Mesh status after the crash: phase=$(mesh_field '{.status.phase}') observed=$(mesh_field '{.status.observedGeneration}') generation=$(mesh_field '{.metadata.generation}')"
fi

kubectl -n "${NS}" delete service nutshell-injector --wait=true >/dev/null
if wait_for 60 kubectl -n "${NS}" get service nutshell-injector; then
  pass "a managed object deleted after the crash is put back (the watches reconnected)"
else
  fail "Service nutshell-injector not recreated"
fi
