"""Service errors as the emulator returns them (restJson1 error shapes).

Every error carries an AWS error code, an HTTP status and a message. Messages are
written by the emulator itself: they never echo tag values, tokens or secrets.
load_json reads any JSON input (request bodies, flags, files) with one set of failures.
"""

import json

# x-amzn-ErrorType suffixes, in the "Code:namespace-url" style real AWS front ends use
# (clients must keep only the part before the first ':').
MODELED_SUFFIX = "http://internal.amazon.com/coral/com.amazon.bigtop.runtime/"
FRONTEND_SUFFIX = "http://internal.amazon.com/coral/com.amazon.coral.service/"

# The six errors service-2.json models for SearchImageSets, with their statuses.
MODELED_ERRORS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ThrottlingException": 429,
    "InternalServerException": 500,
}

# Errors raised by the AWS front end (authentication, routing), not by the service.
FRONTEND_ERRORS = {
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403,
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
    "UnknownOperationException": 404,
}


class ServiceError(Exception):
    """An error response: code, HTTP status, message (safe to show anywhere)."""

    def __init__(self, code, message, status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is None:
            status = MODELED_ERRORS.get(code) or FRONTEND_ERRORS.get(code) or 400
        self.status = status

    @property
    def error_type(self):
        """The x-amzn-ErrorType header value for this error."""
        suffix = MODELED_SUFFIX if self.code in MODELED_ERRORS else FRONTEND_SUFFIX
        return "%s:%s" % (self.code, suffix)


def validation(message):
    """A ValidationException (400) with the given message."""
    return ServiceError("ValidationException", message)


class BadJson(ValueError):
    """Input that cannot be read as JSON. reason says why, never quoting the input:
    "not UTF-8", "not valid JSON" or "nested too deeply"."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def load_json(data, **options):
    """UTF-8 JSON bytes (or text) -> value; raises BadJson. options go to json.loads.

    json's decoder recurses once per nesting level, so input nested deeper than the
    interpreter's recursion limit (about 1000 levels) raises RecursionError: here that
    is bad input like any other (a 400 or a clear message), never a 500 or a traceback.
    A ValueError raised by a hook in options counts as "not valid JSON".
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError:
        raise BadJson("not UTF-8") from None
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise BadJson("nested too deeply") from None
    except ValueError:
        raise BadJson("not valid JSON") from None
