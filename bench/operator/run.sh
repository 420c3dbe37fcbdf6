#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions called through traps and wait_for
# run.sh - operator benchmark: runs nutshell-operator out of cluster against
# hack/cluster.sh's local control plane with the sample Mesh, and measures
#   1. reconcile latency: spec change -> status.observedGeneration (nutshell-bench-operator
#      latency: merge patches of spec.injector.replicas 2 <-> 3, seen through a watch);
#   2. memory: the operator's VmRSS/VmHWM idle with one Mesh, then with 1,000 extra
#      ConfigMaps (~1 KB each) in its informer cache, and the latency run again.
#
# usage: bench/operator/run.sh [NUTSHELL_OPERATOR [NUTSHELL_BENCH_OPERATOR]]
#   defaults: build/operator/nutshell-operator, build/bench/operator/nutshell-bench-operator
#   (relative to the repository root). Builds nothing.
# environment (all optional):
#   ITERATIONS=50      spec changes per latency run
#   TIMEOUT_MS=10000   per-change timeout
#   GAP_MS=100         pause between changes
#   CONFIGMAPS=1000    ConfigMaps created for the memory part (0: skip it)
#   CM_SIZE=1024       payload bytes per ConfigMap
#   RESYNC=600         the operator's --resync-period
# The control plane is started (hack/cluster.sh up) if it is down, and then stopped at
# the end; CRDs and the namespace are deleted at the end only if this script made them.
# Refuses to run next to an existing Mesh "default". Only 127.0.0.1 traffic.
# exit status: 0 when every run completed without timeouts or errors, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OPERATOR=${1:-$ROOT/build/operator/nutshell-operator}
BENCH=${2:-$ROOT/build/bench/operator/nutshell-bench-operator}
ITERATIONS=${ITERATIONS:-50}
TIMEOUT_MS=${TIMEOUT_MS:-10000}
GAP_MS=${GAP_MS:-100}
CONFIGMAPS=${CONFIGMAPS:-1000}
CM_SIZE=${CM_SIZE:-1024}
RESYNC=${RESYNC:-600}
NS=nutshell-system
MESH=default
CRDS=(meshes.nutshell.io canaries.nutshell.io)

die() {
    echo "run.sh: $*" >&2
    exit 1
}

[[ -x $OPERATOR ]] || die "no operator binary at $OPERATOR (build it, or pass its path as \$1)"
[[ -x $BENCH ]] || die "no bench binary at $BENCH (build it, or pass its path as \$2)"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed (free port)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nutshell-bench-operator.XXXXXX")
export KUBECACHEDIR="$TMP/kube-cache" # a stale discovery cache would miss the CRDs
CLUSTER_STARTED=
CRDS_APPLIED=()
NS_CREATED=
MESH_CREATED=
CMS_CREATED=
OP_PID=
status=0

# wait_for SECONDS COMMAND...: retries COMMAND every 0.2 s until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

stop_operator() {
    [[ -n $OP_PID ]] || return 0
    kill -TERM "$OP_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$OP_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$OP_PID" 2>/dev/null || true
    wait "$OP_PID" 2>/dev/null || true
    OP_PID=
}

cleanup() {
    set +e
    if [[ -n $CMS_CREATED ]]; then
        "$BENCH" configmaps --delete --namespace "$NS" >/dev/null 2>&1 ||
            kubectl -n "$NS" delete configmap -l nutshell.io/bench=operator --wait=false >/dev/null 2>&1
    fi
    if [[ -n $MESH_CREATED ]]; then
        # The operator removes its finalizer (and the webhook configuration) on deletion.
        if [[ -n $OP_PID ]] && kill -0 "$OP_PID" 2>/dev/null; then
            kubectl delete mesh.nutshell.io "$MESH" --timeout=30s >/dev/null 2>&1
        fi
        if kubectl get mesh.nutshell.io "$MESH" >/dev/null 2>&1; then
            kubectl patch mesh.nutshell.io "$MESH" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
            kubectl delete mesh.nutshell.io "$MESH" --timeout=30s --ignore-not-found >/dev/null 2>&1
        fi
        kubectl delete mutatingwebhookconfiguration nutshell-sidecar-injector --ignore-not-found >/dev/null 2>&1
    fi
    stop_operator
    if [[ -n $NS_CREATED ]]; then
        kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1
    fi
    for crd in "${CRDS_APPLIED[@]}"; do
        kubectl delete crd "$crd" --ignore-not-found --wait=false >/dev/null 2>&1
    done
    if [[ $status -ne 0 && -f $TMP/operator.log ]]; then
        echo "--- last lines of the operator's log" >&2
        tail -n 30 "$TMP/operator.log" >&2
    fi
    if [[ -n $CLUSTER_STARTED ]]; then
        "$ROOT/hack/cluster.sh" down >/dev/null 2>&1
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

# ---- The control plane ------------------------------------------------------------------
if ! "$ROOT/hack/cluster.sh" status >/dev/null 2>&1; then
    echo "control plane down: hack/cluster.sh up"
    timeout 300 "$ROOT/hack/cluster.sh" up >"$TMP/cluster-up.log" 2>&1 ||
        {
            cat "$TMP/cluster-up.log" >&2
            die "hack/cluster.sh up failed"
        }
    CLUSTER_STARTED=1
fi
eval "$("$ROOT/hack/cluster.sh" env)"
command -v kubectl >/dev/null || die "kubectl not found (hack/cluster.sh env sets PATH)"
case $(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}') in
https://127.0.0.1:*) ;;
*) die "the kubeconfig does not point at 127.0.0.1" ;;
esac

