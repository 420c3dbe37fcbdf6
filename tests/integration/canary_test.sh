#!/usr/bin/env bash
# Canary rollouts against the real control plane: nutshell-operator (the Canary
# controller only, watching one fresh namespace) runs out of cluster; the
# controller-manager runs the Deployments and the EndpointSlices; kwok makes pods Ready,
# except those whose image tag ends in "-broken" (hack/kwok/), which stay unready.
#
# Scenarios, each asserted on what a user sees (status, Deployments, Endpoints):
# initialization; a rollout that succeeds with the weight moving; one rolled back by the
# deadline (a broken image) with the primary untouched; one rolled back by failed checks
# (a rollout webhook answering 500, and a real Prometheus whose query result leaves its
# thresholdRange); a revision change mid-rollout; abort and retry;
# blue-green with a manual promotion; the user scaling the target; an operator restart
# mid-rollout; deletion giving the target its replicas back.
#
# Deadlines are 30 s: short enough to keep the suite fast, long enough for a loaded
# 2-core control plane to make a healthy canary ready (8 s was not).
#
# Usage: canary_test.sh PATH/TO/nutshell-operator
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${ROOT}/hack/lib/prometheus.sh"

OPERATOR="${1:?usage: canary_test.sh PATH/TO/nutshell-operator}"
require_cluster

WORK="$(mktemp -d)"
export KUBECACHEDIR="${WORK}/kube-cache"
NS="canary-test-$$"
MPORT="$(free_port)"
HOOK_PORT="$(free_port)"
PROM_PORT="$(free_port)"
PROM_UP=""
OP_PID=""
HOOK_PID=""

start_operator() {
  "${OPERATOR}" --leader-elect=false --controllers canary --canary-namespace "${NS}" \
    --metrics-listen "127.0.0.1:${MPORT}" --routes-listen 127.0.0.1:0 --log-level debug >>"${WORK}/operator.log" 2>&1 &
  OP_PID=$!
  wait_for 30 curl -fsS "http://127.0.0.1:${MPORT}/readyz"
}
stop_operator() {
  [ -n "${OP_PID}" ] || return 0
  kill -TERM "${OP_PID}" 2>/dev/null
  wait "${OP_PID}" 2>/dev/null
  OP_PID=""
}

