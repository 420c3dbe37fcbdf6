# shellcheck shell=bash
# A throwaway Prometheus for tests (Debian package `prometheus`, see hack/deps.sh).
# Sourced, not executed.
#
# start_prometheus DIR PORT [TARGET...]
#   Starts Prometheus on 127.0.0.1:PORT with its data and log in DIR, scraping itself
#   (job "prometheus") and each TARGET ("127.0.0.1:8080", job "targets") every second.
#   Returns once /-/ready answers and the first self-scrape has landed, so that
#   up{job="prometheus"} is there to query; 1 (with the log's tail) if it does not
#   come up within 30 s.
# stop_prometheus DIR
#   Stops the instance started with DIR and waits for it to exit.
#
# PROMETHEUS (default: prometheus on PATH) names the binary.

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROMETHEUS="${PROMETHEUS:-prometheus}"

start_prometheus() {
  local dir="$1" port="$2" target pid deadline
  shift 2
  mkdir -p "${dir}/data"
  {
    echo "global:"
    echo "  scrape_interval: 1s"
    echo "  evaluation_interval: 1s"
    echo "scrape_configs:"
    echo "- job_name: prometheus"
    echo "  static_configs: [{targets: ['127.0.0.1:${port}']}]"
    if [ $# -gt 0 ]; then
      echo "- job_name: targets"
      echo "  static_configs:"
      echo "  - targets:"
      for target in "$@"; do
        echo "    - '${target}'"
      done
    fi
  } >"${dir}/prometheus.yml"

  "${PROMETHEUS}" --config.file="${dir}/prometheus.yml" \
    --storage.tsdb.path="${dir}/data" --web.listen-address="127.0.0.1:${port}" \
    </dev/null >>"${dir}/prometheus.log" 2>&1 &
  pid=$!
  echo "${pid}" >"${dir}/prometheus.pid"

  deadline=$((SECONDS + 30))
  until curl -fsS --max-time 2 "http://127.0.0.1:${port}/-/ready" >/dev/null 2>&1 &&
    curl -fsS --max-time 2 "http://127.0.0.1:${port}/api/v1/query" \
      --data-urlencode 'query=up{job="prometheus"} == 1' 2>/dev/null | grep -q '"value"'; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      log "prometheus exited early; its log ends:"
      tail -n 20 "${dir}/prometheus.log" >&2
      return 1
    fi
    if [ "${SECONDS}" -ge "${deadline}" ]; then
      log "prometheus not ready on 127.0.0.1:${port} after 30 s; its log ends:"
      tail -n 20 "${dir}/prometheus.log" >&2
      stop_prometheus "${dir}"
      return 1
    fi
    sleep 0.2
  done
  log "prometheus ready on http://127.0.0.1:${port} (pid ${pid}, data in ${dir})"
}

stop_prometheus() {
  local dir="$1" pid i
  [ -f "${dir}/prometheus.pid" ] || return 0
  pid="$(cat "${dir}/prometheus.pid")"
  rm -f "${dir}/prometheus.pid"
  kill "${pid}" 2>/dev/null || return 0
  # It flushes the head block on SIGTERM; a test's few seconds of data take well under
  # the 10 s given before SIGKILL.
  for ((i = 0; i < 100; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.1
  done
  log "prometheus (pid ${pid}) ignored SIGTERM; killing it"
  kill -KILL "${pid}" 2>/dev/null
}
