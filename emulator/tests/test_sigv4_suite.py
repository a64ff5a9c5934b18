"""The SigV4 verifier against every header-signing case of AWS's test suite.

Both layouts in ../shared/reference/sigv4-test-suite are used: for each case the
canonical request, string to sign and signature are rebuilt from the signed request
and compared with the expected files, then the verifier's verdict is checked, and a
tampered copy must be rejected. Skipped, with the reason, when the folder is absent.
"""

import calendar
import json
import os
import time
import unittest

from healthimaging_local import sigv4
from healthimaging_local.errors import ServiceError

from .helpers import SIGV4_SUITE, parse_raw_request

LAYOUT1 = os.path.join(SIGV4_SUITE, "botocore-aws4_testsuite")
LAYOUT2 = os.path.join(SIGV4_SUITE, "aws-c-auth-v4")
ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_TIME = calendar.timegm(time.strptime("20150830T123600Z", "%Y%m%dT%H%M%SZ"))
# Cases whose session token is added after signing: this emulator requires the token
# to be signed (documented in --help), so these must be rejected.
TOKEN_AFTER_SIGNING = ("post-sts-header-after",)


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _layout1_cases():
    cases = []
    for dirpath, _dirs, files in os.walk(LAYOUT1):
        name = os.path.basename(dirpath)
        if name + ".sreq" in files and name + ".authz" in files:
            cases.append((name, dirpath))
    return sorted(cases)


def _layout2_cases():
    return sorted((name, os.path.join(LAYOUT2, name)) for name in os.listdir(LAYOUT2)
                  if os.path.isfile(os.path.join(LAYOUT2, name, "header-signed-request.txt")))


def _credentials_for(request, context=None):
    token = None
    if context is not None:
        token = context["credentials"].get("token")
        key, secret = context["credentials"]["access_key_id"], context["credentials"]["secret_access_key"]
    else:
        key, secret = ACCESS_KEY, SECRET
        for name, value in request["headers"]:
            if name.lower() == "x-amz-security-token":
                token = value.strip()
    return {key: sigv4.Credential(key, secret, token)}


def _authorization(request):
    return [v for k, v in request["headers"] if k.lower() == "authorization"][0]


class SigV4SuiteMixin:
    """Checks shared by both layouts."""

    def check_case(self, name, request, expected_creq, expected_sts, expected_sig,
                   credentials, normalize, service, now):
        parsed = sigv4.parse_authorization(_authorization(request))
        self.assertEqual(parsed["signature"], expected_sig, "%s: Authorization signature" % name)
        import hashlib
        creq = sigv4.canonical_request(request["method"], request["path"], request["query"],
                                       request["headers"], parsed["signed_headers"],
                                       hashlib.sha256(request["body"]).hexdigest(), normalize)
        self.assertEqual(creq.decode("utf-8"), expected_creq, "%s: canonical request" % name)
        scope = "/".join([parsed["date"], parsed["region"], parsed["service"], "aws4_request"])
        amz_date = [v for k, v in request["headers"] if k.lower() == "x-amz-date"][0].strip()
        sts = sigv4.string_to_sign(amz_date, scope, creq)
        self.assertEqual(sts, expected_sts, "%s: string to sign" % name)
        cred = credentials[ACCESS_KEY]
        key = sigv4.signing_key(cred.secret_access_key, parsed["date"], parsed["region"], parsed["service"])
        self.assertEqual(sigv4.signature(key, sts), expected_sig, "%s: signature" % name)

        def run(req=request, creds=credentials, at=now):
            return sigv4.verify(req["method"], req["path"], req["query"], req["headers"], req["body"],
                                creds, now=at, service=service, normalize=normalize)

        if name in TOKEN_AFTER_SIGNING:
            with self.assertRaises(ServiceError) as ctx:
                run()
            self.assertEqual(ctx.exception.code, "InvalidSignatureException")
            self.assertIn("X-Amz-Security-Token", ctx.exception.message)
            return
        verified = run()
        self.assertEqual(verified.canonical_request.decode("utf-8"), expected_creq)
        self.assertEqual(verified.access_key_id, ACCESS_KEY)

        # A flipped signature digit, another secret, or a clock 6 minutes away: rejected.
        sig = parsed["signature"]
        flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        tampered = dict(request)
        tampered["headers"] = [(k, v.replace(sig, flipped) if k.lower() == "authorization" else v)
                               for k, v in request["headers"]]
        for label, kwargs, code in (
                ("flipped signature", {"req": tampered}, "InvalidSignatureException"),
                ("wrong secret", {"creds": {ACCESS_KEY: sigv4.Credential(
                    ACCESS_KEY, SECRET + "x", cred.session_token)}}, "InvalidSignatureException"),
                ("unknown key", {"creds": {"AKIDOTHER": cred}}, "UnrecognizedClientException"),
                ("stale clock", {"at": now + 360}, "InvalidSignatureException"),
                ("early clock", {"at": now - 360}, "InvalidSignatureException")):
            with self.assertRaises(ServiceError, msg="%s: %s" % (name, label)) as ctx:
                run(**kwargs)
            self.assertEqual(ctx.exception.code, code, "%s: %s" % (name, label))
            self.assertEqual(ctx.exception.status, 403)
            self.assertNotIn(SECRET, ctx.exception.message)

        # A body the signer did not see is a signature mismatch as well.
        changed = dict(request)
        changed["body"] = request["body"] + b"x"
        with self.assertRaises(ServiceError) as ctx:
            run(req=changed)
        self.assertEqual(ctx.exception.message, sigv4.MSG_BAD_SIGNATURE)


