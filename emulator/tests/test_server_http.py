"""The emulator at the HTTP level: hand-made requests (signed by botocore's SigV4Auth).

Covers what a well-behaved SDK never sends: bad signatures, unknown keys, stale
dates, raw query encoding of tokens, malformed JSON, odd routes, plus keep-alive,
concurrency, the fault API, logging and shutdown.
"""

import datetime
import http.client
import json
import os
import re
import tempfile
import threading
import time
import unittest
import uuid
from urllib.parse import quote

from healthimaging_local.sigv4 import MSG_BAD_SIGNATURE, MSG_UNKNOWN_KEY

from .helpers import DATASTORE, DEFAULT_KEY, DEFAULT_SECRET, OTHER_DATASTORE, Emulator, wait_for
from .server_fixture import REAL_HOST, SEARCH_PATH, DemoServer, error_of

SERVER = DemoServer()
ERROR_TYPE = re.compile(r"^([A-Za-z]+):http://internal\.amazon\.com/coral/[a-z.]+/$")


def setUpModule():
    SERVER.start()


def tearDownModule():
    SERVER.stop()


def _utc(offset_seconds=0):
    return datetime.datetime.utcnow() + datetime.timedelta(seconds=offset_seconds)


class AuthenticationTest(unittest.TestCase):

    def assert_denied(self, response, code, message=None):
        status, headers, _ = response
        self.assertEqual(error_of(response)[:2], (403, code))
        self.assertRegex(headers["x-amzn-errortype"], ERROR_TYPE)
        uuid.UUID(headers["x-amzn-requestid"])
        if message is not None:
            self.assertTrue(error_of(response)[2].startswith(message), error_of(response)[2])

    def test_a_correctly_signed_request_succeeds(self):
        status, headers, body = SERVER.signed({})
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        uuid.UUID(headers["x-amzn-requestid"])
        self.assertEqual(int(headers["content-length"]), len(body))

    def test_the_real_host_name_and_any_region_are_accepted(self):
        self.assertEqual(SERVER.signed({}, host=REAL_HOST)[0], 200)
        self.assertEqual(SERVER.signed({}, region="eu-west-1")[0], 200)

    def test_no_authorization_is_a_missing_token(self):
        self.assert_denied(SERVER.raw(body=b"{}", headers={"X-Amz-Date": "20240101T000000Z"}),
                           "MissingAuthenticationTokenException", "Missing Authentication Token")

    def test_a_malformed_authorization_is_an_incomplete_signature(self):
        headers = SERVER.signed_headers(body=b"{}")
        for bad in ("AWS4-HMAC-SHA256 Credential=" + DEFAULT_KEY, "Bearer abc",
                    headers["Authorization"].replace("SignedHeaders=", "Signed=")):
            with self.subTest(authorization=bad[:40]):
                self.assert_denied(SERVER.raw(body=b"{}", headers=dict(headers, Authorization=bad)),
                                   "IncompleteSignatureException")
        no_date = {k: v for k, v in headers.items() if k != "X-Amz-Date"}
        self.assert_denied(SERVER.raw(body=b"{}", headers=no_date), "IncompleteSignatureException")

    def test_an_unknown_access_key_is_an_unrecognized_client(self):
        self.assert_denied(SERVER.signed({}, key="AKIDNOBODY"), "UnrecognizedClientException", MSG_UNKNOWN_KEY)

    def test_a_wrong_secret_or_altered_body_is_an_invalid_signature(self):
        self.assert_denied(SERVER.signed({}, secret="not-the-secret"), "InvalidSignatureException",
                           MSG_BAD_SIGNATURE)
        headers = SERVER.signed_headers(body=b"{}")
        self.assert_denied(SERVER.raw(body=b"{ }", headers=headers), "InvalidSignatureException",
                           MSG_BAD_SIGNATURE)
        query_changed = SERVER.raw(query="maxResults=2", body=b"{}", headers=SERVER.signed_headers(
            body=b"{}", query="maxResults=1"))
        self.assert_denied(query_changed, "InvalidSignatureException", MSG_BAD_SIGNATURE)

    def test_another_service_in_the_scope_is_refused(self):
        self.assert_denied(SERVER.signed({}, service="execute-api"), "InvalidSignatureException",
                           "Credential should be scoped to correct service: 'medical-imaging'")

    def test_a_date_more_than_five_minutes_off_is_refused(self):
        self.assert_denied(SERVER.signed({}, at=_utc(-400)), "InvalidSignatureException", "Signature expired: ")
        self.assert_denied(SERVER.signed({}, at=_utc(400)), "InvalidSignatureException",
                           "Signature not yet current: ")
        self.assertEqual(SERVER.signed({}, at=_utc(-200))[0], 200)

    def test_host_must_be_signed(self):
        headers = SERVER.signed_headers(body=b"{}")
        unsigned_host = headers["Authorization"].replace("host;", "")
        self.assert_denied(SERVER.raw(body=b"{}", headers=dict(headers, Authorization=unsigned_host)),
                           "InvalidSignatureException", "'Host' must be a 'SignedHeader'")

    def test_a_token_for_a_key_without_one_is_unrecognized(self):
        self.assert_denied(SERVER.signed({}, token="some-session-token"), "UnrecognizedClientException")

    def test_messages_and_logs_hold_no_secret(self):
        SERVER.signed({}, secret="not-the-secret")
        log = SERVER.emulator.stderr_text()
        self.assertNotIn("not-the-secret", log)
        self.assertNotIn("Authorization", log)
        self.assertNotIn("Signature=", log)


