"""``capsim validate bench``: measured runs (the benchmark results ``capsim.data.bench`` reads: vLLM, SGLang,
GenAI-Perf, AIPerf, per-request CSVs) replayed through the simulator with the engine and device the user names,
measured against predicted.

Each run's requests are replayed exactly: the same prompt and output lengths in the same order, at the arrival
times the file recorded (open loop), or from the same number of clients (``--max-concurrency`` with every request
at once: a closed loop). A file without send times (vLLM's older client, SGLang's) gets arrivals drawn from its own
request rate and burstiness by capsim (not the client's own draw), which the report says. Rows: mean, median and p99 of TTFT, TPOT, ITL (where the file has the
gaps) and E2E, and request and output-token throughput, in the ``validate --json`` shape.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from capsim.calibration.engine_cal import Deployment
from capsim.data.bench import BenchRun, measured_summary, run_sampling
from capsim.errors import SpecError
from capsim.sim.serving import ServeConfig, Workload, renewal, simulate
from capsim.sim.serving.metrics import ServingResult
from capsim.validation.harness import Report, Row, attempt, failed_row

# (metric name in the report, summary key, unit scale to ms or per-second)
METRICS = tuple((f"{m}_{s}", f"{m}_{k}_s") for m in ("ttft", "tpot", "itl", "e2e")
                for s, k in (("mean", "mean"), ("median", "p50"), ("p99", "p99")))
THROUGHPUT = (("request_throughput", "request_throughput_rps", "req/s"),
              ("output_throughput", "output_tokens_per_s", "tok/s"))
# First tokens this close together came from one prompt step: a prompt step of the padded-prompt engines (vLLM
# 0.2.2-0.3.x) computes a whole prompt through every layer, milliseconds at the least
ONE_STEP_S = 2e-3


def workload(run: BenchRun) -> tuple[Workload, str]:
    """The run's requests as a workload, and how their arrivals were obtained."""
    prompt, output = run.prompt_tokens, run.output_tokens
    if run.closed_loop:
        return Workload(run.name, prompt, output, None, clients=int(run.max_concurrency)), \
            f"{run.max_concurrency} clients, closed loop"
    if run.max_concurrency is not None and run.max_concurrency < run.size:
        raise SpecError(run.path, f"combines --request-rate {run.request_rate:g} with --max-concurrency "
                        f"{run.max_concurrency}, which capsim cannot replay (a rate and a client limit at once)",
                        "replay runs with either a request rate or a concurrency limit")
    if run.arrival_s is not None:
        order = np.argsort(run.arrival_s, kind="stable")
        if np.any(order != np.arange(run.size)):  # the simulator takes requests in arrival order
            prompt, output = prompt[order], output[order]
        how = "recorded arrivals" if run.aggregates is None else \
            "the client's own draw of its send times, redone (the file keeps aggregates only)"
        return Workload(run.name, prompt, output, run.arrival_s[order]), how
    if math.isinf(run.request_rate):
        return Workload(run.name, prompt, output, np.zeros(run.size)), "all at once (request rate inf)"
    rng = np.random.default_rng(run.seed or 0)
    t = renewal(run.request_rate, run.size, None, rng, cv=1.0 / math.sqrt(run.burstiness))
    return Workload(run.name, prompt, output, t), (f"arrivals drawn (the file has no send times): "
                                                   f"{run.request_rate:g} req/s, burstiness {run.burstiness:g}, "
                                                   f"capsim's draw with seed {run.seed or 0}, not the client's")


def replay(run: BenchRun, dep: Deployment, fast: bool = True) -> tuple[ServingResult, str]:
    """Serve the run's requests on one replica of the deployment."""
    wl, how = workload(run)
    sampling, _ = run_sampling(run)
    res = simulate(dep.model, replace(dep.plan, replicas=1), dep.accelerator, dep.perf, wl,
                   ServeConfig(engine=dep.engine, sampling=sampling, fast=fast))
    return res, how


