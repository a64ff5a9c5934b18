"""The https mode's certificates: a test CA made at run time with the openssl CLI.

`serve --https` needs a server certificate that clients can verify: this module
makes a throw-away CA and a certificate for localhost, 127.0.0.1 and ::1 signed by
it (ECDSA P-256, valid for 7 days). The CA's private key is deleted once it has
signed, so the CA certificate trusts nothing else. Never use these outside tests.
"""

import os
import shutil
import ssl
import subprocess
import tempfile

CA_CERT = "ca.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
DAYS = "7"

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
"""


class TlsSetupError(Exception):
    """The certificates cannot be made or loaded; the message says which step failed."""


def _openssl(args, cwd):
    try:
        result = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise TlsSetupError("the openssl command is missing (apt-get install -y openssl)") from None
    except subprocess.TimeoutExpired:
        raise TlsSetupError("openssl %s timed out" % args[0]) from None
    if result.returncode != 0:
        last = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise TlsSetupError("openssl %s failed: %s" % (args[0], last[0][:200]))


def make_certificates(directory):
    """Writes ca.pem, server.pem and server.key into directory (made if missing)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    work = tempfile.mkdtemp(prefix="hil-ca-", dir=directory)
    try:
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(["req", "-x509"] + ec + [
            "-keyout", "ca.key", "-out", "ca.pem", "-days", DAYS,
            "-subj", "/CN=healthimaging-local test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"], work)
        _openssl(["req", "-new"] + ec + [
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], work)
        with open(os.path.join(work, "server.ext"), "w") as fh:
            fh.write(SERVER_EXTENSIONS)
        _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-set_serial", "0x%s" % os.urandom(8).hex(), "-days", DAYS,
                  "-extfile", "server.ext", "-out", "server.pem"], work)
        for name in (CA_CERT, SERVER_CERT, SERVER_KEY):
            os.replace(os.path.join(work, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)   # the CA key goes with it


def server_context(directory):
    """An SSLContext serving the certificate in directory, made first when absent.

    Returns (context, path of the CA certificate).
    """
    paths = [os.path.join(directory, n) for n in (CA_CERT, SERVER_CERT, SERVER_KEY)]
    if not all(os.path.isfile(p) for p in paths):
        make_certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(paths[1], paths[2])
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError("cannot load %s: %s" % (paths[1], type(exc).__name__)) from None
    return context, os.path.abspath(paths[0])
