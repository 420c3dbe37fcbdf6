#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the integration tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and kwok faking one
# node (pods get scheduled, Running and Ready without a container runtime).
#
# Usage: hack/cluster.sh up|down|env|status|restart-apiserver|restart-kwok
#   up      start everything (no-op if already up); builds the tools first if needed
#   down    stop everything this script started (by PID); safe when nothing runs
#   env     print `export KUBECONFIG=... PATH=...` for eval
#   status  show each component and whether the API server is ready
#   restart-apiserver  kill kube-apiserver and start it again alone (etcd keeps the
#           data), for tests of clients that must survive an API-server crash
#   restart-kwok  stop kwok and start it again alone, with the stages reassembled from
#           hack/kwok/ (pods and the node are left as they are)
#
# Binds 127.0.0.1 only. State (PKI, etcd data, logs, pids, kubeconfig) lives in
# ${NUTSHELL_STATE:-~/.cache/nutshell/cluster}. Every `up` starts from an empty etcd.
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Non-default ports so that a developer's own cluster (6443, 2379, 10257, ...) and
# the harness do not collide. Override with the environment if they still do.
ETCD_PORT="${NUTSHELL_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${NUTSHELL_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${NUTSHELL_APISERVER_PORT:-16443}"
KCM_PORT="${NUTSHELL_KCM_PORT:-20257}"
SCHEDULER_PORT="${NUTSHELL_SCHEDULER_PORT:-20259}"
KWOK_PORT="${NUTSHELL_KWOK_PORT:-20247}"

NODE_NAME="kwok-node-0"
SERVICE_CIDR="10.96.0.0/16"
POD_CIDR="10.244.0.0/16"
UP_TIMEOUT="${NUTSHELL_UP_TIMEOUT:-120}"
UP_START=${SECONDS}

STATE="${NUTSHELL_STATE}"
PKI="${STATE}/pki"
LOGS="${STATE}/logs"
PIDS="${STATE}/pids"
KUBECONFIG_FILE="${STATE}/kubeconfig"

# Everything `up` starts, in start order (stop_all stops them in reverse).
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

kubectl_() { "${NUTSHELL_BIN}/kubectl" --kubeconfig "${KUBECONFIG_FILE}" "$@"; }

# ---------------------------------------------------------------- processes

# PID of a component we started, if it is still that process (PIDs get reused, so
# the executable must match too).
running_pid() {
  local name="$1" f="${PIDS}/$1.pid" pid exe
  [ -f "${f}" ] || return 1
  pid="$(cat "${f}")"
  [ -n "${pid}" ] && pid_alive "${pid}" || return 1
  exe="$(readlink "/proc/${pid}/exe" 2>/dev/null || true)"
  [ "$(basename "${exe% (deleted)}")" = "${name}" ] || return 1
  echo "${pid}"
}

# Starts a component detached from this shell (own session, no stdin), so it keeps
# running after `up` returns and a Ctrl-C in the caller's terminal does not reach it.
start() {
  local name="$1"; shift
  local bin; bin="$(readlink -f "${NUTSHELL_BIN}/${name}")"
  : >"${LOGS}/${name}.log"
  # 8>&- 9>&-: the lock fds of tools.sh and cluster.sh must not outlive this script.
  setsid "${bin}" "$@" </dev/null >>"${LOGS}/${name}.log" 2>&1 8>&- 9>&- &
  echo $! >"${PIDS}/${name}.pid"
}

# Stops in dependency order (clients, then the API server, then etcd) so that nothing
# spends its shutdown retrying a store or server that is already gone.
stop_all() {
  stop_group kwok kube-scheduler kube-controller-manager
  stop_group kube-apiserver
  stop_group etcd
}

