# Shared helpers for the integration scripts. Sourced, not executed.
# Each check prints "PASS: ..." or "FAIL: ..."; finish_tests prints the closing
# "N passed, M failed" line and sets the exit status.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../../hack/lib/common.sh
source "${ROOT}/hack/lib/common.sh"

PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }

# check DESCRIPTION ACTUAL EXPECTED
check() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# Skips the whole script (ctest SKIP_RETURN_CODE 77) with a reason a human can act on.
skip_all() {
  echo "SKIP: $*"
  exit 77
}

# Uses the running test cluster, or skips when there is none.
require_cluster() {
  "${ROOT}/hack/cluster.sh" status >/dev/null 2>&1 ||
    skip_all "no local control plane running (start it with: hack/cluster.sh up)"
  eval "$("${ROOT}/hack/cluster.sh" env)"
}

# A free TCP port on 127.0.0.1, asked of the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for SECONDS COMMAND...: retries COMMAND until it succeeds or time runs out.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "${SECONDS}" -lt "${deadline}" ] || return 1
    sleep 0.2
  done
}

# claim_namespace NS: makes sure NS exists and is not being deleted, and prints "created"
# when this call created it (so the caller knows to delete it at the end). A namespace an
# earlier suite deleted with --wait=false is still Terminating for a while: creating
# objects in it then fails, and it disappears under the caller a moment later.
claim_namespace() {
  local phase deadline=$((SECONDS + 120))
  while phase="$(kubectl get namespace "$1" -o 'jsonpath={.status.phase}' 2>/dev/null)" &&
    [ "${phase}" = Terminating ]; do
    [ "${SECONDS}" -lt "${deadline}" ] || { echo "namespace $1 still Terminating after 120 s" >&2; return 1; }
    sleep 0.5
  done
  [ -n "${phase}" ] && return 0
  kubectl create namespace "$1" >/dev/null || return 1
  echo created
}

# The closing line; its status is the verdict. For a script's last command.
finish_tests() {
  echo "${PASSED} passed, ${FAILED} failed"
  [ "${FAILED}" -eq 0 ]
}

# For an EXIT trap: `trap 'end_tests CLEANUP_COMMAND...' EXIT` (or `trap end_tests EXIT`).
# Runs the cleanup, prints the closing line and exits with the verdict explicitly: bash
# ignores the status of an EXIT trap's last command, so without the `exit` a script with
# failed checks would still exit 0. An unexpected early exit (non-zero status, no FAIL
# recorded) counts as a failure; a skip before any check stays a skip (77).
end_tests() {
  local rc=$?
  [ $# -eq 0 ] || "$@"
  if [ "${rc}" -eq 77 ] && [ $((PASSED + FAILED)) -eq 0 ]; then
    exit 77
  fi
  [ "${rc}" -eq 0 ] || [ "${FAILED}" -gt 0 ] || FAILED=1
  finish_tests && exit 0
  exit 1
}
