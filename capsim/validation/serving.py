"""``capsim validate serving``: published serving measurements against the iteration-time model and the fleet
simulator, one code path for every row (capsim/data/validation/serving_published.csv, or any CSV with its columns).

The software of a row is data: its ``engine``, ``engine_version`` (the release measured) and ``flags`` columns
pick the engine profile of that release (capsim/specs/catalog/engines.yaml) and the options it ran with. An
unknown engine, release or flag is a malformed file (exit 2, naming the column and the values capsim knows); a
row whose source does not state the engine (``unstated``) or its release is reported unpriced with that reason. The calibration of each row is
the GPU-profile calibration of its accelerator where one ships, else its datasheet one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.trtllm_bench import BENCH_TOOLS, KV_FRACTION, TRTLLM_BENCH, trtllm_bench_limits
from capsim.calibration import is_rule, load_calibration, perf_for
from capsim.data.loaders import SHIPPED, data_file, load_trace
from capsim.errors import SpecError
from capsim.inputs import inside
from capsim.perf import Perf
from capsim.sim.serving import ServeConfig, Workload, engine_plan, simulate
from capsim.sim.serving.metrics import ServingResult
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.engine import FAMILIES, EngineProfile, engine_release, known_releases
from capsim.specs.engine_flags import FLAGS, apply_flags, parse_flags
from capsim.specs.plans import ServePlan
from capsim.validation.clients import Client, all_requests, client, genai_perf_count, genai_perf_windows
from capsim.validation.harness import (
    LINE,
    DataError,
)

REQUIRED = ("source", "model", "gpu", "gpus", "tp", "precision", "engine", "engine_version", "flags", "workload",
            "trace", "batch", "input_tokens", "output_tokens", "rate_rps", "metric", "value", "unit")
SCALE = {"ms": 1e-3, "s": 1.0, "tok/s": 1.0}
METRICS = {"ttft_mean": "ttft_mean_s", "tpot_mean": "tpot_mean_s", "itl_mean": "itl_mean_s",
           "e2e_latency_mean": "e2e_mean_s", "output_tokens_per_s": "output_tokens_per_s",
           "prefill_batch_time": "", "decode_step_time": ""}
# The precision column: the weights' and activations' format, as the ServePlan quantization it is priced with
# (fp16/bf16: unquantized in that dtype; int8/int4: weight-only; fp4 = nvfp4, NVFP4 weights and activations, Blackwell).
PRECISIONS = {"fp16": "none", "bf16": "none", "fp8": "fp8", "int8": "int8", "int4": "int4", "fp4": "nvfp4",
              "nvfp4": "nvfp4"}
UNSTATED = "unstated"  # the engine column's value where the source names no engine (the published file's header)
SATURATION_TTFT_S = 1.0  # the mean TTFT that marks saturation, applied to measured and simulated runs alike
MAX_LOAD_REQUESTS_PER_SEQ = 4  # max-load with no stated request count: this many per batch slot, all queued at t = 0


@dataclass(frozen=True)
class Software:
    """A row's engine release with its flags applied, or why it cannot be priced."""

    engine: EngineProfile | None
    plan: dict[str, object]
    notes: tuple[str, ...]
    unpriced: str = ""  # why the row cannot be priced (engine unstated, or blank release)
    unpriced_field: str = "engine_version"  # the column that says so
    client: Client | None = None  # the benchmark client of a closed-loop row (None: not stated)
    bench: str = ""  # the benchmark tool that ran the engine (flags bench=, e.g. trtllm-bench); blank: not stated


