"""Scaling studies, from small to large deployment: serving from 1 to 10,000 req/s, training from 8 to 16,384
GPUs, and the model size a compute budget buys (Chinchilla)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.perf import Perf
from capsim.plan.confirm import ConfirmRule
from capsim.plan.scaling import CHINCHILLA_2022, LossFit, compute_optimal
from capsim.plan.serving import DEFAULT_RULE, QUANTIZATIONS, Slo, Traffic, plan_serving
from capsim.plan.training import plan_training
from capsim.specs.catalog import get_accelerator
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.precision import Precision

SERVE_RATES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
TRAIN_GPUS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
SCALING_KEYS = ("accelerator", "tp", "pp", "quantization", "max_batch", "replicas", "gpus", "cost_per_hour_usd",
                "cost_per_million_output_tokens", "ttft_p99_s", "tpot_p99_s", "goodput", "requests", "precise")


def serving_scaling(model: ModelSpec, lengths_traffic: Traffic, slo: Slo, accelerators: Sequence[str],
                    rates: Sequence[float] = SERVE_RATES, quantizations: tuple[str, ...] = QUANTIZATIONS,
                    engine: str = "vllm", requests: int | None = None, rule: ConfirmRule = DEFAULT_RULE,
                    workers: int | None = None, *, perfs: Mapping[str, Perf],
                    memo: dict | None = None, front: bool = False) -> pd.DataFrame:
    """At each rate, the fleet :func:`plan_serving` picks (the same search and confirmation rule as
    ``capsim plan serve``), one row per rate; ``perfs``: device models by accelerator name. The candidates'
    capacity bounds do not depend on the rate: they are computed once for all rates (in ``memo`` where given, a
    dict the caller keeps to share them with later calls with the same ``perfs``). Only the best fleet is kept, so
    the plans skip sizing other kinds for their Pareto fronts (``plan_serving(front=False)``; same best;
    ``front=True`` sizes them, as ``capsim plan serve`` does: only slower)."""
    memo = {} if memo is None else memo
    rows = []
    for rate in rates:
        traffic = Traffic(rate, lengths_traffic.lengths, lengths_traffic.trace, requests=requests,
                          sampling=lengths_traffic.sampling)
        plan = plan_serving(model, traffic, slo, list(accelerators), perfs, quantizations=quantizations,
                            engine=engine, workers=workers, rule=rule, memo=memo, front=front)
        if not plan.feasible:
            rows.append({"rate_rps": rate, "feasible": False, "reason": plan.reason})
            continue
        b = plan.best
        rows.append({"rate_rps": rate, "feasible": True, **{k: b[k] for k in SCALING_KEYS}, "reason": ""})
    return pd.DataFrame(rows)


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
