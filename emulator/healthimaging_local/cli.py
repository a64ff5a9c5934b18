"""Command line: `healthimaging-local import ...` and `healthimaging-local serve ...`.

The --help texts are the emulator's user documentation: data format, credentials,
error codes, SigV4 choices, search semantics and the fault API.
"""

import argparse
import json
import re
import sys

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
yields nothing (REASON is a fixed phrase, never a tag value), then a summary
`imported N files: M image sets, K skipped`. Exit 0 when at least one image set was
written, 1 when none, 2 on bad arguments.
"""

SERVE_HELP = """\
Serve SearchImageSets for the data store in FILE until SIGTERM or SIGINT (exit 0).
The first line on stdout is `listening on http://HOST:PORT` (--port 0 picks a free
port). HTTP/1.1, keep-alive, one thread per connection. The Host header is not used
for routing. One line per request on stderr: method, path (no query), status,
request id.

Credentials: --credentials KEY:SECRET (repeatable; KEY:SECRET:TOKEN requires that
session token). Default: %s / %s (printed on stderr at start;
custom secrets are never printed).

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
    and '='; a literal '+' in the query means space, so send %%2B), HMAC-protected with
    a per-process key, bound to data store and criteria; unknown query parameters are
    ignored.

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
  409/429/500 ConflictException, ThrottlingException, InternalServerException: faults
SigV4: Authorization header only (no presigned query); canonical request rebuilt
from what was received (path normalized and encoded per segment, query decoded and
re-encoded and sorted, signed headers trimmed, body SHA-256 computed here).

Faults (unsigned control API on the same port; they apply to SearchImageSets
requests after SigV4 succeeded, first rule first):
  POST /_local/faults {"code": C, "times": N, "message"?: M, "status"?: S}
      C: ValidationException, AccessDeniedException, ResourceNotFoundException,
      ConflictException, ThrottlingException, InternalServerException,
      InvalidSignatureException, UnrecognizedClientException (status: the model's)
      Other kinds: {"kind": "delay", "ms": D}, {"kind": "drop"} (close, no answer),
      {"kind": "malformed"} (200, truncated JSON); a list of rules is accepted too.
  GET /_local/faults      pending rules        DELETE /_local/faults   clear
  GET /_local/stats       {"requests", "connections", "apiConnections", "faultsInjected"}
      requests: API requests; connections: TCP connections accepted (all);
      apiConnections: connections that carried an API request.
  --fault-file F          rules queued at start (a rule, a list, or {"rules": [...]}).
""" % (DEFAULT_ACCESS_KEY, DEFAULT_SECRET)


def _datastore_id(text):
    if not re.fullmatch(ID_PATTERN, text):
        raise argparse.ArgumentTypeError("must match ^[0-9a-z]{32}$")
    return text


def _credential(text):
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError("must be KEY:SECRET or KEY:SECRET:TOKEN")
    return tuple(parts)


def _parser():
    top = argparse.ArgumentParser(prog="healthimaging-local", description=MAIN_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version="healthimaging-local " + __version__)
    sub = top.add_subparsers(dest="command", metavar="{import,serve}")
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
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--credentials", action="append", type=_credential, metavar="KEY:SECRET")
    srv.add_argument("--fault-file", metavar="F")
    return top


def _cmd_import(args):
    from . import dicom_import

    def report(path, reason):
        sys.stderr.write("skipped %s: %s\n" % (path, reason))

    document, files, skipped = dicom_import.import_paths(args.datastore_id, args.paths, report)
    count = len(document["imageSets"])
    if count == 0:
        sys.stderr.write("imported %d files: 0 image sets, %d skipped\n" % (files, skipped))
        sys.stderr.write("healthimaging-local: no image set could be made from the given paths; "
                         "%s was not written\n" % args.out)
        return 1
    try:
        dicom_import.write_document(document, args.out)
    except OSError as exc:
        sys.stderr.write("healthimaging-local: cannot write the data file: %s\n" % (exc.strerror or "error"))
        return 1
    sys.stderr.write("imported %d files: %d image sets, %d skipped\n" % (files, count, skipped))
    return 0


def _cmd_serve(args):
    from . import server, sigv4
    from .faults import FaultInjector, FaultRuleError, parse_rules
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
                faults.add(parse_rules(json.loads(fh.read().decode("utf-8"))))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, FaultRuleError) else "cannot read it as JSON rules"
            sys.stderr.write("healthimaging-local: --fault-file: %s\n" % reason)
            return 2
    creds = {}
    if args.credentials:
        for parts in args.credentials:
            creds[parts[0]] = sigv4.Credential(*parts)
    else:
        creds[DEFAULT_ACCESS_KEY] = sigv4.Credential(DEFAULT_ACCESS_KEY, DEFAULT_SECRET)
    app = server.App(store, creds, faults)
    try:
        return server.serve(app, args.host, args.port, ready=lambda _srv: _announce(app, store, args))
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
        return _cmd_serve(args)
    except KeyboardInterrupt:
        return 130