class SessionTokenTest(unittest.TestCase):
    """A server started with KEY:SECRET:TOKEN credentials."""

    def test_the_token_must_be_present_signed_and_equal(self):
        with Emulator(SERVER.data_path, "--credentials", "AKIDTOKEN:tok-secret:the+session/token=") as emu:
            server = DemoServer()
            server.emulator, server.doc = emu, SERVER.doc
            ok = server.signed({}, key="AKIDTOKEN", secret="tok-secret", token="the+session/token=")
            self.assertEqual(ok[0], 200)
            wrong = server.signed({}, key="AKIDTOKEN", secret="tok-secret", token="other")
            self.assertEqual(error_of(wrong)[:2], (403, "UnrecognizedClientException"))
            missing = server.signed({}, key="AKIDTOKEN", secret="tok-secret")
            self.assertEqual(error_of(missing)[:2], (403, "UnrecognizedClientException"))
            headers = server.signed_headers(body=b"{}", key="AKIDTOKEN", secret="tok-secret")
            headers["X-Amz-Security-Token"] = "the+session/token="
            after = server.raw(body=b"{}", headers=headers)
            self.assertEqual(error_of(after)[:2], (403, "InvalidSignatureException"))
            default = server.signed({})
            self.assertEqual(error_of(default)[:2], (403, "UnrecognizedClientException"))
            log = emu.stderr_text()
            self.assertIn("AKIDTOKEN", log)
            self.assertNotIn("tok-secret", log)
            self.assertNotIn("the+session/token=", log)


class CredentialsFlagTest(unittest.TestCase):

    def test_an_empty_session_token_is_refused_at_start_without_showing_the_secret(self):
        from .helpers import run_cli
        for value in ("AKIDEMPTYTOKEN:empty-token-secret:", "AKIDEMPTYTOKEN::tok", ":empty-token-secret"):
            with self.subTest(value=value.split(":")[0]):
                result = run_cli("serve", "--data", SERVER.data_path, "--port", "0", "--credentials", value,
                                 timeout=30)
                self.assertEqual(result.returncode, 2)
                self.assertEqual(result.stdout, "")
                self.assertIn("--credentials", result.stderr)
                self.assertNotIn("Traceback", result.stderr)
                self.assertNotIn("empty-token-secret", result.stderr)
        result = run_cli("serve", "--data", SERVER.data_path, "--port", "0", "--credentials",
                         "AKIDEMPTYTOKEN:empty-token-secret:", timeout=30)
        self.assertIn("session token", result.stderr)


