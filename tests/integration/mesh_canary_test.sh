#!/usr/bin/env bash
# The mesh's exact canary split, end to end: a real Canary on the real control plane moves
# through its steps; nutshell-operator serves the route table made from its status on the
# discovery port; the client pod's nutshell-proxy long-polls it and splits requests for the
# apex Service exactly as the Canary's weight says.
#
# Usage: mesh_canary_test.sh NUTSHELL_INIT NUTSHELL_PROXY NUTSHELL_OPERATOR
#
# Topology (addresses exist only inside namespaces this script creates, plus one veth end in
# the root namespace for the operator's discovery port):
#   client pod (mc-cli-PID): eth0 10.235.0.1/24 to the server pod; eth1 10.236.0.2/30 to the
#     root namespace (10.236.0.1/30: the operator's discovery address)
#   server pod (mc-srv-PID): eth0 10.235.0.2/24, and the ClusterIPs the API server gave the
#     Canary's three Services (apex, -primary, -canary), so that a connection to a Service
#     lands in this pod as kube-proxy would deliver it; the app answers on each address with
#     its name ("apex", "primary", "canary").
# Both pods are meshed: nutshell-init's rules and nutshell-proxy as UID 1337.
#
# Scenario: the Canary holds at its first step (10%: interval 1h), then moves to 50% when
# its interval is shortened and holds there (a confirm-promotion webhook says no), then is
# promoted. At 10% and 50% 1,000 requests on one connection split exactly; a connection
# kept open across the updates loses no request; with the operator stopped the proxy keeps
# its table; after the promotion the table has no route and requests go to the apex
# Service again.
#
# Skips (77) without root, iptables-legacy, python3 or the local control plane.
# shellcheck disable=SC2015 # `cond && pass || fail`: pass only echoes and counts
set -uo pipefail

INIT=${1:?usage: mesh_canary_test.sh NUTSHELL_INIT NUTSHELL_PROXY NUTSHELL_OPERATOR}
PROXY_SRC=${2:?usage: mesh_canary_test.sh NUTSHELL_INIT NUTSHELL_PROXY NUTSHELL_OPERATOR}
OPERATOR=${3:?usage: mesh_canary_test.sh NUTSHELL_INIT NUTSHELL_PROXY NUTSHELL_OPERATOR}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NETNS_DIR="$(dirname "${BASH_SOURCE[0]}")/netns"

# shellcheck source-path=SCRIPTDIR source=netns/pods.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns/pods.sh"
netns_require curl jq
require_cluster

CLI="mc-cli-$$"
SRV="mc-srv-$$"
HOSTIF="mc-$$"
OPADDR=10.236.0.1
TMP=$(mktemp -d /tmp/mesh-canary.XXXXXX)
export KUBECACHEDIR="$TMP/kube-cache"
APPNS="mesh-canary-$$"
MPORT="$(free_port)"
DPORT="$(free_port)"
HOOK_PORT="$(free_port)"
OP_PID=""

stop_operator() {
  [ -n "$OP_PID" ] || return 0
  kill -TERM "$OP_PID" 2>/dev/null
  wait "$OP_PID" 2>/dev/null
  OP_PID=""
}
cleanup() {
  stop_operator
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  netns_delete_all
  ip link del "$HOSTIF" 2>/dev/null
  kubectl -n "$APPNS" patch canary web --type=merge -p '{"metadata":{"finalizers":null}}' \
    >/dev/null 2>&1
  kubectl delete namespace "$APPNS" --wait=false --ignore-not-found >/dev/null 2>&1
  if [ "$FAILED" -gt 0 ]; then
    for f in operator client-proxy server-proxy; do
      echo "--- last lines of $f.log" >&2
      grep -v ' debug ' "$TMP/$f.log" 2>/dev/null | tail -25 >&2
    done
  fi
  rm -rf "$TMP"
}
trap 'end_tests cleanup' EXIT

