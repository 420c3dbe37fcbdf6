#!/usr/bin/env bash
# run.sh - proxy benchmark: HTTP/1.1 keep-alive GETs to one nginx backend, four ways, in the
# same run and the same throwaway network namespace (loopback only):
#   direct          client -> backend
#   nutshell-proxy  client -> iptables REDIRECT -> nutshell-proxy (15001, UID 1337) -> backend,
#                   the sidecar's real outbound path (SO_ORIGINAL_DST, conntrack NAT)
#   nginx           client -> nginx reverse proxy (upstream keepalive) -> backend
#   haproxy         client -> haproxy (http mode, connection reuse) -> backend
# Each proxy gets one core (PROXY_CPU) and one worker/thread; the client and the backend
# share LOAD_CPU. For each row: an open-loop run at RATE req/s (latency percentiles from
# when each request was due) and a closed-loop run as fast as possible (throughput, and
# the proxy's CPU use so that throughput can be read per core). RSS of the proxy after.
#
# usage: sudo bench/proxy/run.sh [NUTSHELL_PROXY [NUTSHELL_BENCH_PROXY]]
#   defaults: build/proxy/nutshell-proxy, build/bench/proxy/nutshell-bench-proxy
# environment (all optional):
#   RATE=1000 DURATION=10 WARMUP=1   open-loop rate, seconds measured per run, warm-up
#   CONNECTIONS=4                    connections of the open-loop run
#   MAX_CONNECTIONS=16               connections of the closed-loop run
#   PROXY_CPU=0 LOAD_CPU=1           taskset CPU lists; empty = no pinning
#   NICE=-10                         nice level of every benchmark process (all rows alike),
#                                    so that other work on a shared machine disturbs less
#   ROWS="direct nutshell nginx haproxy"
#   REPEAT=1                         rounds of all rows; the summary shows each figure's
#                                    median over the rounds (a shared machine drifts)
#   BENCH_OUT=FILE                   also append the JSON lines to FILE
# Needs root (a network namespace and an iptables-legacy REDIRECT rule in it), nginx
# (nginx-light) and haproxy; a missing peer skips its row with a note.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROXY=${1:-$ROOT/build/proxy/nutshell-proxy}
BENCH=${2:-$ROOT/build/bench/proxy/nutshell-bench-proxy}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-4}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-16}
PROXY_CPU=${PROXY_CPU-0}
LOAD_CPU=${LOAD_CPU-1}
NICE=${NICE--10}
ROWS=${ROWS:-direct nutshell nginx haproxy}
REPEAT=${REPEAT:-1}
OUT=${BENCH_OUT:-}

BACKEND_PORT=18081 # the backend, reached directly
CAPTURED_PORT=18080 # the backend too, but connections to it are redirected to nutshell-proxy
NGINX_PORT=18082
HAPROXY_PORT=18083

die() {
    echo "run.sh: $*" >&2
    exit 1
}
[[ $(id -u) -eq 0 ]] || die "needs root (network namespace, iptables); run with sudo"
[[ -x $PROXY ]] || die "no nutshell-proxy at $PROXY (build it, or pass its path as \$1)"
[[ -x $BENCH ]] || die "no load generator at $BENCH (build it, or pass its path as \$2)"
command -v nginx >/dev/null || die "nginx is needed for the backend (apt-get install nginx-light)"
for t in ip iptables-legacy setpriv; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install iproute2 iptables util-linux)"
done

