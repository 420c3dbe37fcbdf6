#!/usr/bin/env bash
# The Mesh controller against a real kube-apiserver: nutshell-operator runs out of cluster
# against hack/cluster.sh's control plane and installs the sample Mesh. The injector's
# objects appear with owner references, the webhook's caBundle verifies the serving
# certificate, the status reaches Ready (kwok makes the injector pods Ready), a second
# reconcile of the same state writes nothing (also after a restart), edited or deleted
# objects are put back, spec changes are followed, a spec the CRD accepts but the operator
# refuses gives Degraded, and deleting the Mesh removes the webhook configuration first.
#
# Usage: operator_mesh_test.sh PATH/TO/nutshell-operator [PATH/TO/nutshell-injector]
#        (needs: hack/cluster.sh up; the injector, if given, checks the rendered config)
#
# The webhook configuration points at a Service whose pods are kwok's fakes, so no
# namespace is labelled for injection here: pod creation there would fail against it.
# The cluster may be shared: the test refuses to run next to an existing Mesh "default",
# deletes the CRDs only if it installed them, and the namespace only if it created it.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPERATOR="${1:?usage: operator_mesh_test.sh PATH/TO/nutshell-operator [PATH/TO/nutshell-injector]}"
INJECTOR="${2:-}"
require_cluster

WORK="$(mktemp -d)"
export KUBECACHEDIR="${WORK}/kube-cache" # a stale discovery cache would miss the CRDs
NS=nutshell-system
MESH=default
DUP="operator-test-dup-$$" # a second Mesh of the same revision
CRDS=(meshes.nutshell.io canaries.nutshell.io)
PREEXISTING=()
NS_CREATED=""
OP_PID=""
MPORT="$(free_port)"
OWNED=(deployment/nutshell-injector service/nutshell-injector
  configmap/nutshell-injector-config secret/nutshell-injector-tls secret/nutshell-ca
  serviceaccount/nutshell-injector poddisruptionbudget/nutshell-injector)
WEBHOOK=nutshell-sidecar-injector

start_operator() {
  "${OPERATOR}" --leader-elect=false --metrics-listen "127.0.0.1:${MPORT}" --routes-listen 127.0.0.1:0 \
    --resync-period 2 --log-level debug >>"${WORK}/operator.log" 2>&1 &
  OP_PID=$!
  wait_for 30 curl -fsS "http://127.0.0.1:${MPORT}/readyz"
}
# stop_operator: SIGTERM; its exit status goes to OP_RC.
OP_RC=""
stop_operator() {
  OP_RC=0
  kill -TERM "${OP_PID}" 2>/dev/null
  wait "${OP_PID}" 2>/dev/null || OP_RC=$?
  OP_PID=""
}

