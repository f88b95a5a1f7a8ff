import os
import tempfile

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Calibrations the user measured (`capsim calibrate`'s default output) must not change what the tests see.
os.environ["CAPSIM_USER_CALIBRATIONS"] = tempfile.mkdtemp(prefix="capsim-test-user-calibrations-")


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
