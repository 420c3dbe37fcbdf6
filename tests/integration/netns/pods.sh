# shellcheck shell=bash
# pods.sh - what the network-namespace suites share (netns_proxy.sh, mesh_canary_test.sh):
# the reasons to skip, namespaces that are deleted at the end, and what makes a namespace a
# meshed pod (nutshell-init with the injector's arguments, nutshell-proxy as UID 1337).
# Sourced after lib.sh. Exits 77 (skip) through skip_all when something is missing.

NAMESPACES=() # deleted by netns_delete_all
PY=/usr/bin/python3
# The sidecar's identity: the UID nutshell-init's rules let through.
# shellcheck disable=SC2034 # AS_PROXY and INIT_ARGS are for the scripts that source this
AS_PROXY=(setpriv --reuid=1337 --regid=1337 --clear-groups)
# What the injector passes to nutshell-init (docs/init.md).
# shellcheck disable=SC2054,SC2034 # the commas are inside port lists
INIT_ARGS=(--proxy-port=15001 --inbound-port=15006 --proxy-uid=1337 --proxy-gid=1337
  --include-inbound-ports='*' --exclude-inbound-ports=15020,15090 --include-outbound-cidrs='*'
  --exclude-outbound-cidrs= --exclude-outbound-ports= --include-outbound-ports= --ipv6=auto)

# mkns NAME: a network namespace with lo up.
mkns() {
  ip netns add "$1" || return 1
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}

netns_delete_all() {
  local ns
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
}

# netns_require TOOL...: root, the tools, python3, network namespaces and the legacy
# iptables nat table, or skip.
netns_require() {
  [ "$(id -u)" -eq 0 ] || skip_all "needs root for network namespaces and iptables (run ctest as root)"
  local tool
  for tool in ip iptables-legacy setpriv timeout "$@"; do
    command -v "$tool" >/dev/null 2>&1 || skip_all "$tool is not installed (hack/deps.sh)"
  done
  [ -x "$PY" ] || skip_all "/usr/bin/python3 is not installed (the tests' apps and clients are python3)"
  local probe="netns-probe-$$"
  ip netns add "$probe" 2>/dev/null || skip_all "cannot create network namespaces (ip netns add failed)"
  if ! ip netns exec "$probe" iptables-legacy -t nat -S >/dev/null 2>&1; then
    ip netns del "$probe"
    skip_all "the kernel has no legacy iptables nat table (ip_tables/iptable_nat)"
  fi
  ip netns del "$probe"
}

# proxy_copy SRC DIR: a world-readable copy of nutshell-proxy in DIR (made world-readable
# too), since UID 1337 must reach it; prints its path.
proxy_copy() {
  chmod 755 "$2" && cp "$1" "$2/nutshell-proxy" && chmod 755 "$2/nutshell-proxy" &&
    echo "$2/nutshell-proxy"
}
