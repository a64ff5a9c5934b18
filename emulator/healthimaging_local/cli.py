"""Command line: `healthimaging-local import ...` and `healthimaging-local serve ...`.

The --help texts are the emulator's user documentation: data format, credentials,
error codes, SigV4 choices, search semantics and the fault API.
"""

import argparse
import json
import re
import shutil
import sys
import tempfile

from . import ID_PATTERN, __version__

DEFAULT_ACCESS_KEY = "AKIDLOCALHEALTHIMAGING"
DEFAULT_SECRET = "healthimaging-local-secret"

MAIN_HELP = """\
A local emulator of AWS HealthImaging SearchImageSets (service medical-imaging,
API 2023-07-19), for tests and demos.

  healthimaging-local import --datastore-id ID --out FILE PATH...
  healthimaging-local serve --data FILE [--host H] [--port P] [--credentials KEY:SECRET]...

Default credentials of `serve` (when no --credentials is given):
  access key id      %s
  secret access key  %s
Run `healthimaging-local import --help` or `serve --help` for details.
""" % (DEFAULT_ACCESS_KEY, DEFAULT_SECRET)

IMPORT_HELP = """\
Read DICOM files (folders recursively; symbolic links to folders are not followed)
and write one image set per SeriesInstanceUID to FILE.

Reading: pydicom, header only (stop_before_pixels). A file without the DICM prefix
is read again with force=True and kept only if that yields valid StudyInstanceUID
and SeriesInstanceUID ([0-9.]+, at most 64 characters). Truncated files (a value or
the pixel data cut short) are skipped.

Data file (UTF-8 JSON, non-ASCII kept as is):
  {"datastoreId": ID,
   "imageSets": [{"imageSetId": 32 x [0-9a-f], "version": 1,
                  "createdAt": epoch seconds, "updatedAt": epoch seconds,
                  "isPrimary": bool, "storageTier": "FREQUENT_ACCESS"|"ARCHIVE_INSTANT_ACCESS",
                  "DICOMTags": {...}}, ...]}      (sorted by imageSetId)
DICOMTags: DICOMPatientId, DICOMPatientName (every PN component group, '='-joined),
DICOMPatientBirthDate, DICOMPatientSex, DICOMStudyInstanceUID, DICOMStudyId,
DICOMStudyDescription, DICOMAccessionNumber, DICOMSeriesInstanceUID,
DICOMSeriesModality, DICOMSeriesBodyPart, DICOMSeriesNumber (integer), DICOMStudyDate,
DICOMStudyTime, as found in the files (first file in path order wins; a field that is
absent or empty is left out; strings cut to the model's max length), plus
DICOMNumberOfStudyRelatedSeries / DICOMNumberOfStudyRelatedInstances: distinct series
and distinct SOPInstanceUIDs of that study across this import.
imageSetId, createdAt, updatedAt, isPrimary and storageTier derive from
sha256(datastore id, SeriesInstanceUID): the same files give the same file.

Output: nothing on stdout. On stderr one line `skipped PATH: REASON` per file that
yields nothing (REASON is a fixed phrase, never a tag value), then, last, the summary
`read N files: M image sets from U files, K skipped` (N paths looked at, U of them
made the M image sets, K skipped: files above plus folders that cannot be listed).
Exit 0 when at least one image set was written, 1 when none, 2 on bad arguments.
"""