cleanup() {
  stop_operator
  [ -n "${HOOK_PID}" ] && kill "${HOOK_PID}" 2>/dev/null
  [ -n "${PROM_UP}" ] && stop_prometheus "${WORK}/prometheus"
  # Without the operator the finalizers would hold the namespace: drop them.
  local c
  for c in $(kubectl -n "${NS}" get canaries -o name 2>/dev/null); do
    kubectl -n "${NS}" patch "${c}" --type=merge -p '{"metadata":{"finalizers":null}}' \
      >/dev/null 2>&1
  done
  kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  if [ "${FAILED}" -gt 0 ] && [ -f "${WORK}/operator.log" ]; then
    echo "--- last lines of the operator's log" >&2
    grep -v 'level=debug\| debug ' "${WORK}/operator.log" | tail -60 >&2
  fi
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

k() { kubectl -n "${NS}" "$@"; }
# cf CANARY JSONPATH: one field of a Canary's status or spec.
cf() { k get canary "$1" -o "jsonpath=$2" 2>/dev/null; }
phase() { cf "$1" '{.status.phase}'; }
phase_is() { [ "$(phase "$1")" = "$2" ]; }
weight() { cf "$1" '{.status.canaryWeight}'; }
weight_at_least() { [ "$(weight "$1")" -ge "$2" ] 2>/dev/null; }
image_of() { k get deployment "$1" -o 'jsonpath={.spec.template.spec.containers[0].image}'; }
replicas_of() { k get deployment "$1" -o 'jsonpath={.spec.replicas}'; }
ready_of() { k get deployment "$1" -o 'jsonpath={.status.readyReplicas}'; }
# Ready endpoints of a Service, counted over its EndpointSlices.
endpoints_ready() {
  k get endpointslices -l "kubernetes.io/service-name=$1" -o json |
    jq '[.items[].endpoints[]? | select(.conditions.ready == true)] | length'
}
events_of() {
  k get events --field-selector "involvedObject.kind=Canary,involvedObject.name=$1" \
    -o jsonpath='{range .items[*]}{.reason}{" "}{end}'
}
# wait_phase CANARY PHASE SECONDS DESCRIPTION
wait_phase() {
  if wait_for "$3" phase_is "$1" "$2"; then pass "$4"; else
    fail "$4: phase $(phase "$1"), message: $(cf "$1" '{.status.message}')"
  fi
}

# app NAME IMAGE REPLICAS: a Deployment like a user's (labels app=NAME, port http 8080).
app() {
  k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: $3
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      containers:
      - name: app
        image: $2
        ports: [{name: http, containerPort: 8080}]
EOF
}

# canary NAME STRATEGY_YAML [ANALYSIS_YAML]: a Canary with short intervals.
canary() {
  k apply -f - >/dev/null <<EOF
apiVersion: nutshell.io/v1alpha1
kind: Canary
metadata: {name: $1}
spec:
  targetRef: {name: $1}
  service: {port: 80, targetPort: http}
  strategy: $2
  analysis: ${3:-{threshold: 2\}}
  progressDeadlineSeconds: 30
EOF
}

# A user's webhook: answers with the status code written in ${WORK}/hook_status.
echo 200 >"${WORK}/hook_status"
python3 - "${HOOK_PORT}" "${WORK}/hook_status" >"${WORK}/hook.log" 2>&1 <<'EOF' &
import http.server, sys
port, status_file = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        code = int(open(status_file).read().strip())
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
HOOK_PID=$!

kubectl apply -f "${ROOT}/manifests/crds/" >/dev/null
kubectl wait --for condition=Established crd/canaries.nutshell.io --timeout=60s >/dev/null
kubectl create namespace "${NS}" >/dev/null
if start_operator; then pass "operator ready"; else fail "operator never became ready"; exit 1; fi

# ---------------------------------------------------------------- initialization
app web example/web:v1 2
wait_for 30 bash -c "[ \"\$(kubectl -n ${NS} get deployment web -o jsonpath='{.status.readyReplicas}')\" = 2 ]"
canary web '{canary: {stepWeight: 25, maxWeight: 50, interval: 2s}}' \
  "{threshold: 2, webhooks: [{name: smoke, type: rollout, url: \"http://127.0.0.1:${HOOK_PORT}/\", timeout: 2s}]}"
wait_phase web Initialized 40 "initialization reaches Initialized"
check "primary created from the target's template" "$(image_of web-primary)" "example/web:v1"
check "primary has the target's replicas" "$(replicas_of web-primary)" "2"
check "target scaled to zero" "$(replicas_of web)" "0"
check "primary selector does not overlap the target's" \
  "$(k get deployment web-primary -o 'jsonpath={.spec.selector.matchLabels.app}')" "web-primary"
for s in web web-primary web-canary; do
  k get service "${s}" >/dev/null 2>&1 && pass "Service ${s} exists" || fail "Service ${s} missing"
done
check "Promoted condition True" "$(cf web '{.status.conditions[?(@.type=="Promoted")].status}')" "True"
if wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get endpointslices -l kubernetes.io/service-name=web -o json | jq '[.items[].endpoints[]? | select(.conditions.ready == true)] | length')\" = 2 ]"; then
  pass "apex Service has the primary's 2 ready endpoints"
else fail "apex endpoints: $(endpoints_ready web)"; fi
REV1="$(cf web '{.status.lastPromotedRevision}')"
[ -n "${REV1}" ] && pass "lastPromotedRevision recorded" || fail "no lastPromotedRevision"

# ---------------------------------------------------------------- the user scales the target
k scale deployment web --replicas=3 >/dev/null
if wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get deployment web-primary -o jsonpath='{.spec.replicas}')\" = 3 ] && [ \"\$(kubectl -n ${NS} get deployment web -o jsonpath='{.spec.replicas}')\" = 0 ]"; then
  pass "kubectl scale of the target resizes the primary and the target goes back to 0"
else fail "after scale: primary $(replicas_of web-primary), target $(replicas_of web)"; fi
wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get deployment web-primary -o jsonpath='{.status.readyReplicas}')\" = 3 ]"

# ---------------------------------------------------------------- a rollout that succeeds
k set image deployment/web app=example/web:v2 >/dev/null
wait_phase web Progressing 20 "a new image starts a rollout (Progressing)"
if wait_for 30 weight_at_least web 1; then pass "canary weight in effect rises above 0 ($(weight web))"; else fail "weight stayed $(weight web)"; fi
if wait_for 30 bash -c "[ \"\$(kubectl -n ${NS} get endpointslices -l kubernetes.io/service-name=web -o json | jq '[.items[].endpoints[]? | select(.conditions.ready == true)] | length')\" -gt 3 ]"; then
  pass "apex endpoints include canary pods during the rollout"
else fail "apex endpoints during rollout: $(endpoints_ready web)"; fi
wait_phase web Succeeded 60 "rollout promoted (Succeeded)"
check "primary runs the new image" "$(image_of web-primary)" "example/web:v2"
check "canary weight back to 0" "$(weight web)" "0"
wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get deployment web -o jsonpath='{.status.replicas}')\" = '' ] || [ \"\$(kubectl -n ${NS} get deployment web -o jsonpath='{.status.replicas}')\" = 0 ]" &&
  pass "target scaled back to zero pods" || fail "target pods left: $(k get deployment web -o jsonpath='{.status.replicas}')"