class RequestValidationTest(unittest.TestCase):

    def assert_invalid(self, response, *fragments):
        status, code, message = error_of(response)
        self.assertEqual((status, code), (400, "ValidationException"), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_empty_body_empty_object_and_null_mean_no_criteria(self):
        for body in (b"", b"{}", b"null", b" \n"):
            with self.subTest(body=body):
                status, _, data = SERVER.signed(body, query="maxResults=50")
                self.assertEqual(status, 200)
                self.assertEqual(len(json.loads(data)["imageSetsMetadataSummaries"]),
                                 min(50, len(SERVER.doc["imageSets"])))

    def test_malformed_json_wrong_types_and_unknown_members(self):
        cases = [
            (b"{", "not valid JSON"), (b"[]", "searchCriteria"), (b'"x"', "searchCriteria"),
            (b'{"filters": "x"}', "searchCriteria.filters"),
            (b'{"filters": [1]}', "searchCriteria.filters[0]"),
            (b'{"filters": [{"operator": "EQUAL", "values": [{"isPrimary": "yes"}]}]}', "isPrimary"),
            (b'{"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": 7}]}]}', "DICOMPatientId"),
            (b'{"filters": [{"operator": "BETWEEN", "values": [{"createdAt": "2024-01-01"}, '
             b'{"createdAt": "2024-02-01"}]}]}', "createdAt"),
            (b'{"sort": "createdAt"}', "searchCriteria.sort"),
            (b'{"filter": []}', "Unknown member 'filter'"),
            (b'{"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientName": "x"}]}]}',
             "Unknown member 'DICOMPatientName'"),
            (b'{"sort": {"sortField": "createdAt", "sortOrder": "ASC", "x": 1}}', "Unknown member 'x'"),
            (b'{"filters": [], "filters": []}', "not valid JSON"),
            (b'{"filters": [{"operator": "BETWEEN", "values": [{"createdAt": NaN}, {"createdAt": 1}]}]}',
             "not valid JSON"),
            (b"\xff\xfe{}", "not valid JSON"),
        ]
        for body, fragment in cases:
            with self.subTest(body=body[:60]):
                self.assert_invalid(SERVER.signed(body), fragment)

    def test_a_body_nested_too_deeply_is_a_validation_error_never_a_500(self):
        for body in (b"[" * 100000, b"[" * 5000 + b"]" * 5000, b'{"filters": ' + b"[" * 50000,
                     b'{"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": '
                     + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}]}]}"):
            with self.subTest(body=body[:30]):
                self.assert_invalid(SERVER.signed(body), "searchCriteria")
        self.assertIn("nested too deeply", self.assert_invalid(SERVER.signed(b"[" * 100000)))
        self.assertEqual(SERVER.signed({})[0], 200)

    def test_max_results_must_be_one_integer_in_range(self):
        for query in ("maxResults=abc", "maxResults=0", "maxResults=51", "maxResults=1&maxResults=2",
                      "maxResults=", "maxResults=1.5"):
            with self.subTest(query=query):
                self.assert_invalid(SERVER.signed(b"{}", query=query), "maxResults")

    def test_fractional_bounds_are_inclusive(self):
        for member in ("createdAt", "updatedAt"):
            value = SERVER.doc["imageSets"][0][member]
            self.assertNotEqual(value % 1, 0)
            body = {"filters": [{"operator": "BETWEEN", "values": [{member: value}, {member: value}]}]}
            status, _, data = SERVER.signed(body)
            got = sorted(s["imageSetId"] for s in json.loads(data)["imageSetsMetadataSummaries"])
            self.assertEqual(got, sorted(s["imageSetId"] for s in SERVER.doc["imageSets"] if s[member] == value))
            below = {"filters": [{"operator": "BETWEEN", "values": [{member: value - 1}, {member: value - 0.001}]}]}
            ids = {s["imageSetId"] for s in json.loads(SERVER.signed(below)[2])["imageSetsMetadataSummaries"]}
            self.assertNotIn(SERVER.doc["imageSets"][0]["imageSetId"], ids)

    def test_unknown_datastore_is_not_found_after_validation(self):
        path = "/datastore/%s/searchImageSets" % OTHER_DATASTORE
        status, code, _ = error_of(SERVER.signed(b"{}", path=path))
        self.assertEqual((status, code), (404, "ResourceNotFoundException"))
        status, code, _ = error_of(SERVER.signed(b"{", path=path))
        self.assertEqual((status, code), (400, "ValidationException"))

    def test_other_paths_and_methods_are_unknown_operations(self):
        for method, path in (("POST", "/datastore/%s/search" % DATASTORE), ("GET", SEARCH_PATH),
                             ("PUT", SEARCH_PATH), ("POST", "/"), ("DELETE", "/_local/stats"),
                             ("GET", "/_local/nothing"), ("BREW", "/coffee")):
            with self.subTest(method=method, path=path):
                headers = SERVER.signed_headers(method=method, path=path)
                response = SERVER.raw(method, path, "", b"", headers)
                status, code, _ = error_of(response)
                self.assertEqual((status, code), (404, "UnknownOperationException"))
                self.assertRegex(response[1]["x-amzn-errortype"], ERROR_TYPE)

    def test_protocol_garbage_gets_a_json_error_and_the_server_lives_on(self):
        import socket
        for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\xff\xfe\r\n\r\n",
                    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                    b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"):
            with self.subTest(raw=raw[:20]):
                with socket.create_connection(("127.0.0.1", SERVER.emulator.port), timeout=5) as sock:
                    sock.sendall(raw)
                    reply = b""
                    while b"\r\n\r\n" not in reply:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
                self.assertRegex(reply.split(b"\r\n")[0], rb"^HTTP/1\.1 (400|414|505) ")
                self.assertIn(b"x-amzn-RequestId: ", reply)
        self.assertEqual(SERVER.signed({})[0], 200)

    def test_a_body_over_one_mebibyte_is_refused_and_the_connection_closed(self):
        conn = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
        try:
            conn.request("POST", SEARCH_PATH, body=b" " * (1024 * 1024 + 1))
            resp = conn.getresponse()
            self.assertEqual(resp.status, 400)
            self.assertEqual(resp.getheader("Connection"), "close")
            resp.read()
        finally:
            conn.close()