SERVE_HELP = """\
Serve SearchImageSets for the data store in FILE until SIGTERM or SIGINT (exit 0).
The first line on stdout is `listening on http://HOST:PORT` (--port 0 picks a free
port), or `listening on https://HOST:PORT` with --https. HTTP/1.1, keep-alive, one
thread per connection. The Host header is not used for routing. One line per request
on stderr: method, path (no query), status (or dropped, reset, cut), request id.

HTTPS: --https serves TLS only (1.2 or later), with a certificate for localhost,
127.0.0.1 and ::1 signed by a test CA made at start with the openssl command (ECDSA
P-256, valid 7 days; the CA's private key is deleted once it has signed). The files
go to --tls-dir DIR (which implies --https; created if needed; ca.pem, server.pem, server.key there are
reused when all three exist), else to a temporary folder removed at exit. Before the
`listening` line, stderr gets `CA certificate: PATH`: give that file to clients as
their CA bundle (Lua: ca_bundle = PATH or AWS_CA_BUNDLE=PATH; curl --cacert PATH).
Test certificates only: never trust that CA anywhere else.

Credentials: --credentials KEY:SECRET (repeatable; KEY:SECRET:TOKEN requires that
session token; an empty KEY, SECRET or TOKEN, as in KEY:SECRET:, is refused at start:
leave out the second ':' for a key without a token). Default: %s / %s
(printed on stderr at start; custom secrets are never printed).

Port: --port 0..65535 (0: a free port picked by the system).

Operation: POST /datastore/{datastoreId}/searchImageSets?maxResults=N&nextToken=T,
body = SearchCriteria JSON ({"filters": [...], "sort": {...}}; empty body, {} or null =
no criteria). Response 200 {"imageSetsMetadataSummaries": [...], "nextToken"?,
"sort"?}: "sort" is echoed only when the request had one; "nextToken" is left out on
the last page. Timestamps are JSON numbers (epoch seconds); text is raw UTF-8.
  EQUAL (one value): DICOMPatientId, DICOMAccessionNumber, DICOMStudyId,
    DICOMStudyInstanceUID, DICOMSeriesInstanceUID, isPrimary (exact match).
  BETWEEN (two values of the same member, inclusive): createdAt, updatedAt (JSON
    numbers, fractions allowed), DICOMStudyDateAndTime (StudyDate YYYYMMDD, optional
    StudyTime HHmmss.FFFFFF; a bound without time covers the whole day: lower bound
    00:00:00, upper bound 23:59:59.999999; an image set without StudyTime counts as
    00:00:00; lower > upper is a ValidationException). Two filters are AND-ed.
  Sort: updatedAt DESC by default; ties by imageSetId ascending in both orders; image
    sets without a study date come last when sorting by DICOMStudyDateAndTime.
  maxResults: 1..50, default 50. nextToken: opaque, standard base64 (contains '+', '/'
    and '='; a literal '+' in the query means space, so send %%2B), HMAC-protected,
    bound to data store and criteria; unknown query parameters are ignored.
    The HMAC key is random per process, so tokens stop working when the emulator
    restarts, unless --token-key TEXT is given: the key then derives from TEXT and the
    data file's bytes (SHA-256), so an emulator restarted with the same TEXT and the
    same data file accepts the tokens of an earlier run (a changed data file refuses
    them). TEXT is never printed.

Errors: body {"message": ...}, header x-amzn-ErrorType "Code:<namespace url>" (keep
the part before ':'), header x-amzn-RequestId on every response.
  400 ValidationException    model constraints, malformed JSON, unknown members,
                             bad/tampered/foreign nextToken, bad datastoreId
  403 MissingAuthenticationTokenException  no Authorization header
  403 IncompleteSignatureException  malformed Authorization, missing/bad X-Amz-Date
  403 UnrecognizedClientException   unknown access key, or session token mismatch
      ("The security token included in the request is invalid.")
  403 InvalidSignatureException     signature mismatch; scope not
      DATE/REGION/medical-imaging/aws4_request (any region); host, x-amz-date or a
      present x-amz-security-token not signed; X-Amz-Date more than 5 minutes off:
      "Signature expired: ..." (past) or "Signature not yet current: ..." (future)
  404 ResourceNotFoundException  well-formed datastoreId that is not loaded
  404 UnknownOperationException  any other path or method
  409/429/500/503 ConflictException, ThrottlingException, InternalServerException,
      ServiceUnavailableException: only as faults (below)
SigV4: Authorization header only (no presigned query); canonical request rebuilt
from what was received (path normalized and encoded per segment, query decoded and
re-encoded and sorted, signed headers trimmed, body SHA-256 computed here).

Faults: rules that make SearchImageSets requests misbehave on purpose. They apply only
to requests whose SigV4 signature checked out (never to /_local). A rule is a JSON
object: what happens (its kind) and when (its trigger).
  Kinds:
    {"code": C, "message"?: M, "status"?: S}   an error answer ("kind": "error" may be
        left out). C: ValidationException, AccessDeniedException,
        ResourceNotFoundException, ConflictException, ThrottlingException,
        InternalServerException, ServiceUnavailableException (503),
        InvalidSignatureException, UnrecognizedClientException (status: the model's)
    {"kind": "throttle"}      429 ThrottlingException "Rate exceeded"
    {"kind": "internal"}      500 InternalServerException
    {"kind": "unavailable"}   503 ServiceUnavailableException
        (these three take "message"? too)
    {"kind": "delay", "ms": D}   wait D ms (0..600000), then answer normally
    {"kind": "cut", "bytes"?: B} status line, headers with the whole body's
        Content-Length, then only B bytes of the body (default: half), then close:
        the connection closed mid-body
    {"kind": "truncated"}     200 application/json, the page's JSON cut in half
        (Content-Length matches what is sent: well framed, not JSON)
    {"kind": "malformed"}     200 application/json, the whole page with a stray comma
        after the first '{' (well framed, not JSON)
    {"kind": "content_type", "body"?: "html"|"json"}   200 with Content-Type text/html:
        an HTML page (default, as a proxy or captive portal sends) or the page's JSON
    {"kind": "drop"}          read the request, then close without answering: a
        keep-alive connection dropped silently (FIN, no status line)
    {"kind": "reset"}         read the request, then close with a TCP reset (RST)
    {"kind": "mix", "kinds"?: [...], "ms"?: D, "seed"?: N}   each use picks one kind at
        random (random.Random(seed), seed 0 by default). kinds: kind names or rule
        objects without a trigger; default: throttle, internal, unavailable, delay,
        cut, truncated, malformed, content_type, drop, reset. ms: the wait of a picked
        "delay" (default 200).
  Triggers (members of the same object):
    none                 queued: applies to the next `times` requests (default 1);
                         queued rules apply oldest first
    "every": N           standing: every Nth request from now on (N, 2N, ...)
    "rate": P            standing: each request with probability P (0 < P <= 1),
                         drawn from random.Random(seed) ("seed", default 0)
    "rps": R, "burst"?: B  standing: a token bucket holding B tokens (default 2R),
                         refilled at R a second; a request that finds it empty gets
                         the fault. The service allows 25 requests a second with a
                         burst of 50: {"kind": "throttle", "rps": 25, "burst": 50}
    "times": N           on a standing rule: removed after N faults (default never)
  Each request: every standing rule sees it (its counter, random draw or token); the
  oldest queued rule applies if there is one, else the first standing rule that fired.
  Examples: {"kind": "mix", "rate": 0.1, "seed": 7} faults 10%% of the requests with a
  kind picked at random (a soak test); {"kind": "throttle", "every": 3};
  [{"kind": "drop"}, {"kind": "delay", "ms": 2000, "times": 2}].

  From flags (repeatable; added after --fault-file's rules, in command-line order):
    --fault JSON            one rule or a list of rules
    --throttle-every N      {"kind": "throttle", "every": N}
    --rate-limit R[:B]      {"kind": "throttle", "rps": R, "burst": B} (e.g. 25:50)
    --fault-mix P[:SEED]    {"kind": "mix", "rate": P, "seed": SEED}
    --fault-file F          rules at start (a rule, a list, or {"rules": [...]})
  Per test, on the same port (unsigned):
    POST /_local/faults RULES   add a rule or a list of rules; answers {"queued": N,
                            "standing": M, "rules": [...]}; a bad rule is a 400
                            ValidationException "Invalid fault rule: ..."
    GET /_local/faults      {"rules": [queued, oldest first], "standing": [...]}
    DELETE /_local/faults   remove every rule: {"cleared": N}
    GET /_local/stats       {"requests", "connections", "apiConnections",
                            "faultsInjected", "faultsByKind": {kind: count}}
      requests: API requests; connections: TCP connections accepted (all);
      apiConnections: connections that carried an API request; a mix counts the
      kind it picked.
""" % (DEFAULT_ACCESS_KEY, DEFAULT_SECRET)


