"""`healthimaging-local import` on Debian's real pydicom files and on broken files.

Expectations come from pydicom itself (names, UIDs, counts are recomputed here with
plain dcmread calls), plus the list of files this pydicom release ships that hold no
usable instance (established by reading each of them with pydicom by hand).
"""

import collections
import json
import os
import re
import shutil
import tempfile
import unittest
import warnings

import pydicom

from .helpers import CHARSET_FILES, DATASTORE, OTHER_DATASTORE, TEST_FILES, import_demo, run_cli

# Files of python3-pydicom 2.3.1 that give no image set, with the reason class.
EXPECTED_SKIPS = {
    "test_files/MR_truncated.dcm": "truncated",
    "test_files/rtplan_truncated.dcm": "truncated",
    "test_files/README.txt": "not a DICOM file",
    "test_files/rtplan.dump": "not a DICOM file",
    "test_files/rtstruct.dump": "not a DICOM file",
    "test_files/test1.json": "not a DICOM file",
    "test_files/test_PN.json": "not a DICOM file",
    "test_files/zipMR.gz": "not a DICOM file",
    "test_files/no_meta.dcm": "not a DICOM file",
    "test_files/dicomdirtests/README.txt": "not a DICOM file",
    "test_files/dicomdirtests/TINY_ALPHA/README": "not a DICOM file",
    "charset_files/FileInfo.txt": "not a DICOM file",
    "test_files/UN_sequence.dcm": "no SeriesInstanceUID",
    "test_files/empty_charset_LEI.dcm": "no SeriesInstanceUID",
    "test_files/meta_missing_tsyntax.dcm": "no SeriesInstanceUID",
    "test_files/nested_priv_SQ.dcm": "no SeriesInstanceUID",
    "test_files/no_meta_group_length.dcm": "no SeriesInstanceUID",
    "test_files/priv_SQ.dcm": "no SeriesInstanceUID",
    "charset_files/chrSQEncoding.dcm": "no SeriesInstanceUID",
    "charset_files/chrSQEncoding1.dcm": "no SeriesInstanceUID",
    "test_files/dicomdirtests/DICOMDIR": "DICOMDIR",
    "test_files/dicomdirtests/DICOMDIR-bigEnd": "DICOMDIR",
    "test_files/dicomdirtests/DICOMDIR-empty.dcm": "DICOMDIR",
    "test_files/dicomdirtests/DICOMDIR-implicit": "DICOMDIR",
    "test_files/dicomdirtests/DICOMDIR-nooffset": "DICOMDIR",
    "test_files/dicomdirtests/DICOMDIR-nopatient": "DICOMDIR",
    "test_files/dicomdirtests/DICOMDIR-reordered": "DICOMDIR",
    "test_files/dicomdirtests/TINY_ALPHA/DICOMDIR": "DICOMDIR",
}
# Files without the DICM preamble that the force=True fallback imports.
FORCED_FILES = ("test_files/ExplVR_BigEndNoMeta.dcm", "test_files/ExplVR_LitEndNoMeta.dcm",
                "test_files/rtstruct.dcm")
SKIP_LINE = re.compile(r"^skipped (.+?): (.+)$")
# The last line: files looked at, image sets, files that made them, skipped.
SUMMARY = re.compile(r"^read (\d+) files?: (\d+) image sets? from (\d+) files?, (\d+) skipped$")
DATA_ROOT = os.path.dirname(TEST_FILES)


def _all_files():
    out = []
    for root in (TEST_FILES, CHARSET_FILES):
        for dirpath, _dirs, files in os.walk(root):
            out.extend(os.path.join(dirpath, f) for f in files)
    return sorted(out)


def _rel(path):
    return os.path.relpath(path, DATA_ROOT)


