"""Why an engine fit on one vLLM-CPU run misses others: batch composition and decode steps, run by run.

Reads the saved runs of the vLLM-CPU suite (capsim/data/vllm-cpu, vllm-cpu 0.32.0; no vLLM needed)::

    .venv/bin/python benchmarks/vllm_cpu_run_drift.py

Two checks, ``name: value`` lines (headline last):

- ``decode_batch[RUN]``: the mean number of requests decoding when a decode token reached the client (from the
  client's token times: sent + TTFT + ITLs), measured and in capsim's replay of the same requests (uncalibrated).
  Equal means capsim's scheduler builds the batches vLLM's did (V1: every running request's decode plus waiting
  prompts up to max_num_batched_tokens in one step).
- ``decode_step_ms[batch=B,RUN]``: the median gap between two tokens of one request when no prompt completed in
  it (a decode-only step of B requests), beside capsim's price of that step (context 288 tokens, the runs' mean
  prompt plus half their mean output). The same step measured in different runs differs by what the machine did
  then, not by anything the engine's host terms can hold; ``decode_step_spread_pct`` is the largest
  (slowest / fastest - 1) over the batches that at least three runs measured.
- ``fit_alone[RUN]``: ``capsim calibrate engine``'s terms fitted on each Poisson run alone (with their standard
  errors): how each term moves with the load it was fitted at.
- ``fitted_tpot_error_pct[RUN,VARIANT]``: the suite's fit (on ``FIT_RUN``) replayed on each run, as fitted and with
  one term swapped for the ``vllm-cpu`` profile's value measured in place: which term carries the error.
- ``decode_step_ms_loaded[batch=B,RUN]``: the runs above 80% of saturation (and the all-at-once one), the median gap
  at B +- 1 decoding requests with no prompt completed in it (a prompt chunk that does not complete its prompt may
  be in it), beside capsim's price of a decode step of B: whether one run's steps were slower than the others' at
  the same batch (an outlier run, which queues more and decodes larger batches: ``decode_batch`` of that run).
- ``step_vs_fit_run_pct[RUN]``: the median over the batches both runs measured of this run's decode-only step over
  the fit run's at the same batch, less 1 (``decode_step_ms``): how much faster or slower the machine stepped in
  this run. ``tpot_points_per_step_pct[RUN]``: how many points of mean TPOT error the suite's fitted profile moves by
  when its every step is 1% of the run's mean step longer (replayed with ``step_s`` raised by that): the queueing's
  amplification at that load. Their product, ``expected_tpot_error_pct[RUN]``, is the error a fit that is exact on
  the fit run's steps makes from the runs' difference alone, beside the fitted replay's (``as fitted``).
- ``prompt_step_ratio[RUN]``: each request's prompt step, measured over capsim's price of that step (its prompt beside
  the requests decoding then, context 288): ``mixed`` from the others' last token before its first token to its first
  token (requests whose prompt shared a step with another's are left out), ``alone`` (no request decoding) its TTFT
  less the profile's serving path (ttft_offset_s); the medians. What is left of the uncalibrated TTFTs once the
  serving path is priced.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import yaml

from capsim.analytic.serving import Sampling, StepShape, iteration_time
from capsim.calibration.engine_cal import calibrate_engine, observations
from capsim.calibration.engine_fit import fit_engine_terms
from capsim.calibration.engine_obs import emissions
from capsim.data.bench import BenchRun, measured_summary, read_bench
from capsim.validation.bench import replay
from capsim.validation.bench_suites import deployment

FOLDER = Path(__file__).resolve().parents[1] / "capsim" / "data" / "vllm-cpu"
RUNS = ("single", "rate-0.94", "rate-1.9", "rate-2.8", "rate-3.7", "concurrency-2", "concurrency-4",
        "concurrency-8", "concurrency-16")
BATCHES = (1, 2, 3, 4, 6, 8, 10, 12, 16)
FIT_RUN = "rate-1.9"  # the suite's fit run (suite.yaml calibrate_on: the Poisson run nearest 0.4 x saturation)
MIN_GAPS = 30  # gaps a (run, batch) median needs
TOL_S = 1e-3  # tokens of one step reach the client within this of each other


def _decoding(first: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Requests past their first token and not finished at each time of ``t``."""
    return np.searchsorted(np.sort(first), t - TOL_S) - np.searchsorted(np.sort(end), t - TOL_S)