@unittest.skipUnless(os.path.isdir(LAYOUT1),
                     "../shared/reference/sigv4-test-suite/botocore-aws4_testsuite is absent: "
                     "the verifier is not checked against the classic SigV4 test suite")
class BotocoreLayoutTest(SigV4SuiteMixin, unittest.TestCase):
    """Layout 1: NAME.sreq with the Authorization header replaced by NAME.authz."""

    def test_every_case_verifies_and_rejects_tampering(self):
        cases = _layout1_cases()
        self.assertGreaterEqual(len(cases), 30, "the README announces 34 cases")
        for name, folder in cases:
            with self.subTest(case=name):
                request = parse_raw_request(_read(os.path.join(folder, name + ".sreq")))
                authz = _read(os.path.join(folder, name + ".authz")).strip()
                # .sreq of get-vanilla-with-session-token carries a stale signature (README).
                request["headers"] = [(k, v) for k, v in request["headers"] if k.lower() != "authorization"]
                request["headers"].append(("Authorization", authz))
                sig = authz.rsplit("Signature=", 1)[1]
                self.check_case(name, request, _read(os.path.join(folder, name + ".creq")),
                                _read(os.path.join(folder, name + ".sts")), sig,
                                _credentials_for(request), True, "service", SUITE_TIME)


@unittest.skipUnless(os.path.isdir(LAYOUT2),
                     "../shared/reference/sigv4-test-suite/aws-c-auth-v4 is absent: the verifier "
                     "is not checked against the aws-c-auth SigV4 test suite")
class AwsCAuthLayoutTest(SigV4SuiteMixin, unittest.TestCase):
    """Layout 2: header-signed-request.txt with context.json."""

    def test_every_header_case_verifies_and_rejects_tampering(self):
        cases = _layout2_cases()
        self.assertGreaterEqual(len(cases), 35, "the README announces 38 cases")
        for name, folder in cases:
            with self.subTest(case=name):
                context = json.loads(_read(os.path.join(folder, "context.json")))
                request = parse_raw_request(_read(os.path.join(folder, "header-signed-request.txt")))
                now = calendar.timegm(time.strptime(context["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
                self.check_case(name, request,
                                _read(os.path.join(folder, "header-canonical-request.txt")),
                                _read(os.path.join(folder, "header-string-to-sign.txt")),
                                _read(os.path.join(folder, "header-signature.txt")).strip(),
                                _credentials_for(request, context), context["normalize"],
                                context["service"], now)


class StagesTest(unittest.TestCase):
    """Stages that the suite does not cover on its own."""

    def test_path_is_encoded_again_when_it_arrives_percent_encoded(self):
        self.assertEqual(sigv4.canonical_uri(b"/a%20b/c"), "/a%2520b/c")

    def test_plus_in_query_means_space_and_percent_2b_means_plus(self):
        self.assertEqual(sigv4.canonical_query(b"t=a+b"), "t=a%20b")
        self.assertEqual(sigv4.canonical_query(b"t=a%2Bb%2F%3D"), "t=a%2Bb%2F%3D")

    def test_query_is_sorted_by_key_then_value(self):
        self.assertEqual(sigv4.canonical_query(b"b=2&a=2&a=1&c"), "a=1&a=2&b=2&c=")

    def test_malformed_authorization_headers_are_incomplete_signatures(self):
        for header in ("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request",
                       "AWS3 Credential=x", "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, "
                       "Signature=" + "0" * 64):
            with self.subTest(header=header):
                with self.assertRaises(ServiceError) as ctx:
                    sigv4.parse_authorization(header)
                self.assertEqual(ctx.exception.code, "IncompleteSignatureException")

    def test_missing_authorization_is_a_missing_token(self):
        with self.assertRaises(ServiceError) as ctx:
            sigv4.verify("POST", b"/", b"", [("Host", "h")], b"", {})
        self.assertEqual(ctx.exception.code, "MissingAuthenticationTokenException")
        self.assertEqual(ctx.exception.status, 403)


if __name__ == "__main__":
    unittest.main()
