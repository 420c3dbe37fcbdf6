#!/usr/bin/env bash
# The main job, from a fresh clone: installs what is needed, builds Nutshell and the
# pinned Kubernetes tools, starts a local control plane (etcd, kube-apiserver,
# controller-manager, scheduler, kwok fake node), installs Nutshell through its operator
# (CRDs, nutshell-operator, the sample Mesh), runs the sidecar injector from the files
# the operator writes, labels a namespace and deploys the Bookinfo sample, then shows the
# Mesh and the injected pods.
#
#   hack/run.sh        set up and run (safe to re-run: each step is skipped when done)
#   hack/run.sh down   stop the injector, the operator and the control plane
#
# There is no container runtime here (kwok fakes the pods), so the operator runs in its
# local mode (docs/operator.md): the webhook configuration it writes calls
# https://127.0.0.1:19443/inject, and it writes the injector's certificate, key, CA
# bundle and config into the state dir, as a kubelet would mount its Secret and
# ConfigMap; the injector runs on this machine from those files and reloads them when
# the operator rotates them. The API server and the webhook are real, the containers
# are not.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/common.sh

STATE_DIR="${NUTSHELL_STATE}"
INJ_DIR="${STATE_DIR}/injector"
INJ_PID_FILE="${INJ_DIR}/injector.pid"
OP_PID_FILE="${STATE_DIR}/operator.pid"
PORT="${NUTSHELL_INJECTOR_PORT:-19443}"
MPORT="${NUTSHELL_INJECTOR_METRICS_PORT:-19090}"
OPORT="${NUTSHELL_OPERATOR_METRICS_PORT:-19091}"
CP_NS=nutshell-system
NS=bookinfo

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# running_pid PIDFILE BINARY: the pid in PIDFILE if that process is BINARY and alive.
running_pid() {
  [ -f "$1" ] || return 1
  local pid
  pid="$(cat "$1")"
  kill -0 "${pid}" 2>/dev/null && [ "$(basename "$(readlink "/proc/${pid}/exe")")" = "$2" ] &&
    echo "${pid}"
}
injector_pid() { running_pid "${INJ_PID_FILE}" nutshell-injector; }
operator_pid() { running_pid "${OP_PID_FILE}" nutshell-operator; }

