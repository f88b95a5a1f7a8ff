"""Host time an engine release does not price but has a published bound on (engines.yaml cpu_bound): a band in
``capsim validate serving``, never the point (TensorRT-LLM 1.x's PyTorch backend: NVIDIA/TensorRT-LLM PR #10273's
Grace host_step_time, 45.11 ms per iteration at 1536 sequences per rank)."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from capsim.analytic.serving import StepShape, iteration_time
from capsim.calibration import perf_for
from capsim.cli import app
from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator, get_model, load_catalog
from capsim.specs.engine import HostCost, get_engine, profile_from_dict
from capsim.specs.plans import ServePlan

runner = CliRunner()
GRACE_NOTE = "host time not priced: with NVIDIA/TensorRT-LLM PR #10273's Grace host time (<= 29.4 us per sequence"
OTHER_NOTE = ("host time not priced (no figure for this host; an upper bound if its host path is no slower than "
              "Grace's, as TransformerEngine#2053 times x86's): with NVIDIA/TensorRT-LLM PR #10273's Grace host time "
              "(<= 29.4 us per sequence")


def test_the_bound_is_the_published_figure_spread_over_the_sequences():
    eng = get_engine("tensorrt-llm-1.1.0")
    assert eng.cpu_bound == {"grace": (0.0, pytest.approx(45.11e-3 / 1536, rel=1e-3))}
    assert "PR #10273" in eng.sources["cpu_bound"] and "assumption" in eng.sources["cpu_bound"]
    assert eng.host_cost(1) == HostCost()  # the point prices no host time
    for name in ("tensorrt-llm-0.14", "tensorrt-llm-0.10", "vllm", "sglang"):
        assert get_engine(name).cpu_bound == {}, name


def test_only_the_grace_superchips_name_their_host():
    assert get_accelerator("gb200").host_cpu == get_accelerator("gb300").host_cpu == "grace"
    assert "Grace" in get_accelerator("gb200").host_cpu_source and "Grace" in get_accelerator("gb300").host_cpu_source
    for name in ("b200", "b300", "h100", "h200", "a100"):
        assert get_accelerator(name).host_cpu is None, name  # an HGX/DGX board's host is not the part's


@pytest.mark.parametrize(("bound", "words"), [
    ({"grace": [2.9e-5]}, ["engine.cpu_bound.grace", "[intercept_s, per_sequence_s]"]),
    ({"grace": ["fast", 2.9e-5]}, ["engine.cpu_bound.grace", "'fast'"]),
    ({"grace": [0.0, -2.9e-5]}, ["engine.cpu_bound.grace", ">= 0"]),
    ({"grace": [0.0, float("inf")]}, ["engine.cpu_bound.grace", "finite"]),
    ({"xeon": [0.0, 2.9e-5]}, ["engine.cpu_bound.xeon", "unknown host CPU 'xeon'", "grace"]),
    ([0.0, 2.9e-5], ["cpu_bound", "must map a host CPU"]),
])
def test_a_bad_bound_is_refused_in_one_line_naming_the_field(bound, words):
    entry = {**load_catalog("engines")["tensorrt-llm"], "cpu_bound": bound}
    with pytest.raises(SpecError) as err:
        profile_from_dict("tensorrt-llm", entry)
    assert "\n" not in str(err.value)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_a_bad_host_cpu_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"accelerator GB200\.host_cpu.*unknown host CPU 'xeon'"):
        get_accelerator("gb200").with_(host_cpu="xeon")
    with pytest.raises(SpecError, match=r"accelerator B200\.host_cpu_source"):
        get_accelerator("b200").with_(host_cpu="grace")


def test_the_bound_prices_nothing():
    """A step of capsim serve and the planner is the same with or without the bound: it is for reporting."""
    model, acc = get_model("llama-3.1-8b"), get_accelerator("gb200")
    eng = get_engine("tensorrt-llm")
    shape = StepShape.decode(1536, 1024)
    got = [iteration_time(model, ServePlan(), perf_for(acc), shape, e, acc).total_s
           for e in (eng, eng.with_(cpu_bound={}))]
    assert got[0] == got[1]


def _rows(tmp_path, edits: list[dict[str, str]]):
    """The shipped TensorRT-LLM 1.0 Llama-3.1-8B 128/128 max-load row (trtllm-bench) with each edit, one row each,
    through ``capsim validate serving --json``."""
    text = resources.files("capsim.data").joinpath("validation", "serving_published.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    header = lines[0].split(",")
    base = dict(zip(header, next(ln for ln in lines if ln.startswith("trtllm-v1.0,")).split(","), strict=True))
    base.update(batch="3000", precision="bf16")
    out = [",".join(header)] + [",".join({**base, **e}[h] for h in header) for e in edits]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(out) + "\n")
    result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["rows"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    flags = "backend=pytorch;cuda_graphs=1;cuda_graph_padding=1;kv_cache_free_gpu_mem_fraction=0.95;bench=trtllm-bench"
    return _rows(tmp_path_factory.mktemp("host"), [
        {"gpu": "GB200"}, {"gpu": "B200"}, {"gpu": "GB200", "flags": flags + ";overlap_scheduler=0"},
        {"gpu": "GB200", "engine_version": "0.14.0", "flags": ""}, {"gpu": "GB200", "engine": "vllm",
                                                                      "engine_version": "0.10.1", "flags": ""},
        {"gpu": "GB200", "gpus": "2", "tp": "2", "model": "qwen3-30b-a3b", "flags": flags + ";enable_attention_dp=1"},
        {"gpu": "GB200", "gpus": "2", "tp": "2", "model": "qwen3-30b-a3b"},
        {"gpu": "GB200", "model": "llama-3.3-70b", "batch": "64"}])


def _alt(note: str) -> float:
    return float(note.rsplit(") ", 1)[1].split()[0])


def test_a_grace_row_gets_its_own_hosts_bound_overlapped(rows):
    gb200 = rows[0]
    assert GRACE_NOTE + ", overlapped with the GPU)" in gb200["note"] and "no figure for this host" not in gb200["note"]
    alt = _alt(gb200["note"])
    # 3000 sequences of an 8B model: the host bound outlasts the GPU's step, the band reaches below the point
    assert gb200["band_low"] == pytest.approx(alt, rel=1e-4)
    assert gb200["band_low"] < gb200["predicted"] == gb200["band_high"]


def test_another_host_takes_the_grace_bound_as_an_upper_bound_and_says_so(rows):
    b200 = rows[1]
    assert OTHER_NOTE + ", overlapped with the GPU)" in b200["note"]
    assert b200["band_low"] == pytest.approx(_alt(b200["note"]), rel=1e-4)
    assert b200["band_low"] < b200["predicted"] == b200["band_high"]


def test_without_the_overlap_scheduler_the_bound_is_exposed(rows):
    """The same phase under the profile's overlap rules: overlap_scheduler=0 exposes it, the step is GPU + host."""
    exposed, overlapped = rows[2], rows[0]
    assert GRACE_NOTE + ", exposed)" in exposed["note"]
    assert exposed["predicted"] == pytest.approx(overlapped["predicted"], rel=1e-9)  # no host priced either way
    assert _alt(exposed["note"]) < _alt(overlapped["note"])
    assert exposed["band_low"] <= exposed["predicted"] <= exposed["band_high"]


