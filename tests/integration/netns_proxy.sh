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
# a TCP echo on 9000 and a server-first echo on 9001 (python3). Every client connection goes
# app -> client proxy (15001) -> server proxy (15006) -> app, so each check crosses both proxies.
# The client proxy splices opaque TCP, the server proxy copies it (--splice=off): both paths run.
# Exits 77 (skip) without root, iptables-legacy or python3.
# `cond && pass ... || fail ...` is safe in this file: pass only echoes and counts.
# shellcheck disable=SC2015
set -uo pipefail

INIT=${1:?usage: netns_proxy.sh NUTSHELL_INIT NUTSHELL_PROXY}
PROXY_SRC=${2:?usage: netns_proxy.sh NUTSHELL_INIT NUTSHELL_PROXY}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip_all "needs root for network namespaces and iptables (run ctest as root)"
for tool in ip iptables-legacy setpriv timeout curl; do
  command -v "$tool" >/dev/null 2>&1 || skip_all "$tool is not installed (apt-get install iptables iproute2 util-linux coreutils curl)"
done
PY=/usr/bin/python3
[ -x "$PY" ] || skip_all "/usr/bin/python3 is not installed (the test's servers and clients are python3)"

CLI="npx-cli-$$"
SRV="npx-srv-$$"
TMP=$(mktemp -d /tmp/npx-netns.XXXXXX)
NAMESPACES=()
cleanup() {
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkns() {
  ip netns add "$1" || return 1
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}
PROBE="npx-probe-$$"
mkns "$PROBE" 2>/dev/null || skip_all "cannot create network namespaces (ip netns add failed)"
ip netns exec "$PROBE" iptables-legacy -t nat -S >/dev/null 2>&1 ||
  skip_all "the kernel has no legacy iptables nat table (ip_tables/iptable_nat)"
ip netns del "$PROBE"

# The proxy user must reach its binary and files: a world-readable copy.
chmod 755 "$TMP"
cp "$PROXY_SRC" "$TMP/nutshell-proxy" && chmod 755 "$TMP/nutshell-proxy"
PROXY="$TMP/nutshell-proxy"

C() { ip netns exec "$CLI" "$@"; }
S() { ip netns exec "$SRV" "$@"; }
AS_PROXY=(setpriv --reuid=1337 --regid=1337 --clear-groups)
# shellcheck disable=SC2054 # the commas are inside port lists
INJECTOR_ARGS=(--proxy-port=15001 --inbound-port=15006 --proxy-uid=1337 --proxy-gid=1337
  --include-inbound-ports='*' --exclude-inbound-ports=15020,15090 --include-outbound-cidrs='*'
  --exclude-outbound-cidrs= --exclude-outbound-ports= --include-outbound-ports= --ipv6=auto)

# ---------------------------------------------------------------- helper programs
cat >"$TMP/server.py" <<'PY'
# Test servers for netns_proxy.sh: HTTP/1.1 on the given ports, a TCP echo, a server-first echo.
import socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a):
        pass
    def send_body(self, code, body, extra=()):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def do_GET(self):
        p = self.path
        if p.startswith("/hello"):
            self.send_body(200, ("hello from %s\n" % self.server.name).encode())
        elif p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                c = (("chunk %d " % i) * 100).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        elif p == "/headers":
            body = "".join("%s: %s\n" % (k.lower(), v) for k, v in self.headers.items())
            self.send_body(200, body.encode())
        elif p.startswith("/slow"):
            time.sleep(1.5)
            self.send_body(200, b"slow done\n")
        elif p == "/upgrade" and self.headers.get("Upgrade") == "echo":
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
            self.wfile.flush()
            c = self.connection
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
            self.close_connection = True
        else:
            self.send_body(404, b"not found\n")
    do_HEAD = do_GET
    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(n)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_body(200, body)

class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

def http(port, name):
    s = Server(("::", port), H)
    s.daemon_threads = True
    s.name = name
    s.serve_forever()

