#!/usr/bin/env bash
# netns_init.sh - nutshell-init against the real kernel, in throwaway network namespaces.
#
# Usage: netns_init.sh NUTSHELL_INIT NETNS_ORIGDST
#
# Topology (all addresses exist only inside namespaces this script creates):
#   pod  (nsi-pod-PID):  lo, eth0 10.231.0.1/24 fd00:231::1/64
#   peer (nsi-peer-PID): lo, eth0 10.231.0.2/24 fd00:231::2/64   -- "another host"
# The pod runs nutshell-init with the injector's arguments; listeners from netns_origdst play
# the proxy (15001 outbound, 15006 inbound) and report SO_ORIGINAL_DST, so every assertion is
# about where a real TCP connection ended up. Exits 77 (skip) without root or iptables-legacy.
# `cond && pass ... || fail ...` is safe in this file: pass only echoes and counts.
# shellcheck disable=SC2015
set -uo pipefail

INIT=${1:?usage: netns_init.sh NUTSHELL_INIT NETNS_ORIGDST}
ORIG_SRC=${2:?usage: netns_init.sh NUTSHELL_INIT NETNS_ORIGDST}
# pass, fail, skip_all, finish_tests: the project's shared script conventions.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

skip() { skip_all "$@"; }
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces and iptables (run ctest as root)"
for tool in ip iptables-legacy iptables-legacy-save ip6tables-legacy-save setpriv timeout; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (apt-get install iptables iproute2 util-linux coreutils)"
done

POD="nsi-pod-$$"
PEER="nsi-peer-$$"
PROBE="nsi-probe-$$"
TMP=$(mktemp -d /tmp/nsi-netns.XXXXXX)
NAMESPACES=()
cleanup() {
  # Background listeners die with their namespace's processes; kill ours explicitly first.
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkns() {
  ip netns add "$1" || return 1
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}

mkns "$PROBE" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
ip netns exec "$PROBE" iptables-legacy -t nat -S >/dev/null 2>&1 ||
  skip "the kernel has no legacy iptables nat table (ip_tables/iptable_nat)"
ip netns del "$PROBE"

# The proxy user must be able to run the helper: keep a world-readable copy.
chmod 755 "$TMP"
mkdir -m 755 "$TMP/bin"
cp "$ORIG_SRC" "$TMP/bin/origdst" && chmod 755 "$TMP/bin/origdst"
ORIG="$TMP/bin/origdst"

P() { ip netns exec "$POD" "$@"; }
Q() { ip netns exec "$PEER" "$@"; }
AS_PROXY=(setpriv --reuid=1337 --regid=1337 --clear-groups)

# shellcheck disable=SC2054 # the commas are inside port lists
INJECTOR_ARGS=(--proxy-port=15001 --inbound-port=15006 --proxy-uid=1337 --proxy-gid=1337
  --include-inbound-ports='*' --exclude-inbound-ports=15020,15090 --include-outbound-cidrs='*'
  --exclude-outbound-cidrs= --exclude-outbound-ports= --include-outbound-ports= --ipv6=auto)

# ---------------------------------------------------------------- topology
mkns "$POD" || exit 1
mkns "$PEER" || exit 1
ip -n "$POD" link add eth0 type veth peer name eth0 netns "$PEER" || exit 1
ip -n "$POD" addr add 10.231.0.1/24 dev eth0
ip -n "$POD" -6 addr add fd00:231::1/64 dev eth0 nodad
ip -n "$PEER" addr add 10.231.0.2/24 dev eth0
ip -n "$PEER" -6 addr add fd00:231::2/64 dev eth0 nodad
ip -n "$POD" link set eth0 up
ip -n "$PEER" link set eth0 up

# Wait (bounded) until both sides can reach each other before blaming nutshell-init.
for _ in $(seq 1 50); do
  P ip -6 addr show dev eth0 | grep -q tentative || break
  sleep 0.1
done

# ---------------------------------------------------------------- helpers
# listen NS NAME PORT: starts a one-shot listener, returns once it is listening (<= 5 s).
listen() {
  local ns=$1 name=$2 port=$3
  rm -f "$TMP/$name.ready" "$TMP/$name.out"
  timeout 20 ip netns exec "$ns" "$ORIG" listen "$port" "$TMP/$name.ready" 10 >"$TMP/$name.out" 2>&1 &
  echo $! >"$TMP/$name.pid"
  for _ in $(seq 1 50); do
    [ -e "$TMP/$name.ready" ] && return 0
    sleep 0.1
  done
  echo "listener $name on port $port did not start" >&2
  return 1
}
# heard NAME: waits (<= 20 s) for the listener and prints what it saw.
heard() {
  wait "$(cat "$TMP/$1.pid")" 2>/dev/null
  cat "$TMP/$1.out"
}
# expect_at DESCRIPTION NAME PATTERN: the listener NAME reported a line matching PATTERN.
expect_at() {
  local desc=$1 out
  out=$(heard "$2")
  if grep -q -- "$3" <<<"$out"; then pass "$desc ($out)"; else fail "$desc: expected '$3', listener said '$out'"; fi
}
# connect NS [PREFIX...] ADDR PORT: a client connection from NS; 0 if it got an answer.
connect_from() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@" >/dev/null 2>&1
}
# Both nat tables without comments, and with policy counters zeroed: any libiptc commit
# (iptables-legacy -N included) resets them, and they are not rules.
nat_save() {
  { P iptables-legacy-save -t nat; P ip6tables-legacy-save -t nat; } |
    grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]$/[0:0]/'
}
count_jumps() { nat_save | grep -c -- "-A $1 .*-j $2\$"; }

