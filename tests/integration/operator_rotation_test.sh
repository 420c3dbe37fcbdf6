#!/usr/bin/env bash
# Certificate rotation through the operator's local mode (docs/operator.md, "Certificate
# lifecycle"): nutshell-operator runs out of cluster with --webhook-url and
# --local-injector-dir, nutshell-injector runs from the files it writes, and a Mesh with
# lifetimes in seconds (caValidity 50s, validity 20s, renewBefore 10s) goes through a
# serving-certificate renewal (~10 s), a CA rotation (~20 s) and the previous CA leaving
# the bundle (~50 s, when it expires: what the local injector serves is not probed).
# Meanwhile a pod is created every second in a namespace labelled
# nutshell.io/inject=enabled with failurePolicy Fail: every one must be created and
# injected. Every check of the served certificate (openssl s_client) finds it equal to
# a tls.crt the operator wrote, unexpired, and issued by a CA in the live webhook
# caBundle.
#
# Usage: operator_rotation_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector
#        (needs: hack/cluster.sh up)
#
# The cluster may be shared: the test refuses to run next to an existing Mesh "default"
# or webhook configuration nutshell-sidecar-injector, deletes the CRDs only if it
# installed them, and nutshell-system only if it created it. Pods never run: they
# select no node.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USAGE="usage: operator_rotation_test.sh PATH/TO/nutshell-operator PATH/TO/nutshell-injector"
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
export KUBECACHEDIR="${WORK}/kube-cache"
NS=nutshell-system
APPNS="operator-rotation-test-$$"
CRDS=(meshes.nutshell.io canaries.nutshell.io)
PREEXISTING=()
NS_CREATED=""
APPNS_CREATED=""
OP_PID=""
INJ_PID=""
LOOP_PID=""
OMPORT="$(free_port)"
IPORT="$(free_port)"
IMPORT="$(free_port)"
URL="https://127.0.0.1:${IPORT}/inject"
DIR="${WORK}/injector"
LIMIT=180 # seconds for renewal, rotation and the previous CA's removal (~50 s expected)

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
  stop_pid "${LOOP_PID}"
  LOOP_PID=""
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
    for f in operator injector pods; do
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
fingerprint() { openssl x509 -noout -fingerprint -sha256 2>/dev/null; }
# ca_subjects FILE: the subjects of the certificates in a PEM bundle, one a line.
ca_subjects() {
  openssl crl2pkcs7 -nocrl -certfile "$1" 2>/dev/null | openssl pkcs7 -print_certs -noout 2>/dev/null |
    grep '^subject=' | sort
}

# pod_loop: one pod a second (or as fast as the API server answers, if slower) until
# ${WORK}/stop exists; "ok NAME" or "FAIL NAME TIME: why" per pod in pods.log.
pod_loop() {
  local i=0 out tick
  while [ ! -e "${WORK}/stop" ] && [ "${i}" -lt $((LIMIT + 120)) ]; do
    i=$((i + 1))
    sleep 1 &
    tick=$!
    if out="$(kubectl -n "${APPNS}" create -o 'jsonpath={.spec.containers[*].name}' -f - 2>&1 <<YAML
apiVersion: v1
kind: Pod
metadata: {name: rot-${i}}
spec:
  nodeSelector: {nutshell.io/test-no-such-node: "true"}
  containers:
  - {name: app, image: nginx:1.27}
YAML
    )"; then
      if [ "${out}" = "app nutshell-proxy" ]; then
        echo "ok rot-${i}"
      else
        echo "FAIL rot-${i} $(date +%T): created uninjected (${out})"
      fi
    else
      echo "FAIL rot-${i} $(date +%T): ${out}"
    fi
    wait "${tick}"
  done >>"${WORK}/pods.log" 2>&1
}

# --- CRDs, namespace, operator, Mesh with lifetimes in seconds
for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
kubectl apply -f "${ROOT}/manifests/crds/" >/dev/null
kubectl wait --for condition=Established crd/meshes.nutshell.io --timeout=60s >/dev/null
NS_CREATED="$(claim_namespace "${NS}")" || { fail "namespace ${NS}"; exit 1; }
kubectl create namespace "${APPNS}" >/dev/null && APPNS_CREATED=1
kubectl label namespace "${APPNS}" nutshell.io/inject=enabled >/dev/null
wait_for 30 kubectl -n "${APPNS}" get serviceaccount default

if start_operator; then pass "operator ready"; else fail "operator never became ready"; exit 1; fi
if out="$(kubectl apply -f - 2>&1 <<YAML
apiVersion: nutshell.io/v1alpha1
kind: Mesh
metadata: {name: ${MESH}}
spec:
  injector: {failurePolicy: Fail}
  certificates: {caValidity: 50s, validity: 20s, renewBefore: 10s}
YAML
)"; then
  pass "Mesh with lifetimes in seconds accepted (CRD rules and the operator)"
else
  fail "Mesh refused: ${out}"
  exit 1
fi
if wait_for 30 test -s "${DIR}/tls.crt"; then pass "operator wrote the injector's files"; else
  fail "no ${DIR}/tls.crt"
  exit 1
fi
"${INJECTOR}" serve --listen "127.0.0.1:${IPORT}" --metrics-listen "127.0.0.1:${IMPORT}" \
  --tls-cert "${DIR}/tls.crt" --tls-key "${DIR}/tls.key" --config "${DIR}/config.json" \
  >>"${WORK}/injector.log" 2>&1 &
INJ_PID=$!
if wait_for 30 curl -fsS "http://127.0.0.1:${IMPORT}/readyz"; then pass "injector ready"; else
  fail "injector never became ready"
  exit 1