NS="npb-$$"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nutshell-bench-proxy.XXXXXX")
chmod 755 "$TMP"
PIDS=()
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for f in "$TMP"/*.pid; do
        if [[ -e $f ]]; then kill "$(cat "$f")" 2>/dev/null || true; fi
    done
    sleep 0.2
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
N() { ip netns exec "$NS" "$@"; }
N ip link set lo up
# The sidecar's outbound capture, for one port: the client's connections to the backend on
# CAPTURED_PORT go to 15001; the proxy's own (UID 1337) are left alone.
N iptables-legacy -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport "$CAPTURED_PORT" \
    -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001

proxy_pin=(nice -n "$NICE")
load_pin=(nice -n "$NICE")
[[ -z $PROXY_CPU ]] || proxy_pin+=(taskset -c "$PROXY_CPU")
[[ -z $LOAD_CPU ]] || load_pin+=(taskset -c "$LOAD_CPU")

wait_port() { # PORT: until something accepts on 127.0.0.1:PORT (<= 5 s)
    for _ in $(seq 50); do
        N bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}

# ---- the backend: nginx answering every GET with a small fixed body ---------------------
cp "$PROXY" "$TMP/nutshell-proxy"
chmod 755 "$TMP/nutshell-proxy"
cat >"$TMP/backend.conf" <<EOF
worker_processes 1;
pid $TMP/backend.pid;
error_log $TMP/backend-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        listen 127.0.0.1:$CAPTURED_PORT;
        location / { default_type text/plain; return 200 "hello from the benchmark backend\n"; }
    }
}
EOF
N "${load_pin[@]}" nginx -c "$TMP/backend.conf"
wait_port "$BACKEND_PORT"

results=()
# Per row: one value per round, space-separated; the summary takes the median.
declare -A P50 P99 MAXRPS CPU PER RSS PEAK
json_field() { sed -nE "s/.*\"$2\":([-0-9.]+).*/\1/p" <<<"$1"; }

# bench TITLE ROW PORT PID MODE...: one load run; keeps the JSON line.
bench() {
    local title=$1 row=$2 port=$3 pid=$4 rc line
    shift 4
    echo
    echo "== $title =="
    local cmd=("$BENCH" --port "$port" --duration "$DURATION" --warmup "$WARMUP" "$@")
    [[ $pid == - ]] || cmd+=(--pid "$pid")
    echo "command: $(basename "$BENCH") ${cmd[*]:1}"
    set +e
    N "${load_pin[@]}" "${cmd[@]}" | tee "$TMP/bench.out"
    rc=${PIPESTATUS[0]}
    set -e
    [[ $rc -eq 0 ]] || echo "run.sh: $title: the load generator exited with $rc" >&2
    line=$(grep '^{' "$TMP/bench.out" | tail -n 1 || true)
    [[ -n $line ]] || return 0
    line="{\"row\":\"$row\",${line:1}"
    results+=("$line")
    if [[ $* == *--max* ]]; then
        MAXRPS[$row]+=" $(json_field "$line" rps)"
        CPU[$row]+=" $(json_field "$line" server_cpu_cores)"
        PER[$row]+=" $(awk -v m="$(json_field "$line" rps)" -v c="$(json_field "$line" server_cpu_cores)" \
            'BEGIN { print (c > 0 ? m / c : -1) }')"
        RSS[$row]+=" $(json_field "$line" server_rss_kb)"
        PEAK[$row]+=" $(json_field "$line" server_peak_rss_kb)"
    else
        P50[$row]+=" $(json_field "$line" p50_us)"
        P99[$row]+=" $(json_field "$line" p99_us)"
    fi
}

runs() { # ROW PORT PID
    bench "$1: $RATE req/s, $CONNECTIONS connections" "$1" "$2" "$3" --rate "$RATE" \
        --connections "$CONNECTIONS"
    bench "$1: as fast as possible, $MAX_CONNECTIONS connections" "$1" "$2" "$3" --max \
        --connections "$MAX_CONNECTIONS"
}

start_nutshell() {
    # Not through N(): $! must be the proxy itself (ip netns exec, nice, taskset, setpriv exec).
    ip netns exec "$NS" "${proxy_pin[@]}" setpriv --reuid=1337 --regid=1337 --clear-groups \
        "$TMP/nutshell-proxy" --concurrency=1 --log-level=warn >"$TMP/nutshell.log" 2>&1 &
    NUTSHELL_PID=$!
    PIDS+=("$NUTSHELL_PID")
    N "$TMP/nutshell-proxy" wait --timeout=10s || die "nutshell-proxy did not get ready: $(cat "$TMP/nutshell.log")"
}

start_nginx_proxy() {
    cat >"$TMP/nginx-proxy.conf" <<EOF
worker_processes 1;
pid $TMP/nginx-proxy.pid;
error_log $TMP/nginx-proxy-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
    N "${proxy_pin[@]}" nginx -c "$TMP/nginx-proxy.conf"
    wait_port "$NGINX_PORT"
    NGINX_MASTER=$(cat "$TMP/nginx-proxy.pid")
    NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -n 1)
    NGINX_MASTER_RSS=$(awk '/^VmRSS/ { print $2 }' "/proc/$NGINX_MASTER/status")
}