def echo_conn(c, banner):
    try:
        if banner:
            c.sendall(banner)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
    finally:
        c.close()

def echo(port, banner):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo_conn, args=(c, banner), daemon=True).start()

# usage: server.py HTTP_PORT:NAME... echo=PORT banner=PORT
for a in sys.argv[1:]:
    if a.startswith("echo="):
        threading.Thread(target=echo, args=(int(a[5:]), None), daemon=True).start()
    elif a.startswith("banner="):
        threading.Thread(target=echo, args=(int(a[7:]), b"220 banner\r\n"), daemon=True).start()
    else:
        port, name = a.split(":")
        threading.Thread(target=http, args=(int(port), name), daemon=True).start()
time.sleep(3600)
PY
cat >"$TMP/client.py" <<'PY'
# Scripted HTTP/TCP client for netns_proxy.sh. Prints one result line; exits 1 on failure.
import hashlib, os, socket, sys, time

def conn(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, int(port)))
    return s

class Reader:
    def __init__(self, s):
        self.s, self.buf = s, b""
    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d
    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d
    def response(self, head=False):
        status = int(self.line().split()[1])
        hdrs = {}
        while True:
            l = self.line()
            if not l:
                break
            k, v = l.split(b":", 1)
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        body = b""
        if head or status in (101, 204, 304) or 100 <= status < 200:
            pass
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                n = int(self.line().split(b";")[0], 16)
                if n == 0:
                    while self.line():
                        pass
                    break
                body += self.take(n)
                self.take(2)
        else:
            body = self.take(int(hdrs.get("content-length", "0")))
        return status, hdrs, body

def get(path, host):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()

