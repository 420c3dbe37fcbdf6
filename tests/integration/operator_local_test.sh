#!/usr/bin/env bash
# The operator's local mode (docs/operator.md): nutshell-operator runs out of cluster with
# --webhook-url and --local-injector-dir, and nutshell-injector runs on this machine from
# the files the operator writes, as a kubelet would run it from the mounted Secret and
# ConfigMap. The Mesh reaches Ready; a pod in a labelled namespace is injected through the
# webhook configuration the operator wrote (clientConfig.url); the files match the
# Secret and the ConfigMap; deleting the Mesh removes the webhook configuration, after
# which pods are created uninjected (and not blocked).
#
# Usage: operator_local_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector
#        (needs: hack/cluster.sh up)
#
# Not covered here: rotation through the files, which operator_rotation_test.sh exercises
# with lifetimes in seconds.
#
# The cluster may be shared: the test refuses to run next to an existing Mesh "default"
# or webhook configuration nutshell-sidecar-injector (hack/run.sh's), deletes the CRDs
# only if it installed them, and nutshell-system only if it created it.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USAGE="usage: operator_local_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector"
OPERATOR="${1:?${USAGE}}"
INJECTOR="${2:?${USAGE}}"
require_cluster
MESH=default
WEBHOOK=nutshell-sidecar-injector
if kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
  skip_all "a Mesh named ${MESH} already exists in this cluster; not touching someone else's install"
fi
if kubectl get mutatingwebhookconfiguration "${WEBHOOK}" >/dev/null 2>&1; then
  skip_all "webhook configuration ${WEBHOOK} exists (hack/run.sh?); not touching someone else's install"
fi

WORK="$(mktemp -d)"
export KUBECACHEDIR="${WORK}/kube-cache" # a stale discovery cache would miss the CRDs
NS=nutshell-system
APPNS="operator-local-test-$$"
CRDS=(meshes.nutshell.io canaries.nutshell.io)
PREEXISTING=()
NS_CREATED=""
APPNS_CREATED=""
OP_PID=""
INJ_PID=""
OMPORT="$(free_port)"
IPORT="$(free_port)"
IMPORT="$(free_port)"
URL="https://127.0.0.1:${IPORT}/inject"
DIR="${WORK}/injector"

start_operator() {
  "${OPERATOR}" --leader-elect=false --metrics-listen "127.0.0.1:${OMPORT}" --routes-listen 127.0.0.1:0 \
    --resync-period 2 --webhook-url "${URL}" --local-injector-dir "${DIR}" \
    >>"${WORK}/operator.log" 2>&1 &
  OP_PID=$!
  wait_for 30 curl -fsS "http://127.0.0.1:${OMPORT}/readyz"
}
stop_pid() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

cleanup() {
  local crd
  if [ -n "${APPNS_CREATED}" ]; then
    kubectl delete namespace "${APPNS}" --wait=false --ignore-not-found >/dev/null 2>&1
  fi
  if kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
    [ -n "${OP_PID}" ] || start_operator
    kubectl delete mesh.nutshell.io "${MESH}" --timeout=30s >/dev/null 2>&1 ||
      kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"metadata":{"finalizers":null}}' \
        >/dev/null 2>&1
  fi
  stop_pid "${OP_PID}"
  OP_PID=""
  stop_pid "${INJ_PID}"
  INJ_PID=""
  kubectl delete mutatingwebhookconfiguration "${WEBHOOK}" --ignore-not-found >/dev/null 2>&1
  if [ -n "${NS_CREATED}" ]; then
    kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  fi
  for crd in "${CRDS[@]}"; do
    [[ " ${PREEXISTING[*]-} " == *" ${crd} "* ]] && continue
    kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  if [ "${FAILED}" -gt 0 ]; then
    local f
    for f in operator injector; do
      [ -f "${WORK}/${f}.log" ] || continue
      echo "--- last lines of the ${f}'s log" >&2
      tail -25 "${WORK}/${f}.log" >&2
    done
  fi
  rm -rf "${WORK}"
}

trap 'end_tests cleanup' EXIT

jp() { kubectl -n "${NS}" get "$1" -o "jsonpath=$2" 2>/dev/null; }
mesh_field() { jp "mesh.nutshell.io/${MESH}" "$1"; }
mesh_ready() {
  [ "$(mesh_field '{.status.phase}')" = Ready ] &&
    [ "$(mesh_field '{.status.observedGeneration}')" = "$(mesh_field '{.metadata.generation}')" ]
}
# secret_is KEY FILE: the Secret's KEY, decoded, is FILE's content.
secret_is() {
  jp secret/nutshell-injector-tls "{.data.${1//./\\.}}" | base64 -d | cmp -s - "$2"
}
# make_pod NAME: a pod in ${APPNS}; prints kubectl's error on failure.
make_pod() {
  kubectl -n "${APPNS}" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, labels: {app: $1}}
spec:
  containers:
  - {name: app, image: nginx:1.27, ports: [{containerPort: 80}]}
YAML
}
pod_field() { kubectl -n "${APPNS}" get pod "$1" -o "jsonpath=$2" 2>/dev/null; }

# --- flags
out="$("${OPERATOR}" --help)"
[[ "${out}" == *"--webhook-url"* && "${out}" == *"--local-injector-dir"* ]] &&
  pass "--help documents the local-mode flags" || fail "--help: ${out}"
"${OPERATOR}" --webhook-url http://127.0.0.1:1/inject >/dev/null 2>&1
check "--webhook-url without https:// exits 2" "$?" "2"

# --- CRDs and namespace
for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
kubectl apply -f "${ROOT}/manifests/crds/" >/dev/null
kubectl wait --for condition=Established crd/meshes.nutshell.io --timeout=60s >/dev/null
NS_CREATED="$(claim_namespace "${NS}")" || { fail "namespace ${NS}"; exit 1; }

