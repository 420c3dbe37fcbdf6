#!/usr/bin/env bash
# netns_proxy.sh - nutshell-proxy for real: two meshed "pods" in network namespaces.
#
# Usage: netns_proxy.sh NUTSHELL_INIT NUTSHELL_PROXY
#
# Topology (addresses exist only inside namespaces this script creates):
#   client pod (npx-cli-PID): eth0 10.233.0.1/24 fd00:233::1/64, default route via the server
#   server pod (npx-srv-PID): eth0 10.233.0.2/24 fd00:233::2/64
# Both pods are meshed as the injector does it: nutshell-init's rules, and nutshell-proxy running
# as UID 1337. The server pod runs the app: HTTP/1.1 on 8080 ("main"), 8081 ("v1"), 8082 ("v2"),
# 8083 (answers 503 to everything), a TCP echo on 9000 and a server-first echo on 9001 (python3).
# Every client connection goes app -> client proxy (15001) -> server proxy (15006) -> app, so
# each check crosses both proxies. Failing route backends for retries and outlier ejection: the
# 503 server; port 15090 of the server pod (not captured, nothing listens: the client proxy's
# connect is refused); port 7777 (captured, nothing listens: the server proxy resets or 503s).
# The client proxy splices opaque TCP, the server proxy copies it (--splice=off): both paths run.
# Exits 77 (skip) without root, iptables-legacy or python3.
# `cond && pass ... || fail ...` is safe in this file: pass only echoes and counts.
# shellcheck disable=SC2015
set -uo pipefail

INIT=${1:?usage: netns_proxy.sh NUTSHELL_INIT NUTSHELL_PROXY}
PROXY_SRC=${2:?usage: netns_proxy.sh NUTSHELL_INIT NUTSHELL_PROXY}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# shellcheck source-path=SCRIPTDIR source=netns/pods.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns/pods.sh"
netns_require curl

