#!/usr/bin/env bash
# kubectl-nutshell against a real kube-apiserver, run the way users run it: through
# kubectl's plugin discovery (`kubectl nutshell ...`, the binary's folder first in PATH).
# No operator runs here: the test writes the Canary's status through the status
# subresource, as any client may, to put it in each phase, and checks that promote, abort
# and retry add the nutshell.io/request annotation or refuse with exit code 1 and a
# message; that status prints the table, the detailed view with the newest Events, and
# JSON; that the namespace comes from -n, else the kubeconfig context; and the not-found,
# unreachable-server and usage (exit code 2) errors.
#
# Usage: plugin_test.sh BUILD/plugin/kubectl-nutshell   (needs: hack/cluster.sh up)
# Everything lives in a namespace of its own, deleted at the end; the Canary CRD is
# deleted only if it was not installed before the test.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="${1:-}"
if [ -z "${BIN}" ] || [ ! -x "${BIN}" ]; then
  skip_all "usage: $0 PATH/TO/kubectl-nutshell (built)"
fi
BIN="$(cd "$(dirname "${BIN}")" && pwd)/$(basename "${BIN}")"
[ "$(basename "${BIN}")" = kubectl-nutshell ] || skip_all "the plugin must be named kubectl-nutshell"
require_cluster
command -v kubectl >/dev/null || skip_all "kubectl missing (hack/tools.sh installs it)"
command -v jq >/dev/null || skip_all "jq missing (hack/deps.sh installs it)"

WORK="$(mktemp -d)"
export KUBECACHEDIR="${WORK}/kube-cache"
# kubectl finds plugins in PATH: ours first, so that no other kubectl-nutshell wins.
PATH="$(dirname "${BIN}"):${PATH}"
export PATH
NS="plugin-test-$$"
CRD=canaries.nutshell.io
CRD_PREEXISTING=false

cleanup() {
  kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  "${CRD_PREEXISTING}" || kubectl delete crd "${CRD}" --ignore-not-found --wait=false >/dev/null 2>&1
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# run ARGS...: runs `kubectl nutshell ARGS`, leaving OUT (stdout), ERR (stderr), RC.
run() {
  OUT="$(kubectl nutshell "$@" 2>"${WORK}/stderr")"
  RC=$?
  ERR="$(cat "${WORK}/stderr")"
}

# has_text DESCRIPTION NEEDLE HAYSTACK
has_text() {
  if [[ "$3" == *"$2"* ]]; then pass "$1"; else fail "$1: '$2' not in: $3"; fi
}
lacks_text() {
  if [[ "$3" != *"$2"* ]]; then pass "$1"; else fail "$1: '$2' should not be in: $3"; fi
}

request_annotation() {
  kubectl get canary "$1" -n "${NS}" -o json | jq -r '.metadata.annotations["nutshell.io/request"] // "none"'
}

# set_status NAME JSON: replaces what the operator would have written (merge patch on the
# status subresource; null removes a field).
set_status() {
  kubectl patch canary "$1" -n "${NS}" --subresource=status --type=merge -p "{\"status\": $2}" \
    >/dev/null
}

# The operator acting on a request: it removes the annotation.
clear_request() {
  kubectl annotate canary "$1" -n "${NS}" nutshell.io/request- >/dev/null 2>&1
}

canary_json() {
  jq -n --arg ns "${NS}" --arg name "$1" '{apiVersion: "nutshell.io/v1alpha1", kind: "Canary",
      metadata: {name: $name, namespace: $ns},
      spec: {targetRef: {name: $name}, service: {port: 9080},
             strategy: {canary: {stepWeight: 10}}}}'
}

rfc3339() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# --- usage: no cluster access needed
run version
check "version exits 0" "${RC}" 0
has_text "version names the plugin" "kubectl-nutshell " "${OUT}"
if kubectl plugin list 2>/dev/null | grep -qx "${BIN}"; then
  pass "kubectl plugin list finds ${BIN}"
else
  fail "kubectl plugin list does not list ${BIN}: $(kubectl plugin list 2>&1)"
fi
run
check "no command: exit 2" "${RC}" 2
has_text "no command: usage on stderr" "kubectl nutshell promote NAME" "${ERR}"
run promote
check "promote without NAME: exit 2" "${RC}" 2
has_text "promote without NAME: says so" "promote needs the Canary's name" "${ERR}"
run abort a b
check "abort with two names: exit 2" "${RC}" 2
run frobnicate
check "unknown command: exit 2" "${RC}" 2
has_text "unknown command: named" 'unknown command "frobnicate"' "${ERR}"
run status x -A
check "status NAME -A: exit 2" "${RC}" 2
run status -o yaml
check "status -o yaml: exit 2" "${RC}" 2
run retry x --bogus
check "unknown flag: exit 2" "${RC}" 2
has_text "unknown flag: hint names the command's help" "See 'kubectl nutshell retry --help'" "${ERR}"
for cmd in promote abort retry status version; do
  run "${cmd}" --help
  check "${cmd} --help exits 0" "${RC}" 0
  has_text "${cmd} --help prints its usage" "kubectl nutshell ${cmd}" "${OUT}"
