"""``capsim validate serving``: every published row against its issue's tolerance, and the software columns.

Tolerances (issue 13): TensorRT-LLM, vLLM latency and NIM rows within 15%; DistServe's vLLM replays within 25%;
the simulated saturation rate of the DistServe runs between 3.0 and 3.5 req/s (measured 3.21). A row known to
miss today is ``xfail(strict=True)`` with its reason, so fixing it turns the suite red until the marker goes.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from capsim.calibration import perf_for
from capsim.cli import app
from capsim.specs.catalog import get_accelerator
from capsim.validation.harness import read_csv
from capsim.validation.serving import REQUIRED, predict, row_software
from capsim.validation.serving_suite import serving_suite

runner = CliRunner()
ROWS = read_csv(None, "serving_published.csv", REQUIRED)
# Runs capsim had never seen when their release profiles were written from the release's sources (issue 13: median
# <= 15%, worst <= 25%): TensorRT-LLM 0.6.1's and 0.8.0's static batches and 0.10's in-flight batching at max load.
UNSEEN = ("trtllm-0.6.1", "trtllm-0.8.0", "trtllm-0.10")
TOLERANCE_PCT = {"trtllm-v1.0": 15.0, "trtllm-0.5": 15.0, "vllm-ci": 15.0, "nim-1.8": 15.0, "distserve": 25.0,
                 **dict.fromkeys(UNSEEN, 25.0)}
SATURATION_RPS = (3.0, 3.5)

DISTSERVE_HOST = ("capsim's vLLM 0.2.3 step is 11-59% slower in decode and 10-21% slower in prefill than DistServe's "
                  "own single-forward profile of the release, and its decode cost per context token (PagedAttention at "
                  "80% of peak, 1.63 TB/s) is 1.02-1.23x that profile's (tests/test_vllm_0_2_engine.py), yet "
                  "capsim is faster than these serving runs: DistServe's simulator "
                  "multiplies that profile by 1.2 (decode) and 1.4 (prefill) to meet them, and no public source "
                  "itemizes the serving path's cost beyond what capsim prices from vLLM 0.2.3's code: the Ray engine "
                  "actor's call per step, each request's output pickled and streamed by the server loop per step, and the "
                  "add_request / abort_request calls per request (engines.yaml server_comm, server_calls)")
KNOWN_MISSES = {
    ("distserve", "ttft_mean", "vllm-300-3"): DISTSERVE_HOST + "; and the run queues on a full KV cache (admissions "
                                              "wait for finishes from 75 s on), which the stated flags size at 4,059 "
                                              "blocks against ~3,300-3,500 by the run's timings "
                                              "(tests/test_bench_suites.py, SOURCE.md)",
    ("distserve", "ttft_mean", "vllm-350-3.5"): DISTSERVE_HOST + "; past the measured saturation",
    ("distserve", "ttft_mean", "vllm-400-4"): DISTSERVE_HOST + "; past the measured saturation",
    ("distserve", "tpot_mean", "vllm-100-2"): DISTSERVE_HOST + "; and its prompt batches carry up to 1,405 paddings, "
                                             "more than vLLM 0.2.3 forms at the stated max_paddings=256: not the "
                                             "flags stated (the bench suite's notes)",
    ("distserve", "tpot_mean", "vllm-200-2"): DISTSERVE_HOST + "; and its prompt batches carry up to 1,405 paddings, "
                                             "more than vLLM 0.2.3 forms at the stated max_paddings=256: not the "
                                             "flags stated (the bench suite's notes)",
    ("vllm-ci", "e2e_latency_mean", ""): "the source does not state the vLLM release (engine_version blank): "
                                         "the row is not priced",
}
TRT_010_MISS = ("capsim is optimistic on TensorRT-LLM 0.10's Llama-3-70B 2048/2048 at TP4 (+46.3% with FP8 GEMMs at TE's "
                "cuBLASLt 1.90x, +32.7% at DeepGEMM's 1.50x): its group of 8 "
                "query heads per KV head runs the XQA kernel in 0.10 (decoderXQARunner.h gate, engines.yaml "
                "decode_kv_groups), as Llama-2-70B's 0.10 rows do within 17%; no source prices the 0.10 batch "
                "manager's host time or its decoder (gptDecoderBatch) per step, so none is, and the miss is not "
                "explained (the group-of-4 rows, Llama-3-8B and Mixtral, price their masked-MHA fallback and range "
                "from -17.5% to +31.0%). Checked against the page's recipe: under chunked context a MAX_UTILIZATION pause keeps "
                "every token (trtGptModel.h: maxInputLen = max_seq_len - 1), XQA's batch heuristic picks XQA at these "
                "batches, and 3% less KV memory (an unquantized, replicated embedding) moves the row by < 0.1 point. The "
                "miss is the regime, not the model: the same 0.10 table's Llama-2-70B 2048/2048 FP8 runs on H100 (not "
                "rows here, priced once as a check on 1f3f71b) come out +21% at TP2, +35% at TP4 and +36% at TP8, and "
                "Llama-3-70B's TP8 run +47%, while the TP1 7B/8B 2048/2048 runs are within 13%; capsim's TP4 run is "
                "KV-bound (1.48M cached tokens, 405 sequences on average) with 894 MAX_UTILIZATION pauses recomputed. Nor "
                "is it FP8's: the same page's FP16 cell of this run comes out +71.2% "
                "(benchmarks/trtllm_010_precision_split.py on 8e64c84)")
KNOWN_MISSES.update({
    ("trtllm-0.10", "output_tokens_per_s", "llama-3-70b H100-SXM5-80GB tp4 fp8 2048/2048"): TRT_010_MISS,
})
# Llama-2-7B FP8 at 128/128 with the largest batches (compute-bound prefill and decode): too fast since FP8 GEMMs on
# GH100 run at 1.90x the BF16 rate, Transformer Engine's cuBLASLt per-tensor ratio (published_gemm.TE_H200_NVL);
# TensorRT-LLM's own FP8 GEMM kernels of these releases have no published rates (+13.0% / +17.2% at DeepGEMM's 1.47x (H200) / 1.50x (H100 profile) on main 5858fb8: each row's band's
# other end).
_TRT_FP8_GEMM = ("+{}%: FP8 GEMMs at TE's cuBLASLt FP8/BF16 ratio on GH100 (1.90x), not a measured rate of this "
                 "TensorRT-LLM release's FP8 kernels; {}")
# What the FP8 ratio does not explain (re-measured 2026-12-06 on 1f3f71b, each a capsim figure against a published one):
# - 0.8.0 Llama-2-7B b896 128/128 is +13.6% on H100 and +30.0% on H200; the two GPUs have the same SMs and clocks and
#   measured alike (20548 vs 20241 tok/s, 1.015x), but H200 prices from its datasheet calibration (no H200 profile
#   ships) and H100 from its operator profile: capsim's H200 decode step at batch 896, context 192, is 24.1 ms against
#   28.1 ms on H100 and its 896 x 128 prefill 1.24 s against 1.42 s (1.16x).
# - 0.10 Llama-2-7B 128/128 on H100 FP8: 0.8.0's static gptSession batches of 896 measured 20241 tok/s (capsim +13.6%),
#   0.10's in-flight batching of 2000 requests 16985.6 (capsim +31.3%); measured IFB/static 0.839, capsim 0.969. The
#   in-flight path pays per-request work static batches do not (engines.yaml tensorrt-llm-0.10 cpu: GptDecoderBatch,
#   one decoder per request unless fused, the batch manager's scheduling and streamed responses, not public code in
#   0.10), and no source prices it.
_TRT_IFB = ("; IFB vs static: 0.8.0's static b896 run of Llama-2-7B on the same H100 measured 1.19x this release's "
            "in-flight throughput where capsim predicts 1.03x: the in-flight batch manager's per-request host and "
            "decoder work is unpriced, no source gives it (engines.yaml tensorrt-llm-0.10 cpu). But the miss comes "
            "with FP8, not with the in-flight path: the same page's H100 FP16 cells of these 128/128 runs (same "
            "recipe, scheduler and request count) come out +8.3% (Llama-2-7B), +0.7% (Llama-3-8B) and +3.3% "
            "(Mixtral), and capsim's FP8/FP16 ratio is 1.92 / 1.72 / 1.64 where they measured 1.58 / 1.38 / 1.30, "
            "against 1.47 / 1.49 for Llama-2-70B at TP4, whose group of 8 decodes with XQA "
            "(benchmarks/trtllm_010_precision_split.py on 8e64c84). Each unpublished FP8 rate alone spans these "
            "rows: every FP8 GEMM at DeepGEMM's ratio, or the masked MHA reading the 8-bit cache at a 16-bit "
            "cache's rate (-1.8% / -4.7% / +13.0%), but the latter puts the 2048/2048 and 128/2048 FP8 rows at "
            "-46% and -41%, so that kernel does gain from the 8-bit cache at long contexts")
KNOWN_MISSES.update({
    ("trtllm-0.8.0", "output_tokens_per_s", "llama-2-7b H200-SXM-141GB tp1 fp8 128/128"):
        _TRT_FP8_GEMM.format(30.0, "4 static batches of 896; the H100 run of the same batch is +13.6%: H200 prices "
                             "from its datasheet calibration (no H200 operator profile), 1.16x the H100 profile's "
                             "speed on this batch where the two GPUs measured 1.015x"),
    ("trtllm-0.10", "output_tokens_per_s", "llama-2-7b H100-SXM5-80GB tp1 fp8 128/128"):
        _TRT_FP8_GEMM.format(31.3, "TensorRT-LLM 0.10 in-flight batching at 2000 requests" + _TRT_IFB),
    ("trtllm-0.10", "output_tokens_per_s", "llama-3-8b H100-SXM5-80GB tp1 fp8 128/128"):
        _TRT_FP8_GEMM.format(25.4, "+12.1% at DeepGEMM's 1.50x, the band's other end" + _TRT_IFB),
    ("trtllm-0.10", "output_tokens_per_s", "mixtral-8x7b H100-SXM5-80GB tp2 fp8 128/128"):
        _TRT_FP8_GEMM.format(31.0, "+14.8% at DeepGEMM's 1.50x, the band's other end" + _TRT_IFB),
})


def _key(r: dict[str, str]) -> tuple[str, str, str]:
    source, metric = r["source"], r["metric"]
    if source == "distserve":
        return source, metric, r["trace"].rsplit("/", 1)[-1].removesuffix(".csv")
    if source in ("trtllm-0.5", "trtllm-v1.0"):
        return source, metric, f"{r['input_tokens']}/{r['output_tokens']}"
    if source in UNSEEN:
        return source, metric, (f"{r['model']} {r['gpu']} tp{r['tp']} {r['precision']} "
                                f"{r['input_tokens']}/{r['output_tokens']}")
    return source, metric, ""


@pytest.fixture(scope="module")
def report():
    return serving_suite()


def _row_of(report, r):
    found = [x for x in report.rows if x.source == r["source"] and x.metric == r["metric"]
             and x.case.startswith(f"{r['model']} {r['gpu']} x{r['gpus']} {r['workload']}")
             and (not r["trace"] or r["trace"] in x.case)
             and f" b{r['batch'] or '-'} {r['input_tokens']}/{r['output_tokens'] or '-'}" in x.case]
    assert len(found) == 1, r
    return found[0]


def _params():
    out = []
    for r in ROWS:
        key = _key(r)
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[key])] if key in KNOWN_MISSES else []
        out.append(pytest.param(r, id="-".join(k for k in key if k), marks=marks))
    return out


@pytest.mark.parametrize("r", _params())
def test_every_published_row_within_its_tolerance(report, r):
    row = _row_of(report, r)
    assert row.predicted is not None, row.note
    assert abs(row.error_pct) <= TOLERANCE_PCT[r["source"]], (row.error_pct, row.note)


def test_unseen_tensorrt_llm_runs_median_within_15_pct(report):
    """Issue 13's target for runs capsim has never seen: the median error of the TensorRT-LLM 0.6.1, 0.8.0 and 0.10 rows
    (profiles from release notes, docs and code of each release; the rows were only compared afterwards)."""
    rows = [x for x in report.rows if x.source in UNSEEN]
    assert len(rows) == sum(r["source"] in UNSEEN for r in ROWS) and all(x.predicted is not None for x in rows)
    errors = sorted(abs(x.error_pct) for x in rows)
    assert errors[len(errors) // 2] <= 15.0, errors


@pytest.mark.xfail(strict=True, reason=DISTSERVE_HOST + ": the simulated saturation is ~3.61 req/s")
def test_distserve_simulated_saturation_between_3_and_3_5(report):
    sat = [x for x in report.rows if x.metric == "saturation_rate_rps"]
    assert len(sat) == 1 and sat[0].predicted is not None, sat
    assert SATURATION_RPS[0] <= sat[0].predicted <= SATURATION_RPS[1], sat[0].predicted


def _published(report, source: str, case: str):
    found = [x for x in report.rows if x.source == source and x.case == case and x.metric == "output_tokens_per_s"]
    assert len(found) == 1 and found[0].predicted is not None, (source, case)
    return found[0]


# Pairs of published runs that differ in one thing only: capsim should miss both by about the same amount (within
# PAIR_POINTS of each other); where it does not, the one thing is what capsim prices wrongly.
PAIR_POINTS = 5.0


@pytest.mark.xfail(strict=True, reason="H200 prices from its datasheet calibration (no H200 operator profile ships), "
                   "H100 from its operator profile: on 0.8.0's Llama-2-7B FP8 batch of 896 at 128/128 capsim's "
                   "H200 is 1.16x its H100 (decode step at context 192: 24.1 vs 28.1 ms; prefill 1.24 vs 1.42 s), "
                   "the two runs measured 1.015x (20548 vs 20241 tok/s); errors +30.0% vs +13.6%")
def test_same_batch_on_h100_and_h200_misses_alike(report):
    """0.8.0's page ran the same static batch on H100 and H200 (same SM count and clocks, more HBM bandwidth)."""
    h100 = _published(report, "trtllm-0.8.0", "llama-2-7b H100-SXM5-80GB x1 static  b896 128/128")
    h200 = _published(report, "trtllm-0.8.0", "llama-2-7b H200-SXM-141GB x1 static  b896 128/128")
    assert abs(h200.error_pct - h100.error_pct) <= PAIR_POINTS, (h100.error_pct, h200.error_pct)