stop_group() {
  local name pid pids=()
  for name in "$@"; do
    if pid="$(running_pid "${name}")"; then
      log "stopping ${name} (pid ${pid})"
      kill -TERM "${pid}" 2>/dev/null || true
      pids+=("${pid}")
    fi
    rm -f "${PIDS}/${name}.pid"
  done
  [ ${#pids[@]} -eq 0 ] || wait_gone 15 "${pids[@]}"
}

# A zombie (exited, not yet reaped: our own children when `up` fails) counts as gone.
pid_alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Waits for PIDs to exit; SIGKILLs what is left after the timeout.
wait_gone() {
  local t="$1" pid alive; shift
  local deadline=$((SECONDS + t))
  while :; do
    alive=()
    for pid in "$@"; do pid_alive "${pid}" && alive+=("${pid}"); done
    [ ${#alive[@]} -gt 0 ] || return 0
    if [ ${SECONDS} -ge ${deadline} ]; then
      log "killing ${alive[*]} after ${t} s"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      return 0
    fi
    sleep 0.1
  done
}

# Polls a command until it succeeds; on timeout, shows the component's log tail.
wait_for() {
  local what="$1" component="$2" deadline=$((SECONDS + UP_TIMEOUT)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -n "${component}" ] && ! running_pid "${component}" >/dev/null; then
      tail -n 30 "${LOGS}/${component}.log" >&2 || true
      die "${component} exited while waiting for ${what} (log: ${LOGS}/${component}.log)"
    fi
    if [ ${SECONDS} -ge ${deadline} ]; then
      [ -z "${component}" ] || tail -n 30 "${LOGS}/${component}.log" >&2 || true
      die "timed out after ${UP_TIMEOUT} s waiting for ${what}"
    fi
    sleep 0.2
  done
  log "${what}: ok after $((SECONDS - UP_START)) s"
}

port_free() {
  ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# ---------------------------------------------------------------- PKI

# One CA signs everything: the API server's serving cert, and client certs for the
# admin (system:masters) and the controller manager and scheduler (their built-in
# RBAC identities). Kept across up/down: it only depends on the ports' host, 127.0.0.1.
# Tests may sign their own webhook certs with it ($STATE/pki/ca.{crt,key}).
gen_pki() {
  # .done-2: bump when the set of certificates changes, so old state dirs regenerate.
  [ -f "${PKI}/.done-2" ] && return 0
  rm -rf "${PKI}" && mkdir -p "${PKI}"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "${PKI}/ca.key" -out "${PKI}/ca.crt" -days 3650 \
    -subj "/CN=nutshell-harness-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null

  gen_cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  gen_cert admin "/O=system:masters/CN=nutshell-admin" clientAuth
  gen_cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  gen_cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  # The aggregation layer's client (requestheader auth); without it every component
  # logs "missing content for CA bundle ... requestheader-client-ca-file" forever.
  gen_cert front-proxy-client "/CN=front-proxy-client" clientAuth

  # Service-account token signing key (RSA: what every token verifier accepts).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "${PKI}/sa.key" 2>/dev/null
  openssl pkey -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub"
  chmod 600 "${PKI}"/*.key
  touch "${PKI}/.done-2"
}

# gen_cert NAME SUBJECT EKU [SAN]
gen_cert() {
  local name="$1" subj="$2" eku="$3" san="${4:-}"
  local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${eku}"
  [ -z "${san}" ] || ext+=$'\n'"subjectAltName=${san}"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "${PKI}/${name}.key" -out "${PKI}/${name}.csr" -subj "${subj}" 2>/dev/null
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
    -CAcreateserial -days 3650 -out "${PKI}/${name}.crt" -extfile <(echo "${ext}") 2>/dev/null
  rm -f "${PKI}/${name}.csr"
}

# write_kubeconfig FILE CERT_NAME: certificates embedded, like kubeadm's, so the file
# is self-contained.
write_kubeconfig() {
  local file="$1" user="$2"
  cat >"${file}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nutshell
  cluster:
    server: https://127.0.0.1:${APISERVER_PORT}
    certificate-authority-data: $(base64 -w0 "${PKI}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 "${PKI}/${user}.crt")
    client-key-data: $(base64 -w0 "${PKI}/${user}.key")
contexts:
- name: nutshell
  context:
    cluster: nutshell
    user: ${user}
    namespace: default
current-context: nutshell
EOF
  chmod 600 "${file}"
}

# ---------------------------------------------------------------- components

start_etcd() {
  rm -rf "${STATE}/etcd"
  # --unsafe-no-fsync: the data is thrown away on the next `up`; fsync would only
  # slow every write down.
  start etcd \
    --name nutshell \
    --data-dir "${STATE}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "nutshell=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --unsafe-no-fsync \
    --log-level warn
}

start_apiserver() {
  # Default admission plugins (they include MutatingAdmissionWebhook and
  # ValidatingAdmissionWebhook). Webhooks with a `url:` clientConfig on 127.0.0.1
  # need nothing extra.
  start kube-apiserver \
    --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "${APISERVER_PORT}" \
    --cert-dir "${STATE}/apiserver" \
    --tls-cert-file "${PKI}/apiserver.crt" \
    --tls-private-key-file "${PKI}/apiserver.key" \
    --client-ca-file "${PKI}/ca.crt" \
    --requestheader-client-ca-file "${PKI}/ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "${PKI}/front-proxy-client.crt" \
    --proxy-client-key-file "${PKI}/front-proxy-client.key" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "${PKI}/sa.pub" \
    --service-account-signing-key-file "${PKI}/sa.key" \
    --service-cluster-ip-range "${SERVICE_CIDR}" \
    --allow-privileged=true \
    --endpoint-reconciler-type none \
    --profiling=false
}

start_controller_manager() {
  local kc="${STATE}/kube-controller-manager.kubeconfig"
  write_kubeconfig "${kc}" kube-controller-manager
  # No leader election: there is one instance, and acquiring the lease costs seconds.
  start kube-controller-manager \
    --kubeconfig "${kc}" \
    --authentication-kubeconfig "${kc}" \
    --authorization-kubeconfig "${kc}" \
    --bind-address 127.0.0.1 \
    --secure-port "${KCM_PORT}" \
    --controllers '*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file "${PKI}/sa.key" \
    --root-ca-file "${PKI}/ca.crt" \
    --cluster-signing-cert-file "${PKI}/ca.crt" \
    --cluster-signing-key-file "${PKI}/ca.key" \
    --service-cluster-ip-range "${SERVICE_CIDR}" \
    --leader-elect=false
}

start_scheduler() {
  local kc="${STATE}/kube-scheduler.kubeconfig"
  write_kubeconfig "${kc}" kube-scheduler
  start kube-scheduler \
    --kubeconfig "${kc}" \
    --authentication-kubeconfig "${kc}" \
    --authorization-kubeconfig "${kc}" \
    --bind-address 127.0.0.1 \
    --secure-port "${SCHEDULER_PORT}" \
    --leader-elect=false
}

# The stages (what the fake node's pods do) are assembled on every start from kwok's
# defaults, which tools.sh keeps next to the binary, and hack/kwok/*.yaml (the "broken
# version" image tags): an edit there needs only `restart-kwok`, no rebuild.
start_kwok() {
  local defaults; defaults="$(dirname "$(readlink -f "${NUTSHELL_BIN}/kwok")")/stages.yaml"
  [ -f "${defaults}" ] || die "${defaults} missing; run hack/tools.sh --force kwok"
  "${NUTSHELL_ROOT}/hack/kwok/stages.sh" "${defaults}" >"${STATE}/kwok-stages.yaml.tmp" \
    || die "cannot assemble the kwok stages (hack/kwok/)"
  mv "${STATE}/kwok-stages.yaml.tmp" "${STATE}/kwok-stages.yaml"
  # Only nodes annotated kwok.x-k8s.io/node=fake are faked, so a test that registers
  # its own Node objects is left alone. The lease heartbeat keeps the node Ready.
  start kwok \
    --kubeconfig "${KUBECONFIG_FILE}" \
    --config "${STATE}/kwok-stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr "${POD_CIDR}" \
    --node-ip 127.0.0.1 \
    --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:${KWOK_PORT}"
}

create_node() {
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: ${NODE_NAME}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: ${NODE_NAME}
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
}

# ---------------------------------------------------------------- health checks

# The running cluster's address comes from its kubeconfig, so status/up checks work
# even when NUTSHELL_APISERVER_PORT differs from what `up` was started with.
api_url() {
  local url=""
  [ -f "${KUBECONFIG_FILE}" ] && url="$(awk '$1 == "server:" { print $2; exit }' "${KUBECONFIG_FILE}")"
  echo "${url:-https://127.0.0.1:${APISERVER_PORT}}"
}

curl_api() {
  curl -fsS --max-time 2 --cacert "${PKI}/ca.crt" \
    --cert "${PKI}/admin.crt" --key "${PKI}/admin.key" \
    "$(api_url)$1"
}

curl_local() { curl -fsSk --max-time 2 "$1"; }

node_ready() {
  [ "$(kubectl_ get node "${NODE_NAME}" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# A busy machine can make one /readyz miss its 2 s; do not tear down a cluster that
# other tests are using because of that.
api_ready_soon() {
  local i
  for i in 1 2 3; do
    curl_api /readyz >/dev/null 2>&1 && return 0
    [ "${i}" -eq 3 ] || sleep 1
  done
  return 1
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do running_pid "${c}" >/dev/null || return 1; done
}

# ---------------------------------------------------------------- commands

cmd_up() {
  mkdir -p "${STATE}" "${LOGS}" "${PIDS}"
  # One `up` at a time (parallel test jobs sharing a state dir).
  exec 9>"${STATE}/.lock"
  flock 9

  if all_running && api_ready_soon; then
    log "already up (${KUBECONFIG_FILE})"
    return 0
  fi
  # Half-up (a component died, or a previous run failed): start over cleanly.
  stop_all

  local p
  "${NUTSHELL_ROOT}/hack/tools.sh"
  UP_START=${SECONDS}
  for p in "${ETCD_PORT}" "${ETCD_PEER_PORT}" "${APISERVER_PORT}" "${KCM_PORT}" \
           "${SCHEDULER_PORT}" "${KWOK_PORT}"; do
    port_free "${p}" || die "port 127.0.0.1:${p} is in use (see NUTSHELL_*_PORT in $0)"
  done

  gen_pki
  write_kubeconfig "${KUBECONFIG_FILE}" admin
  # If anything below fails, do not leave half a cluster behind.
  trap 'rc=$?; [ ${rc} -eq 0 ] || { log "up failed, stopping what was started"; stop_all; }' EXIT

  start_etcd
  wait_for "etcd" etcd curl -fsS --max-time 2 "http://127.0.0.1:${ETCD_PORT}/health"
  start_apiserver
  wait_for "kube-apiserver /readyz" kube-apiserver curl_api /readyz
  start_controller_manager
  start_scheduler
  start_kwok
  create_node
  wait_for "kube-controller-manager /healthz" kube-controller-manager \
    curl_local "https://127.0.0.1:${KCM_PORT}/healthz"
  wait_for "kube-scheduler /healthz" kube-scheduler \
    curl_local "https://127.0.0.1:${SCHEDULER_PORT}/healthz"
  wait_for "node ${NODE_NAME} Ready" kwok node_ready
  # Pods are rejected until the ServiceAccount admission plugin finds this.
  wait_for "serviceaccount default/default" kube-controller-manager \
    kubectl_ -n default get serviceaccount default
  trap - EXIT

  log "up in $((SECONDS - UP_START)) s: kube-apiserver https://127.0.0.1:${APISERVER_PORT}, kubeconfig ${KUBECONFIG_FILE}"
  log "use it with: eval \"\$(hack/cluster.sh env)\""
}

cmd_down() {
  if [ ! -d "${PIDS}" ]; then
    log "not running"
    return 0
  fi
  # Wait for a concurrent `up` to finish, but never hang a cleanup on it.
  exec 9>"${STATE}/.lock"
  flock -w 30 9 || log "lock ${STATE}/.lock busy for 30 s; stopping anyway"
  stop_all
  log "down (logs kept in ${LOGS})"
}

cmd_restart_apiserver() {
  running_pid kube-apiserver >/dev/null || die "kube-apiserver is not running (hack/cluster.sh up)"
  exec 9>"${STATE}/.lock"
  flock -w 30 9 || die "lock ${STATE}/.lock busy for 30 s"
  # A crash, not a graceful stop: the API server drains long-running watches for up
  # to a minute on SIGTERM, and clients must survive the abrupt case anyway.
  local pid
  pid="$(running_pid kube-apiserver)"
  log "killing kube-apiserver (pid ${pid})"
  kill -KILL "${pid}" 2>/dev/null || true
  wait_gone 5 "${pid}"
  UP_START=${SECONDS}
  start_apiserver
  wait_for "kube-apiserver /readyz" kube-apiserver curl_api /readyz
}

# kwok keeps no state of its own (pods keep their status), so restarting it disturbs no
# one; it picks up the current hack/kwok/ stages.
cmd_restart_kwok() {
  api_ready_soon || die "the API server is not ready (hack/cluster.sh up)"
  exec 9>"${STATE}/.lock"
  flock -w 30 9 || die "lock ${STATE}/.lock busy for 30 s"
  UP_START=${SECONDS}
  stop_group kwok
  port_free "${KWOK_PORT}" || die "port 127.0.0.1:${KWOK_PORT} is still in use"
  # Each kwok process has a new identity, and it leaves the node's pods alone until it
  # holds the node's Lease: with the old one's Lease left in place, that is when it
  # expires, 40 s on (and the node-lifecycle controller's grace period is not much
  # longer). Without a Lease, kwok creates its own at once. The node's last renewal,
  # which is what counts for its health, is a second old by then.
  kubectl_ -n kube-node-lease delete lease "${NODE_NAME}" --ignore-not-found >/dev/null
  start_kwok
  wait_for "kwok /healthz" kwok curl -fsS --max-time 2 "http://127.0.0.1:${KWOK_PORT}/healthz"
  wait_for "kwok holding the Lease of ${NODE_NAME}" kwok \
    kubectl_ -n kube-node-lease get lease "${NODE_NAME}"
  wait_for "node ${NODE_NAME} Ready" kwok node_ready
}

cmd_env() {
  printf 'export KUBECONFIG=%q\n' "${KUBECONFIG_FILE}"
  # shellcheck disable=SC2016 # $PATH is for the caller's shell to expand
  printf 'export PATH=%q:"$PATH"\n' "${NUTSHELL_BIN}"
}

cmd_status() {
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    if pid="$(running_pid "${c}")"; then
      printf '%-24s running (pid %s)\n' "${c}" "${pid}"
    else
      printf '%-24s stopped\n' "${c}"; rc=1
    fi
  done
  if curl_api /readyz >/dev/null 2>&1; then
    printf '%-24s ready at %s\n' "api" "$(api_url)"
    kubectl_ get nodes --no-headers 2>/dev/null | sed 's/^/node                     /' || true
  else
    printf '%-24s not ready\n' "api"; rc=1
  fi
  echo "kubeconfig               ${KUBECONFIG_FILE}"
  echo "logs                     ${LOGS}"
  return "${rc}"
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    restart-apiserver) cmd_restart_apiserver ;;
    restart-kwok) cmd_restart_kwok ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
}

main "$@"
