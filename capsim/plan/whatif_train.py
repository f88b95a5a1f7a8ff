"""Training what-ifs from the seed's chapter on computation optimisation: mixed precision, and batch size
(gradient accumulation, the critical batch size)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capsim.analytic.params import param_counts
from capsim.analytic.training import DEFAULT_FRAMEWORK, as_released, step_time
from capsim.errors import SpecError, require
from capsim.perf import Perf
from capsim.plan.scaling import chinchilla_loss
from capsim.plan.train_layouts import search_layouts
from capsim.plan.training import why_none
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import Precision

RECIPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4")  # the last two on Blackwell only


def precision_whatif(model: ModelSpec, cluster: Cluster, plan: TrainPlan, recipes: tuple[str, ...] = RECIPES, *,
                     perf: Perf, framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """The same layout under each mixed-precision recipe: step time, MFU, memory and whether it fits.

    Speed follows each recipe's GEMM format (the calibration's peak for fp32/tf32/bf16/fp8) and bytes per value;
    memory follows its bytes per weight, gradient, master copy and Adam moment (Micikevicius et al. 2018; fp8 as
    NVIDIA Transformer Engine keeps bf16 weights), each recipe as ``framework`` runs it (``as_released``: its FP8
    scaling and FP8 parameters, 16-bit gradients where it reduces in 16 bits). A recipe the accelerator has no rate
    for is listed with why.
    """
    rows = []
    for name in recipes:
        try:  # the recipe as the release runs it, the one step_time prices (as_released)
            run = as_released(model, plan.with_(precision=Precision.preset(name)), framework)
            recipe = run.precision
            st = step_time(model, run, cluster, perf, framework=framework)
        except SpecError as err:
            rows.append({"precision": name, "feasible": False, "reason": str(err)})
            continue
        rows.append({"precision": name, "step_s": st.step_s, "tokens_per_s": st.tokens_per_s, "mfu": st.mfu,
                     "memory_per_gpu_bytes": st.memory_per_gpu_bytes, "feasible": bool(st.feasible),
                     "reason": st.reason, "loss_scaling": recipe.loss_scaling,
                     "bytes_per_param": recipe.weights.bytes + recipe.gradients.bytes + recipe.optimizer_bytes_per_param})
    out = pd.DataFrame(rows)
    if "bf16" in set(out["precision"]) and "step_s" in out:
        base = float(out.loc[out["precision"] == "bf16", "step_s"].iloc[0])
        out["speedup_vs_bf16"] = base / out["step_s"]
    return out


def critical_batch_tokens(loss: float) -> float:
    """B_crit(L) = B* / L^(1/alpha_B), B* = 2e8 tokens, alpha_B = 0.21 (Kaplan et al. 2020, Eq. 1.4; fitted on
    WebText2 losses, so an order-of-magnitude guide elsewhere)."""
    require(loss > 0, "loss", "must be positive")
    return 2e8 / loss ** (1.0 / 0.21)


def batch_size_whatif(model: ModelSpec, cluster: Cluster, tokens: float, global_batches: list[int], seq_len: int,
                      critical_batch: float | None = None, reference_batch: int | None = None, *,
                      perf: Perf, framework: str = DEFAULT_FRAMEWORK,
                      precision: Precision | None = None) -> pd.DataFrame:
    """Time to reach the same loss at each global batch size (sequences), on a fixed cluster.

    Larger batches take fewer, longer steps (more gradient accumulation or more data parallelism) and, past the
    critical batch, more tokens: E(B) = E_min (1 + B/B_crit) (McCandlish et al. 2018, Eq. 2.11). ``tokens`` is
    the planned budget at ``reference_batch`` (default: the smallest given), which sets E_min. B_crit defaults to
    Kaplan et al.'s fit at Chinchilla's loss estimate for this model and budget. A batch no layout can run at
    (under ``framework``'s release) or fit is a row with ``feasible`` False and the reason.
    """
    require(tokens > 0, "tokens", "must be positive")
    require(len(global_batches) > 0, "global_batches", "give at least one batch size")
    n = param_counts(model).non_embedding
    b_crit = critical_batch or critical_batch_tokens(float(chinchilla_loss(n, tokens)))
    ref = (reference_batch or min(global_batches)) * seq_len
    e_min = tokens / (1.0 + ref / b_crit)
    rows = []
    for gb in global_batches:
        best = search_layouts(model, cluster, gb, seq_len, perf, precision, framework, top=1)
        needed = e_min * (1.0 + gb * seq_len / b_crit)
        row = {"global_batch": gb, "batch_tokens": gb * seq_len, "critical_batch_tokens": b_crit,
               "tokens_needed": needed, "steps": needed / (gb * seq_len)}
        row.update(feasible=bool(len(best)), reason="" if len(best) else
                   why_none(model, cluster.accelerator, [cluster.num_gpus], [best.attrs], 1.0))
        if len(best):
            b = best.iloc[0]
            row.update(step_s=float(b["step_s"]), micro_batches=int(b["micro_batches"]), dp=int(b["dp"]),
                       tp=int(b["tp"]), pp=int(b["pp"]), mfu=float(b["mfu"]),
                       time_to_train_s=row["steps"] * float(b["step_s"]))
        rows.append(row)
    out = pd.DataFrame(rows)
    out["cost_usd"] = out.get("time_to_train_s", np.nan) / 3600 * cluster.num_gpus * cluster.price_usd_per_gpu_hour
    return out
