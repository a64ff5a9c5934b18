"""Local stand-ins for where AWS credentials come from, for end-to-end tests.

One loopback HTTP server plays four parts:
  STS (POST /, form body): AssumeRole, SigV4-signed (service "sts"; verified with
      this package's sigv4 module), and AssumeRoleWithWebIdentity, unsigned.
  Container credentials (GET /container/...): the ECS/EKS agent, which checks the
      Authorization header against the expected token.
  EC2 instance metadata (IMDS): PUT /latest/api/token, then
      GET /latest/meta-data/iam/security-credentials/[ROLE]; IMDSv2 only, v1 and v2,
      or v1 only (the token request answers 404), optionally with a slow token answer.
  Control (unsigned): GET /_identity/log, DELETE /_identity/log,
      POST /_identity/fail {"times": N, "status": S}.
The credentials it hands out are the ones given with --issue, in order (the last one
repeats), so a test knows them in advance and can start `serve --credentials` with
exactly them. Secrets, tokens and bodies are never logged.
"""

import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from . import __version__, sigv4
from .errors import BadJson, ServiceError, load_json
from .server import serve_until_signalled

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
MAX_BODY = 64 * 1024
ROLE_ARN_RE = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
SESSION_NAME_RE = re.compile(r"[\w+=,.@-]{2,64}")
# sigv4.verify's codes, as STS's Query protocol spells them.
STS_AUTH_CODES = {
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
    "IncompleteSignatureException": "IncompleteSignature",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "UnrecognizedClientException": "InvalidClientTokenId",
}
IMDS_MODES = ("v2-only", "v1-and-v2", "v1-only")


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _printable(text, limit=120):
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:limit]


