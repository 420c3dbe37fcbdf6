# shellcheck shell=bash disable=SC2034
# Shared settings for the hack/ scripts. Sourced, not executed.
# Keeps the cache and state locations in one place so tools.sh, cluster.sh and the
# integration tests always agree on them.

NUTSHELL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/versions.env
source "${NUTSHELL_ROOT}/hack/versions.env"

# The cache lives outside the checkout so that `git clean` and fresh worktrees keep it.
NUTSHELL_CACHE="${NUTSHELL_CACHE:-${HOME}/.cache/nutshell}"
NUTSHELL_BIN="${NUTSHELL_CACHE}/bin"
NUTSHELL_STATE="${NUTSHELL_STATE:-${NUTSHELL_CACHE}/cluster}"

# Minor version number ("34" for v1.34.4), needed for version ldflags.
k8s_minor() {
  local v="${KUBERNETES_VERSION#v}"
  v="${v#*.}"
  echo "${v%%.*}"
}

log() { echo "$(basename "$0"): $*" >&2; }
die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }
