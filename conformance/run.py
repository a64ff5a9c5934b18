#!/usr/bin/python3
"""conformance/run.py: `make conformance`, the Lua client against the official SDKs.

Puts the AWS SDK for JavaScript v3 and boto3 on both sides of the Lua client and the
emulator, and prints one table:
  1. the emulator accepts the peers: a search matrix paged to the end gives the same
     items, field for field, in the JS SDK, boto3 and the Lua client;
  2. wire equivalence: the same logical calls with the same keys and a fixed clock make
     the same method, path, query bytes, JSON body and canonical request (on the headers
     both sign) in the Lua client and the JS SDK, each signature verifying;
  3. pagination equivalence with boto3: MaxItems x PageSize over a synthetic store,
     tokens byte for byte, resumed across the two, build_full_result;
  4. errors: each modeled error and signature failure, same code, status, message,
     request id and attempts;
  5. SigV4: both layouts of AWS's test suite through the Lua signer.
Exits 1 on any mismatch, 0 when everything agrees or when ../shared/reference is
absent (then it says what was not checked). Output names cases, imageSetIds and field
names only, never a tag value, a secret or a signature.
"""

import argparse
import base64
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from urllib.parse import unquote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases as C  # noqa: E402
import compare as K  # noqa: E402
import harness as H  # noqa: E402

sys.path.insert(0, os.path.join(H.REPO, "emulator"))
from healthimaging_local import sigv4 as emu_sigv4  # noqa: E402

PEER_NAMES = {"js": "JS SDK", "boto3": "boto3"}
FIXED_CLOCK = 1700000000          # 2023-11-14T22:13:20Z, the signing time of the wire checks
PAGINATION_SETS = 263             # a few hundred, a multiple of no page size
MAX_ITEMS = (1, 7, 49, 50, 51, 120, None)
PAGE_SIZES = (1, 3, 50)


class Row:
    """One line of the table: a check, the peer, what was compared, what differed."""

    def __init__(self, number, check, peer):
        self.number = number
        self.check = check
        self.peer = peer
        self.cases = 0
        self.units = collections.OrderedDict()
        self.mismatches = []
        self.deviations = []      # documented differences of the peer itself
        self.documented = []      # documented deliberate differences of the Lua client
        self.note = None

    def fail(self, message):
        self.mismatches.append(message)

    def compared(self):
        return ", ".join("%d %s" % (n, unit) for unit, n in self.units.items())


def bump(row, unit, n=1):
    row.units[unit] = row.units.get(unit, 0) + n


# {==== 1. The emulator accepts the peers ---------------------------------------


def page_through(driver, client, params, limit=1000):
    """Every page of a search, following nextToken -> (pages, error or None)."""
    pages, token = [], None
    for _ in range(limit):
        call = dict(params)
        if token is not None:
            call["nextToken"] = token
        answer = driver.call("search", client=client, params=call)
        if "error" in answer:
            return pages, answer["error"]
        pages.append(answer["page"])
        token = answer["page"].get("nextToken")
        if not token:
            return pages, None
    return pages, {"code": "TooManyPages"}


def check_search(drivers, doc):
    rows = {p: Row(1, "emulator accepts the peers: search matrix, paged", p)
            for p in ("js", "boto3")}
    for case_id, params, nonempty in C.search_cases(doc):
        results = {n: page_through(drivers[n], "emu", params) for n in ("lua", "js", "boto3")}
        lua_pages, lua_err = results["lua"]
        lua_items = sum(len(p.get("imageSetsMetadataSummaries", [])) for p in lua_pages)
        for peer, row in rows.items():
            row.cases += 1
            pages, err = results[peer]
            if err or lua_err:
                row.fail("%s: %s" % (case_id, "; ".join(
                    "%s answered %s" % (side, e.get("code")) for side, e in (("lua", lua_err), (peer, err)) if e)))
                continue
            if nonempty and lua_items == 0:
                row.fail("%s: nothing matched, so the case proves nothing" % case_id)
            if len(pages) != len(lua_pages):
                row.fail("%s: %d pages vs %d in Lua" % (case_id, len(pages), len(lua_pages)))
                continue
            for i, (theirs, ours) in enumerate(zip(pages, lua_pages)):
                for m in K.diff_page(theirs, ours, K.PRECISION[peer], "%s, page %d" % (case_id, i + 1)):
                    row.fail(m)
            bump(row, "image sets", lua_items)
            bump(row, "pages", len(lua_pages))
    return list(rows.values())


