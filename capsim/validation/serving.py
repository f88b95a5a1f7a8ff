"""``capsim validate serving``: published serving measurements against the iteration-time model and the fleet
simulator, one code path for every row (capsim/data/validation/serving_published.csv, or any CSV with its columns).

Each row's engine comes from its ``engine`` column (``unstated`` takes capsim's default, ``vllm``), except that a
source whose data predate an engine's current version runs the profile of the version it names or of its date
(DistServe 2024-04: vLLM V0; TensorRT-LLM release 0.5.0: ``tensorrt-llm-0.5``), a dated configuration fact, not a
correction. The
calibration of each row is the GPU-profile calibration of its accelerator where one ships, else its datasheet one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from capsim.analytic.serving import StepShape, iteration_time
from capsim.calibration import load_calibration, perf_for
from capsim.data.loaders import SHIPPED, data_file, load_trace
from capsim.errors import SpecError
from capsim.inputs import inside
from capsim.perf import Perf
from capsim.sim.serving import ServeConfig, Workload, engine_plan, simulate
from capsim.sim.serving.metrics import ServingResult
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.engine import get_engine
from capsim.specs.plans import ServePlan
from capsim.validation.harness import Report, Row, read_csv

REQUIRED = ("source", "model", "gpu", "gpus", "tp", "precision", "engine", "workload", "trace", "batch",
            "input_tokens", "output_tokens", "rate_rps", "metric", "value", "unit")
# DistServe's ground truth was committed on 2024-04-23 (its README): vLLM then ran the V0 engine (V1 arrived in
# 2025). The same README gives the launcher's flags (max-num-batched-tokens 16384, max-num-seqs 1024,
# gpu-memory-utilization 0.95), marked uncertain; they are the best statement of the run's configuration.
# The trtllm-0.5 rows come from TensorRT-LLM release 0.5.0's performance.md (the CSV header): that release's profile.
ENGINE_OF_SOURCE = {"distserve": "vllm-v0", "trtllm-0.5": "tensorrt-llm-0.5"}
FLAGS_OF_SOURCE = {"distserve": {"max_batched_tokens": 16384, "max_batch": 1024, "gpu_memory_utilization": 0.95}}
SCALE = {"ms": 1e-3, "s": 1.0, "tok/s": 1.0}
SATURATION_TTFT_S = 1.0  # the mean TTFT that marks saturation, applied to measured and simulated runs alike
MAX_LOAD_REQUESTS_PER_SEQ = 4  # max-load: this many requests per batch slot, all queued at t = 0


def _perf(gpu: str, calibration: str | None) -> Perf:
    """The calibration for one row: the one asked for if it describes this GPU, else the GPU's profile
    calibration where one ships, else its datasheet calibration."""
    acc = get_accelerator(gpu)
    if calibration is not None:
        cal = load_calibration(calibration)
        if get_accelerator(cal.device.get("name", cal.name)).name == acc.name:
            return cal.perf()
    return perf_for(acc)


def _plan(r: dict[str, str], engine: str, **extra: object) -> ServePlan:
    model, acc = get_model(r["model"]), get_accelerator(r["gpu"])
    prec = r["precision"].strip().lower()
    tp, gpus = int(r["tp"]), int(r["gpus"])
    if gpus % tp:
        raise SpecError("gpus", f"{gpus} GPUs do not split into TP groups of {tp}", "fix the row's gpus or tp")
    quant = {"fp8": "fp8", "int8": "int8", "int4": "int4"}.get(prec, "none")
    # One rule for every fp8 row: FP8 weights, activations and KV cache, as NVIDIA's FP8 checkpoints quantize them.
    kw: dict[str, object] = {"tp": tp, "quantization": quant, "dtype": prec if prec in ("fp16", "bf16") else "bf16",
                             "kv_cache_dtype": "fp8" if prec == "fp8" else None}
    kw.update(FLAGS_OF_SOURCE.get(r["source"].lower(), {}))
    kw.update(extra)
    return engine_plan(engine, model, acc, **kw)


def row_engine(r: dict[str, str]) -> str:
    src = r["source"].lower()
    if src in ENGINE_OF_SOURCE:
        return ENGINE_OF_SOURCE[src]
    name = r["engine"].strip().lower()
    return "vllm" if name in ("", "unstated", "unknown") else get_engine(name).name


def _trace(r: dict[str, str], csv_path: str | Path | None) -> str:
    """A row's trace: a shipped name, a file under capsim/data, or one under the data/ folder beside a user CSV's
    folder; a name that leads out of those folders (``..``, an absolute path) is refused, never opened."""
    name = r["trace"].strip()
    if csv_path is not None:
        data = Path(csv_path).resolve().parent.parent / "data"
        if (data / name).is_file():
            return str(inside(data, name, "trace"))
    return name if name in SHIPPED else str(data_file(name))


def _run(r: dict[str, str], wl: Workload, plan: ServePlan, engine: str, perf: Perf,
         scheduler: str | None = None) -> ServingResult:
    model, acc = get_model(r["model"]), get_accelerator(r["gpu"])
    return simulate(model, plan.with_(replicas=int(r["gpus"]) // plan.tp), acc, perf, wl,
                    ServeConfig(engine=engine, scheduler=scheduler))


def _fixed(n: int, r: dict[str, str], arrival: np.ndarray | None, clients: int = 0) -> Workload:
    return Workload(r["workload"], np.full(n, int(r["input_tokens"])), np.full(n, int(r["output_tokens"])),
                    arrival, clients)


def predict(r: dict[str, str], perf: Perf, csv_path: str | Path | None = None) -> tuple[float, str]:
    """The predicted value of one row (in SI units) and a note on what capsim chose."""
    kind, metric, engine = r["workload"].strip().lower(), r["metric"].strip().lower(), row_engine(r)
    model, acc = get_model(r["model"]), get_accelerator(r["gpu"])
    note = f"engine {engine}"
    if kind == "single-batch":
        plan, b, p = _plan(r, engine), int(r["batch"]), int(r["input_tokens"])
        shape = StepShape.prefill(b, p) if metric == "prefill_batch_time" else StepShape.decode(b, p)
        return float(iteration_time(model, plan, perf, shape, engine, acc).total_s), note
    if kind == "replay":
        df = load_trace(_trace(r, csv_path))
        wl = Workload(r["trace"], df["prompt_tokens"].to_numpy(), df["output_tokens"].to_numpy(),
                      df["arrived_at"].to_numpy() - df["arrived_at"].iloc[0])
        res = _run(r, wl, _plan(r, engine), engine, perf)
        return _metric(res, metric), note + f", {wl.size} requests replayed"
    if kind == "poisson":
        rate, n = float(r["rate_rps"]), 1000
        rng = np.random.default_rng(0)
        t = np.cumsum(rng.exponential(1 / rate, n)) - 1 / rate
        if r["trace"].strip():
            df = load_trace(_trace(r, csv_path))
            idx = rng.integers(0, len(df), n)
            wl = Workload("poisson", df["prompt_tokens"].to_numpy()[idx], df["output_tokens"].to_numpy()[idx], t)
        else:
            wl = _fixed(n, r, t)
        return _metric(_run(r, wl, _plan(r, engine), engine, perf), metric), note + ", 1000 Poisson requests"
    if kind == "max-load":
        plan = _plan(r, engine)
        n = MAX_LOAD_REQUESTS_PER_SEQ * plan.max_batch
        res = _run(r, _fixed(n, r, np.zeros(n)), plan, engine, perf)
        return _metric(res, metric), note + f", {n} requests queued at t=0 (max_num_seqs {plan.max_batch})"
    if kind == "static":
        b = int(r["batch"])
        res = _run(r, _fixed(4 * b, r, np.zeros(4 * b)), _plan(r, engine, max_batch=b), engine, perf, "static")
        return _metric(res, metric), note + f", 4 static batches of {b}"
    if kind == "latency":
        b = int(r["batch"])
        return _metric(_run(r, _fixed(b, r, np.zeros(b)), _plan(r, engine), engine, perf), metric), note
    if kind == "concurrency":
        c = int(r["batch"])
        res = _run(r, _fixed(10 * c, r, None, c), _plan(r, engine), engine, perf)
        return _metric(res, metric), note + f", {10 * c} requests from {c} clients"
    raise SpecError("workload", f"unknown workload kind {kind!r}",
                    "use single-batch, poisson, replay, max-load, static, latency or concurrency")


def _metric(res: ServingResult, metric: str) -> float:
    key = {"ttft_mean": "ttft_mean_s", "tpot_mean": "tpot_mean_s", "itl_mean": "itl_mean_s",
           "e2e_latency_mean": "e2e_mean_s", "output_tokens_per_s": "output_tokens_per_s"}.get(metric)
    if key is None:
        raise SpecError("metric", f"unknown metric {metric!r}",
                        "use ttft_mean, tpot_mean, itl_mean, e2e_latency_mean or output_tokens_per_s")
    return float(res.summary[key])


def _crossing(rates: list[float], ttft_s: list[float]) -> float:
    """The rate at which mean TTFT first reaches SATURATION_TTFT_S (log-linear between neighbours)."""
    for (r0, t0), (r1, t1) in zip(zip(rates, ttft_s, strict=True), zip(rates[1:], ttft_s[1:], strict=True),
                                  strict=False):
        if t0 < SATURATION_TTFT_S <= t1:
            return r0 + (r1 - r0) * math.log(SATURATION_TTFT_S / t0) / math.log(t1 / t0)
    return math.nan


def saturation_row(rows: list[dict[str, str]], perf: Perf, csv_path: str | Path | None) -> Row | None:
    """Measured vs simulated saturation rate of a source's replays: the same requests (its longest trace), the
    first N = 100 x rate of them with their arrival gaps rescaled to span N / rate seconds, as the published runs
    were made (DistServe README: every run spans N / rate). The rate grid runs to 12 req/s."""
    ttft = sorted((float(r["rate_rps"]), float(r["value"]) * SCALE[r["unit"]], r) for r in rows
                  if r["workload"] == "replay" and r["metric"] == "ttft_mean" and r["rate_rps"])
    if len(ttft) < 2:
        return None
    measured = _crossing([t[0] for t in ttft], [t[1] for t in ttft])
    base = max(ttft, key=lambda t: len(load_trace(_trace(t[2], csv_path))))[2]
    df = load_trace(_trace(base, csv_path))
    gaps = np.diff(df["arrived_at"].to_numpy(), prepend=df["arrived_at"].iloc[0])
    grid = [round(x, 2) for x in np.arange(1.0, 12.01, 0.25)]
    sim = []
    for rate in grid:
        n = min(int(round(100 * rate)), len(df))
        t = np.cumsum(gaps[:n])
        t = (t - t[0]) * (n / rate / max(t[-1] - t[0], 1e-9))
        wl = Workload("saturation", df["prompt_tokens"].to_numpy()[:n], df["output_tokens"].to_numpy()[:n], t)
        sim.append(_metric(_run(base, wl, _plan(base, row_engine(base)), row_engine(base), perf), "ttft_mean"))
        if sim[-1] >= SATURATION_TTFT_S * 3:
            break
    predicted = _crossing(grid[: len(sim)], sim)
    if math.isnan(predicted):  # never saturated on the grid: report its top, a lower bound
        predicted = grid[-1]
    return Row(base["source"], f"{base['model']} {base['gpu']}", "saturation_rate_rps", measured, predicted, "req/s",
               f"rate where mean TTFT reaches {SATURATION_TTFT_S:g} s (log-linear between runs); measured between "
               f"{ttft[0][0]:g} and {ttft[-1][0]:g} req/s runs")


def serving_suite(path: str | Path | None = None, calibration: str | None = None) -> Report:
    rows = read_csv(path, "serving_published.csv", REQUIRED)
    out, used = [], {}
    for r in rows:
        perf = _perf(r["gpu"], calibration)
        used[perf.name] = None
        unit = r["unit"].strip()
        if unit not in SCALE:
            raise SpecError("unit", f"unknown unit {unit!r}", f"use one of {', '.join(SCALE)}")
        predicted, note = predict(r, perf, path)
        case = f"{r['model']} {r['gpu']} x{r['gpus']} {r['workload']}"
        case += f" {r['trace'] or ''} b{r['batch'] or '-'} {r['input_tokens']}/{r['output_tokens'] or '-'}".rstrip()
        out.append(Row(r["source"], case, r["metric"], float(r["value"]), predicted / SCALE[unit], unit, note))
    for source in dict.fromkeys(r["source"] for r in rows):
        group = [r for r in rows if r["source"] == source]
        sat = saturation_row(group, _perf(group[0]["gpu"], calibration), path)
        if sat is not None:
            out.append(sat)
    notes = ("engine per row: the CSV's engine; 'unstated' runs capsim's default (vllm); DistServe (2024-04) "
             "runs vllm-v0 with its launcher's flags; trtllm-0.5 runs tensorrt-llm-0.5",
             "calibration per row: the GPU-profile calibration where one ships for the row's GPU, else datasheet")
    return Report("serving", ", ".join(used), tuple(out), notes)


__all__ = ["serving_suite"]
