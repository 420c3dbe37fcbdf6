#!/usr/bin/env bash
# Leader election against a real kube-apiserver: two nutshell-operator replicas run out of
# cluster with --leader-elect=true against hack/cluster.sh's control plane. Exactly one
# holds the Lease nutshell-operator and only it writes (the standby's writes counter stays
# 0 while its /readyz answers 200, as docs/operator.md says of a standby). The leader is
# SIGKILLed (no release): the standby takes the Lease once it expires and follows a spec
# change. The new leader is SIGTERMed: it releases the Lease (empty holder) on its way
# out. A fresh replica then takes the Lease at once and, the Mesh being unchanged, writes
# nothing (same resourceVersions); it handles the Mesh's deletion; and when the Lease is
# taken from it (holder edited), it stops with exit status 3.
#
# Usage: operator_ha_test.sh PATH/TO/nutshell-operator   (needs: hack/cluster.sh up)
#
# The cluster may be shared: the test refuses to run next to an existing Mesh "default" or
# a Lease nutshell-operator held by someone else, deletes the CRDs only if it installed
# them, the namespace only if it created it, and the Lease only if it was not there before.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPERATOR="${1:?usage: operator_ha_test.sh PATH/TO/nutshell-operator}"
require_cluster

WORK="$(mktemp -d)"
export KUBECACHEDIR="${WORK}/kube-cache" # a stale discovery cache would miss the CRDs
NS=nutshell-system
MESH=default
LEASE=nutshell-operator
CRDS=(meshes.nutshell.io canaries.nutshell.io)
PREEXISTING=()
NS_CREATED=""
LEASE_PREEXISTING=""
OWNED=(deployment/nutshell-injector service/nutshell-injector
  configmap/nutshell-injector-config secret/nutshell-injector-tls secret/nutshell-ca
  serviceaccount/nutshell-injector poddisruptionbudget/nutshell-injector)
WEBHOOK=nutshell-sidecar-injector
# Lease duration 15 s (operator/leader.h) + a 2 s retry period with jitter + slack.
TAKEOVER_S=30

# Replicas, by name (a, b, c): pid, metrics port, identity (POD_NAME), log file.
declare -A PID PORT IDENT
for r in a b c; do
  PORT[$r]="$(free_port)"
  IDENT[$r]="op-${r}-$$"
  PID[$r]=""
done
RC=""

# launch_replica NAME: an operator with leader election, identity POD_NAME=IDENT[NAME].
launch_replica() {
  POD_NAME="${IDENT[$1]}" "${OPERATOR}" --leader-elect=true \
    --metrics-listen "127.0.0.1:${PORT[$1]}" --routes-listen 127.0.0.1:0 --resync-period 2 --log-level debug \
    >>"${WORK}/operator-${1}.log" 2>&1 &
  PID[$1]=$!
}
ready() { curl -fsS "http://127.0.0.1:${PORT[$1]}/readyz"; }
# start_replica NAME: launches it and waits for its /readyz.
start_replica() {
  launch_replica "$1"
  wait_for 30 ready "$1"
}
# stop_replica NAME [SIGNAL]: signals it (TERM by default) and reaps it; status in RC.
stop_replica() {
  local r="$1" sig="${2:-TERM}"
  RC=""
  [ -n "${PID[$r]}" ] || return 0
  kill "-${sig}" "${PID[$r]}" 2>/dev/null
  # bounded: SIGTERM flushes Events (<= 2 s) and releases the Lease (one request)
  for _ in $(seq 1 100); do
    kill -0 "${PID[$r]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "${PID[$r]}" 2>/dev/null && kill -KILL "${PID[$r]}" 2>/dev/null
  RC=0
  wait "${PID[$r]}" 2>/dev/null || RC=$?
  PID[$r]=""
}