@pytest.mark.xfail(strict=True, reason="the in-flight batch manager's per-request work (engines.yaml tensorrt-llm-0.10 "
                   "cpu: GptDecoderBatch, one decoder per request unless fused; scheduling and streamed responses in a "
                   "closed-source library) has no published cost and is unpriced: measured static/IFB 1.19x, capsim "
                   "1.03x; errors +13.6% (0.8.0 static) vs +31.3% (0.10 IFB). At FP16 the two paths miss alike: "
                   "A100 Llama-2-7B 128/128, 0.8.0 static b256 -5.8% and 0.10 IFB -6.2% (5303.5 tok/s, priced as a "
                   "check on 8e64c84), and 0.10's H100 FP16 cell +8.3% (benchmarks/trtllm_010_precision_split.py): "
                   "what differs here comes with FP8")
def test_static_and_in_flight_runs_of_one_model_miss_alike(report):
    """Llama-2-7B FP8 128/128 on one H100: 0.8.0's gptSession static batches of 896 and 0.10's gptManagerBenchmark
    in-flight batching of 2000 requests (capsim's run holds 809 sequences on average); both decode with the masked MHA
    (a multi-head model)."""
    static = _published(report, "trtllm-0.8.0", "llama-2-7b H100-SXM5-80GB x1 static  b896 128/128")
    ifb = _published(report, "trtllm-0.10", "llama-2-7b H100-SXM5-80GB x1 max-load  b2000 128/128")
    assert abs(ifb.error_pct - static.error_pct) <= PAIR_POINTS, (static.error_pct, ifb.error_pct)


