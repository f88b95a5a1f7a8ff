"""streamlit.testing AppTest for every page: defaults render, an input change changes the result, a bad input
shows an error (never a traceback), and the view lives in the URL's query parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import charts, errors, page, param, shown

from capsim.errors import SpecError
from capsim.ui.common import hf_model
from capsim.ui.registry import PAGES

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LLAMA_CONFIG = {"model_type": "llama", "_name_or_path": "my-llama", "hidden_size": 2048, "num_hidden_layers": 16,
                "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 5632,
                "vocab_size": 32000, "max_position_embeddings": 4096}


# --- the app and its safety net ------------------------------------------------------------------

def test_app_wires_every_page_and_renders_the_default():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert len(PAGES) >= 5 and PAGES[0].url_path == "overview"
    assert len({p.url_path for p in PAGES}) == len(PAGES)


def test_last_resort_shows_a_short_error_not_a_traceback():
    at = AppTest.from_string("from capsim.ui.common import last_resort\n"
                             "def boom():\n    raise RuntimeError('kaput')\n"
                             "last_resort(boom)()").run()
    assert not at.exception
    assert "kaput" in errors(at)


# --- overview ------------------------------------------------------------------------------------

def test_overview_renders_and_reacts():
    at = page("overview")
    assert not at.exception and charts(at) == 1
    assert "bf16 TFLOP/s" in at.dataframe[0].value.columns
    at.radio(key="fmt").set_value("fp8").run()
    assert "fp8 TFLOP/s" in at.dataframe[0].value.columns
    assert param(at, "fmt") == "fp8"


def test_a_bad_link_value_is_named_and_ignored():
    at = page("overview", fmt="fp128")
    assert not at.exception
    assert "fmt=fp128" in shown(at.warning[0].value)
    assert "bf16 TFLOP/s" in at.dataframe[0].value.columns


# --- memory --------------------------------------------------------------------------------------

def test_memory_page_renders_and_reacts():
    at = page("memory")
    assert not at.exception and charts(at) == 1
    before = at.dataframe[0].value.copy()
    at.selectbox(key="model").select("llama-2-70b").run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)
    assert param(at, "model") == "llama-2-70b"


def test_memory_page_reports_bad_input():
    at = page("memory")
    at.selectbox(key="model").select("gpt2-124m").run()
    at.number_input(key="seq").set_value(4096).run()  # GPT-2 has 1024 learned positions
    assert not at.exception
    assert "seq_len" in errors(at)


def test_memory_page_takes_its_view_from_the_link():
    at = page("memory", gpus="16", model="llama-2-7b")
    assert not at.exception
    assert at.number_input(key="gpus").value == 16
    assert at.dataframe[0].value["dp"].max() == 16


# --- training planner ----------------------------------------------------------------------------

def test_training_page_renders_the_default(default_page):
    at = default_page("training")
    assert not at.exception and not at.error
    assert charts(at) == 3  # step breakdown, memory, pipeline Gantt
    labels = [m.label for m in at.metric]
    assert {"Step time", "MFU", "Time to train", "Cost to train"} <= set(labels)
    assert len(at.dataframe[0].value) >= 2  # the best layouts side by side


def test_training_page_reacts_to_the_model_and_keeps_it_in_the_link():
    at = page("training", gpus="16", gb="64", model="llama-2-7b")
    before = at.dataframe[0].value.copy()
    at.selectbox(key="model").select("llama-2-13b").run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)
    assert param(at, "model") == "llama-2-13b" and param(at, "gpus") == "16"


def test_training_manual_layout_and_its_errors():
    at = page("training", mode="manual", gpus="16", gb="64", model="llama-2-13b", tp="2", pp="2")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert (table["tp"].iloc[0], table["pp"].iloc[0], table["dp"].iloc[0]) == (2, 2, 4)
    step = table["step_s"].iloc[0]
    at.number_input(key="tp").set_value(4).run()
    assert at.dataframe[0].value["step_s"].iloc[0] != step
    at.number_input(key="tp").set_value(3).run()
    assert not at.exception
    assert "does not divide" in errors(at)


def test_training_reads_an_uploaded_hf_config(upload):
    upload("config.json", json.dumps(LLAMA_CONFIG))
    at = page("training", model_src="config.json", gpus="8", gb="64")
    assert not at.exception and not at.error
    assert "my-llama" in shown(at.subheader[0].value)
    upload("config.json", "{not json")
    at = page("training", model_src="config.json")
    assert not at.exception
    assert "not valid JSON" in errors(at)


def test_hf_model_names_the_missing_field():
    with pytest.raises(SpecError, match="num_hidden_layers"):
        hf_model(json.dumps({k: v for k, v in LLAMA_CONFIG.items() if k != "num_hidden_layers"}), "x")


# --- serving simulator ---------------------------------------------------------------------------

def test_serving_page_renders_the_default(default_page):
    at = default_page("serving")
    assert not at.exception and not at.error
    assert charts(at) == 5  # CDFs, throughput, latency, SLO attainment against load, KV and queue over time
    sweep = None
    for button in at.get("download_button"):
        if button.proto.label == "load sweep CSV":
            sweep = button
    assert sweep is not None


def test_serving_page_reacts_to_replicas():
    at = page("serving", requests="120")
    before = at.dataframe[0].value.copy()
    at.number_input(key="replicas").set_value(2).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 2 and not at.dataframe[0].value.equals(before)
    assert param(at, "replicas") == "2"


def test_serving_page_reports_bad_inputs():
    at = page("serving", requests="60", loads="1,x")
    assert not at.exception and "load sweep" in errors(at)
    at = page("serving", requests="60", tp="3")  # llama-2-7b has 32 heads
    assert not at.exception and "plan.tp" in errors(at)


def test_serving_runs_are_cached_by_their_inputs(monkeypatch):
    from capsim.ui import serving
    calls = []
    real = serving.simulate
    monkeypatch.setattr(serving, "simulate", lambda *a, **k: calls.append(1) or real(*a, **k))
    serving.run_serving.clear()
    at = page("serving", requests="60", loads="1,2")
    assert not at.exception and len(calls) == 2
    at.run()
    assert len(calls) == 2, "a rerun with the same inputs simulates nothing"


def test_serving_replays_an_uploaded_trace(upload):
    rows = "\n".join(f"{0.5 * i},{200 + 10 * i},{20 + i}" for i in range(40))
    upload("trace.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows)
    at = page("serving", wl_src="trace CSV", rate="0", loads="1,2")
    assert not at.exception and not at.error
    assert "40 requests" in at.caption[1].value
    upload("trace.csv", "when,prompt\n1,2\n")
    at = page("serving", wl_src="trace CSV", rate="0", loads="1")
    assert not at.exception and "num_prefill_tokens" in errors(at)


# --- calibration explorer ------------------------------------------------------------------------

def test_calibration_page_renders_samples_fits_and_a_comparison(default_page):
    at = default_page("calibration")
    assert not at.exception and not at.error
    assert charts(at) >= 6  # GEMM fit, GEMM parity, memory, collectives, and the comparison
    table = at.dataframe[-1].value
    assert list(table.columns) == ["parameter", "A100-SXM4-80GB-profile", "A100-SXM4-80GB"]


def test_calibration_page_reacts_to_the_calibration():
    at = page("calibration", cal="H100-SXM5-80GB-profile", compare="none")
    assert not at.exception and not at.error
    assert "H100" in at.expander[0].label
    at.selectbox(key="cal").select("L4").run()  # a datasheet calibration: curves only
    assert not at.exception
    assert "no measured samples" in at.info[0].value
    assert charts(at) >= 3


def test_calibration_page_reports_a_bad_upload(upload):
    upload("cal.json", json.dumps({"schema": "something-else"}))
    at = page("calibration", src="upload")
    assert not at.exception
    assert "schema" in errors(at)


# --- capacity planner ----------------------------------------------------------------------------

SMALL_PLAN = dict(accs="A100-SXM4-80GB,L40S", quants="none,int8", requests="100")


def test_capacity_page_renders_the_default_with_a_pareto_chart(default_page):
    at = default_page("capacity")
    assert not at.exception and not at.error
    assert charts(at) == 1
    assert shown(at.subheader[0].value).startswith("Cheapest:")
    assert len(at.dataframe[0].value) >= 1  # fleets that meet the SLOs


def test_capacity_page_reacts_to_the_rate():
    at = page("capacity", **SMALL_PLAN, rate="5")
    gpus = int(at.metric[0].value)
    at.number_input(key="rate").set_value(40.0).run()
    assert not at.exception and not at.error
    assert int(at.metric[0].value) > gpus
    assert param(at, "rate") == "40.0"


def test_capacity_page_reports_bad_inputs():
    at = page("capacity", **SMALL_PLAN, ttft="0", tpot="0")
    assert not at.exception and "no latency target" in errors(at)
    at = page("capacity", requests="100", accs="")
    assert not at.exception and "accelerator" in errors(at)


# --- compression and precision what-ifs ----------------------------------------------------------

@pytest.mark.parametrize("study", ["quantization", "sparsity", "distillation", "training precision", "batch size"])
def test_whatif_studies_render(study):
    at = page("whatif", study=study)
    assert not at.exception and not at.error
    assert charts(at) >= 1 and at.dataframe


def test_whatif_quantization_reacts_to_tp():
    at = page("whatif", study="quantization", model="llama-2-13b")
    before = at.dataframe[0].value.copy()
    at.number_input(key="tp").set_value(2).run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)


def test_whatif_reports_bad_inputs():
    at = page("whatif", study="training precision", tp="3")
    assert not at.exception and "does not divide" in errors(at)
    at = page("whatif", study="batch size", batches="256,lots")
    assert not at.exception and "global batches" in errors(at)


# --- scaling study -------------------------------------------------------------------------------

def test_scaling_training_and_model_size_react():
    at = page("scaling", study="training", gpus="8,64")
    assert not at.exception and not at.error and charts(at) == 3
    assert list(at.dataframe[0].value["gpus"]) == [8, 64]
    at = page("scaling", study="model size")
    before = at.dataframe[0].value.copy()
    at.text_input(key="flops").input("1e20,1e22").run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 2 and not at.dataframe[0].value.equals(before)


def test_scaling_reports_bad_inputs():
    at = page("scaling", rates="0,10")
    assert not at.exception and "rates" in errors(at)


def test_calibration_page_plots_a_measured_files_own_samples(upload):
    from capsim.calibration import load_calibration
    d = load_calibration("A100-SXM4-80GB").to_dict()
    gemm = [{"bench": "gemm", "op": op, "m": m, "n": n, "k": 512, "dtype": "bf16", "threads": 1,
             "time_s": 2 * m * n * 512 / 1e14 + 1e-5} for op, n in (("qkv", 1536), ("up", 4096), ("down", 512))
            for m in (1, 16, 256, 4096)] + [{"bench": "gemm", "op": "extra", "m": 64, "n": n, "k": n, "dtype": "bf16",
                                              "threads": 1, "time_s": 1e-4} for n in range(128, 1280, 128)]
    memory = [{"bench": "memory", "category": "norm", "bytes": b, "threads": 1, "time_s": b / 1e12 + 2e-6}
              for b in (1e4, 1e6, 1e8)]
    comm = [{"bench": "comm", "collective": "all_reduce", "bytes": b, "group": 2, "tier": "intra",
             "time_s": 1e-5 + b / 1e11} for b in (8, 1e4, 1e8)]
    d.update(name="measured-test", kind="measured", samples={"gemm": gemm, "memory": memory, "comm": comm})
    upload("measured.json", json.dumps(d))
    at = page("calibration", src="upload", compare="none")
    assert not at.exception and not at.error and not at.info
    assert charts(at) == 4  # GEMM samples and fit, GEMM parity, memory, collectives
    assert "measured-test" in at.expander[0].label
