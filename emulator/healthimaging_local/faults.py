"""Faults on purpose: rules that make SearchImageSets requests misbehave, for tests.

A rule says what happens (its kind) and when (its trigger). Rules apply only to
SearchImageSets requests whose signature checked out, never to /_local.
Kinds (and their members; "kind" may be left out for an error):
  error        code, status?, message?   an AWS error answer (codes: FAULT_ERRORS)
  throttle     message?                  429 ThrottlingException "Rate exceeded"
  internal     message?                  500 InternalServerException
  unavailable  message?                  503 ServiceUnavailableException
  delay        ms                        wait, then answer normally
  cut          bytes?                    the headers (full Content-Length) and only part of
                                         the body (default: half), then close
  truncated                              200, the page's JSON cut in half (Content-Length of
                                         what is sent)
  malformed                              200, the whole page with a stray comma: not JSON
  content_type body?                     200 with Content-Type text/html: an HTML page
                                         (body "html", the default) or the page's JSON ("json")
  drop                                   read the request, close without answering (FIN)
  reset                                  read the request, close with a TCP reset (RST)
  mix          seed?, kinds?, ms?        one of kinds at random (names or rules without a
                                         trigger; default: every kind above but error; ms:
                                         the delay of a picked "delay", default 200)
Triggers:
  (none)           queued: the next `times` requests (default 1); the oldest rule first
  every: N         standing: every Nth request from now on
  rate: P          standing: each request with probability P (random.Random(seed), seed 0)
  rps: R, burst: B standing: a token bucket of B tokens (default 2R) refilled at R a
                   second; fires for a request that finds it empty (the service allows
                   25 requests a second with a burst of 50: {"kind": "throttle",
                   "rps": 25, "burst": 50})
  times: N         on a standing rule: removed after N faults (default: never)
Per request: every standing rule sees it (counter, random draw, bucket token); the
queue's oldest rule applies if there is one, else the first standing rule that fired.
"""

import random
import threading
import time

from .errors import MODELED_ERRORS

FAULT_ERRORS = dict(MODELED_ERRORS)
FAULT_ERRORS.update({
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
    "ServiceUnavailableException": 503,
})

DEFAULT_MESSAGES = {
    "ValidationException": "Injected fault: the input fails to satisfy the constraints set by the service.",
    "AccessDeniedException": "Injected fault: User is not authorized to perform this action.",
    "ResourceNotFoundException": "Injected fault: the requested resource does not exist.",
    "ConflictException": "Injected fault: the resource is in a conflicting state.",
    "ThrottlingException": "Rate exceeded",
    "InternalServerException": "Injected fault: an internal error occurred. Retry the request.",
    "ServiceUnavailableException": "Injected fault: the service is unavailable. Retry the request.",
    "InvalidSignatureException": "The request signature we calculated does not match the signature "
                                 "you provided. (injected fault)",
    "UnrecognizedClientException": "The security token included in the request is invalid. "
                                   "(injected fault)",
}

# Kinds that are an error answer with a fixed code.
ERROR_SHORTCUTS = {
    "throttle": "ThrottlingException",
    "internal": "InternalServerException",
    "unavailable": "ServiceUnavailableException",
}

# Kinds that act before the answer is computed, and those that mangle the answer.
BEFORE_KINDS = ("error", "throttle", "internal", "unavailable", "delay", "drop", "reset")
AFTER_KINDS = ("cut", "truncated", "malformed", "content_type")
MIX_DEFAULT_KINDS = ("throttle", "internal", "unavailable", "delay", "cut", "truncated",
                     "malformed", "content_type", "drop", "reset")
MIX_DEFAULT_DELAY_MS = 200

MAX_TIMES = 1000000
MAX_DELAY_MS = 600000
MAX_RPS = 1000000
TRIGGER_KEYS = ("times", "every", "rate", "seed", "rps", "burst")


class FaultRuleError(ValueError):
    """A rule that cannot be used; the message names the field."""


class Action:
    """What one fault does: a kind and its parameters."""

    def __init__(self, kind, code=None, status=None, message=None, delay_ms=0, cut_bytes=None,
                 body="html"):
        self.kind = kind
        self.code = code
        self.status = status
        self.message = message
        self.delay_ms = delay_ms
        self.cut_bytes = cut_bytes
        self.body = body

    @property
    def before(self):
        """True when the fault acts before the answer is computed."""
        return self.kind in BEFORE_KINDS

    def describe(self):
        out = {"kind": self.kind}
        if self.kind in ("error",) + tuple(ERROR_SHORTCUTS):
            out.update({"code": self.code, "status": self.status})
        elif self.kind == "delay":
            out["ms"] = self.delay_ms
        elif self.kind == "cut" and self.cut_bytes is not None:
            out["bytes"] = self.cut_bytes
        elif self.kind == "content_type":
            out["body"] = self.body
        return out


