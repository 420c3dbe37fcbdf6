# Scripted HTTP/TCP client of the network-namespace suites. Prints one result line; exits 1 on
# failure.
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
    elif cmd == "rounds":  # ROUNDS x N GETs of /hello, one connection (a new one only after the
        # server closed it); counts answers by server name, or "sCODE" for other statuses; before
        # round k > 1 waits (<= 30 s) for the file GO.k, after each round prints a line
        hosthdr, n, rounds, go = args[0], int(args[1]), int(args[2]), args[3] if len(args) > 3 else ""
        s, r = None, None
        for k in range(1, rounds + 1):
            if k > 1 and go:
                t_end = time.time() + 30
                while not os.path.exists("%s.%d" % (go, k)):
                    if time.time() > t_end:
                        print("round=%d never started" % k)
                        return 1
                    time.sleep(0.02)
            counts = {}
            for _ in range(n):
                if s is None:
                    s = conn(host, port)
                    r = Reader(s)
                s.sendall(get("/hello", hosthdr))
                st, h, b = r.response()
                name = b.decode().split()[-1] if st == 200 else "s%d" % st
                counts[name] = counts.get(name, 0) + 1
                if h.get("connection", "").lower() == "close":
                    s.close()
                    s = None
            print("round=%d %s" % (k, " ".join("%s=%d" % kv for kv in sorted(counts.items()))),
                  flush=True)
    elif cmd == "steady":  # one connection, a request every 20 ms until STOPFILE exists (at most
        # 600 s): is a connection dropped while route tables change under it? No request is
        # sent while PAUSEFILE exists (so that another client can measure a split alone).
        hosthdr, stopfile, pausefile = args[0], args[1], args[2]
        s = conn(host, port)
        r = Reader(s)
        counts, t_end = {}, time.time() + 600
        while not os.path.exists(stopfile) and time.time() < t_end:
            if os.path.exists(pausefile):
                time.sleep(0.01)
                continue
            try:
                s.sendall(get("/hello", hosthdr))
                st, h, b = r.response()
                name = b.decode().split()[-1] if st == 200 else "status%d" % st
            except (OSError, EOFError, ValueError) as e:
                print("failed after %d requests: %s" % (sum(counts.values()), e))
                return 1
            counts[name] = counts.get(name, 0) + 1
            time.sleep(0.02)
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
