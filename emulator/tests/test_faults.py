"""Fault injection: the rules (parsing, triggers, the mix) and each kind on the wire,
the flags that add rules at start, and the https mode with its run-time test CA.

Wire checks use http.client (what a client sees: status, headers, how the body ends);
requests are signed by botocore's SigV4Auth, as in test_server_http.
"""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import unittest

from healthimaging_local.faults import (FaultInjector, FaultRuleError, MIX_DEFAULT_KINDS, parse_rule,
                                        parse_rules)

from .helpers import BIN, PYTHON, Emulator, run_cli, wait_for
from .server_fixture import DemoServer, error_of

SERVER = DemoServer()


def setUpModule():
    SERVER.start()


def tearDownModule():
    SERVER.stop()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def kinds_of(injector, count):
    """The kind of fault each of `count` requests gets ('-' for none)."""
    out = []
    for _ in range(count):
        action = injector.take()
        out.append(action.kind if action else "-")
    return out


def injector_with(*rules, clock=None):
    inj = FaultInjector(clock=clock or FakeClock())
    inj.add(parse_rules(list(rules)))
    return inj


class RuleTest(unittest.TestCase):

    def test_queued_rules_apply_oldest_first_each_for_its_times(self):
        inj = injector_with({"kind": "drop", "times": 2}, {"code": "ConflictException"})
        self.assertEqual(kinds_of(inj, 4), ["drop", "drop", "error", "-"])
        self.assertEqual(inj.counts(), (3, {"drop": 2, "error": 1}))

    def test_every_nth_request(self):
        inj = injector_with({"kind": "throttle", "every": 3})
        self.assertEqual(kinds_of(inj, 7), ["-", "-", "throttle", "-", "-", "throttle", "-"])

    def test_a_standing_rule_with_times_is_removed_after_that_many_faults(self):
        inj = injector_with({"kind": "internal", "every": 1, "times": 2})
        self.assertEqual(kinds_of(inj, 3), ["internal", "internal", "-"])
        self.assertEqual(inj.standing(), [])

    def test_rate_draws_from_a_seeded_generator(self):
        first = kinds_of(injector_with({"kind": "unavailable", "rate": 0.3, "seed": 42}), 1000)
        again = kinds_of(injector_with({"kind": "unavailable", "rate": 0.3, "seed": 42}), 1000)
        other = kinds_of(injector_with({"kind": "unavailable", "rate": 0.3, "seed": 43}), 1000)
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)
        self.assertTrue(240 <= first.count("unavailable") <= 360, first.count("unavailable"))

    def test_the_token_bucket_lets_the_burst_through_then_the_rate(self):
        clock = FakeClock()
        inj = injector_with({"kind": "throttle", "rps": 25, "burst": 50}, clock=clock)
        self.assertEqual(kinds_of(inj, 51), ["-"] * 50 + ["throttle"])
        clock.now += 0.05                       # 1.25 tokens (one every 1/25 s)
        self.assertEqual(kinds_of(inj, 2), ["-", "throttle"])
        clock.now += 1.0                        # 25 more
        self.assertEqual(kinds_of(inj, 26), ["-"] * 25 + ["throttle"])
        clock.now += 60                         # never more than the burst
        self.assertEqual(kinds_of(inj, 51), ["-"] * 50 + ["throttle"])

    def test_the_burst_defaults_to_twice_the_rate(self):
        self.assertEqual(parse_rule({"kind": "throttle", "rps": 25}).burst, 50)

    def test_the_oldest_queued_rule_wins_and_standing_rules_still_count_the_request(self):
        inj = injector_with({"kind": "throttle", "every": 2}, {"kind": "drop"})
        self.assertEqual(kinds_of(inj, 4), ["drop", "throttle", "-", "throttle"])

    def test_the_first_standing_rule_that_fires_applies(self):
        inj = injector_with({"kind": "internal", "every": 2}, {"kind": "reset", "every": 3})
        self.assertEqual(kinds_of(inj, 6), ["-", "internal", "reset", "internal", "-", "internal"])

    def test_a_mix_picks_every_kind_and_repeats_with_its_seed(self):
        rule = {"kind": "mix", "rate": 0.5, "seed": 7}
        first = kinds_of(injector_with(rule), 2000)
        self.assertEqual(first, kinds_of(injector_with(rule), 2000))
        self.assertEqual(set(first) - {"-"}, set(MIX_DEFAULT_KINDS))
        self.assertTrue(850 <= first.count("-") <= 1150, first.count("-"))

    def test_a_mix_takes_kind_names_and_rule_objects(self):
        inj = injector_with({"kind": "mix", "every": 1, "ms": 5,
                             "kinds": ["delay", {"kind": "delay", "ms": 900}, {"code": "AccessDeniedException"}]})
        seen = {}
        for _ in range(300):
            action = inj.take()
            seen[(action.kind, action.delay_ms, action.code)] = True
        self.assertEqual(set(seen), {("delay", 5, None), ("delay", 900, None),
                                     ("error", 0, "AccessDeniedException")})

    def test_descriptions_name_kind_trigger_and_uses_left(self):
        inj = injector_with({"kind": "throttle", "rps": 2.5, "burst": 4}, {"kind": "cut", "bytes": 9, "times": 3},
                            {"kind": "mix", "rate": 0.1, "seed": 3, "kinds": ["drop"]})
        self.assertEqual(inj.pending(), [{"kind": "cut", "bytes": 9, "times": 3}])
        self.assertEqual(inj.standing(), [
            {"kind": "throttle", "code": "ThrottlingException", "status": 429, "times": None, "rps": 2.5,
             "burst": 4},
            {"kind": "mix", "kinds": [{"kind": "drop"}], "seed": 3, "times": None, "rate": 0.1}])

    def test_bad_rules_are_refused_with_the_field_named(self):
        cases = [
            ({"kind": "explode"}, "'kind'"),
            ({"code": "NoSuchException"}, "'code'"),
            ({"kind": "delay"}, "'ms'"),
            ({"kind": "delay", "ms": -1}, "'ms'"),
            ({"kind": "cut", "bytes": "x"}, "'bytes'"),
            ({"kind": "content_type", "body": "xml"}, "'body'"),
            ({"kind": "drop", "times": 0}, "'times'"),
            ({"kind": "drop", "every": 0}, "'every'"),
            ({"kind": "drop", "rate": 0}, "'rate'"),
            ({"kind": "drop", "rate": 1.5}, "'rate'"),
            ({"kind": "drop", "rate": True}, "'rate'"),
            ({"kind": "throttle", "rps": 0}, "'rps'"),
            ({"kind": "throttle", "rps": 5, "burst": 0}, "'burst'"),
            ({"kind": "throttle", "burst": 5}, "'burst'"),
            ({"kind": "drop", "seed": 1}, "'seed'"),
            ({"kind": "drop", "every": 2, "rate": 0.5}, "at most one"),
            ({"kind": "drop", "ms": 5}, "unknown member 'ms'"),
            ({"kind": "mix", "kinds": []}, "'kinds'"),
            ({"kind": "mix", "kinds": ["error"]}, "'kinds'"),
            ({"kind": "mix", "kinds": [{"kind": "mix"}]}, "'kind'"),
            ({"kind": "mix", "kinds": [{"kind": "drop", "every": 2}]}, "unknown member 'every'"),
            ("drop", "JSON object"),
        ]
        for rule, fragment in cases:
            with self.subTest(rule=rule):
                with self.assertRaises(FaultRuleError) as ctx:
                    parse_rule(rule)
                self.assertIn(fragment, str(ctx.exception))