IDENTITY_HELP = """\
Serve local stand-ins for the places AWS credentials come from, on one loopback port,
for end-to-end tests of credential chains: STS (POST /: AssumeRole, SigV4-signed with
service "sts"; AssumeRoleWithWebIdentity, unsigned), container credentials (GET
/container/...: the ECS/EKS agent, checks Authorization), and EC2 instance metadata
(PUT /latest/api/token, GET /latest/meta-data/iam/security-credentials/[ROLE]). The
first line on stdout is `listening on http://HOST:PORT`. Nothing is printed of a secret.

Credentials handed out: the --issue values in order, one per STS call, container or
IMDS credentials request (the last one repeats), valid for --duration seconds. Start
`serve --credentials KEY:SECRET:TOKEN` with the same values to accept exactly them.
AssumeRole must be signed with a --source-credentials key or with credentials this
server issued (role chaining). --role-arn limits the roles that can be assumed (any
arn:aws:iam::ACCOUNT:role/NAME otherwise); --web-identity-token lists the tokens
AssumeRoleWithWebIdentity accepts; --container-token is the Authorization value the
container endpoint requires (none: any). IMDS modes: v1-and-v2 (default), v2-only
(GETs without a valid token get 401), v1-only (the token request answers 404, as
where IMDSv2 is unavailable); --imds-token-delay S answers token requests S seconds
late (a client with a 1 s timeout then falls back to IMDSv1).

Control (unsigned): GET /_identity/log {"events": [...], "issued": N} (what was asked:
action, role ARN, session name, who signed, whether an IMDS token was sent; never a
secret), DELETE /_identity/log, POST /_identity/fail {"times": N, "status": S} (the next
N credential requests answer HTTP S).
"""


