#!/usr/bin/env bash
# The Canary's network checks (operator/canary_checks.c) against a real Prometheus,
# started here through hack/lib/prometheus.sh; the test binary serves its own webhook
# receiver on loopback. Needs no cluster.
#
# Usage: canary_checks_test.sh PATH/TO/canary_checks_test
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../../hack/lib/prometheus.sh
source "${ROOT}/hack/lib/prometheus.sh"

BIN="${1:?usage: canary_checks_test.sh PATH/TO/canary_checks_test}"
command -v "${PROMETHEUS}" >/dev/null ||
  skip_all "prometheus is not installed (hack/deps.sh installs the Debian package)"

WORK="$(mktemp -d)"
cleanup() {
  stop_prometheus "${WORK}"
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

PORT="$(free_port)"
start_prometheus "${WORK}" "${PORT}" || { fail "prometheus did not start"; exit 1; }

if "${BIN}" "http://127.0.0.1:${PORT}"; then
  pass "canary checks against Prometheus $("${PROMETHEUS}" --version 2>&1 | head -n1 | cut -d' ' -f3)"
else
  fail "canary checks (see the CUnit output above); Prometheus's log ends:"
  tail -n 20 "${WORK}/prometheus.log" >&2
fi