class WireTest(unittest.TestCase):
    """Each kind as a client sees it."""

    def setUp(self):
        SERVER.emulator.control("DELETE", "/_local/faults")

    def inject(self, rules):
        status, body = SERVER.emulator.control("POST", "/_local/faults", rules)
        self.assertEqual(status, 200, body)
        return body

    def clean(self):
        status, _, data = SERVER.signed(b"{}", query="maxResults=3")
        self.assertEqual(status, 200)
        return data

    def open_request(self, query="maxResults=3"):
        """Send a signed request on a new connection; return (connection, response)."""
        conn = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
        headers = SERVER.signed_headers(body=b"{}", query=query)
        conn.request("POST", "/datastore/%s/searchImageSets?%s" % (SERVER.doc["datastoreId"], query),
                     body=b"{}", headers=headers)
        return conn, conn.getresponse()

    def test_error_kinds_answer_aws_errors(self):
        for kind, status, code in (("throttle", 429, "ThrottlingException"),
                                   ("internal", 500, "InternalServerException"),
                                   ("unavailable", 503, "ServiceUnavailableException")):
            with self.subTest(kind=kind):
                self.inject({"kind": kind})
                response = SERVER.signed(b"{}")
                self.assertEqual(error_of(response)[:2], (status, code))
                self.assertTrue(response[1]["x-amzn-errortype"].startswith(code + ":"))
        self.inject({"code": "ServiceUnavailableException", "message": "later"})
        self.assertEqual(error_of(SERVER.signed(b"{}")), (503, "ServiceUnavailableException", "later"))

    def test_delay_answers_normally_but_late(self):
        clean = self.clean()
        self.inject({"kind": "delay", "ms": 400})
        start = time.monotonic()
        status, _, data = SERVER.signed(b"{}", query="maxResults=3")
        self.assertGreaterEqual(time.monotonic() - start, 0.4)
        self.assertEqual((status, data[:40]), (200, clean[:40]))

    def test_cut_sends_the_headers_and_part_of_the_body_then_closes(self):
        clean = self.clean()
        for rule, sent in (({"kind": "cut"}, len(clean) // 2), ({"kind": "cut", "bytes": 7}, 7)):
            with self.subTest(rule=rule):
                self.inject(rule)
                conn, resp = self.open_request()
                try:
                    self.assertEqual(resp.status, 200)
                    self.assertEqual(int(resp.getheader("Content-Length")), len(clean))
                    with self.assertRaises(http.client.IncompleteRead) as ctx:
                        resp.read()
                    self.assertEqual(ctx.exception.partial, clean[:sent])
                finally:
                    conn.close()

    def test_truncated_is_well_framed_but_not_json(self):
        clean = self.clean()
        self.inject({"kind": "truncated"})
        status, headers, data = SERVER.signed(b"{}", query="maxResults=3")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(data, clean[:len(clean) // 2])
        with self.assertRaises(ValueError):
            json.loads(data)

    def test_malformed_is_complete_but_not_json(self):
        clean = self.clean()
        self.inject({"kind": "malformed"})
        status, headers, data = SERVER.signed(b"{}", query="maxResults=3")
        self.assertEqual((status, headers["content-type"], len(data)), (200, "application/json", len(clean) + 1))
        with self.assertRaises(ValueError):
            json.loads(data)

    def test_content_type_is_text_html_with_a_page_or_the_json(self):
        clean = self.clean()
        self.inject([{"kind": "content_type"}, {"kind": "content_type", "body": "json"}])
        status, headers, data = SERVER.signed(b"{}", query="maxResults=3")
        self.assertEqual((status, headers["content-type"]), (200, "text/html; charset=utf-8"))
        self.assertTrue(data.startswith(b"<!DOCTYPE html>"))
        status, headers, data = SERVER.signed(b"{}", query="maxResults=3")
        self.assertEqual((status, headers["content-type"], data), (200, "text/html; charset=utf-8", clean))

    def test_drop_reads_the_request_and_closes_without_an_answer(self):
        self.inject({"kind": "drop"})
        before = SERVER.emulator.control("GET", "/_local/stats")[1]["requests"]
        with self.assertRaises(http.client.RemoteDisconnected):
            SERVER.signed(b"{}")
        self.assertEqual(SERVER.emulator.control("GET", "/_local/stats")[1]["requests"], before + 1)

    def test_reset_closes_with_a_tcp_reset(self):
        self.inject({"kind": "reset"})
        with self.assertRaises(ConnectionResetError):
            SERVER.signed(b"{}")

    def test_a_dropped_keep_alive_connection_is_closed_after_an_answered_request(self):
        conn = http.client.HTTPConnection("127.0.0.1", SERVER.emulator.port, timeout=10)
        try:
            self.assertEqual(SERVER.signed(b"{}", conn=conn)[0], 200)
            self.inject({"kind": "drop"})
            with self.assertRaises(http.client.RemoteDisconnected):
                SERVER.signed(b"{}", conn=conn)
        finally:
            conn.close()

    def test_standing_rules_and_stats_by_kind(self):
        before = SERVER.emulator.control("GET", "/_local/stats")[1]
        self.inject({"kind": "internal", "every": 2})
        statuses = [SERVER.signed(b"{}", query="maxResults=1")[0] for _ in range(6)]
        self.assertEqual(statuses, [200, 500] * 3)
        status, listed = SERVER.emulator.control("GET", "/_local/faults")
        self.assertEqual((listed["rules"], [r["kind"] for r in listed["standing"]]), ([], ["internal"]))
        after = SERVER.emulator.control("GET", "/_local/stats")[1]
        self.assertEqual(after["faultsByKind"]["internal"] - before["faultsByKind"].get("internal", 0), 3)
        self.assertEqual(SERVER.emulator.control("DELETE", "/_local/faults"), (200, {"cleared": 1}))
        self.assertEqual(SERVER.signed(b"{}", query="maxResults=1")[0], 200)

    def test_a_token_bucket_over_http(self):
        self.inject({"kind": "throttle", "rps": 1, "burst": 3})
        statuses = [SERVER.signed(b"{}", query="maxResults=1")[0] for _ in range(5)]
        self.assertEqual(statuses[:3], [200] * 3)
        self.assertIn(429, statuses[3:])

    def test_a_mix_faults_about_its_rate_with_every_kind_and_the_server_lives_on(self):
        before = SERVER.emulator.control("GET", "/_local/stats")[1]
        self.inject({"kind": "mix", "rate": 0.5, "seed": 11, "ms": 1})
        outcomes = {}
        for _ in range(200):
            try:
                status = SERVER.signed(b"{}", query="maxResults=1")[0]
            except (http.client.HTTPException, OSError) as exc:
                status = type(exc).__name__
            outcomes[status] = outcomes.get(status, 0) + 1
        SERVER.emulator.control("DELETE", "/_local/faults")
        after = SERVER.emulator.control("GET", "/_local/stats")[1]
        by_kind = {k: v - before["faultsByKind"].get(k, 0) for k, v in after["faultsByKind"].items()}
        injected = after["faultsInjected"] - before["faultsInjected"]
        self.assertEqual(sum(by_kind.values()), injected)
        self.assertTrue(70 <= injected <= 130, injected)
        self.assertEqual({k for k, v in by_kind.items() if v}, set(MIX_DEFAULT_KINDS))
        self.assertTrue({200, 429, 500, 503, "RemoteDisconnected", "ConnectionResetError",
                         "IncompleteRead"} <= set(outcomes), outcomes)
        self.assertEqual(SERVER.signed(b"{}", query="maxResults=1")[0], 200)
        log = SERVER.emulator.stderr_text()
        self.assertNotIn("internal error", log)
        self.assertNotIn("connection error", log)


class FlagsTest(unittest.TestCase):

    def test_flags_add_rules_at_start(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump([{"kind": "reset"}], fh)
        try:
            with Emulator(SERVER.data_path, "--fault-file", fh.name, "--fault", '{"kind": "drop", "times": 2}',
                          "--throttle-every", "4", "--rate-limit", "25:50", "--fault-mix", "0.1:7",
                          "--rate-limit", "3") as emu:
                status, listed = emu.control("GET", "/_local/faults")
        finally:
            os.unlink(fh.name)
        self.assertEqual(status, 200)
        self.assertEqual(listed["rules"], [{"kind": "reset", "times": 1}, {"kind": "drop", "times": 2}])
        standing = listed["standing"]
        self.assertEqual([(r["kind"], r.get("every"), r.get("rps"), r.get("burst"), r.get("rate"), r.get("seed"))
                          for r in standing],
                         [("throttle", 4, None, None, None, None), ("throttle", None, 25, 50, None, None),
                          ("mix", None, None, None, 0.1, 7), ("throttle", None, 3, 6, None, None)])

    def test_bad_flag_values_stop_the_start(self):
        for flag, value in (("--fault", "{"), ("--fault", '{"kind": "explode"}'), ("--throttle-every", "0"),
                            ("--rate-limit", "fast"), ("--fault-mix", "often")):
            with self.subTest(flag=flag, value=value):
                result = run_cli("serve", "--data", SERVER.data_path, "--port", "0", flag, value, timeout=30)
                self.assertEqual(result.returncode, 2)
                self.assertIn(flag, result.stderr)
                self.assertEqual(result.stdout, "")

    def test_help_documents_every_kind_trigger_flag_and_https(self):
        text = run_cli("serve", "--help").stdout
        for word in ("throttle", "internal", "unavailable", "delay", "cut", "truncated", "malformed",
                     "content_type", "drop", "reset", "mix", '"every"', '"rate"', '"rps"', '"burst"', '"seed"',
                     "--fault ", "--throttle-every", "--rate-limit", "--fault-mix", "--fault-file", "--https",
                     "--tls-dir", "CA certificate", "faultsByKind", "25 requests a second"):
            self.assertIn(word, text)


class HttpsEmulator:
    """`serve --https --tls-dir DIR` on a free port; the first line names the https URL."""

    def __init__(self, data_path, tls_dir, *extra):
        self.args = [PYTHON, BIN, "serve", "--data", data_path, "--port", "0", "--https",
                     "--tls-dir", tls_dir] + list(extra)
        self.tls_dir = tls_dir

    def __enter__(self):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.err)
        self.first_line = self.proc.stdout.readline().decode("utf-8").strip()
        if not self.first_line.startswith("listening on https://"):
            self.__exit__()
            raise RuntimeError("the https emulator did not start: %r" % self.first_line)
        self.port = int(self.first_line.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.err.seek(0)
        self.stderr = self.err.read().decode("utf-8", "replace")
        self.err.close()
        return False

    def get(self, path, context):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=context)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


class HttpsTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hil-tls-test-")
        self.tls_dir = os.path.join(self.tmp, "tls")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_https_with_the_ca_made_at_start(self):
        with HttpsEmulator(SERVER.data_path, self.tls_dir) as emu:
            ca = os.path.join(self.tls_dir, "ca.pem")
            trusted = ssl.create_default_context(cafile=ca)
            self.assertEqual(emu.get("/_local/stats", trusted)[0], 200)
            untrusted = ssl.create_default_context()
            with self.assertRaises(ssl.SSLCertVerificationError):
                emu.get("/_local/stats", untrusted)
            self.assertEqual(emu.get("/_local/stats", trusted)[1]["connections"], 3)   # it lives on
        self.assertRegex(emu.first_line, r"^listening on https://127\.0\.0\.1:\d+$")
        self.assertIn("CA certificate: %s\n" % ca, emu.stderr)
        self.assertIn("tls handshake failed", emu.stderr)
        self.assertNotIn("connection error", emu.stderr)

    def test_the_certificate_names_localhost_and_the_loopback_addresses(self):
        with HttpsEmulator(SERVER.data_path, self.tls_dir):
            pass
        text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                               os.path.join(self.tls_dir, "server.pem")], capture_output=True, text=True).stdout
        self.assertIn("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1", text)
        self.assertIn("TLS Web Server Authentication", text)

    def test_the_tls_dir_keeps_no_ca_key_and_is_reused(self):
        with HttpsEmulator(SERVER.data_path, self.tls_dir):
            pass
        self.assertEqual(sorted(os.listdir(self.tls_dir)), ["ca.pem", "server.key", "server.pem"])
        with open(os.path.join(self.tls_dir, "ca.pem"), "rb") as fh:
            first = fh.read()
        with HttpsEmulator(SERVER.data_path, self.tls_dir) as emu:
            trusted = ssl.create_default_context(cafile=os.path.join(self.tls_dir, "ca.pem"))
            self.assertEqual(emu.get("/_local/stats", trusted)[0], 200)
        with open(os.path.join(self.tls_dir, "ca.pem"), "rb") as fh:
            self.assertEqual(fh.read(), first)

    def test_without_tls_dir_the_files_go_to_a_temporary_folder_removed_at_exit(self):
        proc = subprocess.Popen([PYTHON, BIN, "serve", "--data", SERVER.data_path, "--port", "0", "--https"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertTrue(proc.stdout.readline().startswith(b"listening on https://"))
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
        ca = [line.split(": ", 1)[1] for line in err.decode().splitlines() if line.startswith("CA certificate: ")]
        self.assertEqual(len(ca), 1)
        self.assertTrue(wait_for(lambda: not os.path.exists(os.path.dirname(ca[0]))))


if __name__ == "__main__":
    unittest.main()
