"""SearchImageSets: request validation, filtering, sorting and paging tokens.

Validation follows service-2.json (SearchCriteria and the shapes it reaches) plus the
service's documented semantics: EQUAL takes one value, BETWEEN takes two values of the
same member. Messages name the field (e.g. searchCriteria.filters[0].values[1]) and
never echo a value. Paging tokens are opaque, HMAC-protected and bound to the data
store and the search criteria.
"""

import base64
import calendar
import collections
import hashlib
import hmac
import json
import math
import os
import re
import threading

from . import DICOM_TAGS
from .errors import BadJson, ServiceError, load_json, validation

MAX_RESULTS_DEFAULT = 50
MAX_RESULTS_RANGE = (1, 50)
NEXT_TOKEN_MAX = 8192

# SearchByAttributeValue members -> kind.
VALUE_MEMBERS = {
    "DICOMPatientId": "str",
    "DICOMAccessionNumber": "str",
    "DICOMStudyId": "str",
    "DICOMStudyInstanceUID": "uid",
    "DICOMSeriesInstanceUID": "uid",
    "createdAt": "timestamp",
    "updatedAt": "timestamp",
    "DICOMStudyDateAndTime": "studydatetime",
    "isPrimary": "bool",
}
EQUAL_MEMBERS = ("DICOMPatientId", "DICOMAccessionNumber", "DICOMStudyId",
                 "DICOMStudyInstanceUID", "DICOMSeriesInstanceUID", "isPrimary")
BETWEEN_MEMBERS = ("createdAt", "updatedAt", "DICOMStudyDateAndTime")
OPERATORS = ("EQUAL", "BETWEEN")
SORT_FIELDS = ("updatedAt", "createdAt", "DICOMStudyDateAndTime")
SORT_ORDERS = ("ASC", "DESC")
STUDY_DATE_MAX = 36   # DICOMStudyDate
STUDY_TIME_MAX = 56   # DICOMStudyTime

DAY_US = 86400 * 1000000


def _fail(path, constraint):
    return validation("1 validation error detected: Value at '%s' failed to satisfy "
                      "constraint: %s" % (path, constraint))


