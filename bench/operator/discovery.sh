#!/usr/bin/env bash
# discovery.sh - benchmark of the operator's route discovery server (port 15010,
# operator/route_server.c): builds nutshell-bench-discovery (Release, in a build directory
# outside the checkout) and runs it. It forks the server on 127.0.0.1 with a synthetic
# table of Canaries, and measures the long-poll fan-out of one table change to C held
# requests, the server's memory and threads, and plain GETs per second. Loopback only;
# needs no cluster and no root.
#
# usage: bench/operator/discovery.sh [nutshell-bench-discovery options]
#   with no options: --routes 100 --clients 100,1000,5000 --wait 60 --abandon 1000
#   --check-conns 10 --check-wait 35 --threads 4 --duration 5 (about a minute)
# environment (optional):
#   BUILD=DIR   build directory (default ${TMPDIR:-/tmp}/nutshell-build-bench)
# exit status: the benchmark's (0 when every request was answered as expected).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-${TMPDIR:-/tmp}/nutshell-build-bench}

log=$(mktemp "${TMPDIR:-/tmp}/nutshell-bench-discovery-build.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$BUILD" -j"$(nproc)" --target nutshell-bench-discovery; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "discovery.sh: the build failed (build directory $BUILD)" >&2
    exit 1
fi
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- operator lib bench 2>/dev/null) ]]; then
    rev="$rev + uncommitted changes"
fi
echo "build: $BUILD (Release), source $rev"
echo "uptime: $(uptime)"
"$BUILD/bench/operator/nutshell-bench-discovery" "$@"
