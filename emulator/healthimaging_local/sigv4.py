"""AWS Signature Version 4 verification (Authorization header form), from the spec.

The canonical request is rebuilt from what was received: the raw path (normalized
and URI-encoded per segment, the non-S3 rule), the raw query (decoded, strictly
re-encoded, sorted), the signed headers (trimmed, duplicates joined with ','), and
the SHA-256 of the body. Each stage is a function of its own so tests can check it
against the AWS test suite. Nothing here logs or returns a secret or a signing key.
"""

import calendar
import hashlib
import hmac
import re
import time
from urllib.parse import quote, unquote_to_bytes

from .errors import ServiceError

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_SKEW_SECONDS = 300
AMZ_DATE_RE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
UNRESERVED = "-_.~"  # plus ALPHA / DIGIT, which quote() never encodes

MSG_BAD_SIGNATURE = ("The request signature we calculated does not match the signature you "
                     "provided. Check your AWS Secret Access Key and signing method. Consult the "
                     "service documentation for details.")
MSG_UNKNOWN_KEY = "The security token included in the request is invalid."


def _err(code, message):
    return ServiceError(code, message)


class Credential:
    """A known access key: its secret and, optionally, the session token it requires."""

    def __init__(self, access_key_id, secret_access_key, session_token=None):
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token

    def __repr__(self):  # never show the secret
        return "Credential(%r, <secret>)" % self.access_key_id


# {==== Canonical request stages ------------------------------------------------


def _to_bytes(text):
    """Header/path text as the bytes that were on the wire (http.server decodes latin-1)."""
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def normalize_path(path):
    """Remove '.', '..' and empty segments (RFC 3986 dot removal plus '//' collapse).

    The result starts with '/', and ends with '/' when the input did and something
    is left.
    """
    if not path:
        return "/"
    out = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    result = "/" + "/".join(out)
    if path.endswith("/") and out:
        result += "/"
    return result


def canonical_uri(raw_path, normalize=True):
    """Canonical URI: the received path, normalized, each byte outside unreserved and
    '/' percent-encoded. The path arrives already percent-encoded once, so a '%' in it
    becomes '%25': the double encoding non-S3 services use."""
    text = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    if normalize:
        text = normalize_path(text)
    elif not text:
        text = "/"
    return quote(_to_bytes(text), safe="/" + UNRESERVED)


def decode_query_component(raw):
    """One query key or value: '+' means space (form decoding), %XX decoded to bytes."""
    if isinstance(raw, str):
        raw = _to_bytes(raw)
    return unquote_to_bytes(raw.replace(b"+", b" "))


def parse_query(raw_query):
    """Raw query -> list of (key bytes, value bytes), in received order."""
    if isinstance(raw_query, str):
        raw_query = _to_bytes(raw_query)
    pairs = []
    for part in (raw_query or b"").split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        pairs.append((decode_query_component(key), decode_query_component(value)))
    return pairs


def canonical_query(raw_query):
    """Canonical query string: decoded pairs re-encoded strictly, sorted by key then value."""
    encoded = [(quote(k, safe=UNRESERVED), quote(v, safe=UNRESERVED)) for k, v in parse_query(raw_query)]
    encoded.sort()
    return "&".join("%s=%s" % kv for kv in encoded)


def _trim(value):
    """Trim and collapse runs of spaces/tabs/line breaks (obs-fold included) to one space."""
    return re.sub(rb"[ \t\r\n]+", b" ", value).strip(b" ")


def canonical_headers(headers, signed):
    """'name:value\\n' for each signed name, in the order given; values trimmed, repeats
    joined with ','. headers: list of (name, value) as received. Raises KeyError(name)
    for a signed header that is absent."""
    grouped = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(_trim(_to_bytes(value)))
    lines = []
    for name in signed:
        if name not in grouped:
            raise KeyError(name)
        lines.append(name.encode("latin-1") + b":" + b",".join(grouped[name]) + b"\n")
    return b"".join(lines)


def canonical_request(method, raw_path, raw_query, headers, signed_headers, payload_hash,
                      normalize=True):
    """The canonical request, as bytes:
    METHOD \\n URI \\n QUERY \\n HEADERS(each ending \\n) \\n SIGNED;NAMES \\n PAYLOAD-HASH
    """
    signed = signed_headers.split(";")
    return b"\n".join([
        method.encode("ascii"),
        canonical_uri(raw_path, normalize).encode("ascii"),
        canonical_query(raw_query).encode("ascii"),
        canonical_headers(headers, signed),
        signed_headers.encode("latin-1"),
        payload_hash.encode("ascii"),
    ])


def string_to_sign(amz_date, scope, creq):
    """ALGORITHM \\n X-Amz-Date \\n scope \\n hex(SHA-256(canonical request))."""
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq).hexdigest()])


def signing_key(secret, date, region, service):
    """HMAC chain "AWS4"+secret -> date -> region -> service -> aws4_request."""
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(key, sts):
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()


# }====

# {==== Verification ----------------------------------------------------------