@pytest.mark.parametrize("i", [3, 4], ids=["tensorrt-llm-0.14", "vllm"])
def test_releases_without_a_bound_get_no_host_band(rows, i):
    assert "host time" not in rows[i]["note"]


def test_under_attention_dp_each_ranks_executor_bounds_its_own_sequences(rows):
    """PR #10273's figure is one rank's executor over its 1536 sequences (attention DP 2): under attention DP each
    rank schedules only its share of the replica's sequences, and the ranks run side by side; under plain TP every
    rank's executor schedules every sequence."""
    adp, tp2 = rows[5], rows[6]
    assert GRACE_NOTE + ", each of 2 attention-DP ranks over its own sequences, overlapped with the GPU)" in adp["note"]
    assert GRACE_NOTE + ", overlapped with the GPU)" in tp2["note"]
    for row in (adp, tp2):
        assert row["band_low"] <= row["predicted"] <= row["band_high"]


def test_where_the_bound_never_binds_the_note_says_so_and_nothing_is_open(rows):
    """64 sequences of a 70B model: the GPU's step outlasts 64 x 29.4 us of host, the re-pricing equals the point,
    and the row keeps no band (as a row with nothing unstated)."""
    row = rows[7]
    assert GRACE_NOTE in row["note"] and _alt(row["note"]) == pytest.approx(row["predicted"], rel=1e-4)
    assert row["band_low"] is None and row["band_high"] is None