# cleanup_operator: a plain (non-electing) operator, only to let the finalizer go.
CLEAN_PID=""
cleanup() {
  local r crd
  for r in a b c; do stop_replica "${r}" TERM; done
  if kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
    local mport
    mport="$(free_port)"
    "${OPERATOR}" --leader-elect=false --metrics-listen "127.0.0.1:${mport}" --routes-listen 127.0.0.1:0 \
      >>"${WORK}/operator-cleanup.log" 2>&1 &
    CLEAN_PID=$!
    wait_for 30 curl -fsS "http://127.0.0.1:${mport}/readyz"
    kubectl delete mesh.nutshell.io "${MESH}" --timeout=30s >/dev/null 2>&1 ||
      kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"metadata":{"finalizers":null}}' \
        >/dev/null 2>&1
    kill -TERM "${CLEAN_PID}" 2>/dev/null
    wait "${CLEAN_PID}" 2>/dev/null
  fi
  kubectl delete mutatingwebhookconfiguration "${WEBHOOK}" --ignore-not-found >/dev/null 2>&1
  if [ -z "${LEASE_PREEXISTING}" ]; then
    kubectl -n "${NS}" delete lease "${LEASE}" --ignore-not-found >/dev/null 2>&1
  fi
  if [ -n "${NS_CREATED}" ]; then
    kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  fi
  for crd in "${CRDS[@]}"; do
    [[ " ${PREEXISTING[*]-} " == *" ${crd} "* ]] && continue
    kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  if [ "${FAILED}" -gt 0 ]; then
    for r in a b c; do
      [ -f "${WORK}/operator-${r}.log" ] || continue
      echo "--- last lines of replica ${r}'s log (${IDENT[$r]})" >&2
      grep -v 'level=debug\| debug ' "${WORK}/operator-${r}.log" | tail -25 >&2
    done
  fi
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# jp RESOURCE JSONPATH: one field of one object in ${NS} (or cluster-scoped), "" if absent.
jp() { kubectl -n "${NS}" get "$1" -o "jsonpath=$2" 2>/dev/null; }
mesh_field() { jp "mesh.nutshell.io/${MESH}" "$1"; }
field_is() { [ "$(jp "$1" "$2")" = "$3" ]; }
holder() { jp "lease/${LEASE}" '{.spec.holderIdentity}'; }
holder_is() { [ "$(holder)" = "$1" ]; }
# metric NAME PATTERN: the value of the first sample of replica NAME matching PATTERN.
metric() {
  curl -fsS "http://127.0.0.1:${PORT[$1]}/metrics" | awk -v p="$2" '$0 ~ p {print $2; exit}'
}
writes() { metric "$1" '^nutshell_operator_writes_total[{]controller="mesh"[}]'; }
leader_gauge() { metric "$1" '^nutshell_operator_leader '; }
reconciles() {
  local v
  v="$(metric "$1" '^nutshell_operator_reconcile_total.controller="mesh".*result="success"')"
  echo "${v:-0}"
}
mesh_ready() {
  [ "$(mesh_field '{.status.phase}')" = Ready ] &&
    [ "$(mesh_field '{.status.observedGeneration}')" = "$(mesh_field '{.metadata.generation}')" ]
}
resource_versions() {
  local o
  for o in "${OWNED[@]}" "mutatingwebhookconfiguration/${WEBHOOK}" "mesh.nutshell.io/${MESH}"; do
    echo "${o} $(kubectl -n "${NS}" get "${o}" -o 'jsonpath={.metadata.resourceVersion}')"
  done
}
other() { [ "$1" = a ] && echo b || echo a; }

if kubectl get mesh.nutshell.io "${MESH}" >/dev/null 2>&1; then
  trap - EXIT
  skip_all "a Mesh named ${MESH} already exists in this cluster; not touching someone else's install"
fi
if kubectl -n "${NS}" get lease "${LEASE}" >/dev/null 2>&1; then
  h="$(holder)"
  if [ -n "${h}" ]; then
    trap - EXIT
    skip_all "the Lease ${NS}/${LEASE} is held by ${h}: another operator may be running"
  fi
  LEASE_PREEXISTING=1
fi