def _datastore_id(text):
    if not re.fullmatch(ID_PATTERN, text):
        raise argparse.ArgumentTypeError("must match ^[0-9a-z]{32}$")
    return text


def _credential(text):
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError("must be KEY:SECRET or KEY:SECRET:TOKEN")
    if len(parts) == 3 and not parts[2]:
        # No request could ever match an empty token: say so now, not with 403s later.
        raise argparse.ArgumentTypeError("the session token after the second ':' is empty; "
                                         "write KEY:SECRET for credentials without a token")
    return tuple(parts)


def _token_key(text):
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _port(text):
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
        raise argparse.ArgumentTypeError("must be an integer in 0..65535 (0: a free port)")
    return int(text)


def _fault_json(text):
    from .errors import BadJson, load_json
    from .faults import FaultRuleError, parse_rules
    try:
        return parse_rules(load_json(text))
    except BadJson as bad:
        raise argparse.ArgumentTypeError("must be a JSON rule or list of rules (it is %s)" % bad.reason) from None
    except FaultRuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text):
    if not re.fullmatch(r"[0-9]{1,7}", text) or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return _fault_json(json.dumps({"kind": "throttle", "every": int(text)}))


def _rate_limit(text):
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(?::([0-9]{1,7}))?", text)
    if not match:
        raise argparse.ArgumentTypeError("must be R or R:B, e.g. 25:50")
    rule = {"kind": "throttle", "rps": float(match.group(1))}
    if match.group(2):
        rule["burst"] = int(match.group(2))
    return _fault_json(json.dumps(rule))


