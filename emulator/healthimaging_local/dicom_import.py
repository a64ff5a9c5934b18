"""DICOM files -> the emulator's data file (one image set per SeriesInstanceUID).

Reads headers only (pydicom, stop_before_pixels=True). A file without the DICM
preamble is read again with force=True, and kept only if that yields valid Study and
Series Instance UIDs. Skip reasons are fixed phrases: they never contain tag values,
and neither does anything else this module prints.
"""

import hashlib
import io
import json
import logging
import os
import re
import stat
import struct
import warnings

from . import DICOM_TAGS, ID_PATTERN

# Imported lazily so that `serve` never needs pydicom.
pydicom = None

# DICOMTags member <- DICOM keyword. Max lengths come from DICOM_TAGS (the model).
TAG_SOURCES = (
    ("DICOMPatientId", "PatientID"),
    ("DICOMPatientName", "PatientName"),
    ("DICOMPatientBirthDate", "PatientBirthDate"),
    ("DICOMPatientSex", "PatientSex"),
    ("DICOMStudyInstanceUID", "StudyInstanceUID"),
    ("DICOMStudyId", "StudyID"),
    ("DICOMStudyDescription", "StudyDescription"),
    ("DICOMAccessionNumber", "AccessionNumber"),
    ("DICOMSeriesInstanceUID", "SeriesInstanceUID"),
    ("DICOMSeriesModality", "Modality"),
    ("DICOMSeriesBodyPart", "BodyPartExamined"),
    ("DICOMSeriesNumber", "SeriesNumber"),
    ("DICOMStudyDate", "StudyDate"),
    ("DICOMStudyTime", "StudyTime"),
)

UID_RE = re.compile(r"[0-9.]+")
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Deterministic metadata: every value below derives from sha256(datastore, series), so
# two imports of the same files give the same data file.
EPOCH_BASE = 1704067200  # 2024-01-01T00:00:00Z
DAY = 86400
CREATED_SLOTS = 32       # few slots, so that several image sets share a createdAt


class SkipFile(Exception):
    """A file that yields no image set; str() is the fixed reason phrase."""


class _ReadTracker:
    """File wrapper that notices short reads, which pydicom silently accepts.

    pydicom reads a truncated value as fewer bytes than its length says and carries
    on, so truncation is only visible here. A read that returns nothing at an element
    boundary (8 bytes asked) is a clean end of file, not truncation.
    """

    def __init__(self, raw, name):
        self._raw = raw
        self.name = name
        self.short_read = False

    def read(self, size=-1):
        data = self._raw.read(size)
        if size is not None and size > 0 and len(data) < size:
            if data or size != 8:
                self.short_read = True
        return data

    def seek(self, offset, whence=0):
        return self._raw.seek(offset, whence)

    def tell(self):
        return self._raw.tell()

    def close(self):
        pass


def _quiet_pydicom():
    """Import pydicom once and silence its logger: its messages may quote values."""
    global pydicom
    if pydicom is None:
        import pydicom as _pydicom
        pydicom = _pydicom
        log = logging.getLogger("pydicom")
        log.handlers[:] = [logging.NullHandler()]
        log.propagate = False
        log.setLevel(logging.CRITICAL + 1)
    return pydicom


def _pixel_data_truncated(raw, size):
    """True when the Pixel Data element the reader stopped at runs past the file end.

    With stop_before_pixels the reader rewinds to the (7FE0,0010) header; a defined
    length longer than what is left means the file was cut. Undefined lengths
    (encapsulated data) cannot be checked without reading the fragments.
    """
    pos = raw.tell()
    head = raw.read(12)
    if len(head) < 8:
        return False
    # Judge byte order and VR explicitness from the bytes, as pydicom does: some files
    # declare an explicit-VR transfer syntax but are written implicit (SC_rgb_jpeg.dcm).
    if head[:4] == b"\xe0\x7f\x10\x00":
        order = "<"
    elif head[:4] == b"\x7f\xe0\x00\x10":
        order = ">"
    else:
        return False
    implicit = not all(65 <= c <= 90 for c in head[4:6])
    if implicit:
        (length,) = struct.unpack(order + "L", head[4:8])
        header_len = 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"):
        if len(head) < 12:
            return True
        (length,) = struct.unpack(order + "L", head[8:12])
        header_len = 12
    else:
        (length,) = struct.unpack(order + "H", head[6:8])
        header_len = 8
    if length == 0xFFFFFFFF:
        return False
    return pos + header_len + length > size


