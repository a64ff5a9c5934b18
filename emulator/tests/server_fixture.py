"""A running emulator over the pydicom demo data, shared by the server test modules.

botocore is the independent peer: it builds and signs requests from the real service
model (copied at test time from ../shared/reference/medical-imaging into an
AWS_DATA_PATH folder), and signs the hand-made raw requests too.
"""

import datetime
import http.client
import json
import os
import shutil
import tempfile
import types
import unittest
from unittest import mock

from .helpers import (DATASTORE, DEFAULT_KEY, DEFAULT_SECRET, MODEL_DIR, Emulator,
                      import_demo)

try:
    import botocore
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    import botocore.session
    from botocore.config import Config
    import boto3
    HAVE_BOTO = True
except ImportError:  # pragma: no cover
    HAVE_BOTO = False

MODEL_FILES = ("service-2.json", "paginators-1.json", "endpoint-rule-set-1.json")
SEARCH_PATH = "/datastore/%s/searchImageSets" % DATASTORE
REAL_HOST = "runtime-medical-imaging.us-east-1.amazonaws.com"


def require_peer():
    """Raise SkipTest, saying what is not checked, when botocore or the model is absent."""
    if not HAVE_BOTO:
        raise unittest.SkipTest("python3-botocore/python3-boto3 are not installed: the server is "
                                "not checked end to end (apt-get install -y python3-botocore python3-boto3)")
    missing = [f for f in MODEL_FILES if not os.path.isfile(os.path.join(MODEL_DIR, f))]
    if missing:
        raise unittest.SkipTest("../shared/reference/medical-imaging is absent (%s): the server is "
                                "not checked end to end through botocore" % ", ".join(missing))


class DemoServer:
    """Import the demo data, start `serve`, build botocore clients."""

    def __init__(self, *serve_args):
        self.serve_args = serve_args

    def start(self):
        require_peer()
        self.tmp = tempfile.mkdtemp(prefix="hil-server-")
        self.data_path = os.path.join(self.tmp, "data.json")
        result = import_demo(self.data_path)
        if result.returncode != 0:
            raise RuntimeError("demo import failed: %s" % result.stderr[-300:])
        with open(self.data_path, encoding="utf-8") as fh:
            self.doc = json.load(fh)
        self.model_root = os.path.join(self.tmp, "aws-data")
        target = os.path.join(self.model_root, "medical-imaging", "2023-07-19")
        os.makedirs(target)
        for name in MODEL_FILES:
            shutil.copy(os.path.join(MODEL_DIR, name), target)
        self.emulator = Emulator(self.data_path, *self.serve_args).__enter__()
        self.url = self.emulator.url
        return self

    def stop(self):
        if getattr(self, "emulator", None):
            self.emulator.__exit__(None, None, None)
        shutil.rmtree(getattr(self, "tmp", ""), ignore_errors=True)

    def client(self, key=DEFAULT_KEY, secret=DEFAULT_SECRET, token=None, validate=True):
        """A boto3 medical-imaging client on the emulator (no retries)."""
        old = os.environ.get("AWS_DATA_PATH")
        os.environ["AWS_DATA_PATH"] = self.model_root
        try:
            session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                            aws_session_token=token, region_name="us-east-1")
            return session.client("medical-imaging", endpoint_url=self.url,
                                  config=Config(inject_host_prefix=False, parameter_validation=validate,
                                                retries={"total_max_attempts": 1}))
        finally:
            if old is None:
                os.environ.pop("AWS_DATA_PATH", None)
            else:
                os.environ["AWS_DATA_PATH"] = old

    # {==== Raw requests, signed by botocore's SigV4Auth ---------------------

    def signed_headers(self, method="POST", path=SEARCH_PATH, query="", body=b"", key=DEFAULT_KEY,
                       secret=DEFAULT_SECRET, token=None, service="medical-imaging",
                       region="us-east-1", host=None, at=None, extra_headers=None):
        """Headers of a request signed by botocore (optionally at a given UTC time)."""
        url = "http://%s%s%s" % (host or "127.0.0.1:%d" % self.emulator.port, path,
                                 "?" + query if query else "")
        headers = {"Content-Type": "application/json"}
        headers.update(extra_headers or {})
        request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body, headers=headers)
        creds = botocore.credentials.Credentials(key, secret, token)
        signer = botocore.auth.SigV4Auth(creds, service, region)
        if at is None:
            signer.add_auth(request)
        else:
            fake = types.SimpleNamespace(datetime=_FixedClock.at(at), timedelta=datetime.timedelta)
            with mock.patch.object(botocore.auth, "datetime", fake):
                signer.add_auth(request)
        return dict(request.headers.items())

    def raw(self, method="POST", path=SEARCH_PATH, query="", body=b"", headers=None, conn=None):
        """Send one request with http.client; return (status, headers dict, body bytes)."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.emulator.port, timeout=15)
        try:
            target = path + ("?" + query if query else "")
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            hdrs = dict(headers or {})
            if not any(k.lower() == "host" for k in hdrs):
                hdrs["Host"] = "127.0.0.1:%d" % self.emulator.port
            for name, value in hdrs.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            if own:
                conn.close()

    def signed(self, body=b"", query="", conn=None, **sign_args):
        """Sign with botocore and send; return (status, headers, body bytes)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        headers = self.signed_headers(body=body, query=query, **sign_args)
        if sign_args.get("host"):
            headers["Host"] = sign_args["host"]
        return self.raw("POST", sign_args.get("path", SEARCH_PATH), query, body, headers, conn)

    # }====


class _FixedClock:
    """datetime.datetime whose utcnow() is fixed (for signing at a chosen time)."""

    @staticmethod
    def at(when):
        class Fixed(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return when
        return Fixed


def error_of(status_headers_body):
    """(status, code from x-amzn-ErrorType, message) of a raw error response."""
    status, headers, body = status_headers_body
    code = headers.get("x-amzn-errortype", "").split(":", 1)[0]
    return status, code, json.loads(body.decode("utf-8")).get("message")
