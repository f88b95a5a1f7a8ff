"""The serving planner's candidates and their analytic capacity bound.

Every accelerator x TP/PP x quantization x batch limit that can run (:func:`candidates`) gets, from the
iteration-time model, the most requests/s one replica carries within the TPOT target (:func:`capacity_bound`), and
from that a lower bound on its replicas and cost (:func:`bound_table`), which orders the simulation's search
(:mod:`capsim.plan.serving_search`). Re-exported by :mod:`capsim.plan.serving`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capsim.analytic.serving import DEFAULT_SAMPLING, Sampling, StepShape, iteration_time
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.plan.serving_specs import Slo, Traffic
from capsim.sim.serving.fleet import engine_kv_blocks, engine_plan
from capsim.specs.engine import KvReservation, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization, ServePlan

TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2, 4)  # pipeline stages (each replica keeps pp batches in flight: capsim.sim.serving.pipeline)
BATCH_CHOICES = (64, 128, 256)


@dataclass(frozen=True)
class Candidate:
    accelerator: Accelerator
    tp: int
    quantization: Quantization
    max_batch: int
    kv_cache_dtype: str | None = None  # None: the serving dtype
    pp: int = 1


def candidates(model: ModelSpec, accelerators: list[Accelerator], quantizations: tuple[Quantization, ...],
               tps: tuple[int, ...] = TP_CHOICES, batches: tuple[int, ...] = BATCH_CHOICES,
               pps: tuple[int, ...] = PP_CHOICES) -> list[Candidate]:
    """Every accelerator x TP x PP x quantization x max batch that can run (heads and layers split, format
    supported). TP stays inside a node; pipeline stages go inside a node or across nodes (the TP tier is TP's
    alone, capsim.analytic.serving.comm_tier)."""
    out = []
    for acc in accelerators:
        layouts = [(tp, pp) for tp in tps for pp in pps
                   if tp <= acc.gpus_per_node  # PP > 1 with any TP
                   and not model.heads % tp and not (model.kv_heads % tp and tp % model.kv_heads)
                   and not model.layers % pp]
        for tp, pp in layouts:
            for q in quantizations:
                if acc.peaks.of(q.compute_dtype(ServePlan().dtype)) is None:
                    continue  # e.g. fp8 math on an A100
                out += [Candidate(acc, tp, q, b, pp=pp) for b in batches]
    return out


def capacity_bound(model: ModelSpec, plan: ServePlan, acc: Accelerator, perf: Perf, engine: str,
                   prompt_mean: float, output_mean: float, slo: Slo,
                   sampling: Sampling = DEFAULT_SAMPLING) -> dict[str, Any]:
    """Most requests/s one replica carries within the TPOT target, from the iteration-time model.

    In steady state with B sequences decoding, B/O of them finish per step and as many prompts enter, so the
    step that carries the load holds B decode tokens and B P/O prefill tokens (chunked prefill mixes them; a
    prefill-first scheduler runs the same tokens in separate, batched steps at nearly the same cost). One such
    step takes t(B); the replica finishes X(B) = B / (O t(B)) requests/s and a request sees TPOT = t(B).
    B is limited by max_num_seqs, the KV cache and the TPOT target; the TTFT target must exceed one prompt's
    prefill. Scheduling gaps only lower X, so the simulation confirms (and sizes up) what this bound prunes.
    With pp stages the replica runs pp virtual engines, each with B sequences and 1/pp of the KV cache, each step
    a whole traversal t(B) (capsim.sim.serving.pipeline): X(B) = pp B / (O t(B)), TPOT = t(B).
    """
    b = np.arange(1, plan.max_batch + 1, dtype=float)
    p, o = prompt_mean, max(output_mean, 1.0)
    entering = b / o
    ctx = p + o / 2
    shape = StepShape(prefill_tokens=entering * p, prefill_seqs=entering, prefill_pairs=entering * p * (p + 1) / 2,
                      prefill_kv_tokens=entering * p, decode_seqs=b, decode_kv_tokens=b * (ctx + 1))
    t = np.asarray(iteration_time(model, plan, perf, shape, engine, acc, sampling).total_s)
    t_p = float(iteration_time(model, plan, perf, StepShape.prefill(1, p), engine, acc, sampling).total_s)
    eng = get_engine(engine)
    kv_tokens = engine_kv_blocks(model, plan, acc, eng) * plan.block_size  # per virtual engine
    # B sequences at their longest hold p + o tokens each; an engine that reserves whole sequences at admission
    # (engines.yaml kv_reservation, TRT-LLM's no-evict) holds them in whole blocks from the start (the simulator too)
    seq_tokens = p + o if eng.kv_reservation is KvReservation.PER_STEP else \
        math.ceil((p + o) / plan.block_size) * plan.block_size
    fits = b * seq_tokens <= kv_tokens
    ok = fits & (t <= (slo.tpot_p99_s if slo.tpot_p99_s is not None else np.inf))
    if slo.ttft_p99_s is not None and t_p > slo.ttft_p99_s:
        ok[:] = False
    x = plan.pp * b / (o * t)  # pp batches in flight
    if not ok.any():
        why = ("a prefill alone exceeds the TTFT target" if slo.ttft_p99_s is not None and t_p > slo.ttft_p99_s
               else "no batch size meets the TPOT target within the KV cache")
        return {"capacity_rps": 0.0, "batch": 0, "prefill_s": t_p, "step_s": float(t[0]), "reason": why}
    i = int(np.argmax(np.where(ok, x, -1)))
    return {"capacity_rps": float(x[i]), "batch": int(b[i]), "prefill_s": t_p, "step_s": float(t[i]),
            "kv_tokens": int(kv_tokens) * plan.pp, "reason": ""}


def perf_of(perfs: Mapping[str, Perf], accelerator: str) -> Perf:
    """The device model of ``accelerator`` from the planner's ``perfs`` (accelerator name -> Perf)."""
    if accelerator not in perfs:
        raise SpecError("perfs", f"no device model for {accelerator} (have {', '.join(perfs) or 'none'})",
                        "build them with capsim.calibration.perfs_for(accelerators, calibration)")
    return perfs[accelerator]