# --- operator in local mode, then the injector from its files
if start_operator; then pass "operator ready"; else fail "operator never became ready"; exit 1; fi
kubectl apply -f "${ROOT}/manifests/samples/mesh-default.yaml" >/dev/null
if wait_for 60 test -s "${DIR}/tls.crt"; then
  pass "operator wrote the injector's files"
else
  fail "no ${DIR}/tls.crt: $(ls -l "${DIR}" 2>&1)"
  exit 1
fi
for f in tls.key ca.crt config.json; do
  [ -s "${DIR}/${f}" ] && pass "${f} written" || fail "${f} missing"
done
check "tls.key has mode 0600" "$(stat -c %a "${DIR}/tls.key")" "600"

"${INJECTOR}" serve --listen "127.0.0.1:${IPORT}" --metrics-listen "127.0.0.1:${IMPORT}" \
  --tls-cert "${DIR}/tls.crt" --tls-key "${DIR}/tls.key" --config "${DIR}/config.json" \
  >>"${WORK}/injector.log" 2>&1 &
INJ_PID=$!
if wait_for 30 curl -fsS "http://127.0.0.1:${IMPORT}/readyz"; then
  pass "injector ready on the operator's files"
else
  fail "injector never became ready"
  exit 1
fi

if wait_for 90 mesh_ready; then pass "Mesh reaches phase Ready"; else fail "Mesh not Ready: $(mesh_field '{.status}')"; fi

# --- the webhook configuration and the certificate
check "webhook configuration calls the URL (both webhooks)" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[*].clientConfig.url}')" "${URL} ${URL}"
check "webhook configuration has no service clientConfig" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[*].clientConfig.service}')" ""
check "webhook configuration keeps failurePolicy" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].failurePolicy}')" "Fail"
jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].clientConfig.caBundle}' | base64 -d >"${WORK}/bundle.pem"
cmp -s "${WORK}/bundle.pem" "${DIR}/ca.crt" && pass "caBundle is ca.crt" || fail "caBundle differs from ca.crt"
openssl x509 -in "${DIR}/tls.crt" -noout -checkip 127.0.0.1 2>/dev/null | grep -q 'does match' &&
  pass "serving certificate has IP SAN 127.0.0.1" || fail "serving certificate lacks IP SAN 127.0.0.1"
openssl verify -CAfile "${DIR}/ca.crt" "${DIR}/tls.crt" >/dev/null 2>&1 &&
  pass "ca.crt verifies tls.crt" || fail "ca.crt does not verify tls.crt"
served="$(openssl s_client -connect "127.0.0.1:${IPORT}" -servername 127.0.0.1 </dev/null 2>/dev/null |
  openssl x509 -noout -fingerprint -sha256 2>/dev/null)"
check "injector serves tls.crt" "${served}" "$(openssl x509 -in "${DIR}/tls.crt" -noout -fingerprint -sha256)"

# --- the files are the Secret and the ConfigMap
for k in tls.crt tls.key ca.crt; do
  secret_is "${k}" "${DIR}/${k}" && pass "${k} matches the Secret" || fail "${k} differs from the Secret"
done
jp configmap/nutshell-injector-config '{.data.config\.json}' >"${WORK}/config.json"
cmp -s "${WORK}/config.json" "${DIR}/config.json" && pass "config.json matches the ConfigMap" ||
  fail "config.json differs from the ConfigMap"
stamp="$(stat -c %Y.%i "${DIR}/tls.crt")"
sleep 3 # a resync or two (--resync-period 2)
check "unchanged content is not rewritten" "$(stat -c %Y.%i "${DIR}/tls.crt")" "${stamp}"

# --- injection through the operator's webhook configuration
kubectl create namespace "${APPNS}" >/dev/null && APPNS_CREATED=1
kubectl label namespace "${APPNS}" nutshell.io/inject=enabled >/dev/null
wait_for 30 kubectl -n "${APPNS}" get serviceaccount default
if out="$(make_pod injected 2>&1)"; then pass "pod created in a labelled namespace"; else fail "pod refused: ${out}"; fi
check "pod has nutshell-init" "$(pod_field injected '{.spec.initContainers[*].name}')" "nutshell-init"
check "pod has app and nutshell-proxy" "$(pod_field injected '{.spec.containers[*].name}')" "app nutshell-proxy"
[ -n "$(pod_field injected '{.metadata.annotations.nutshell\.io/status}')" ] &&
  pass "pod has the nutshell.io/status annotation" || fail "no nutshell.io/status annotation"
reviews="$(curl -fsS "http://127.0.0.1:${IMPORT}/metrics" |
  awk '/^nutshell_injector_reviews_total/ {n += $2} END {print n + 0}')"
[ "${reviews:-0}" -gt 0 ] && pass "the local injector answered the review" ||
  fail "the local injector counted no review"

# --- deleting the Mesh removes the webhook configuration; pods are no longer injected
if kubectl delete mesh.nutshell.io "${MESH}" --timeout=60s >/dev/null 2>&1; then
  pass "Mesh deleted"
else
  fail "Mesh deletion did not finish"
fi
if wait_for 30 bash -c "! kubectl get mutatingwebhookconfiguration ${WEBHOOK}"; then
  pass "webhook configuration removed with the Mesh"
else
  fail "webhook configuration still there"
fi
if out="$(make_pod plain 2>&1)"; then pass "pod creation not blocked after the Mesh is gone"; else fail "pod refused: ${out}"; fi
check "new pod is not injected" "$(pod_field plain '{.spec.containers[*].name}')" "app"
check "new pod has no init container" "$(pod_field plain '{.spec.initContainers[*].name}')" ""