# Foreign state that must survive every run and the cleanup.
P iptables-legacy -t nat -N FOREIGN
P iptables-legacy -t nat -A FOREIGN -j RETURN
P iptables-legacy -t nat -A POSTROUTING -o eth0 -j FOREIGN
P ip6tables-legacy -t nat -A POSTROUTING -o eth0 -j RETURN
BASELINE=$(nat_save)

# ---------------------------------------------------------------- usage errors and help
out=$(P "$INIT" --exclude-inbound-ports=15020,99999 2>&1)
rc=$?
if [ $rc -eq 2 ] && grep -q -- '--exclude-inbound-ports' <<<"$out" && grep -q '99999' <<<"$out"; then
  pass "bad port: exit 2 naming the flag and the value"
else fail "bad port: rc=$rc out=$out"; fi
out=$(P env NUTSHELL_EXCLUDE_OUTBOUND_CIDRS=10.0.0.0/33 "$INIT" 2>&1)
rc=$?
if [ $rc -eq 2 ] && grep -q NUTSHELL_EXCLUDE_OUTBOUND_CIDRS <<<"$out" && grep -q '10.0.0.0/33' <<<"$out"; then
  pass "bad CIDR in the environment: exit 2 naming the variable and the value"
else fail "bad CIDR: rc=$rc out=$out"; fi
out=$("$INIT" --help)
rc=$?
missing=""
for v in NUTSHELL_PROXY_PORT NUTSHELL_INBOUND_PORT NUTSHELL_PROXY_UID NUTSHELL_PROXY_GID \
  NUTSHELL_INCLUDE_INBOUND_PORTS NUTSHELL_EXCLUDE_INBOUND_PORTS NUTSHELL_INCLUDE_OUTBOUND_CIDRS \
  NUTSHELL_EXCLUDE_OUTBOUND_CIDRS NUTSHELL_EXCLUDE_OUTBOUND_PORTS NUTSHELL_INCLUDE_OUTBOUND_PORTS \
  NUTSHELL_IPV6 --dry-run --cleanup "Exit codes"; do
  grep -q -- "$v" <<<"$out" || missing="$missing $v"
done
if [ $rc -eq 0 ] && [ -z "$missing" ]; then pass "--help documents every flag, variable and exit code"; else fail "--help lacks:$missing"; fi
[ "$(nat_save)" = "$BASELINE" ] && pass "failed runs and --help left the tables alone" || fail "tables changed by a failed run"

# ---------------------------------------------------------------- first run
out=$(P "$INIT" "${INJECTOR_ARGS[@]}" 2>&1)
rc=$?
[ $rc -eq 0 ] && pass "nutshell-init with the injector's arguments: exit 0" || fail "nutshell-init: rc=$rc $out"
grep -q 'ipv6=on' <<<"$out" && pass "--ipv6=auto found the pod's global IPv6 address" || fail "ipv6 auto: $out"