PROXY=$(proxy_copy "$PROXY_SRC" "$TMP") || exit 1
C() { ip netns exec "$CLI" "$@"; }
S() { ip netns exec "$SRV" "$@"; }
client() { C timeout 60 "$PY" "$NETNS_DIR/http_client.py" "$@"; }
# split N HOST: N requests on one connection to the apex address, counted by answering
# app. The connection kept open in the background pauses meanwhile: it draws from the same
# weighted round-robin, which is exact over any N consecutive requests that are a multiple
# of 100 (the weights' sum).
split() {
  touch "$TMP/steady.pause"
  sleep 0.1
  client keepalive "$APEX_IP" 8080 "$1" "$2"
  rm -f "$TMP/steady.pause"
}
k() { kubectl -n "$APPNS" "$@"; }
cf() { k get canary web -o "jsonpath=$1" 2>/dev/null; }
status_is() { [ "$(cf '{.status.phase}')" = "$1" ] && [ "$(cf '{.status.desiredWeight}')" = "$2" ]; }
metric() { # NETNS SERIES: the value of one line of the proxy's /metrics, 0 if absent
  ip netns exec "$1" curl -s -m 5 http://127.0.0.1:15020/metrics |
    awk -v s="$2" 'index($0, s " ") == 1 { print $NF; found = 1 } END { if (!found) print 0 }'
}
served_version() { curl -s -m 5 "http://$OPADDR:$DPORT/v1/routes" | jq -r .version; }
# The client proxy uses the table the operator serves now.
proxy_current() {
  local v
  v="$(served_version)" && [ -n "$v" ] && [ "$(metric "$CLI" nutshell_proxy_routes_version)" = "$v" ]
}

# ---------------------------------------------------------------- the cluster side
# A confirm-promotion webhook that says no until told otherwise (the file holds the code).
echo 403 >"$TMP/gate_status"
"$PY" - "$HOOK_PORT" "$TMP/gate_status" >"$TMP/gate.log" 2>&1 <<'EOF' &
import http.server, sys
port, status_file = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(int(open(status_file).read().strip()))
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF

kubectl apply -f "$ROOT/manifests/crds/" >/dev/null
kubectl wait --for condition=Established crd/canaries.nutshell.io --timeout=60s >/dev/null
kubectl create namespace "$APPNS" >/dev/null || { fail "create namespace $APPNS"; exit 1; }
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: example/web:v1
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: nutshell.io/v1alpha1
kind: Canary
metadata: {name: web}
spec:
  targetRef: {name: web}
  service: {port: 8080, targetPort: http}
  strategy: {canary: {stepWeights: [10, 50], interval: 1h}}
  analysis:
    threshold: 2
    webhooks:
    - {name: gate, type: confirm-promotion, url: "http://127.0.0.1:${HOOK_PORT}/", timeout: 2s}
  progressDeadlineSeconds: 60
EOF

# The operator's discovery port is reached from the client pod over its own veth.
ip link add "$HOSTIF" type veth peer name eth1 || { fail "veth to the root namespace"; exit 1; }
mkns "$CLI" || exit 1
mkns "$SRV" || exit 1
ip link set eth1 netns "$CLI"
ip addr add "$OPADDR/30" dev "$HOSTIF"
ip link set "$HOSTIF" up
ip -n "$CLI" addr add 10.236.0.2/30 dev eth1
ip -n "$CLI" link set eth1 up

"$OPERATOR" --leader-elect=false --controllers canary --canary-namespace "$APPNS" \
  --metrics-listen "127.0.0.1:$MPORT" --routes-listen "$OPADDR:$DPORT" --log-level debug \
  >>"$TMP/operator.log" 2>&1 &
OP_PID=$!
wait_for 30 curl -fsS "http://127.0.0.1:$MPORT/readyz" && pass "operator ready" ||
  { fail "operator not ready"; exit 1; }
wait_for 60 status_is Initialized 0 && pass "Canary Initialized" ||
  { fail "Canary not Initialized: $(cf '{.status.phase}') $(cf '{.status.message}')"; exit 1; }
