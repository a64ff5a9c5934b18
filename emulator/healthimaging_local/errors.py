"""Service errors as the emulator returns them (restJson1 error shapes).

Every error carries an AWS error code, an HTTP status and a message. Messages are
written by the emulator itself: they never echo tag values, tokens or secrets.
"""

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