def row_software(r: dict[str, str]) -> Software:
    """The engine profile, plan limits and flag notes a row states; a DataError for what capsim cannot read."""
    line = r.get(LINE, "?")
    name = r["engine"].strip().lower()
    if name == UNSTATED:  # the data's own word for an engine nobody published: a miss, not a malformed file
        return Software(None, {}, (), "the source does not state which engine ran (engine unstated); capsim prices "
                        "engines by release and guesses none: fit one to such runs with `capsim calibrate engine "
                        "--from` and `capsim validate bench --calibrate-on`", unpriced_field="engine")
    if name not in FAMILIES:
        raise DataError("engine", f"line {line}: {'no engine' if not name else f'unknown engine {name!r}'}",
                        f"name the engine that produced the row: {', '.join(sorted(set(FAMILIES.values())))} "
                        "(a row whose engine nobody published belongs to the engine-calibration data)")
    try:
        flags = parse_flags(r["flags"])
        for key in flags:
            if key not in FLAGS:
                raise SpecError("flags", f"unknown flag {key!r}", f"capsim knows {', '.join(sorted(FLAGS))}")
        bench = client(flags.pop("client")) if "client" in flags else None
        tool = flags.pop("bench", "").strip().lower()
        if tool and tool not in BENCH_TOOLS:
            raise SpecError("flags", f"bench={tool!r}", f"use one of {', '.join(BENCH_TOOLS)}")
        if tool and FAMILIES[name] != "tensorrt-llm":
            raise SpecError("flags", f"bench={tool} runs TensorRT-LLM, not {FAMILIES[name]}", "drop the flag")
        if not r["engine_version"].strip():
            return Software(None, {}, (), f"the source does not state which {FAMILIES[name]} release ran "
                            f"(engine_version is blank); capsim prices engines by release: {known_releases()}")
        applied = apply_flags(engine_release(name, r["engine_version"]), flags, r["precision"])
    except DataError:
        raise
    except SpecError as err:
        raise DataError(err.field, f"line {line}: {err.problem}", err.fix) from None
    return Software(applied.engine, applied.plan, applied.notes, client=bench, bench=tool)


def _perf(gpu: str, calibration: str | None) -> Perf:
    """The calibration for one row: a rule (``profile``, ``datasheet``) applied to its GPU as the training suite
    applies it; a calibration asked for by name if it describes this GPU, else the GPU's profile calibration where
    one ships, else its datasheet calibration."""
    acc = get_accelerator(gpu)
    if is_rule(calibration):
        return perf_for(acc, calibration)
    if calibration is not None:
        cal = load_calibration(calibration)
        if get_accelerator(cal.device.get("name", cal.name)).name == acc.name:
            return cal.perf()
    return perf_for(acc)


def _plan(r: dict[str, str], sw: Software, **extra: object) -> ServePlan:
    model, acc = get_model(r["model"]), get_accelerator(r["gpu"])
    prec = r["precision"].strip().lower()
    tp, pp, gpus = int(r["tp"]), _pp(r), int(r["gpus"])
    if gpus % (tp * pp):
        raise SpecError("gpus", f"{gpus} GPUs do not split into replicas of TP {tp} x PP {pp}",
                        "fix the row's gpus, tp or pp")
    quant = PRECISIONS[prec]
    # One rule for every fp8 row: FP8 weights, activations and KV cache, as NVIDIA's FP8 checkpoints quantize them.
    # An fp4 row keeps the serving dtype's KV cache: the column states the weights' and activations' format only.
    kw: dict[str, object] = {"tp": tp, "pp": pp, "quantization": quant, "dtype": prec if prec in ("fp16", "bf16") else "bf16",
                             "kv_cache_dtype": "fp8" if prec == "fp8" else None}
    kw.update(sw.plan)
    if kw.get("ep") == 0:  # vLLM --enable-expert-parallel: experts over the whole TP group
        kw["ep"] = tp
    plan = engine_plan(sw.engine, model, acc, **kw)
    if sw.bench == TRTLLM_BENCH:
        # trtllm-bench throughput sizes what --max_batch_size / --max_num_tokens leave unset with its own heuristic
        # (capsim/analytic/trtllm_bench.py: general.py get_settings -> tuning.py calc_engine_setting); a stated value
        # wins (throughput.py: runtime_max_bs = params max_batch_size or the heuristic's)
        if not (r["input_tokens"].strip() and r["output_tokens"].strip()):
            raise SpecError("flags", "bench=trtllm-bench sizes its limits from the dataset's lengths",
                            "give the row's input_tokens and output_tokens")
        lim = trtllm_bench_limits(model, plan, acc, int(r["input_tokens"]), int(r["output_tokens"]),
                                  float(sw.plan.get("gpu_memory_utilization", KV_FRACTION)))  # type: ignore[arg-type]
        if lim is not None:  # the engine's own settings, as a flag's are: engine_plan makes them the replica's
            unset = {k: v for k, v in (("max_batch", lim.max_batch_size), ("max_batched_tokens", lim.max_num_tokens))
                     if k not in kw and k not in extra}
            plan = engine_plan(sw.engine, model, acc, **kw, **unset)
    return plan.with_(**extra)  # the row's own replica-wide limits (a static run's batch)