def main():
    cmd, host, port = sys.argv[1], sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    if cmd == "keepalive":  # N sequential requests on one connection; counts by server name
        n, hosthdr = int(args[0]), args[1] if len(args) > 1 else host
        s = conn(host, port)
        r = Reader(s)
        counts = {}
        for _ in range(n):
            s.sendall(get("/hello", hosthdr))
            st, h, b = r.response()
            if st != 200:
                print("status", st, b)
                return 1
            name = b.decode().split()[-1]
            counts[name] = counts.get(name, 0) + 1
        print(" ".join("%s=%d" % kv for kv in sorted(counts.items())))
    elif cmd == "conns":  # N requests, each on a new connection; counts by server name
        n, hosthdr = int(args[0]), args[1] if len(args) > 1 else host
        counts = {}
        for _ in range(n):
            s = conn(host, port)
            s.sendall(get("/hello", hosthdr)[:-2] + b"Connection: close\r\n\r\n")
            r = Reader(s)
            st, h, b = r.response()
            try:  # "Connection: close" was asked: the proxy must close after the response
                r.fill()
                print("connection left open after Connection: close")
                return 1
            except EOFError:
                pass
            s.close()
            if st != 200:
                print("status", st, b)
                return 1
            name = b.decode().split()[-1]
            counts[name] = counts.get(name, 0) + 1
        print(" ".join("%s=%d" % kv for kv in sorted(counts.items())))
    elif cmd == "trace":  # sends a traceparent; prints the one the server saw
        s = conn(host, port)
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        s.sendall(("GET /headers HTTP/1.1\r\nHost: x\r\ntraceparent: %s\r\n\r\n" % tp).encode())
        st, h, b = Reader(s).response()
        seen = [l.split(": ", 1)[1] for l in b.decode().splitlines() if l.startswith("traceparent: ")]
        print("sent=%s seen=%s" % (tp, ",".join(seen)))
    elif cmd == "slowloris":  # half a head, then silence: how long until the proxy answers?
        s = conn(host, port)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t0 = time.time()
        try:
            st, h, b = Reader(s).response()
        except EOFError:
            st = 0
        print("status=%d after=%.1f" % (st, time.time() - t0))
    elif cmd == "refused":  # nothing listens there: the client must learn it, not hang
        try:
            s = conn(host, port)
            s.settimeout(3)
            d = s.recv(100)
            print("closed" if not d else "data=%r" % d)
        except ConnectionResetError:
            print("reset")
        except socket.timeout:
            print("hang")
        except OSError as e:
            print(type(e).__name__)
    elif cmd == "chaos":  # SECONDS of random abuse from 8 threads; prints what happened
        import random, struct, threading
        secs, echo_port = float(args[0]), int(args[1])
        random.seed(8)
        done, lock = {}, threading.Lock()
        good = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

        def mutate(b):
            b = bytearray(b)
            for _ in range(random.randint(1, 5)):
                b[random.randrange(len(b))] = random.randrange(256)
            return bytes(b)

        def one(a):
            s = conn(host, echo_port if a == 9 else port)
            s.settimeout(3)
            try:
                if a == 0:  # a pipelined burst, read a little, leave
                    s.sendall(good * random.randint(1, 40))
                    s.recv(65536)
                elif a == 1:  # random bytes
                    s.sendall(os.urandom(random.randint(1, 5000)))
                elif a == 2:  # a mutated head
                    s.sendall(mutate(good * 3))
                    s.recv(65536)
                elif a == 3:  # reset in the middle of a chunked response
                    s.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
                    s.recv(100)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif a == 4:  # a head in 3-byte pieces, then half-close
                    for i in range(0, len(good), 3):
                        s.sendall(good[i:i + 3])
                        time.sleep(0.002)
                    s.shutdown(socket.SHUT_WR)
                    s.recv(1000)
                elif a == 5:  # a chunked body, maybe mutated
                    body = os.urandom(random.randint(0, 20000))
                    req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    req += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                    s.sendall(mutate(req) if random.random() < 0.5 else req)
                    s.recv(65536)
                elif a == 6:  # an upgrade with early bytes
                    s.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                              b"Upgrade: echo\r\n\r\n" + os.urandom(100))
                    s.recv(1000)
                elif a == 7:  # a body cut short by a reset
                    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif a == 8:  # half a head, then a reset
                    s.sendall(good[:random.randint(1, len(good) - 1)])
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:  # opaque echo, must be exact
                    d = os.urandom(random.randint(0, 200000))
                    s.sendall(d)
                    s.shutdown(socket.SHUT_WR)
                    got = b""
                    while True:
                        x = s.recv(65536)
                        if not x:
                            break
                        got += x
                    if got != d:
                        return "echo-mismatch"
                return "ok"
            except OSError as e:
                return type(e).__name__
            finally:
                s.close()

        def worker(end):
            while time.time() < end:
                a = random.randrange(10)
                try:
                    r = one(a)
                except OSError as e:
                    r = "connect-" + type(e).__name__
                with lock:
                    done[r] = done.get(r, 0) + 1

        end = time.time() + secs
        ts = [threading.Thread(target=worker, args=(end,)) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(" ".join("%s=%d" % kv for kv in sorted(done.items())))
        return 1 if "echo-mismatch" in done or any(k.startswith("connect-") for k in done) else 0
    elif cmd == "pipeline":  # N requests written at once, N responses read in order
        n = int(args[0])
        s = conn(host, port)
        reqs = b"".join(get("/hello?%d" % i, host) for i in range(n - 1))
        reqs += get("/chunked", host)
        s.sendall(reqs)
        r = Reader(s)
        ok = 0
        for i in range(n):
            st, h, b = r.response()
            if st == 200 and (i < n - 1 and b.startswith(b"hello") or i == n - 1 and len(b) == 4000):
                ok += 1
        print("pipelined=%d ok=%d" % (n, ok))
        return 0 if ok == n else 1
    elif cmd == "echo":  # SIZE random bytes, then half-close; all must come back
        size = int(args[0])
        data = os.urandom(size)
        s = conn(host, port)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        print("sent=%d received=%d same=%s" % (size, len(got), got == data))
        return 0 if got == data else 1
    elif cmd == "banner":  # the server speaks first
        s = conn(host, port)
        t0 = time.time()
        b = s.recv(100)
        dt = time.time() - t0
        s.sendall(b"ping\n")
        e = s.recv(100)
        print("banner=%r after=%.3fs echo=%r" % (b, dt, e))
        return 0 if b == b"220 banner\r\n" and e == b"ping\n" else 1
    elif cmd == "upgrade":
        s = conn(host, port)
        s.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        r = Reader(s)
        st, h, _ = r.response()
        s.sendall(b"raw bytes \x00\x01\xff after the upgrade")
        got = r.take(len(b"raw bytes \x00\x01\xff after the upgrade"))
        print("status=%d echo=%r" % (st, got))
        return 0 if st == 101 and got == b"raw bytes \x00\x01\xff after the upgrade" else 1
    elif cmd == "raw":  # send ARG verbatim (escapes allowed), print the status line
        s = conn(host, port)
        s.sendall(args[0].encode().decode("unicode_escape").encode("latin-1"))
        r = Reader(s)
        st, h, b = r.response()
        print("status=%d connection=%s" % (st, h.get("connection", "")))
    elif cmd == "post":
        s = conn(host, port)
        body = os.urandom(int(args[0]))
        chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)]
        req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        req += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        s.sendall(req)
        st, h, b = Reader(s).response()
        print("status=%d same=%s" % (st, b == body))
        return 0 if st == 200 and b == body else 1
    return 0