ip_of() { k get service "$1" -o 'jsonpath={.spec.clusterIP}'; }
APEX_IP="$(ip_of web)"
PRIMARY_IP="$(ip_of web-primary)"
CANARY_IP="$(ip_of web-canary)"
[ -n "$APEX_IP" ] && [ -n "$PRIMARY_IP" ] && [ -n "$CANARY_IP" ] &&
  pass "Services web, web-primary, web-canary have ClusterIPs ($APEX_IP $PRIMARY_IP $CANARY_IP)" ||
  { fail "ClusterIPs: '$APEX_IP' '$PRIMARY_IP' '$CANARY_IP'"; exit 1; }
out="$(curl -s -m 5 "http://$OPADDR:$DPORT/v1/routes")"
[ "$(jq -c .routes <<<"$out")" = "[]" ] && pass "no rollout, no route: $out" || fail "table before the rollout: $out"
code="$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://$OPADDR:$DPORT/v1/routes?version=x")"
check "a bad version is refused" "$code" 400
t0=$SECONDS
v="$(served_version)"
code="$(curl -s -o /dev/null -w '%{http_code}' -m 10 "http://$OPADDR:$DPORT/v1/routes?version=$v&wait=2")"
[ "$code" = 304 ] && [ $((SECONDS - t0)) -ge 1 ] &&
  pass "long-poll on the current version: held, then 304 after its wait" || fail "long-poll: $code after $((SECONDS - t0)) s"

# ---------------------------------------------------------------- the pods
ip -n "$CLI" link add eth0 type veth peer name eth0 netns "$SRV" || exit 1
ip -n "$CLI" addr add 10.235.0.1/24 dev eth0
ip -n "$SRV" addr add 10.235.0.2/24 dev eth0
for a in "$APEX_IP" "$PRIMARY_IP" "$CANARY_IP"; do ip -n "$SRV" addr add "$a/32" dev eth0; done
ip -n "$CLI" link set eth0 up
ip -n "$SRV" link set eth0 up
ip -n "$CLI" route add default via 10.235.0.2
for ns in "$CLI" "$SRV"; do
  out=$(ip netns exec "$ns" "$INIT" "${INIT_ARGS[@]}" 2>&1) || { fail "nutshell-init in $ns: $out"; exit 1; }
done
pass "nutshell-init programmed both pods"

ip netns exec "$SRV" "$PY" "$NETNS_DIR/app_server.py" "$APEX_IP:8080:apex" \
  "$PRIMARY_IP:8080:primary" "$CANARY_IP:8080:canary" >"$TMP/app.log" 2>&1 &
ip netns exec "$SRV" "${AS_PROXY[@]}" "$PROXY" >"$TMP/server-proxy.log" 2>&1 &
# One worker: its weighted round-robin is exact over every 100 requests.
ip netns exec "$CLI" "${AS_PROXY[@]}" env POD_NAMESPACE="$APPNS" "$PROXY" --concurrency=1 \
  "--discovery-address=$OPADDR:$DPORT" --discovery-wait=5s >"$TMP/client-proxy.log" 2>&1 &
CPROXY=$!
C "$PROXY" wait --timeout=10s && S "$PROXY" wait --timeout=10s && pass "both proxies ready" ||
  fail "proxies not ready"
wait_for 10 S "$PY" -c "import socket; socket.create_connection(('$APEX_IP', 8080), 1)" ||
  fail "the test app is not listening: $(cat "$TMP/app.log")"
wait_for 15 proxy_current && pass "the client proxy loaded the operator's table" ||
  fail "proxy table $(metric "$CLI" nutshell_proxy_routes_version), operator $(served_version)"

out=$(client keepalive "$APEX_IP" 8080 100 web)
check "without a rollout requests reach the apex Service" "$out" "apex=100"

# ---------------------------------------------------------------- 10%
touch "$TMP/steady.log"
client steady "$APEX_IP" 8080 web "$TMP/steady.stop" "$TMP/steady.pause" >"$TMP/steady.log" 2>&1 &
STEADY=$!
k set image deployment/web app=example/web:v2 >/dev/null
wait_for 60 status_is Progressing 10 && pass "rollout at its first step: Progressing, desiredWeight 10" ||
  fail "status: $(cf '{.status.phase}') weight $(cf '{.status.desiredWeight}'): $(cf '{.status.message}')"
