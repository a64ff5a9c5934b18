"""healthimaging-local: an emulator of AWS HealthImaging's SearchImageSets.

Modules: dicom_import (DICOM files -> data file), store (data file -> memory),
search (request validation, filtering, sorting, paging tokens), sigv4 (request
signature verification), faults (errors on demand), server (HTTP), cli (commands).
Standard library plus pydicom (for `import` only).
"""

__version__ = "0.1.0"

# Shapes and constants shared by several modules (from service-2.json, 2023-07-19).
SERVICE_SIGNING_NAME = "medical-imaging"
ID_PATTERN = r"[0-9a-z]{32}"
STORAGE_TIERS = ("FREQUENT_ACCESS", "ARCHIVE_INSTANT_ACCESS")

# DICOMTags member -> (kind, max length). Kinds: "str", "uid" (pattern [0-9.]+), "int".
DICOM_TAGS = {
    "DICOMPatientId": ("str", 512),
    "DICOMPatientName": ("str", 512),
    "DICOMPatientBirthDate": ("str", 36),
    "DICOMPatientSex": ("str", 16),
    "DICOMStudyInstanceUID": ("uid", 512),
    "DICOMStudyId": ("str", 512),
    "DICOMStudyDescription": ("str", 512),
    "DICOMNumberOfStudyRelatedSeries": ("int", (0, 1000000)),
    "DICOMNumberOfStudyRelatedInstances": ("int", (0, 1000000)),
    "DICOMAccessionNumber": ("str", 512),
    "DICOMSeriesInstanceUID": ("uid", 512),
    "DICOMSeriesModality": ("str", 32),
    "DICOMSeriesBodyPart": ("str", 128),
    "DICOMSeriesNumber": ("int", (-2147483648, 2147483647)),
    "DICOMStudyDate": ("str", 36),
    "DICOMStudyTime": ("str", 56),
}
