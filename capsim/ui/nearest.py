"""The nearest feasible change to an infeasible training plan, for the box the dashboard shows instead of its
numbers. Pure (no Streamlit): a layout search (``capsim.plan.train_layouts``) ranked by how little it changes.

Distance between layouts: for each size knob (tp, pp, v, cp, ep, micro-batch) the number of doublings or
halvings, plus one half for each switch (recompute, sequence parallelism, ZeRO stage, distributed optimizer)
that differs; ties go to the faster step. A layout is feasible when the memory model fits it in 90% of the
device memory (the planner's default headroom).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.plan.train_layouts import search_layouts
from capsim.plan.training import candidate_gpu_counts, plan_training
from capsim.sim.serving import engine_plan
from capsim.sim.serving.fleet import engine_kv_blocks
from capsim.specs.engine import get_engine
from capsim.specs.hardware import Accelerator, Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization, Recompute, TrainPlan
from capsim.specs.precision import DType

SIZES = ("tp", "pp", "v", "cp", "ep", "micro_batch")
SWITCHES = ("recompute", "sp", "zero_stage", "distributed_optimizer")
NAMES = {"tp": "TP", "pp": "PP", "v": "interleave v", "cp": "CP", "ep": "EP", "micro_batch": "micro-batch",
         "recompute": "recompute", "sp": "sequence parallel", "zero_stage": "ZeRO stage",
         "distributed_optimizer": "distributed optimizer"}
RECOMPUTE = [r.value for r in Recompute]  # by code (Recompute.code), as the search table stores it
USABLE = 0.9  # plan within 90% of device memory, as the planner does by default (plan_training)


def knobs(plan: TrainPlan) -> dict[str, Any]:
    """A plan's layout settings under the search table's column names."""
    return {"tp": plan.tp, "pp": plan.pp, "v": plan.pp_interleave, "cp": plan.cp, "ep": plan.ep,
            "micro_batch": plan.micro_batch, "recompute": Recompute(plan.recompute).code,
            "sp": bool(plan.sequence_parallel), "zero_stage": plan.zero_stage,
            "distributed_optimizer": bool(plan.distributed_optimizer)}


def distance(frame: pd.DataFrame, given: dict[str, Any]) -> np.ndarray:
    """How far each row's layout is from ``given`` (doublings of each size knob, half a point per switch)."""
    d = np.zeros(len(frame))
    for k in SIZES:
        d += np.abs(np.log2(frame[k].to_numpy(float) / float(given[k])))
    for k in SWITCHES:
        d += 0.5 * (frame[k].to_numpy() != given[k])
    return d


def describe(row: dict[str, Any], given: dict[str, Any]) -> str:
    """The settings that change, as ``TP 1 -> 8, distributed optimizer on``."""
    parts = []
    for k in (*SIZES, *SWITCHES):
        old, new = given[k], row[k]
        if old == new:
            continue
        if isinstance(old, bool | np.bool_):
            parts.append(f"{NAMES[k]} {'on' if new else 'off'}")
        elif k == "recompute":
            parts.append(f"recompute {RECOMPUTE[int(old)]} -> {RECOMPUTE[int(new)]}")
        else:
            parts.append(f"{NAMES[k]} {int(old)} -> {int(new)}")
    return ", ".join(parts)


def nearest_layout(model: ModelSpec, cluster: Cluster, plan: TrainPlan, perf: Perf,
                   framework: str, usable: float = USABLE) -> dict[str, Any] | None:
    """The layout on the same GPUs, batch and precision closest to ``plan`` that fits ``usable`` of the device
    memory (its row of the search table, with ``change``: what differs), or None when none does."""
    try:
        frame = search_layouts(model, cluster, plan.global_batch, plan.seq_len, perf, plan.precision,
                               framework, top=None)
    except SpecError:
        return None
    frame = frame[frame["memory_per_gpu_bytes"] <= usable * cluster.accelerator.memory_bytes].reset_index(drop=True)
    if frame.empty:
        return None
    given = knobs(plan)
    order = np.lexsort((frame["step_s"].to_numpy(float), distance(frame, given)))
    row = frame.iloc[int(order[0])].to_dict()
    return {**row, "change": describe(row, given)}