# }====

# {==== 2. Wire equivalence ----------------------------------------------------------


def _verify(req, secret):
    """Does the request's own signature verify? -> (parsed Authorization, error or None)."""
    value = req.header("authorization")
    if value is None:
        return None, "no single Authorization header"
    try:
        auth = emu_sigv4.parse_authorization(value)
        creq = emu_sigv4.canonical_request(req.method, req.path.encode("latin-1"),
                                           req.query.encode("latin-1"), req.headers,
                                           auth["signed_headers"], hashlib.sha256(req.body).hexdigest())
    except (emu_sigv4.ServiceError, KeyError) as exc:
        return None, "Authorization cannot be checked (%s)" % type(exc).__name__
    scope = "/".join((auth["date"], auth["region"], auth["service"], "aws4_request"))
    sts = emu_sigv4.string_to_sign(req.header("x-amz-date") or "", scope, creq)
    key = emu_sigv4.signing_key(secret, auth["date"], auth["region"], auth["service"])
    if emu_sigv4.signature(key, sts) != auth["signature"]:
        return auth, "its signature does not verify"
    return auth, None


def _restricted_creq(req, names):
    """The canonical request over `names` only, without the payload-hash line."""
    return emu_sigv4.canonical_request(req.method, req.path.encode("latin-1"), req.query.encode("latin-1"),
                                       req.headers, ";".join(names), "-")


def check_wire(drivers, capture):
    row = Row(2, "wire: method, path, query bytes, JSON body, canonical request", "js")
    byte_identical = 0
    for n, (case_id, params, extra) in enumerate(C.wire_cases()):
        row.cases += 1
        client = {"name": "wire%d" % n, "endpoint": capture.url, "region": extra.get("region", "us-east-1"),
                  "access_key_id": H.KEY, "secret_access_key": H.SECRET, "clock": FIXED_CLOCK,
                  "max_attempts": 1}
        if extra.get("session_token"):
            client["session_token"] = extra["session_token"]
        reqs = {}
        for side in ("lua", "js"):
            drivers[side].call("client", **client)
            capture.take()
            answer = drivers[side].call("search", client=client["name"], params=params)
            got = capture.take()
            if "error" in answer or len(got) != 1:
                row.fail("%s: %s made %d requests (%s)" % (case_id, side, len(got),
                                                          answer.get("error", {}).get("code", "ok")))
                break
            reqs[side] = got[0]
        if len(reqs) != 2:
            continue
        ours, theirs = reqs["lua"], reqs["js"]
        for field in ("method", "path", "query"):
            bump(row, "fields")
            if getattr(ours, field) != getattr(theirs, field):
                row.fail("%s: %s differs" % (case_id, field))
        bump(row, "bodies")
        try:
            body_diff = K.diff(json.loads(ours.body), json.loads(theirs.body), 6)
        except ValueError:
            body_diff = ["body is not JSON"]
        for d in body_diff:
            row.fail("%s: body %s" % (case_id, d))
        byte_identical += ours.body == theirs.body
        auths = {}
        for side, req in reqs.items():
            auth, problem = _verify(req, H.SECRET)
            bump(row, "signatures verified")
            if problem:
                row.fail("%s: %s request: %s" % (case_id, side, problem))
            auths[side] = auth
        if None in auths.values():
            continue
        for part in ("access_key", "date", "region", "service"):
            if auths["lua"][part] != auths["js"][part]:
                row.fail("%s: credential scope %s differs" % (case_id, part))
        ours_signed = auths["lua"]["signed_headers"].split(";")
        theirs_signed = auths["js"]["signed_headers"].split(";")
        common = [h for h in ours_signed if h in theirs_signed]
        needed = ["content-type", "host", "x-amz-date"]
        if extra.get("session_token"):
            needed.append("x-amz-security-token")
        for name in needed:
            if name not in common:
                row.fail("%s: %s is not signed by both sides" % (case_id, name))
        bump(row, "canonical requests")
        if _restricted_creq(ours, common) != _restricted_creq(theirs, common):
            row.fail("%s: canonical requests differ on the headers both sign (%s)" % (case_id, ";".join(common)))
    row.note = "%d of %d bodies byte-identical (JSON key order may differ)" % (byte_identical, row.cases)
    return [row]


# }====

# {==== 3. Pagination equivalence with boto3 ------------------------------------------


def _ids(answer):
    return [[s["imageSetId"] for s in p.get("imageSetsMetadataSummaries", [])] for p in answer["pages"]]