cleanup() {
  local crd
  local m
  for m in "${DUP}" "${MESH}"; do
    kubectl get mesh.nutshell.io "${m}" >/dev/null 2>&1 || continue
    [ -n "${OP_PID}" ] || start_operator
    kubectl delete mesh.nutshell.io "${m}" --timeout=30s >/dev/null 2>&1 ||
      kubectl patch mesh.nutshell.io "${m}" --type=merge -p '{"metadata":{"finalizers":null}}' \
        >/dev/null 2>&1
  done
  [ -n "${OP_PID}" ] && stop_operator
  kubectl delete mutatingwebhookconfiguration "${WEBHOOK}" --ignore-not-found >/dev/null 2>&1
  if [ -n "${NS_CREATED}" ]; then
    kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  fi
  for crd in "${CRDS[@]}"; do
    [[ " ${PREEXISTING[*]-} " == *" ${crd} "* ]] && continue
    kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  if [ "${FAILED}" -gt 0 ] && [ -f "${WORK}/operator.log" ]; then
    echo "--- last lines of the operator's log" >&2
    grep -v 'level=debug\| debug ' "${WORK}/operator.log" | tail -40 >&2
  fi
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# jp RESOURCE JSONPATH: one field of one object in ${NS} (or cluster-scoped), "" if absent.
jp() { kubectl -n "${NS}" get "$1" -o "jsonpath=$2" 2>/dev/null; }
mesh_field() { jp "mesh.nutshell.io/${MESH}" "$1"; }
field_is() { [ "$(jp "$1" "$2")" = "$3" ]; }
writes() {
  curl -fsS "http://127.0.0.1:${MPORT}/metrics" |
    awk '/^nutshell_operator_writes_total\{controller="mesh"\}/ {print $2}'
}
reconciles() {
  curl -fsS "http://127.0.0.1:${MPORT}/metrics" |
    awk '/^nutshell_operator_reconcile_total.controller="mesh".*result="success"/ {print $2}'
}
condition() { mesh_field "{.status.conditions[?(@.type==\"$1\")].$2}"; }
# Ready and caught up with the latest spec.
mesh_ready() {
  [ "$(mesh_field '{.status.phase}')" = Ready ] &&
    [ "$(mesh_field '{.status.observedGeneration}')" = "$(mesh_field '{.metadata.generation}')" ]
}
resource_versions() {
  local o
  for o in "${OWNED[@]}" "mutatingwebhookconfiguration/${WEBHOOK}"; do
    echo "${o} $(kubectl -n "${NS}" get "${o}" -o 'jsonpath={.metadata.resourceVersion}')"
  done
}

if kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
  trap - EXIT
  skip_all "a Mesh named ${MESH} already exists in this cluster; not touching someone else's install"
fi

# --- CRDs and namespace
for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
kubectl apply -f "${ROOT}/manifests/crds/" >/dev/null
kubectl wait --for condition=Established crd/meshes.nutshell.io --timeout=60s >/dev/null
# A namespace being deleted cannot take new objects: wait for it to go first.
NS_CREATED="$(claim_namespace "${NS}")" || { fail "namespace ${NS}"; exit 1; }

# --- flags
out="$("${OPERATOR}" --help)"
[[ "${out}" == *"--leader-elect"* && "${out}" == *"Exit status"* ]] && pass "--help documents flags and exit codes" || fail "--help: ${out}"
check "--version" "$("${OPERATOR}" --version)" "nutshell-operator 0.1.0"
"${OPERATOR}" --workers 0 >/dev/null 2>&1
check "bad flag exits 2" "$?" "2"

# --- install
if start_operator; then pass "operator ready (caches synced)"; else fail "operator never became ready"; exit 1; fi
kubectl apply -f "${ROOT}/manifests/samples/mesh-default.yaml" >/dev/null
UID_MESH="$(mesh_field '{.metadata.uid}')"

if wait_for 60 mesh_ready; then pass "Mesh reaches phase Ready"; else fail "Mesh not Ready: $(mesh_field '{.status}')"; fi
for o in "${OWNED[@]}"; do
  check "${o} is owned by the Mesh" \
    "$(kubectl -n "${NS}" get "${o}" -o 'jsonpath={.metadata.ownerReferences[?(@.controller==true)].uid}' 2>&1)" \
    "${UID_MESH}"
done
check "webhook configuration is owned by the Mesh" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.metadata.ownerReferences[0].uid}')" "${UID_MESH}"
check "webhook configuration carries the managed-by label" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.metadata.labels.app\.kubernetes\.io/managed-by}')" \
  "nutshell-operator"
check "finalizer present" "$(mesh_field '{.metadata.finalizers[*]}')" "nutshell.io/webhook-cleanup"

# --- the injector accepts the rendered config
kubectl -n "${NS}" get configmap nutshell-injector-config -o 'jsonpath={.data.config\.json}' >"${WORK}/config.json"
if [ -n "${INJECTOR}" ] && [ -x "${INJECTOR}" ]; then
  jq -n '{apiVersion:"v1",kind:"Pod",metadata:{name:"app",namespace:"demo"},
          spec:{containers:[{name:"app",image:"registry.example/app:1"}]}}' >"${WORK}/pod.json"
  if out="$("${INJECTOR}" inject -f "${WORK}/pod.json" --config "${WORK}/config.json" 2>&1)" &&
    [[ "${out}" == *"nutshell/proxy:"* ]]; then
    pass "nutshell-injector accepts the ConfigMap's config.json"
  else
    fail "nutshell-injector refused config.json: ${out}"
  fi
else
  echo "note: no injector binary given; config.json is only checked to be JSON"
  jq -e .revision "${WORK}/config.json" >/dev/null && pass "config.json is JSON" || fail "config.json: $(cat "${WORK}/config.json")"
fi