def parse_authorization(value):
    """Authorization header -> dict(access_key, date, region, service, terminator,
    signed_headers, signature). Raises IncompleteSignatureException."""
    value = value.strip()
    algo, _, rest = value.partition(" ")
    if algo != ALGORITHM:
        raise _err("IncompleteSignatureException",
                   "Unsupported Authorization algorithm: only %s is accepted." % ALGORITHM)
    parts = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or key in parts or key not in ("Credential", "SignedHeaders", "Signature"):
            raise _err("IncompleteSignatureException",
                       "Authorization header is malformed: expected Credential=..., "
                       "SignedHeaders=..., Signature=... once each.")
        parts[key] = val.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not parts.get(k)]
    if missing:
        raise _err("IncompleteSignatureException",
                   " ".join("Authorization header requires '%s' parameter." % k for k in missing))
    cred = parts["Credential"].split("/")
    if len(cred) != 5 or not all(cred):
        raise _err("IncompleteSignatureException",
                   "Credential must have the form <access key>/<date>/<region>/<service>/aws4_request.")
    if not re.fullmatch(r"[0-9a-f]{64}", parts["Signature"]):
        raise _err("IncompleteSignatureException", "Signature must be 64 lowercase hex digits.")
    signed = parts["SignedHeaders"]
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+(;[!#$%&'*+.^_`|~0-9a-z-]+)*", signed):
        raise _err("IncompleteSignatureException",
                   "SignedHeaders must be lowercase header names separated by ';'.")
    return {
        "access_key": cred[0], "date": cred[1], "region": cred[2], "service": cred[3],
        "terminator": cred[4], "signed_headers": signed, "signature": parts["Signature"],
    }


def _fmt(epoch):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def _header(headers, name):
    values = [v for k, v in headers if k.lower() == name]
    return values


class Verified:
    """What a successful verification established."""

    def __init__(self, access_key_id, region, canonical_request, string_to_sign):
        self.access_key_id = access_key_id
        self.region = region
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign


def verify(method, raw_path, raw_query, headers, body, credentials, now=None,
           service="medical-imaging", normalize=True, max_skew=MAX_SKEW_SECONDS):
    """Verify a request signed with an Authorization header; return Verified.

    headers: list of (name, value) as received; credentials: dict access key ->
    Credential. Raises ServiceError with the codes AWS JSON/REST front ends use
    (all 403): MissingAuthenticationTokenException, IncompleteSignatureException,
    InvalidSignatureException, UnrecognizedClientException.
    """
    auth = _header(headers, "authorization")
    if not auth:
        raise _err("MissingAuthenticationTokenException", "Missing Authentication Token")
    if len(auth) > 1:
        raise _err("IncompleteSignatureException", "Only one Authorization header is allowed.")
    parsed = parse_authorization(auth[0])

    dates = _header(headers, "x-amz-date")
    if len(dates) != 1:
        raise _err("IncompleteSignatureException",
                   "Authorization header requires existence of an 'X-Amz-Date' header "
                   "(a 'Date' header alone is not accepted by this emulator).")
    amz_date = dates[0].strip()
    match = AMZ_DATE_RE.fullmatch(amz_date)
    if not match:
        raise _err("IncompleteSignatureException",
                   "X-Amz-Date must be in ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z'.")
    try:
        stamp = time.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise _err("IncompleteSignatureException", "X-Amz-Date is not a valid date.") from None
    request_epoch = calendar.timegm(stamp)

    if parsed["terminator"] != TERMINATOR:
        raise _err("InvalidSignatureException",
                   "Credential should be scoped with a valid terminator: 'aws4_request'.")
    if parsed["service"] != service:
        raise _err("InvalidSignatureException",
                   "Credential should be scoped to correct service: '%s'." % service)
    if parsed["date"] != amz_date[:8]:
        raise _err("InvalidSignatureException",
                   "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                   "date from HTTP: '%s' != '%s'." % (_safe(parsed["date"]), amz_date[:8]))
    if not re.fullmatch(r"[a-z0-9-]{1,64}", parsed["region"]):
        raise _err("InvalidSignatureException", "Credential should be scoped to a valid region.")

    signed = parsed["signed_headers"].split(";")
    if "host" not in signed:
        raise _err("InvalidSignatureException",
                   "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-date" not in signed:
        raise _err("InvalidSignatureException",
                   "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
    tokens = _header(headers, "x-amz-security-token")
    if tokens and "x-amz-security-token" not in signed:
        raise _err("InvalidSignatureException",
                   "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization "
                   "when it is present.")

    cred = credentials.get(parsed["access_key"])
    if cred is None:
        raise _err("UnrecognizedClientException", MSG_UNKNOWN_KEY)
    presented = tokens[0].strip() if tokens else None
    if cred.session_token is None:
        token_ok = presented is None
    else:
        token_ok = presented is not None and hmac.compare_digest(
            cred.session_token.encode("utf-8"), _to_bytes(presented))
    if not token_ok:
        raise _err("UnrecognizedClientException", MSG_UNKNOWN_KEY)

    now = time.time() if now is None else now
    if request_epoch < now - max_skew:
        raise _err("InvalidSignatureException",
                   "Signature expired: %s is now earlier than %s (%s - 5 min.)"
                   % (amz_date, _fmt(now - max_skew), _fmt(now)))
    if request_epoch > now + max_skew:
        raise _err("InvalidSignatureException",
                   "Signature not yet current: %s is still later than %s (%s + 5 min.)"
                   % (amz_date, _fmt(now + max_skew), _fmt(now)))

    payload_hash = hashlib.sha256(body or b"").hexdigest()
    try:
        creq = canonical_request(method, raw_path, raw_query, headers, parsed["signed_headers"],
                                 payload_hash, normalize)
    except KeyError as missing:
        raise _err("InvalidSignatureException",
                   "Signed header '%s' is missing from the request." % _safe(missing.args[0])) from None
    scope = "/".join([parsed["date"], parsed["region"], parsed["service"], TERMINATOR])
    sts = string_to_sign(amz_date, scope, creq)
    key = signing_key(cred.secret_access_key, parsed["date"], parsed["region"], parsed["service"])
    expected = signature(key, sts)
    del key
    if not hmac.compare_digest(expected, parsed["signature"]):
        raise _err("InvalidSignatureException", MSG_BAD_SIGNATURE)
    return Verified(cred.access_key_id, parsed["region"], creq, sts)


def _safe(text):
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text))[:64]


# }====