class TokenTest(unittest.TestCase):

    def first_page(self, criteria=None, size=5):
        status, _, data = SERVER.signed(criteria or {}, query="maxResults=%d" % size)
        self.assertEqual(status, 200)
        return json.loads(data)

    def next_page(self, token, criteria=None, size=5, encode=True):
        query = "maxResults=%d&nextToken=%s" % (size, quote(token, safe="") if encode else token)
        return SERVER.signed(criteria or {}, query=query)

    def test_tokens_need_percent_encoding_of_plus_slash_and_equals(self):
        token = self.first_page()["nextToken"]
        for char in "+/=":
            self.assertIn(char, token)
        self.assertEqual(self.next_page(token)[0], 200)
        self.assertIn(self.next_page(token, encode=False)[0], (400, 403))

    def test_altered_foreign_or_garbage_tokens_are_invalid_and_never_echoed(self):
        token = self.first_page()["nextToken"]
        flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
        for bad in (flipped, token[:-4], "garbage", "x" * 9000, "+///" + token[4:20],
                    "+/+/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="):
            with self.subTest(token=bad[:20]):
                status, code, message = error_of(self.next_page(bad))
                self.assertEqual((status, code), (400, "ValidationException"))
                self.assertIn("nextToken", message)
                self.assertNotIn(bad, message)
        other = {"filters": [{"operator": "EQUAL", "values": [{"isPrimary": True}]}]}
        status, code, message = error_of(self.next_page(token, criteria=other))
        self.assertEqual((status, code), (400, "ValidationException"))
        self.assertIn("other criteria", message)

    def test_a_token_does_not_survive_a_restart(self):
        token = self.first_page()["nextToken"]
        with Emulator(SERVER.data_path) as emu:
            server = DemoServer()
            server.emulator, server.doc = emu, SERVER.doc
            query = "maxResults=5&nextToken=" + quote(token, safe="")
            self.assertEqual(error_of(server.signed(b"{}", query=query))[:2], (400, "ValidationException"))

    def test_with_a_token_key_a_token_survives_a_restart_with_the_same_data(self):
        key = "restart-key-7d1e0c"

        def on(emu):
            server = DemoServer()
            server.emulator, server.doc = emu, SERVER.doc
            return server

        def resume(server, token):
            return server.signed(b"{}", query="maxResults=5&nextToken=" + quote(token, safe=""))

        with Emulator(SERVER.data_path, "--token-key", key) as emu:
            first = json.loads(on(emu).signed(b"{}", query="maxResults=5")[2])
            status, _, data = resume(on(emu), first["nextToken"])
            self.assertEqual(status, 200)
            second = [s["imageSetId"] for s in json.loads(data)["imageSetsMetadataSummaries"]]
        self.assertEqual(len(second), 5)
        with Emulator(SERVER.data_path, "--token-key", key) as emu:
            status, _, data = resume(on(emu), first["nextToken"])
            self.assertEqual(status, 200, data[:200])
            self.assertEqual([s["imageSetId"] for s in json.loads(data)["imageSetsMetadataSummaries"]], second)
            self.assertNotIn(key, emu.stderr_text())
        # Another key, no key, or other data: the token is refused, never resumed wrongly.
        for extra in (("--token-key", key + "x"), ()):
            with Emulator(SERVER.data_path, *extra) as emu:
                with self.subTest(extra=extra):
                    self.assertEqual(error_of(resume(on(emu), first["nextToken"]))[:2],
                                     (400, "ValidationException"))
        other = dict(SERVER.doc, imageSets=SERVER.doc["imageSets"][1:])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(other, fh)
        try:
            with Emulator(fh.name, "--token-key", key) as emu:
                self.assertEqual(error_of(resume(on(emu), first["nextToken"]))[:2],
                                 (400, "ValidationException"))
        finally:
            os.unlink(fh.name)

    def test_the_last_page_has_no_token_and_an_empty_result_is_a_plain_list(self):
        total = len(SERVER.doc["imageSets"])
        page = self.first_page(size=5)
        seen = len(page["imageSetsMetadataSummaries"])
        while "nextToken" in page:
            status, _, data = self.next_page(page["nextToken"], size=5)
            page = json.loads(data)
            seen += len(page["imageSetsMetadataSummaries"])
        self.assertEqual(seen, total)
        none = {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "nobody"}]}]}
        status, _, data = SERVER.signed(none)
        self.assertEqual((status, json.loads(data)), (200, {"imageSetsMetadataSummaries": []}))


