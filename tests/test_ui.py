from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_memory_page_renders_and_reacts():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.dataframe, "the memory table is shown"
    before = at.dataframe[0].value.copy()
    at.selectbox(key="model").select("llama-2-70b").run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)


def test_memory_page_reports_bad_input():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="model").select("gpt2-124m").run()
    at.number_input(key="seq").set_value(4096).run()  # GPT-2 has 1024 learned positions
    assert not at.exception
    assert at.error and "seq_len" in at.error[0].value