fi
if wait_for 30 mesh_ready; then pass "Mesh Ready"; else fail "Mesh not Ready: $(mesh_field '{.status}')"; fi
check "webhook failurePolicy" "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].failurePolicy}')" "Fail"
lifetime=$(($(date -d "$(openssl x509 -in "${DIR}/tls.crt" -noout -enddate | cut -d= -f2)" +%s) -
  $(date -d "$(openssl x509 -in "${DIR}/tls.crt" -noout -startdate | cut -d= -f2)" +%s)))
check "serving certificate lives 20 s (+ 300 s backdating), not a day" "${lifetime}" "320"

# --- watch the served certificate while pods are created
pod_loop &
LOOP_PID=$!
declare -A FILE_FPS=() # every tls.crt fingerprint seen in DIR
checks=0 bad_served=0 untrusted=0 expired=0 renewals=0 rotations=0 drops=0 two_cas=0
prev_fp="" prev_issuer="" prev_cas=""
deadline=$((SECONDS + LIMIT))
while [ "${SECONDS}" -lt "${deadline}" ]; do
  # What the operator wrote, then what the injector serves (so the file is never older).
  file_fp="$(fingerprint <"${DIR}/tls.crt")"
  [ -n "${file_fp}" ] && FILE_FPS["${file_fp}"]=1
  openssl s_client -connect "127.0.0.1:${IPORT}" -servername 127.0.0.1 </dev/null 2>/dev/null |
    openssl x509 >"${WORK}/served.pem" 2>/dev/null
  jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].clientConfig.caBundle}' |
    base64 -d >"${WORK}/bundle.pem" 2>/dev/null
  fp="$(fingerprint <"${WORK}/served.pem")"
  if [ -z "${fp}" ] || [ ! -s "${WORK}/bundle.pem" ]; then
    sleep 0.5
    continue # a read raced a write; judged on the next check
  fi
  checks=$((checks + 1))
  file_fp="$(fingerprint <"${DIR}/tls.crt")"
  [ -n "${file_fp}" ] && FILE_FPS["${file_fp}"]=1
  if [ -z "${FILE_FPS[${fp}]-}" ]; then
    bad_served=$((bad_served + 1))
    echo "served a certificate never written to tls.crt: ${fp}" >&2
  fi
  if ! openssl verify -no_check_time -CAfile "${WORK}/bundle.pem" "${WORK}/served.pem" >/dev/null 2>&1; then
    untrusted=$((untrusted + 1))
    echo "$(date +%T) served certificate not issued by a CA in the caBundle" >&2
  fi
  openssl x509 -in "${WORK}/served.pem" -noout -checkend 0 >/dev/null || expired=$((expired + 1))
  issuer="$(openssl x509 -in "${WORK}/served.pem" -noout -issuer)"
  bundle_n="$(grep -c 'BEGIN CERTIFICATE' "${WORK}/bundle.pem")"
  [ "${bundle_n}" -ge 2 ] && two_cas=1
  if [ -n "${prev_fp}" ] && [ "${fp}" != "${prev_fp}" ]; then
    if [ "${issuer}" = "${prev_issuer}" ]; then
      renewals=$((renewals + 1))
      echo "$(date +%T) renewal: served certificate renewed by the same CA"
    else
      rotations=$((rotations + 1))
      echo "$(date +%T) rotation: served certificate now from a new CA (${issuer#issuer=})"
    fi
  fi
  # A CA leaves the bundle when it expires; the next rotation may add one at once.
  cas="$(ca_subjects "${WORK}/bundle.pem")"
  if [ -n "${prev_cas}" ] && [ -n "$(comm -23 <(echo "${prev_cas}") <(echo "${cas}"))" ]; then
    drops=$((drops + 1))
    echo "$(date +%T) the previous CA left the caBundle"
  fi
  prev_fp="${fp}" prev_issuer="${issuer}" prev_cas="${cas}"
  [ "${renewals}" -ge 1 ] && [ "${rotations}" -ge 1 ] && [ "${drops}" -ge 1 ] && break
  sleep 0.5
done
touch "${WORK}/stop"
wait "${LOOP_PID}"
LOOP_PID=""

[ "${renewals}" -ge 1 ] && pass "injector served a renewed certificate (${renewals} renewals)" ||
  fail "no renewal seen within ${LIMIT}s"
[ "${rotations}" -ge 1 ] && pass "injector served a certificate from a new CA (${rotations} rotations)" ||
  fail "no CA rotation seen within ${LIMIT}s"
check "caBundle carried both CAs during the rotation" "${two_cas}" "1"
[ "${drops}" -ge 1 ] && pass "the previous CA left the caBundle" ||
  fail "the previous CA never left the caBundle within ${LIMIT}s"
check "served certificate was always a tls.crt the operator wrote (${checks} checks)" "${bad_served}" "0"
check "caBundle always held the served certificate's CA (${checks} checks)" "${untrusted}" "0"
check "served certificate never expired (${checks} checks)" "${expired}" "0"
created="$(grep -c '^ok ' "${WORK}/pods.log")"
failures="$(grep -c '^FAIL ' "${WORK}/pods.log")"
echo "pods created and injected: ${created}, failures: ${failures}, distinct tls.crt: ${#FILE_FPS[@]}"
grep '^FAIL ' "${WORK}/pods.log" | head -5 >&2
[ "${created}" -ge 10 ] && pass "${created} pods created and injected during the rotation" ||
  fail "only ${created} pods created"
check "pod creation failures" "${failures}" "0"
