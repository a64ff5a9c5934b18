"""Faults on demand: rules that make the next SearchImageSets requests misbehave.

A rule is a JSON object; rules queue up in order and each is used `times` times
(the first rule in the queue applies to the next request, after SigV4 succeeds).
Kinds:
  error      {"code": C, "times": N, "message"?: M, "status"?: S}  (kind optional)
  delay      {"kind": "delay", "ms": D, "times": N}   answer normally after D ms
  drop       {"kind": "drop", "times": N}             close the connection, no response
  malformed  {"kind": "malformed", "times": N}        200 with a truncated JSON body
New kinds plug in as a parser in RULE_PARSERS plus a branch in the server's _apply_fault.
"""

import threading

from .errors import MODELED_ERRORS

FAULT_ERRORS = dict(MODELED_ERRORS)
FAULT_ERRORS.update({
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
})

DEFAULT_MESSAGES = {
    "ValidationException": "Injected fault: the input fails to satisfy the constraints set by the service.",
    "AccessDeniedException": "Injected fault: User is not authorized to perform this action.",
    "ResourceNotFoundException": "Injected fault: the requested resource does not exist.",
    "ConflictException": "Injected fault: the resource is in a conflicting state.",
    "ThrottlingException": "Rate exceeded",
    "InternalServerException": "Injected fault: an internal error occurred. Retry the request.",
    "InvalidSignatureException": "The request signature we calculated does not match the signature "
                                 "you provided. (injected fault)",
    "UnrecognizedClientException": "The security token included in the request is invalid. "
                                   "(injected fault)",
}

MAX_TIMES = 1000000
MAX_DELAY_MS = 600000


class FaultRuleError(ValueError):
    """A rule that cannot be used; the message names the field."""


class FaultRule:
    """One queued fault: kind plus its parameters, and how many uses are left."""

    def __init__(self, kind, times, **params):
        self.kind = kind
        self.times = times
        self.code = params.get("code")
        self.status = params.get("status")
        self.message = params.get("message")
        self.delay_ms = params.get("delay_ms", 0)

    def describe(self):
        out = {"kind": self.kind, "times": self.times}
        if self.kind == "error":
            out.update({"code": self.code, "status": self.status})
        if self.kind == "delay":
            out["ms"] = self.delay_ms
        return out


def _int_field(obj, name, default, low, high):
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FaultRuleError("'%s' must be an integer in %d..%d" % (name, low, high))
    return value


def _parse_error(obj, times):
    code = obj.get("code")
    if code not in FAULT_ERRORS:
        raise FaultRuleError("'code' must be one of %s" % ", ".join(sorted(FAULT_ERRORS)))
    status = _int_field(obj, "status", FAULT_ERRORS[code], 100, 599)
    message = obj.get("message", DEFAULT_MESSAGES[code])
    if not isinstance(message, str) or len(message) > 2000:
        raise FaultRuleError("'message' must be a string of at most 2000 characters")
    return FaultRule("error", times, code=code, status=status, message=message)


def _parse_delay(obj, times):
    return FaultRule("delay", times, delay_ms=_int_field(obj, "ms", None, 0, MAX_DELAY_MS))


RULE_PARSERS = {
    "error": (_parse_error, ("kind", "code", "times", "message", "status")),
    "delay": (_parse_delay, ("kind", "ms", "times")),
    "drop": (lambda obj, times: FaultRule("drop", times), ("kind", "times")),
    "malformed": (lambda obj, times: FaultRule("malformed", times), ("kind", "times")),
}


def parse_rule(obj):
    """A JSON object -> FaultRule, or raise FaultRuleError."""
    if not isinstance(obj, dict):
        raise FaultRuleError("a fault rule must be a JSON object")
    kind = obj.get("kind", "error")
    if kind not in RULE_PARSERS:
        raise FaultRuleError("'kind' must be one of %s" % ", ".join(sorted(RULE_PARSERS)))
    parser, allowed = RULE_PARSERS[kind]
    for key in obj:
        if key not in allowed:
            raise FaultRuleError("unknown member '%s' for a %s fault"
                                 % ("".join(c for c in str(key)[:40] if c.isprintable()), kind))
    times = _int_field(obj, "times", 1, 1, MAX_TIMES)
    return parser(obj, times)


def parse_rules(doc):
    """A rule, a list of rules, or {"rules": [...]} -> list of FaultRule."""
    if isinstance(doc, dict) and "rules" in doc and len(doc) == 1:
        doc = doc["rules"]
    items = doc if isinstance(doc, list) else [doc]
    return [parse_rule(item) for item in items]


class FaultInjector:
    """The queue of rules, shared by all connection threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []
        self.injected = 0

    def add(self, rules):
        with self._lock:
            self._rules.extend(rules)
            return len(self._rules)

    def clear(self):
        with self._lock:
            count = len(self._rules)
            self._rules = []
            return count

    def pending(self):
        with self._lock:
            return [r.describe() for r in self._rules]

    def take(self):
        """The rule for this request (one use consumed), or None."""
        with self._lock:
            if not self._rules:
                return None
            rule = self._rules[0]
            rule.times -= 1
            if rule.times <= 0:
                self._rules.pop(0)
            self.injected += 1
            return rule
