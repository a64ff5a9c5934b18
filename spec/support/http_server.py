#!/usr/bin/python3
"""Local HTTP/1.1 test server for spec/02-core/http_spec.lua.

Binds 127.0.0.1 port 0 and prints, on stdout:
  line 1: the plain HTTP port
  line 2: "<tls port> <CA/cert PEM path>" of the same handler behind TLS with a
          self-signed certificate for IP 127.0.0.1 (made with the openssl CLI),
          or "none" when openssl is unavailable.
Runs until SIGTERM. Every endpoint is described in ROUTES below.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONNECTIONS = {}          # tag -> set of client (host, port): one per TCP connection
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route = ROUTES.get(url.path)
        if route is None:
            # A proxied request carries an absolute URL: report it.
            if self.path.startswith("http://"):
                return self.reply(200, self.path.encode(), [("X-Proxied", "yes")])
            return self.reply(404, b"no such endpoint")
        return route(self, query, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

    # --- endpoints -------------------------------------------------------

    def r_status(self, q, body):
        """/status?code=N: that status, body "status N"."""
        code = int(q.get("code", "200"))
        self.reply(code, ("status %d" % code).encode())

    def r_echo(self, q, body):
        """/echo: the request body back, byte for byte; method and path in headers."""
        self.reply(200, body, [("X-Echo-Method", self.command),
                               ("X-Echo-Path", self.path),
                               ("X-Echo-Length", str(len(body)))])

    def r_headers(self, q, body):
        """/headers: the request headers received, as a JSON list of [name, value]."""
        data = json.dumps([[k, v] for k, v in self.headers.items()]).encode()
        self.reply(200, data, [("Content-Type", "application/json")])

    def r_repeat(self, q, body):
        """/repeat: a repeated header, a padded one and a mixed-case one."""
        self.reply(200, b"ok", [("X-Multi", "first"), ("X-Multi", "second"),
                                ("x-multi", "third"), ("X-Padded", "  padded value \t"),
                                ("X-MiXeD-CaSe", "Value Kept")])

    def r_binary(self, q, body):
        """/binary: bytes 0..255 twice (NULs included)."""
        self.reply(200, bytes(range(256)) * 2, [("Content-Type", "application/octet-stream")])

    def r_conn(self, q, body):
        """/conn?tag=T: number of distinct TCP connections seen for tag T so far."""
        with LOCK:
            seen = CONNECTIONS.setdefault(q.get("tag", ""), set())
            seen.add(self.client_address)
            count = len(seen)
        self.reply(200, str(count).encode())

    def r_slow(self, q, body):
        """/slow?s=F: answers after F seconds."""
        time.sleep(float(q.get("s", "5")))
        try:
            self.reply(200, b"late")
        except OSError:
            pass

    def r_bytes(self, q, body):
        """/bytes?n=N: N bytes of "x", sent in 1 MiB chunks with a Content-Length."""
        n = int(q.get("n", "0"))
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        chunk = b"x" * (1 << 20)
        try:
            while n > 0:
                self.wfile.write(chunk[:n])
                n -= min(n, len(chunk))
        except OSError:
            self.close_connection = True

    def r_nothing(self, q, body):
        """/nothing: closes the connection without any response."""
        self.close_connection = True

    def r_partial(self, q, body):
        """/partial: promises 100 bytes, sends 10, closes."""
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def r_reset(self, q, body):
        """/reset: aborts the connection with a TCP RST."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def r_redirect(self, q, body):
        """/redirect: a 302 to /status?code=200 (the client must not follow it)."""
        self.reply(302, b"moved", [("Location", "/status?code=200")])

    def r_interim(self, q, body):
        """/interim: a 103 Early Hints block, then the final 200."""
        self.send_response_only(103)
        self.send_header("X-Interim", "yes")
        self.end_headers()
        self.reply(200, b"final", [("X-Final", "yes")])

    def r_closed_port(self, q, body):
        """/closed-port: a port that was just bound and released (nobody listens)."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        self.reply(200, str(port).encode())

    def finish(self):
        # /reset closed the socket under the handler's feet.
        try:
            super().finish()
        except (OSError, ValueError):
            pass


ROUTES = {
    "/status": Handler.r_status, "/echo": Handler.r_echo, "/headers": Handler.r_headers,
    "/repeat": Handler.r_repeat, "/binary": Handler.r_binary, "/conn": Handler.r_conn,
    "/slow": Handler.r_slow, "/bytes": Handler.r_bytes, "/nothing": Handler.r_nothing,
    "/partial": Handler.r_partial, "/reset": Handler.r_reset,
    "/redirect": Handler.r_redirect, "/interim": Handler.r_interim,
    "/closed-port": Handler.r_closed_port,
}


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (timeouts, TLS failures) are part of the
    tests: their resets are expected, not worth a traceback."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


def make_tls_server(tmp):
    """The same handler behind TLS with a fresh self-signed cert for IP 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None, None
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=healthimaging test",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = QuietServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server, cert


def main():
    tmp = tempfile.mkdtemp(prefix="hi-http-spec-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server = QuietServer(("127.0.0.1", 0), Handler)
        tls, cert = make_tls_server(tmp)
        print(server.server_address[1])
        print("%d %s" % (tls.server_address[1], cert) if tls else "none", flush=True)
        if tls:
            threading.Thread(target=tls.serve_forever, daemon=True).start()
        server.serve_forever()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