def decode_gaps(run: BenchRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gap s, requests decoding, prompts completed inside the gap) of every gap between two tokens of a request."""
    t, _, k = emissions(run)
    first, end = run.sent_s + run.ttft_s, run.sent_s + run.e2e_s
    gi = np.flatnonzero(k > 0)
    lo, hi = t[gi - 1], t[gi]
    fs = np.sort(first)
    prompts = np.searchsorted(fs, hi + TOL_S) - np.searchsorted(fs, lo + TOL_S)
    return hi - lo, _decoding(first, end, hi), prompts


def suite_deployment():
    return deployment(yaml.safe_load((FOLDER / "suite.yaml").read_text()), FOLDER)[0]


def decode_batch(run: BenchRun, dep) -> tuple[float, float]:
    """Mean requests decoding per decode token: measured, and in capsim's replay (its tokens spread evenly between
    each request's first and last)."""
    df = replay(run, dep)[0].requests
    first, end = (df["arrival_s"] + df["ttft_s"]).to_numpy(), (df["arrival_s"] + df["e2e_s"]).to_numpy()
    tokens = np.concatenate([np.linspace(a, b, int(n))[1:] for a, b, n in
                             zip(first, end, df["output_tokens"].to_numpy(), strict=True)])
    return float(decode_gaps(run)[1].mean()), float(_decoding(first, end, tokens).mean())


def fit_attribution(dep) -> None:
    """Each Poisson run's own fit, and the suite's fit replayed with one term at a time set to the profile's."""
    runs = {n: read_bench(FOLDER / f"{n}.json") for n in RUNS if n.startswith("rate")}
    for name, run in runs.items():
        print(f"fit_alone[{name}]: {fit_engine_terms(observations([run], dep)).describe_terms()}")
    fitted, _ = calibrate_engine([runs[FIT_RUN]], dep)
    step, seq, token = fitted.cpu["step"]
    own = dep.engine.cpu["step"]
    variants = {"as fitted": (step, seq, token), "prompt term in place": (step, seq, own[2]),
                "step and sequence terms in place": (own[0], own[1], token)}
    for name, run in runs.items():
        measured = measured_summary(run)["tpot_mean_s"]
        for label, terms in variants.items():
            d = dep.with_engine(dataclasses.replace(fitted, cpu={"step": terms}))
            err = replay(run, d)[0].requests["tpot_s"].mean() / measured - 1
            print(f"fitted_tpot_error_pct[{name},{label}]: {err * 100:+.1f}")


def step_sensitivity(dep, steps: dict[int, dict[str, float]]) -> None:
    """The runs' own step speed against the fit run's, the queueing's amplification, and their product (module
    docstring)."""
    fitted, _ = calibrate_engine([read_bench(FOLDER / f"{FIT_RUN}.json")], dep)
    step, seq, token = fitted.cpu["step"]
    for name in RUNS:
        if name == FIT_RUN:
            continue
        ratios = [by_run[name] / by_run[FIT_RUN] - 1 for by_run in steps.values() if {name, FIT_RUN} <= set(by_run)]
        run = read_bench(FOLDER / f"{name}.json")
        measured = measured_summary(run)["tpot_mean_s"]
        mean_step = float(np.sum(run.e2e_s - run.ttft_s) / np.sum(run.output_tokens - 1))  # E2E - TTFT per gap
        err = []
        for extra in (0.0, 0.01 * mean_step):
            d = dep.with_engine(dataclasses.replace(fitted, cpu={"step": (step + extra, seq, token)}))
            err.append((replay(run, d)[0].requests["tpot_s"].mean() / measured - 1) * 100)
        slope = err[1] - err[0]
        diff = float(np.median(ratios)) * 100 if ratios else np.nan
        print(f"step_vs_fit_run_pct[{name}]: {diff:+.1f} ({len(ratios)} batches)")
        print(f"tpot_points_per_step_pct[{name}]: {slope:.2f}")
        print(f"expected_tpot_error_pct[{name}]: {-diff * slope:+.1f} (as fitted {err[0]:+.1f})")


LOADED = ("rate-4.2", "rate-4.7", "rate-5.6", "concurrency-32", "burst")  # above 80% of saturation
LOADED_BATCHES = (16, 24, 32, 40, 48)


