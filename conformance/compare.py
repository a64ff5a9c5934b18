"""conformance/compare.py: field-by-field comparison of the drivers' neutral answers.

Differences are reported as paths (e.g. `imageSetsMetadataSummaries[3].DICOMTags.
DICOMPatientName`) or by imageSetId and field name; values are never part of a report,
since tag values may be patient data. Timestamps ({"$ts": "seconds"}) are compared as
instants at the precision both sides carry (milliseconds for the JS SDK's Date,
microseconds for botocore's datetime and the Lua client's numbers).
"""

from decimal import ROUND_HALF_EVEN, Decimal

# Digits after the point each side keeps for a timestamp.
PRECISION = {"js": 3, "boto3": 6, "lua": 6}


def is_ts(value):
    return isinstance(value, dict) and set(value) == {"$ts"}


def _instant(value, digits):
    return Decimal(value["$ts"]).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)


def diff(a, b, digits, path="$"):
    """Paths where a and b differ; numbers must agree in kind (int vs float) too."""
    if is_ts(a) or is_ts(b):
        if not (is_ts(a) and is_ts(b)):
            return [path + " (timestamp on one side only)"]
        return [] if _instant(a, digits) == _instant(b, digits) else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append("%s.%s (only on the %s side)" % (path, key, "right" if key not in a else "left"))
            else:
                out.extend(diff(a[key], b[key], digits, "%s.%s" % (path, key)))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return ["%s (length %d vs %d)" % (path, len(a), len(b))]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out.extend(diff(x, y, digits, "%s[%d]" % (path, i)))
        return out
    if type(a) is not type(b):
        return ["%s (types %s vs %s)" % (path, type(a).__name__, type(b).__name__)]
    return [] if a == b else [path]


def diff_summaries(left, right, digits, where):
    """Two lists of image-set summaries: by position, reported by imageSetId and field."""
    if len(left) != len(right):
        return ["%s: %d vs %d image sets" % (where, len(left), len(right))]
    out = []
    for i, (x, y) in enumerate(zip(left, right)):
        xid, yid = x.get("imageSetId"), y.get("imageSetId")
        if xid != yid:
            out.append("%s: position %d holds different imageSetIds" % (where, i))
            continue
        for field in diff(x, y, digits, ""):
            out.append("%s: imageSetId %s field %s" % (where, xid, field.lstrip(".")))
    return out


def diff_page(left, right, digits, where):
    """Two response pages: summaries by imageSetId, then every other member."""
    key = "imageSetsMetadataSummaries"
    out = diff_summaries(left.get(key, []), right.get(key, []), digits, where)
    for key_missing in (key,):
        if (key_missing in left) != (key_missing in right):
            out.append("%s: %s present on one side only" % (where, key_missing))
    rest_l = {k: v for k, v in left.items() if k != key}
    rest_r = {k: v for k, v in right.items() if k != key}
    out.extend("%s: %s" % (where, p.lstrip("$.")) for p in diff(rest_l, rest_r, digits))
    return out