def _variant(source: str, model: str, **changes: str) -> dict[str, str]:
    """A shipped row of ``source`` and ``model`` with some columns changed (a published cell the CSV leaves out)."""
    row = dict(next(r for r in ROWS if r["source"] == source and r["model"] == model))
    row.update(changes)
    return row


def _predicted(r: dict[str, str]) -> float:
    return predict(r, perf_for(get_accelerator(r["gpu"])), row_software(r))[0]


@pytest.mark.parametrize(("model", "gpus", "published"), [("llama-3-8b", "1", 12085.78), ("mixtral-8x7b", "2", 12376.52)])
def test_fp16_cells_of_the_missed_0_10_fp8_runs_are_close(model, gpus, published):
    """The known-miss reason of 0.10's FP8 128/128 rows (_TRT_IFB) rests on the same page's H100 FP16 cells of those
    runs (perf-overview.md of 0.10: same recipe, scheduler and 2000 requests; FP8 is the only change) coming out
    close where the FP8 ones are 25-31% fast: if capsim's FP16 pricing moves, that reason must be re-checked."""
    r = _variant("trtllm-0.10", model, precision="fp16", input_tokens="128", output_tokens="128", gpus=gpus, tp=gpus)
    fp16 = _predicted(r)
    assert abs(fp16 / published - 1) <= 0.10, fp16
    fp8 = _predicted(_variant("trtllm-0.10", model, input_tokens="128", output_tokens="128", gpus=gpus, tp=gpus))
    measured_fp8 = {"llama-3-8b": 16708.53, "mixtral-8x7b": 16051.88}[model]  # the CSV's FP8 rows
    assert fp8 / measured_fp8 - 1 > 0.2 and fp8 / fp16 > 1.6 > measured_fp8 / published