def bound_table(model: ModelSpec, cands: list[Candidate], traffic: Traffic, slo: Slo, perfs: Mapping[str, Perf],
                engine: str = "vllm", limits: dict[str, int] | None = None,
                perf_transform: Any = None, memo: dict | None = None) -> pd.DataFrame:
    """Every candidate's analytic capacity, minimum replicas and cost, viable ones cheapest first.
    ``perfs``: device models by accelerator name; ``perf_transform(perf) -> perf`` lets a what-if change the
    device model (e.g. sparse GEMMs). ``memo``: a dict a caller keeps across tables of several rates (the scaling
    study); a candidate's capacity does not depend on the rate, so it is computed once per candidate, device
    model, mean lengths, SLO, sampling and engine (its key: all of them)."""
    limits = limits or {}
    prompt, output = traffic.mean_lengths()
    used: dict[str, Perf] = {}
    rows = []
    for c in cands:
        acc = c.accelerator
        if acc.name not in used:
            base = perf_of(perfs, acc.name)
            used[acc.name] = perf_transform(base) if perf_transform is not None else base
        perf = used[acc.name]
        row = {"accelerator": acc.name, "tp": c.tp, "pp": c.pp, "quantization": c.quantization.value,
               "max_batch": c.max_batch, "kv_cache_dtype": c.kv_cache_dtype,
               "price_usd_per_gpu_hour": acc.price_usd_per_hour, "calibration": perf.name}
        key = (model, c, perf, engine, prompt, output, slo, traffic.sampling)
        if memo is None or key not in memo:
            capacity = _capacity(model, c, perf, engine, prompt, output, slo, traffic.sampling)
            if memo is not None:
                memo[key] = capacity
        row.update(memo[key] if memo is not None else capacity)
        cap = row["capacity_rps"]
        row["replicas_min"] = math.ceil(traffic.peak_rps / cap) if cap > 0 else 0
        row["gpus_min"] = row["replicas_min"] * c.tp * c.pp
        limit = limits.get(acc.name)
        if cap > 0 and limit is not None and row["gpus_min"] > limit:
            row["reason"] = f"needs {row['gpus_min']} GPUs, over the limit of {limit}"
        row["cost_per_hour_min"] = row["gpus_min"] * (acc.price_usd_per_hour or math.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    df["viable"] = (df["capacity_rps"] > 0) & (df["reason"] == "") & df["cost_per_hour_min"].notna()
    # Equal bound costs go lowest single-prompt latency first (prefill_s), so a deeper pipeline (a longer
    # traversal per step) is taken over a TP layout only where it is cheaper; no prefill_s column when every
    # bound failed.
    keys = [k for k in ("viable", "cost_per_hour_min", "prefill_s") if k in df]
    return df.sort_values(keys, ascending=[k != "viable" for k in keys], kind="stable").reset_index(drop=True)


def _capacity(model: ModelSpec, c: Candidate, perf: Perf, engine: str, prompt: float, output: float,
              slo: Slo, sampling: Sampling) -> dict[str, Any]:
    """:func:`capacity_bound` of one candidate, or its reason where the engine cannot run it."""
    try:
        plan = engine_plan(engine, model, c.accelerator, tp=c.tp, pp=c.pp, quantization=c.quantization,
                           max_batch=c.max_batch, kv_cache_dtype=c.kv_cache_dtype)
        return capacity_bound(model, plan.check(model), c.accelerator, perf, engine, prompt, output, slo,
                              sampling)
    except SpecError as err:
        return {"capacity_rps": 0.0, "reason": str(err)}


def why_not(bounds: pd.DataFrame, most: int = 3) -> str:
    """The candidates' reasons, most common kind first ('N of M: an example; ...'); reasons that differ only in
    their numbers (the TP degree, the GB short) count as one kind."""
    reasons = bounds["reason"].where(bounds["reason"] != "", "no price")
    kinds = reasons.str.replace(r"\d+(\.\d+)?", "#", regex=True)
    counts = kinds.value_counts()
    parts = [f"{n} of {len(bounds)}: {reasons[kinds == kind].iloc[0]}" for kind, n in counts.head(most).items()]
    return "; ".join(parts) + ("; ..." if len(counts) > most else "")


__all__ = ["BATCH_CHOICES", "PP_CHOICES", "TP_CHOICES", "Candidate", "bound_table", "candidates", "capacity_bound",
           "perf_of", "why_not"]
