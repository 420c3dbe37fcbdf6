#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions called through traps and wait_for
# canaries.sh - the Canary controller at scale: nutshell-operator (--controllers canary)
# runs out of cluster against hack/cluster.sh's local control plane, watching one fresh
# namespace that holds N Deployments (1 replica each) and N Canaries for them, and is
# measured for DESIGN.md's "1,000 Canaries in < 50 MB RSS" and "status reflects a spec
# change in < 200 ms":
#   1. initialization: from the operator's start until every Canary is Initialized
#      (nutshell-bench-operator canaries-wait), and the API writes it took
#      (nutshell_operator_writes_total{controller="canary"});
#   2. memory: VmRSS/VmHWM idle with N Initialized Canaries, once the operator's work
#      queue is empty and every Deployment's status has caught up with its spec;
#   3. latency: the image of K targets changed one at a time (a JSON patch, like `kubectl
#      set image`) until a watch shows that Canary Progressing (canaries-rollout: median,
#      p90, p99), then how long those K rollouts take to end Succeeded, and RSS after;
#      then the same for SINGLE targets changed one rollout at a time (no overlap).
#
# The pods run on a kwok node of this script's own (tainted, deleted at the end), since the
# shared node takes 110 pods; kwok makes them Ready. Everything is deleted at the end, also
# on failure or Ctrl-C: the operator is stopped, the finalizers dropped, the namespace and
# the node deleted. CRDs are applied if missing and left in place (others may use them).
#
# usage: bench/operator/canaries.sh [NUTSHELL_OPERATOR [NUTSHELL_BENCH_OPERATOR]]
#   defaults: build/operator/nutshell-operator, build/bench/operator/nutshell-bench-operator
#   (relative to the repository root). Builds nothing.
# environment (all optional):
#   N=1000                  Deployments and Canaries
#   K=50                    rollouts timed (K <= N)
#   GAP_MS=200              pause between two image changes
#   SINGLE=10               then, rollouts timed one at a time (0: skip), on the first targets
#   SINGLE_GAP_MS=15000     pause between those (longer than one rollout)
#   TIMEOUT_MS=10000        per image change, for Progressing
#   DEADLINE=60             the Canaries' progressDeadlineSeconds
#   WORKERS=                the operator's --workers (empty: its default)
#   RESYNC=                 the operator's --resync-period in s (empty: its default, 600,
#                           which falls inside a 1,000-Canary run: every Canary is then
#                           reconciled again, a burst of N reconciles)
#   DEPLOY_TIMEOUT=900      s for the N Deployments to become available before the operator
#   INIT_TIMEOUT=1200       s for the N Canaries to become Initialized
#   DRAIN_TIMEOUT=600       s for the operator's work queue to empty after initialization
#   ROLLOUT_TIMEOUT=600     s for the K rollouts to end after the last change
#   OPERATOR_ENV=           VAR=VALUE words for the operator's environment (e.g.
#                           MALLOC_ARENA_MAX=1), to try allocator settings
#   DIAG=1                  at the end: what the operator's caches hold (object counts,
#                           JSON size, a cJSON heap estimate) and, with gdb, glibc's
#                           malloc_stats and the RSS after malloc_trim (0: skip)
# exit status: 0 when every phase completed in time, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OPERATOR=${1:-$ROOT/build/operator/nutshell-operator}
BENCH=${2:-$ROOT/build/bench/operator/nutshell-bench-operator}
N=${N:-1000}
K=${K:-50}
GAP_MS=${GAP_MS:-200}
SINGLE=${SINGLE:-10}
SINGLE_GAP_MS=${SINGLE_GAP_MS:-15000}
TIMEOUT_MS=${TIMEOUT_MS:-10000}
DEADLINE=${DEADLINE:-60}
WORKERS=${WORKERS:-}
RESYNC=${RESYNC:-}
DEPLOY_TIMEOUT=${DEPLOY_TIMEOUT:-900}
INIT_TIMEOUT=${INIT_TIMEOUT:-1200}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-600}
OPERATOR_ENV=${OPERATOR_ENV:-}
DIAG=${DIAG:-1}
NS=nutshell-bench-canary-$$
NODE=nutshell-bench-canary-$$
PREFIX=bench-
TAINT=nutshell.io/bench

