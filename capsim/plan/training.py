"""The training planner: the fastest or cheapest layout (and GPU count) for a model and a token budget.

Every valid layout of every candidate GPU count is priced at once (``search_layouts``); a deadline or a budget
filters them; the winner is explained by what limits it: memory, the pipeline bubble, or communication.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from capsim.analytic.layouts import Layouts
from capsim.analytic.training import DEFAULT_FRAMEWORK, step_time
from capsim.errors import SpecError, require
from capsim.perf import Perf
from capsim.plan.train_layouts import search_layouts
from capsim.specs.hardware import Accelerator, Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import default_uneven
from capsim.specs.precision import Precision

EXPOSED_COMM = ("tp_comm_s", "cp_comm_s", "ep_comm_s", "pp_comm_s", "zero_comm_s", "dp_comm_s",
                "embedding_sync_s", "param_gather_s")


class RankBy(StrEnum):
    TIME = "time"
    COST = "cost"


@dataclass(frozen=True)
class TrainingPlan:
    """Ranked layouts (one row each, best first), the winner, and why it is what it is."""

    model: str
    accelerator: str
    tokens: float
    rank_by: str
    table: pd.DataFrame  # feasible layouts meeting the deadline/budget, best first
    evaluated: int  # layouts priced, valid or not
    calibration: str
    framework: str
    feasible: bool
    reason: str = ""  # why nothing qualified, when infeasible
    limits: dict[str, float] = field(default_factory=dict)  # shares of the winner's step
    explanation: tuple[str, ...] = ()

    @property
    def best(self) -> dict[str, Any]:
        return self.table.iloc[0].to_dict() if len(self.table) else {}

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {"model": self.model, "accelerator": self.accelerator, "tokens": self.tokens, "rank_by": self.rank_by,
                "feasible": self.feasible, "reason": self.reason, "evaluated": self.evaluated,
                "calibration": self.calibration, "framework": self.framework, "best": self.best,
                "limits": self.limits, "explanation": list(self.explanation),
                "top": self.table.head(top).to_dict("records")}


def candidate_gpu_counts(gpus_per_node: int, max_gpus: int) -> list[int]:
    """1, 2, 4 ... up to a node, then whole nodes doubling up to ``max_gpus``."""
    counts = [1 << i for i in range(16) if (1 << i) <= min(gpus_per_node, max_gpus)]
    n = gpus_per_node * 2
    while n <= max_gpus:
        counts.append(n)
        n *= 2
    return counts


def _priced(model: ModelSpec, acc: Accelerator, gpus: int, tokens: float, global_batch: int, seq_len: int,
            perf: Perf, precision: Precision, framework: str, fixed: dict | None,
            usable: float) -> pd.DataFrame:
    cluster = Cluster(acc, gpus)
    frame = search_layouts(model, cluster, global_batch, seq_len, perf, precision, framework, fixed, top=None)
    frame = frame[frame["memory_per_gpu_bytes"] <= usable * acc.memory_bytes].copy()
    frame.insert(0, "gpus", gpus)
    frame["time_to_train_s"] = tokens / frame["tokens_per_s"]
    frame["cost_usd"] = frame["time_to_train_s"] / 3600.0 * cluster.price_usd_per_hour  # NaN: no price known
    frame["energy_j"] = frame["time_to_train_s"] * gpus * (acc.tdp_w or np.nan)
    return frame


def plan_training(model: ModelSpec, accelerator: Accelerator, tokens: float, global_batch: int, seq_len: int,
                  num_gpus: int | None = None, deadline_s: float | None = None, budget_usd: float | None = None,
                  rank_by: RankBy | str | None = None, *, perf: Perf,
                  precision: Precision | None = None, framework: str = DEFAULT_FRAMEWORK,
                  fixed: dict[str, object] | None = None, max_gpus: int = 16384,
                  usable_memory_fraction: float = 0.9) -> TrainingPlan:
    """Search layouts on ``num_gpus`` (or on every candidate count up to ``max_gpus`` when a deadline or budget
    is given) and rank them by time or cost. ``perf``: the accelerator's device model
    (``capsim.calibration.perf_for``).

    ``usable_memory_fraction`` keeps headroom for the CUDA context, NCCL buffers and allocator fragmentation,
    which capsim's memory model does not count (default: plan within 90% of the device memory).
    """
    require(tokens > 0, "tokens", f"must be positive, got {tokens!r}")
    require(0.0 < usable_memory_fraction <= 1.0, "usable_memory_fraction", "must be in (0, 1]")
    rank = RankBy(rank_by) if rank_by else (RankBy.COST if deadline_s else RankBy.TIME)
    if accelerator.price_usd_per_hour is None and (rank is RankBy.COST or budget_usd is not None):
        raise SpecError("price", f"{accelerator.name} has no price in the catalog, so no layout can be ranked by "
                        "cost or held to a budget", "give its price per GPU-hour (--price), or rank by time")
    precision = precision or Precision()
    counts = [num_gpus] if num_gpus else candidate_gpu_counts(accelerator.gpus_per_node, max_gpus)
    if not num_gpus and deadline_s is None and budget_usd is None:
        raise SpecError("num_gpus", "no GPU count, deadline or budget given", "pass --gpus, --deadline or --budget")
    frames, seen = [], []
    for gpus in counts:
        try:
            frames.append(_priced(model, accelerator, gpus, tokens, global_batch, seq_len, perf, precision,
                                  framework, fixed, usable_memory_fraction))
            seen.append(frames[-1].attrs)
        except SpecError as err:
            if num_gpus:
                raise
            seen.append(str(err))  # no layout of this count can run this batch: try the next count
    evaluated = sum(int(f.attrs.get("evaluated", 0)) for f in frames)
    attrs = dict(frames[0].attrs) if frames else {}
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    reason = ""
    if table.empty:
        reason = why_none(model, accelerator, counts, seen, usable_memory_fraction)
    else:
        if deadline_s is not None:
            table = table[table["time_to_train_s"] <= deadline_s]
            reason = reason or ("" if len(table) else f"no layout finishes {tokens:.3g} tokens within the deadline "
                                f"({deadline_s / 86400:.1f} days) on up to {counts[-1]} GPUs")
        if budget_usd is not None and len(table):
            table = table[table["cost_usd"] <= budget_usd]
            reason = reason or ("" if len(table) else f"no layout trains {tokens:.3g} tokens within ${budget_usd:,.0f}")
    key = ["time_to_train_s", "cost_usd"] if rank is RankBy.TIME else ["cost_usd", "time_to_train_s"]
    table = table.sort_values(key, kind="stable").reset_index(drop=True) if len(table) else table
    plan = TrainingPlan(model.name, accelerator.name, float(tokens), rank.value, table, evaluated,
                        str(attrs.get("calibration", "")), str(attrs.get("framework", framework)), bool(len(table)),
                        reason)
    if not plan.feasible:
        return plan
    limits, explanation = explain(model, accelerator, plan.best, global_batch, seq_len, perf, precision,
                                  framework, usable_memory_fraction)
    return TrainingPlan(**{**plan.__dict__, "limits": limits, "explanation": explanation})


def why_none(model: ModelSpec, acc: Accelerator, counts: list[int], seen: list[Any], usable: float) -> str:
    """The constraint that left no layout: none could run at all (the commonest reasons), or none fits memory
    (with the least any runnable layout needs)."""
    where = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    searched = [a for a in seen if isinstance(a, dict)]
    if not searched:
        return f"no layout of {model.name} runs on {where} GPUs: {seen[-1] if seen else 'no GPU count to try'}"
    if sum(a["runnable"] for a in searched) == 0:
        reasons: dict[str, int] = {}
        for a in searched:
            for k, n in a["reasons"].items():
                reasons[k] = reasons.get(k, 0) + n
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
        return (f"no layout of {model.name} can run on {where} GPUs: "
                + "; ".join(f"{why} ({n:,} layouts)" for why, n in top))
    least = min(a["min_memory_bytes"] for a in searched if a["runnable"])
    return (f"no layout of {model.name} fits {usable:.0%} of {acc.name}'s {acc.memory_bytes / 1e9:.1f} GB: the "
            f"smallest needs {least / 1e9:.1f} GB per GPU" + _release_note(searched))


def _release_note(searched: list[dict[str, Any]]) -> str:
    """What the release's pipeline limits left out of the search (uneven or interleaved splits it cannot run)."""
    left = sorted({tuple(x) for a in searched for x in a.get("release_excluded", [])})
    if not left:
        return ""
    pps = sorted({p for p, _ in left})
    shown = ", ".join(str(p) for p in pps[:8]) + (", ..." if len(pps) > 8 else "")
    return (f"; {searched[0].get('framework', 'the release')} cannot run the uneven or interleaved splits of pp in "
            f"{{{shown}}} (a release with uneven pipelines, e.g. megatron-bridge-26.04.01, can)")


