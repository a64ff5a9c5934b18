"""JSON the emulator reads from outside besides SearchImageSets bodies and fault rules
(test_server_http.py has those): the data file, --fault-file and --fault, and
serve-identity's control body. Input nested too deeply (json's decoder recurses once
per level) must be a clear refusal: exit 2 with one message, or an HTTP 400; never a
traceback, a 500 or a connection closed without an answer.
"""

import json
import os
import shutil
import tempfile
import unittest
import urllib.error
import urllib.request

from .helpers import DATASTORE, run_cli
from .test_aws_identity import Identity

DEEP = "[" * 100000


class JsonInputTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hil-json-")
        self.data = os.path.join(self.tmp, "data.json")
        with open(self.data, "w", encoding="utf-8") as fh:
            json.dump({"datastoreId": DATASTORE, "imageSets": []}, fh)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _file(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    def assert_refused(self, result, *fragments):
        self.assertEqual(result.returncode, 2, result.stderr[-300:])
        self.assertEqual(result.stdout, "")
        self.assertNotIn("Traceback", result.stderr)
        for fragment in fragments:
            self.assertIn(fragment, result.stderr)

    def test_a_data_file_nested_too_deeply_is_refused_at_start(self):
        result = run_cli("serve", "--data", self._file("deep.json", DEEP), "--port", "0", timeout=30)
        self.assert_refused(result, "healthimaging-local: the data file is nested too deeply")

    def test_a_fault_file_or_flag_nested_too_deeply_is_refused_at_start(self):
        result = run_cli("serve", "--data", self.data, "--port", "0",
                         "--fault-file", self._file("faults.json", DEEP), timeout=30)
        self.assert_refused(result, "--fault-file: cannot read it as JSON rules (it is nested too deeply)")
        result = run_cli("serve", "--data", self.data, "--port", "0", "--fault", DEEP[:5000], timeout=30)
        self.assert_refused(result, "argument --fault: ", "nested too deeply")

    def test_the_identity_control_body_nested_too_deeply_is_a_400(self):
        with Identity() as idn:
            body = DEEP[:60000].encode()   # under its 64 KiB body cap
            request = urllib.request.Request(idn.url + "/_identity/fail", data=body, method="POST")
            with self.assertRaises(urllib.error.HTTPError) as ctx:
                urllib.request.urlopen(request, timeout=10)
            self.assertEqual(ctx.exception.code, 400)
            ctx.exception.close()
            with urllib.request.urlopen(idn.url + "/_identity/log", timeout=10) as reply:
                self.assertEqual(reply.status, 200)


if __name__ == "__main__":
    unittest.main()
