#!/usr/bin/env bash
# run.sh - injector benchmark: makes a throwaway CA and serving certificate, starts
# nutshell-injector on loopback, drives it open loop at 1,000 reviews/s and then closed
# loop as fast as it goes, and prints the figures (human lines, then one JSON line each).
#
# usage: bench/injector/run.sh [NUTSHELL_INJECTOR [NUTSHELL_BENCH_INJECTOR]]
#   defaults: build/injector/nutshell-injector, build/bench/injector/nutshell-bench-injector
#   (relative to the repository root).
# environment (all optional):
#   BENCH_PORT=19443                 loopback port for the webhook (TLS)
#   BENCH_METRICS_PORT=19090         loopback port for its metrics and health (plain HTTP)
#   RATE=1000 DURATION=10 WARMUP=1   open-loop rate (reviews/s), seconds measured, warmup
#   RATE_CONNECTIONS=4               connections for the open-loop run (1 client thread)
#   MAX_CONNECTIONS=8 MAX_THREADS=1  connections and client threads for the closed loop
#   SERVER_CPUS= CLIENT_CPUS=        CPU lists for taskset (e.g. 0 and 1); empty = no pinning
#   KEY_ALG=rsa:2048                 key type of the CA and serving certificate: rsa:BITS or ec
#   BENCH_OUT=FILE                   also append the JSON lines to FILE
#   PEER_PORT=19444                  loopback port for the peer: when nginx is installed, the
#                                    same two runs go to nginx serving the injector's own
#                                    reply as a static file over TLS (the transport floor)
# exit status: 0 when both runs had no error, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
INJECTOR=${1:-$ROOT/build/injector/nutshell-injector}
BENCH=${2:-$ROOT/build/bench/injector/nutshell-bench-injector}
PORT=${BENCH_PORT:-19443}
METRICS_PORT=${BENCH_METRICS_PORT:-19090}
PEER_PORT=${PEER_PORT:-19444}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-4}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-8}
MAX_THREADS=${MAX_THREADS:-1}
SERVER_CPUS=${SERVER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
KEY_ALG=${KEY_ALG:-rsa:2048}
OUT=${BENCH_OUT:-}

die() {
    echo "run.sh: $*" >&2
    exit 1
}

[[ -x $INJECTOR ]] || die "no injector binary at $INJECTOR (build it, or pass its path as \$1)"
[[ -x $BENCH ]] || die "no bench binary at $BENCH (build it, or pass its path as \$2)"
command -v openssl >/dev/null || die "openssl (the command) is needed for the certificates"
for p in "$PORT" "$METRICS_PORT"; do
    [[ $p =~ ^[0-9]+$ ]] || die "bad port '$p'"
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p on 127.0.0.1 is already in use (set BENCH_PORT / BENCH_METRICS_PORT)"
    fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nutshell-bench-injector.XXXXXX")
INJ_PID=

# shellcheck disable=SC2317 # called through the trap
cleanup() {
    if [[ -n $INJ_PID ]] && kill -0 "$INJ_PID" 2>/dev/null; then
        kill "$INJ_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$INJ_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$INJ_PID" 2>/dev/null || true
        wait "$INJ_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Optional CPU pinning: the words to put before a command (taskset execs it: same pid).
server_pin=()
client_pin=()
[[ -z $SERVER_CPUS ]] || server_pin=(taskset -c "$SERVER_CPUS")
[[ -z $CLIENT_CPUS ]] || client_pin=(taskset -c "$CLIENT_CPUS")

# True when http://127.0.0.1:$1$2 answers 200 (curl if present, else bash's /dev/tcp).
http_ok() {
    if command -v curl >/dev/null; then
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1$2" 2>/dev/null
        return
    fi
    local status
    # shellcheck disable=SC2016 # $0 and $1 belong to the inner bash
    status=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3 && head -n1 <&3' \
        "$1" "$2" 2>/dev/null) || return 1
    [[ $status == HTTP/1.?\ 200* ]]
}

# ---- A throwaway CA and a serving certificate with IP SAN 127.0.0.1 (valid one day) ----
ssl() {
    openssl "$@" >>"$TMP/openssl.log" 2>&1 || {
        cat "$TMP/openssl.log" >&2
        die "openssl $1 failed"
    }
}
if [[ $KEY_ALG == ec ]]; then
    newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
else
    newkey=(-newkey "$KEY_ALG")
fi
ssl req -x509 "${newkey[@]}" -nodes -days 1 -subj "/CN=nutshell-bench-ca" \
    -keyout "$TMP/ca.key" -out "$TMP/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ssl req "${newkey[@]}" -nodes -subj "/CN=nutshell-injector.nutshell-system.svc" \
    -keyout "$TMP/tls.key" -out "$TMP/tls.csr"
cat >"$TMP/ext.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:nutshell-injector.nutshell-system.svc
EOF
ssl x509 -req -in "$TMP/tls.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 1 -extfile "$TMP/ext.cnf" -out "$TMP/tls.crt"

# ---- Start the injector and wait until it is ready -------------------------------------
inj_cmd=("$INJECTOR" serve "--tls-cert=$TMP/tls.crt" "--tls-key=$TMP/tls.key"
    "--listen=127.0.0.1:$PORT" "--metrics-listen=127.0.0.1:$METRICS_PORT" "--config=$TMP/none.json")
echo "injector: ${inj_cmd[*]}"
# Started directly (not through a function or subshell) so that $! is the injector itself,
# whose /proc/PID/status the bench samples.
"${server_pin[@]}" "${inj_cmd[@]}" >"$TMP/injector.log" 2>&1 &
INJ_PID=$!

ready=
for _ in $(seq 100); do # 10 s
    if ! kill -0 "$INJ_PID" 2>/dev/null; then
        echo "--- injector log ---" >&2
        cat "$TMP/injector.log" >&2
        die "the injector exited before it was ready"
    fi
    if http_ok "$METRICS_PORT" /readyz; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ -z $ready ]]; then
    echo "--- injector log ---" >&2
    tail -n 50 "$TMP/injector.log" >&2
    die "the injector was not ready on http://127.0.0.1:$METRICS_PORT/readyz within 10 s"