class ResponseBytesTest(unittest.TestCase):

    def test_non_ascii_is_raw_utf8_and_timestamps_are_numbers(self):
        status, _, data = SERVER.signed(b"{}", query="maxResults=50")
        self.assertEqual(status, 200)
        self.assertIn("\uae40\ud76c\uc911".encode("utf-8"), data)   # Korean name, from chrKoreanMulti.dcm
        self.assertNotIn(b"\\u", data)
        doc = json.loads(data.decode("utf-8"))
        first = doc["imageSetsMetadataSummaries"][0]
        self.assertIsInstance(first["createdAt"], float)
        self.assertNotIn("sort", doc)

    def test_sort_is_echoed_when_given(self):
        body = {"sort": {"sortField": "createdAt", "sortOrder": "ASC"}}
        doc = json.loads(SERVER.signed(body, query="maxResults=2")[2])
        self.assertEqual(doc["sort"], {"sortField": "createdAt", "sortOrder": "ASC"})


class ConnectionTest(unittest.TestCase):

    def stats(self):
        return SERVER.emulator.control("GET", "/_local/stats")[1]

    def test_keep_alive_reuses_one_connection(self):
        before = self.stats()
        conn = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
        try:
            for _ in range(5):
                self.assertEqual(SERVER.signed(b"{}", query="maxResults=3", conn=conn)[0], 200)
        finally:
            conn.close()
        after = self.stats()
        self.assertEqual(after["requests"] - before["requests"], 5)
        self.assertEqual(after["apiConnections"] - before["apiConnections"], 1)
        self.assertGreaterEqual(after["connections"] - before["connections"], 2)  # + stats calls

    def test_several_connections_at_once(self):
        results, errors = [], []
        # One connection opened first and left idle must not block the others.
        idle = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
        idle.connect()

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
            try:
                for _ in range(10):
                    results.append(SERVER.signed(b"{}", query="maxResults=2", conn=conn)[0])
            except Exception as exc:  # collected and reported below
                errors.append(exc)
            finally:
                conn.close()
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        idle.close()
        self.assertEqual(errors, [])
        self.assertEqual(results, [200] * 60)


