"""conformance/harness.py: what the conformance runner drives.

The emulator (bin/healthimaging-local serve) on a free port, a capture server that
records raw requests, and the three drivers (Lua client, JS SDK, boto3) as JSON-lines
child processes. Everything runs from the repository root with a clean environment,
so no shared AWS file or variable of the machine leaks into any side.
"""

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.normpath(os.path.join(REPO, "..", "shared", "reference"))
MODEL_DIR = os.path.join(REFERENCE, "medical-imaging")
SIGV4_SUITE = os.path.join(REFERENCE, "sigv4-test-suite")
# botocore's own distribution ships the sdk-extras file too: it makes `sort` a
# non-aggregate key of the paginator (taken from the first page).
MODEL_FILES = ("service-2.json", "paginators-1.json", "paginators-1.sdk-extras.json",
               "endpoint-rule-set-1.json")
JS_SDK = os.path.join(REPO, "peers", "node_modules", "@aws-sdk", "client-medical-imaging")
PYTHON = "/usr/bin/python3"
LUA = os.environ.get("LUA", "lua5.4")
NODE = os.environ.get("NODE", "node")

KEY = "AKIDLOCALHEALTHIMAGING"
SECRET = "healthimaging-local-secret"


class HarnessError(Exception):
    """A part of the harness could not start; the message says which."""


def clean_env(tmp, extra=None):
    """PATH and locale only, AWS files pointed at nothing: no host setting leaks in."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    empty = os.path.join(tmp, "empty-aws-file")
    open(empty, "w").close()
    env.update({"HOME": tmp, "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
                "AWS_EC2_METADATA_DISABLED": "true"})
    env.update(extra or {})
    return env


def model_data_path(tmp):
    """AWS_DATA_PATH for botocore: medical-imaging/2023-07-19/ built from the reference."""
    root = os.path.join(tmp, "aws-data")
    target = os.path.join(root, "medical-imaging", "2023-07-19")
    os.makedirs(target, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copy(os.path.join(MODEL_DIR, name), target)
    return root


# {==== The emulator ------------------------------------------------------------


class Emulator:
    """`healthimaging-local serve` on a free loopback port; its log names request ids."""

    def __init__(self, data_path, tmp, *extra):
        self.log_path = tempfile.mktemp(prefix="emulator-log-", dir=tmp)
        self._log = open(self.log_path, "w+b")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(REPO, "bin", "healthimaging-local"), "serve", "--data", data_path,
             "--port", "0"] + list(extra),
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, env=clean_env(tmp))
        line = self.proc.stdout.readline().decode("utf-8", "replace").strip()
        if not line.startswith("listening on http://"):
            self.stop()
            raise HarnessError("the emulator did not start (see %s)" % self.log_path)
        self.url = line[len("listening on "):]
        self.host, port = self.url[len("http://"):].rsplit(":", 1)
        self.port = int(port)

    def log_lines(self):
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").splitlines()

    def api_log(self):
        """(method, path, status, request id) of each API request logged so far."""
        out = []
        for line in self.log_lines():
            parts = line.split(" ")
            if len(parts) == 4 and parts[1].startswith("/datastore/"):
                out.append(tuple(parts))
        return out

    def control(self, method, path, doc=None):
        """A request to the unsigned /_local API -> (status, decoded body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            body = json.dumps(doc).encode() if doc is not None else b""
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# }====

# {==== The capture server --------------------------------------------------------


class Captured:
    """One request as it arrived: method, raw path, raw query, header list, body."""

    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name]
        return values[0] if len(values) == 1 else None


class _CaptureHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the request line holds tokens: stay quiet
        pass

    def _any(self):
        raw_path, _, raw_query = self.path.partition("?")
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size)
        server = self.server
        with server.lock:
            server.requests.append(Captured(self.command, raw_path, raw_query,
                                            list(self.headers.items()), body))
            if server.responses:
                status, headers, payload = server.responses.pop(0)
            elif server.script is not None:
                status, headers, payload = server.script.answer(raw_query)
            else:
                status, headers, payload = 200, {}, b'{"imageSetsMetadataSummaries":[]}'
        lines = ["HTTP/1.1 %d X" % status, "Content-Length: %d" % len(payload),
                 "Content-Type: application/json"]
        lines += ["%s: %s" % kv for kv in headers.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    do_POST = do_GET = do_PUT = do_DELETE = _any


class PageScript:
    """A scripted paginated service: the request's nextToken (None for none) picks the
    page: {token: (number of items, next token or None)}. Items are synthetic."""

    def __init__(self, pages, sort=None):
        self.pages = pages
        self.sort = sort

    def answer(self, raw_query):
        token = None
        for part in raw_query.split("&"):
            name, _, value = part.partition("=")
            if name == "nextToken":
                token = unquote(value)
        if token not in self.pages:
            return 400, {"x-amzn-ErrorType": "ValidationException"}, b'{"message": "unknown nextToken"}'
        count, following = self.pages[token]
        seed = hashlib.sha256(repr(token).encode()).hexdigest()
        items = [{"imageSetId": hashlib.sha256(("%s:%d" % (seed, i)).encode()).hexdigest()[:32],
                  "version": 1, "createdAt": 1700000000.5 + i, "updatedAt": 1700000000.5 + i,
                  "DICOMTags": {}} for i in range(count)]
        doc = {"imageSetsMetadataSummaries": items}
        if following is not None:
            doc["nextToken"] = following
        if self.sort:
            doc["sort"] = self.sort
        return 200, {"x-amzn-RequestId": "scripted"}, json.dumps(doc).encode()


class CaptureServer:
    """Records every request; answers with queued (status, headers, body) or an empty page."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CaptureHandler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.httpd.requests = []
        self.httpd.responses = []
        self.httpd.script = None
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take(self):
        """The requests recorded since the last call; unused queued answers are dropped."""
        with self.httpd.lock:
            out, self.httpd.requests = self.httpd.requests, []
            self.httpd.responses = []
            return out

    def answer(self, *responses):
        with self.httpd.lock:
            self.httpd.responses.extend(responses)

    def play(self, script):
        """Answer from a PageScript (None: back to empty pages)."""
        with self.httpd.lock:
            self.httpd.script = script

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# }====

# {==== Drivers ---------------------------------------------------------------------


class Driver:
    """A driver process speaking JSON lines; call(op, ...) -> its answer (a dict)."""

    def __init__(self, name, argv, tmp, env_extra=None):
        self.name = name
        self._stderr = open(tempfile.mktemp(prefix="driver-%s-" % name, dir=tmp), "w+b")
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=clean_env(tmp, env_extra))

    def call(self, op, **args):
        args["op"] = op
        try:
            self.proc.stdin.write((json.dumps(args) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        if not line:
            self._stderr.seek(0)
            tail = self._stderr.read()[-400:].decode("utf-8", "replace")
            raise HarnessError("the %s driver ended unexpectedly: %s" % (self.name, tail))
        return json.loads(line.decode("utf-8"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def start_drivers(tmp, data_path):
    """The three sides: lua (the client under test), js and boto3 (the peers)."""
    here = os.path.join(REPO, "conformance")
    return {
        "lua": Driver("lua", [LUA, os.path.join(here, "driver.lua")], tmp),
        "js": Driver("js", [NODE, os.path.join(here, "driver.js")], tmp),
        "boto3": Driver("boto3", [PYTHON, os.path.join(here, "driver_boto3.py")], tmp,
                        {"AWS_DATA_PATH": data_path}),
    }


# }====
