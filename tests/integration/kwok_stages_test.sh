#!/usr/bin/env bash
# The "broken version" image tags of the fake node (hack/kwok/): a pod whose container
# image has the tag `broken` or `*-broken` is Running but never Ready (its restartCount
# stays 0); `crashloop` or `*-crashloop` is Running, not Ready, and restarting; every
# other pod becomes Ready as before. A Deployment of a broken image never has ready
# replicas, and `kubectl set image` to a good one fixes it (also in place, on a pod);
# a Job of a broken image neither completes nor becomes ready.
#
# Usage: kwok_stages_test.sh   (needs: hack/cluster.sh up)
# Runs `hack/cluster.sh restart-kwok` first when kwok was started with other stages than
# hack/kwok/ gives now (harmless to other users of the cluster: pods keep their status).
# Everything lives in a namespace of its own, deleted at the end.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_cluster

NS="kwok-stages-$$"
# How long a broken pod is watched for staying unready, in seconds: longer than kwok
# takes to make a good pod Ready (well under a second) by a wide margin.
HOLD=6

cleanup() {
  kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
}
trap 'end_tests cleanup' EXIT

# A kwok started before hack/kwok/ existed or changed runs other stages: restart it.
defaults="$(dirname "$(readlink -f "${NUTSHELL_BIN}/kwok")")/stages.yaml"
if ! want="$("${ROOT}/hack/kwok/stages.sh" "${defaults}")"; then
  fail "hack/kwok/stages.sh cannot assemble the stages"
  exit 1
fi
if [ "${want}" != "$(cat "${NUTSHELL_STATE}/kwok-stages.yaml" 2>/dev/null)" ]; then
  echo "kwok runs other stages than hack/kwok/ gives: hack/cluster.sh restart-kwok"
  "${ROOT}/hack/cluster.sh" restart-kwok || { fail "hack/cluster.sh restart-kwok"; exit 1; }
fi
check "kwok runs the assembled stages" "$(cat "${NUTSHELL_STATE}/kwok-stages.yaml")" "${want}"

kubectl create namespace "${NS}" >/dev/null || exit 1
# Pods are refused until the namespace's default ServiceAccount exists.
wait_for 30 kubectl -n "${NS}" get serviceaccount default || { fail "no default ServiceAccount"; exit 1; }

# pod NAME IMAGE [SIDECAR_IMAGE]: a bare pod with container "app" (and "sidecar").
pod() {
  jq -n --arg name "$1" --arg image "$2" --arg side "${3:-}" '{apiVersion: "v1", kind: "Pod",
      metadata: {name: $name},
      spec: {containers: ([{name: "app", image: $image}]
                          + if $side == "" then [] else [{name: "sidecar", image: $side}] end)}}' |
    kubectl -n "${NS}" apply -f - >/dev/null
}

# deployment NAME IMAGE REPLICAS
deployment() {
  kubectl -n "${NS}" create deployment "$1" --image="$2" --replicas="$3" >/dev/null
}