class FaultApiTest(unittest.TestCase):

    def setUp(self):
        SERVER.emulator.control("DELETE", "/_local/faults")

    def test_delay_drop_and_malformed(self):
        emu = SERVER.emulator
        emu.control("POST", "/_local/faults", [{"kind": "delay", "ms": 300}, {"kind": "drop"},
                                               {"kind": "malformed"}])
        self.assertEqual(len(emu.control("GET", "/_local/faults")[1]["rules"]), 3)
        start = time.time()
        self.assertEqual(SERVER.signed(b"{}")[0], 200)
        self.assertGreaterEqual(time.time() - start, 0.3)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            SERVER.signed(b"{}")
        status, _, data = SERVER.signed(b"{}")
        self.assertEqual(status, 200)
        with self.assertRaises(ValueError):
            json.loads(data)
        self.assertEqual(SERVER.signed(b"{}")[0], 200)

    def test_faults_wait_for_a_valid_signature(self):
        SERVER.emulator.control("POST", "/_local/faults", {"code": "ThrottlingException"})
        self.assertEqual(error_of(SERVER.signed({}, key="AKIDNOBODY"))[1], "UnrecognizedClientException")
        response = SERVER.signed({})
        self.assertEqual(error_of(response)[:2], (429, "ThrottlingException"))
        self.assertRegex(response[1]["x-amzn-errortype"], ERROR_TYPE)

    def test_bad_rules_are_refused(self):
        for rule in ({"code": "NoSuchException"}, {"code": "ThrottlingException", "times": 0},
                     {"kind": "explode"}, {"kind": "delay"}, {"code": "ThrottlingException", "x": 1}, "x"):
            with self.subTest(rule=rule):
                status, body = SERVER.emulator.control("POST", "/_local/faults", rule)
                self.assertEqual(status, 400)
                self.assertIn("Invalid fault rule", body["message"])

    def test_rules_nested_too_deeply_or_of_the_wrong_type_are_a_400_never_a_500(self):
        cases = ((b"[" * 100000, "nested too deeply"), (b"[" * 3000 + b"]" * 3000, "nested too deeply"),
                 (b'{"kind": "mix", "kinds": [{"kind": {}}]}', "'kind'"), (b'{"code": []}', "'code'"),
                 (b'{"kind": ["delay"]}', "'kind'"), (b"\xff{}", "not UTF-8"))
        for body, fragment in cases:
            with self.subTest(body=body[:40]):
                conn = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
                try:
                    conn.request("POST", "/_local/faults", body=body)
                    resp = conn.getresponse()
                    message = json.loads(resp.read().decode("utf-8"))["message"]
                finally:
                    conn.close()
                self.assertEqual(resp.status, 400, message)
                self.assertTrue(message.startswith("Invalid fault rule: "), message)
                self.assertIn(fragment, message)
        self.assertEqual(SERVER.emulator.control("GET", "/_local/faults")[1], {"rules": [], "standing": []})
        self.assertNotIn("internal error", SERVER.emulator.stderr_text())

    def test_a_fault_file_is_queued_at_start(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"rules": [{"code": "InternalServerException", "times": 2}]}, fh)
        try:
            with Emulator(SERVER.data_path, "--fault-file", fh.name) as emu:
                server = DemoServer()
                server.emulator, server.doc = emu, SERVER.doc
                for _ in range(2):
                    self.assertEqual(error_of(server.signed({}))[:2], (500, "InternalServerException"))
                self.assertEqual(server.signed({})[0], 200)
                self.assertEqual(emu.control("GET", "/_local/stats")[1]["faultsInjected"], 2)
        finally:
            os.unlink(fh.name)