class FaultRule:
    """One rule: the action (or, for mix, the actions to pick from) and its trigger."""

    def __init__(self, actions, trigger, times, mix=False, seed=0, every=None, rate=None,
                 rps=None, burst=None):
        self.actions = actions
        self.mix = mix
        self.trigger = trigger          # "queued", "every", "rate" or "bucket"
        self.times = times              # uses left; None: unlimited (standing rules only)
        self.every = every
        self.rate = rate
        self.rps = rps
        self.burst = burst
        self.seed = seed
        self._rng = random.Random(seed)
        self._count = 0
        self._tokens = float(burst) if burst is not None else 0.0
        self._last = None

    @property
    def standing(self):
        return self.trigger != "queued"

    def observe(self, now):
        """A request went by: advance the trigger; True when the rule fires for it."""
        if self.trigger == "every":
            self._count += 1
            return self._count % self.every == 0
        if self.trigger == "rate":
            return self._rng.random() < self.rate
        if self.trigger == "bucket":
            if self._last is not None:
                self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rps)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return False
            return True
        return False

    def action(self):
        """The action of this use (a random pick for a mix)."""
        if self.mix:
            return self._rng.choice(self.actions)
        return self.actions[0]

    def describe(self):
        if self.mix:
            out = {"kind": "mix", "kinds": [a.describe() for a in self.actions], "seed": self.seed}
        else:
            out = self.actions[0].describe()
        out["times"] = self.times
        if self.trigger == "every":
            out["every"] = self.every
        elif self.trigger == "rate":
            out.update({"rate": self.rate, "seed": self.seed})
        elif self.trigger == "bucket":
            out.update({"rps": self.rps, "burst": self.burst})
        return out


def _printable(key):
    return "".join(c for c in str(key)[:40] if c.isprintable())


def _int_field(obj, name, default, low, high):
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FaultRuleError("'%s' must be an integer in %d..%d" % (name, low, high))
    return value