done
run -h
check "-h exits 0" "${RC}" 0
has_text "-h lists the commands" "kubectl nutshell status [NAME]" "${OUT}"

# --- an API server that does not answer (a closed port on loopback)
port="$(free_port)"
kubectl config view --raw --minify -o json |
  jq --arg s "https://127.0.0.1:${port}" '.clusters[0].cluster.server = $s' >"${WORK}/dead.json"
run status --kubeconfig "${WORK}/dead.json" -n "${NS}"
check "unreachable API server: exit 1" "${RC}" 1
has_text "unreachable API server: says so" "cannot reach the API server at https://127.0.0.1:${port}" "${ERR}"
run status --kubeconfig "${WORK}/missing-kubeconfig"
check "missing kubeconfig: exit 1" "${RC}" 1

# --- the CRD and the Canaries
kubectl get crd "${CRD}" >/dev/null 2>&1 && CRD_PREEXISTING=true
if out="$(kubectl apply -f "${ROOT}/manifests/crds/${CRD}.yaml" 2>&1)" &&
  kubectl wait --for=condition=Established "crd/${CRD}" --timeout=60s >/dev/null 2>&1; then
  pass "Canary CRD installed"
else
  fail "Canary CRD not installed: ${out}"
  exit 1
fi
kubectl create namespace "${NS}" >/dev/null
wait_for 30 kubectl get canaries -n "${NS}"

run status -n "${NS}"
check "status of an empty namespace: exit 0" "${RC}" 0
check "status of an empty namespace: kubectl's words" "${ERR}" "No resources found in ${NS} namespace."

canary_json reviews | kubectl apply -f - >/dev/null
canary_json ratings | kubectl apply -f - >/dev/null
UID_REVIEWS="$(kubectl get canary reviews -n "${NS}" -o jsonpath='{.metadata.uid}')"

# --- not found
run promote nope -n "${NS}"
check "promote a missing Canary: exit 1" "${RC}" 1
check "promote a missing Canary: message" "${ERR}" "Error: canary \"nope\" not found in namespace \"${NS}\""
run status nope -n "${NS}"
check "status of a missing Canary: exit 1" "${RC}" 1
check "status of a missing Canary: message" "${ERR}" "Error: canary \"nope\" not found in namespace \"${NS}\""
run abort reviews -n "${NS}-elsewhere"
check "the right name in the wrong namespace: exit 1" "${RC}" 1
has_text "the wrong namespace is named" "in namespace \"${NS}-elsewhere\"" "${ERR}"

# --- no status yet: nothing applies
run promote reviews -n "${NS}"
check "promote before any status: exit 1" "${RC}" 1
has_text "promote before any status: why" "it has no status yet" "${ERR}"
check "promote before any status: no annotation" "$(request_annotation reviews)" none

# --- Progressing at weight 20
t0="$(rfc3339 $(($(date +%s) - 125)))"
set_status reviews "{\"phase\": \"Progressing\", \"canaryWeight\": 20, \"failedChecks\": 2,
  \"currentRevision\": \"7d9f8b6c5\", \"lastPromotedRevision\": \"6b5c4d3e2\",
  \"lastTransitionTime\": \"${t0}\", \"message\": \"Advancing canary weight to 30\",
  \"conditions\": [{\"type\": \"Promoted\", \"status\": \"False\", \"reason\": \"Progressing\",
    \"message\": \"rolling out revision 7d9f8b6c5\", \"lastTransitionTime\": \"${t0}\"}]}"

run retry reviews -n "${NS}"
check "retry while Progressing: exit 1" "${RC}" 1
check "retry while Progressing: message" "${ERR}" \
  "Error: cannot retry canary \"reviews\" in phase Progressing: a retry applies only when Failed (use --force to request it anyway)"
check "retry while Progressing: no annotation" "$(request_annotation reviews)" none

run promote reviews -n "${NS}"
check "promote while Progressing: exit 0" "${RC}" 0
check "promote while Progressing: report" "${OUT}" \
  "canary.nutshell.io/reviews: promotion requested (phase Progressing, weight 20)"
check "promote while Progressing: annotation" "$(request_annotation reviews)" promote

run promote reviews --namespace="${NS}"
check "promote again: exit 0" "${RC}" 0
has_text "promote again: already requested" "promotion already requested" "${OUT}"

run abort reviews -n "${NS}"
check "abort while Progressing: exit 0" "${RC}" 0
check "abort while Progressing: report" "${OUT}" \
  "canary.nutshell.io/reviews: abort requested (phase Progressing, weight 20); replaces the pending request \"promote\""
