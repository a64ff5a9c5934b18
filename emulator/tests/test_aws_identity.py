"""`serve-identity` against botocore, the independent peer: botocore's own STS client,
InstanceMetadataFetcher and ContainerMetadataFetcher must get from it exactly the
credentials it was told to issue, and be refused where AWS would refuse them.
"""

import json
import os
import subprocess
import tempfile
import unittest
from unittest import mock
import urllib.error
import urllib.request
import warnings

from .helpers import BIN, PYTHON

try:
    import botocore.session
    from botocore.exceptions import ClientError
    from botocore.utils import ContainerMetadataFetcher, InstanceMetadataFetcher
    HAVE_BOTO = True
except ImportError:  # pragma: no cover
    HAVE_BOTO = False

SOURCE = ("AKIDSOURCEPEER000001", "source-peer-secret")
ISSUED = [("ASIAPEERISSUED000001", "peer-secret-1", "peer-token-1"),
          ("ASIAPEERISSUED000002", "peer-secret-2", "peer-token-2")]
ROLE = "arn:aws:iam::123456789012:role/peer"


class Identity:
    """A `serve-identity` process on a free port."""

    def __init__(self, *extra):
        args = [PYTHON, BIN, "serve-identity", "--port", "0",
                "--source-credentials", ":".join(SOURCE), "--web-identity-token", "peer-web-token",
                "--container-token", "peer-container-token", "--role-arn", ROLE]
        for cred in ISSUED:
            args += ["--issue", ":".join(cred)]
        self.args = args + list(extra)

    def __enter__(self):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening on http://"):
            self.__exit__()
            raise RuntimeError("serve-identity did not start: %r" % line)
        self.url = line.split(" ", 2)[2]
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.err.seek(0)
        self.log = self.err.read().decode("utf-8", "replace")
        self.err.close()

    def events(self):
        with urllib.request.urlopen(self.url + "/_identity/log") as r:
            return json.loads(r.read())["events"]


def sts(url, creds=None):
    session = botocore.session.Session()
    session.set_credentials(*(creds or SOURCE))
    return session.create_client("sts", region_name="us-east-1", endpoint_url=url)


@unittest.skipUnless(HAVE_BOTO, "python3-botocore is not installed: serve-identity is not checked "
                     "against botocore (apt-get install -y python3-botocore)")
class ServeIdentityTest(unittest.TestCase):
    def setUp(self):
        # botocore's pooled connections are left for the garbage collector
        warnings.simplefilter("ignore", ResourceWarning)

    def test_assume_role_signed_by_botocore_issues_the_given_credentials_in_order(self):
        with Identity() as idn:
            got = sts(idn.url).assume_role(RoleArn=ROLE, RoleSessionName="peer-session",
                                           DurationSeconds=900, ExternalId="x-1")["Credentials"]
            self.assertEqual(ISSUED[0], (got["AccessKeyId"], got["SecretAccessKey"], got["SessionToken"]))
            chained = sts(idn.url, ISSUED[0]).assume_role(RoleArn=ROLE, RoleSessionName="chained")
            self.assertEqual(ISSUED[1][0], chained["Credentials"]["AccessKeyId"])
            events = idn.events()
            self.assertEqual([SOURCE[0], ISSUED[0][0]], [e["signedBy"] for e in events])
            self.assertEqual(("peer-session", "900", "x-1"),
                             (events[0]["roleSessionName"], events[0]["durationSeconds"], events[0]["externalId"]))
        for secret in (SOURCE[1], ISSUED[0][1], ISSUED[0][2], "peer-web-token"):
            self.assertNotIn(secret, idn.log)

    def test_assume_role_refuses_a_bad_signature_an_unknown_key_and_a_role_not_listed(self):
        with Identity() as idn:
            cases = [((SOURCE[0], "wrong-secret"), ROLE, "SignatureDoesNotMatch"),
                     (("AKIDUNKNOWN000000001", "x"), ROLE, "InvalidClientTokenId"),
                     (SOURCE, "arn:aws:iam::123456789012:role/other", "AccessDenied")]
            for creds, role, code in cases:
                with self.assertRaises(ClientError) as ctx:
                    sts(idn.url, creds).assume_role(RoleArn=role, RoleSessionName="s1")
                self.assertEqual(code, ctx.exception.response["Error"]["Code"])

    def test_web_identity_is_unsigned_and_checks_the_token(self):
        with Identity() as idn:
            client = sts(idn.url)
            got = client.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="ci",
                                                       WebIdentityToken="peer-web-token")
            self.assertEqual(ISSUED[0][0], got["Credentials"]["AccessKeyId"])
            with self.assertRaises(ClientError) as ctx:
                client.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="ci", WebIdentityToken="not-the-token")
            self.assertEqual("InvalidIdentityToken", ctx.exception.response["Error"]["Code"])

    def test_botocore_reads_instance_metadata_with_imdsv2_and_falls_back_to_v1(self):
        # The Makefile disables IMDS for everything it runs (no request may
        # reach 169.254.169.254); botocore's fetcher honours that, so this
        # test, whose IMDS is the loopback stand-in, turns it back on.
        with mock.patch.dict(os.environ, {"AWS_EC2_METADATA_DISABLED": "false"}):
            self._imds_modes()

    def _imds_modes(self):
        for mode, token in (("v2-only", True), ("v1-only", False)):
            with Identity("--imds-mode", mode) as idn:
                got = InstanceMetadataFetcher(timeout=2, base_url=idn.url + "/").retrieve_iam_role_credentials()
                self.assertEqual(ISSUED[0], (got["access_key"], got["secret_key"], got["token"]))
                gets = [e for e in idn.events() if e["kind"] == "imds-get"]
                self.assertEqual([token, token], [e["token"] for e in gets], mode)

    def test_botocore_reads_container_credentials_with_the_authorization_token(self):
        with Identity() as idn:
            fetcher = ContainerMetadataFetcher()
            got = fetcher.retrieve_full_uri(idn.url + "/container/creds",
                                            headers={"Authorization": "peer-container-token"})
            self.assertEqual(ISSUED[0], (got["AccessKeyId"], got["SecretAccessKey"], got["Token"]))
            self.assertRegex(got["Expiration"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            req = urllib.request.Request(idn.url + "/container/creds", headers={"Authorization": "nope"})
            with self.assertRaises(urllib.error.HTTPError) as ctx:
                urllib.request.urlopen(req)
            self.assertEqual(401, ctx.exception.code)


if __name__ == "__main__":  # pragma: no cover
    unittest.main()