def _number_field(obj, name, low, high, low_open=False):
    value = obj.get(name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value <= high
    ok = ok and (value > low if low_open else value >= low)
    if not ok:
        raise FaultRuleError("'%s' must be a number in %s%s..%s" % (name, "(" if low_open else "", low, high))
    return value


def _message(obj, code):
    message = obj.get("message", DEFAULT_MESSAGES[code])
    if not isinstance(message, str) or len(message) > 2000:
        raise FaultRuleError("'message' must be a string of at most 2000 characters")
    return message


def _parse_error(obj):
    code = obj.get("code")
    # isinstance first: a list or object is no dict key (TypeError, a 500).
    if not isinstance(code, str) or code not in FAULT_ERRORS:
        raise FaultRuleError("'code' must be one of %s" % ", ".join(sorted(FAULT_ERRORS)))
    status = _int_field(obj, "status", FAULT_ERRORS[code], 100, 599)
    return Action("error", code=code, status=status, message=_message(obj, code))


def _shortcut(kind):
    def parse(obj):
        code = ERROR_SHORTCUTS[kind]
        return Action(kind, code=code, status=FAULT_ERRORS[code], message=_message(obj, code))
    return parse


def _parse_delay(obj):
    return Action("delay", delay_ms=_int_field(obj, "ms", None, 0, MAX_DELAY_MS))


def _parse_cut(obj):
    cut = None if obj.get("bytes") is None else _int_field(obj, "bytes", None, 0, 1 << 30)
    return Action("cut", cut_bytes=cut)


def _parse_content_type(obj):
    body = obj.get("body", "html")
    if body not in ("html", "json"):
        raise FaultRuleError("'body' must be \"html\" or \"json\"")
    return Action("content_type", body=body)


# kind -> (parser of the action, the action's own members)
ACTION_PARSERS = {
    "error": (_parse_error, ("code", "message", "status")),
    "throttle": (_shortcut("throttle"), ("message",)),
    "internal": (_shortcut("internal"), ("message",)),
    "unavailable": (_shortcut("unavailable"), ("message",)),
    "delay": (_parse_delay, ("ms",)),
    "cut": (_parse_cut, ("bytes",)),
    "truncated": (lambda obj: Action("truncated"), ()),
    "malformed": (lambda obj: Action("malformed"), ()),
    "content_type": (_parse_content_type, ("body",)),
    "drop": (lambda obj: Action("drop"), ()),
    "reset": (lambda obj: Action("reset"), ()),
}
KINDS = tuple(ACTION_PARSERS) + ("mix",)


def _check_members(obj, kind, allowed):
    for key in obj:
        if key not in allowed:
            raise FaultRuleError("unknown member '%s' for a %s fault" % (_printable(key), kind))


def _parse_action(obj, extra_allowed):
    kind = obj.get("kind", "error")
    if not isinstance(kind, str) or kind not in ACTION_PARSERS:
        raise FaultRuleError("'kind' must be one of %s" % ", ".join(sorted(KINDS)))
    parser, members = ACTION_PARSERS[kind]
    _check_members(obj, kind, ("kind",) + members + tuple(extra_allowed))
    return parser(obj)


def _parse_mix_actions(obj):
    kinds = obj.get("kinds", list(MIX_DEFAULT_KINDS))
    if not isinstance(kinds, list) or not 1 <= len(kinds) <= 100:
        raise FaultRuleError("'kinds' must be a list of 1 to 100 kind names or rules")
    delay_ms = _int_field(obj, "ms", MIX_DEFAULT_DELAY_MS, 0, MAX_DELAY_MS)
    actions = []
    for item in kinds:
        if isinstance(item, str):
            if item not in ACTION_PARSERS or item == "error":
                raise FaultRuleError("'kinds' names must be among %s (an error needs a rule object)"
                                     % ", ".join(k for k in ACTION_PARSERS if k != "error"))
            item = {"kind": item, "ms": delay_ms} if item == "delay" else {"kind": item}
        if not isinstance(item, dict):
            raise FaultRuleError("'kinds' entries must be kind names or rule objects")
        actions.append(_parse_action(item, ()))
    return actions


def parse_rule(obj):
    """A JSON object -> FaultRule, or raise FaultRuleError."""
    if not isinstance(obj, dict):
        raise FaultRuleError("a fault rule must be a JSON object")
    kind = obj.get("kind", "error")
    if not isinstance(kind, str) or kind not in KINDS:
        raise FaultRuleError("'kind' must be one of %s" % ", ".join(sorted(KINDS)))
    triggers = [k for k in ("every", "rate", "rps") if k in obj]
    if len(triggers) > 1:
        raise FaultRuleError("a rule has at most one of 'every', 'rate' and 'rps'")
    if "seed" in obj and kind != "mix" and "rate" not in obj:
        raise FaultRuleError("'seed' goes with 'rate' or a mix")
    if "burst" in obj and "rps" not in obj:
        raise FaultRuleError("'burst' goes with 'rps'")
    seed = _int_field(obj, "seed", 0, -(1 << 62), 1 << 62)
    params = {"seed": seed}
    if not triggers:
        trigger = "queued"
        times = _int_field(obj, "times", 1, 1, MAX_TIMES)
    else:
        times = None if obj.get("times") is None else _int_field(obj, "times", None, 1, MAX_TIMES)
        if triggers[0] == "every":
            trigger = "every"
            params["every"] = _int_field(obj, "every", None, 1, MAX_TIMES)
        elif triggers[0] == "rate":
            trigger = "rate"
            params["rate"] = _number_field(obj, "rate", 0, 1, low_open=True)
        else:
            trigger = "bucket"
            params["rps"] = _number_field(obj, "rps", 0, MAX_RPS, low_open=True)
            params["burst"] = _int_field(obj, "burst", max(1, int(round(2 * params["rps"]))), 1, MAX_TIMES)
    if kind == "mix":
        _check_members(obj, "mix", ("kind", "kinds", "ms") + TRIGGER_KEYS)
        return FaultRule(_parse_mix_actions(obj), trigger, times, mix=True, **params)
    action = _parse_action(obj, TRIGGER_KEYS)
    return FaultRule([action], trigger, times, **params)


def parse_rules(doc):
    """A rule, a list of rules, or {"rules": [...]} -> list of FaultRule."""
    if isinstance(doc, dict) and "rules" in doc and len(doc) == 1:
        doc = doc["rules"]
    items = doc if isinstance(doc, list) else [doc]
    return [parse_rule(item) for item in items]


class FaultInjector:
    """The queued and standing rules, shared by all connection threads."""

    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._queue = []
        self._standing = []
        self._clock = clock
        self.injected = 0
        self.by_kind = {}

    def add(self, rules):
        """Adds rules; returns how many are queued."""
        with self._lock:
            for rule in rules:
                (self._standing if rule.standing else self._queue).append(rule)
            return len(self._queue)

    def clear(self):
        """Removes every rule; returns how many there were."""
        with self._lock:
            count = len(self._queue) + len(self._standing)
            self._queue, self._standing = [], []
            return count

    def pending(self):
        """The queued rules, oldest first (described)."""
        with self._lock:
            return [r.describe() for r in self._queue]

    def standing(self):
        """The standing rules (described)."""
        with self._lock:
            return [r.describe() for r in self._standing]

    def counts(self):
        """(faults injected, {kind: count})."""
        with self._lock:
            return self.injected, dict(self.by_kind)

    def take(self):
        """The Action for this request (one use consumed), or None."""
        with self._lock:
            now = self._clock()
            fired = None
            for rule in self._standing:
                if rule.observe(now) and fired is None:
                    fired = rule
            chosen = self._queue[0] if self._queue else fired
            if chosen is None:
                return None
            if chosen.times is not None:
                chosen.times -= 1
                if chosen.times <= 0:
                    (self._standing if chosen.standing else self._queue).remove(chosen)
            action = chosen.action()
            self.injected += 1
            self.by_kind[action.kind] = self.by_kind.get(action.kind, 0) + 1
            return action