def _safe_name(name):
    """A client-supplied member name, made printable and short for an error message."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in str(name))
    return text[:64]


def _check_members(obj, path, allowed):
    for key in obj:
        if key not in allowed:
            raise validation("Unknown member '%s' at '%s'" % (_safe_name(key), path))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# {==== DICOM date and time ----------------------------------------------------


def parse_study_date(text):
    """YYYYMMDD (dots or dashes of old files removed) -> days since 1970, or None."""
    digits = re.sub(r"[.\-]", "", text or "")
    if not re.fullmatch(r"\d{8}", digits):
        return None
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(max(year, 1), month)[1]):
        return None
    if year < 1:
        return None
    return calendar.timegm((year, month, day, 0, 0, 0)) // 86400


def parse_study_time(text):
    """HH[MM[SS[.FFFFFF]]] (colons of old files removed) -> microseconds, or None."""
    clean = (text or "").replace(":", "").strip()
    match = re.fullmatch(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?", clean)
    if not match:
        return None
    hh, mm, ss, frac = match.groups()
    hh, mm, ss = int(hh), int(mm or 0), int(ss or 0)
    if hh > 23 or mm > 59 or ss > 60:
        return None
    micro = int((frac or "").ljust(6, "0")) if frac else 0
    return ((hh * 60 + mm) * 60 + min(ss, 59)) * 1000000 + micro


def study_instant(tags):
    """An image set's (study date, time) as microseconds, or None without a valid date.

    A missing or unreadable StudyTime counts as the start of the day.
    """
    day = parse_study_date(tags.get("DICOMStudyDate"))
    if day is None:
        return None
    micro = parse_study_time(tags.get("DICOMStudyTime")) if tags.get("DICOMStudyTime") else None
    return day * DAY_US + (micro or 0)


# }====

# {==== Criteria validation ----------------------------------------------------


class Filter:
    """One validated filter: operator, member name and the values of that member."""

    def __init__(self, operator, member, values):
        self.operator = operator
        self.member = member
        self.values = values


class Criteria:
    """Validated search criteria: filters (possibly empty) and an optional sort."""

    def __init__(self, filters, sort, canonical):
        self.filters = filters
        self.sort = sort          # (field, order) or None
        self.canonical = canonical  # JSON text used to bind paging tokens


def _validate_study_datetime(value, path, bound):
    if not isinstance(value, dict):
        raise _fail(path, "Member must be a structure")
    _check_members(value, path, ("DICOMStudyDate", "DICOMStudyTime"))
    date = value.get("DICOMStudyDate")
    if date is None:
        raise _fail(path + ".DICOMStudyDate", "Member must not be null")
    if not isinstance(date, str):
        raise _fail(path + ".DICOMStudyDate", "Member must be a string")
    if len(date) > STUDY_DATE_MAX:
        raise _fail(path + ".DICOMStudyDate",
                    "Member must have length less than or equal to %d" % STUDY_DATE_MAX)
    day = parse_study_date(date) if re.fullmatch(r"\d{8}", date) else None
    if day is None:
        raise _fail(path + ".DICOMStudyDate", "Member must be a date in YYYYMMDD format")
    time = value.get("DICOMStudyTime")
    if time is None:
        # A bound without a time covers the whole day.
        micro = 0 if bound == 0 else DAY_US - 1
    else:
        if not isinstance(time, str):
            raise _fail(path + ".DICOMStudyTime", "Member must be a string")
        if len(time) > STUDY_TIME_MAX:
            raise _fail(path + ".DICOMStudyTime",
                        "Member must have length less than or equal to %d" % STUDY_TIME_MAX)
        micro = parse_study_time(time) if ":" not in time else None
        if micro is None:
            raise _fail(path + ".DICOMStudyTime", "Member must be a time in HHmmss.FFFFFF format")
    return day * DAY_US + micro


def _validate_value(value, path, bound):
    """Validate one SearchByAttributeValue (a union); return (member, comparable value)."""
    if not isinstance(value, dict):
        raise _fail(path, "Member must be a structure")
    _check_members(value, path, VALUE_MEMBERS)
    present = [k for k, v in value.items() if v is not None]
    if len(present) != 1:
        raise validation("Value at '%s' must set exactly one member of SearchByAttributeValue, "
                         "found %d" % (path, len(present)))
    member = present[0]
    raw = value[member]
    kind = VALUE_MEMBERS[member]
    mpath = "%s.%s" % (path, member)
    if kind in ("str", "uid"):
        if not isinstance(raw, str):
            raise _fail(mpath, "Member must be a string")
        limit = DICOM_TAGS[member][1]
        if len(raw) > limit:
            raise _fail(mpath, "Member must have length less than or equal to %d" % limit)
        if kind == "uid" and not re.fullmatch(r"[0-9.]+", raw):
            raise _fail(mpath, "Member must satisfy regular expression pattern: [0-9.]+")
        return member, raw
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _fail(mpath, "Member must be a boolean")
        return member, raw
    if kind == "timestamp":
        if not _is_number(raw) or not math.isfinite(raw):
            raise _fail(mpath, "Member must be a timestamp in epoch seconds (a JSON number)")
        return member, raw
    return member, _validate_study_datetime(raw, mpath, bound)


def _validate_filter(flt, path):
    if not isinstance(flt, dict):
        raise _fail(path, "Member must be a structure")
    _check_members(flt, path, ("values", "operator"))
    operator = flt.get("operator")
    if operator is None:
        raise _fail(path + ".operator", "Member must not be null")
    if operator not in OPERATORS:
        raise _fail(path + ".operator", "Member must satisfy enum value set: [EQUAL, BETWEEN]")
    values = flt.get("values")
    if values is None:
        raise _fail(path + ".values", "Member must not be null")
    if not isinstance(values, list):
        raise _fail(path + ".values", "Member must be a list")
    if not 1 <= len(values) <= 2:
        raise _fail(path + ".values", "Member must have length between 1 and 2")
    parsed = [_validate_value(v, "%s.values[%d]" % (path, i), i) for i, v in enumerate(values)]
    members = [m for m, _ in parsed]
    if operator == "EQUAL":
        if len(parsed) != 1:
            raise validation("Invalid filter at '%s': operator EQUAL takes exactly one value" % path)
        if members[0] not in EQUAL_MEMBERS:
            raise validation("Invalid filter at '%s': operator EQUAL does not apply to %s; it applies to %s"
                             % (path, members[0], ", ".join(EQUAL_MEMBERS)))
    else:
        if len(parsed) != 2:
            raise validation("Invalid filter at '%s': operator BETWEEN takes exactly two values "
                             "(lower bound, upper bound)" % path)
        if members[0] != members[1]:
            raise validation("Invalid filter at '%s': both BETWEEN values must set the same member" % path)
        if members[0] not in BETWEEN_MEMBERS:
            raise validation("Invalid filter at '%s': operator BETWEEN does not apply to %s; it applies to %s"
                             % (path, members[0], ", ".join(BETWEEN_MEMBERS)))
        if parsed[0][1] > parsed[1][1]:
            raise validation("Invalid filter at '%s': the lower bound is greater than the upper bound" % path)
    return Filter(operator, members[0], [v for _, v in parsed])


def _reject_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError("duplicate member")
        obj[key] = value
    return obj


def _reject_constant(_name):
    raise ValueError("not JSON")


def parse_criteria(body):
    """Validate the request body (the SearchCriteria payload) -> Criteria.

    An empty body, `{}` or `null` means no criteria. Raises ServiceError.
    """
    if body is None or body.strip() == b"":
        doc = None
    else:
        try:
            doc = load_json(body, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
        except BadJson as bad:
            if bad.reason == "nested too deeply":
                raise validation("Request body is not valid JSON (searchCriteria): it is nested "
                                 "too deeply") from None
            raise validation("Request body is not valid JSON (searchCriteria)") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise _fail("searchCriteria", "Member must be a structure")
    _check_members(doc, "searchCriteria", ("filters", "sort"))
    filters = []
    raw_filters = doc.get("filters")
    if raw_filters is not None:
        if not isinstance(raw_filters, list):
            raise _fail("searchCriteria.filters", "Member must be a list")
        if not 1 <= len(raw_filters) <= 2:
            raise _fail("searchCriteria.filters", "Member must have length between 1 and 2")
        filters = [_validate_filter(f, "searchCriteria.filters[%d]" % i) for i, f in enumerate(raw_filters)]
    sort = None
    raw_sort = doc.get("sort")
    if raw_sort is not None:
        if not isinstance(raw_sort, dict):
            raise _fail("searchCriteria.sort", "Member must be a structure")
        _check_members(raw_sort, "searchCriteria.sort", ("sortOrder", "sortField"))
        field, order = raw_sort.get("sortField"), raw_sort.get("sortOrder")
        if field is None:
            raise _fail("searchCriteria.sort.sortField", "Member must not be null")
        if order is None:
            raise _fail("searchCriteria.sort.sortOrder", "Member must not be null")
        if field not in SORT_FIELDS:
            raise _fail("searchCriteria.sort.sortField",
                        "Member must satisfy enum value set: [%s]" % ", ".join(SORT_FIELDS))
        if order not in SORT_ORDERS:
            raise _fail("searchCriteria.sort.sortOrder", "Member must satisfy enum value set: [ASC, DESC]")
        sort = (field, order)
    canonical = json.dumps({"f": [[f.operator, f.member, f.values] for f in filters], "s": sort},
                           sort_keys=True, ensure_ascii=True)
    return Criteria(filters, sort, canonical)


def parse_max_results(values):
    """The maxResults query parameter (list of decoded values) -> int."""
    if not values:
        return MAX_RESULTS_DEFAULT
    if len(values) > 1:
        raise _fail("maxResults", "Member must be given at most once")
    text = values[0]
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
        raise _fail("maxResults", "Member must be an integer")
    number = int(text)
    if number < MAX_RESULTS_RANGE[0]:
        raise _fail("maxResults", "Member must have value greater than or equal to 1")
    if number > MAX_RESULTS_RANGE[1]:
        raise _fail("maxResults", "Member must have value less than or equal to 50")
    return number


# }====

# {==== Paging tokens ----------------------------------------------------------


class TokenCodec:
    """Opaque paging tokens: standard base64 of MAGIC + HMAC + JSON {offset, binding}.

    The key is random per process, so tokens die with the server, unless one is given
    (key_from: `serve --token-key`) for tokens that outlive a restart. MAGIC makes every
    token start with "+/+/" and the length is padded so that it ends with "==": clients
    must percent-encode '+', '/' and '=' in the query string.
    """

    MAGIC = b"\xfb\xff\xbf"   # base64 "+/+/"
    MAC_LEN = 32

    def __init__(self, key=None):
        self._key = key or os.urandom(32)

    @staticmethod
    def key_from(text, data_digest):
        """A stable HMAC key from --token-key TEXT and the data file's SHA-256.

        The data file's digest is part of it because a token is an offset into the
        ordered hits: with other data, an old token would resume at the wrong place.
        """
        return hmac.new(b"healthimaging-local nextToken key", text.encode("utf-8", "surrogateescape")
                        + b"\0" + (data_digest or b""), hashlib.sha256).digest()

    @staticmethod
    def binding(datastore_id, criteria):
        """What a token is bound to: the data store and the canonical criteria."""
        return hashlib.sha256((datastore_id + "\n" + criteria.canonical).encode()).hexdigest()[:32]

    def encode(self, offset, binding):
        payload = json.dumps({"o": offset, "b": binding}, separators=(",", ":")).encode()
        while (len(self.MAGIC) + self.MAC_LEN + len(payload)) % 3 != 1:
            payload += b" "
        mac = hmac.new(self._key, self.MAGIC + payload, hashlib.sha256).digest()
        return base64.b64encode(self.MAGIC + mac + payload).decode("ascii")

    def decode(self, token, binding):
        """Token -> offset, or raise ValidationException (never echoing the token)."""
        if not isinstance(token, str) or not 1 <= len(token) <= NEXT_TOKEN_MAX:
            raise _fail("nextToken", "Member must have length between 1 and %d" % NEXT_TOKEN_MAX)
        if not token.isascii():
            raise _fail("nextToken", "Member must satisfy regular expression pattern: \\p{ASCII}{0,8192}")
        invalid = validation("Invalid nextToken: it is malformed, was altered, or comes from "
                             "another server run")
        try:
            raw = base64.b64decode(token.encode("ascii"), validate=True)
        except (ValueError, TypeError):
            raise invalid from None
        head = len(self.MAGIC) + self.MAC_LEN
        if len(raw) <= head or raw[:len(self.MAGIC)] != self.MAGIC:
            raise invalid
        mac, payload = raw[len(self.MAGIC):head], raw[head:]
        good = hmac.new(self._key, self.MAGIC + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, good):
            raise invalid
        try:
            doc = json.loads(payload.decode("ascii"))
            offset, bound = doc["o"], doc["b"]
        except (ValueError, KeyError, TypeError):
            raise invalid from None
        if not isinstance(offset, int) or offset < 0:
            raise invalid
        if bound != binding:
            raise validation("Invalid nextToken: it belongs to a search with other criteria "
                             "or another data store")
        return offset


# }====

# {==== Search -----------------------------------------------------------------


def _matches(record, flt):
    member = flt.member
    if member in ("createdAt", "updatedAt"):
        value = record[member]
        return flt.values[0] <= value <= flt.values[1]
    if member == "DICOMStudyDateAndTime":
        instant = study_instant(record["DICOMTags"])
        return instant is not None and flt.values[0] <= instant <= flt.values[1]
    if member == "isPrimary":
        return record["isPrimary"] is flt.values[0]
    return record["DICOMTags"].get(member) == flt.values[0]


def ordered(image_sets, sort):
    """Image sets in result order; ties (and missing study dates) go by imageSetId ASC.

    Default sort: updatedAt DESC. For DICOMStudyDateAndTime, image sets without a
    valid study date come last in both orders.
    """
    field, order = sort or ("updatedAt", "DESC")
    by_id = sorted(image_sets, key=lambda r: r["imageSetId"])
    if field == "DICOMStudyDateAndTime":
        keyed = [(study_instant(r["DICOMTags"]), r) for r in by_id]
        dated = [(k, r) for k, r in keyed if k is not None]
        undated = [r for k, r in keyed if k is None]
        dated.sort(key=lambda kr: kr[0], reverse=(order == "DESC"))  # stable: id order kept
        return [r for _, r in dated] + undated
    return sorted(by_id, key=lambda r: r[field], reverse=(order == "DESC"))


def summary(record):
    """The ImageSetsMetadataSummary of a stored image set."""
    out = {k: record[k] for k in ("imageSetId", "version", "createdAt", "updatedAt",
                                  "isPrimary", "storageTier")}
    out["DICOMTags"] = dict(record["DICOMTags"])
    return out


class OrderIndex:
    """The ordered hits of recent criteria, so that paging through a large store does
    not filter and sort it again for every page. The store never changes while served;
    the most recently used INDEX_SIZE criteria are kept."""

    INDEX_SIZE = 64

    def __init__(self):
        self._lock = threading.Lock()
        self._hits = collections.OrderedDict()

    def hits(self, store, criteria):
        key = (id(store), criteria.canonical)
        with self._lock:
            found = self._hits.get(key)
            if found is not None:
                self._hits.move_to_end(key)
                return found
        found = ordered([r for r in store.image_sets if all(_matches(r, f) for f in criteria.filters)],
                        criteria.sort)
        with self._lock:
            self._hits[key] = found
            while len(self._hits) > self.INDEX_SIZE:
                self._hits.popitem(last=False)
        return found


def search(store, criteria, max_results, next_token, codec, index=None):
    """Run one SearchImageSets page -> the response document (index: an OrderIndex)."""
    binding = TokenCodec.binding(store.datastore_id, criteria)
    offset = codec.decode(next_token, binding) if next_token is not None else 0
    if index is not None:
        hits = index.hits(store, criteria)
    else:
        hits = ordered([r for r in store.image_sets if all(_matches(r, f) for f in criteria.filters)],
                       criteria.sort)
    page = hits[offset:offset + max_results]
    response = {"imageSetsMetadataSummaries": [summary(r) for r in page]}
    if offset + max_results < len(hits):
        response["nextToken"] = codec.encode(offset + max_results, binding)
    if criteria.sort is not None:
        response["sort"] = {"sortOrder": criteria.sort[1], "sortField": criteria.sort[0]}
    return response


# }====

__all__ = ["parse_criteria", "parse_max_results", "search", "TokenCodec", "OrderIndex", "ServiceError",
           "ordered", "study_instant"]
