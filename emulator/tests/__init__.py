# Tests of the healthimaging-local emulator (unittest). Run from the repo root:
#   /usr/bin/python3 -m unittest discover -s emulator/tests -t .
# The package under test is emulator/healthimaging_local, imported as healthimaging_local.
import os
import sys

_EMULATOR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _EMULATOR not in sys.path:
    sys.path.insert(0, _EMULATOR)
