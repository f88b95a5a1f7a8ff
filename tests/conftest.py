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
