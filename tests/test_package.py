"""The package installs whole: a wheel built from this checkout holds every data file the package reads
(calibrations, catalogs, traces, validation data, GPU profiles). `.ci/run` also installs that wheel into a fresh
virtual environment outside the checkout and runs commands there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from capsim.calibration import available, calibrations_dir
from capsim.specs.catalog import accelerators

ROOT = Path(__file__).resolve().parents[1]


def _data_files() -> set[str]:
    """Every file under capsim/ that is not Python source or bytecode (nor hidden, like a partial calibration)."""
    package = ROOT / "capsim"
    return {str(p.relative_to(ROOT)) for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
            and "__pycache__" not in p.parts and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a clean copy of the checkout (a stale build/ folder would hide a broken glob)."""
    src, out = tmp_path_factory.mktemp("src") / "capsim", tmp_path_factory.mktemp("dist")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                                             "tests", "artifacts"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(out), str(src)], check=True, capture_output=True, text=True)
    (path,) = out.glob("capsim-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_every_data_file(wheel):
    names = set(wheel.namelist())
    data = _data_files()
    assert {"capsim/py.typed", "capsim/specs/catalog/models.yaml", "capsim/data/traces/splitwise_conv.csv.gz",
            "capsim/data/validation/params_published.csv"} <= data
    assert sorted(data - names) == []


def test_every_catalog_accelerator_ships_a_calibration_in_the_wheel(wheel):
    names = set(wheel.namelist())
    for acc in accelerators():
        assert f"capsim/calibrations/datasheet/{acc}.json" in names
    assert {"capsim/calibrations/profile/A100-SXM4-80GB-profile.json",
            "capsim/calibrations/profile/H100-SXM5-80GB-profile.json"} <= names


def test_shipped_calibrations_live_inside_the_package():
    root = calibrations_dir().resolve()
    assert root == (ROOT / "capsim" / "calibrations").resolve()
    assert all(p.resolve().is_relative_to(root) for p in available().values())
    assert not (ROOT / "calibrations").exists()
