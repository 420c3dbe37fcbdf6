#!/usr/bin/env bash
# The main job, from a fresh clone: installs what is needed, builds Nutshell and the
# pinned Kubernetes tools, starts a local control plane (etcd, kube-apiserver,
# controller-manager, scheduler, kwok fake node), runs the sidecar injector against it,
# labels a namespace and deploys the Bookinfo sample, then shows the injected pods.
#
#   hack/run.sh        set up and run (safe to re-run: each step is skipped when done)
#   hack/run.sh down   stop the injector and the control plane
#
# The injector runs on this machine at https://127.0.0.1:19443 (no container runtime
# here: kwok fakes the pods, so the API server and the webhook are real, the
# containers are not).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/common.sh
source hack/lib/webhook.sh

STATE_DIR="${NUTSHELL_STATE}"
INJ_DIR="${STATE_DIR}/injector"
INJ_PID_FILE="${INJ_DIR}/injector.pid"
PORT="${NUTSHELL_INJECTOR_PORT:-19443}"
MPORT="${NUTSHELL_INJECTOR_METRICS_PORT:-19090}"
NS=bookinfo

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

injector_pid() {
  [ -f "${INJ_PID_FILE}" ] || return 1
  local pid
  pid="$(cat "${INJ_PID_FILE}")"
  kill -0 "${pid}" 2>/dev/null && [ "$(basename "$(readlink "/proc/${pid}/exe")")" = nutshell-injector ] &&
    echo "${pid}"
}

if [ "${1:-}" = down ]; then
  if pid="$(injector_pid)"; then
    kill "${pid}" && echo "stopped nutshell-injector (pid ${pid})"
  fi
  rm -f "${INJ_PID_FILE}"
  exec hack/cluster.sh down
fi

say "1/6 Debian packages"
bash hack/deps.sh
say "2/6 Kubernetes tools (the first build takes several minutes; cached in ${NUTSHELL_CACHE})"
bash hack/tools.sh
say "3/6 building Nutshell"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target nutshell-injector 2>&1 | grep -E '^\[100%\]|error' || true
say "4/6 local control plane"
hack/cluster.sh up
eval "$(hack/cluster.sh env)"

say "5/6 sidecar injector on https://127.0.0.1:${PORT}"
mkdir -p "${INJ_DIR}"
if pid="$(injector_pid)"; then
  echo "already running (pid ${pid})"
else
  make_serving_cert "${INJ_DIR}" 30
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
render_webhook nutshell-sidecar-injector "https://127.0.0.1:${PORT}/inject" "${INJ_DIR}/ca.crt" Fail |
  kubectl apply -f -

say "6/6 Bookinfo in namespace ${NS}, labelled for injection"
kubectl create namespace "${NS}" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "${NS}" nutshell.io/inject=enabled --overwrite
for _ in $(seq 50); do kubectl -n "${NS}" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
kubectl -n "${NS}" apply -f manifests/samples/bookinfo/bookinfo.yaml
kubectl -n "${NS}" rollout status deployment --timeout=120s

say "What you have"
echo "\$ kubectl get pods -n ${NS}"
kubectl get pods -n "${NS}"
echo
echo "\$ kubectl get pod -n ${NS} -l app=productpage -o jsonpath='{...container names...}'"
kubectl get pod -n "${NS}" -l app=productpage \
  -o jsonpath='{range .items[*]}{.metadata.name}{": init="}{.spec.initContainers[*].name}{" containers="}{.spec.containers[*].name}{"\n"}{end}'
echo
cat <<MSG
Every pod shows 2/2: the app and nutshell-proxy (nutshell-init ran first).
Try it yourself:
  eval "\$(hack/cluster.sh env)"
  kubectl get pods -n ${NS}
  kubectl get pod -n ${NS} -l app=details -o jsonpath='{.metadata.annotations.nutshell\.io/status}'
  build/injector/nutshell-injector inject -f manifests/samples/bookinfo/bookinfo.yaml | less
  curl -s http://127.0.0.1:${MPORT}/metrics | grep nutshell_injector_reviews_total
Tear down:  hack/run.sh down
MSG