def _layouts(model: ModelSpec, rows: list[dict[str, Any]], global_batch: int, seq_len: int) -> Layouts:
    cols = ("dp", "tp", "pp", "v", "cp", "ep", "etp", "micro_batch", "recompute", "sp", "zero_stage",
            "distributed_optimizer", "shard", "schedule")
    return Layouts.build(model, **{c: np.array([r[c] for r in rows]) for c in cols}, global_batch=global_batch,
                         seq_len=seq_len)


def _variants(best: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Neighbours of the winner that would be faster if memory allowed."""
    out = []
    if best["recompute"] > 0:
        out.append((f"recompute {['none', 'selective', 'full'][best['recompute'] - 1]} instead of "
                    f"{['none', 'selective', 'full'][best['recompute']]}", {**best, "recompute": best["recompute"] - 1}))
    out.append((f"micro-batch {best['micro_batch'] * 2}", {**best, "micro_batch": best["micro_batch"] * 2}))
    if best["pp"] > 1:  # a sharding group of all of dp x cp stays all of it (not a hybrid group of half)
        whole = int(best.get("shard") or 0) in (0, best["dp"] * best["cp"])
        out.append((f"pp {best['pp'] // 2} (dp {best['dp'] * 2})", {**best, "pp": best["pp"] // 2, "dp": best["dp"] * 2,
                                                                     "v": 1, "schedule": 1,
                                                                     "shard": 0 if whole else best["shard"]}))
    return out


def explain(model: ModelSpec, acc: Accelerator, best: dict[str, Any], global_batch: int, seq_len: int,
            perf: Perf, precision: Precision, framework: str,
            usable: float) -> tuple[dict[str, float], tuple[str, ...]]:
    """Shares of the winner's step and what stops it going faster."""
    cluster = Cluster(acc, int(best["gpus"]))
    variants = [(name, v) for name, v in _variants(best)
                if global_batch % (v["dp"] * v["micro_batch"]) == 0 and default_uneven(model.total_layers, v["pp"])]
    lay = _layouts(model, [best] + [v for _, v in variants], global_batch, seq_len)
    st = step_time(model, lay, cluster, perf, precision, framework)
    step = float(st.step_s[0])
    comm = sum(float(np.asarray(getattr(st, k))[0]) for k in EXPOSED_COMM)
    limits = {"compute_share": float((st.compute_s[0] + st.recompute_s[0]) / step),
              "bubble_share": float(st.bubble_s[0] / step), "exposed_comm_share": comm / step,
              "memory_share": float(st.memory.total_bytes[0] / acc.memory_bytes), "mfu": float(st.mfu[0])}
    notes = [f"step {step:.3g} s: compute {limits['compute_share']:.0%}, pipeline bubble "
             f"{limits['bubble_share']:.0%}, exposed communication {limits['exposed_comm_share']:.0%}; "
             f"memory {limits['memory_share']:.0%} of {acc.memory_bytes / 1e9:.1f} GB; MFU {limits['mfu']:.1%}"]
    memory_bound = False
    for i, (name, _) in enumerate(variants, start=1):
        faster = float(st.step_s[i]) < step * 0.999
        fits = bool(st.feasible[i]) and float(st.memory.total_bytes[i]) <= usable * acc.memory_bytes
        if faster and not fits:
            memory_bound = True
            notes.append(f"memory limits it: {name} would be {1 - float(st.step_s[i]) / step:.0%} faster but needs "
                         f"{float(st.memory.total_bytes[i]) / 1e9:.1f} GB per GPU")
    if limits["bubble_share"] >= 0.10:
        notes.append(f"the pipeline bubble costs {limits['bubble_share']:.0%}: more micro-batches (a larger global "
                     "batch) or more interleaving would shrink it")
    if limits["exposed_comm_share"] >= 0.15:
        notes.append(f"communication left exposed costs {limits['exposed_comm_share']:.0%}: a faster network, "
                     "less tensor parallelism or an overlapping framework would help")
    overheads = {"pipeline bubble": limits["bubble_share"], "communication": limits["exposed_comm_share"]}
    worst = max(overheads, key=overheads.get)
    if memory_bound:
        main = "memory"
    elif overheads[worst] >= 0.05:
        main = worst
    else:
        main = "compute (kernel efficiency; bubble and exposed communication are both under 5%)"
    notes.append(f"main limit: {main}")
    return limits, tuple(notes)