# stop PIDFILE BINARY
stop() {
  local pid
  if pid="$(running_pid "$1" "$2")"; then
    kill "${pid}" && echo "stopped $2 (pid ${pid})"
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

if [ "${1:-}" = down ]; then
  stop "${INJ_PID_FILE}" nutshell-injector
  stop "${OP_PID_FILE}" nutshell-operator
  exec hack/cluster.sh down
fi

# The Secret's tls.crt is in ${INJ_DIR}: the operator has written this Mesh's files.
files_written() {
  local crt
  crt="$(kubectl -n "${CP_NS}" get secret nutshell-injector-tls -o 'jsonpath={.data.tls\.crt}' 2>/dev/null)" &&
    [ -n "${crt}" ] && [ -s "${INJ_DIR}/tls.crt" ] && base64 -d <<<"${crt}" | cmp -s - "${INJ_DIR}/tls.crt"
}

# ensure_namespace NS: creates NS; one still being deleted (a run torn down a moment
# ago) takes no new objects, so that is waited for first.
ensure_namespace() {
  for _ in $(seq 300); do
    [ "$(kubectl get namespace "$1" -o 'jsonpath={.status.phase}' 2>/dev/null)" != Terminating ] && break
    sleep 0.2
  done
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f -
}

say "1/8 Debian packages"
bash hack/deps.sh
say "2/8 Kubernetes tools (the first build takes several minutes; cached in ${NUTSHELL_CACHE})"
bash hack/tools.sh
say "3/8 building Nutshell"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target nutshell-injector nutshell-operator 2>&1 |
  grep -E '^\[100%\]|error' || true
say "4/8 local control plane"
hack/cluster.sh up
eval "$(hack/cluster.sh env)"

say "5/8 CRDs and namespace ${CP_NS}"
kubectl apply -f manifests/crds/
kubectl wait --for condition=Established crd/meshes.nutshell.io --timeout=60s
ensure_namespace "${CP_NS}"

say "6/8 nutshell-operator (local mode: webhook https://127.0.0.1:${PORT}/inject, files in ${INJ_DIR})"
mkdir -p "${INJ_DIR}" "${STATE_DIR}/logs"
# What the hand-made CA of earlier versions of this script left behind.
rm -f "${INJ_DIR}/ca.key" "${INJ_DIR}/ca.srl" "${INJ_DIR}/tls.csr" "${INJ_DIR}/ext.cnf"
if pid="$(operator_pid)"; then
  echo "already running (pid ${pid})"
else
  setsid build/operator/nutshell-operator --leader-elect=false \
    --webhook-url="https://127.0.0.1:${PORT}/inject" --local-injector-dir="${INJ_DIR}" \
    --metrics-listen="127.0.0.1:${OPORT}" \
    >>"${STATE_DIR}/logs/operator.log" 2>&1 </dev/null &
  echo $! >"${OP_PID_FILE}"
  for _ in $(seq 150); do curl -fsS "http://127.0.0.1:${OPORT}/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://127.0.0.1:${OPORT}/readyz" >/dev/null || {
    tail "${STATE_DIR}/logs/operator.log"
    exit 1
  }
  echo "started (pid $(cat "${OP_PID_FILE}"), log ${STATE_DIR}/logs/operator.log)"
fi
kubectl apply -f manifests/samples/mesh-default.yaml
echo "waiting for the operator to write ${INJ_DIR}/tls.crt"
for _ in $(seq 300); do files_written && break; sleep 0.2; done
files_written || {
  echo "the operator wrote no certificate into ${INJ_DIR}" >&2
  tail "${STATE_DIR}/logs/operator.log"
  exit 1
}

say "7/8 sidecar injector on https://127.0.0.1:${PORT}, from the operator's files"
if pid="$(injector_pid)"; then
  echo "already running (pid ${pid}; it reloads the files when they change)"
else
  setsid build/injector/nutshell-injector serve --listen "127.0.0.1:${PORT}" \
    --metrics-listen "127.0.0.1:${MPORT}" --tls-cert "${INJ_DIR}/tls.crt" \
    --tls-key "${INJ_DIR}/tls.key" --config "${INJ_DIR}/config.json" \
    >>"${STATE_DIR}/logs/injector.log" 2>&1 </dev/null &
  echo $! >"${INJ_PID_FILE}"
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:${MPORT}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:${MPORT}/readyz" >/dev/null || {
    tail "${STATE_DIR}/logs/injector.log"
    exit 1
  }
  echo "started (pid $(cat "${INJ_PID_FILE}"), log ${STATE_DIR}/logs/injector.log)"
fi
kubectl wait --for=jsonpath='{.status.phase}'=Ready mesh.nutshell.io/default --timeout=120s

say "8/8 Bookinfo in namespace ${NS}, labelled for injection"
ensure_namespace "${NS}"
kubectl label namespace "${NS}" nutshell.io/inject=enabled --overwrite
for _ in $(seq 50); do kubectl -n "${NS}" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
kubectl -n "${NS}" apply -f manifests/samples/bookinfo/bookinfo.yaml
kubectl -n "${NS}" rollout status deployment --timeout=120s

say "What you have"
echo "\$ kubectl get nmesh"
kubectl get nmesh
echo
echo "\$ kubectl get pods -n ${NS}"
kubectl get pods -n "${NS}"
echo
echo "\$ kubectl get pod -n ${NS} -l app=productpage -o jsonpath='{...container names...}'"
kubectl get pod -n "${NS}" -l app=productpage \
  -o jsonpath='{range .items[*]}{.metadata.name}{": init="}{.spec.initContainers[*].name}{" containers="}{.spec.containers[*].name}{"\n"}{end}'
echo
cat <<MSG
Every pod shows 2/2: the app and nutshell-proxy (nutshell-init ran first). The Mesh
"default" is Ready: nutshell-operator installed the injector's objects in ${CP_NS} and the
MutatingWebhookConfiguration nutshell-sidecar-injector.
Try it yourself:
  eval "\$(hack/cluster.sh env)"
  kubectl get nmesh default -o yaml
  kubectl get pods -n ${NS}
  kubectl get pod -n ${NS} -l app=details -o jsonpath='{.metadata.annotations.nutshell\.io/status}'
  build/injector/nutshell-injector inject -f manifests/samples/bookinfo/bookinfo.yaml | less
  curl -s http://127.0.0.1:${MPORT}/metrics | grep nutshell_injector_reviews_total
  curl -s http://127.0.0.1:${OPORT}/metrics | grep nutshell_operator_
Logs: ${STATE_DIR}/logs/operator.log, ${STATE_DIR}/logs/injector.log
Tear down:  hack/run.sh down
MSG