CLI="npx-cli-$$"
SRV="npx-srv-$$"
TMP=$(mktemp -d /tmp/npx-netns.XXXXXX)
cleanup() {
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  netns_delete_all
  if [ "$FAILED" -gt 0 ]; then # what the proxies said, for a failure seen only in CI
    for f in client-proxy server-proxy; do
      echo "--- last lines of $f.log" >&2
      tail -40 "$TMP/$f.log" >&2 2>/dev/null
    done
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

PROXY=$(proxy_copy "$PROXY_SRC" "$TMP") || exit 1

C() { ip netns exec "$CLI" "$@"; }
S() { ip netns exec "$SRV" "$@"; }

# The test's app (HTTP servers that answer with their name, echo servers) and client.
NETNS_DIR="$(dirname "${BASH_SOURCE[0]}")/netns"
client() { C timeout 60 "$PY" "$NETNS_DIR/http_client.py" "$@"; }

# ---------------------------------------------------------------- topology
mkns "$CLI" || exit 1
mkns "$SRV" || exit 1
ip -n "$CLI" link add eth0 type veth peer name eth0 netns "$SRV" || exit 1
ip -n "$CLI" addr add 10.233.0.1/24 dev eth0
ip -n "$CLI" -6 addr add fd00:233::1/64 dev eth0 nodad
ip -n "$SRV" addr add 10.233.0.2/24 dev eth0
ip -n "$SRV" -6 addr add fd00:233::2/64 dev eth0 nodad
ip -n "$CLI" link set eth0 up
ip -n "$SRV" link set eth0 up
# Service VIPs (10.233.100.0/24) are routed to the server pod, as kube-proxy's would be.
ip -n "$CLI" route add default via 10.233.0.2

for ns in "$CLI" "$SRV"; do
  out=$(ip netns exec "$ns" "$INIT" "${INIT_ARGS[@]}" 2>&1) || {
    fail "nutshell-init in $ns: $out"
    finish_tests
    exit 1
  }
done
pass "nutshell-init programmed both pods"

# Two routes: "reviews" by its service address (and port 80), "ratings" by Host only. Four more,
# by Host, with failing backends: "flaky" (one backend refuses connections), "shaky" (one answers
# 503), "closed" (one is a closed port behind the server's sidecar), "down" (only the 503 server);
# and "echo" by address, for opaque TCP, whose first backend refuses connections.
write_routes() { # VERSION REVIEWS_V1_WEIGHT REVIEWS_V2_WEIGHT
  cat >"$TMP/routes.json" <<JSON
{"version": $1, "routes": [
 {"host": "reviews.default.svc.cluster.local", "port": 80, "addresses": ["10.233.100.1"],
  "backends": [
   {"host": "reviews-v1.default.svc.cluster.local", "port": 8081, "address": "10.233.0.2", "weight": $2},
   {"host": "reviews-v2.default.svc.cluster.local", "port": 8082, "address": "10.233.0.2", "weight": $3}]},
 {"host": "ratings.default.svc.cluster.local",
  "backends": [
   {"host": "ratings-v1.default.svc.cluster.local", "port": 8081, "address": "10.233.0.2", "weight": 1},
   {"host": "ratings-v2.default.svc.cluster.local", "port": 8082, "address": "10.233.0.2", "weight": 3}]},
 {"host": "flaky.default.svc.cluster.local",
  "backends": [
   {"host": "dead.default.svc.cluster.local", "port": 15090, "address": "10.233.0.2"},
   {"host": "flaky-v1.default.svc.cluster.local", "port": 8081, "address": "10.233.0.2"}]},
 {"host": "shaky.default.svc.cluster.local",
  "backends": [
   {"host": "unavailable.default.svc.cluster.local", "port": 8083, "address": "10.233.0.2"},
   {"host": "shaky-v2.default.svc.cluster.local", "port": 8082, "address": "10.233.0.2"}]},
 {"host": "closed.default.svc.cluster.local",
  "backends": [
   {"host": "closed.default.svc.cluster.local", "port": 7777, "address": "10.233.0.2"},
   {"host": "closed-v1.default.svc.cluster.local", "port": 8081, "address": "10.233.0.2"}]},
 {"host": "down.default.svc.cluster.local",
  "backends": [{"host": "down-only.default.svc.cluster.local", "port": 8083, "address": "10.233.0.2"}]},
 {"host": "echo.default.svc.cluster.local", "addresses": ["10.233.100.2"],
  "backends": [
   {"host": "dead.default.svc.cluster.local", "port": 15090, "address": "10.233.0.2"},
   {"host": "echo-v1.default.svc.cluster.local", "port": 9000, "address": "10.233.0.2"}]}]}
JSON
  chmod 644 "$TMP/routes.json"
}
write_routes 1 90 10

# Background processes start without a shell function in between, so that $! (and the
# cleanup's `jobs -p`) is the program itself: ip netns exec, setpriv and env all exec.
ip netns exec "$SRV" "$PY" "$NETNS_DIR/app_server.py" 8080:main 8081:v1 8082:v2 fail=8083 echo=9000 banner=9001 \
  >"$TMP/app.log" 2>&1 &
# --sniff-timeout=3s: a server-first banner must arrive long before it (no detection delay).
# The client proxy retries with the defaults (2 per request, the default budget), gives up on a
# response head after 3 s and ejects failing backends for 6 s; a second one, started near the
# end, does not retry.
ip netns exec "$SRV" "${AS_PROXY[@]}" "$PROXY" --splice=off --sniff-timeout=3s >"$TMP/server-proxy.log" 2>&1 &
SPROXY=$!
CLIENT_PROXY_ARGS=(--concurrency=2 --header-timeout=2s --drain-timeout=5s --sniff-timeout=3s
  "--routes-file=$TMP/routes.json")
ip netns exec "$CLI" "${AS_PROXY[@]}" env POD_NAMESPACE=default "$PROXY" "${CLIENT_PROXY_ARGS[@]}" \
  --request-timeout=3s --ejection-time=6s >"$TMP/client-proxy.log" 2>&1 &
CPROXY=$!

C "$PROXY" wait --timeout=10s && S "$PROXY" wait --timeout=10s &&
  pass "nutshell-proxy wait: both proxies ready on /healthz/ready" || fail "proxies not ready"
for p in 8080 8081 8082 8083 9000 9001; do
  wait_for 10 S "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $p), 1)" ||
    fail "the test app is not listening on $p: $(cat "$TMP/app.log")"
done

metric() { # NS SERIES: the value of one exposition line, 0 if absent
  ip netns exec "$1" curl -s -m 5 http://127.0.0.1:15020/metrics |
    awk -v s="$2" 'index($0, s " ") == 1 { print $NF; found = 1 } END { if (!found) print 0 }'
}
OUT='direction="outbound"'
IN='direction="inbound"'
R_CONNECT="nutshell_proxy_retries_total{$OUT,reason=\"connect\"}"
R_503="nutshell_proxy_retries_total{$OUT,reason=\"503\"}"
R_RESET="nutshell_proxy_retries_total{$OUT,reason=\"reset\"}"
R_REFUSED="nutshell_proxy_retries_budget_exhausted_total{$OUT}"
AT_FAIL="nutshell_proxy_requests_total{$IN,code=\"503\",destination=\"10.233.0.2:8083\"}"

# ---------------------------------------------------------------- retry budget
# First, while the client proxy's budget is fresh (the floor of 30 retries per 10 s, plus 20 % of
# the requests): 25 GETs to a route whose only backend answers 503. Each asks for 2 retries; the
# budget grants 30 to 35 of the 50, refuses the rest, and every client gets the 503.
out=$(client rounds 10.233.0.2 8080 down 25 1)
d=$(metric "$CLI" "$R_503")
e=$(metric "$CLI" "$R_REFUSED")
seen=$(metric "$SRV" "$AT_FAIL")
[ "$out" = "round=1 s503=25" ] && [ "$d" -ge 30 ] && [ "$d" -le 35 ] && [ "$e" -ge 5 ] &&
  [ "$seen" -eq $((25 + d)) ] &&
  pass "retry budget: 25 GETs to an all-503 route, $d retries granted, $e refused, each client got the 503, the backend saw $seen" ||
  fail "retry budget: $out, retries $d, refused $e, backend saw $seen"

# ---------------------------------------------------------------- HTTP through both proxies
out=$(C curl -sS -m 10 http://10.233.0.2:8080/hello 2>&1)
[ "$out" = "hello from main" ] && pass "HTTP GET through two proxies" || fail "GET: $out"
out=$(C curl -sS -m 10 -g 'http://[fd00:233::2]:8080/hello' 2>&1)
[ "$out" = "hello from main" ] && pass "HTTP GET over IPv6 (IP6T_SO_ORIGINAL_DST; app reached over ::1)" || fail "GET v6: $out"

before=$(metric "$CLI" "nutshell_proxy_connections_total{$OUT}")
out=$(client keepalive 10.233.0.2 8080 200)
after=$(metric "$CLI" "nutshell_proxy_connections_total{$OUT}")
[ "$out" = "main=200" ] && [ $((after - before)) -eq 1 ] &&
  pass "keep-alive: 200 requests, one client connection" ||
  fail "keep-alive: $out, connections $before -> $after"

out=$(client pipeline 10.233.0.2 8080 30)
[ "$out" = "pipelined=30 ok=30" ] && pass "pipelining: 30 requests in one write, 30 responses in order (last one chunked)" ||
  fail "pipelining: $out"

out=$(C curl -sS -m 10 http://10.233.0.2:8080/chunked | wc -c)
[ "$out" -eq 4000 ] && pass "chunked response streamed (4000 bytes decoded by curl)" || fail "chunked: $out bytes"
out=$(client post 10.233.0.2 8080 200000)
[ "$out" = "status=200 same=True" ] && pass "chunked request body of 200 kB echoed back intact" || fail "chunked POST: $out"

out=$(client upgrade 10.233.0.2 8080)
[ "$out" = "status=101 echo=b'raw bytes \\x00\\x01\\xff after the upgrade'" ] &&
  pass "Upgrade: 101, then raw bytes relayed both ways" || fail "upgrade: $out"

out=$(client trace 10.233.0.2 8080)
sent=${out#sent=}
sent=${sent%% *}
seen=${out#*seen=}
if [ "${seen:0:36}" = "${sent:0:36}" ] && [ "${seen:36:16}" != "${sent:36:16}" ] && [ "${#seen}" -eq 55 ]; then
  pass "traceparent: same trace id, a new span id ($seen)"
else fail "traceparent: $out"; fi
out=$(C curl -sS -m 10 http://10.233.0.2:8080/headers | grep -c '^traceparent: 00-[0-9a-f]\{32\}-[0-9a-f]\{16\}-0[01]$')
[ "$out" -eq 1 ] && pass "traceparent added to a request that had none" || fail "no traceparent added"

# ---------------------------------------------------------------- opaque TCP
out=$(client echo 10.233.0.2 9000 3000000)
[ "$out" = "sent=3000000 received=3000000 same=True" ] &&
  pass "TCP echo: 3 MB byte for byte, then half-close answered by the server's FIN" || fail "echo: $out"
out=$(client echo fd00:233::2 9000 300000)
[ "$out" = "sent=300000 received=300000 same=True" ] && pass "TCP echo over IPv6" || fail "echo v6: $out"
out=$(client echo 10.233.0.2 9000 0)
[ "$out" = "sent=0 received=0 same=True" ] && pass "TCP: a client that only half-closes gets the server's FIN" || fail "empty echo: $out"
out=$(client banner 10.233.0.2 9001)
after=$(sed -E 's/.*after=([0-9.]+)s.*/\1/' <<<"$out")
if grep -qF "banner=b'220 banner\\r\\n'" <<<"$out" && grep -qF "echo=b'ping\\n'" <<<"$out" &&
  awk -v a="$after" 'BEGIN { exit !(a < 1.5) }'; then
  pass "server-first protocol: banner without waiting for the sniff timeout ($out)"
else fail "server-first: $out"; fi
tcp=$(metric "$SRV" "nutshell_proxy_tcp_connections_total{$IN}")
[ "$tcp" -ge 4 ] && pass "server proxy counted the opaque TCP connections ($tcp)" || fail "tcp connections: $tcp"

# ---------------------------------------------------------------- bad input
errs_before=$(metric "$CLI" "nutshell_proxy_http_request_errors_total{$OUT}")
out=$(client raw 10.233.0.2 8080 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')
[ "$out" = "status=400 connection=close" ] && pass "two Host headers: 400 and close" || fail "double host: $out"
out=$(client raw 10.233.0.2 8080 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
[ "$out" = "status=400 connection=close" ] && pass "Content-Length with Transfer-Encoding (smuggling): 400" || fail "CL+TE: $out"
big=$("$PY" -c 'print("X-Big: " + "a" * 70000, end="")')
out=$(client raw 10.233.0.2 8080 "GET / HTTP/1.1\\r\\nHost: a\\r\\n$big\\r\\n\\r\\n")
[ "$out" = "status=431 connection=close" ] && pass "a 70 kB head: 431" || fail "huge head: $out"
errs=$(metric "$CLI" "nutshell_proxy_http_request_errors_total{$OUT}")
[ $((errs - errs_before)) -eq 3 ] && pass "request errors counted (3)" || fail "request errors: $errs_before -> $errs"
grep -q 'refused a malformed HTTP request.*more than one host' "$TMP/client-proxy.log" &&
  pass "malformed request logged with its reason" || fail "no log line for the malformed request"
out=$(client slowloris 10.233.0.2 8080)
secs=$(sed -E 's/.*after=([0-9.]+).*/\1/' <<<"$out")
if grep -q "status=408" <<<"$out" && awk -v a="$secs" 'BEGIN { exit !(a >= 1.5 && a < 5) }'; then
  pass "slowloris: an unfinished head is answered 408 after --header-timeout=2s ($out)"
else fail "slowloris: $out"; fi
[ "$(metric "$CLI" "nutshell_proxy_header_timeouts_total{$OUT}")" -ge 1 ] && pass "header timeout counted" || fail "header timeout not counted"
kill -0 "$CPROXY" 2>/dev/null && kill -0 "$SPROXY" 2>/dev/null && pass "both proxies still running after bad input" ||
  fail "a proxy died"

# Random abuse for a few seconds (garbage, mutated heads, resets in the middle of messages,
# slow writers, upgrades, exact echoes): both proxies must survive and end with no
# connection left open.
out=$(client chaos 10.233.0.2 8080 6 9000)
rc=$?
[ $rc -eq 0 ] && pass "chaos: every echo exact, every connect accepted ($out)" || fail "chaos: rc=$rc $out"
kill -0 "$CPROXY" 2>/dev/null && kill -0 "$SPROXY" 2>/dev/null && pass "both proxies survived the chaos" ||
  fail "a proxy died in the chaos"
open_after() { # NS: open connections of both directions once things settle (<= 15 s)
  local n
  for _ in $(seq 1 75); do
    n=$(ip netns exec "$1" curl -s -m 5 http://127.0.0.1:15020/stats | awk -F': ' '$1 == "connections_open" { print $2 }')
    [ "$n" = 0 ] && break
    sleep 0.2
  done
  echo "${n:-?}"
}
c_open=$(open_after "$CLI")
s_open=$(open_after "$SRV")
[ "$c_open" = 0 ] && [ "$s_open" = 0 ] && pass "after the chaos no connection is left open in either proxy" ||
  fail "connections left open: client $c_open, server $s_open"

# Nothing listens on 7777 in the server pod: the server proxy's connect is refused, and the
# client must hear it at once: a reset, or a 503 if its request got in first.
out=$(client refused 10.233.0.2 7777)
[ "$out" = reset ] || [ "$out" = closed ] && pass "TCP to a closed port: the client sees the refusal ($out)" ||
  fail "closed port: $out"
t0=$SECONDS
code=$(C curl -s -m 10 -o /dev/null -w '%{http_code}' http://10.233.0.2:7777/)
rc=$?
# The reset may reach curl while it connects (7), sends (55) or receives (56); a 503 if the
# request got through the client proxy first. Never a hang, never a 200.
if { [ "$code" = 503 ] || { [ "$code" = 000 ] && [[ " 7 55 56 " == *" $rc "* ]]; }; } &&
  [ $((SECONDS - t0)) -le 3 ]; then
  pass "HTTP to a closed port: 503 or a reset, at once (code=$code rc=$rc)"
else fail "HTTP to a closed port: code=$code rc=$rc after $((SECONDS - t0)) s"; fi
[ "$(metric "$SRV" "nutshell_proxy_upstream_connect_errors_total{$IN}")" -ge 2 ] &&
  pass "server proxy counted the refused connects" || fail "connect errors not counted"

# ---------------------------------------------------------------- weighted routes
out=$(client keepalive 10.233.100.1 80 1000 reviews)
[ "$out" = "v1=900 v2=100" ] && pass "route by service address, 90/10 over 1000 requests on one connection: exactly $out" ||
  fail "weighted split by address: $out (want v1=900 v2=100)"
out=$(client keepalive 10.233.0.2 8080 1000 ratings)
[ "$out" = "v1=250 v2=750" ] && pass "route by Host \"ratings\" (POD_NAMESPACE=default), 1/3 over 1000 requests: exactly $out" ||
  fail "weighted split by Host: $out (want v1=250 v2=750)"
out=$(client conns 10.233.100.1 80 200 reviews)
v2=$(sed -nE 's/.*v2=([0-9]+).*/\1/p' <<<"$out")
# Each of the 2 workers keeps its own exact round-robin; two partial cycles are off by < 1 each.
[ -n "$v2" ] && [ "$v2" -ge 18 ] && [ "$v2" -le 22 ] &&
  pass "90/10 over 200 separate connections on 2 workers, each closed after its Connection: close: $out (exact per worker, within 2 overall)" ||
  fail "split over connections: $out"
v2=${v2:-0}
m1=$(metric "$CLI" "nutshell_proxy_requests_total{$OUT,code=\"200\",destination=\"reviews-v1.default.svc.cluster.local:8081\"}")
m2=$(metric "$CLI" "nutshell_proxy_requests_total{$OUT,code=\"200\",destination=\"reviews-v2.default.svc.cluster.local:8082\"}")
[ $((m1 + m2)) -eq 1200 ] && [ "$m2" -eq $((100 + v2)) ] &&
  pass "client /metrics counts the split by destination: v1=$m1 v2=$m2" || fail "metrics split: v1=$m1 v2=$m2 (want sum 1200, v2 $((100 + v2)))"
s1=$(metric "$SRV" "nutshell_proxy_requests_total{$IN,code=\"200\",destination=\"10.233.0.2:8081\"}")
s2=$(metric "$SRV" "nutshell_proxy_requests_total{$IN,code=\"200\",destination=\"10.233.0.2:8082\"}")
[ "$s1" -eq $((m1 + 250)) ] && [ "$s2" -eq $((m2 + 750)) ] &&
  pass "server /metrics counts the same requests inbound: 8081=$s1 8082=$s2" || fail "server metrics: 8081=$s1 8082=$s2"
hist=$(metric "$CLI" "nutshell_proxy_request_duration_seconds_count{$OUT}")
reqs=$(C curl -s -m 5 http://127.0.0.1:15020/metrics | awk -v s="nutshell_proxy_requests_total{$OUT," 'index($0, s) == 1 { n += $NF } END { print n + 0 }')
[ "$hist" -eq "$reqs" ] && [ "$hist" -gt 2400 ] && pass "latency histogram counts every request ($hist)" || fail "histogram $hist vs requests $reqs"
rx=$(metric "$CLI" "nutshell_proxy_received_bytes_total{$OUT}")
tx=$(metric "$CLI" "nutshell_proxy_sent_bytes_total{$OUT}")
[ "$rx" -gt 3000000 ] && [ "$tx" -gt 3000000 ] && pass "bytes in/out counted (rx=$rx tx=$tx)" || fail "bytes: rx=$rx tx=$tx"
[ "$(metric "$CLI" nutshell_proxy_routes_version)" = 1 ] && pass "route table version 1 in use" || fail "routes version"

# Reload on SIGHUP: a new split applies; a broken file is refused and the last good table stays.
write_routes 2 50 50
kill -HUP "$CPROXY"
wait_for 5 test "$(metric "$CLI" nutshell_proxy_routes_version)" = 2 || true
out=$(client keepalive 10.233.100.1 80 100 reviews)
[ "$out" = "v1=50 v2=50" ] && pass "SIGHUP: the reloaded table splits 50/50 ($out)" || fail "after reload: $out"
echo '{"version": 3, "routes": [{"host": "x", "backends": []}]}' >"$TMP/routes.json"
kill -HUP "$CPROXY"
for _ in $(seq 1 25); do
  [ "$(metric "$CLI" nutshell_proxy_routes_errors_total)" = 1 ] && break
  sleep 0.2
done
out=$(client keepalive 10.233.100.1 80 100 reviews)
[ "$out" = "v1=50 v2=50" ] && [ "$(metric "$CLI" nutshell_proxy_routes_version)" = 2 ] &&
  [ "$(metric "$CLI" nutshell_proxy_routes_errors_total)" = 1 ] &&
  pass "an invalid table is refused, counted, and the previous one keeps serving" || fail "after bad reload: $out"

# ---------------------------------------------------------------- admin
code=$(C curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST http://10.233.0.2:15020/quitquitquit)
[ "$code" = 403 ] && pass "/quitquitquit from another pod: 403" || fail "/quitquitquit remote: $code"
C curl -s -m 5 http://127.0.0.1:15020/stats | grep -q '^outbound.requests_total: [1-9]' &&
  pass "/stats answers in plain text" || fail "/stats"

# ---------------------------------------------------------------- failing backends
# "flaky": one backend refuses connections. On one connection (one worker): every GET answers
# 200, the 5 that were sent to the dead backend are retried on the other one, then it is
# ejected and gets no more. The route table is then reloaded with "flaky" unchanged: the
# ejection survives the swap (no new retry).
ej0=$(metric "$CLI" nutshell_proxy_outlier_ejections_total)
c0=$(metric "$CLI" "$R_CONNECT")
client rounds 10.233.0.2 8080 flaky 20 2 "$TMP/go" >"$TMP/flaky.out" 2>&1 &
FLAKY=$!
wait_for 15 grep -q '^round=1' "$TMP/flaky.out" || true
c1=$(metric "$CLI" "$R_CONNECT")
ej1=$(metric "$CLI" nutshell_proxy_outlier_ejections_total)
gauge=$(metric "$CLI" nutshell_proxy_outlier_ejected_backends)
[ "$(sed -n 1p "$TMP/flaky.out")" = "round=1 v1=20" ] && [ $((c1 - c0)) -eq 5 ] && [ $((ej1 - ej0)) -eq 1 ] &&
  [ "$gauge" -ge 1 ] &&
  pass "connect refused by one backend: 20 GETs all 200, 5 retried to the other backend, then it was ejected (ejections +1, gauge $gauge)" ||
  fail "flaky route: $(sed -n 1p "$TMP/flaky.out"), connect retries $c0 -> $c1, ejections $ej0 -> $ej1, gauge $gauge"
grep -q 'route backend ejected after consecutive failures.*dead.default.svc.cluster.local:15090' "$TMP/client-proxy.log" &&
  pass "the ejection is logged with the route backend" || fail "no log line for the ejection"
write_routes 3 40 60
kill -HUP "$CPROXY"
wait_for 5 test "$(metric "$CLI" nutshell_proxy_routes_version)" = 3 || true
touch "$TMP/go.2"
wait "$FLAKY"
c2=$(metric "$CLI" "$R_CONNECT")
[ "$(sed -n 2p "$TMP/flaky.out")" = "round=2 v1=20" ] && [ "$c2" -eq "$c1" ] &&
  [ "$(metric "$CLI" nutshell_proxy_routes_version)" = 3 ] &&
  pass "after a route table reload the dead backend is still ejected: 20 more GETs, no retry" ||
  fail "after reload: $(sed -n 2p "$TMP/flaky.out"), connect retries $c1 -> $c2"

# "shaky": one backend answers 503 to everything; GETs are retried on the other one.
r0=$(metric "$CLI" "$R_503")
seen0=$(metric "$SRV" "$AT_FAIL")
out=$(client rounds 10.233.0.2 8080 shaky 20 1)
r1=$(metric "$CLI" "$R_503")
seen1=$(metric "$SRV" "$AT_FAIL")
[ "$out" = "round=1 v2=20" ] && [ $((r1 - r0)) -eq 5 ] && [ $((seen1 - seen0)) -eq 5 ] &&
  pass "503 from one backend: 20 GETs all 200, the 5 that got a 503 retried on the healthy backend, then it was ejected" ||
  fail "shaky route: $out, 503 retries $r0 -> $r1, 503s served $seen0 -> $seen1"

# "closed": one backend is a pod whose app is gone: its sidecar accepts, then resets or answers
# 503 (the reset may even come with the connect's completion). Through both sidecars, the client
# sees none of it.
retries() { echo $(($(metric "$CLI" "$R_CONNECT") + $(metric "$CLI" "$R_RESET") + $(metric "$CLI" "$R_503"))); }
x0=$(retries)
out=$(client rounds 10.233.0.2 8080 closed 20 1)
x1=$(retries)
[ "$out" = "round=1 v1=20" ] && [ $((x1 - x0)) -eq 5 ] &&
  pass "a backend pod without its app (reset or 503 from its sidecar): 20 GETs all 200, 5 retried, then ejected" ||
  fail "closed route: $out, retries $x0 -> $x1"

# "down": its only backend answers 503 (never ejected: that would leave nothing). A GET is sent
# three times (2 retries) and the client gets the 503; a POST with a body is sent once.
r0=$(metric "$CLI" "$R_503")
seen0=$(metric "$SRV" "$AT_FAIL")
out=$(client rounds 10.233.0.2 8080 down 1 1)
r1=$(metric "$CLI" "$R_503")
seen1=$(metric "$SRV" "$AT_FAIL")
[ "$out" = "round=1 s503=1" ] && [ $((r1 - r0)) -eq 2 ] && [ $((seen1 - seen0)) -eq 3 ] &&
  pass "a single 503 backend: a GET tried 3 times (--max-retries=2), the client gets the 503" ||
  fail "down route GET: $out, retries $r0 -> $r1, served $seen0 -> $seen1"
out=$(client raw 10.233.0.2 8080 'POST /x HTTP/1.1\r\nHost: down\r\nContent-Length: 5\r\n\r\nhello')
r2=$(metric "$CLI" "$R_503")
seen2=$(metric "$SRV" "$AT_FAIL")
[ "$out" = "status=503 connection=" ] && [ "$r2" -eq "$r1" ] && [ $((seen2 - seen1)) -eq 1 ] &&
  pass "a POST with a body to the 503 backend is not retried: sent once, the client gets the 503" ||
  fail "down route POST: $out, retries $r1 -> $r2, served $seen1 -> $seen2"

# Opaque TCP to a routed address: a refused connect goes to the other backend before any byte is
# sent. Each worker alternates its picks and starts with the dead backend: 6 connections over 2
# workers make 3 to 6 retries.
c0=$(metric "$CLI" "$R_CONNECT")
ok=0
for _ in 1 2 3 4 5 6; do
  [ "$(client echo 10.233.100.2 9000 20000)" = "sent=20000 received=20000 same=True" ] && ok=$((ok + 1))
done
c1=$(metric "$CLI" "$R_CONNECT")
[ "$ok" -eq 6 ] && [ $((c1 - c0)) -ge 3 ] && [ $((c1 - c0)) -le 6 ] &&
  pass "opaque TCP to a routed address with a dead backend: 6 echoes exact, $((c1 - c0)) connects retried" ||
  fail "routed TCP: $ok of 6 echoes exact, connect retries $c0 -> $c1"

# --request-timeout=3s: /slow?s=5 answers after 5 s. (3 s, not less: a first IPv6
# connection between the namespaces can take a second, neighbour discovery included.)
t0=$(metric "$CLI" "nutshell_proxy_request_timeouts_total{$OUT}")
out=$(C curl -s -m 10 -o /dev/null -w '%{http_code} %{time_total}' 'http://10.233.0.2:8080/slow?s=5')
t1=$(metric "$CLI" "nutshell_proxy_request_timeouts_total{$OUT}")
secs=${out#* }
if [ "${out%% *}" = 504 ] && awk -v a="$secs" 'BEGIN { exit !(a >= 2.9 && a < 4.5) }' &&
  [ $((t1 - t0)) -eq 1 ]; then
  pass "no response head within --request-timeout=3s: 504 after $secs s, counted"
else fail "request timeout: $out, timeouts $t0 -> $t1"; fi

# Ejections end after --ejection-time=6s (more for a backend ejected again): the gauge goes
# back to 0 with a log line for each, without any request to look.
wait_for 20 test "$(metric "$CLI" nutshell_proxy_outlier_ejected_backends)" = 0 || true
gauge=$(metric "$CLI" nutshell_proxy_outlier_ejected_backends)
backs=$(grep -c 'route backend back from ejection' "$TMP/client-proxy.log")
ejs=$(metric "$CLI" nutshell_proxy_outlier_ejections_total)
[ "$gauge" = 0 ] && [ "$backs" -eq "$ejs" ] && [ "$ejs" -ge 3 ] &&
  pass "every ejection ended on time: gauge 0, $backs return lines for $ejs ejections" ||
  fail "ejections: gauge $gauge, $backs returns logged, $ejs ejections"

# A second client proxy with --max-retries=0: the failures reach the client.
kill -TERM "$CPROXY"
wait "$CPROXY"
rc=$?
[ $rc -eq 0 ] && pass "first client proxy drained and exited 0" || fail "first client proxy exit: $rc"
ip netns exec "$CLI" "${AS_PROXY[@]}" env POD_NAMESPACE=default "$PROXY" "${CLIENT_PROXY_ARGS[@]}" \
  --max-retries=0 >"$TMP/client-proxy2.log" 2>&1 &
CPROXY=$!
C "$PROXY" wait --timeout=10s || fail "second client proxy not ready"
out=$(client rounds 10.233.0.2 8080 flaky 10 1)
grep -q 's503=' <<<"$out" && grep -q 'v1=' <<<"$out" && [ "$(metric "$CLI" "$R_CONNECT")" = 0 ] &&
  pass "--max-retries=0: a refused connect is answered 503, not retried ($out)" ||
  fail "--max-retries=0, flaky: $out, connect retries $(metric "$CLI" "$R_CONNECT")"
seen0=$(metric "$SRV" "$AT_FAIL")
out=$(client rounds 10.233.0.2 8080 down 1 1)
seen1=$(metric "$SRV" "$AT_FAIL")
[ "$out" = "round=1 s503=1" ] && [ $((seen1 - seen0)) -eq 1 ] && [ "$(metric "$CLI" "$R_503")" = 0 ] &&
  pass "--max-retries=0: a 503 goes to the client as it is, sent once" ||
  fail "--max-retries=0, down: $out, served $seen0 -> $seen1"

# ---------------------------------------------------------------- drain
ip netns exec "$CLI" curl -sS -m 10 -o "$TMP/slow.out" http://10.233.0.2:8080/slow &
SLOW=$!
sleep 0.5
t0=$SECONDS
kill -TERM "$CPROXY"
sleep 0.2
code=$(C curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/healthz/ready)
[ "$code" = 503 ] && pass "draining: /healthz/ready answers 503" || fail "ready while draining: $code"
C curl -s -m 2 -o /dev/null http://10.233.0.2:8080/hello && fail "a new connection was accepted while draining" ||
  pass "draining: new connections are refused"
wait "$SLOW"
rc=$?
[ $rc -eq 0 ] && [ "$(cat "$TMP/slow.out")" = "slow done" ] &&
  pass "SIGTERM: the in-flight request finished" || fail "in-flight request: rc=$rc $(cat "$TMP/slow.out" 2>/dev/null)"
wait "$CPROXY"
rc=$?
[ $rc -eq 0 ] && [ $((SECONDS - t0)) -lt 5 ] && pass "SIGTERM: drained and exited 0 in $((SECONDS - t0)) s" ||
  fail "client proxy exit: rc=$rc after $((SECONDS - t0)) s"
code=$(S curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:15020/quitquitquit)
wait "$SPROXY"
rc=$?
[ "$code" = 200 ] && [ $rc -eq 0 ] && pass "/quitquitquit from the pod: 200, then exit 0" || fail "quitquitquit: code=$code rc=$rc"
if grep -qiE 'AddressSanitizer|runtime error|LeakSanitizer' "$TMP/client-proxy.log" "$TMP/client-proxy2.log" \
  "$TMP/server-proxy.log"; then
  fail "sanitizer reports:"
  cat "$TMP/client-proxy.log" "$TMP/client-proxy2.log" "$TMP/server-proxy.log" >&2
fi

finish_tests
