"""Shared test helpers: paths, the pydicom demo data, running the emulator, raw HTTP."""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

from . import _EMULATOR  # noqa: F401  (puts healthimaging_local on sys.path)

REPO = os.path.dirname(_EMULATOR)
BIN = os.path.join(REPO, "bin", "healthimaging-local")
PYTHON = "/usr/bin/python3"
REFERENCE = os.path.normpath(os.path.join(REPO, "..", "shared", "reference"))
SIGV4_SUITE = os.path.join(REFERENCE, "sigv4-test-suite")
MODEL_DIR = os.path.join(REFERENCE, "medical-imaging")

PYDICOM_DATA = "/usr/lib/python3/dist-packages/pydicom/data"
TEST_FILES = os.path.join(PYDICOM_DATA, "test_files")
CHARSET_FILES = os.path.join(PYDICOM_DATA, "charset_files")

DATASTORE = "0123456789abcdef0123456789abcdef"
OTHER_DATASTORE = "fedcba9876543210fedcba9876543210"
DEFAULT_KEY = "AKIDLOCALHEALTHIMAGING"
DEFAULT_SECRET = "healthimaging-local-secret"


def run_cli(*args, timeout=300):
    """Run bin/healthimaging-local; return CompletedProcess (text, UTF-8)."""
    return subprocess.run([PYTHON, BIN] + list(args), capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)


def import_demo(out_path, extra_paths=()):
    """Import the pydicom demo files (plus extra paths) into out_path."""
    return run_cli("import", "--datastore-id", DATASTORE, "--out", out_path,
                   TEST_FILES, CHARSET_FILES, *extra_paths)


class Emulator:
    """A `serve` process on a free port; use as a context manager."""

    def __init__(self, data_path, *extra):
        self.data_path = data_path
        self.extra = list(extra)
        self.proc = None
        self.host = "127.0.0.1"
        self.port = None
        self.stderr_path = None

    def __enter__(self):
        fd, self.stderr_path = tempfile.mkstemp(prefix="hil-stderr-")
        self._stderr = os.fdopen(fd, "w+b")
        self.proc = subprocess.Popen(
            [PYTHON, BIN, "serve", "--data", self.data_path, "--port", "0"] + self.extra,
            stdout=subprocess.PIPE, stderr=self._stderr)
        line = self.proc.stdout.readline().decode("utf-8").strip()
        if not line.startswith("listening on http://"):
            self.__exit__(None, None, None)
            raise RuntimeError("emulator did not start: %r" % line)
        self.first_line = line
        self.port = int(line.rsplit(":", 1)[1])
        self.url = "http://%s:%d" % (self.host, self.port)
        return self

    def stop(self):
        """SIGTERM, wait; return the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc):
        self.stop()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()
        if self.stderr_path and os.path.exists(self.stderr_path):
            os.unlink(self.stderr_path)
        return False

    def stderr_text(self):
        with open(self.stderr_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def control(self, method, path, body=None):
        """Call an unsigned /_local endpoint; return (status, parsed JSON)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload,
                         headers={"Content-Type": "application/json"} if payload else {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read().decode("utf-8") or "null")
        finally:
            conn.close()


def wait_for(predicate, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def parse_raw_request(text):
    """Parse a test-suite request file: request line, Name:value headers (continuation
    lines kept with a newline, as obs-fold), blank line, body. Returns a dict with method,
    path and query as UTF-8 bytes, headers as a list of (name, value), body bytes."""
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    request_line = lines[0].split(" ")
    method, target = request_line[0], " ".join(request_line[1:-1])
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
        elif line:
            name, _, value = line.partition(":")
            headers.append((name, value))
    path, _, query = target.partition("?")
    return {"method": method, "path": path.encode("utf-8"), "query": query.encode("utf-8"),
            "headers": headers, "body": body.encode("utf-8") if sep else b""}


if sys.version_info < (3, 7):  # pragma: no cover
    raise RuntimeError("Python 3.7+ required")