if kubectl get mesh.nutshell.io "$MESH" >/dev/null 2>&1; then
    die "a Mesh named $MESH already exists in this cluster; not touching someone else's install"
fi

# ---- CRDs and namespace -----------------------------------------------------------------
for crd in "${CRDS[@]}"; do
    kubectl get crd "$crd" >/dev/null 2>&1 || CRDS_APPLIED+=("$crd")
done
if [[ ${#CRDS_APPLIED[@]} -gt 0 ]]; then
    kubectl apply -f "$ROOT/manifests/crds/" >/dev/null
fi
kubectl wait --for condition=Established crd/meshes.nutshell.io --timeout=60s >/dev/null
wait_for 60 bash -c "[ \"\$(kubectl get namespace $NS -o 'jsonpath={.status.phase}' 2>/dev/null)\" != Terminating ]" ||
    die "namespace $NS stays Terminating"
if ! kubectl get namespace "$NS" >/dev/null 2>&1; then
    kubectl create namespace "$NS" >/dev/null
    NS_CREATED=1
fi

# ---- The operator -----------------------------------------------------------------------
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
op_cmd=("$OPERATOR" --leader-elect=false --metrics-listen "127.0.0.1:$MPORT" --routes-listen 127.0.0.1:0
    --resync-period "$RESYNC")
echo "operator: ${op_cmd[*]}"
# Started directly so that $! is the operator itself, whose /proc/PID/status is read.
"${op_cmd[@]}" >"$TMP/operator.log" 2>&1 &
OP_PID=$!
if ! wait_for 60 curl -fsS --max-time 1 "http://127.0.0.1:$MPORT/readyz"; then
    status=1
    die "the operator was not ready within 60 s"
fi
echo "operator: pid $OP_PID ready"

mesh_field() { kubectl get mesh.nutshell.io "$MESH" -o "jsonpath=$1" 2>/dev/null; }
mesh_ready() {
    [[ $(mesh_field '{.status.phase}') == Ready ]] &&
        [[ $(mesh_field '{.status.observedGeneration}') == "$(mesh_field '{.metadata.generation}')" ]]
}
kubectl apply -f "$ROOT/manifests/samples/mesh-default.yaml" >/dev/null
MESH_CREATED=1
t0=$SECONDS
if ! wait_for 120 mesh_ready; then
    status=1
    die "Mesh $MESH not Ready within 120 s: $(mesh_field '{.status}')"
fi
echo "mesh: $MESH Ready after $((SECONDS - t0)) s"

rss() { "$BENCH" rss --pid "$OP_PID" --label "$1"; }
# Waits (at most 30 s) until the operator's RSS has not changed for 2 s.
settle() {
    local last=-1 same=0 cur
    for _ in $(seq 60); do
        cur=$(awk '/^VmRSS:/ {print $2}' "/proc/$OP_PID/status" 2>/dev/null || echo -1)
        if [[ $cur == "$last" ]]; then
            same=$((same + 1))
            ((same >= 4)) && return 0
        else
            same=0
        fi
        last=$cur
        sleep 0.5
    done
}
reconcile_stats() {
    curl -fsS --max-time 2 "http://127.0.0.1:$MPORT/metrics" | awk '
        /^nutshell_operator_reconcile_duration_seconds_sum/ {s += $2}
        /^nutshell_operator_reconcile_duration_seconds_count/ {c += $2}
        /^nutshell_operator_writes_total/ {w += $2}
        END { if (c > 0) printf "operator: %d reconciles so far, mean %.1f ms each (its own histogram), %d writes\n", c, 1000 * s / c, w }'
}

settle
rss "idle, one Mesh"

lat_cmd=("$BENCH" latency --mesh "$MESH" --iterations "$ITERATIONS" --timeout-ms "$TIMEOUT_MS"
    --gap-ms "$GAP_MS" --pid "$OP_PID")
run_latency() { # $1 = label
    echo
    echo "== reconcile latency: $1 =="
    echo "command: $(basename "$BENCH") ${lat_cmd[*]:1} --label '$1'"
    "${lat_cmd[@]}" --label "$1" || status=1
    wait_for 30 mesh_ready || echo "run.sh: Mesh not Ready again after the run" >&2
    reconcile_stats || true
}
run_latency "one Mesh"

if ((CONFIGMAPS > 0)); then
    echo
    echo "== memory: $CONFIGMAPS ConfigMaps in the operator's cache =="
    CMS_CREATED=1
    echo "command: $(basename "$BENCH") configmaps --create $CONFIGMAPS --size $CM_SIZE --threads 8"
    "$BENCH" configmaps --create "$CONFIGMAPS" --size "$CM_SIZE" --threads 8 --namespace "$NS" || status=1
    settle
    rss "with $CONFIGMAPS ConfigMaps cached"
    run_latency "one Mesh + $CONFIGMAPS ConfigMaps cached"
    settle
    rss "after the second latency run"
    "$BENCH" configmaps --delete --namespace "$NS" || status=1
    CMS_CREATED=
fi

if ! kill -0 "$OP_PID" 2>/dev/null; then
    status=1
    die "the operator died during the runs"
fi
if grep -qiE 'level=error|level=warn| error | warn ' "$TMP/operator.log"; then
    echo
    echo "operator log had warnings or errors (last 10 lines):"
    grep -iE 'level=error|level=warn| error | warn ' "$TMP/operator.log" | tail -n 10
fi
exit "$status"