def _read_dataset(path):
    """Read one file's header; return the dataset or raise SkipFile(reason)."""
    dcm = _quiet_pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            raise SkipFile("cannot open: dangling symbolic link") from None
        raise SkipFile("cannot open: %s" % (exc.strerror or "error")) from None
    if stat.S_ISDIR(st.st_mode):
        raise SkipFile("is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise SkipFile("not a regular file")
    if st.st_size == 0:
        raise SkipFile("empty file")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise SkipFile("cannot open: %s" % (exc.strerror or "error")) from None
    with fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forced = False
        tracker = _ReadTracker(fh, path)
        try:
            ds = dcm.dcmread(tracker, stop_before_pixels=True)
        except InvalidDicomError:
            # Fallback, documented in --help: files without preamble/meta header.
            fh.seek(0)
            tracker = _ReadTracker(fh, path)
            forced = True
            try:
                ds = dcm.dcmread(tracker, stop_before_pixels=True, force=True)
            except Exception:
                raise SkipFile("not a DICOM file") from None
        except (EOFError, struct.error):
            raise SkipFile("truncated DICOM data") from None
        except OSError as exc:
            raise SkipFile("cannot read: %s" % (exc.strerror or "error")) from None
        except Exception:
            raise SkipFile("malformed DICOM data") from None
        if forced:
            study = _uid(ds, "StudyInstanceUID")
            series = _uid(ds, "SeriesInstanceUID")
            if not (study and series) or tracker.short_read:
                raise SkipFile("not a DICOM file (no DICM prefix, no usable UIDs)")
        if tracker.short_read:
            raise SkipFile("truncated DICOM data")
        try:
            if _pixel_data_truncated(fh, st.st_size):
                raise SkipFile("truncated DICOM data (pixel data)")
        except (struct.error, OSError):
            raise SkipFile("truncated DICOM data") from None
    return ds


def _element_value(ds, keyword):
    """The element's value, or None when absent or when it cannot be decoded."""
    try:
        elem = ds.data_element(keyword)
        if elem is None:
            return None
        return elem.value
    except Exception:
        return None


def _text(value):
    """A DICOM value as text, or None when empty. PN keeps all component groups."""
    if value is None:
        return None
    _quiet_pydicom()
    from pydicom.multival import MultiValue
    from pydicom.valuerep import PersonName
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        parts = [_text(v) or "" for v in value]
        text = "\\".join(parts)
    else:
        text = str(value)
    if isinstance(value, PersonName):
        # A name made only of separators ("^^^^") is an empty name.
        if not text.strip(" ^=\x00"):
            return None
    text = text.strip(" \x00")
    return text or None


def _uid(ds, keyword):
    """A valid UID (model pattern [0-9.]+, at most 64 characters as in DICOM) or None."""
    text = _text(_element_value(ds, keyword))
    if text and len(text) <= 64 and UID_RE.fullmatch(text):
        return text
    return None


def _tags_of(ds):
    """The DICOMTags fields one file provides (empty ones left out)."""
    tags = {}
    for member, keyword in TAG_SOURCES:
        kind, limit = DICOM_TAGS[member]
        if kind == "uid":
            value = _uid(ds, keyword)
        elif kind == "int":
            raw = _element_value(ds, keyword)
            try:
                value = int(raw) if raw is not None and str(raw).strip() != "" else None
            except (TypeError, ValueError):
                value = None
            if value is not None and not limit[0] <= value <= limit[1]:
                value = None
        else:
            value = _text(_element_value(ds, keyword))
            if value is not None and len(value) > limit:
                value = value[:limit]
        if value is not None:
            tags[member] = value
    return tags


def _is_dicomdir(ds):
    meta = getattr(ds, "file_meta", None)
    try:
        return meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS
    except Exception:
        return False


def _iter_files(paths, report):
    """Yield every file under paths (folders recursively, symlinked folders not followed)."""
    for top in paths:
        if os.path.isdir(top) and not os.path.islink(top):
            def onerror(exc, _top=top):
                report(exc.filename or _top, "cannot list directory: %s" % (exc.strerror or "error"))
            found = []
            for dirpath, dirnames, filenames in os.walk(top, onerror=onerror):
                dirnames.sort()
                for name in filenames:
                    found.append(os.path.join(dirpath, name))
                for name in dirnames:
                    full = os.path.join(dirpath, name)
                    if os.path.islink(full):
                        found.append(full)  # reported as "is a directory" if it resolves
            for path in sorted(found):
                yield path
        else:
            yield top


def image_set_metadata(datastore_id, series_uid):
    """imageSetId and the deterministic metadata of one image set.

    imageSetId: first 32 hex digits of sha256("healthimaging-local/v1", datastore, series).
    createdAt: one of CREATED_SLOTS days after 2024-01-01 plus a fraction tied to the
    slot (so image sets in the same slot share it exactly); updatedAt: createdAt plus
    0, 3, 6 or 9 days (+0.5 s for odd steps). isPrimary is false for about 1 in 6,
    storageTier ARCHIVE_INSTANT_ACCESS for about 1 in 9.
    """
    digest = hashlib.sha256(
        b"healthimaging-local/v1\0" + datastore_id.encode() + b"\0" + series_uid.encode()
    ).hexdigest()
    word = lambda i: int(digest[32 + 8 * i:40 + 8 * i], 16)  # noqa: E731
    slot = word(0) % CREATED_SLOTS
    created = EPOCH_BASE + slot * DAY + (slot % 4) * 0.25 + 0.125
    step = word(1) % 4
    updated = created + step * 3 * DAY + (step % 2) * 0.5
    return {
        "imageSetId": digest[:32],
        "version": 1,
        "createdAt": created,
        "updatedAt": updated,
        "isPrimary": word(2) % 6 != 0,
        "storageTier": "ARCHIVE_INSTANT_ACCESS" if word(3) % 9 == 0 else "FREQUENT_ACCESS",
    }


def import_paths(datastore_id, paths, report):
    """Build the data file document from paths.

    report(path, reason) is called once per skipped file or unlistable folder.
    Returns (document, files_seen, files_used, skipped_count): files_used is how many
    of the files seen made the image sets (skipped_count also counts folders).
    """
    if not re.fullmatch(ID_PATTERN, datastore_id or ""):
        raise ValueError("datastore id must match ^[0-9a-z]{32}$")
    skipped = [0]

    def skip(path, reason):
        skipped[0] += 1
        report(path, reason)

    series = {}   # series uid -> {"tags": {...}, "instances": set()}
    files_seen = files_used = 0
    for path in _iter_files(paths, skip):
        files_seen += 1
        try:
            ds = _read_dataset(path)
            if _is_dicomdir(ds):
                raise SkipFile("DICOMDIR (a media directory, not an instance)")
            if _element_value(ds, "SeriesInstanceUID") in (None, ""):
                raise SkipFile("no SeriesInstanceUID")
            tags = _tags_of(ds)
            if "DICOMSeriesInstanceUID" not in tags:
                raise SkipFile("SeriesInstanceUID is not a valid UID")
        except SkipFile as why:
            skip(path, str(why))
            continue
        except Exception:
            skip(path, "malformed DICOM data")
            continue
        files_used += 1
        entry = series.setdefault(tags["DICOMSeriesInstanceUID"], {"tags": {}, "instances": set()})
        for key, value in tags.items():
            entry["tags"].setdefault(key, value)  # first file (path order) wins
        sop = _uid(ds, "SOPInstanceUID")
        entry["instances"].add(sop if sop else "file:" + os.path.abspath(path))

    # Study counts across this import: distinct series and distinct SOP Instance UIDs.
    studies = {}
    for entry in series.values():
        study = entry["tags"].get("DICOMStudyInstanceUID")
        if study:
            agg = studies.setdefault(study, {"series": 0, "instances": set()})
            agg["series"] += 1
            agg["instances"] |= entry["instances"]

    image_sets = []
    for uid, entry in series.items():
        record = image_set_metadata(datastore_id, uid)
        tags = dict(entry["tags"])
        agg = studies.get(tags.get("DICOMStudyInstanceUID"))
        if agg:
            tags["DICOMNumberOfStudyRelatedSeries"] = min(agg["series"], 1000000)
            tags["DICOMNumberOfStudyRelatedInstances"] = min(len(agg["instances"]), 1000000)
        record["DICOMTags"] = {k: tags[k] for k in DICOM_TAGS if k in tags}
        image_sets.append(record)
    image_sets.sort(key=lambda r: r["imageSetId"])
    return {"datastoreId": datastore_id, "imageSets": image_sets}, files_seen, files_used, skipped[0]


def write_document(document, out_path):
    """Write the data file as UTF-8 JSON (non-ASCII kept raw), atomically."""
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    tmp = out_path + ".tmp%d" % os.getpid()
    with io.open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, out_path)