def run_chain(drivers, order, params, max_items, page_size, limit=2000, client="pag"):
    """Iterations resumed from each other's tokens until exhausted.

    order(k) names the driver of step k. -> (steps [(pages of ids, resume token)], error).
    """
    steps, token = [], None
    for k in range(limit):
        config = {"PageSize": page_size}
        if max_items is not None:
            config["MaxItems"] = max_items
        if token is not None:
            config["StartingToken"] = token
        side = order(k)
        answer = drivers[side].call("pages", client=client, params=params, config=config)
        if "error" in answer:
            return steps, "%s at step %d answered %s" % (side, k + 1, answer["error"].get("code"))
        token = answer.get("resume_token")
        steps.append((_ids(answer), token))
        if token is None:
            return steps, None
        if max_items is None:
            return steps, "%s left a resume token without MaxItems" % side
    return steps, "more than %d steps" % limit


def check_pagination(drivers, doc):
    row = Row(3, "pagination: MaxItems x PageSize, tokens, build_full_result", "boto3")
    params = {"datastoreId": doc["datastoreId"],
              "searchCriteria": {"sort": {"sortField": "createdAt", "sortOrder": "ASC"}}}
    full, err = run_chain(drivers, lambda k: "boto3", params, None, 50)
    everything = [i for pages, _ in full for page in pages for i in page]
    if err or len(everything) != len(doc["imageSets"]) or len(set(everything)) != len(everything):
        row.fail("the full listing through boto3 is not every image set once (%s)" % (err or "count"))
    for max_items in MAX_ITEMS:
        for page_size in PAGE_SIZES:
            combo = "MaxItems %s PageSize %d" % (max_items, page_size)
            row.cases += 1
            chains = {
                "boto3": run_chain(drivers, lambda k: "boto3", params, max_items, page_size),
                "lua": run_chain(drivers, lambda k: "lua", params, max_items, page_size),
                "mixed": run_chain(drivers, lambda k: ("boto3", "lua")[k % 2], params, max_items, page_size),
            }
            ref, ref_err = chains["boto3"]
            for name, (steps, chain_err) in chains.items():
                if chain_err:
                    row.fail("%s: %s chain: %s" % (combo, name, chain_err))
                    continue
                seq = [i for pages, _ in steps for page in pages for i in page]
                if seq != everything:
                    row.fail("%s: %s chain: the resumed iterations do not give every image set once, in order"
                             % (combo, name))
                if name == "boto3" or ref_err:
                    continue
                if len(steps) != len(ref):
                    row.fail("%s: %s chain: %d iterations vs %d in boto3" % (combo, name, len(steps), len(ref)))
                    continue
                for k, ((pages, token), (rpages, rtoken)) in enumerate(zip(steps, ref)):
                    bump(row, "iterations")
                    if pages != rpages:
                        row.fail("%s: %s chain, iteration %d: pages of imageSetIds differ" % (combo, name, k + 1))
                    if token is not None or rtoken is not None:
                        bump(row, "resume tokens")
                    if token != rtoken:
                        row.fail("%s: %s chain, iteration %d: resume token differs" % (combo, name, k + 1))
            # build_full_result, from the start and from the second iteration's token.
            starts = [None] + ([ref[0][1]] if ref and ref[0][1] else [])
            for start in starts:
                config = {"PageSize": page_size}
                if max_items is not None:
                    config["MaxItems"] = max_items
                if start:
                    config["StartingToken"] = start
                res = {s: drivers[s].call("full", client="pag", params=params, config=config) for s in ("lua", "boto3")}
                where = "%s, build_full_result%s" % (combo, " resumed" if start else "")
                bump(row, "full results")
                if "error" in res["lua"] or "error" in res["boto3"]:
                    row.fail("%s: an error was answered" % where)
                    continue
                for m in K.diff_page(res["boto3"]["result"], res["lua"]["result"], 6, where):
                    row.fail(m)
                if "sort" not in res["lua"]["result"]:
                    row.fail("%s: no sort member (the first page carries one)" % where)
                if (max_items is not None and max_items < len(everything)) != ("NextToken" in res["lua"]["result"]):
                    row.fail("%s: NextToken presence is not what MaxItems implies" % where)
    return [row]


