"""HTTP front end: SearchImageSets (SigV4-checked) and the unsigned /_local control API.

HTTP/1.1 with keep-alive, one thread per connection, Content-Length on every
response. One log line per request on stderr: method, path without query, status,
request id. Headers, bodies, tokens and tag values are never logged.
"""

import json
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from . import ID_PATTERN, SERVICE_SIGNING_NAME, __version__
from . import search as search_mod
from . import sigv4
from .errors import ServiceError, validation
from .faults import FaultInjector, FaultRuleError, parse_rules

MAX_BODY = 1024 * 1024
IDLE_TIMEOUT = 60
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

    def snapshot(self, faults_injected):
        with self._lock:
            return {"requests": self.requests, "connections": self.connections,
                    "apiConnections": self.api_connections, "faultsInjected": faults_injected}


class App:
    """Everything the handlers share."""

    def __init__(self, store, credentials, faults=None, log=None, clock=time.time):
        self.store = store
        self.credentials = credentials
        self.faults = faults or FaultInjector()
        self.stats = Stats()
        self.codec = search_mod.TokenCodec()
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
    """Close the connection without answering (a 'drop' fault)."""


class _BadBody(Exception):
    """The body cannot be read; answer and close the connection."""


def _printable(text, limit=200):
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:limit]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "healthimaging-local/" + __version__
    sys_version = ""
    timeout = IDLE_TIMEOUT

    @property
    def app(self):
        return self.server.app

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._api_seen = False
        self.app.stats.bump("connections")

    # http.server's own logging prints request lines (with tokens): silence it.
    def log_message(self, format, *args):  # noqa: A002
        pass

    def __getattr__(self, name):
        # Every method reaches the router, so unknown ones get a JSON 404 too.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    # {==== Responses ---------------------------------------------------------

    def _send(self, status, doc, request_id, error_type=None, raw=None):
        """Write a whole JSON response (always with Content-Length) in one write.

        One write, not http.server's header-then-body pair: two small writes meet the
        client's delayed ACK (Nagle) and cost ~40 ms per response. Written by hand so
        that it also works where http.server keeps no header buffer (HTTP/0.9 errors).
        """
        body = raw if raw is not None else json.dumps(doc, ensure_ascii=False).encode("utf-8")
        reason = self.responses.get(status, ("Error",))[0]
        headers = [
            "HTTP/1.1 %d %s" % (status, reason),
            "Server: %s" % self.server_version,
            "Date: %s" % self.date_time_string(),
            "Content-Type: application/json",
            "Content-Length: %d" % len(body),
            "x-amzn-RequestId: %s" % request_id,
        ]
        if error_type:
            headers.append("x-amzn-ErrorType: %s" % error_type)
        if self.close_connection:
            headers.append("Connection: close")
        data = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        if getattr(self, "command", None) != "HEAD":
            data += body
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
            except _Drop:
                self.close_connection = True
                status = "dropped"
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
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
        if fault is not None:
            result = self._apply_fault(fault, request_id)
            if result is not None:
                return result

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
        result = search_mod.search(app.store, criteria, max_results, next_token, app.codec)
        return self._send(200, result, request_id)

    def _apply_fault(self, fault, request_id):
        """Act on a fault rule; return a status when the response was sent, else None."""
        if fault.kind == "error":
            raise ServiceError(fault.code, fault.message, fault.status)
        if fault.kind == "delay":
            time.sleep(fault.delay_ms / 1000.0)
            return None
        if fault.kind == "drop":
            raise _Drop()
        if fault.kind == "malformed":
            return self._send(200, None, request_id, raw=b'{"imageSetsMetadataSummaries": [{"imageSetId": ')
        return None

    # }====

    # {==== /_local control API (unsigned) -------------------------------------

    def _control(self, raw_path, body, request_id):
        app = self.app
        try:
            if raw_path == "/_local/stats" and self.command == "GET":
                return self._send(200, app.stats.snapshot(app.faults.injected), request_id)
            if raw_path == "/_local/faults":
                if self.command == "GET":
                    return self._send(200, {"rules": app.faults.pending()}, request_id)
                if self.command == "DELETE":
                    return self._send(200, {"cleared": app.faults.clear()}, request_id)
                if self.command == "POST":
                    try:
                        doc = json.loads(body.decode("utf-8"))
                        rules = parse_rules(doc)
                    except (UnicodeDecodeError, ValueError) as exc:
                        reason = str(exc) if isinstance(exc, FaultRuleError) else "body is not JSON"
                        raise validation("Invalid fault rule: %s" % reason) from None
                    queued = app.faults.add(rules)
                    return self._send(200, {"queued": queued,
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
        self.app.log("connection error: %s" % sys.exc_info()[0].__name__)

    def __init__(self, address, app):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.app = app


def serve(app, host, port, out=None, ready=None):
    """Bind, print the 'listening on' line, serve until SIGTERM/SIGINT; return 0."""
    out = out or sys.stdout
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    # Handlers go in before the "listening" line, so a signal sent as soon as it is
    # read still ends the process cleanly.
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = Server((host, port), app)
    except BaseException:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        raise
    shown_host = "[%s]" % host if ":" in host else host
    out.write("listening on http://%s:%d\n" % (shown_host, server.server_address[1]))
    out.flush()
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="healthimaging-local", daemon=True)
    worker.start()
    if ready is not None:
        ready(server)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    app.log("healthimaging-local: stopped")
    return 0