fi
echo "injector: pid $INJ_PID ready"

# ---- The two runs ----------------------------------------------------------------------
common=(--port "$PORT" --path /inject --cacert "$TMP/ca.crt" --body "$HERE/review.json"
    --pid "$INJ_PID" --duration "$DURATION" --warmup "$WARMUP")
status=0
results=()

bench() { # $1 = title, rest = mode flags
    local title=$1 rc
    shift
    echo
    echo "== $title =="
    echo "command: $(basename "$BENCH") ${common[*]} $*"
    set +e
    "${client_pin[@]}" "$BENCH" "${common[@]}" "$@" | tee "$TMP/bench.out"
    rc=${PIPESTATUS[0]}
    set -e
    if [[ $rc -ne 0 ]]; then
        status=1
        echo "run.sh: $title: nutshell-bench-injector exited with $rc" >&2
    fi
    results+=("$(grep '^{' "$TMP/bench.out" | tail -n 1 || true)")
    if ! kill -0 "$INJ_PID" 2>/dev/null; then
        echo "--- injector log ---" >&2
        tail -n 50 "$TMP/injector.log" >&2
        die "the injector died during: $title"
    fi
}

bench "open loop: $RATE reviews/s for $DURATION s" \
    --rate "$RATE" --connections "$RATE_CONNECTIONS" --threads 1
bench "closed loop: as fast as possible for $DURATION s" \
    --max --connections "$MAX_CONNECTIONS" --threads "$MAX_THREADS"

# ---- The peer: nginx serving this injector's own reply, same TLS, same runs -------------
if command -v nginx >/dev/null; then
    mkdir -p "$TMP/www"
    chmod a+rx "$TMP" "$TMP/www" # nginx workers run unprivileged
    curl -fsS --cacert "$TMP/ca.crt" -H 'Content-Type: application/json' \
        --data-binary "@$HERE/review.json" -o "$TMP/www/reply.json" "https://127.0.0.1:$PORT/inject"
    chmod a+r "$TMP/www/reply.json"
    cat >"$TMP/nginx.conf" <<EOF
worker_processes 2;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$PEER_PORT ssl;
        ssl_certificate $TMP/tls.crt;
        ssl_certificate_key $TMP/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 10000000;
        # A POST to a static file is a 405 in nginx; turn it into the file itself.
        location = /inject { root $TMP/www; try_files /reply.json =404; error_page 405 =200 /reply.json; }
        location = /reply.json { root $TMP/www; default_type application/json; }
    }
}
EOF
    kill "$INJ_PID"
    wait "$INJ_PID" 2>/dev/null || true
    nginx -c "$TMP/nginx.conf"
    sleep 0.3
    INJ_PID=$(cat "$TMP/nginx.pid")
    common=(--port "$PEER_PORT" --path /inject --cacert "$TMP/ca.crt" --body "$HERE/review.json"
        --duration "$DURATION" --warmup "$WARMUP" --no-uid-check)
    bench "peer: nginx $(nginx -v 2>&1 | sed 's|.*/||'), static reply, $RATE reviews/s" \
        --rate "$RATE" --connections "$RATE_CONNECTIONS" --threads 1
    bench "peer: nginx, static reply, as fast as possible" \
        --max --connections "$MAX_CONNECTIONS" --threads "$MAX_THREADS"
    nginx -c "$TMP/nginx.conf" -s stop
    INJ_PID=
else
    echo
    echo "(nginx not installed: no peer run; hack/deps.sh installs nginx-light)"
fi

echo
echo "== results (JSON) =="
for r in "${results[@]}"; do
    [[ -n $r ]] && echo "$r"
    if [[ -n $r && -n $OUT ]]; then
        echo "$r" >>"$OUT"
    fi
done
if [[ -s $TMP/injector.log ]] && grep -qiE 'error|warn' "$TMP/injector.log"; then
    echo
    echo "injector log had warnings or errors (last 10 lines):"
    grep -iE 'error|warn' "$TMP/injector.log" | tail -n 10
fi
exit "$status"