die() {
    echo "canaries.sh: $*" >&2
    exit 1
}

[[ -x $OPERATOR ]] || die "no operator binary at $OPERATOR (build it, or pass its path as \$1)"
[[ -x $BENCH ]] || die "no bench binary at $BENCH (build it, or pass its path as \$2)"
[[ $N =~ ^[1-9][0-9]*$ && $K =~ ^[1-9][0-9]*$ ]] || die "N and K must be positive integers"
[[ $SINGLE =~ ^[0-9]+$ && $GAP_MS =~ ^[0-9]+$ && $SINGLE_GAP_MS =~ ^[0-9]+$ ]] ||
    die "SINGLE, GAP_MS and SINGLE_GAP_MS must be integers"
((K <= N && SINGLE <= N)) || die "K ($K) and SINGLE ($SINGLE) must not exceed N ($N)"
((N <= 99999)) || die "N must stay below 100000 (names are ${PREFIX}NNNNN)"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed (free port, manifests)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nutshell-bench-canaries.XXXXXX")
export KUBECACHEDIR="$TMP/kube-cache" # a stale discovery cache would miss the CRDs
NS_CREATED=
NODE_CREATED=
OP_PID=
status=0

# wait_for SECONDS COMMAND...: retries COMMAND every 0.5 s until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

stop_operator() {
    [[ -n $OP_PID ]] || return 0
    kill -TERM "$OP_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$OP_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$OP_PID" 2>/dev/null || true
    wait "$OP_PID" 2>/dev/null || true
    OP_PID=
}

cleanup() {
    set +e
    trap - INT TERM
    stop_operator
    if [[ -n $NS_CREATED ]]; then
        echo
        echo "== cleanup =="
        # Without the operator, the Canaries' finalizers would hold the namespace.
        timeout 300 "$BENCH" canaries-unfinalize --namespace "$NS"
        kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1
        local t0=$SECONDS
        if wait_for 300 bash -c "! kubectl get namespace $NS"; then
            echo "namespace $NS deleted ($((SECONDS - t0)) s)"
        else
            echo "canaries.sh: namespace $NS still terminating after 300 s; left to the cluster" >&2
        fi
    fi
    if [[ -n $NODE_CREATED ]]; then
        # Pods still bound to it (a namespace that outlived the wait) are collected by
        # the controller-manager's pod GC once the node is gone.
        kubectl delete node "$NODE" --ignore-not-found --timeout=60s >/dev/null 2>&1
        echo "node $NODE deleted"
    fi
    if [[ $status -ne 0 && -f $TMP/operator.log ]]; then
        echo "--- last lines of the operator's log" >&2
        tail -n 30 "$TMP/operator.log" >&2
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- The control plane ------------------------------------------------------------------
"$ROOT/hack/cluster.sh" status >/dev/null 2>&1 || die "the control plane is down (hack/cluster.sh up)"
eval "$("$ROOT/hack/cluster.sh" env)"
command -v kubectl >/dev/null || die "kubectl not found (hack/cluster.sh env sets PATH)"
case $(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}') in
https://127.0.0.1:*) ;;
*) die "the kubeconfig does not point at 127.0.0.1" ;;
esac

"$BENCH" machine
echo "load average at start: $(loadavg)"
echo "N=$N Canaries, K=$K rollouts timed, namespace $NS, node $NODE"

if ! kubectl get crd canaries.nutshell.io >/dev/null 2>&1; then
    kubectl apply -f "$ROOT/manifests/crds/" >/dev/null
    echo "applied the CRDs (left in place at the end)"
fi
kubectl wait --for condition=Established crd/canaries.nutshell.io --timeout=60s >/dev/null