def _within_context(run: BenchRun, dep: Deployment) -> None:
    """A run whose completed requests exceed the served context (the engine's max_model_len, else the model's)
    could not have run on this deployment: vLLM refuses such a request (an error for that request), so the file
    and the deployment named disagree."""
    context = dep.engine.max_model_len or dep.model.max_seq
    over = run.prompt_tokens + run.output_tokens > context
    if over.any():
        raise SpecError(run.path, f"{int(over.sum())} completed requests need up to "
                        f"{int((run.prompt_tokens + run.output_tokens).max())} tokens, more than the served context "
                        f"of {context} (max_model_len, else the model's max_position_embeddings): the server "
                        "would have refused them", "name the server's max_model_len (--flags max_model_len=N) or "
                        "the model it served")


def prompt_batches(run: BenchRun) -> tuple[np.ndarray, np.ndarray]:
    """(requests, padding) of each prompt step the run shows: requests whose first tokens the client saw within
    ONE_STEP_S of each other, the padding their batch needs when padded to its longest prompt. A client that
    stamps tokens late can merge steps; empty without per-request send times."""
    sent = run.sent_s if run.sent_s is not None else run.arrival_s
    if sent is None or run.aggregates is not None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = sent + run.ttft_s
    ok = np.isfinite(first)
    order = np.argsort(first[ok], kind="stable")
    t, p = first[ok][order], np.asarray(run.prompt_tokens, np.int64)[ok][order]
    if not len(t):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(t) > ONE_STEP_S])
    size = np.diff(np.r_[starts, len(t)])
    return size, size * np.maximum.reduceat(p, starts) - np.add.reduceat(p, starts)


def padding_note(run: BenchRun, dep: Deployment) -> str | None:
    """Where the engine pads prompt batches with a cap (EngineProfile.max_paddings), the run's prompt steps that
    carry more padding than the cap: steps the engine, as stated, cannot form (vLLM 0.2.3 vllm/core/scheduler.py
    Scheduler._schedule L184-186 stops a batch before its paddings exceed max_paddings), so the run was made with
    other flags or another engine. None when every step fits (or the engine has no cap)."""
    cap = dep.engine.max_paddings
    if cap is None:
        return None
    size, pad = prompt_batches(run)
    over = pad > cap
    if not over.any():
        return None
    return (f"{run.name}: {int(over.sum())} of its {int((size > 1).sum())} prompt batches (first tokens within "
            f"{ONE_STEP_S * 1e3:g} ms of each other) need more padding than max_paddings={cap} (up to "
            f"{int(pad.max())} tokens), which {dep.engine.name} cannot schedule (vLLM 0.2.3 vllm/core/scheduler.py "
            "L184-186): the run was not made with the flags stated")


def run_rows(run: BenchRun, dep: Deployment, source: str = "") -> tuple[list[Row], str]:
    """Measured against predicted for one run; a run capsim cannot replay gives rows not priced, with the reason
    (a report never stops at one run)."""
    measured = measured_summary(run)
    out, err = attempt(_within_context, run, dep)
    if err is None:
        out, err = attempt(replay, run, dep)
    if err is not None:
        rows = [failed_row(source or run.name, run.name, name, measured[key] * 1e3, "ms", str(err))
                for name, key in METRICS if key in measured]
        return rows, f"{run.describe()}; not replayed: {err}"
    res, how = out
    pred = res.summary
    case = run.name
    rows = [Row(source or run.name, case, name, measured[key] * 1e3, float(pred[key]) * 1e3, "ms", how)
            for name, key in METRICS if key in measured and math.isfinite(measured[key]) and measured[key] > 0]
    rows += [Row(source or run.name, case, name, measured[key], float(pred[key]), unit, how)
             for name, key, unit in THROUGHPUT]
    return rows, f"{run.describe()}; replayed with {how}"


def bench_report(runs: list[BenchRun], dep: Deployment, suite: str = "bench",
                 notes: tuple[str, ...] = ()) -> Report:
    """Every run replayed on the deployment, one report."""
    rows: list[Row] = []
    described = []
    for run in runs:
        r, d = run_rows(run, dep)
        rows += r
        described.append(d)
        described += [n for n in (padding_note(run, dep),) if n]
    return Report(suite, dep.perf.name, tuple(rows), (f"deployment: {dep.describe()}", *notes, *described))


__all__ = ["Deployment", "METRICS", "THROUGHPUT", "bench_report", "padding_note", "prompt_batches", "replay", "run_rows",
           "workload"]