check "lastPromotedRevision is the rolled out one" "$(cf web '{.status.lastPromotedRevision}')" "$(cf web '{.status.currentRevision}')"
ev="$(events_of web)"
for r in Initialized NewRevision AdvanceWeight Promoting Succeeded; do
  [[ " ${ev} " == *" ${r} "* ]] && pass "Event ${r} recorded" || fail "no Event ${r} in: ${ev}"
done

# ---------------------------------------------------------------- rolled back by the deadline
k set image deployment/web app=example/web:v3-broken >/dev/null
wait_phase web Progressing 20 "broken image starts a rollout"
wait_phase web Failed 90 "a canary that never becomes ready is rolled back (Failed)"
check "primary untouched by the failed rollout" "$(image_of web-primary)" "example/web:v2"
check "primary still serving all its replicas" "$(ready_of web-primary)" "3"
check "target scaled to zero after the rollback" "$(replicas_of web)" "0"
check "Promoted condition False after a rollback" "$(cf web '{.status.conditions[?(@.type=="Promoted")].status}')" "False"

# ---------------------------------------------------------------- rolled back by failed checks
echo 500 >"${WORK}/hook_status"
k set image deployment/web app=example/web:v4 >/dev/null
wait_phase web Progressing 20 "next image starts a rollout while the webhook fails"
if wait_for 30 bash -c "[ \"\$(kubectl -n ${NS} get canary web -o jsonpath='{.status.failedChecks}')\" -ge 1 ] 2>/dev/null"; then
  pass "failed rollout webhook counted ($(cf web '{.status.failedChecks}'))"
else fail "failedChecks: $(cf web '{.status.failedChecks}')"; fi
wait_phase web Failed 30 "failed checks reaching the threshold roll back"
[[ "$(cf web '{.status.message}')" == *smoke* ]] && pass "message names the failing webhook" ||
  fail "message: $(cf web '{.status.message}')"
check "primary untouched" "$(image_of web-primary)" "example/web:v2"

# ---------------------------------------------------------------- retry after failure
echo 200 >"${WORK}/hook_status"
k annotate canary web nutshell.io/request=retry >/dev/null
wait_phase web Succeeded 60 "retry (annotation) rolls the same revision out again, now passing"
check "primary runs the retried image" "$(image_of web-primary)" "example/web:v4"
check "the request annotation is removed once handled" \
  "$(cf web '{.metadata.annotations.nutshell\.io/request}')" ""

# ---------------------------------------------------------------- revision change mid-rollout
k set image deployment/web app=example/web:v5 >/dev/null
wait_for 30 weight_at_least web 1
REV5="$(cf web '{.status.currentRevision}')"
k set image deployment/web app=example/web:v6 >/dev/null
if wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get canary web -o jsonpath='{.status.currentRevision}')\" != '${REV5}' ]"; then
  pass "a second new revision mid-rollout replaces the first"
else fail "currentRevision still ${REV5}"; fi
wait_phase web Succeeded 60 "the newest revision is promoted"
check "primary runs the newest image" "$(image_of web-primary)" "example/web:v6"
[[ " $(events_of web) " == *" RestartAnalysis "* ]] && pass "Event RestartAnalysis recorded" ||
  fail "no RestartAnalysis in $(events_of web)"

# ---------------------------------------------------------------- abort
k patch canary web --type=merge -p '{"spec":{"strategy":{"canary":{"interval":"1h"}}}}' >/dev/null
k set image deployment/web app=example/web:v7 >/dev/null
wait_phase web Progressing 20 "rollout with a long interval in progress"
k annotate canary web nutshell.io/request=abort >/dev/null
wait_phase web Failed 20 "abort request rolls back"
check "primary untouched by the aborted rollout" "$(image_of web-primary)" "example/web:v6"

# ---------------------------------------------------------------- promote
k annotate canary web nutshell.io/request=retry >/dev/null
wait_phase web Progressing 20 "retry restarts the aborted revision"
k annotate canary web nutshell.io/request=promote --overwrite >/dev/null
wait_phase web Succeeded 40 "promote request skips the remaining steps"
check "primary runs the promoted image" "$(image_of web-primary)" "example/web:v7"

# ---------------------------------------------------------------- operator restart mid-rollout
k patch canary web --type=merge -p '{"spec":{"strategy":{"canary":{"interval":"3s","stepWeight":10,"maxWeight":50}}}}' >/dev/null
k set image deployment/web app=example/web:v8 >/dev/null
wait_for 40 bash -c "[ \"\$(kubectl -n ${NS} get canary web -o jsonpath='{.status.desiredWeight}')\" -ge 20 ] 2>/dev/null"
stop_operator
before="$(cf web '{.status.desiredWeight}')"
start_operator
sleep 1
after="$(cf web '{.status.desiredWeight}')"
[ "${after}" -ge "${before}" ] 2>/dev/null && pass "restarted operator resumes at step ${after} (was ${before})" ||
  fail "weight went from ${before} to ${after} across a restart"