# --- certificates: the webhook's caBundle verifies the serving certificate
kubectl -n "${NS}" get secret nutshell-injector-tls -o 'jsonpath={.data.tls\.crt}' | base64 -d >"${WORK}/tls.crt"
jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].clientConfig.caBundle}' | base64 -d >"${WORK}/bundle0.pem"
jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[1].clientConfig.caBundle}' | base64 -d >"${WORK}/bundle1.pem"
out="$(openssl verify -CAfile "${WORK}/bundle0.pem" "${WORK}/tls.crt" 2>&1)"
check "caBundle verifies the serving certificate" "${out}" "${WORK}/tls.crt: OK"
cmp -s "${WORK}/bundle0.pem" "${WORK}/bundle1.pem" && pass "both webhooks carry the same caBundle" || fail "webhooks' caBundles differ"
sans="$(openssl x509 -in "${WORK}/tls.crt" -noout -ext subjectAltName 2>&1)"
[[ "${sans}" == *"DNS:nutshell-injector.${NS}.svc"* && "${sans}" == *"DNS:nutshell-injector.${NS}.svc.cluster.local"* ]] &&
  pass "serving certificate names the Service" || fail "SANs: ${sans}"
check "webhook dials the Service" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].clientConfig.service.name}/{.webhooks[0].clientConfig.service.namespace}')" \
  "nutshell-injector/${NS}"

# --- status and printer columns
for t in Ready WebhookReady CertificateReady; do
  check "condition ${t}" "$(condition "${t}" status)" "True"
done
check "status.injector.readyReplicas" "$(mesh_field '{.status.injector.readyReplicas}')" "2"
not_after="$(openssl x509 -in "${WORK}/tls.crt" -noout -enddate | cut -d= -f2)"
check "status.certificate.notAfter is the certificate's" "$(mesh_field '{.status.certificate.notAfter}')" \
  "$(date -u -d "${not_after}" +%Y-%m-%dT%H:%M:%SZ)"
out="$(kubectl get nmesh "${MESH}" 2>&1)"
[[ "${out}" == *PHASE*REVISION*READY*CERT-EXPIRY* && "${out}" == *"Ready"*"default"*"True"* ]] &&
  pass "kubectl get nmesh shows the columns" || fail "kubectl get nmesh: ${out}"
events="$(kubectl get events -n default --field-selector "involvedObject.kind=Mesh,involvedObject.name=${MESH}" \
  -o 'jsonpath={range .items[*]}{.reason} {end}')"
for r in CACreated CertificateIssued WebhookConfigured Ready; do
  [[ " ${events} " == *" ${r} "* ]] && pass "Event ${r}" || fail "Event ${r} missing: ${events}"
done

# --- idempotence: resyncs every 2 s reconcile, and write nothing
w1="$(writes)"
r1="$(reconciles)"
sleep 5
w2="$(writes)"
r2="$(reconciles)"
check "no writes across resyncs once Ready (writes ${w1})" "${w2}" "${w1}"
[ "${r2}" -gt "${r1}" ] && pass "resyncs reconciled (${r1} -> ${r2})" || fail "no reconcile during resyncs (${r1} -> ${r2})"

# --- drift repair
kubectl -n "${NS}" delete service nutshell-injector --wait=true >/dev/null
if wait_for 20 kubectl -n "${NS}" get service nutshell-injector; then pass "deleted Service put back"; else fail "Service not put back"; fi
kubectl patch mutatingwebhookconfiguration "${WEBHOOK}" --type=json \
  -p '[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]' >/dev/null
if wait_for 20 field_is "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].failurePolicy}' Fail; then
  pass "webhook failurePolicy edit reverted to Fail"
else
  fail "failurePolicy is $(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.webhooks[0].failurePolicy}')"
fi
kubectl -n "${NS}" patch configmap nutshell-injector-config --type=merge -p '{"data":{"config.json":"{}"}}' >/dev/null
if wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get configmap nutshell-injector-config -o 'jsonpath={.data.config\.json}')\" = \"\$(cat ${WORK}/config.json)\" ]"; then
  pass "ConfigMap edit reverted"
else
  fail "ConfigMap not reverted"
fi

# --- spec changes are followed
kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"spec":{"injector":{"replicas":3}}}' >/dev/null
if wait_for 30 field_is deployment/nutshell-injector '{.spec.replicas}' 3; then pass "Deployment follows spec.injector.replicas"; else fail "Deployment replicas: $(jp deployment/nutshell-injector '{.spec.replicas}')"; fi
if wait_for 30 mesh_ready; then pass "status follows (observedGeneration $(mesh_field '{.status.observedGeneration}'))"; else fail "status: $(mesh_field '{.status}')"; fi
check "status.injector.replicas" "$(mesh_field '{.status.injector.replicas}')" "3"
kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"spec":{"injector":{"replicas":1,"failurePolicy":"Ignore"}}}' >/dev/null
if wait_for 30 bash -c "! kubectl -n ${NS} get poddisruptionbudget nutshell-injector"; then pass "PDB pruned at 1 replica"; else fail "PDB still there at 1 replica"; fi
wait_for 30 mesh_ready && pass "Ready at 1 replica" || fail "not Ready at 1 replica: $(mesh_field '{.status.phase}')"
kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"spec":{"injector":{"replicas":2,"failurePolicy":"Fail"}}}' >/dev/null
if wait_for 30 kubectl -n "${NS}" get poddisruptionbudget nutshell-injector; then pass "PDB back at 2 replicas"; else fail "PDB not back"; fi

