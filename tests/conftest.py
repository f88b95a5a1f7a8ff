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


# The dashboard's views that AppTest renders in this process and that take a minute to compute: (page, query) ->
# the test that renders them. st.cache_data keeps what a view computed for every later render in this process.
SLOW_VIEWS = {("scaling", ()): "tests/test_ui.py::test_scaling_serving_renders_the_default"}


@pytest.fixture(scope="module")
def slow_views_meanwhile(request):
    """While the browser suite (tests/browser, collected first) waits on its own dashboard server and Chromium,
    this process is idle: render the slow AppTest views (SLOW_VIEWS) meanwhile, in a thread, so that their
    values are in st.cache_data when their tests render them again. Those tests check the page they render, as
    before; a value whose computation failed is not cached, so they compute it again and see the failure. Only
    where those tests are selected and the browser suite runs (Chromium present); joined before the module
    ends, so it never overlaps another module's tests (or their monkeypatches)."""
    import contextlib
    import shutil
    import threading

    selected = {item.nodeid for item in request.session.items}
    views = [(name, dict(query)) for (name, query), test in SLOW_VIEWS.items() if test in selected]
    if not views or not (shutil.which("chromium") or shutil.which("chromium-browser")):
        yield
        return
    from ui_helpers import page

    def render() -> None:
        for name, query in views:
            with contextlib.suppress(Exception):  # the view's own test renders it again and reports it
                page(name, timeout=900, **query)

    thread = threading.Thread(target=render, name="slow-views", daemon=True)
    thread.start()
    yield
    thread.join()