def _fault_mix(text):
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)(?::(-?[0-9]{1,18}))?", text)
    if not match:
        raise argparse.ArgumentTypeError("must be P or P:SEED, e.g. 0.1:7")
    rule = {"kind": "mix", "rate": float(match.group(1))}
    if match.group(2):
        rule["seed"] = int(match.group(2))
    return _fault_json(json.dumps(rule))


def _parser():
    top = argparse.ArgumentParser(prog="healthimaging-local", description=MAIN_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version="healthimaging-local " + __version__)
    sub = top.add_subparsers(dest="command", metavar="{import,serve,serve-identity}")
    sub.required = True
    imp = sub.add_parser("import", help="DICOM files -> data file", description=IMPORT_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("--datastore-id", required=True, type=_datastore_id, metavar="ID")
    imp.add_argument("--out", required=True, metavar="FILE")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    srv = sub.add_parser("serve", help="serve SearchImageSets", description=SERVE_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    srv.add_argument("--data", required=True, metavar="FILE")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=_port, default=0)
    srv.add_argument("--credentials", action="append", type=_credential, metavar="KEY:SECRET")
    srv.add_argument("--token-key", type=_token_key, metavar="TEXT")
    srv.add_argument("--fault-file", metavar="F")
    # One list, so that rules keep the order of the command line.
    srv.add_argument("--fault", dest="fault_rules", action="append", default=[], type=_fault_json,
                     metavar="JSON")
    srv.add_argument("--throttle-every", dest="fault_rules", action="append", type=_positive_int, metavar="N")
    srv.add_argument("--rate-limit", dest="fault_rules", action="append", type=_rate_limit, metavar="R[:B]")
    srv.add_argument("--fault-mix", dest="fault_rules", action="append", type=_fault_mix, metavar="P[:SEED]")
    srv.add_argument("--https", action="store_true")
    srv.add_argument("--tls-dir", metavar="DIR")
    idn = sub.add_parser("serve-identity", help="serve STS, container credentials and IMDS locally",
                         description=IDENTITY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    idn.add_argument("--host", default="127.0.0.1")
    idn.add_argument("--port", type=_port, default=0)
    idn.add_argument("--issue", action="append", required=True, type=_credential, metavar="KEY:SECRET:TOKEN")
    idn.add_argument("--source-credentials", action="append", default=[], type=_credential,
                     metavar="KEY:SECRET[:TOKEN]")
    idn.add_argument("--role-arn", action="append", default=[], metavar="ARN")
    idn.add_argument("--web-identity-token", action="append", default=[], metavar="TOKEN")
    idn.add_argument("--container-token", metavar="TOKEN")
    idn.add_argument("--imds-role", default="healthimaging-local-role", metavar="NAME")
    idn.add_argument("--imds-mode", default="v1-and-v2", choices=("v2-only", "v1-and-v2", "v1-only"))
    idn.add_argument("--imds-token-delay", type=float, default=0.0, metavar="S")
    idn.add_argument("--duration", type=int, default=3600, metavar="SECONDS")
    return top


def _counted(number, noun):
    """'1 file', '2 files'."""
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")


def _cmd_import(args):
    from . import dicom_import

    def report(path, reason):
        sys.stderr.write("skipped %s: %s\n" % (path, reason))

    document, files, used, skipped = dicom_import.import_paths(args.datastore_id, args.paths, report)
    count = len(document["imageSets"])
    summary = "read %s: %s from %s, %d skipped\n" % (
        _counted(files, "file"), _counted(count, "image set"), _counted(used, "file"), skipped)
    if count == 0:
        sys.stderr.write(summary)
        sys.stderr.write("healthimaging-local: no image set could be made from the given paths; "
                         "%s was not written\n" % args.out)
        return 1
    try:
        dicom_import.write_document(document, args.out)
    except OSError as exc:
        sys.stderr.write("healthimaging-local: cannot write the data file: %s\n" % (exc.strerror or "error"))
        return 1
    sys.stderr.write(summary)
    return 0


def _cmd_serve(args):
    from . import server, sigv4
    from .errors import BadJson, load_json
    from .faults import FaultInjector, FaultRuleError, parse_rules
    from .search import TokenCodec
    from .store import DataFileError, Store

    try:
        store = Store.load(args.data)
    except DataFileError as exc:
        sys.stderr.write("healthimaging-local: %s\n" % exc)
        return 2
    faults = FaultInjector()
    if args.fault_file:
        try:
            with open(args.fault_file, "rb") as fh:
                faults.add(parse_rules(load_json(fh.read())))
        except (OSError, BadJson, FaultRuleError) as exc:
            if isinstance(exc, FaultRuleError):
                reason = str(exc)
            elif isinstance(exc, BadJson):
                reason = "cannot read it as JSON rules (it is %s)" % exc.reason
            else:
                reason = "cannot read it: %s" % (exc.strerror or "error")
            sys.stderr.write("healthimaging-local: --fault-file: %s\n" % reason)
            return 2
    for rules in args.fault_rules:
        faults.add(rules)
    creds = {}
    if args.credentials:
        for parts in args.credentials:
            creds[parts[0]] = sigv4.Credential(*parts)
    else:
        creds[DEFAULT_ACCESS_KEY] = sigv4.Credential(DEFAULT_ACCESS_KEY, DEFAULT_SECRET)
    app = server.App(store, creds, faults)
    if args.token_key is not None:
        app.codec = TokenCodec(TokenCodec.key_from(args.token_key, store.digest))
    tls_context, tmp_dir = None, None
    try:
        if args.https or args.tls_dir:
            from . import tls
            directory = args.tls_dir
            if directory is None:
                tmp_dir = directory = tempfile.mkdtemp(prefix="healthimaging-local-tls-")
            try:
                tls_context, ca_path = tls.server_context(directory)
            except (tls.TlsSetupError, OSError) as exc:
                sys.stderr.write("healthimaging-local: --https: %s\n"
                                 % (getattr(exc, "strerror", None) or exc))
                return 2
            app.log("CA certificate: %s" % ca_path)
        return server.serve(app, args.host, args.port, ready=lambda _srv: _announce(app, store, args),
                            tls_context=tls_context)
    except OSError as exc:
        sys.stderr.write("healthimaging-local: cannot listen on %s:%d: %s\n"
                         % (args.host, args.port, exc.strerror or "error"))
        return 2
    finally:
        if tmp_dir:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _cmd_serve_identity(args):
    from . import aws_identity

    identity = aws_identity.Identity(
        issue=args.issue, sources=args.source_credentials, role_arns=args.role_arn,
        web_tokens=args.web_identity_token, container_token=args.container_token,
        imds_role=args.imds_role, imds_mode=args.imds_mode, imds_token_delay=args.imds_token_delay,
        duration=args.duration)
    try:
        return aws_identity.serve(identity, args.host, args.port)
    except OSError as exc:
        sys.stderr.write("healthimaging-local: cannot listen on %s:%d: %s\n"
                         % (args.host, args.port, exc.strerror or "error"))
        return 2


def _announce(app, store, args):
    app.log("healthimaging-local %s: data store %s, %d image sets"
            % (__version__, store.datastore_id, len(store.image_sets)))
    if args.credentials:
        app.log("accepted access key ids: %s" % ", ".join(p[0] for p in args.credentials))
    else:
        app.log("default credentials: access key id %s, secret access key %s"
                % (DEFAULT_ACCESS_KEY, DEFAULT_SECRET))


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == "import":
            return _cmd_import(args)
        if args.command == "serve-identity":
            return _cmd_serve_identity(args)
        return _cmd_serve(args)
    except KeyboardInterrupt:
        return 130
