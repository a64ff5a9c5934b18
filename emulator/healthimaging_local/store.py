"""The data file in memory: one data store and its image sets, checked on load.

Format (written by `healthimaging-local import`, UTF-8 JSON):
  {"datastoreId": "<32 [0-9a-z]>",
   "imageSets": [{"imageSetId", "version", "createdAt", "updatedAt", "isPrimary",
                  "storageTier", "DICOMTags": {...}}, ...]}
Errors name the image set index and the field, never a value.
"""

import hashlib
import json
import math
import re

from . import DICOM_TAGS, ID_PATTERN, STORAGE_TIERS
from .errors import BadJson, load_json

SUMMARY_FIELDS = ("imageSetId", "version", "createdAt", "updatedAt", "isPrimary", "storageTier")


class DataFileError(Exception):
    """The data file cannot be used; the message names the place, not the value."""


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_tags(where, tags):
    if not isinstance(tags, dict):
        raise DataFileError("%s.DICOMTags must be an object" % where)
    for key, value in tags.items():
        if key not in DICOM_TAGS:
            raise DataFileError("%s.DICOMTags has an unknown member %s" % (where, json.dumps(key)[:80]))
        kind, limit = DICOM_TAGS[key]
        field = "%s.DICOMTags.%s" % (where, key)
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or not limit[0] <= value <= limit[1]:
                raise DataFileError("%s must be an integer in %d..%d" % (field, limit[0], limit[1]))
        else:
            if not isinstance(value, str) or len(value) > limit:
                raise DataFileError("%s must be a string of at most %d characters" % (field, limit))
            if kind == "uid" and not re.fullmatch(r"[0-9.]+", value):
                raise DataFileError("%s must match [0-9.]+" % field)


class Store:
    """One data store: its id and its image sets (dicts shaped like the response)."""

    def __init__(self, datastore_id, image_sets):
        self.datastore_id = datastore_id
        self.image_sets = image_sets
        self.digest = None   # SHA-256 of the data file's bytes, when loaded from one

    @classmethod
    def from_document(cls, doc):
        """Check a parsed data file document and build the store."""
        if not isinstance(doc, dict):
            raise DataFileError("the data file must hold a JSON object")
        ds_id = doc.get("datastoreId")
        if not isinstance(ds_id, str) or not re.fullmatch(ID_PATTERN, ds_id):
            raise DataFileError("datastoreId must match ^[0-9a-z]{32}$")
        sets = doc.get("imageSets")
        if not isinstance(sets, list):
            raise DataFileError("imageSets must be a list")
        seen = set()
        clean = []
        for i, item in enumerate(sets):
            where = "imageSets[%d]" % i
            if not isinstance(item, dict):
                raise DataFileError("%s must be an object" % where)
            set_id = item.get("imageSetId")
            if not isinstance(set_id, str) or not re.fullmatch(ID_PATTERN, set_id):
                raise DataFileError("%s.imageSetId must match ^[0-9a-z]{32}$" % where)
            if set_id in seen:
                raise DataFileError("%s.imageSetId is a duplicate" % where)
            seen.add(set_id)
            version = item.get("version", 1)
            if not isinstance(version, int) or isinstance(version, bool):
                raise DataFileError("%s.version must be an integer" % where)
            for key in ("createdAt", "updatedAt"):
                if not _is_number(item.get(key)):
                    raise DataFileError("%s.%s must be a number (epoch seconds)" % (where, key))
            if not isinstance(item.get("isPrimary", True), bool):
                raise DataFileError("%s.isPrimary must be a boolean" % where)
            if item.get("storageTier", STORAGE_TIERS[0]) not in STORAGE_TIERS:
                raise DataFileError("%s.storageTier must be one of %s" % (where, ", ".join(STORAGE_TIERS)))
            tags = item.get("DICOMTags", {})
            _check_tags(where, tags)
            record = {
                "imageSetId": set_id,
                "version": version,
                "createdAt": item["createdAt"],
                "updatedAt": item["updatedAt"],
                "isPrimary": item.get("isPrimary", True),
                "storageTier": item.get("storageTier", STORAGE_TIERS[0]),
                "DICOMTags": dict(tags),
            }
            clean.append(record)
        return cls(ds_id, clean)

    @classmethod
    def load(cls, path):
        """Read and check the data file at path."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise DataFileError("cannot read the data file: %s" % (exc.strerror or "error")) from None
        try:
            doc = load_json(raw)
        except BadJson as bad:
            deep = bad.reason == "nested too deeply"
            raise DataFileError("the data file is %s" % ("nested too deeply" if deep else "not UTF-8 JSON")) from None
        store = cls.from_document(doc)
        store.digest = hashlib.sha256(raw).digest()
        return store
