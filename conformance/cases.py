"""conformance/cases.py: the inputs of the conformance checks, built at run time.

Search values are picked from the data file (so every filter matches something);
the pagination store is synthetic; the SigV4 cases are read from
../shared/reference/sigv4-test-suite. Case ids name the member, operator and sort,
never a value: values may be patient data.
"""

import collections
import glob
import json
import math
import os
import random
import re

TS = "$ts"

# {==== Search matrix (real DICOM data) ------------------------------------------

EQUAL_STRING_MEMBERS = ("DICOMPatientId", "DICOMAccessionNumber", "DICOMStudyId",
                        "DICOMStudyInstanceUID", "DICOMSeriesInstanceUID")
SORT_FIELDS = ("updatedAt", "createdAt", "DICOMStudyDateAndTime")


def _most_common(sets, member):
    counts = collections.Counter(s["DICOMTags"][member] for s in sets if s["DICOMTags"].get(member))
    return counts.most_common(1)[0][0] if counts else None


def _quartiles(values):
    values = sorted(values)
    return values[len(values) // 4], values[(3 * len(values)) // 4]


def _study_date(s):
    date = s["DICOMTags"].get("DICOMStudyDate", "")
    return date if re.fullmatch(r"\d{8}", date) else None


def search_cases(doc):
    """(case id, params, expect items?) for the search matrix over a data file."""
    ds = doc["datastoreId"]
    sets = doc["imageSets"]
    cases = []

    def add(case_id, criteria=None, max_results=None, nonempty=True):
        params = {"datastoreId": ds}
        if criteria is not None:
            params["searchCriteria"] = criteria
        if max_results is not None:
            params["maxResults"] = max_results
        cases.append((case_id, params, nonempty))

    for mr in (None, 1, 7, 50):
        add("no criteria, maxResults %s" % mr, None, mr)
    for member in EQUAL_STRING_MEMBERS:
        value = _most_common(sets, member)
        add("EQUAL %s" % member, {"filters": [{"operator": "EQUAL", "values": [{member: value}]}]}, 3)
    for flag in (True, False):
        if any(s["isPrimary"] is flag for s in sets):
            add("EQUAL isPrimary=%s" % str(flag).lower(),
                {"filters": [{"operator": "EQUAL", "values": [{"isPrimary": flag}]}]}, 10)
    # Integral bounds: botocore 1.29 drops fractions from request timestamps (see
    # docs/COMPATIBILITY.md), so fractional bounds are checked on the wire instead.
    for member in ("createdAt", "updatedAt"):
        low, high = _quartiles([s[member] for s in sets])
        add("BETWEEN %s" % member, {"filters": [{"operator": "BETWEEN", "values": [
            {member: {TS: math.floor(low)}}, {member: {TS: math.ceil(high)}}]}]}, 5)
    dates = [d for d in (_study_date(s) for s in sets) if d]
    low, high = _quartiles(dates)
    add("BETWEEN DICOMStudyDateAndTime (dates)", {"filters": [{"operator": "BETWEEN", "values": [
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": low}},
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": high}}]}]}, 4)
    add("BETWEEN DICOMStudyDateAndTime (dates and times)", {"filters": [{"operator": "BETWEEN", "values": [
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": low, "DICOMStudyTime": "000000"}},
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": high, "DICOMStudyTime": "235959.999999"}}]}]}, 4)
    for field in SORT_FIELDS:
        for order in ("ASC", "DESC"):
            add("sort %s %s" % (field, order), {"sort": {"sortField": field, "sortOrder": order}}, 7)
    # Two filters together: a patient and that patient's study dates; primary and created.
    patient = _most_common(sets, "DICOMPatientId")
    pdates = sorted(d for d in (_study_date(s) for s in sets
                                if s["DICOMTags"].get("DICOMPatientId") == patient) if d)
    if pdates:
        add("EQUAL DICOMPatientId + BETWEEN DICOMStudyDateAndTime, sort DICOMStudyDateAndTime ASC", {
            "filters": [
                {"operator": "EQUAL", "values": [{"DICOMPatientId": patient}]},
                {"operator": "BETWEEN", "values": [
                    {"DICOMStudyDateAndTime": {"DICOMStudyDate": pdates[0]}},
                    {"DICOMStudyDateAndTime": {"DICOMStudyDate": pdates[-1]}}]}],
            "sort": {"sortField": "DICOMStudyDateAndTime", "sortOrder": "ASC"}}, 2)
    low, high = _quartiles([s["createdAt"] for s in sets])
    add("EQUAL isPrimary + BETWEEN createdAt, sort createdAt DESC", {
        "filters": [
            {"operator": "EQUAL", "values": [{"isPrimary": True}]},
            {"operator": "BETWEEN", "values": [{"createdAt": {TS: math.floor(low)}},
                                               {"createdAt": {TS: math.ceil(high)}}]}],
        "sort": {"sortField": "createdAt", "sortOrder": "DESC"}}, 4)
    add("EQUAL DICOMPatientId matching nothing",
        {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "conformance-no-such-id"}]}]},
        None, nonempty=False)
    return cases


# }====

# {==== Wire cases (capture server) ------------------------------------------------

DS = "0123456789abcdefghijklmnopqrstuv"
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def wire_cases():
    """(case id, params, client extras) for the Lua-vs-JS wire comparison."""
    v = lambda member, value: {"filters": [{"operator": "EQUAL", "values": [{member: value}]}]}  # noqa: E731
    between = lambda member, a, b: {"filters": [{"operator": "BETWEEN", "values": [  # noqa: E731
        {member: a}, {member: b}]}]}
    cases = [
        ("datastoreId only", {}),
        ("maxResults", {"maxResults": 7}),
        ("maxResults 50", {"maxResults": 50}),
        ("nextToken with + / = and space", {"nextToken": "+/+/ab cd=="}),
        ("nextToken of every printable ASCII character", {"nextToken": PRINTABLE}),
        ("nextToken of 8192 characters", {"nextToken": ("Ab+/= %" * 1171)[:8192]}),
        ("maxResults and nextToken", {"maxResults": 1, "nextToken": "a+b/c=d e"}),
        ("criteria {}", {"searchCriteria": {}}),
        ("EQUAL DICOMPatientId", {"searchCriteria": v("DICOMPatientId", "P-12 ä/\"\\")}),
        ("EQUAL DICOMAccessionNumber", {"searchCriteria": v("DICOMAccessionNumber", "A 1+2")}),
        ("EQUAL DICOMStudyId", {"searchCriteria": v("DICOMStudyId", "S&1=2")}),
        ("EQUAL DICOMStudyInstanceUID", {"searchCriteria": v("DICOMStudyInstanceUID", "1.2.840.10008.1")}),
        ("EQUAL DICOMSeriesInstanceUID", {"searchCriteria": v("DICOMSeriesInstanceUID", "1.2.3.4.5.6")}),
        ("EQUAL isPrimary true", {"searchCriteria": v("isPrimary", True)}),
        ("EQUAL isPrimary false", {"searchCriteria": v("isPrimary", False)}),
        ("BETWEEN createdAt, integral seconds",
         {"searchCriteria": between("createdAt", {TS: 1700000000}, {TS: 1800000000})}),
        ("BETWEEN updatedAt, milliseconds",
         {"searchCriteria": between("updatedAt", {TS: 1700000000.123}, {TS: 1700000001.5})}),
        ("BETWEEN createdAt, ISO-8601 strings",
         {"searchCriteria": between("createdAt", {"$iso": "2024-01-02T03:04:05.678Z"},
                                    {"$iso": "2024-12-31T23:59:59Z"})}),
        ("BETWEEN updatedAt, ISO-8601 with an offset and a date alone",
         {"searchCriteria": between("updatedAt", {"$iso": "2024-01-02"},
                                    {"$iso": "2024-03-04T05:06:07.089+05:30"})}),
        ("BETWEEN createdAt, before 1970",
         {"searchCriteria": between("createdAt", {TS: -86400.25}, {TS: 0})}),
        ("BETWEEN DICOMStudyDateAndTime, dates",
         {"searchCriteria": between("DICOMStudyDateAndTime", {"DICOMStudyDate": "19990101"},
                                    {"DICOMStudyDate": "20241231"})}),
        ("BETWEEN DICOMStudyDateAndTime, dates and times",
         {"searchCriteria": between("DICOMStudyDateAndTime",
                                    {"DICOMStudyDate": "19990101", "DICOMStudyTime": "000000"},
                                    {"DICOMStudyDate": "20241231", "DICOMStudyTime": "235959.999999"})}),
        ("two filters and sort", {"searchCriteria": {
            "filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "P1"}]},
                        {"operator": "BETWEEN", "values": [{"createdAt": {TS: 1}}, {"createdAt": {TS: 2}}]}],
            "sort": {"sortField": "DICOMStudyDateAndTime", "sortOrder": "DESC"}}, "maxResults": 3}),
    ]
    for field in SORT_FIELDS:
        for order in ("ASC", "DESC"):
            cases.append(("sort %s %s" % (field, order),
                          {"searchCriteria": {"sort": {"sortField": field, "sortOrder": order}}}))
    out = []
    for case_id, extra in cases:
        params = {"datastoreId": DS}
        params.update(extra)
        out.append((case_id, params, {}))
    out.append(("session token", {"datastoreId": DS, "maxResults": 2},
                {"session_token": "FwoGZXIvYXdzE+/=tokenvalue"}))
    out.append(("region eu-west-1", {"datastoreId": DS}, {"region": "eu-west-1"}))
    return out


# }====

# {==== Synthetic pagination store ---------------------------------------------------

PAGINATION_STORE_ID = "conformancepaginationstore000001"


def synthetic_store(count, seed=20230719):
    """A data file document with `count` synthetic image sets (no real patient data)."""
    rng = random.Random(seed)
    sets = []
    base = 1700000000
    for i in range(count):
        created = base + rng.randrange(0, 86400 * 300) + rng.choice((0, 0.125, 0.5, 0.875))
        updated = created + rng.choice((0, 0, 3600, 86400 * rng.randrange(1, 30)))
        sets.append({
            "imageSetId": "%032x" % rng.getrandbits(128),
            "version": rng.choice((1, 1, 2, 3)),
            "createdAt": created,
            "updatedAt": updated,
            "isPrimary": rng.random() > 0.1,
            "storageTier": rng.choice(("FREQUENT_ACCESS", "ARCHIVE_INSTANT_ACCESS")),
            "DICOMTags": {
                "DICOMPatientId": "SYN-%04d" % (i % 37),
                "DICOMStudyInstanceUID": "1.2.826.0.1.3680043.10.1.%d" % (i // 3),
                "DICOMSeriesInstanceUID": "1.2.826.0.1.3680043.10.2.%d" % i,
                "DICOMSeriesNumber": i % 11,
                "DICOMStudyDate": "2023%02d%02d" % (1 + i % 12, 1 + i % 28),
                "DICOMNumberOfStudyRelatedSeries": 3,
                "DICOMNumberOfStudyRelatedInstances": 10 + i % 5,
            },
        })
    return {"datastoreId": PAGINATION_STORE_ID, "imageSets": sets}


# }====

# {==== SigV4 test suites ------------------------------------------------------------

# The fixed inputs of every case, from the suite's README.md ("Fixed inputs").
SUITE_FIXED = {
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "amz_date": "20150830T123600Z",
    "region": "us-east-1",
    "service": "service",
}
# The token of get-vanilla-with-session-token, given only in the README.
VANILLA_TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"


def _read(path):
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8")


def _expected(path):
    return _read(path).rstrip("\n")


def parse_raw_request(text):
    """A raw request file -> dict(method, path, query or None, headers [[n, v]], body).

    A header line that starts with white space continues the previous value (kept
    with its line break); the path may hold a space (normalize-path/get-space).
    """
    head, sep, body = text.partition("\n\n")
    if not sep:
        head, body = text.rstrip("\n"), ""
    lines = head.split("\n")
    match = re.fullmatch(r"(\S+) (.*) HTTP/\d[\d.]*", lines[0].rstrip("\r"))
    method, target = match.group(1), match.group(2)
    headers = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            headers[-1][1] += "\n" + line
        else:
            name, _, value = line.partition(":")
            headers.append([name, value])
    path, qmark, query = target.partition("?")
    return {"method": method, "path": path, "query": query if qmark else None,
            "headers": headers, "body": body}


def _take(headers, lname):
    kept = [h for h in headers if h[0].lower() != lname]
    taken = [h[1] for h in headers if h[0].lower() == lname]
    return kept, taken


def _sign_input(req, opts):
    out = {k: v for k, v in req.items() if v is not None}
    out.update({k: v for k, v in opts.items() if v is not None})
    return out


def suite_cases(suite_dir):
    """{"botocore": [...], "aws-c-auth": [...]}: (case id, sign input, expected) lists."""
    layouts = {"botocore": [], "aws-c-auth": []}
    boto_dir = os.path.join(suite_dir, "botocore-aws4_testsuite")
    long_token = [ln for ln in _read(os.path.join(boto_dir, "post-sts-token", "readme.txt")).splitlines()
                  if ln.strip()][-1]
    for req_path in sorted(glob.glob(os.path.join(boto_dir, "**", "*.req"), recursive=True)):
        base = req_path[:-4]
        name = os.path.basename(base)
        if os.path.basename(os.path.dirname(base)) != name:
            continue
        req = parse_raw_request(_read(req_path))
        req["headers"], dates = _take(req["headers"], "x-amz-date")
        req["headers"], tokens = _take(req["headers"], "x-amz-security-token")
        opts = dict(SUITE_FIXED)
        if dates != [SUITE_FIXED["amz_date"]]:
            opts["amz_date"] = (dates or [""])[0]
        if name == "get-vanilla-with-session-token":
            opts["session_token"] = VANILLA_TOKEN
        elif name == "post-sts-header-before":
            opts["session_token"] = tokens[0] if tokens else None
        elif name == "post-sts-header-after":
            opts["session_token"], opts["omit_session_token"] = long_token, True
        case_id = os.path.relpath(base, boto_dir).rsplit(os.sep, 1)[0]
        layouts["botocore"].append((case_id, _sign_input(req, opts), {
            "canonical_request": _expected(base + ".creq"),
            "string_to_sign": _expected(base + ".sts"),
            "authorization": _expected(base + ".authz"),
        }))
    cauth_dir = os.path.join(suite_dir, "aws-c-auth-v4")
    for ctx_path in sorted(glob.glob(os.path.join(cauth_dir, "*", "context.json"))):
        case_dir = os.path.dirname(ctx_path)
        ctx = json.loads(_read(ctx_path))
        req = parse_raw_request(_read(os.path.join(case_dir, "request.txt")))
        signed = parse_raw_request(_read(os.path.join(case_dir, "header-signed-request.txt")))
        _, authz = _take(signed["headers"], "authorization")
        creds = ctx["credentials"]
        layouts["aws-c-auth"].append((os.path.basename(case_dir), _sign_input(req, {
            "access_key_id": creds["access_key_id"], "secret_access_key": creds["secret_access_key"],
            "session_token": creds.get("token"), "region": ctx["region"], "service": ctx["service"],
            "amz_date": ctx["timestamp"].replace("-", "").replace(":", ""),
            "normalize_path": ctx["normalize"], "sign_body": ctx["sign_body"],
            "omit_session_token": ctx.get("omit_session_token") is True,
        }), {
            "canonical_request": _expected(os.path.join(case_dir, "header-canonical-request.txt")),
            "string_to_sign": _expected(os.path.join(case_dir, "header-string-to-sign.txt")),
            "authorization": authz[0] if len(authz) == 1 else None,
            "signature": _expected(os.path.join(case_dir, "header-signature.txt")),
        }))
    return layouts


# }====