route_weight() { curl -s -m 5 "http://$OPADDR:$DPORT/v1/routes" | jq -r '.routes[0].backends[1].weight'; }
wait_for 10 test "$(route_weight)" = 10 && pass "the operator serves web -> web-canary at weight 10" ||
  fail "served table: $(curl -s -m 5 "http://$OPADDR:$DPORT/v1/routes")"
wait_for 15 proxy_current && pass "the client proxy has the new table (long-poll)" || fail "proxy did not pick up the table"
out=$(split 1000 web)
check "10% step: 1,000 requests split exactly" "$out" "canary=100 primary=900"
out=$(split 100 "web.$APPNS.svc.cluster.local")
check "the route also matches the full host name" "$out" "canary=10 primary=90"
mc=$(metric "$CLI" "nutshell_proxy_requests_total{direction=\"outbound\",code=\"200\",destination=\"web-canary.$APPNS.svc.cluster.local:8080\"}")
[ "$mc" -ge 110 ] && pass "client /metrics counts requests to web-canary ($mc)" || fail "canary destination metric: $mc"

# ---------------------------------------------------------------- 50%, held by the gate
k patch canary web --type=merge -p '{"spec":{"strategy":{"canary":{"interval":"1s"}}}}' >/dev/null
wait_for 60 status_is Progressing 50 && pass "a shorter interval moves the rollout to 50" ||
  fail "status: $(cf '{.status.phase}') weight $(cf '{.status.desiredWeight}')"
wait_for 10 test "$(route_weight)" = 50 && wait_for 15 proxy_current &&
  pass "the 50% table reached the client proxy" || fail "50% table not in use"
out=$(split 1000 web)
check "50% step: 1,000 requests split exactly" "$out" "canary=500 primary=500"
check "still Progressing while the gate says no" "$(cf '{.status.phase}')" Progressing

# ---------------------------------------------------------------- the operator away
stop_operator
out=$(split 200 web)
check "operator stopped: the proxy keeps serving its last table" "$out" "canary=100 primary=100"
kill -0 "$CPROXY" 2>/dev/null && pass "client proxy still running without the operator" || fail "client proxy died"
"$OPERATOR" --leader-elect=false --controllers canary --canary-namespace "$APPNS" \
  --metrics-listen "127.0.0.1:$MPORT" --routes-listen "$OPADDR:$DPORT" --log-level debug \
  >>"$TMP/operator.log" 2>&1 &
OP_PID=$!
wait_for 30 curl -fsS "http://127.0.0.1:$MPORT/readyz" && wait_for 40 proxy_current &&
  pass "operator back: the proxy reconnects to the same table" || fail "after the operator restart"

# ---------------------------------------------------------------- promotion
echo 200 >"$TMP/gate_status"
wait_for 90 status_is Succeeded 0 && pass "gate opened: promoted (Succeeded)" ||
  fail "status: $(cf '{.status.phase}') $(cf '{.status.message}')"
wait_for 10 test "$(curl -s -m 5 "http://$OPADDR:$DPORT/v1/routes" | jq -c .routes)" = "[]" &&
  wait_for 15 proxy_current && pass "after the promotion the table has no route" || fail "table after promotion"
out=$(client keepalive "$APEX_IP" 8080 100 web)
check "requests go to the apex Service again" "$out" "apex=100"

touch "$TMP/steady.stop"
wait "$STEADY"
src=$?
out=$(cat "$TMP/steady.log")
[ "$src" = 0 ] && [[ "$out" == *apex=* ]] && [[ "$out" == *canary=* ]] && [[ "$out" == *primary=* ]] &&
  pass "one connection kept open through every table change lost no request ($out)" ||
  fail "steady connection: exit $src, $out"
ops=$(curl -s -m 5 "http://127.0.0.1:$MPORT/metrics" | awk '/^nutshell_operator_route_responses_total\{code="200"\}/ { print $NF }')
[ "${ops:-0}" -ge 1 ] && pass "operator /metrics counts route tables served ($ops)" || fail "route responses metric: $ops"