def test_vllm_ci_row_depends_on_the_unstated_release():
    """The CSV's reason for leaving vllm-ci unpriced: the benchmark ran a commit whose release is not recorded, and
    capsim's release profiles disagree on this row by far more than the 15% target (1.58x to 0.89x on 8e64c84)."""
    got = {v: _predicted(_variant("vllm-ci", "llama-3.1-8b", engine_version=v)) for v in ("0.5.0", "0.6.0", "0.8.0")}
    assert got["0.5.0"] > got["0.6.0"] > 1.3 * got["0.8.0"], got
    header = resources.files("capsim.data.validation").joinpath("serving_published.csv").read_text()
    assert "this value's commit and date are not recorded" in header


def test_known_misses_name_real_rows():
    keys = {_key(r) for r in ROWS}
    assert set(KNOWN_MISSES) <= keys


def test_unpriced_row_carries_its_reason_and_counts_as_failed(report):
    out = report.to_dict()
    unpriced = [r for r in out["rows"] if r["predicted"] is None]
    assert out["rows_failed"] == len(unpriced) >= 1
    assert all(r["error_pct"] is None and "engine_version" in r["note"] for r in unpriced)
    assert "vllm >=0.2.2,<0.2.6" in unpriced[0]["note"]  # names the releases capsim knows