# The kernel holds exactly what --dry-run prints (plus the foreign rules).
P "$INIT" "${INJECTOR_ARGS[@]}" --dry-run | grep -v '^#' >"$TMP/dry"
nat_save | grep -v -e FOREIGN -e '-o eth0 -j RETURN' >"$TMP/saved"
if diff -u "$TMP/dry" "$TMP/saved" >"$TMP/diff"; then
  pass "iptables-legacy-save and ip6tables-legacy-save equal --dry-run"
else
  fail "saved rules differ from --dry-run:"
  cat "$TMP/diff"
fi
grep -q -- '-A NUTSHELL_INBOUND -p tcp -m tcp --dport 15020 -j RETURN' "$TMP/saved" &&
  grep -q -- '-A NUTSHELL_REDIRECT -p tcp -j REDIRECT --to-ports 15001' "$TMP/saved" &&
  grep -q -- '-A NUTSHELL_OUTPUT -m owner --uid-owner 1337 -j RETURN' "$TMP/saved" &&
  pass "expected rules present" || fail "expected rules missing"

# ---------------------------------------------------------------- traffic
listen "$POD" out4 15001
connect_from "$POD" "$ORIG" connect 10.231.0.2 8080
expect_at "outbound TCP to the other host reaches 15001 with the original destination" out4 'orig=10.231.0.2:8080 '

listen "$POD" in4 15006
connect_from "$PEER" "$ORIG" connect 10.231.0.1 9080
expect_at "inbound TCP from the other host reaches 15006 with the original destination" in4 'orig=10.231.0.1:9080 '

listen "$POD" adm 15020
if connect_from "$PEER" "$ORIG" connect 10.231.0.1 15020; then :; fi
expect_at "excluded inbound port 15020 is reached directly" adm 'local=10.231.0.1:15020 '

listen "$PEER" uid 8080
connect_from "$POD" "${AS_PROXY[@]}" "$ORIG" connect 10.231.0.2 8080
expect_at "traffic of UID 1337 goes to the other host directly" uid 'local=10.231.0.2:8080 '

listen "$POD" lo1 7070
connect_from "$POD" "$ORIG" connect 127.0.0.1 7070
expect_at "app to app over 127.0.0.1 stays direct" lo1 'local=127.0.0.1:7070 '

listen "$POD" lo2 7070
connect_from "$POD" "$ORIG" connect 10.231.0.1 7070
expect_at "app to its own pod IP stays direct" lo2 'local=10.231.0.1:7070 '

listen "$POD" vip 15006
connect_from "$POD" "${AS_PROXY[@]}" "$ORIG" connect 10.231.0.1 9080
expect_at "proxy to the pod's own IP goes back through inbound capture" vip 'orig=10.231.0.1:9080 '

listen "$POD" out6 15001
connect_from "$POD" "$ORIG" connect fd00:231::2 8080
expect_at "IPv6 outbound TCP reaches 15001 with the original destination" out6 'orig=\[fd00:231::2\]:8080 '

listen "$POD" in6 15006
connect_from "$PEER" "$ORIG" connect fd00:231::1 9080
expect_at "IPv6 inbound TCP reaches 15006 with the original destination" in6 'orig=\[fd00:231::1\]:9080 '

# ---------------------------------------------------------------- idempotency
before=$(nat_save)
P "$INIT" "${INJECTOR_ARGS[@]}" >/dev/null 2>&1
rc=$?
after=$(nat_save)
if [ $rc -eq 0 ] && [ "$before" = "$after" ]; then pass "a second run leaves exactly one rule set"; else fail "second run changed the rules (rc=$rc)"; fi

# ---------------------------------------------------------------- options, each re-run over the last
run_with() {
  P "$INIT" "${INJECTOR_ARGS[@]}" "$@" >"$TMP/run.log" 2>&1 || {
    fail "nutshell-init $*: $(cat "$TMP/run.log")"
    return 1
  }
  [ "$(count_jumps OUTPUT NUTSHELL_OUTPUT)" = 2 ] && [ "$(count_jumps PREROUTING NUTSHELL_INBOUND)" = 2 ] ||
    fail "after re-run with $*: jumps are not exactly one per table"
}