# --- CRDs and namespace
for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
kubectl apply -f "${ROOT}/manifests/crds/" >/dev/null
kubectl wait --for condition=Established crd/meshes.nutshell.io --timeout=60s >/dev/null
NS_CREATED="$(claim_namespace "${NS}")" || { fail "namespace ${NS}"; exit 1; }

# --- two replicas: exactly one leads
launch_replica a
launch_replica b
if wait_for 30 ready a && wait_for 30 ready b; then
  pass "both replicas ready (/readyz 200, leading or standing by)"
else
  fail "replicas not ready (pids a=${PID[a]} b=${PID[b]})"
  exit 1
fi
if wait_for 20 bash -c "h=\$(kubectl -n ${NS} get lease ${LEASE} -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null); [ \"\$h\" = ${IDENT[a]} ] || [ \"\$h\" = ${IDENT[b]} ]"; then
  pass "the Lease is held by one of the replicas ($(holder))"
else
  fail "Lease holder: '$(holder)'"
  exit 1
fi
if holder_is "${IDENT[a]}"; then L=a; else L=b; fi
F="$(other "${L}")"
sleep 3 # a few retry periods: the standby tries and must keep failing
check "holder unchanged after the standby's retries" "$(holder)" "${IDENT[$L]}"
check "leader's nutshell_operator_leader" "$(leader_gauge "${L}")" "1"
check "standby's nutshell_operator_leader" "$(leader_gauge "${F}")" "0"
check "Lease leaseDurationSeconds" "$(jp "lease/${LEASE}" '{.spec.leaseDurationSeconds}')" "15"

# --- the sample Mesh: only the leader writes
kubectl apply -f "${ROOT}/manifests/samples/mesh-default.yaml" >/dev/null
if wait_for 60 mesh_ready; then pass "Mesh reaches phase Ready"; else fail "Mesh not Ready: $(mesh_field '{.status}')"; fi
sleep 4 # two resync periods
w="$(writes "${L}")"
[ -n "${w}" ] && [ "${w%.*}" -gt 0 ] && pass "leader wrote (${w} writes)" || fail "leader's writes: '${w}'"
check "standby's writes stay 0" "$(writes "${F}")" "0"
check "standby reconciled nothing" "$(reconciles "${F}")" "0"
check "standby's /readyz" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$F]}/readyz")" "200"
check "standby's /healthz" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$F]}/healthz")" "200"
transitions="$(jp "lease/${LEASE}" '{.spec.leaseTransitions}')"

# --- SIGKILL the leader: no release; the standby takes over once the Lease expires
t0=${SECONDS}
stop_replica "${L}" KILL
check "SIGKILLed leader's status" "${RC}" "137"
check "a SIGKILLed leader leaves its name on the Lease" "$(holder)" "${IDENT[$L]}"
if wait_for "${TAKEOVER_S}" holder_is "${IDENT[$F]}"; then
  pass "standby took the Lease after $((SECONDS - t0)) s (lease 15 s, bound ${TAKEOVER_S} s)"
else
  fail "no takeover in ${TAKEOVER_S} s: holder '$(holder)'"
fi
check "leaseTransitions counts the takeover" "$(jp "lease/${LEASE}" '{.spec.leaseTransitions}')" \
  "$((${transitions:-0} + 1))"
wait_for 5 bash -c "[ \"\$(curl -fsS http://127.0.0.1:${PORT[$F]}/metrics | awk '/^nutshell_operator_leader / {print \$2}')\" = 1 ]"
check "new leader's nutshell_operator_leader" "$(leader_gauge "${F}")" "1"
kubectl patch mesh.nutshell.io "${MESH}" --type=merge -p '{"spec":{"injector":{"replicas":3}}}' >/dev/null
if wait_for 30 field_is deployment/nutshell-injector '{.spec.replicas}' 3; then
  pass "new leader: Deployment follows spec.injector.replicas"
else
  fail "Deployment replicas: $(jp deployment/nutshell-injector '{.spec.replicas}')"
fi
if wait_for 30 mesh_ready; then
  pass "new leader: status.observedGeneration follows ($(mesh_field '{.status.observedGeneration}'))"