check "abort while Progressing: annotation" "$(request_annotation reviews)" abort

# --- status: the table and the detailed view
run status -n "${NS}"
check "status table: exit 0" "${RC}" 0
check "status table: header" "$(head -1 <<<"${OUT}" | tr -s ' ')" "NAME PHASE WEIGHT FAILED REVISION PROMOTED AGE"
row="$(grep '^reviews ' <<<"${OUT}" | tr -s ' ')"
check "status table: the Canary's row" "${row% *}" "reviews Progressing 20 2/5 7d9f8b6c5 False"
row="$(grep '^ratings ' <<<"${OUT}" | tr -s ' ')"
check "status table: a Canary without status" "${row% *}" "ratings <none> <none> <none> <none> <none>"
if [[ "$(grep '^reviews ' <<<"${OUT}" | awk '{print $NF}')" =~ ^[0-9]+(s|m[0-9]*s?)$ ]]; then
  pass "status table: age of a new Canary"
else
  fail "status table: age column: ${OUT}"
fi
run status -A
check "status -A: exit 0" "${RC}" 0
row="$(grep "^${NS} " <<<"${OUT}" | grep ' reviews ' | tr -s ' ')"
check "status -A: namespace first" "${row% *}" "${NS} reviews Progressing 20 2/5 7d9f8b6c5 False"

# Events as the operator would record them: twelve about this Canary (the two oldest must
# not show), one about an earlier Canary of the same name (another uid) that must not.
now="$(date +%s)"
for i in $(seq 1 12); do
  jq -n --arg ns "${NS}" --arg uid "${UID_REVIEWS}" --arg i "${i}" \
    --arg t "$(rfc3339 $((now - 1300 + i * 100)))" \
    '{apiVersion: "v1", kind: "Event", metadata: {name: ("reviews.ev" + $i), namespace: $ns},
      involvedObject: {apiVersion: "nutshell.io/v1alpha1", kind: "Canary", name: "reviews",
                       namespace: $ns, uid: $uid},
      type: (if $i == "7" then "Warning" else "Normal" end), reason: ("Reason" + $i),
      message: ("event number " + $i), firstTimestamp: $t, lastTimestamp: $t, count: 1,
      source: {component: "nutshell-operator"}}'
done | kubectl create -f - >/dev/null
jq -n --arg ns "${NS}" --arg t "$(rfc3339 "${now}")" \
  '{apiVersion: "v1", kind: "Event", metadata: {name: "reviews.old", namespace: $ns},
    involvedObject: {kind: "Canary", name: "reviews", namespace: $ns, uid: "0000-old"},
    type: "Normal", reason: "Stale", message: "about an earlier Canary", firstTimestamp: $t,
    lastTimestamp: $t, count: 1}' | kubectl create -f - >/dev/null

run status reviews -n "${NS}"
check "status NAME: exit 0" "${RC}" 0
has_text "status NAME: phase" "Phase:            Progressing" "${OUT}"
has_text "status NAME: weight" "Weight:           20% in effect" "${OUT}"
has_text "status NAME: failed checks and threshold" "Failed checks:    2 (threshold 5)" "${OUT}"
has_text "status NAME: current revision" "Revision:         7d9f8b6c5" "${OUT}"
has_text "status NAME: last promoted revision" "Last promoted:    6b5c4d3e2" "${OUT}"
has_text "status NAME: last transition with its age" "Last transition:  ${t0} (2m" "${OUT}"
has_text "status NAME: message" "Message:          Advancing canary weight to 30" "${OUT}"
has_text "status NAME: pending request" "Pending request:  abort" "${OUT}"
has_text "status NAME: Promoted condition" "Promoted  False   Progressing" "${OUT}"
has_text "status NAME: events header" "AGE" "$(sed -n '/^Events:/,$p' <<<"${OUT}")"
events="$(sed -n '/^Events:/,$p' <<<"${OUT}" | tail -n +3)"
check "status NAME: the 10 newest Events" "$(grep -c 'event number' <<<"${events}")" 10
check "status NAME: oldest shown is the 3rd, newest last" \
  "$(head -1 <<<"${events}" | grep -o 'event number [0-9]*'),$(tail -1 <<<"${events}" | grep -o 'event number [0-9]*')" \
  "event number 3,event number 12"
has_text "status NAME: event type and reason" "Warning  Reason7" "${events}"
lacks_text "status NAME: not an earlier Canary's Events" "earlier Canary" "${OUT}"

# desiredWeight is shown when the status carries it (the CRD's schema decides whether
# the API server keeps the field).
set_status reviews '{"desiredWeight": 30}'
if [ "$(kubectl get canary reviews -n "${NS}" -o jsonpath='{.status.desiredWeight}')" = 30 ]; then
  run status reviews -n "${NS}"
  has_text "status NAME: desired weight" "20% in effect, 30% desired" "${OUT}"
