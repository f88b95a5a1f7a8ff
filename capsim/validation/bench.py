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
    return Report(suite, dep.perf.name, tuple(rows), (f"deployment: {dep.describe()}", *notes, *described))


__all__ = ["Deployment", "METRICS", "THROUGHPUT", "bench_report", "replay", "run_rows", "workload"]