sys.exit(main() or 0)
PY
client() { C timeout 60 "$PY" "$TMP/client.py" "$@"; }

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
  out=$(ip netns exec "$ns" "$INIT" "${INJECTOR_ARGS[@]}" 2>&1) || {
    fail "nutshell-init in $ns: $out"
    finish_tests
    exit 1
  }
done
pass "nutshell-init programmed both pods"

# Two routes: "reviews" by its service address (and port 80), "ratings" by Host only.
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
   {"host": "ratings-v2.default.svc.cluster.local", "port": 8082, "address": "10.233.0.2", "weight": 3}]}]}
JSON
  chmod 644 "$TMP/routes.json"
}
write_routes 1 90 10

# Background processes start without a shell function in between, so that $! (and the
# cleanup's `jobs -p`) is the program itself: ip netns exec, setpriv and env all exec.
ip netns exec "$SRV" "$PY" "$TMP/server.py" 8080:main 8081:v1 8082:v2 echo=9000 banner=9001 \
  >"$TMP/app.log" 2>&1 &
# --sniff-timeout=3s: a server-first banner must arrive long before it (no detection delay).
ip netns exec "$SRV" "${AS_PROXY[@]}" "$PROXY" --splice=off --sniff-timeout=3s >"$TMP/server-proxy.log" 2>&1 &
SPROXY=$!
ip netns exec "$CLI" "${AS_PROXY[@]}" env POD_NAMESPACE=default "$PROXY" --concurrency=2 \
  --header-timeout=2s --drain-timeout=5s --sniff-timeout=3s "--routes-file=$TMP/routes.json" >"$TMP/client-proxy.log" 2>&1 &
CPROXY=$!

C "$PROXY" wait --timeout=10s && S "$PROXY" wait --timeout=10s &&
  pass "nutshell-proxy wait: both proxies ready on /healthz/ready" || fail "proxies not ready"
for p in 8080 8081 8082 9000 9001; do
  wait_for 10 S "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $p), 1)" ||
    fail "the test app is not listening on $p: $(cat "$TMP/app.log")"
done

metric() { # NS SERIES: the value of one exposition line, 0 if absent
  ip netns exec "$1" curl -s -m 5 http://127.0.0.1:15020/metrics |
    awk -v s="$2" 'index($0, s " ") == 1 { print $NF; found = 1 } END { if (!found) print 0 }'
}
OUT='direction="outbound"'
IN='direction="inbound"'

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
if grep -qiE 'AddressSanitizer|runtime error|LeakSanitizer' "$TMP/client-proxy.log" "$TMP/server-proxy.log"; then
  fail "sanitizer reports:"
  cat "$TMP/client-proxy.log" "$TMP/server-proxy.log" >&2
fi

finish_tests
