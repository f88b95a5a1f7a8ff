"""streamlit.testing AppTest for every page: defaults render, an input change changes the result,
a bad input shows an error (never a traceback)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from capsim.ui.registry import PAGES

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def page(module: str) -> AppTest:
    return AppTest.from_string(f"from capsim.ui.{module} import render\nrender()", default_timeout=60).run()


def test_app_wires_every_page_and_renders_the_default():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert len(PAGES) >= 2 and PAGES[0].url_path == "overview"


def test_overview_renders():
    at = page("overview")
    assert not at.exception and at.dataframe


def test_memory_page_renders_and_reacts():
    at = page("memory")
    assert not at.exception
    assert at.dataframe, "the memory table is shown"
    before = at.dataframe[0].value.copy()
    at.selectbox(key="model").select("llama-2-70b").run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)


def test_memory_page_reports_bad_input():
    at = page("memory")
    at.selectbox(key="model").select("gpt2-124m").run()
    at.number_input(key="seq").set_value(4096).run()  # GPT-2 has 1024 learned positions
    assert not at.exception
    assert at.error and "seq_len" in at.error[0].value