def _pp(r: dict[str, str]) -> int:
    """The row's pipeline-parallel stages per replica: the optional column pp (absent or blank: 1)."""
    text = (r.get("pp") or "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise DataError("pp", f"line {r.get(LINE, '?')}: pp {text!r} is not a whole number >= 1")
    return int(text)


def _trace(r: dict[str, str], csv_path: str | Path | None) -> str:
    """A row's trace: a shipped name, a file under capsim/data, or one under the data/ folder beside a user CSV's
    folder; a name that leads out of those folders (``..``, an absolute path) is refused, never opened."""
    name = r["trace"].strip()
    if csv_path is not None:
        data = Path(csv_path).resolve().parent.parent / "data"
        if (data / name).is_file():
            return str(inside(data, name, "trace"))
    return name if name in SHIPPED else str(data_file(name))


def _run(r: dict[str, str], wl: Workload, plan: ServePlan, sw: Software, perf: Perf,
         scheduler: str | None = None) -> ServingResult:
    model, acc = get_model(r["model"]), get_accelerator(r["gpu"])
    return simulate(model, plan.with_(replicas=int(r["gpus"]) // (plan.tp * plan.pp)), acc, perf, wl,
                    ServeConfig(engine=sw.engine, scheduler=scheduler))


def _fixed(n: int, r: dict[str, str], arrival: np.ndarray | None, clients: int = 0) -> Workload:
    return Workload(r["workload"], np.full(n, int(r["input_tokens"])), np.full(n, int(r["output_tokens"])),
                    arrival, clients)


def _replay(r: dict[str, str], csv_path: str | Path | None) -> Workload:
    df = load_trace(_trace(r, csv_path))
    return Workload(r["trace"], df["prompt_tokens"].to_numpy(), df["output_tokens"].to_numpy(),
                    df["arrived_at"].to_numpy() - df["arrived_at"].iloc[0])


POISSON_REQUESTS = 1000  # a Poisson row's request count where its source states none (column batch)


def _poisson(r: dict[str, str], csv_path: str | Path | None) -> Workload:
    rate = float(r["rate_rps"])
    n = int(r["batch"]) if r["batch"].strip() else POISSON_REQUESTS  # the benchmark's own count where stated
    rng = np.random.default_rng(0)
    # vllm benchmarks/benchmark_serving.py --request-rate: "If this is inf, then all the requests are sent at time 0.
    # Otherwise, we use Poisson process to synthesize the request arrival times" (TensorRT-LLM's copy says the same)
    t = np.zeros(n) if math.isinf(rate) else np.cumsum(rng.exponential(1 / rate, n)) - 1 / rate
    if not r["trace"].strip():
        return _fixed(n, r, t)
    df = load_trace(_trace(r, csv_path))
    idx = rng.integers(0, len(df), n)
    return Workload("poisson", df["prompt_tokens"].to_numpy()[idx], df["output_tokens"].to_numpy()[idx], t)


def predict(r: dict[str, str], perf: Perf, sw: Software,
            csv_path: str | Path | None = None) -> tuple[float, str, tuple[float, float] | None]:
    """The predicted value of one row (in SI units), a note on what capsim chose, and the band of the
    prediction over the row's unstated settings (None where it leaves nothing open)."""
    if sw.engine is None:
        raise SpecError(sw.unpriced_field, sw.unpriced)
    kind, metric = r["workload"].strip().lower(), r["metric"].strip().lower()
    eng = sw.engine
    note = "; ".join((f"engine {eng.name} ({eng.engine} {eng.release})", *sw.notes))
    if kind == "concurrency":
        return _closed_loop(r, sw, perf, metric, note)
    value, note = _open_loop(r, perf, sw, kind, metric, note, csv_path)
    return value, note, None


def _open_loop(r: dict[str, str], perf: Perf, sw: Software, kind: str, metric: str, note: str,
               csv_path: str | Path | None) -> tuple[float, str]:
    model, acc, eng = get_model(r["model"]), get_accelerator(r["gpu"]), sw.engine
    if kind == "single-batch":
        plan, b, p = _plan(r, sw), int(r["batch"]), int(r["input_tokens"])
        shape = StepShape.prefill(b, p) if metric == "prefill_batch_time" else StepShape.decode(b, p)
        return float(iteration_time(model, plan, perf, shape, eng, acc).total_s), note
    if kind == "replay":
        wl = _replay(r, csv_path)
        return _metric(_run(r, wl, _plan(r, sw), sw, perf), metric), note + f"; {wl.size} requests replayed"
    if kind == "poisson":
        wl = _poisson(r, csv_path)
        how = "sent at t=0 (rate inf)" if math.isinf(float(r["rate_rps"])) else "Poisson requests"
        return _metric(_run(r, wl, _plan(r, sw), sw, perf), metric), note + f"; {wl.size} {how}"
    if kind == "max-load":  # the benchmark's own request count (column batch) where the source states it
        plan = _plan(r, sw)
        n = int(r["batch"]) if r["batch"].strip() else MAX_LOAD_REQUESTS_PER_SEQ * plan.max_batch
        res = _run(r, _fixed(n, r, np.zeros(n)), plan, sw, perf)
        how = "" if r["batch"].strip() else f", {MAX_LOAD_REQUESTS_PER_SEQ} per batch slot: the source states no count"
        limits = "trtllm-bench's " if sw.bench == TRTLLM_BENCH else ""
        return _metric(res, metric), note + f"; {n} requests queued at t=0{how} ({limits}max_num_seqs {plan.max_batch})"
    if kind == "static":
        b = int(r["batch"])
        res = _run(r, _fixed(4 * b, r, np.zeros(4 * b)), _plan(r, sw, max_batch=b), sw, perf, "static")
        return _metric(res, metric), note + f"; 4 static batches of {b}"
    if kind == "latency":
        b = int(r["batch"])
        return _metric(_run(r, _fixed(b, r, np.zeros(b)), _plan(r, sw), sw, perf), metric), note
    raise SpecError("workload", f"unknown workload kind {kind!r}",
                    "use single-batch, poisson, replay, max-load, static, latency or concurrency")


def _closed_loop(r: dict[str, str], sw: Software, perf: Perf, metric: str,
                 note: str) -> tuple[float, str, tuple[float, float] | None]:
    """A closed loop of ``batch`` clients all starting at t = 0 (every client this reads starts so:
    validation/clients.py), measured as the row's benchmark client measures it: every one of 10 x C requests
    (vllm bench serve, AIPerf); for genai-perf, perf_analyzer's time windows from the start (its default up to
    4145774f), with its request-count mode (max(10, 2 x C) requests, from fd603396) in the band. A row that does
    not name its client takes every request (the CSV's definition of the workload) and reports the band over all
    three."""
    if metric not in ("ttft_mean", "itl_mean", "output_tokens_per_s"):
        raise SpecError("metric", f"a concurrency row measures ttft_mean, itl_mean or output_tokens_per_s, not "
                        f"{metric!r}")
    c = int(r["batch"])
    key = {"ttft_mean": "ttft_mean_s", "itl_mean": "itl_mean_s", "output_tokens_per_s": "output_tokens_per_s"}[metric]
    modes = {Client.VLLM_BENCH: ("vllm-bench", 10 * c), Client.AIPERF: ("vllm-bench", 10 * c),
             Client.GENAI_PERF: ("windows", max(40 * c, 100))}
    asked = [sw.client] if sw.client is not None else [Client.VLLM_BENCH, Client.GENAI_PERF]
    runs = [modes[m] for m in asked] + ([("count", max(10, 2 * c))] if Client.GENAI_PERF in asked else [])
    got, left = [], []
    for how, n in runs:
        res = _run(r, _fixed(n, r, None, c), _plan(r, sw), sw, perf)
        try:
            m = all_requests(res.requests, res.summary) if how == "vllm-bench" else \
                genai_perf_windows(res.requests) if how == "windows" else genai_perf_count(res.requests)
        except SpecError as err:  # a client the row does not name, which could not have reported this run
            if sw.client is not None:
                raise
            left.append(f"genai-perf {how}: {err.problem}")
            continue
        got.append((getattr(m, key), f"{n} requests, {m.note}"))
    value, how = got[0]
    band = None if len(got) == 1 and sw.client is not None else (min(v for v, _ in got), max(v for v, _ in got))
    extra = "" if sw.client is not None else "; client not stated: band over vllm-bench and genai-perf start-ups"
    if len(got) > 1:
        extra += " (" + "; ".join(f"{v * (1e3 if key != 'output_tokens_per_s' else 1):.4g} from {h}" for v, h in got[1:]) + ")"
    if left:
        extra += "; left out of the band: " + "; ".join(left)
    return value, note + f"; {c} clients starting at once, {how}{extra}", band


def _metric(res: ServingResult, metric: str) -> float:
    key = METRICS.get(metric)
    if not key:
        raise SpecError("metric", f"{metric!r} is a step time, not a fleet metric", "use workload single-batch")
    return float(res.summary[key])


__all__ = ["METRICS", "PRECISIONS", "REQUIRED", "SATURATION_TTFT_S", "SCALE", "Software", "predict", "row_software"]
