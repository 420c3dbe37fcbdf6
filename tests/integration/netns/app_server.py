# The test app of the network-namespace suites (netns_proxy.sh, mesh_canary_test.sh): HTTP/1.1
# servers that answer /hello with their name, a TCP echo, a server-first echo, and servers that
# answer every request 503 (an overloaded or broken backend).
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
        elif p.startswith("/slow"):  # 1.5 s, or /slow?s=SECONDS
            time.sleep(float(p.split("?s=", 1)[1]) if "?s=" in p else 1.5)
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

class Unavailable(BaseHTTPRequestHandler):
    """Reads each request whole, then answers 503 and keeps the connection."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a):
        pass
    def answer(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        if n:
            self.rfile.read(n)
        body = b"unavailable\n"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = answer

class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

class Server4(ThreadingHTTPServer):
    address_family = socket.AF_INET

def http(port, name, addr=None, handler=H):
    s = Server4((addr, port), handler) if addr else Server(("::", port), handler)
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

# usage: app_server.py [IPV4:]HTTP_PORT:NAME... echo=PORT banner=PORT fail=PORT
# (with IPV4 the server listens on that address only, so one port can serve several names;
# fail=PORT answers every request 503)
for a in sys.argv[1:]:
    if a.startswith("fail="):
        threading.Thread(target=http, args=(int(a[5:]), "fail", None, Unavailable), daemon=True).start()
    elif a.startswith("echo="):
        threading.Thread(target=echo, args=(int(a[5:]), None), daemon=True).start()
    elif a.startswith("banner="):
        threading.Thread(target=echo, args=(int(a[7:]), b"220 banner\r\n"), daemon=True).start()
    else:
        parts = a.split(":")
        addr = parts[0] if len(parts) == 3 else None
        port, name = parts[-2], parts[-1]
        threading.Thread(target=http, args=(int(port), name, addr), daemon=True).start()
time.sleep(3600)