run_with --exclude-outbound-ports=8081
listen "$PEER" xport 8081
connect_from "$POD" "$ORIG" connect 10.231.0.2 8081
expect_at "excluded outbound port goes direct" xport 'local=10.231.0.2:8081 '
listen "$POD" xport2 15001
connect_from "$POD" "$ORIG" connect 10.231.0.2 8080
expect_at "other outbound ports are still captured" xport2 'orig=10.231.0.2:8080 '

run_with --exclude-outbound-cidrs=10.231.0.2/32
listen "$PEER" xcidr 8080
connect_from "$POD" "$ORIG" connect 10.231.0.2 8080
expect_at "excluded outbound CIDR goes direct" xcidr 'local=10.231.0.2:8080 '

run_with --include-outbound-cidrs=10.99.0.0/16
listen "$PEER" icidr 8080
connect_from "$POD" "$ORIG" connect 10.231.0.2 8080
expect_at "a destination outside include-outbound-cidrs goes direct" icidr 'local=10.231.0.2:8080 '

run_with --include-outbound-cidrs= --include-outbound-ports=8443
listen "$POD" iport 15001
connect_from "$POD" "$ORIG" connect 10.231.0.2 8443
expect_at "include-outbound-ports captures with no CIDR capture" iport 'orig=10.231.0.2:8443 '

run_with --include-inbound-ports=9080
listen "$POD" iin 15006
connect_from "$PEER" "$ORIG" connect 10.231.0.1 9080
expect_at "an included inbound port is captured" iin 'orig=10.231.0.1:9080 '
listen "$POD" iin2 7071
connect_from "$PEER" "$ORIG" connect 10.231.0.1 7071
expect_at "other inbound ports are not" iin2 'local=10.231.0.1:7071 '

# ---------------------------------------------------------------- cleanup
P "$INIT" --cleanup >"$TMP/run.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ "$(nat_save)" = "$BASELINE" ]; then
  pass "--cleanup removes everything it made and nothing else"
else
  fail "--cleanup: rc=$rc"
  diff <(echo "$BASELINE") <(nat_save)
fi
listen "$PEER" direct 8080
connect_from "$POD" "$ORIG" connect 10.231.0.2 8080
expect_at "after --cleanup connections go direct" direct 'local=10.231.0.2:8080 '
P "$INIT" --cleanup >/dev/null 2>&1 && [ "$(nat_save)" = "$BASELINE" ] &&
  pass "a second --cleanup is a no-op" || fail "second --cleanup"

# ---------------------------------------------------------------- privilege and conflicts
NOCAP="nsi-nocap-$$"
mkns "$NOCAP"
out=$(ip netns exec "$NOCAP" "${AS_PROXY[@]}" "$INIT" "${INJECTOR_ARGS[@]}" 2>&1)
rc=$?
[ $rc -eq 3 ] && grep -q CAP_NET_ADMIN <<<"$out" && pass "non-root without CAP_NET_ADMIN: exit 3" || fail "no-cap (uid 1337): rc=$rc $out"
out=$(ip netns exec "$NOCAP" setpriv --bounding-set=-net_admin,-net_raw --inh-caps=-all "$INIT" "${INJECTOR_ARGS[@]}" 2>&1)
rc=$?
[ $rc -eq 3 ] && pass "root without CAP_NET_ADMIN/CAP_NET_RAW: exit 3" || fail "no-cap (root): rc=$rc $out"

if command -v iptables-nft >/dev/null 2>&1; then
  NFT="nsi-nft-$$"
  mkns "$NFT"
  if ip netns exec "$NFT" iptables-nft -t nat -N NUTSHELL_OUTPUT 2>/dev/null; then
    out=$(ip netns exec "$NFT" "$INIT" "${INJECTOR_ARGS[@]}" 2>&1)
    rc=$?
    legacy=$(ip netns exec "$NFT" iptables-legacy-save -t nat 2>/dev/null | grep -c NUTSHELL_)
    [ $rc -eq 5 ] && grep -q 'nftables already has chain NUTSHELL_OUTPUT' <<<"$out" && [ "$legacy" = 0 ] &&
      pass "NUTSHELL_* chains in nftables: exit 5, legacy table untouched" || fail "nft conflict: rc=$rc legacy=$legacy $out"
  else
    echo "note - nf_tables unavailable: nft conflict case not run"
  fi
fi

finish_tests
