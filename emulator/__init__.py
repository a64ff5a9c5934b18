# The local emulator of AWS HealthImaging SearchImageSets (Python 3 + pydicom).
# This file only makes `emulator/` importable so that
#   /usr/bin/python3 -m unittest discover -s emulator/tests -t .
# can find the tests; the code itself lives in emulator/healthimaging_local/ and is
# imported as the top-level package `healthimaging_local` (see bin/healthimaging-local).