wait_phase web Succeeded 60 "the resumed rollout completes"

# ---------------------------------------------------------------- blue-green, manual promotion
app shop example/shop:v1 2
wait_for 30 bash -c "[ \"\$(kubectl -n ${NS} get deployment shop -o jsonpath='{.status.readyReplicas}')\" = 2 ]"
# shop already has its Service (like Bookinfo's reviews): the Canary takes it over.
k create service clusterip shop --tcp=80:8080 >/dev/null
k set selector service shop app=shop >/dev/null
canary shop '{blueGreen: {iterations: 2, interval: 1s, autoPromote: false}}'
wait_phase shop Initialized 40 "blue-green Canary initialized"
check "an existing Service taken over as the apex selects only the apex label" \
  "$(k get service shop -o 'jsonpath={.spec.selector}')" '{"nutshell.io/apex":"shop"}'
if wait_for 20 bash -c "[ \"\$(kubectl -n ${NS} get endpointslices -l kubernetes.io/service-name=shop -o json | jq '[.items[].endpoints[]? | select(.conditions.ready == true)] | length')\" = 2 ]"; then
  pass "the taken-over apex serves the primary's 2 ready endpoints"
else fail "apex shop endpoints: $(endpoints_ready shop)"; fi
k set image deployment/shop app=example/shop:v2 >/dev/null
wait_phase shop Progressing 20 "blue-green rollout started"
if wait_for 30 bash -c "[ \"\$(kubectl -n ${NS} get canary shop -o jsonpath='{.status.iterations}')\" -ge 2 ] 2>/dev/null"; then
  pass "blue-green iterations counted"
else fail "iterations: $(cf shop '{.status.iterations}')"; fi
check "no traffic on the new version before the switch" "$(weight shop)" "0"
sleep 3
check "autoPromote false: waits for a promotion" "$(phase shop)" "Progressing"
k annotate canary shop nutshell.io/request=promote >/dev/null
wait_phase shop Succeeded 40 "manual promotion switches and completes"
check "blue-green primary runs the new image" "$(image_of shop-primary)" "example/shop:v2"

# ---------------------------------------------------------------- metrics from a real Prometheus
# The query counts the scrape targets that are up (Prometheus itself: 1). A range of
# min 1 passes; max 0 fails, and the message names the metric and the value.
if command -v "${PROMETHEUS}" >/dev/null && start_prometheus "${WORK}/prometheus" "${PROM_PORT}"; then
  PROM_UP=1
  metric() {
    echo "{threshold: 2, metrics: [{name: targets-up, address: \"http://127.0.0.1:${PROM_PORT}\", query: 'sum(up)', thresholdRange: $1}]}"
  }
  app api example/api:v1 1
  canary api '{canary: {stepWeight: 50, maxWeight: 50, interval: 2s}}' "$(metric '{min: 1}')"
  wait_phase api Initialized 40 "Canary with a Prometheus metric initialized"
  k set image deployment/api app=example/api:v2 >/dev/null
  wait_phase api Succeeded 60 "a metric within its thresholdRange lets the rollout through"
  k patch canary api --type=merge -p "{\"spec\":{\"analysis\":$(metric '{max: 0}' | python3 -c 'import sys,yaml,json; print(json.dumps(yaml.safe_load(sys.stdin)))')}}" >/dev/null
  k set image deployment/api app=example/api:v3 >/dev/null
  wait_phase api Failed 60 "a metric outside its thresholdRange rolls back"
  [[ "$(cf api '{.status.message}')" == *targets-up*1* ]] && pass "message names the metric and its value" ||
    fail "message: $(cf api '{.status.message}')"
  check "primary keeps the last good image" "$(image_of api-primary)" "example/api:v2"
else
  fail "cannot start Prometheus (${PROMETHEUS}; hack/deps.sh installs it)"
fi

# ---------------------------------------------------------------- deletion
k delete canary web --wait=false >/dev/null
if wait_for 40 bash -c "! kubectl -n ${NS} get canary web >/dev/null 2>&1"; then
  pass "Canary deletion completes"
else fail "Canary still there: $(phase web)"; fi
check "target gets its replicas back" "$(replicas_of web)" "3"
check "target runs the last promoted image" "$(image_of web)" "example/web:v8"
check "target is ready" "$(ready_of web)" "3"
check "apex Service kept, selecting the target's pods" \
  "$(k get service web -o 'jsonpath={.spec.selector.app}')" "web"
if wait_for 40 bash -c "! kubectl -n ${NS} get deployment web-primary >/dev/null 2>&1"; then
  pass "primary removed after the target serves"
else fail "primary still present"; fi