def test_engine_release_and_flags_reach_the_prediction(report):
    notes = {x.source: x.note for x in report.rows if x.predicted is not None and x.metric != "saturation_rate_rps"}
    assert "vllm-0.2 (vllm 0.2.3)" in notes["distserve"] and "swap_space_gb=16" in notes["distserve"]
    assert "tensorrt-llm (tensorrt-llm 1.0.0)" in notes["trtllm-v1.0"]
    assert "tensorrt-llm-0.5" in notes["trtllm-0.5"] and "nim-1.8" in notes["nim-1.8"]
    assert "tensorrt-llm-0.6 (tensorrt-llm 0.6.1)" in notes["trtllm-0.6.1"]
    assert "tensorrt-llm-0.8 (tensorrt-llm 0.8.0)" in notes["trtllm-0.8.0"]
    assert "tensorrt-llm-0.10 (tensorrt-llm 0.10.0)" in notes["trtllm-0.10"]
    assert "max_num_seqs 2048" in notes["trtllm-0.10"]  # the row's max_batch_size flag
    # max-load: the benchmark's own request count where the source states it (0.10's page: --num-requests=2000),
    # else 4 per batch slot
    assert "; 2000 requests queued at t=0 (" in notes["trtllm-0.10"]
    v10 = [x.note for x in report.rows if x.source == "trtllm-v1.0"]  # the v1.0 page's $num_requests per length,
    # at trtllm-bench's own max_batch_size for each length pair (bench=trtllm-bench: tuning.py finetune_setting)
    assert [n.split("; ")[1] for n in v10] == [f"{k} requests queued at t=0 (trtllm-bench's max_num_seqs {b})"
                                              for k, b in ((30000, 4096), (3000, 640), (3000, 640))]