def fewest_gpus(model: ModelSpec, acc: Accelerator, gpus: int, global_batch: int, seq_len: int, tokens: float,
                perf: Perf, precision: Any, framework: str, usable: float,
                max_gpus: int = 16384) -> dict[str, Any] | None:
    """The smallest GPU count above ``gpus`` (1, 2, 4 .. a node, then doubling nodes) where a layout fits, with
    that count's best layout, or None."""
    for count in (c for c in candidate_gpu_counts(acc.gpus_per_node, max_gpus) if c > gpus):
        try:
            plan = plan_training(model, acc, tokens, global_batch, seq_len, count, perf=perf,
                                 precision=precision, framework=framework, usable_memory_fraction=usable)
        except SpecError:
            continue
        if plan.feasible:
            return {**plan.best, "gpus": count}
    return None


# Weight formats tried when a replica's memory is the problem, with how far each is from 16-bit weights: 8-bit one
# step (as far as doubling TP), 4-bit one and a half (more accuracy at stake).
QUANTIZED = {"fp8": 1.0, "int8": 1.0, "int4": 1.5}
PP_DOUBLINGS = 3  # pipeline stages tried beyond the user's: pp x 2, x 4, x 8, those whose tp x pp fits a node


def serving_fit(model: ModelSpec, acc: Accelerator, engine: str, tp: int, quantization: str,
                need_tokens: int = 0, pp: int = 1) -> str | None:
    """Why a replica of ``model`` (tp x pp GPUs) cannot hold its weights and the KV cache of one ``need_tokens``
    request (the workload's longest), or None when it can. A pipeline-parallel replica runs pp virtual engines,
    each with 1/pp of the blocks (``engine_kv_blocks``), so one request must fit in one virtual engine's share."""
    try:
        plan = engine_plan(engine, model, acc, tp=tp, pp=pp, quantization=quantization)
        tokens = engine_kv_blocks(model, plan, acc, get_engine(engine)) * plan.block_size
    except SpecError as err:
        return err.problem
    if tokens < need_tokens:
        where = f"{tp} x {acc.name}" if pp == 1 else f"{tp * pp} x {acc.name} (TP {tp} x PP {pp})"
        return (f"one replica of {model.name} on {where} holds {tokens:,} tokens of KV cache"
                f"{' per virtual engine' if pp > 1 else ''}; the longest request needs {need_tokens:,}")
    return None


def _weights(quantization: str) -> str:
    return "16-bit" if quantization == "none" else quantization


def nearest_replica(model: ModelSpec, acc: Accelerator, engine: str, tp: int, quantization: str,
                    need_tokens: int = 0, pp: int = 1) -> dict[str, Any] | None:
    """The closest replica that fits: more tensor parallelism within a node, more pipeline stages (up to
    ``PP_DOUBLINGS`` doublings of ``pp`` that divide the layers, the replica within one node: a calibration may
    state no inter-node link; each doubling of either one step) and/or a quantized weight format (``QUANTIZED``),
    fewest steps first, then fewest GPUs, then fewer stages; None when nothing in a node fits."""
    options = []
    tps = [t for t in (1 << i for i in range(int(acc.gpus_per_node).bit_length()))
           if t >= tp and not model.heads % t and not model.kv_heads % t]
    pps = [pp << i for i in range(PP_DOUBLINGS + 1) if not model.total_layers % (pp << i)]
    for t in tps:
        for p in (p for p in pps if p == pp or t * p <= acc.gpus_per_node):  # new stages stay in the node
            for i, q in enumerate((quantization, *(q for q in QUANTIZED if q != quantization))):
                steps = np.log2(t / tp) + np.log2(p / pp) + (QUANTIZED.get(q, 1.0) if q != quantization else 0.0)
                if steps > 0:
                    options.append((steps, t * p, i, p, t, q))  # ties: TP within a node before PP stages
    for *_, p, t, q in sorted(options):
        if acc.peaks.of(Quantization(q).compute_dtype(DType.BF16)) is None:
            continue  # no math in that format on this accelerator (fp8 before Hopper/Ada)
        if serving_fit(model, acc, engine, t, q, need_tokens, p) is None:
            change = ([f"TP {tp} -> {t}"] if t != tp else []) + ([f"PP {pp} -> {p}"] if p != pp else []) + \
                ([f"weights {_weights(quantization)} -> {_weights(q)}"] if q != quantization else [])
            return {"tp": t, "pp": p, "quantization": q, "change": ", ".join(change)}
    return None


__all__ = ["QUANTIZED", "nearest_replica", "serving_fit", "USABLE", "describe", "distance", "fewest_gpus", "knobs", "nearest_layout"]