else
  echo "note: the CRD prunes status.desiredWeight; its display is covered by the unit tests"
fi

run status reviews -n "${NS}" -o json
check "status NAME -o json: exit 0" "${RC}" 0
check "status NAME -o json: the Canary" "$(jq -r '.kind + " " + .metadata.name + " " + .status.phase' <<<"${OUT}")" \
  "Canary reviews Progressing"
run status -n "${NS}" -o json
check "status -o json: the list" "$(jq -r '[.items[].metadata.name] | sort | join(",")' <<<"${OUT}")" "ratings,reviews"

# --- the namespace from the kubeconfig context, with no -n (env and --kubeconfig)
kubectl config view --raw --minify -o json >"${WORK}/ctx.json"
kubectl config set-context --current --namespace="${NS}" --kubeconfig="${WORK}/ctx.json" >/dev/null
OUT="$(KUBECONFIG="${WORK}/ctx.json" kubectl nutshell status reviews 2>&1)"
has_text "namespace from \$KUBECONFIG's context" "Namespace:        ${NS}" "${OUT}"
run status reviews --kubeconfig "${WORK}/ctx.json"
check "namespace from --kubeconfig's context: exit 0" "${RC}" 0
has_text "namespace from --kubeconfig's context" "Namespace:        ${NS}" "${OUT}"
home_ns="$(kubectl config view --minify -o jsonpath='{.contexts[0].context.namespace}')"
run status reviews
check "without -n, the current context's namespace (not ${NS}): exit 1" "${RC}" 1
has_text "without -n: looked in the context's namespace" \
  "not found in namespace \"${home_ns:-default}\"" "${ERR}"

# --- Promoting: too late to promote, not too late to abort
clear_request reviews
set_status reviews '{"phase": "Promoting", "canaryWeight": 50}'
run promote reviews -n "${NS}"
check "promote when Promoting: exit 1" "${RC}" 1
has_text "promote when Promoting: message" "cannot promote canary \"reviews\" in phase Promoting" "${ERR}"
run abort reviews -n "${NS}"
check "abort when Promoting: exit 0" "${RC}" 0
check "abort when Promoting: report" "${OUT}" \
  "canary.nutshell.io/reviews: abort requested (phase Promoting, weight 50)"
check "abort when Promoting: annotation" "$(request_annotation reviews)" abort

# --- Failed: only retry applies
clear_request reviews
set_status reviews '{"phase": "Failed", "canaryWeight": 0, "message": "rolled back: 5 failed checks"}'
run promote reviews -n "${NS}"
check "promote when Failed: exit 1" "${RC}" 1
check "promote when Failed: message" "${ERR}" \
  "Error: cannot promote canary \"reviews\" in phase Failed: a promotion applies only while Progressing (use --force to request it anyway)"
run abort reviews -n "${NS}"
check "abort when Failed: exit 1" "${RC}" 1
has_text "abort when Failed: message" "cannot abort canary \"reviews\" in phase Failed" "${ERR}"
check "refused requests leave no annotation" "$(request_annotation reviews)" none
run retry reviews -n "${NS}"
check "retry when Failed: exit 0" "${RC}" 0
check "retry when Failed: report" "${OUT}" "canary.nutshell.io/reviews: retry requested (phase Failed, weight 0)"
check "retry when Failed: annotation" "$(request_annotation reviews)" retry

# --- Succeeded: nothing applies, but --force sends it anyway
clear_request reviews
set_status reviews '{"phase": "Succeeded", "lastPromotedRevision": "7d9f8b6c5"}'
for verb in promote abort retry; do
  run "${verb}" reviews -n "${NS}"
  check "${verb} when Succeeded: exit 1" "${RC}" 1
done
check "Succeeded: no annotation" "$(request_annotation reviews)" none
run promote reviews -n "${NS}" --force
check "promote --force when Succeeded: exit 0" "${RC}" 0
has_text "promote --force: says it was forced" "forced past the phase check" "${OUT}"
check "promote --force: annotation" "$(request_annotation reviews)" promote

# --- a Canary being deleted: refused (a finalizer holds it while it is deleted)
clear_request reviews
kubectl patch canary ratings -n "${NS}" --type=merge -p '{"metadata":{"finalizers":["nutshell.io/test-hold"]}}' >/dev/null
set_status ratings '{"phase": "Progressing", "canaryWeight": 10}'
kubectl delete canary ratings -n "${NS}" --wait=false >/dev/null
run abort ratings -n "${NS}"
check "abort a Canary being deleted: exit 1" "${RC}" 1
has_text "abort a Canary being deleted: why" "it is being deleted" "${ERR}"
kubectl patch canary ratings -n "${NS}" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