# --- a spec the CRD accepts and the operator refuses
bad='{"spec":{"certificates":{"caValidity":"2160h","validity":"2160h","renewBefore":"720h"}}}'
if out="$(kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p "${bad}" 2>&1)"; then
  if wait_for 30 field_is "mesh.nutshell.io/${MESH}" '{.status.phase}' Degraded; then pass "bad spec: Degraded"; else fail "bad spec: phase $(mesh_field '{.status.phase}')"; fi
  msg="$(condition Ready message)"
  [[ "${msg}" == *"spec.certificates.caValidity"* ]] && pass "Ready condition names the field" || fail "message: ${msg}"
  check "Ready reason" "$(condition Ready reason)" "ReconcileError"
  check "bad spec: observedGeneration follows" "$(mesh_field '{.status.observedGeneration}')" "$(mesh_field '{.metadata.generation}')"
  wait_for 10 bash -c "kubectl get events -n default --field-selector involvedObject.kind=Mesh,involvedObject.name=${MESH},reason=InvalidSpec,type=Warning -o name | grep -q ."
  [ $? -eq 0 ] && pass "Warning Event InvalidSpec" || fail "no InvalidSpec Event"
  kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"spec":{"certificates":{"caValidity":"87600h"}}}' >/dev/null
  if wait_for 30 mesh_ready; then pass "fixed spec: Ready again"; else fail "fixed spec: $(mesh_field '{.status.phase}')"; fi
else
  fail "the CRD refused the spec meant for the operator to refuse: ${out}"
fi

# --- a second Mesh of the same revision is refused; deleting it leaves the first alone
jq -n --arg name "${DUP}" '{apiVersion:"nutshell.io/v1alpha1",kind:"Mesh",metadata:{name:$name},spec:{}}' |
  kubectl apply -f - >/dev/null
if wait_for 30 field_is "mesh.nutshell.io/${DUP}" '{.status.phase}' Degraded; then pass "same revision twice: Degraded"; else fail "second Mesh: $(jp "mesh.nutshell.io/${DUP}" '{.status}')"; fi
msg="$(jp "mesh.nutshell.io/${DUP}" '{.status.conditions[?(@.type=="Ready")].message}')"
[[ "${msg}" == *"already installed by Mesh ${MESH}"* ]] && pass "message names the Mesh that has the revision" || fail "message: ${msg}"
kubectl delete mesh.nutshell.io "${DUP}" --timeout=30s >/dev/null 2>&1 && pass "second Mesh deleted" || fail "second Mesh not deleted"
check "the first Mesh's webhook configuration stays" \
  "$(jp "mutatingwebhookconfiguration/${WEBHOOK}" '{.metadata.ownerReferences[0].uid}')" "${UID_MESH}"

# --- restart: the resync of an unchanged state writes nothing
wait_for 10 mesh_ready
sleep 1
before="$(resource_versions)"
stop_operator
check "SIGTERM: exit status 0" "${OP_RC}" "0"
if start_operator; then pass "operator restarted"; else fail "operator did not restart"; fi
sleep 5
check "no writes after a restart" "$(writes)" "0"
check "same resourceVersions after a restart" "$(resource_versions)" "${before}"

# --- deletion: the webhook configuration goes first, then the finalizer
kubectl delete mesh.nutshell.io "${MESH}" --wait=false >/dev/null
if wait_for 30 bash -c "! kubectl get mesh.nutshell.io ${MESH}"; then pass "Mesh deleted (finalizer removed)"; else fail "Mesh still there: $(mesh_field '{.metadata}')"; fi
if kubectl get mutatingwebhookconfiguration "${WEBHOOK}" >/dev/null 2>&1; then fail "webhook configuration outlived the Mesh"; else pass "webhook configuration gone with the Mesh"; fi
if wait_for 60 bash -c "! kubectl -n ${NS} get deployment nutshell-injector"; then pass "owned objects garbage-collected"; else fail "Deployment not garbage-collected"; fi
stop_operator
check "SIGTERM after the test: exit status 0" "${OP_RC}" "0"
