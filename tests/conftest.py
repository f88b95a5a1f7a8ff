import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
# Calibrations the user measured (`capsim calibrate`'s default output) must not change what the tests see.
os.environ["CAPSIM_USER_CALIBRATIONS"] = tempfile.mkdtemp(prefix="capsim-test-user-calibrations-")