class Identity:
    """State shared by the handlers: what to issue, what to accept, what happened."""

    def __init__(self, issue, sources=(), role_arns=(), web_tokens=(), container_token=None,
                 imds_role="healthimaging-local-role", imds_mode="v1-and-v2", imds_token_delay=0.0,
                 duration=3600, clock=time.time, log=None):
        if not issue:
            raise ValueError("at least one --issue KEY:SECRET:TOKEN is needed")
        self.issue_list = [sigv4.Credential(*c) for c in issue]
        self.known = {c[0]: sigv4.Credential(*c) for c in sources}
        self.role_arns = set(role_arns)
        self.web_tokens = set(web_tokens)
        self.container_token = container_token
        self.imds_role = imds_role
        self.imds_mode = imds_mode
        self.imds_token_delay = imds_token_delay
        self.duration = duration
        self.clock = clock
        self.imds_tokens = set()
        self.issued = 0
        self.fail_times = 0
        self.fail_status = 500
        self.events = []
        self.lock = threading.Lock()
        self._log = log or sys.stderr

    def log(self, line):
        with self.lock:
            try:
                self._log.write(line + "\n")
                self._log.flush()
            except (OSError, ValueError):
                pass

    def record(self, **event):
        with self.lock:
            self.events.append(event)

    def next_credentials(self):
        """The next credentials of the --issue list (the last repeats), now also
        accepted for signing (role chaining), with their expiration."""
        with self.lock:
            cred = self.issue_list[min(self.issued, len(self.issue_list) - 1)]
            self.issued += 1
            self.known[cred.access_key_id] = cred
            return cred, self.clock() + self.duration

    def take_failure(self):
        """True (and the status) when an injected failure is pending."""
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                return self.fail_status
            return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "healthimaging-local-identity/" + __version__
    sys_version = ""
    timeout = 30

    @property
    def ident(self):
        return self.server.identity

    def log_message(self, format, *args):  # noqa: A002 - http.server would log paths with tokens
        pass

    def _send(self, status, body, content_type, request_id):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", request_id)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return status

    def _json(self, status, doc, request_id):
        return self._send(status, json.dumps(doc), "application/json", request_id)

    def _sts_error(self, status, code, message, request_id):
        body = ('<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code>'
                '<Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>'
                % (STS_NS, escape(code), escape(message), request_id))
        return self._send(status, body, "text/xml", request_id)

    def _body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not re.fullmatch(r"[0-9]{1,9}", length.strip()) or int(length) > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(int(length))

    def _route(self):
        request_id = str(uuid.uuid4())
        path, _, query = self.path.partition("?")
        status = 500
        try:
            body = self._body()
            if path.startswith("/_identity/"):
                status = self._control(path, body, request_id)
            else:
                failing = self.ident.take_failure()
                if failing:
                    self.ident.record(kind="injected-failure", path=path, status=failing)
                    status = self._json(failing, {"message": "injected failure"}, request_id)
                elif path == "/" and self.command == "POST":
                    status = self._sts(path, query, body, request_id)
                elif path.startswith("/container/") and self.command == "GET":
                    status = self._container(request_id)
                elif path.startswith("/latest/"):
                    status = self._imds(path, request_id)
                else:
                    status = self._json(404, {"message": "not found"}, request_id)
        except ValueError:
            self.close_connection = True
            status = self._json(400, {"message": "malformed request"}, request_id)
        self.ident.log("%s %s %d %s" % (_printable(self.command or "-"), _printable(path), status, request_id))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _route

    # {==== STS -----------------------------------------------------------------

    def _sts(self, path, query, body, request_id):
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            return self._sts_error(400, "MalformedInput", "The body is not UTF-8.", request_id)
        action = form.get("Action")
        if form.get("Version") != "2011-06-15":
            return self._sts_error(400, "InvalidAction", "Version must be 2011-06-15.", request_id)
        if action == "AssumeRole":
            return self._assume_role(path, query, body, form, request_id)
        if action == "AssumeRoleWithWebIdentity":
            return self._assume_role_web(form, request_id)
        return self._sts_error(400, "InvalidAction", "Unknown action.", request_id)

    def _check_role(self, form, request_id):
        arn = form.get("RoleArn", "")
        name = form.get("RoleSessionName", "")
        if not ROLE_ARN_RE.fullmatch(arn):
            return self._sts_error(400, "ValidationError", "RoleArn is not a role ARN.", request_id)
        if not SESSION_NAME_RE.fullmatch(name):
            return self._sts_error(400, "ValidationError",
                                   "RoleSessionName must match [\\w+=,.@-]{2,64}.", request_id)
        duration = form.get("DurationSeconds")
        if duration is not None and (not duration.isdigit() or not 900 <= int(duration) <= 43200):
            return self._sts_error(400, "ValidationError", "DurationSeconds must be 900..43200.", request_id)
        if self.ident.role_arns and arn not in self.ident.role_arns:
            return self._sts_error(403, "AccessDenied", "Not authorized to perform sts:AssumeRole.", request_id)
        return None

    def _credentials_xml(self, action, form, request_id, extra=""):
        cred, expires = self.ident.next_credentials()
        arn = form["RoleArn"]
        name = form["RoleSessionName"]
        role = arn.split(":role/", 1)[1].rsplit("/", 1)[-1]
        account = arn.split(":")[4]
        body = ('<{a}Response xmlns="{ns}"><{a}Result>{extra}'
                '<AssumedRoleUser><AssumedRoleId>AROALOCALIDENTITY:{n}</AssumedRoleId>'
                '<Arn>arn:aws:sts::{acct}:assumed-role/{role}/{n}</Arn></AssumedRoleUser>'
                '<Credentials><AccessKeyId>{k}</AccessKeyId><SecretAccessKey>{s}</SecretAccessKey>'
                '<SessionToken>{t}</SessionToken><Expiration>{e}</Expiration></Credentials>'
                '</{a}Result><ResponseMetadata><RequestId>{r}</RequestId></ResponseMetadata>'
                '</{a}Response>').format(
                    a=action, ns=STS_NS, extra=extra, n=escape(name), acct=account, role=escape(role),
                    k=escape(cred.access_key_id), s=escape(cred.secret_access_key),
                    t=escape(cred.session_token or ""), e=_iso(expires), r=request_id)
        return cred, body

    def _assume_role(self, path, query, body, form, request_id):
        headers = list(self.headers.items())
        try:
            verified = sigv4.verify("POST", path, query, headers, body, dict(self.ident.known),
                                    now=self.ident.clock(), service="sts")
        except ServiceError as err:
            code = STS_AUTH_CODES.get(err.code, err.code)
            return self._sts_error(403, code, err.message, request_id)
        bad = self._check_role(form, request_id)
        if bad is not None:
            return bad
        cred, xml = self._credentials_xml("AssumeRole", form, request_id)
        self.ident.record(kind="AssumeRole", signedBy=verified.access_key_id, region=verified.region,
                          roleArn=form["RoleArn"], roleSessionName=form["RoleSessionName"],
                          externalId=form.get("ExternalId"), durationSeconds=form.get("DurationSeconds"),
                          issued=cred.access_key_id)
        return self._send(200, xml, "text/xml", request_id)

    def _assume_role_web(self, form, request_id):
        if "authorization" in (k.lower() for k in self.headers.keys()):
            return self._sts_error(400, "InvalidAction",
                                   "AssumeRoleWithWebIdentity is not signed.", request_id)
        token = form.get("WebIdentityToken", "")
        if not token or token not in self.ident.web_tokens:
            return self._sts_error(400, "InvalidIdentityToken",
                                   "The web identity token that was passed could not be validated.", request_id)
        bad = self._check_role(form, request_id)
        if bad is not None:
            return bad
        extra = ("<SubjectFromWebIdentityToken>healthimaging-local</SubjectFromWebIdentityToken>"
                 "<Provider>healthimaging-local</Provider><Audience>sts.amazonaws.com</Audience>")
        cred, xml = self._credentials_xml("AssumeRoleWithWebIdentity", form, request_id, extra)
        self.ident.record(kind="AssumeRoleWithWebIdentity", roleArn=form["RoleArn"],
                          roleSessionName=form["RoleSessionName"], issued=cred.access_key_id)
        return self._send(200, xml, "text/xml", request_id)

    # }====

    # {==== Container credentials ------------------------------------------------

    def _container(self, request_id):
        auth = self.headers.get("Authorization")
        expected = self.ident.container_token
        authorized = expected is None or auth == expected
        self.ident.record(kind="container", path=self.path.partition("?")[0], authorization=auth is not None,
                          authorized=authorized)
        if not authorized:
            return self._json(401, {"message": "Authorization header is missing or wrong"}, request_id)
        cred, expires = self.ident.next_credentials()
        return self._json(200, {"AccessKeyId": cred.access_key_id, "SecretAccessKey": cred.secret_access_key,
                                "Token": cred.session_token, "Expiration": _iso(expires),
                                "RoleArn": "arn:aws:iam::123456789012:role/healthimaging-local-task"},
                          request_id)

    # }====

    # {==== EC2 instance metadata ------------------------------------------------

    def _imds(self, path, request_id):
        ident = self.ident
        if path == "/latest/api/token":
            if self.command != "PUT":
                return self._send(405, "", "text/plain", request_id)
            ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
            ident.record(kind="imds-token", ttl=ttl)
            if ident.imds_mode == "v1-only":
                return self._send(404, "", "text/plain", request_id)
            if ident.imds_token_delay:
                time.sleep(ident.imds_token_delay)
            if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self._send(400, "", "text/plain", request_id)
            token = "imds-token-" + uuid.uuid4().hex
            with ident.lock:
                ident.imds_tokens.add(token)
            return self._send(200, token, "text/plain", request_id)
        token = self.headers.get("x-aws-ec2-metadata-token")
        ident.record(kind="imds-get", path=path, token=token is not None)
        if token is not None:
            with ident.lock:
                valid = token in ident.imds_tokens
            if not valid or ident.imds_mode == "v1-only":
                return self._send(401, "", "text/plain", request_id)
        elif ident.imds_mode == "v2-only":
            return self._send(401, "", "text/plain", request_id)
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return self._send(200, ident.imds_role, "text/plain", request_id)
        if path == base + ident.imds_role:
            cred, expires = ident.next_credentials()
            return self._json(200, {"Code": "Success", "LastUpdated": _iso(ident.clock()), "Type": "AWS-HMAC",
                                    "AccessKeyId": cred.access_key_id, "SecretAccessKey": cred.secret_access_key,
                                    "Token": cred.session_token, "Expiration": _iso(expires)}, request_id)
        return self._send(404, "", "text/plain", request_id)

    # }====

    def _control(self, path, body, request_id):
        ident = self.ident
        if path == "/_identity/log" and self.command == "GET":
            with ident.lock:
                events = list(ident.events)
            return self._json(200, {"events": events, "issued": ident.issued}, request_id)
        if path == "/_identity/log" and self.command == "DELETE":
            with ident.lock:
                ident.events.clear()
            return self._json(200, {}, request_id)
        if path == "/_identity/fail" and self.command == "POST":
            try:
                doc = load_json(body or b"{}")
                times, status = int(doc.get("times", 1)), int(doc.get("status", 500))
            except (BadJson, ValueError, AttributeError, TypeError, OverflowError):
                return self._json(400, {"message": "expected {\"times\": N, \"status\": S}"}, request_id)
            with ident.lock:
                ident.fail_times, ident.fail_status = times, status
            return self._json(200, {}, request_id)
        return self._json(404, {"message": "not found"}, request_id)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        self.identity.log("connection error: %s" % sys.exc_info()[0].__name__)

    def __init__(self, address, identity):
        super().__init__(address, Handler)
        self.identity = identity


def serve(identity, host, port, out=None):
    """Bind, print the 'listening on' line, serve until SIGTERM/SIGINT; return 0."""
    serve_until_signalled(
        lambda: Server((host, port), identity),
        lambda server: "http://%s:%d" % (host, server.server_address[1]),
        out or sys.stdout)
    identity.log("healthimaging-local serve-identity: stopped")
    return 0