else
  fail "status: $(mesh_field '{.status}')"
fi
w="$(writes "${F}")"
[ -n "${w}" ] && [ "${w%.*}" -gt 0 ] && pass "new leader wrote (${w} writes)" || fail "new leader's writes: '${w}'"

# --- SIGTERM the new leader: it releases the Lease on its way out
wait_for 30 field_is "mesh.nutshell.io/${MESH}" '{.status.injector.readyReplicas}' 3 ||
  fail "status.injector.readyReplicas: $(mesh_field '{.status.injector.readyReplicas}')"
wait_for 10 mesh_ready
sleep 3 # one more resync: the state is settled
before="$(resource_versions)"
t0=${SECONDS}
stop_replica "${F}" TERM
check "SIGTERM: exit status 0" "${RC}" "0"
[ $((SECONDS - t0)) -le 5 ] && pass "SIGTERM: stopped in $((SECONDS - t0)) s" || fail "SIGTERM took $((SECONDS - t0)) s"
check "released Lease: holderIdentity empty" "$(holder)" ""
check "released Lease: leaseDurationSeconds 1" "$(jp "lease/${LEASE}" '{.spec.leaseDurationSeconds}')" "1"

# --- a fresh replica takes the free Lease at once and writes nothing for an unchanged Mesh
t0=${SECONDS}
if start_replica c; then pass "fresh replica ready"; else fail "fresh replica not ready"; fi
if wait_for 10 holder_is "${IDENT[c]}"; then
  pass "fresh replica took the released Lease in $((SECONDS - t0)) s"
else
  fail "fresh replica did not take the Lease: holder '$(holder)'"
fi
wait_for 5 bash -c "[ \"\$(curl -fsS http://127.0.0.1:${PORT[c]}/metrics | awk '/^nutshell_operator_leader / {print \$2}')\" = 1 ]"
check "fresh replica's nutshell_operator_leader" "$(leader_gauge c)" "1"
if wait_for 15 bash -c "[ \"\$(curl -fsS http://127.0.0.1:${PORT[c]}/metrics | awk '/^nutshell_operator_reconcile_total.controller=\"mesh\".*result=\"success\"/ {print \$2; exit}')\" -ge 2 ] 2>/dev/null"; then
  pass "fresh replica reconciled the Mesh ($(reconciles c) reconciles)"
else
  fail "fresh replica reconciled nothing ($(reconciles c))"
fi
sleep 2
check "fresh leader: no writes for an unchanged Mesh" "$(writes c)" "0"
check "fresh leader: same resourceVersions" "$(resource_versions)" "${before}"
check "Mesh still Ready" "$(mesh_field '{.status.phase}')" "Ready"

# --- the leader handles the deletion (finalizer)
kubectl delete mesh.nutshell.io "${MESH}" --wait=false >/dev/null
if wait_for 30 bash -c "! kubectl get mesh.nutshell.io ${MESH}"; then pass "Mesh deleted by the leader"; else fail "Mesh still there"; fi

# --- a leader whose Lease is taken from it stops with exit status 3 (restart to stand again)
if [ -z "${LEASE_PREEXISTING}" ]; then
  now="$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)"
  kubectl -n "${NS}" patch lease "${LEASE}" --type=merge \
    -p "{\"spec\":{\"holderIdentity\":\"someone-else-$$\",\"renewTime\":\"${now}\",\"leaseDurationSeconds\":15}}" >/dev/null
  if wait_for 15 bash -c "! kill -0 ${PID[c]} 2>/dev/null"; then
    stop_replica c TERM
    check "leader that lost the Lease: exit status 3" "${RC}" "3"
  else
    fail "leader kept running after its Lease was taken"
    stop_replica c TERM
  fi
  check "the Lease stays with its new holder" "$(holder)" "someone-else-$$"
else
  stop_replica c TERM
  check "fresh leader: SIGTERM exit status 0" "${RC}" "0"
  check "fresh leader released the Lease" "$(holder)" ""
fi