def test_max_load_queues_the_stated_request_count_else_four_per_batch_slot(tmp_path):
    """A max-load row's batch column is the benchmark's request count: 64 requests through a 2048-sequence engine
    are one ramp up and down, far below the steady state of a blank count (4 x 2048 requests)."""
    text = resources.files("capsim.data").joinpath("validation", "serving_published.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    row = next(ln for ln in lines if ln.startswith("trtllm-0.10,llama-3-8b,A100-SXM4-80GB"))
    got = {}
    for count in ("64", ""):
        cells = row.split(",")
        cells[9] = count
        path = tmp_path / f"rows{count}.csv"
        path.write_text(lines[0] + "\n" + ",".join(cells) + "\n")
        result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
        assert result.exit_code == 0, result.output
        got[count] = json.loads(result.stdout)["rows"][0]
    assert "; 64 requests queued at t=0 (max_num_seqs 2048)" in got["64"]["note"]
    assert "; 8192 requests queued at t=0, 4 per batch slot: the source states no count" in got[""]["note"]
    assert got["64"]["predicted"] < 0.7 * got[""]["predicted"]


def _write(tmp_path, edit):
    """The shipped CSV's first data row with ``edit`` applied to its cells, as a one-row file."""
    text = resources.files("capsim.data").joinpath("validation", "serving_published.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    header = lines[0].split(",")
    cells = dict(zip(header, lines[1].split(","), strict=True))
    cells.update(edit)
    path = tmp_path / "rows.csv"
    path.write_text(",".join(header) + "\n" + ",".join(cells[h] for h in header) + "\n")
    return path


@pytest.mark.parametrize(("edit", "words"), [
    ({"engine": ""}, ["engine", "no engine", "vllm"]),
    ({"engine": "unstaed"}, ["engine", "unknown engine 'unstaed'", "engine-calibration"]),
    ({"engine_version": "0.2.1"}, ["engine_version", "vllm 0.2.1", "vllm >=0.2.2,<0.2.6"]),
    ({"engine_version": "two"}, ["engine_version", "not a release number"]),
    ({"flags": "workers=ray;max_num_seqz=4"}, ["flags", "unknown flag 'max_num_seqz'", "max_num_seqs"]),
    ({"flags": "workers=mp"}, ["flags", "workers=mp", "no source for that transport"]),
    ({"flags": "cuda_graphs=1"}, ["flags", "has no CUDA graphs"]),
    ({"flags": "dtype=bf16"}, ["flags", "disagrees with the row's precision"]),
    ({"flags": "max_num_tokens=8"}, ["flags", "not a vllm option"]),
    ({"flags": "max_num_seqs"}, ["flags", "is not key=value"]),
])
def test_bad_software_columns_exit_2_naming_the_column(tmp_path, edit, words):
    result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(_write(tmp_path, edit))])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output, (w, result.output)


def test_a_row_whose_engine_is_unstated_is_a_miss_beside_priced_rows(tmp_path):
    path = _write(tmp_path, {})
    lines = path.read_text().splitlines()
    unstated = lines[1].replace(",vllm,", ",unstated,", 1)
    path.write_text("\n".join([*lines, unstated]) + "\n")
    result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
    assert result.exit_code == 0, result.output  # a row not priced is a miss in the report, as in every suite
    first, second = json.loads(result.stdout)["rows"][:2]
    assert first["predicted"] > 0 and second["predicted"] is None
    assert second["note"].startswith("not priced: engine: the source does not state which engine ran")
    # two runs at one rate, both under 1 s TTFT: no saturation was measured, so no saturation row (nor a NaN error)
    assert len(json.loads(result.stdout)["rows"]) == 2 and "NaN" not in result.stdout


def test_flags_are_applied(tmp_path):
    """The same replay with max_num_seqs=2 queues requests behind two running ones: TTFT rises."""
    base = _write(tmp_path, {})
    few = tmp_path / "few.csv"
    few.write_text(base.read_text().replace("max_num_seqs=1024", "max_num_seqs=2"))
    got = []
    for path in (base, few):
        result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
        assert result.exit_code == 0, result.output
        got.append(json.loads(result.stdout)["rows"][0]["predicted"])
    assert got[1] > 1.5 * got[0]


