"""HTTP front end: SearchImageSets (SigV4-checked) and the unsigned /_local control API.

HTTP/1.1 with keep-alive, one thread per connection, Content-Length on every
response; https when given an SSLContext (the handshake happens in the connection's
thread). Faults (faults.py) act here, before or after the answer is computed. One log
line per request on stderr: method, path without query, status, request id. Headers,
bodies, tokens and tag values are never logged.
"""

import json
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from . import ID_PATTERN, SERVICE_SIGNING_NAME, __version__
from . import search as search_mod
from . import sigv4
from .errors import BadJson, ServiceError, load_json, validation
from .faults import FaultInjector, FaultRuleError, parse_rules

MAX_BODY = 1024 * 1024
IDLE_TIMEOUT = 60
HANDSHAKE_TIMEOUT = 10
# A refused request's unread body is drained for at most this long and this much
# before the close, so the client reads the answer instead of a reset.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * MAX_BODY
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service page</title></head>"
             b"<body><h1>Please wait</h1><p>This page is not JSON (an injected fault).</p>"
             b"</body></html>\n")
ROUTE = re.compile(r"/datastore/([^/]*)/searchImageSets")


class Stats:
    """Counters for /_local/stats (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = 0          # API requests (everything but /_local)
        self.connections = 0       # TCP connections accepted
        self.api_connections = 0   # connections that carried at least one API request

    def bump(self, name):
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self, faults):
        injected, by_kind = faults.counts()
        with self._lock:
            return {"requests": self.requests, "connections": self.connections,
                    "apiConnections": self.api_connections, "faultsInjected": injected,
                    "faultsByKind": by_kind}


class App:
    """Everything the handlers share."""

    def __init__(self, store, credentials, faults=None, log=None, clock=time.time):
        self.store = store
        self.credentials = credentials
        self.faults = faults or FaultInjector()
        self.stats = Stats()
        self.codec = search_mod.TokenCodec()
        self.index = search_mod.OrderIndex()
        self.clock = clock
        self._log = log or sys.stderr
        self._log_lock = threading.Lock()

    def log(self, line):
        with self._log_lock:
            try:
                self._log.write(line + "\n")
                self._log.flush()
            except (OSError, ValueError):
                pass


class _Drop(Exception):
    """Close the connection without answering (a 'drop' or, with reset, a 'reset' fault)."""

    def __init__(self, reset=False):
        super().__init__()
        self.reset = reset


class _HandshakeFailed(Exception):
    """The TLS handshake failed (already logged)."""


class _BadBody(Exception):
    """The body cannot be read; answer and close the connection."""


def _printable(text, limit=200):
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:limit]


def _json_bytes(doc):
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "healthimaging-local/" + __version__
    sys_version = ""
    timeout = IDLE_TIMEOUT

    @property
    def app(self):
        return self.server.app

    def setup(self):
        self.app.stats.bump("connections")
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        context = self.server.tls_context
        if context is not None:
            # Here, in the connection's own thread: a slow or failing handshake
            # never holds up the accept loop.
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                self.request = context.wrap_socket(self.request, server_side=True)
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                self.app.log("tls handshake failed: %s" % _printable(str(reason), 80))
                raise _HandshakeFailed() from None
        super().setup()
        self._api_seen = False

    def finish(self):
        try:
            super().finish()
        finally:
            if self.server.tls_context is not None:
                # socketserver closes the plain socket it accepted, which the TLS
                # wrapper took over: close the wrapper here.
                try:
                    self.request.close()
                except OSError:
                    pass

    # http.server's own logging prints request lines (with tokens): silence it.
    def log_message(self, format, *args):  # noqa: A002
        pass

    def __getattr__(self, name):
        # Every method reaches the router, so unknown ones get a JSON 404 too.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    # {==== Responses ---------------------------------------------------------

    def _send(self, status, doc, request_id, error_type=None, raw=None,
              content_type="application/json", body_bytes=None):
        """Write a whole JSON response (always with Content-Length) in one write.

        One write, not http.server's header-then-body pair: two small writes meet the
        client's delayed ACK (Nagle) and cost ~40 ms per response. Written by hand so
        that it also works where http.server keeps no header buffer (HTTP/0.9 errors).
        body_bytes (a 'cut' fault) sends only that much of the body, Content-Length
        still announcing all of it.
        """
        body = raw if raw is not None else _json_bytes(doc)
        reason = self.responses.get(status, ("Error",))[0]
        headers = [
            "HTTP/1.1 %d %s" % (status, reason),
            "Server: %s" % self.server_version,
            "Date: %s" % self.date_time_string(),
            "Content-Type: %s" % content_type,
            "Content-Length: %d" % len(body),
            "x-amzn-RequestId: %s" % request_id,
        ]
        if error_type:
            headers.append("x-amzn-ErrorType: %s" % error_type)
        if self.close_connection and body_bytes is None:
            headers.append("Connection: close")
        data = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        if getattr(self, "command", None) != "HEAD":
            data += body if body_bytes is None else body[:body_bytes]
        self.wfile.write(data)
        return status

    def _send_error(self, err, request_id):
        return self._send(err.status, {"message": err.message}, request_id, err.error_type)

    def send_error(self, code, message=None, explain=None):
        """Protocol errors found by http.server (bad request line, headers): JSON too."""
        request_id = str(uuid.uuid4())
        self.close_connection = True
        err = ServiceError("ValidationException" if code < 500 else "InternalServerException",
                           "Malformed HTTP request (%d)." % code, code)
        try:
            self._send_error(err, request_id)
        except OSError:
            pass
        self.app.log("%s %s %d %s" % (_printable(getattr(self, "command", None) or "-"), "-", code, request_id))

    # }====

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise _BadBody("Unsupported Transfer-Encoding.")
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not re.fullmatch(r"[0-9]{1,12}", length.strip()):
            raise _BadBody("Invalid Content-Length.")
        size = int(length)
        if size > MAX_BODY:
            raise _BadBody("Request body too large (at most %d bytes)." % MAX_BODY)
        body = self.rfile.read(size)
        if len(body) != size:
            raise _BadBody("Request body shorter than Content-Length.")
        return body

    def _read_chunked(self):
        body = b""
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadBody("Malformed chunked body.") from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += self.rfile.read(size)
            self.rfile.readline(8)
            if len(body) > MAX_BODY:
                raise _BadBody("Request body too large (at most %d bytes)." % MAX_BODY)

    def _dispatch(self):
        request_id = str(uuid.uuid4())
        raw_path, _, raw_query = self.path.partition("?")
        status = "-"
        try:
            try:
                body = self._read_body()
            except _BadBody as bad:
                self.close_connection = True
                status = self._send_error(validation(str(bad)), request_id)
                self._linger()
                return
            if raw_path.startswith("/_local/"):
                status = self._control(raw_path, body, request_id)
                return
            self.app.stats.bump("requests")
            if not self._api_seen:
                self._api_seen = True
                self.app.stats.bump("api_connections")
            try:
                status = self._api(raw_path, raw_query, body, request_id)
            except ServiceError as err:
                status = self._send_error(err, request_id)
            except _Drop as drop:
                status = "reset" if drop.reset else "dropped"
                self._close_now(reset=drop.reset)
        except OSError:   # the client went away (also TLS errors and timeouts)
            self.close_connection = True
            status = "client-gone"
        except Exception as exc:  # never crash a connection thread; never log values
            self.close_connection = True
            status = 500
            try:
                self._send_error(ServiceError("InternalServerException",
                                              "An internal error occurred."), request_id)
            except OSError:
                pass
            self.app.log("internal error: %s" % type(exc).__name__)
        finally:
            self.app.log("%s %s %s %s" % (_printable(self.command), _printable(raw_path), status, request_id))

    # {==== SearchImageSets ---------------------------------------------------

    def _api(self, raw_path, raw_query, body, request_id):
        app = self.app
        match = ROUTE.fullmatch(raw_path)
        if not match or self.command != "POST":
            raise ServiceError("UnknownOperationException",
                               "No operation matches this request: the emulator serves only "
                               "POST /datastore/{datastoreId}/searchImageSets.")
        sigv4.verify(self.command, raw_path.encode("latin-1"), raw_query.encode("latin-1"),
                     self.headers.items(), body, app.credentials, now=app.clock(),
                     service=SERVICE_SIGNING_NAME, normalize=True)
        fault = app.faults.take()
        if fault is not None and fault.before:
            self._fault_before(fault)
        try:
            status, doc, error_type = 200, self._search(match, raw_query, body), None
        except ServiceError as err:
            status, doc, error_type = err.status, {"message": err.message}, err.error_type
        if fault is not None and not fault.before:
            return self._fault_after(fault, status, doc, error_type, request_id)
        return self._send(status, doc, request_id, error_type)

    def _search(self, match, raw_query, body):
        """The SearchImageSets answer document; raises ServiceError."""
        app = self.app
        datastore_id = unquote(match.group(1), errors="replace")
        if not re.fullmatch(ID_PATTERN, datastore_id):
            raise validation("1 validation error detected: Value at 'datastoreId' failed to satisfy "
                             "constraint: Member must satisfy regular expression pattern: [0-9a-z]{32}")
        params = {}
        for key, value in sigv4.parse_query(raw_query.encode("latin-1")):
            params.setdefault(key.decode("utf-8", "replace"), []).append(value)
        max_results = search_mod.parse_max_results(
            [v.decode("ascii", "replace") for v in params.get("maxResults", [])])
        tokens = params.get("nextToken", [])
        if len(tokens) > 1:
            raise validation("1 validation error detected: Value at 'nextToken' failed to satisfy "
                             "constraint: Member must be given at most once")
        next_token = None
        if tokens:
            try:
                next_token = tokens[0].decode("ascii")
            except UnicodeDecodeError:
                raise validation("1 validation error detected: Value at 'nextToken' failed to satisfy "
                                 "constraint: Member must satisfy regular expression pattern: "
                                 "\\p{ASCII}{0,8192}") from None
        criteria = search_mod.parse_criteria(body)
        if datastore_id != app.store.datastore_id:
            raise ServiceError("ResourceNotFoundException", "The requested data store does not exist.")
        return search_mod.search(app.store, criteria, max_results, next_token, app.codec,
                                 index=app.index)

    def _fault_before(self, fault):
        """Faults that act instead of the answer (raise) or before it (delay)."""
        if fault.kind == "delay":
            time.sleep(fault.delay_ms / 1000.0)
        elif fault.kind in ("drop", "reset"):
            raise _Drop(reset=fault.kind == "reset")
        else:   # error, throttle, internal, unavailable
            raise ServiceError(fault.code, fault.message, fault.status)

    def _fault_after(self, fault, status, doc, error_type, request_id):
        """Faults that spoil the computed answer; returns the status for the log."""
        body = _json_bytes(doc)
        if fault.kind == "cut":
            # Headers promise the whole body; part of it comes, then the close.
            sent = len(body) // 2 if fault.cut_bytes is None else min(fault.cut_bytes, len(body) - 1)
            self._send(status, None, request_id, error_type, raw=body, body_bytes=max(sent, 0))
            self._close_now()
            return "cut"
        if fault.kind == "truncated":
            return self._send(status, None, request_id, error_type, raw=body[:len(body) // 2])
        if fault.kind == "malformed":
            # Complete and well framed, but not JSON: a stray comma after the first '{'.
            return self._send(status, None, request_id, error_type, raw=b"{," + body[1:])
        if fault.body == "json":   # content_type
            return self._send(status, None, request_id, error_type, raw=body,
                              content_type="text/html; charset=utf-8")
        return self._send(status, None, request_id, None, raw=HTML_PAGE,
                          content_type="text/html; charset=utf-8")

    def _close_now(self, reset=False):
        """Ends the connection at once: FIN after what was sent, or RST with reset."""
        self.close_connection = True
        try:
            if reset:
                # Linger 0, then the real close (rfile holds the socket open until
                # it is closed too; wfile does not): the kernel sends RST, not FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _linger(self):
        """After refusing a request whose body was not read: stop writing, then drain
        what the client still sends (bounded), so it sees the answer, not a reset."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            end, drained = time.monotonic() + LINGER_SECONDS, 0
            while time.monotonic() < end and drained < LINGER_BYTES:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except (OSError, ValueError):
            pass

    # }====

    # {==== /_local control API (unsigned) -------------------------------------

    def _control(self, raw_path, body, request_id):
        app = self.app
        try:
            if raw_path == "/_local/stats" and self.command == "GET":
                return self._send(200, app.stats.snapshot(app.faults), request_id)
            if raw_path == "/_local/faults":
                if self.command == "GET":
                    return self._send(200, {"rules": app.faults.pending(),
                                            "standing": app.faults.standing()}, request_id)
                if self.command == "DELETE":
                    return self._send(200, {"cleared": app.faults.clear()}, request_id)
                if self.command == "POST":
                    try:
                        rules = parse_rules(load_json(body))
                    except BadJson as bad:
                        raise validation("Invalid fault rule: the body is %s" % bad.reason) from None
                    except FaultRuleError as exc:
                        raise validation("Invalid fault rule: %s" % exc) from None
                    queued = app.faults.add(rules)
                    return self._send(200, {"queued": queued, "standing": len(app.faults.standing()),
                                            "rules": [r.describe() for r in rules]}, request_id)
            raise ServiceError("UnknownOperationException",
                               "Unknown control endpoint: use GET /_local/stats, or GET, POST, "
                               "DELETE /_local/faults.")
        except ServiceError as err:
            return self._send_error(err, request_id)

    # }====


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # socketserver would print a traceback; exception texts may quote request data.
        kind = sys.exc_info()[0]
        if kind is not _HandshakeFailed:
            self.app.log("connection error: %s" % kind.__name__)

    def __init__(self, address, app, tls_context=None):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.app = app
        self.tls_context = tls_context


def serve_until_signalled(make_server, url_of, out, ready=None):
    """Bind with make_server(), print 'listening on URL' (url_of(server)), serve until
    SIGTERM/SIGINT, then shut down. Shared by `serve` and `serve-identity`.

    Handlers go in before the "listening" line, so a signal sent as soon as it is
    read still ends the process cleanly.
    """
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = make_server()
    except BaseException:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        raise
    out.write("listening on %s\n" % url_of(server))
    out.flush()
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="healthimaging-local", daemon=True)
    worker.start()
    if ready is not None:
        ready(server)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def serve(app, host, port, out=None, ready=None, tls_context=None):
    """Bind, print the 'listening on' line, serve until SIGTERM/SIGINT; return 0.

    With tls_context (an ssl.SSLContext), the server speaks https only.
    """
    shown_host = "[%s]" % host if ":" in host else host
    scheme = "https" if tls_context is not None else "http"
    serve_until_signalled(
        lambda: Server((host, port), app, tls_context),
        lambda server: "%s://%s:%d" % (scheme, shown_host, server.server_address[1]),
        out or sys.stdout, ready)
    app.log("healthimaging-local: stopped")
    return 0