def loaded_runs(dep) -> None:
    """Decode steps of the runs above 80% of saturation at the batches they share (see the module docstring)."""
    greedy = Sampling.parse("greedy")
    for name in LOADED:
        run = read_bench(FOLDER / f"{name}.json")
        gap, batch, prompts = decode_gaps(run)
        measured, capsim = decode_batch(run, dep)
        print(f"decode_batch[{name}]: measured {measured:.2f}, capsim {capsim:.2f}")
        for b in LOADED_BATCHES:
            sel = (prompts == 0) & (np.abs(batch - b) <= 1)
            if sel.sum() >= MIN_GAPS:
                price = float(iteration_time(dep.model, dep.plan, dep.perf, StepShape.decode(b, 288.0), dep.engine,
                                             None, greedy).total_s)
                print(f"decode_step_ms_loaded[batch={b},{name}]: {np.median(gap[sel]) * 1e3:.2f} "
                      f"(capsim {price * 1e3:.2f})")


def _step_price(dep, prompt: int, decoding: int) -> float:
    p = float(prompt)
    shape = StepShape(prefill_tokens=np.array([p]), prefill_seqs=np.array([1.0]), prefill_pairs=np.array([p * (p + 1) / 2]),
                      prefill_kv_tokens=np.array([p]), decode_seqs=np.array([float(decoding)]),
                      decode_kv_tokens=np.array([288.0 * decoding]))
    return float(np.ravel(iteration_time(dep.model, dep.plan, dep.perf, shape, dep.engine, None,
                                         Sampling.parse("greedy")).total_s)[0])


def prompt_steps(run: BenchRun, dep) -> tuple[list[float], list[float]]:
    """(mixed, alone): measured over priced prompt steps of the run's requests (see the module docstring)."""
    t, who, _ = emissions(run)
    first, end = run.sent_s + run.ttft_s, run.sent_s + run.e2e_s
    mixed, alone = [], []
    for i in range(run.size):
        others = np.arange(run.size) != i
        if np.any(others & (np.abs(first - first[i]) < 5 * TOL_S)):
            continue  # its prompt shared a step with another's
        b = int(np.sum(others & (first < first[i] - 5 * TOL_S) & (end > first[i] + 5 * TOL_S)))
        if b == 0:
            alone.append((run.ttft_s[i] - dep.engine.ttft_offset_s) / _step_price(dep, run.prompt_tokens[i], 0))
            continue
        before = t[(who != i) & (t < first[i] - 5 * TOL_S)]
        if len(before) and before.max() >= run.sent_s[i]:
            mixed.append((first[i] - before.max()) / _step_price(dep, run.prompt_tokens[i], b))
    return mixed, alone


def main() -> None:
    dep = suite_deployment()
    steps: dict[int, dict[str, float]] = {b: {} for b in BATCHES}
    for name in RUNS:
        run = read_bench(FOLDER / f"{name}.json")
        gap, batch, prompts = decode_gaps(run)
        measured, capsim = decode_batch(run, dep)
        print(f"decode_batch[{name}]: measured {measured:.2f}, capsim {capsim:.2f}")
        for b in BATCHES:
            sel = (prompts == 0) & (batch == b)
            if sel.sum() >= MIN_GAPS:
                steps[b][name] = float(np.median(gap[sel]))
    fit_attribution(dep)
    loaded_runs(dep)
    for name in RUNS:
        mixed, alone = prompt_steps(read_bench(FOLDER / f"{name}.json"), dep)
        print(f"prompt_step_ratio[{name}]: mixed {np.median(mixed) if mixed else np.nan:.3f} ({len(mixed)}), "
              f"alone {np.median(alone) if alone else np.nan:.3f} ({len(alone)})")
    greedy = Sampling.parse("greedy")
    spread = 0.0
    for b, by_run in steps.items():
        price = float(iteration_time(dep.model, dep.plan, dep.perf, StepShape.decode(b, 288.0), dep.engine, None,
                                     greedy).total_s)
        for name, s in by_run.items():
            print(f"decode_step_ms[batch={b},{name}]: {s * 1e3:.2f} (capsim {price * 1e3:.2f})")
        if len(by_run) >= 3:
            spread = max(spread, max(by_run.values()) / min(by_run.values()) - 1)
    print(f"decode_step_spread_pct: {spread * 100:.1f}")
    step_sensitivity(dep, steps)


if __name__ == "__main__":
    main()