start_haproxy() {
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    http-reuse always
    server s1 127.0.0.1:$BACKEND_PORT
EOF
    ip netns exec "$NS" "${proxy_pin[@]}" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    PIDS+=("$HAPROXY_PID")
    wait_port "$HAPROXY_PORT"
}

echo "machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) CPUs"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pinning: proxies on CPU ${PROXY_CPU:-any}, client and backend on CPU ${LOAD_CPU:-any}; nice $NICE"
echo "nutshell-proxy: $("$PROXY" version)"
echo "nginx: $(nginx -v 2>&1 | sed 's|.*/||')"
command -v haproxy >/dev/null && echo "haproxy: $(haproxy -v | head -n 1 | awk '{ print $3 }')"

one_round() {
    for row in $ROWS; do
        case $row in
        direct)
            runs direct "$BACKEND_PORT" -
            ;;
        nutshell)
            start_nutshell
            runs nutshell "$CAPTURED_PORT" "$NUTSHELL_PID"
            kill "$NUTSHELL_PID"
            wait "$NUTSHELL_PID" 2>/dev/null || true
            ;;
        nginx)
            start_nginx_proxy
            runs nginx "$NGINX_PORT" "$NGINX_WORKER"
            echo "(nginx master process: RSS $NGINX_MASTER_RSS kB, not in the figures above)"
            N nginx -c "$TMP/nginx-proxy.conf" -s stop
            for _ in $(seq 50); do # the next round binds the same port
                kill -0 "$NGINX_MASTER" 2>/dev/null || break
                sleep 0.1
            done
            ;;
        haproxy)
            if ! command -v haproxy >/dev/null; then
                echo
                echo "(haproxy not installed: no haproxy row; apt-get install haproxy)"
                continue
            fi
            start_haproxy
            runs haproxy "$HAPROXY_PORT" "$HAPROXY_PID"
            kill "$HAPROXY_PID"
            wait "$HAPROXY_PID" 2>/dev/null || true
            ;;
        *) die "unknown row $row" ;;
        esac
    done
}

for round in $(seq "$REPEAT"); do
    [[ $REPEAT -eq 1 ]] || printf '\n######## round %s of %s\n' "$round" "$REPEAT"
    one_round
done

median() { # VALUES...: the median (the lower middle one for an even count)
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

echo
echo "== summary: $RATE req/s open loop (latency in us; added = minus direct), max closed loop;"
echo "   median of $REPEAT round(s) =="
printf '%-10s %9s %9s %11s %11s %12s %10s %12s %10s\n' row p50 p99 "added p50" "added p99" \
    "max req/s" "proxy CPU" "req/s/core" "RSS kB"
for row in $ROWS; do
    [[ -n ${P50[$row]:-} ]] || continue
    # shellcheck disable=SC2086 # the lists are meant to split
    {
        p50=$(median ${P50[$row]})
        p99=$(median ${P99[$row]})
        d50=$(median ${P50[direct]:-})
        d99=$(median ${P99[direct]:-})
        m=$(median ${MAXRPS[$row]:-0})
        c=$(median ${CPU[$row]:--1})
        per=$(median ${PER[$row]:--1})
        rss=$(median ${RSS[$row]:--1})
        peak=$(median ${PEAK[$row]:--1})
    }
    awk -v r="$row" -v p50="$p50" -v p99="$p99" -v d50="$d50" -v d99="$d99" -v m="$m" -v c="$c" \
        -v per="$per" -v rss="$rss" -v peak="$peak" 'BEGIN {
        a50 = d50 == "" || r == "direct" ? "-" : sprintf("%.1f", p50 - d50)
        a99 = d99 == "" || r == "direct" ? "-" : sprintf("%.1f", p99 - d99)
        cpu = c < 0 ? "-" : sprintf("%.2f", c)
        per = per <= 0 ? "-" : sprintf("%.0f", per)
        mem = rss < 0 ? "-" : sprintf("%d (%d)", rss, peak)
        printf "%-10s %9.1f %9.1f %11s %11s %12.0f %10s %12s %10s\n", r, p50, p99, a50, a99, m, cpu, per, mem
    }'
done
echo "(RSS: after the closed-loop run, peak in brackets; nginx: its worker only)"

echo
echo "== results (JSON) =="
for r in "${results[@]}"; do
    echo "$r"
    [[ -z $OUT ]] || echo "$r" >>"$OUT"
done
