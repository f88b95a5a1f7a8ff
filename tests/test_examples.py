"""CI runs the example scripts on small settings."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["fleet_sizing_customer_service.py", "train_70b_on_h100.py",
                                    "quantization_whatif.py", "fsdp_small_batch.py"])
def test_example_runs(script):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--small"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