def _pydicom_read(path):
    """Plain pydicom read of a file expected to be importable (force for the no-meta ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=_rel(path) in FORCED_FILES)


def _parse_stderr(text):
    skips, summary = {}, None
    for line in text.splitlines():
        m = SKIP_LINE.match(line)
        if m:
            skips[m.group(1)] = m.group(2)
        elif SUMMARY.match(line):
            summary = tuple(int(x) for x in SUMMARY.match(line).groups())
    return skips, summary


@unittest.skipUnless(os.path.isdir(TEST_FILES) and os.path.isdir(CHARSET_FILES),
                     "python3-pydicom's data files are absent: the demo import is not checked")
class DemoImportTest(unittest.TestCase):
    """The pydicom demo data set, imported once for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hil-import-")
        cls.out = os.path.join(cls.tmp, "data.json")
        cls.result = import_demo(cls.out)
        with open(cls.out, "rb") as fh:
            cls.raw = fh.read()
        cls.doc = json.loads(cls.raw.decode("utf-8"))
        cls.by_series = {s["DICOMTags"]["DICOMSeriesInstanceUID"]: s for s in cls.doc["imageSets"]}
        cls.importable = [p for p in _all_files() if _rel(p) not in EXPECTED_SKIPS]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_exits_zero_and_prints_nothing_on_stdout(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr[-500:])
        self.assertEqual(self.result.stdout, "")

    def test_lists_every_skipped_file_with_its_reason_and_a_summary(self):
        skips, summary = _parse_stderr(self.result.stderr)
        self.assertEqual({_rel(p) for p in skips}, set(EXPECTED_SKIPS))
        for path, reason in skips.items():
            self.assertIn(EXPECTED_SKIPS[_rel(path)], reason, path)
        total = len(_all_files())
        self.assertEqual(summary, (total, len(self.doc["imageSets"]), total - len(EXPECTED_SKIPS),
                                   len(EXPECTED_SKIPS)))
        self.assertRegex(self.result.stderr.splitlines()[-1], SUMMARY, "the summary is the last line")

    def test_makes_one_image_set_per_series_that_pydicom_reads(self):
        series = {str(_pydicom_read(p).SeriesInstanceUID) for p in self.importable}
        self.assertEqual(set(self.by_series), series)
        self.assertEqual(len(self.doc["imageSets"]), 47)  # python3-pydicom 2.3.1's data
        self.assertEqual(self.doc["datastoreId"], DATASTORE)

    def test_names_are_the_unicode_pydicom_decodes(self):
        charset_dcm = [p for p in self.importable if p.startswith(CHARSET_FILES)]
        self.assertGreaterEqual(len(charset_dcm), 15)
        for path in charset_dcm:
            with self.subTest(file=os.path.basename(path)):
                ds = _pydicom_read(path)
                image_set = self.by_series[str(ds.SeriesInstanceUID)]
                self.assertEqual(image_set["DICOMTags"]["DICOMPatientName"], str(ds.PatientName))
        # The decoded text is real Unicode of the expected scripts, raw UTF-8 in the file.
        scripts = {"chrKoreanMulti.dcm": "\uac00-\ud7a3", "chrJapMulti.dcm": "\u3040-\u309f",
                   "chrArab.dcm": "\u0600-\u06ff", "chrGreek.dcm": "\u0370-\u03ff",
                   "chrHbrw.dcm": "\u05d0-\u05ea", "chrRuss.dcm": "\u0400-\u04ff",
                   "chrH31.dcm": "\u4e00-\u9fff", "chrI2.dcm": "\uac00-\ud7a3",
                   "chrX2.dcm": "\u4e00-\u9fff"}
        for name, block in scripts.items():
            with self.subTest(file=name):
                ds = _pydicom_read(os.path.join(CHARSET_FILES, name))
                text = self.by_series[str(ds.SeriesInstanceUID)]["DICOMTags"]["DICOMPatientName"]
                self.assertRegex(text, "[%s]" % block)
                self.assertIn(text.encode("utf-8"), self.raw)

    def test_japanese_iso_2022_ir_87_keeps_all_component_groups(self):
        ds = _pydicom_read(os.path.join(CHARSET_FILES, "chrH31.dcm"))
        name = self.by_series[str(ds.SeriesInstanceUID)]["DICOMTags"]["DICOMPatientName"]
        self.assertEqual(name.count("="), 2)
        self.assertEqual(tuple(name.split("=")), tuple(ds.PatientName.components))

    def test_counts_series_and_instances_per_study_across_the_import(self):
        series_of, instances_of = collections.defaultdict(set), collections.defaultdict(set)
        for path in self.importable:
            ds = _pydicom_read(path)
            study = ds.get("StudyInstanceUID")
            if study:
                series_of[str(study)].add(str(ds.SeriesInstanceUID))
                instances_of[str(study)].add(str(ds.get("SOPInstanceUID") or path))
        for image_set in self.doc["imageSets"]:
            tags = image_set["DICOMTags"]
            with self.subTest(series=tags["DICOMSeriesInstanceUID"]):
                study = tags["DICOMStudyInstanceUID"]
                self.assertEqual(tags["DICOMNumberOfStudyRelatedSeries"], len(series_of[study]))
                self.assertEqual(tags["DICOMNumberOfStudyRelatedInstances"], len(instances_of[study]))
        self.assertTrue(any(len(s) > 1 for s in series_of.values()), "a multi-series study exists")

    def test_tags_come_from_the_files_and_empty_ones_are_left_out(self):
        ds = _pydicom_read(os.path.join(TEST_FILES, "CT_small.dcm"))
        tags = self.by_series[str(ds.SeriesInstanceUID)]["DICOMTags"]
        self.assertEqual(tags["DICOMPatientId"], ds.PatientID)
        self.assertEqual(tags["DICOMStudyInstanceUID"], ds.StudyInstanceUID)
        self.assertEqual(tags["DICOMSeriesModality"], ds.Modality)
        self.assertEqual(tags["DICOMStudyDate"], ds.StudyDate)
        self.assertEqual(tags["DICOMSeriesNumber"], int(ds.SeriesNumber))
        self.assertIsInstance(tags["DICOMSeriesNumber"], int)
        self.assertEqual(ds.AccessionNumber, "")
        self.assertNotIn("DICOMAccessionNumber", tags)
        for image_set in self.doc["imageSets"]:
            for key, value in image_set["DICOMTags"].items():
                self.assertNotEqual(value, "", key)

    def test_metadata_is_well_formed_and_varied(self):
        sets = self.doc["imageSets"]
        for s in sets:
            self.assertRegex(s["imageSetId"], r"^[0-9a-z]{32}$")
            self.assertEqual(s["version"], 1)
            self.assertGreaterEqual(s["updatedAt"], s["createdAt"])
            self.assertIn(s["storageTier"], ("FREQUENT_ACCESS", "ARCHIVE_INSTANT_ACCESS"))
        created = collections.Counter(s["createdAt"] for s in sets)
        updated = collections.Counter(s["updatedAt"] for s in sets)
        self.assertGreater(len(created), 1)
        self.assertTrue(any(n > 1 for n in created.values()), "some createdAt ties")
        self.assertTrue(any(n > 1 for n in updated.values()), "some updatedAt ties")
        self.assertTrue(any(s["createdAt"] % 1 for s in sets), "fractions of seconds")
        primary = [s["isPrimary"] for s in sets]
        self.assertGreater(primary.count(True), primary.count(False) > 0 and primary.count(False))
        tiers = [s["storageTier"] for s in sets]
        self.assertGreater(tiers.count("FREQUENT_ACCESS"), len(tiers) // 2)

    def test_a_second_import_writes_the_same_file(self):
        other = os.path.join(self.tmp, "again.json")
        self.assertEqual(import_demo(other).returncode, 0)
        with open(other, "rb") as fh:
            self.assertEqual(fh.read(), self.raw)

    def test_another_datastore_gets_other_ids(self):
        other = os.path.join(self.tmp, "other.json")
        result = run_cli("import", "--datastore-id", OTHER_DATASTORE, "--out", other,
                         os.path.join(CHARSET_FILES, "chrArab.dcm"))
        self.assertEqual(result.returncode, 0)
        with open(other, encoding="utf-8") as fh:
            theirs = json.load(fh)["imageSets"][0]
        mine = self.by_series[theirs["DICOMTags"]["DICOMSeriesInstanceUID"]]
        self.assertNotEqual(theirs["imageSetId"], mine["imageSetId"])
        self.assertEqual(theirs["DICOMTags"]["DICOMPatientName"], mine["DICOMTags"]["DICOMPatientName"])

    def test_output_never_contains_tag_values(self):
        output = self.result.stdout + self.result.stderr
        for s in self.doc["imageSets"]:
            for key in ("DICOMPatientName", "DICOMPatientId", "DICOMStudyDescription"):
                value = s["DICOMTags"].get(key)
                if value and len(value) > 3 and value not in DATA_ROOT:
                    self.assertNotIn(value, output.replace(DATA_ROOT, ""), key)


@unittest.skipUnless(os.path.isfile(os.path.join(TEST_FILES, "CT_small.dcm")),
                     "python3-pydicom's CT_small.dcm is absent: broken-file handling is not checked")
class BrokenFilesTest(unittest.TestCase):
    """Empty, truncated, non-DICOM and unopenable files are listed and skipped."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hil-broken-")
        self.dir = os.path.join(self.tmp, "in")
        os.mkdir(self.dir)
        with open(os.path.join(TEST_FILES, "CT_small.dcm"), "rb") as fh:
            self.ct = fh.read()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    def test_each_bad_file_is_listed_with_a_reason_and_good_ones_imported(self):
        self._write("good.dcm", self.ct)
        self._write("empty.dcm", b"")
        self._write("truncated.dcm", self.ct[:1001])
        self._write("notes.txt", "Patient notes: nothing to see\n".encode())
        os.symlink(os.path.join(self.tmp, "nowhere.dcm"), os.path.join(self.dir, "dangling.dcm"))
        os.mkfifo(os.path.join(self.dir, "pipe.dcm"))
        os.mkdir(os.path.join(self.tmp, "elsewhere"))
        os.symlink(os.path.join(self.tmp, "elsewhere"), os.path.join(self.dir, "linked-folder"))
        missing = os.path.join(self.tmp, "missing.dcm")
        out = os.path.join(self.tmp, "data.json")
        result = run_cli("import", "--datastore-id", DATASTORE, "--out", out, self.dir, missing)
        self.assertEqual(result.returncode, 0, result.stderr)
        skips, summary = _parse_stderr(result.stderr)
        reasons = {os.path.basename(p): r for p, r in skips.items()}
        self.assertEqual(reasons, {
            "empty.dcm": "empty file",
            "truncated.dcm": "truncated DICOM data",
            "notes.txt": "not a DICOM file (no DICM prefix, no usable UIDs)",
            "dangling.dcm": "cannot open: dangling symbolic link",
            "pipe.dcm": "not a regular file",
            "linked-folder": "is a directory",
            "missing.dcm": "cannot open: No such file or directory",
        })
        self.assertEqual(summary, (8, 1, 1, 7))
        self.assertEqual(result.stderr.splitlines()[-1], "read 8 files: 1 image set from 1 file, 7 skipped")
        with open(out, encoding="utf-8") as fh:
            self.assertEqual(len(json.load(fh)["imageSets"]), 1)
        ds = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
        for value in (str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID):
            self.assertNotIn(value, result.stderr + result.stdout)

    def test_the_summary_counts_files_read_and_the_files_that_made_the_image_sets(self):
        self._write("a.dcm", self.ct)
        self._write("b.dcm", self.ct)   # the same series again: one image set from two files
        self._write("c.txt", b"not DICOM")
        result = run_cli("import", "--datastore-id", DATASTORE, "--out",
                         os.path.join(self.tmp, "x.json"), self.dir)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.splitlines()[-1], "read 3 files: 1 image set from 2 files, 1 skipped")

    def test_a_file_cut_inside_the_pixel_data_is_truncated_too(self):
        # CT_small.dcm's Pixel Data (32768 bytes) ends 138 bytes before the file does.
        self._write("cut.dcm", self.ct[:-1000])
        result = run_cli("import", "--datastore-id", DATASTORE, "--out",
                         os.path.join(self.tmp, "x.json"), self.dir)
        self.assertEqual(_parse_stderr(result.stderr)[0],
                         {os.path.join(self.dir, "cut.dcm"): "truncated DICOM data (pixel data)"})

    def test_no_image_set_at_all_fails_with_a_message_and_writes_nothing(self):
        self._write("empty.dcm", b"")
        out = os.path.join(self.tmp, "data.json")
        result = run_cli("import", "--datastore-id", DATASTORE, "--out", out, self.dir)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("no image set", result.stderr)
        self.assertFalse(os.path.exists(out))

    def test_a_bad_datastore_id_is_refused(self):
        for bad in ("ABC", "0123456789ABCDEF0123456789abcdef", "0" * 33):
            with self.subTest(datastore=bad):
                result = run_cli("import", "--datastore-id", bad, "--out",
                                 os.path.join(self.tmp, "x.json"), TEST_FILES)
                self.assertEqual(result.returncode, 2)
                self.assertIn("[0-9a-z]{32}", result.stderr)

    def test_strings_are_cut_to_the_model_max_lengths(self):
        ds = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
        with warnings.catch_warnings():  # pydicom warns (quoting the values) about the VR limits
            warnings.simplefilter("ignore")
            ds.SeriesInstanceUID = "1.2.3.4.5.6.7.8.9"
            ds.StudyDescription = "d" * 600
            ds.BodyPartExamined = "b" * 200
            ds.PatientSex = "s" * 20
            ds.Modality = "m" * 40
            ds.save_as(os.path.join(self.dir, "long.dcm"))
        out = os.path.join(self.tmp, "data.json")
        self.assertEqual(run_cli("import", "--datastore-id", DATASTORE, "--out", out, self.dir).returncode, 0)
        with open(out, encoding="utf-8") as fh:
            tags = json.load(fh)["imageSets"][0]["DICOMTags"]
        self.assertEqual(len(tags["DICOMStudyDescription"]), 512)
        self.assertEqual(len(tags["DICOMSeriesBodyPart"]), 128)
        self.assertEqual(len(tags["DICOMPatientSex"]), 16)
        self.assertEqual(len(tags["DICOMSeriesModality"]), 32)


if __name__ == "__main__":
    unittest.main()