# state POD: "PHASE READY CONTAINERSREADY", e.g. "Running False False".
state() {
  kubectl -n "${NS}" get pod "$1" -o json | jq -r '[.status.phase,
      ((.status.conditions // []) | map(select(.type == "Ready"))[0].status // "none"),
      ((.status.conditions // []) | map(select(.type == "ContainersReady"))[0].status // "none")]
    | join(" ")'
}

state_is() { [ "$(state "$1")" = "$2" ]; }

# containers POD: "NAME:READY:RESTARTS" per container status, space separated.
containers() {
  kubectl -n "${NS}" get pod "$1" -o json |
    jq -r '[.status.containerStatuses[]? | "\(.name):\(.ready):\(.restartCount)"] | join(" ")'
}

restarts() {
  kubectl -n "${NS}" get pod "$1" -o json |
    jq -r '.status.containerStatuses[]? | select(.name == "app") | .restartCount'
}

restarts_above() { [ "$(restarts "$1")" -gt "$2" ] 2>/dev/null; }

# ready_replicas DEPLOYMENT: status.readyReplicas, 0 when absent.
ready_replicas() {
  kubectl -n "${NS}" get deployment "$1" -o json | jq -r '.status.readyReplicas // 0'
}

ready_replicas_is() { [ "$(ready_replicas "$1")" = "$2" ]; }

# pods_of DEPLOYMENT: names of its pods (by the app label `kubectl create deployment` sets).
pods_of() {
  kubectl -n "${NS}" get pods -l "app=$1" -o jsonpath='{.items[*].metadata.name}'
}

# running_count DEPLOYMENT: how many of its pods are phase Running.
running_count() {
  kubectl -n "${NS}" get pods -l "app=$1" -o json |
    jq '[.items[] | select(.status.phase == "Running" and .metadata.deletionTimestamp == null)] | length'
}

running_count_is() { [ "$(running_count "$1")" = "$2" ]; }

# --- everything is created at once, so that the waits below overlap
pod good example/reviews:v1
# "-broken" in the repository name, not the tag: an ordinary image
pod name-not-tag example/reviews-broken:v1
pod tag-exact example/reviews:broken
pod tag-suffix example/reviews:v2-broken example/proxy:v1
pod with-registry-port localhost:5000/reviews:v2-broken@sha256:0123abcd
pod crash example/reviews:v3-crashloop example/proxy:v1
pod fix-in-place example/reviews:v2-broken
pod break-in-place example/reviews:v1
deployment good-dep example/reviews:v1 2
deployment bad-dep example/reviews:v2-broken 3
kubectl -n "${NS}" create job good-job --image=example/job:v1 >/dev/null
kubectl -n "${NS}" create job bad-job --image=example/job:v1-broken >/dev/null

# --- good pods become Ready
for p in good name-not-tag break-in-place; do
  if wait_for 30 state_is "${p}" "Running True True"; then
    pass "${p}: Running and Ready"
  else
    fail "${p}: want 'Running True True', got '$(state "${p}")'"
  fi
done

# --- broken pods become Running, unready, and stay so
BROKEN=(tag-exact tag-suffix with-registry-port fix-in-place)
for p in "${BROKEN[@]}"; do
  wait_for 30 state_is "${p}" "Running False False" ||
    fail "${p}: want 'Running False False', got '$(state "${p}")'"
done
sleep "${HOLD}"
for p in "${BROKEN[@]}"; do
  check "${p}: still Running, not Ready, after ${HOLD} s" "$(state "${p}")" "Running False False"
done
check "tag-exact: container not ready, no restarts" "$(containers tag-exact)" "app:false:0"
check "tag-suffix: the broken container is unready, the other one ready" \
  "$(containers tag-suffix)" "app:false:0 sidecar:true:0"
check "with-registry-port: registry port and digest around the tag" \
  "$(containers with-registry-port)" "app:false:0"
podip="$(kubectl -n "${NS}" get pod tag-exact -o jsonpath='{.status.podIP}')"
if [[ "${podip}" =~ ^10\.244\. ]]; then pass "broken pod has a pod IP (${podip})"; else
  fail "broken pod has no pod IP from 10.244.0.0/16: '${podip}'"; fi

# --- crashloop: Running, unready, restarting
if wait_for 30 restarts_above crash 0; then
  pass "crash: restartCount > 0 ($(restarts crash))"
else
  fail "crash: restartCount stays '$(restarts crash)'"
fi
check "crash: Running, not Ready" "$(state crash)" "Running False False"
before="$(restarts crash)"
if wait_for 15 restarts_above crash "${before:-0}"; then
  pass "crash: restartCount keeps going up (${before} -> $(restarts crash))"
else
  fail "crash: restartCount stuck at ${before}"
fi
check "crash: the app waits in CrashLoopBackOff" \
  "$(kubectl -n "${NS}" get pod crash -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}')" \
  CrashLoopBackOff
check "crash: the sidecar is ready, never restarted" \
  "$(kubectl -n "${NS}" get pod crash -o json |
    jq -r '.status.containerStatuses[] | select(.name == "sidecar") | "\(.ready):\(.restartCount)"')" \
  "true:0"

# --- Deployments: the broken one never gets ready replicas
if wait_for 30 ready_replicas_is good-dep 2; then pass "good-dep: 2 ready replicas"; else
  fail "good-dep: readyReplicas $(ready_replicas good-dep), want 2"; fi
if wait_for 30 running_count_is bad-dep 3; then pass "bad-dep: 3 pods Running"; else
  fail "bad-dep: $(running_count bad-dep) pods Running, want 3"; fi
sleep "${HOLD}"
check "bad-dep: no ready replicas after ${HOLD} s" "$(ready_replicas bad-dep)" 0
for p in $(pods_of bad-dep); do
  check "bad-dep pod ${p}: Running, not Ready" "$(state "${p}")" "Running False False"
done

# --- Jobs: a broken one does not complete
if wait_for 30 kubectl -n "${NS}" wait --for=condition=Complete job/good-job --timeout=1s; then
  pass "good-job completes"
else
  fail "good-job does not complete"
fi
check "bad-job: not complete" \
  "$(kubectl -n "${NS}" get job bad-job -o jsonpath='{.status.succeeded}')" ""
jobpod="$(kubectl -n "${NS}" get pods -l job-name=bad-job -o jsonpath='{.items[0].metadata.name}')"
check "bad-job: its pod Running, not Ready" "$(state "${jobpod}")" "Running False False"

# --- set image from broken to good
kubectl -n "${NS}" set image deployment/bad-dep reviews=example/reviews:v2 >/dev/null
if wait_for 60 ready_replicas_is bad-dep 3; then pass "bad-dep after set image: 3 ready replicas"
else fail "bad-dep after set image: readyReplicas $(ready_replicas bad-dep), want 3"; fi
if kubectl -n "${NS}" rollout status deployment/bad-dep --timeout=60s >/dev/null 2>&1; then
  pass "bad-dep: rollout to the good image completes"
else
  fail "bad-dep: rollout to the good image does not complete"
fi

# In place, on a bare pod: a kubelet restarts the container with the new image.
kubectl -n "${NS}" set image pod/fix-in-place app=example/reviews:v2 >/dev/null
if wait_for 30 state_is fix-in-place "Running True True"; then pass "fix-in-place: Ready"
else fail "fix-in-place: want 'Running True True', got '$(state fix-in-place)'"; fi
kubectl -n "${NS}" set image pod/break-in-place app=example/reviews:v1-broken >/dev/null
if wait_for 30 state_is break-in-place "Running False False"; then pass "break-in-place: unready"
else fail "break-in-place: want 'Running False False', got '$(state break-in-place)'"; fi
