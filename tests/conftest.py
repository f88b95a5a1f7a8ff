import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Calibrations the user measured (`capsim calibrate`'s default output) must not change what the tests see: each test
# process (each xdist worker) reads an empty folder of its own instead, removed when the process exits.
os.environ["CAPSIM_USER_CALIBRATIONS"] = _user_calibrations = tempfile.mkdtemp(prefix="capsim-test-user-calibrations-")
atexit.register(shutil.rmtree, _user_calibrations, ignore_errors=True)


class _Upload:
    """What st.file_uploader returns, for the dashboard's AppTest suites."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self._data = name, text.encode()

    def getvalue(self) -> bytes:
        return self._data


@pytest.fixture
def upload(monkeypatch):
    """Make every file_uploader return the file given (AppTest cannot upload)."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    def give(name: str, text: str) -> None:
        def fake(*_args, **_kwargs):
            return _Upload(name, text)
        monkeypatch.setattr(st, "file_uploader", fake)
        monkeypatch.setattr(DeltaGenerator, "file_uploader", lambda self, *a, **k: _Upload(name, text))
    return give


@pytest.fixture(scope="session")
def priced(tmp_path_factory):
    """``predict_row`` priced once per (row, calibration) in the session (tests/priced.py): under xdist the workers
    share what they priced through the run's common temporary folder (pytest-xdist's docs: the base temp's parent),
    in one process it is kept in memory."""
    from priced import Priced

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return Priced(tmp_path_factory.getbasetemp().parent / "capsim-priced" if worker else None)


@pytest.fixture(scope="session")
def default_page():
    """A dashboard page run once per session with its defaults (AppTest), for the tests that only read its default
    view (test_ui.py's and test_ui_honest.py's). The Scaling page's default is a planner search and confirmation
    per rate: run once, with a timeout that fits it on a loaded machine, whichever of those files runs first."""
    from ui_helpers import page

    runs = {}

    def run(module: str):  # noqa: ANN202
        if module not in runs:
            runs[module] = page(module, timeout=900)
        return runs[module]
    return run


@pytest.fixture(scope="session")
def distserve_report():
    """``capsim validate bench --suite distserve`` run once per test process (its flag variants replay the runs three
    times), for test_bench_suites.py and test_bench_flag_variants.py."""
    from capsim.validation.bench_suites import run_bench_suite

    return run_bench_suite("distserve")


@pytest.fixture(scope="session")
def distserve(distserve_report):
    """The distserve report's rows by (how predicted, run, metric)."""
    return {(r.source.split(" ", 1)[1], r.case, r.metric): r for r in distserve_report.rows}

# The files that take longest (`pytest --durations`, 2-core machine), longest first. xdist (--dist loadfile) hands
# files to workers in collection order, so a long file collected last runs alone at the end while the other
# workers idle (test_validate_local.py, ~3 min loaded, was among the last); collected first, the short files fill
# in around them (longest-processing-time-first). Only the order changes: every test still runs, each file's tests
# in their own order. A file missing from the list keeps its place after these.
LONGEST_FIRST = (
    "browser/test_dashboard_browser.py",
    "test_validate_local.py",
    "test_ui_honest.py",
    "test_plan_faces.py",
    "test_torchtitan.py",
    "test_train_cli.py",
    "test_calibrate.py",
    "test_training_modern.py",
    "test_ui.py",
    "test_study.py",
    "test_training_nemo.py",
    "test_serving_validation.py",
)


def pytest_collection_modifyitems(session, config, items):  # noqa: ARG001
    tests = os.path.dirname(os.path.abspath(__file__))

    def rank(item) -> int:  # noqa: ANN001
        rel = os.path.relpath(str(item.path), tests).replace(os.sep, "/")
        return LONGEST_FIRST.index(rel) if rel in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the rest keep their collection order