class ProcessTest(unittest.TestCase):

    def test_first_line_log_lines_and_clean_shutdown(self):
        with Emulator(SERVER.data_path) as emu:
            self.assertRegex(emu.first_line, r"^listening on http://127\.0\.0\.1:\d+$")
            server = DemoServer()
            server.emulator, server.doc = emu, SERVER.doc
            patient = "2008-3"  # a DICOMPatientId of the demo data
            body = {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": patient}]}]}
            status, headers, data = server.signed(body, query="maxResults=1")
            self.assertEqual(status, 200)
            token_page = json.loads(server.signed(b"{}", query="maxResults=1")[2])
            server.signed(b"{}", query="maxResults=1&nextToken=" + quote(token_page["nextToken"], safe=""))
            self.assertEqual(emu.stop(), 0)
            log = emu.stderr_text()
        self.assertIn(DEFAULT_KEY, log)
        self.assertIn(DEFAULT_SECRET, log)  # the documented default credentials
        self.assertIn("POST %s 200 %s" % (SEARCH_PATH, headers["x-amzn-requestid"]), log)
        self.assertNotIn(patient, log)
        self.assertNotIn(token_page["nextToken"], log)
        self.assertNotIn(quote(token_page["nextToken"], safe=""), log)
        self.assertNotIn("maxResults", log)
        for s in SERVER.doc["imageSets"]:
            name = s["DICOMTags"].get("DICOMPatientName")
            if name:
                self.assertNotIn(name, log)

    def test_sigint_also_stops_cleanly(self):
        import signal
        with Emulator(SERVER.data_path) as emu:
            emu.proc.send_signal(signal.SIGINT)
            self.assertTrue(wait_for(lambda: emu.proc.poll() is not None, 10))
            self.assertEqual(emu.proc.returncode, 0)

    def test_a_broken_data_file_is_refused_at_start(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"datastoreId": "BAD", "imageSets": []}, fh)
        try:
            from .helpers import run_cli
            result = run_cli("serve", "--data", fh.name, "--port", "0", timeout=30)
            self.assertEqual(result.returncode, 2)
            self.assertIn("datastoreId", result.stderr)
            self.assertEqual(result.stdout, "")
        finally:
            os.unlink(fh.name)

    def test_a_port_outside_0_to_65535_is_a_usage_error_not_a_traceback(self):
        from .helpers import run_cli
        for command in (["serve", "--data", SERVER.data_path], ["serve-identity", "--issue", "K:S:T"]):
            for port in ("99999", "65536", "-1", "80x", ""):
                with self.subTest(command=command[0], port=port):
                    result = run_cli(*(command + ["--port", port]), timeout=30)
                    self.assertEqual(result.returncode, 2)
                    self.assertEqual(result.stdout, "")
                    self.assertIn("argument --port: must be an integer in 0..65535", result.stderr)
                    self.assertNotIn("Traceback", result.stderr)

    def test_help_documents_credentials_errors_and_faults(self):
        from .helpers import run_cli
        top = run_cli("--help").stdout
        self.assertIn(DEFAULT_KEY, top)
        self.assertIn(DEFAULT_SECRET, top)
        serve = run_cli("serve", "--help").stdout
        for text in ("MissingAuthenticationTokenException", "IncompleteSignatureException",
                     "UnrecognizedClientException", "InvalidSignatureException", "Signature expired",
                     "UnknownOperationException", "/_local/faults", "/_local/stats", "--fault-file",
                     "whole day", "--token-key TEXT", "KEY:SECRET:, is refused", "0..65535"):
            self.assertIn(text, serve)


if __name__ == "__main__":
    unittest.main()