# ---- A node of our own, the namespace, the objects --------------------------------------
# kwok fakes the nodes annotated kwok.x-k8s.io/node=fake (hack/cluster.sh); the taint
# keeps everyone else's pods off it.
PODS=$((2 * N + 2 * K + 100))
NODE_CREATED=1
kubectl create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: $NODE, kubernetes.io/os: linux, type: kwok, $TAINT: canary}
spec:
  taints: [{key: $TAINT, value: canary, effect: NoSchedule}]
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "$PODS"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "$PODS"}
EOF
node_ready() {
    [[ $(kubectl get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
wait_for 60 node_ready || {
    status=1
    die "kwok did not make node $NODE Ready within 60 s"
}
echo "node $NODE Ready, $(kubectl get node "$NODE" -o 'jsonpath={.status.allocatable.pods}') pods allocatable"

NS_CREATED=1
kubectl create namespace "$NS" >/dev/null

# N Deployments like a user's (1 replica, a container with a named port) and N Canaries
# with one 50% step every second, written as one List.
python3 - "$N" "$PREFIX" "$NODE" "$TAINT" "$DEADLINE" >"$TMP/objects.json" <<'EOF'
import json, sys
n, prefix, node, taint, deadline = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
items = []
for i in range(n):
    name = "%s%05d" % (prefix, i)
    items.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {taint: "canary"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "app", "image": "registry.example/app:v1",
                                    "ports": [{"name": "http", "containerPort": 8080}]}],
                },
            },
        },
    })
for i in range(n):
    name = "%s%05d" % (prefix, i)
    items.append({
        "apiVersion": "nutshell.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 80, "targetPort": "http"},
            "strategy": {"canary": {"stepWeight": 50, "maxWeight": 50, "interval": "1s"}},
            "analysis": {"threshold": 2},
            "progressDeadlineSeconds": deadline,
        },
    })
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
EOF

echo
echo "== creating $N Deployments and $N Canaries =="
t0=$SECONDS
if ! timeout 900 kubectl -n "$NS" create -f "$TMP/objects.json" >"$TMP/create.log" 2>&1; then
    tail -n 5 "$TMP/create.log" >&2
    status=1
    die "kubectl create failed"
fi
echo "created $((2 * N)) objects with one kubectl create in $((SECONDS - t0)) s"

# The control plane must keep up before the operator starts: every target available.
available() {
    kubectl -n "$NS" get deployments -o 'jsonpath={range .items[*]}{.status.availableReplicas}{"\n"}{end}' |
        grep -c '^1$' || true
}
t0=$SECONDS
next=$((SECONDS + 30))
while :; do
    a=$(available)
    ((a >= N)) && break
    if ((SECONDS - t0 > DEPLOY_TIMEOUT)); then
        status=1
        die "only $a of $N Deployments available after $DEPLOY_TIMEOUT s: the control plane does not keep up"
    fi
    if ((SECONDS >= next)); then
        echo "  $((SECONDS - t0)) s: $a of $N Deployments available (load $(loadavg))"
        next=$((SECONDS + 30))
    fi
    sleep 5
done
echo "all $N Deployments available $((SECONDS - t0)) s after the create (load $(loadavg))"

# ---- The operator -----------------------------------------------------------------------
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
op_cmd=("$OPERATOR" --leader-elect=false --controllers canary --canary-namespace "$NS"
    --metrics-listen "127.0.0.1:$MPORT" --routes-listen 127.0.0.1:0)
[[ -z $WORKERS ]] || op_cmd+=(--workers "$WORKERS")
[[ -z $RESYNC ]] || op_cmd+=(--resync-period "$RESYNC")
echo
echo "== initialization: $N Canaries =="
echo "operator: ${OPERATOR_ENV:+$OPERATOR_ENV }${op_cmd[*]}"
since=$(date +%s%3N)
# Started directly (env execs it) so that $! is the operator itself, whose
# /proc/PID/status is read.
# shellcheck disable=SC2086 # OPERATOR_ENV is words on purpose
env $OPERATOR_ENV "${op_cmd[@]}" >"$TMP/operator.log" 2>&1 &
OP_PID=$!
if ! "$BENCH" canaries-wait --namespace "$NS" --prefix "$PREFIX" --count "$N" --phase Initialized \
    --timeout-ms $((INIT_TIMEOUT * 1000)) --since-ms "$since" --pid "$OP_PID" \
    --label "operator start -> all Initialized"; then
    status=1