# Scripted services (capture server): tokens and page shapes the emulator never makes.
ODD_TOKEN = 'tok "quoted" \\ back/slash +=&?#% end'
B64_LOOKALIKE = "eyJuZXh0VG9rZW4iOiAiYiJ9"     # a service token that looks like a resume token
SCRIPTS = [
    ("service tokens with JSON and URL special characters", {
        None: (3, ODD_TOKEN), ODD_TOKEN: (3, "x___2"), "x___2": (3, B64_LOOKALIKE),
        B64_LOOKALIKE: (2, None)}, (1, 2, 3, 4, 5, 7, 11, None)),
    ("empty pages that carry a token", {
        None: (0, "e1"), "e1": (2, "e2"), "e2": (0, "e3"), "e3": (0, None)}, (1, 2, 3, None)),
    ("a token repeated by the service", {None: (1, "r1"), "r1": (1, "r1")}, (1, 2, 3, None)),
    # Resume tokens only (MaxItems ends before the token is sent: the model allows
    # only ASCII in a request's nextToken).
    ("non-ASCII and control characters in a token", {
        None: (3, "\u00e9\U0001F600\x01\x7f\"\\/\u2028 end")}, (1, 2, 3)),
]


def _b64json(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


STARTING_TOKENS = [
    ("deprecated TOKEN___N", ODD_TOKEN + "___1"),
    ("deprecated None___N", "None___2"),
    ("deprecated form with a non-numeric suffix", ODD_TOKEN + "___x"),
    ("two ___ separators", "a___b___3"),
    ("base64 JSON, nextToken null", _b64json('{"nextToken": null, "boto_truncate_amount": 2}')),
    ("base64 JSON, nextToken 'None'", _b64json('{"nextToken": "None", "boto_truncate_amount": 1}')),
    ("base64 JSON, compact separators", _b64json('{"nextToken":"x___2","boto_truncate_amount":1}')),
    ("base64 JSON without boto_truncate_amount", _b64json('{"nextToken": "x___2"}')),
    ("base64 JSON wrapped by a newline", _b64json('{"nextToken": "x___2", "boto_truncate_amount": 1}')[:12]
     + "\n" + _b64json('{"nextToken": "x___2", "boto_truncate_amount": 1}')[12:]),
    ("base64 JSON of a list", _b64json("[1]")),
]


# Deliberate differences (docs/COMPATIBILITY.md): (scenario, MaxItems or "*") ->
# (why, the kinds of difference it explains). Anything else still counts as a mismatch.
DELIBERATE = {
    ("a token repeated by the service", 2): (
        "Lua counts the StartingToken as seen, so a service that answers a token with the same token "
        "raises PaginationError on the first repeat; boto3 compares consecutive tokens only and "
        "resumes forever", {"error", "pages", "tokens", "requests"}),
    ("non-ASCII and control characters in a token", "*"): (
        "Lua refuses to send a nextToken outside ASCII (the model's pattern \\p{ASCII}) with "
        "ParamValidationError; botocore 1.29 sends it and the service answers ValidationException",
        {"error", "requests"}),
}


def _sent_tokens(requests):
    out = []
    for req in requests:
        pairs = [p.partition("=") for p in req.query.split("&") if p]
        out.append(sorted((k, unquote(v)) for k, _, v in pairs))
    return out


def check_scripted_pagination(drivers, capture):
    row = Row(3, "pagination: scripted tokens, empty pages, StartingToken forms", "boto3")
    params = {"datastoreId": C.DS}
    try:
        for name, pages, max_items_list in SCRIPTS:
            capture.play(H.PageScript(pages, {"sortField": "updatedAt", "sortOrder": "DESC"}))
            for max_items in max_items_list:
                combo = "%s, MaxItems %s" % (name, max_items)
                row.cases += 1
                chains = {}
                for chain, order in (("boto3", lambda k: "boto3"), ("lua", lambda k: "lua"),
                                     ("mixed", lambda k: ("lua", "boto3")[k % 2])):
                    capture.take()
                    steps, err = run_chain(drivers, order, params, max_items, 3, limit=50, client="capscript")
                    chains[chain] = (steps, err, _sent_tokens(capture.take()))
                ref_steps, ref_err, ref_sent = chains["boto3"]
                found = []   # (kind, message)
                for chain in ("lua", "mixed"):
                    steps, err, sent = chains[chain]
                    bump(row, "iterations", len(steps))
                    if (err is None) != (ref_err is None) or (err and err.split(" answered ")[-1] !=
                                                              ref_err.split(" answered ")[-1]):
                        found.append(("error", "%s: %s chain: %s vs boto3: %s" % (
                            combo, chain, err or "no error", ref_err or "no error")))
                    if [p for p, _ in steps] != [p for p, _ in ref_steps]:
                        found.append(("pages", "%s: %s chain: pages of imageSetIds differ" % (combo, chain)))
                    if [t for _, t in steps] != [t for _, t in ref_steps]:
                        found.append(("tokens", "%s: %s chain: resume tokens differ" % (combo, chain)))
                    bump(row, "requests", len(sent))
                    if sent != ref_sent:
                        found.append(("requests", "%s: %s chain: the requests' query parameters differ"
                                      % (combo, chain)))
                documented = DELIBERATE.get((name, max_items)) or DELIBERATE.get((name, "*"))
                if documented:
                    text, kinds = documented
                    if not found:
                        row.fail("%s: the documented difference is no longer seen; update DELIBERATE and "
                                 "docs/COMPATIBILITY.md" % combo)
                    elif all(kind in kinds for kind, _ in found):
                        row.documented.append("%s: %s" % (combo, text))
                        continue
                for _, message in found:
                    row.fail(message)
        capture.play(H.PageScript(SCRIPTS[0][1]))
        for name, token in STARTING_TOKENS:
            row.cases += 1
            seen = {}
            for side in ("boto3", "lua"):
                capture.take()
                answer = drivers[side].call("pages", client="capscript", params=params,
                                            config={"MaxItems": 4, "PageSize": 3, "StartingToken": token})
                seen[side] = (answer, _sent_tokens(capture.take()))
            (theirs, theirs_sent), (ours, ours_sent) = seen["boto3"], seen["lua"]
            where = "StartingToken %s" % name
            bump(row, "starting tokens")
            if ("error" in theirs) != ("error" in ours):
                row.fail("%s: %s vs boto3: %s" % (where, ours.get("error", {}).get("code", "pages"),
                                                  theirs.get("error", {}).get("code", "pages")))
                continue
            if ours_sent != theirs_sent:
                row.fail("%s: the requests' query parameters differ" % where)
            if "error" not in ours:
                if _ids(ours) != _ids(theirs):
                    row.fail("%s: pages of imageSetIds differ" % where)
                if ours.get("resume_token") != theirs.get("resume_token"):
                    row.fail("%s: resume token differs" % where)
    finally:
        capture.play(None)
    return [row]


# }====

# {==== 4. Errors ------------------------------------------------------------------------

MODELED = ("ValidationException", "AccessDeniedException", "ResourceNotFoundException",
           "ConflictException", "ThrottlingException", "InternalServerException")


def error_cases(doc):
    """(case id, client, fault rules, params, expected code or None for success, peers)."""
    ds = doc["datastoreId"]
    base = {"datastoreId": ds, "maxResults": 2}
    both = ("js", "boto3")
    out = [("fault %s" % code, "one", [{"code": code}], base, code, both) for code in MODELED]
    out += [
        ("fault ThrottlingException with a non-ASCII, quoted message", "one",
         [{"code": "ThrottlingException", "message": "Rate exceeded \u2014 \u00abslow down\u00bb \"now\" \\ \u2713"}],
         base, "ThrottlingException", both),
        ("fault InvalidSignatureException", "one", [{"code": "InvalidSignatureException"}], base,
         "InvalidSignatureException", both),
        ("unknown data store", "one", [], dict(base, datastoreId="0" * 32), "ResourceNotFoundException", both),
        ("malformed nextToken", "one", [], dict(base, nextToken="bm90IGEgdG9rZW4="), "ValidationException", both),
        ("wrong secret key: signature mismatch", "badsecret", [], base, "InvalidSignatureException", both),
        ("unknown access key", "badkey", [], base, "UnrecognizedClientException", both),
        ("ThrottlingException 3 times, 3 attempts", "three", [{"code": "ThrottlingException", "times": 3}],
         base, "ThrottlingException", both),
        ("InternalServerException twice, then success", "three",
         [{"code": "InternalServerException", "times": 2}], base, None, both),
        # botocore has no signing-clock setting (and no skew correction): JS SDK only.
        ("clock 1 hour slow: corrected from the Date header", "slow", [], base, None, ("js",)),
        ("clock 1 hour slow, max attempts 1: no attempt beyond the maximum", "slow1", [], base,
         "InvalidSignatureException", ("js",)),
    ]
    return out


# Attempts each case must take on every side (one unless said here): what the
# fault queue and the retry settings imply, not what a client reported.
ATTEMPTS = {
    "ThrottlingException 3 times, 3 attempts": 3,
    "InternalServerException twice, then success": 3,
    "clock 1 hour slow: corrected from the Date header": 2,
}


def _settle(emu, before, request_id, timeout=5.0):
    """The API log lines after `before`, once the emulator has written them all.

    The emulator logs a request just after answering it, so the client may see the
    answer first: wait for the reported request id, or for the log to stay still.
    """
    deadline = time.time() + timeout
    last, still = None, 0
    while time.time() < deadline:
        lines = emu.api_log()[before:]
        if request_id is not None and lines and lines[-1][3] == request_id:
            return lines
        still = still + 1 if lines == last else 0
        if request_id is None and lines and still >= 5:
            return lines
        last = lines
        time.sleep(0.02)
    return emu.api_log()[before:]


def check_errors(drivers, emu, doc):
    rows = {p: Row(4, "errors: modeled, signature, retried, clock skew", p)
            for p in ("js", "boto3")}
    now = int(time.time())
    clients = {
        "one": {"max_attempts": 1}, "three": {"max_attempts": 3},
        "badsecret": {"max_attempts": 1, "secret_access_key": "not-the-secret"},
        "badkey": {"max_attempts": 1, "access_key_id": "AKIDNOTKNOWNHERE"},
        "slow": {"max_attempts": 3, "clock": now - 3600},
        "slow1": {"max_attempts": 1, "clock": now - 3600},
    }
    for name, extra in clients.items():
        spec = {"name": name, "endpoint": emu.url, "region": "us-east-1", "access_key_id": H.KEY,
                "secret_access_key": H.SECRET}
        spec.update(extra)
        for d in drivers.values():
            d.call("client", **spec)
    for case_id, client, faults, params, expect, peers in error_cases(doc):
        seen = {}
        for side in ("lua",) + peers:
            emu.control("DELETE", "/_local/faults")
            if faults:
                emu.control("POST", "/_local/faults", {"rules": faults})
            before = len(emu.api_log())
            answer = drivers[side].call("search", client=client, params=params)
            seen[side] = (answer, _settle(emu, before, answer.get("error", {}).get("request_id")))
        emu.control("DELETE", "/_local/faults")
        ours, ours_log = seen["lua"]
        for peer in peers:
            row = rows[peer]
            row.cases += 1
            theirs, theirs_log = seen[peer]
            for side, (answer, logged) in (("lua", seen["lua"]), (peer, seen[peer])):
                err = answer.get("error")
                if expect is None and err:
                    row.fail("%s: %s answered %s instead of a page" % (case_id, side, err.get("code")))
                elif expect is not None and (not err or err.get("code") != expect):
                    row.fail("%s: %s did not report %s" % (case_id, side, expect))
                elif err and (not logged or err.get("request_id") != logged[-1][3]):
                    row.fail("%s: %s's request id is not the one the emulator sent" % (case_id, side))
                elif err and str(err.get("status")) != logged[-1][2]:
                    row.fail("%s: %s's HTTP status is not the one the emulator sent" % (case_id, side))
                if err:
                    bump(row, "request ids")
                if len(logged) != ATTEMPTS.get(case_id, 1):
                    row.fail("%s: %s made %d attempts, not %d" % (case_id, side, len(logged),
                                                                 ATTEMPTS.get(case_id, 1)))
            bump(row, "requests", len(theirs_log))
            if len(theirs_log) != len(ours_log):
                row.fail("%s: %d attempts vs %d in Lua" % (case_id, len(theirs_log), len(ours_log)))
            if "error" in ours and "error" in theirs:
                for field in ("code", "status", "message"):
                    bump(row, "fields")
                    if ours["error"].get(field) != theirs["error"].get(field):
                        row.fail("%s: %s differs" % (case_id, field))
            elif "page" in ours and "page" in theirs:
                for m in K.diff_page(theirs["page"], ours["page"], K.PRECISION[peer], case_id):
                    row.fail(m)
    return list(rows.values())


# restJson1 error-code forms (x-amzn-ErrorType with a ':' suffix or a namespace '#',
# or only `code` / `__type` in the body), answered by the capture server.
ERROR_FORMS = [
    ("header with a ':' suffix", 400,
     {"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.coral.validate/"},
     {"message": "form 1"}, "ValidationException"),
    ("header with a namespace and a suffix", 403,
     {"x-amzn-ErrorType": "aws.protocoltests.restjson#AccessDeniedException:http://internal.amazon.com/x/"},
     {"message": "form 2"}, "AccessDeniedException"),
    ("body code only", 409, {}, {"code": "ConflictException", "message": "form 3"}, "ConflictException"),
    ("body __type with a namespace", 404, {},
     {"__type": "com.amazonaws.medicalimaging#ResourceNotFoundException", "message": "form 4"},
     "ResourceNotFoundException"),
    ("body __type and Message", 429, {}, {"__type": "ThrottlingException", "Message": "form 5"},
     "ThrottlingException"),
]


# Where a peer itself departs from the protocol (docs/COMPATIBILITY.md): (peer, case,
# field) -> why. Seen: counted as a peer deviation; not seen any more: a mismatch, so
# the document is kept true.
KNOWN_PEER_DEVIATIONS = {
    ("boto3", "header with a namespace and a suffix", "code"):
        "botocore 1.29 keeps the 'namespace#' of x-amzn-ErrorType (restJson1 drops it)",
}


def check_error_forms(drivers, capture):
    rows = {p: Row(4, "errors: restJson1 error-code forms", p) for p in ("js", "boto3")}
    for d in drivers.values():
        d.call("client", name="capone", endpoint=capture.url, region="us-east-1", access_key_id=H.KEY,
               secret_access_key=H.SECRET, max_attempts=1)
    for n, (case_id, status, headers, body, code) in enumerate(ERROR_FORMS):
        request_id = "conformance-request-%d" % n
        answers = {}
        for side in ("lua", "js", "boto3"):
            capture.take()
            capture.answer((status, dict(headers, **{"x-amzn-RequestId": request_id}),
                            json.dumps(body).encode()))
            answers[side] = drivers[side].call("search", client="capone", params={"datastoreId": C.DS})
        want = {"code": code, "status": status, "message": body.get("message", body.get("Message")),
                "request_id": request_id}
        for peer, row in rows.items():
            row.cases += 1
            for side in ("lua", peer):
                err = answers[side].get("error") or {}
                for field, value in want.items():
                    bump(row, "fields")
                    known = KNOWN_PEER_DEVIATIONS.get((side, case_id, field))
                    if known and err.get(field) != value:
                        row.deviations.append("%s: %s" % (case_id, known))
                    elif known:
                        row.fail("%s: %s now follows the protocol; update KNOWN_PEER_DEVIATIONS and "
                                 "docs/COMPATIBILITY.md" % (case_id, side))
                    elif err.get(field) != value:
                        row.fail("%s: %s's %s is not the one the server sent" % (case_id, side, field))
    return list(rows.values())


# }====

# {==== 5. SigV4 test suites ----------------------------------------------------------


def check_sigv4(drivers):
    rows = []
    for layout, cases in C.suite_cases(H.SIGV4_SUITE).items():
        row = Row(5, "SigV4 suite, %s layout: creq, string to sign, Authorization" % layout, "-")
        for case_id, sign_input, want in cases:
            row.cases += 1
            got = drivers["lua"].call("sign", input=sign_input)
            if "error" in got:
                row.fail("%s: the signer refused the case" % case_id)
                continue
            for field in ("canonical_request", "string_to_sign", "authorization"):
                bump(row, "stages")
                if want[field] is None or got[field] != want[field]:
                    row.fail("%s: %s differs" % (case_id, field))
        if row.cases == 0:
            row.fail("no case found")
        rows.append(row)
    return rows


# }====

# {==== The table ----------------------------------------------------------------------


def print_table(rows, versions, seconds, out=sys.stdout):
    header = ("#", "check", "peer", "cases", "compared", "documented", "mismatches")
    lines = [(str(r.number), r.check, PEER_NAMES.get(r.peer, r.peer), str(r.cases), r.compared(),
              str(len(r.deviations) + len(r.documented)), str(len(r.mismatches))) for r in rows]
    widths = [max(len(x[i]) for x in [header] + lines) for i in range(len(header))]
    fmt = "  ".join("%%-%ds" % w if i in (1, 2, 4) else "%%%ds" % w for i, w in enumerate(widths))
    out.write("\nconformance: %s\n\n" % versions)
    out.write(fmt % header + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for line in lines:
        out.write(fmt % line + "\n")
    for r in rows:
        if r.note:
            out.write("\nnote (%s, %s): %s" % (r.number, PEER_NAMES.get(r.peer, r.peer), r.note))
        for d in r.deviations:
            out.write("\ndocumented peer deviation (%s, %s): %s" % (r.number, PEER_NAMES.get(r.peer, r.peer), d))
        for d in r.documented:
            out.write("\ndocumented deliberate difference (%s, %s): %s"
                      % (r.number, PEER_NAMES.get(r.peer, r.peer), d))
    failed = [r for r in rows if r.mismatches]
    for r in failed:
        out.write("\n\nmismatches in %s (%s), by case, imageSetId and field:\n" % (r.check, PEER_NAMES.get(r.peer, r.peer)))
        for m in r.mismatches[:25]:
            out.write("  - %s\n" % m)
        if len(r.mismatches) > 25:
            out.write("  ... and %d more\n" % (len(r.mismatches) - 25))
    total = sum(len(r.mismatches) for r in rows)
    out.write("\n\nconformance: %s, %d mismatches, %.0f s\n"
              % ("FAILED" if total else "all checks agree", total, seconds))
    out.flush()
    return total


def versions():
    try:
        with open(os.path.join(H.JS_SDK, "package.json"), encoding="utf-8") as fh:
            js = json.load(fh)["version"]
    except (OSError, ValueError, KeyError):
        js = "?"
    try:
        import boto3
        import botocore
        boto = "boto3 %s / botocore %s" % (boto3.__version__, botocore.__version__)
    except ImportError:
        boto = "boto3 ?"
    return "Lua client vs @aws-sdk/client-medical-imaging %s and %s" % (js, boto)


def prerequisites():
    """None when everything is there, else (exit code, message)."""
    missing = [f for f in H.MODEL_FILES if not os.path.isfile(os.path.join(H.MODEL_DIR, f))]
    if not os.path.isdir(H.REFERENCE) or missing or not os.path.isdir(H.SIGV4_SUITE):
        return 0, ("conformance: SKIPPED: %s is absent or incomplete, so nothing was compared with the "
                   "official SDKs (the service model for boto3 and the SigV4 test suites live there)"
                   % H.REFERENCE)
    if not os.path.isdir(H.JS_SDK):
        return 2, ("conformance: the JS SDK is not installed: run `npm ci --prefix peers` "
                   "(peers/package-lock.json pins it)")
    if shutil.which(H.NODE) is None:
        return 2, "conformance: node is missing: run sh scripts/install-deps.sh"
    try:
        import boto3  # noqa: F401
    except ImportError:
        return 2, "conformance: python3-boto3 is missing: run sh scripts/install-deps.sh"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compare the Lua client with the JS SDK and boto3.")
    parser.add_argument("--data", default=os.path.join(H.REPO, "build", "demo", "datastore.json"),
                        help="data file of real DICOM image sets (make build/demo/datastore.json)")
    args = parser.parse_args(argv)
    blocked = prerequisites()
    if blocked:
        print(blocked[1])
        return blocked[0]
    started = time.time()
    with open(args.data, encoding="utf-8") as fh:
        demo = json.load(fh)
    tmp = tempfile.mkdtemp(prefix="hi-conformance-")
    parts = []
    try:
        pag_doc = C.synthetic_store(PAGINATION_SETS)
        pag_path = os.path.join(tmp, "pagination.json")
        with open(pag_path, "w", encoding="utf-8") as fh:
            json.dump(pag_doc, fh)
        drivers = H.start_drivers(tmp, H.model_data_path(tmp))
        parts.extend(drivers.values())
        emu = H.Emulator(args.data, tmp)
        parts.append(emu)
        pag_emu = H.Emulator(pag_path, tmp)
        parts.append(pag_emu)
        capture = H.CaptureServer()
        parts.append(capture)
        for d in drivers.values():
            for name, url in (("emu", emu.url), ("pag", pag_emu.url)):
                d.call("client", name=name, endpoint=url, region="us-east-1", access_key_id=H.KEY,
                       secret_access_key=H.SECRET)
        rows = []
        rows += check_search(drivers, demo)
        rows += check_wire(drivers, capture)
        rows += check_pagination(drivers, pag_doc)
        for d in drivers.values():
            d.call("client", name="capscript", endpoint=capture.url, region="us-east-1",
                   access_key_id=H.KEY, secret_access_key=H.SECRET, max_attempts=1)
        rows += check_scripted_pagination(drivers, capture)
        rows += check_errors(drivers, emu, demo)
        rows += check_error_forms(drivers, capture)
        rows += check_sigv4(drivers)
    except H.HarnessError as exc:
        print("conformance: %s" % exc)
        return 2
    finally:
        for part in reversed(parts):
            part.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if print_table(rows, versions(), time.time() - started) else 0


if __name__ == "__main__":
    sys.exit(main())
