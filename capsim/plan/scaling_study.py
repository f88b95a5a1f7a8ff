"""Scaling studies, from small to large deployment: serving from 1 to 10,000 req/s, training from 8 to 16,384
GPUs, and the model size a compute budget buys (Chinchilla)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.perf import Perf
from capsim.plan.scaling import CHINCHILLA_2022, LossFit, compute_optimal
from capsim.plan.serving import Slo, Traffic, bound_table, candidates, perf_of, steady_state, why_not
from capsim.plan.training import plan_training
from capsim.sim.serving.fleet import ServeConfig, engine_plan, simulate
from capsim.sim.serving.presets import build_workload
from capsim.specs.catalog import get_accelerator
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization
from capsim.specs.precision import Precision

SERVE_RATES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
TRAIN_GPUS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
SLICE_REPLICAS = 8  # replicas simulated to measure a large fleet's latency (identical, round-robin)


def serving_scaling(model: ModelSpec, lengths_traffic: Traffic, slo: Slo, accelerators: Sequence[str],
                    rates: Sequence[float] = SERVE_RATES, quantizations: tuple[str, ...] = ("none", "fp8"),
                    engine: str = "vllm", requests: int = 2000, *, perfs: Mapping[str, Perf]) -> pd.DataFrame:
    """At each rate, the cheapest fleet by the capacity bound, sized up until its simulated p99s meet the SLOs.

    Replicas of a fleet are identical and round-robin routed, so a fleet of R replicas is simulated as a slice of
    min(R, 8) replicas at the matching share of the traffic (its per-replica load and so its latencies are the
    fleet's). ``perfs``: device models by accelerator name."""
    accs = [get_accelerator(a) for a in accelerators]
    cands = candidates(model, accs, tuple(Quantization(q) for q in quantizations))
    rows = []
    for rate in rates:
        traffic = Traffic(rate, lengths_traffic.lengths, lengths_traffic.trace, requests=requests)
        table = bound_table(model, cands, traffic, slo, perfs, engine)
        ok = table[table["viable"]]
        if not len(ok):
            rows.append({"rate_rps": rate, "feasible": False,
                         "reason": f"no candidate meets the SLOs ({why_not(table)})"})
            continue
        best = ok.iloc[0]
        replicas, latency = _confirm_slice(model, best, traffic, slo, engine, perf_of(perfs, best["accelerator"]))
        gpus = replicas * int(best["tp"]) * int(best["pp"])
        price = float(best["price_usd_per_gpu_hour"])
        tokens_per_hour = rate * 3600 * float(np.mean(build_workload(traffic.workload(rate)).output_tokens))
        rows.append({"rate_rps": rate, "feasible": True, "accelerator": best["accelerator"], "tp": int(best["tp"]),
                     "pp": int(best["pp"]),
                     "quantization": best["quantization"], "replicas": replicas, "gpus": gpus,
                     "cost_per_hour_usd": gpus * price,
                     "cost_per_million_output_tokens": gpus * price / tokens_per_hour * 1e6, **latency})
    return pd.DataFrame(rows)


def _confirm_slice(model: ModelSpec, row: pd.Series, traffic: Traffic, slo: Slo, engine: str,
                   perf: Perf) -> tuple[int, dict[str, float]]:
    acc = get_accelerator(row["accelerator"], row["price_usd_per_gpu_hour"])
    replicas = int(row["replicas_min"])
    for _ in range(8):
        k = min(replicas, SLICE_REPLICAS)
        plan = engine_plan(engine, model, acc, tp=int(row["tp"]), pp=int(row["pp"]), quantization=row["quantization"],
                           max_batch=int(row["max_batch"]), replicas=k)
        work = build_workload(traffic.workload(traffic.peak_rps * k / replicas))
        res = simulate(model, plan, acc, perf, work,
                       ServeConfig(engine=engine, slo_ttft_s=slo.ttft_p99_s, slo_tpot_s=slo.tpot_p99_s))
        lat = steady_state(res.requests)
        if slo.met(lat):
            return replicas, lat
        replicas = max(replicas + 1, math.ceil(replicas * 1.25))
    return replicas, {**lat, "note": "SLOs not met after 8 sizing rounds"}


def training_scaling(model: ModelSpec, accelerator: str | Accelerator, tokens: float, global_batch: int,
                     seq_len: int, gpu_counts: Sequence[int] = TRAIN_GPUS, *, perf: Perf,
                     framework: str = DEFAULT_FRAMEWORK, precision: Precision | None = None) -> pd.DataFrame:
    """The best layout at each GPU count (strong scaling at a fixed global batch): step time, MFU, scaling
    efficiency against the smallest count that fits, and the time and cost to train ``tokens``."""
    acc = get_accelerator(accelerator)
    rows = []
    for n in gpu_counts:
        try:
            plan = plan_training(model, acc, tokens, global_batch, seq_len, num_gpus=n, perf=perf,
                                 framework=framework, precision=precision)
        except Exception as err:  # noqa: BLE001 - a count no layout can use is a row, not a failure
            rows.append({"gpus": n, "feasible": False, "reason": str(err)})
            continue
        if not plan.feasible:
            rows.append({"gpus": n, "feasible": False, "reason": plan.reason})
            continue
        b = plan.best
        rows.append({"gpus": n, "feasible": True, "dp": b["dp"], "tp": b["tp"], "pp": b["pp"], "cp": b["cp"],
                     "step_s": b["step_s"], "mfu": b["mfu"], "tokens_per_s": b["tokens_per_s"],
                     "time_to_train_s": b["time_to_train_s"], "cost_usd": b["cost_usd"], "energy_j": b["energy_j"]})
    df = pd.DataFrame(rows)
    fit = df[df["feasible"]]
    if len(fit):
        base = fit.iloc[0]
        df["scaling_efficiency"] = (df.get("tokens_per_s") / df["gpus"]) / (base["tokens_per_s"] / base["gpus"])
    return df


def model_size_study(budgets_flops: Sequence[float], fit: LossFit = CHINCHILLA_2022) -> pd.DataFrame:
    """Compute-optimal parameters, tokens and loss for each FLOP budget (Hoffmann et al. 2022)."""
    return pd.DataFrame([compute_optimal(c, fit).to_dict() for c in budgets_flops])


__all__ = ["SERVE_RATES", "TRAIN_GPUS", "model_size_study", "serving_scaling", "training_scaling"]