fi
kill -0 "$OP_PID" 2>/dev/null || {
    status=1
    die "the operator died"
}
echo "load average: $(loadavg)"

metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics"; }
# Writes, reconciles and their mean duration so far, by the operator's own metrics.
op_stats() {
    metrics | awk -v label="$1" '
        /^nutshell_operator_writes_total\{controller="canary"\}/ {w = $2}
        /^nutshell_operator_reconcile_duration_seconds_sum\{controller="canary"/ {s += $2}
        /^nutshell_operator_reconcile_duration_seconds_count\{controller="canary"/ {c += $2}
        END { printf "operator %s: %d API writes (writes_total{controller=\"canary\"}), %d reconciles, mean %.1f ms each\n", label, w, c, c ? 1000 * s / c : 0 }'
}
op_stats "after initialization" || true

# "Initialized" is not "done": the events of the targets' pods going away keep the queue
# busy for a while, and a rollout's key would wait behind them.
queue_depth() {
    metrics | awk '/^nutshell_operator_workqueue_depth\{controller="canary"\}/ {print $2}'
}
# drain WHAT: waits (at most DRAIN_TIMEOUT) until the queue has been empty for 3 s.
drain() {
    local t0=$SECONDS zero=0
    while ((zero < 3)); do
        if ((SECONDS - t0 > DRAIN_TIMEOUT)); then
            echo "canaries.sh: the work queue still holds $(queue_depth) keys after $DRAIN_TIMEOUT s" >&2
            status=1
            return 0
        fi
        if [[ $(queue_depth) == 0 ]]; then zero=$((zero + 1)); else zero=0; fi
        sleep 1
    done
    echo "work queue empty $((SECONDS - t0)) s after $1 (load $(loadavg))"
}
drain "all were Initialized"
op_stats "with the queue empty" || true

# Nor is the control plane done: the controller-manager (20 requests/s per controller)
# is still scaling the N targets down. A rollout started meanwhile waits behind that
# backlog for its canary pod, so the rollouts are timed only once every Deployment's
# status has caught up with its spec.
unsettled() {
    kubectl -n "$NS" get deployments -o 'jsonpath={range .items[*]}{.metadata.generation} {.status.observedGeneration} {.spec.replicas} {.status.replicas} {.status.availableReplicas}{"\n"}{end}' |
        awk '{ if ($1 != $2 || $4 + 0 != $3 || $5 + 0 != $3) n++ } END { print n + 0 }'
}
t0=$SECONDS
next=$((SECONDS + 30))
while :; do
    u=$(unsettled)
    ((u == 0)) && break
    if ((SECONDS - t0 > DEPLOY_TIMEOUT)); then
        echo "canaries.sh: $u Deployments still not as specified after $DEPLOY_TIMEOUT s" >&2
        status=1
        break
    fi
    if ((SECONDS >= next)); then
        echo "  $((SECONDS - t0)) s: $u of $((2 * N)) Deployments not yet as specified (load $(loadavg))"
        next=$((SECONDS + 30))
    fi
    sleep 5
done
echo "control plane settled (every Deployment's status matching its spec) $((SECONDS - t0)) s after the queue emptied"

# Waits (at most 60 s) until the operator's RSS has not changed for 3 s.
settle() {
    local last=-1 same=0 cur
    for _ in $(seq 120); do
        cur=$(awk '/^VmRSS:/ {print $2}' "/proc/$OP_PID/status" 2>/dev/null || echo -1)
        if [[ $cur == "$last" ]]; then
            same=$((same + 1))
            ((same >= 6)) && return 0
        else
            same=0
        fi
        last=$cur
        sleep 0.5
    done
}
rss() {
    "$BENCH" rss --pid "$OP_PID" --label "$1"
    awk '/^(RssAnon|RssFile|Threads):/ {printf " %s %s%s", $1, $2, ($3 ? " " $3 : "")} END {print ""}' \
        "/proc/$OP_PID/status"
}

echo
echo "== memory =="
settle
rss "idle, $N Canaries Initialized"
op_stats "idle" || true

# ---- Rollouts ---------------------------------------------------------------------------
echo
echo "== latency: image change -> Progressing, $K targets one at a time =="
IMAGE="registry.example/app:v2-$$"
ro_cmd=("$BENCH" canaries-rollout --namespace "$NS" --prefix "$PREFIX" --count "$K" --image "$IMAGE"
    --timeout-ms "$TIMEOUT_MS" --gap-ms "$GAP_MS" --rollout-timeout-ms $((ROLLOUT_TIMEOUT * 1000))
    --pid "$OP_PID" --label "$N Canaries")
echo "command: $(basename "$BENCH") ${ro_cmd[*]:1}"
"${ro_cmd[@]}" || status=1
echo "load average: $(loadavg)"
op_stats "after the rollouts" || true
settle
rss "idle again after $K rollouts"

# The same without overlap: each change once the previous rollout has ended, so that the
# latency is one change's, not one queued behind K running rollouts.
if ((SINGLE > 0)); then
    drain "the rollouts ended"
    echo
    echo "== latency: image change -> Progressing, $SINGLE targets, one rollout at a time =="
    s_cmd=("$BENCH" canaries-rollout --namespace "$NS" --prefix "$PREFIX" --count "$SINGLE"
        --image "registry.example/app:v3-$$" --timeout-ms "$TIMEOUT_MS" --gap-ms "$SINGLE_GAP_MS"
        --rollout-timeout-ms $((ROLLOUT_TIMEOUT * 1000)) --pid "$OP_PID" --label "$N Canaries, one at a time")
    echo "command: $(basename "$BENCH") ${s_cmd[*]:1}"
    "${s_cmd[@]}" || status=1
    echo "load average: $(loadavg)"
    op_stats "after the single rollouts" || true
fi

if ! kill -0 "$OP_PID" 2>/dev/null; then
    status=1
    die "the operator died during the runs"
fi

# ---- Where the memory is ----------------------------------------------------------------
if [[ $DIAG == 1 ]]; then
    echo
    echo "== where the memory is =="
    python3 "$HERE/cache_census.py" "$NS" || echo "  (census failed)"
    if command -v gdb >/dev/null; then
        # glibc's own account goes to the operator's stderr; then what trimming gives back.
        lines=$(wc -l <"$TMP/operator.log")
        timeout 60 gdb -p "$OP_PID" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
        echo "glibc malloc_stats (system bytes: taken from the kernel; in use: live allocations):"
        tail -n +$((lines + 1)) "$TMP/operator.log" |
            awk '/^(Arena|Total)/ {a = $0} /^system bytes/ {s = $NF}
                 /^in use bytes/ {printf "  %-20s system %6.1f MiB, in use %6.1f MiB\n", a, s / 1048576, $NF / 1048576}'
        timeout 60 gdb -p "$OP_PID" -batch -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || true
        rss "after malloc_trim(0) through gdb"
    fi
fi
if grep -qiE 'level=error|level=warn| error | warn ' "$TMP/operator.log"; then
    echo
    echo "operator log: $(grep -ciE 'level=error| error ' "$TMP/operator.log") errors, $(grep -ciE 'level=warn| warn ' "$TMP/operator.log") warnings; the last 10:"
    grep -iE 'level=error|level=warn| error | warn ' "$TMP/operator.log" | tail -n 10
    echo "by reason:"
    grep -iE 'level=error|level=warn| error | warn ' "$TMP/operator.log" | grep -oE 'reason=[A-Za-z]+' |
        sort | uniq -c | sort -rn | head -n 10
fi
echo "load average at the end: $(loadavg)"
exit "$status"