def test_splitwise_rows_are_engine_calibration_data_not_targets():
    """The Splitwise files keep their data for the engine-calibration suite; their engine is unstated, so the
    uncalibrated suite prices none of their rows and says why (the data's own word for an engine nobody published is
    a miss, not a malformed file: the other rows of a mixed file are priced)."""
    folder = resources.files("capsim.data").joinpath("validation", "engine-calibration")
    for name, n in (("splitwise_tp8.csv", 12), ("splitwise_tp2.csv", 36), ("splitwise_tp4.csv", 18)):
        rows = read_csv(str(folder.joinpath(name)), name, REQUIRED)
        assert len(rows) == n and {r["engine"] for r in rows} == {"unstated"}
        result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(folder.joinpath(name))])
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)
        assert got["rows_priced"] == 0 and got["rows_failed"] == n
        assert all("engine unstated" in r["note"] and "calibrate engine" in r["note"] for r in got["rows"])
    assert not any(r["source"].startswith("splitwise") for r in ROWS)


def test_closed_loop_start_up_as_the_benchmark_clients_measure_it(report, tmp_path):
    """A concurrency row that does not name its client is every request of a burst start (vllm bench serve,
    AIPerf) with the band over genai-perf's two ways of counting the same burst (perf_analyzer's time windows from the
    start, its request count); naming the client picks one. GenAI-Perf keeps the start-up: its windows count fewer
    requests after it than vllm bench serve's 10 x C, so its TTFT is the higher."""
    rows = [x for x in report.rows if x.source == "nim-1.8" and x.metric == "ttft_mean"]
    c5 = [x for x in rows if " b5 " in x.case][0]
    assert c5.band_low <= c5.predicted < c5.band_high  # every client queues the first prompts together
    assert "band over vllm-bench and genai-perf" in c5.note  # at DeepGEMM's FP8 rate (fp8_rates: an FP8 row on H100)
    assert "FP8 GEMMs at 1.90x BF16" in c5.note
    text = resources.files("capsim.data").joinpath("validation", "serving_published.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("source,") or ln.startswith("nim-1.8,") and ",b5," not in ln]
    rows5 = [ln for ln in lines if ln.startswith("nim-1.8,") and ",5,5000,500,,ttft_mean," in ln]
    path = tmp_path / "c5.csv"
    path.write_text(lines[0] + "\n" + rows5[0] + "client=genai-perf\n")
    result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    assert c5.predicted < row["predicted"] <= c5.band_high  # the windows keep the burst, fewer requests after it
    assert "genai-perf time windows" in row["note"] and "genai-perf request count" in row["note"]
    assert row["band_low"] <= row["predicted"] <= row["band_high"]
    path.write_text(lines[0] + "\n" + rows5[0] + "client=locust\n")
    bad = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
    assert bad.exit_code == 2 and "client='locust'" in bad.output


def test_a_client_that_could_not_have_reported_the_run_leaves_the_band(tmp_path):
    """Requests of 4,000 output tokens finish in bursts tens of seconds apart, so perf_analyzer's 12 s windows never
    settle: a GenAI-Perf user got no figure from them. A row that does not name its client is priced from the other
    clients, and says which was left out; a row that names genai-perf is not priced, with that reason."""
    head = ",".join(["source", "model", "gpu", "gpus", "tp", "precision", "engine", "workload", "trace", "batch",
                     "input_tokens", "output_tokens", "rate_rps", "metric", "value", "unit", "engine_version", "flags"])
    row = "t,llama-3.1-8b,H100-SXM5-80GB,1,1,bf16,vllm,concurrency,,4,1000,4000,,itl_mean,10,ms,0.10.1,"
    path = tmp_path / "long.csv"
    path.write_text(f"{head}\n{row}\n{row}client=genai-perf\n")
    result = runner.invoke(app, ["validate", "serving", "--json", "--file", str(path)])
    assert result.exit_code == 0, result.output
    open_, named = json.loads(result.stdout)["rows"]
    assert open_["predicted"] > 0 and "left out of the band: genai-perf windows: perf_analyzer would find no 3" \
        in open_["note"]
    assert open_["band_low"] <= open_["predicted"] <= open_["band_high"]
    assert named["predicted"] is None and "no 3 stable windows" in named["note"]
