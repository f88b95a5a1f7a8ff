"""Serving what-ifs from the seed's chapter on model compression: quantization, pruning (sparsity) and
knowledge distillation, priced with the same iteration-time model and capacity bound as the planner.

Accuracy is not modelled: capsim answers what each technique does to memory, latency, capacity and cost;
whether the compressed model is good enough is the user's to judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from capsim.analytic.memory import serving_memory
from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.errors import require
from capsim.perf import Perf
from capsim.plan.serving import Candidate, Slo, Traffic, bound_table, perf_of
from capsim.plan.training import plan_training
from capsim.specs.catalog import get_accelerator
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization, ServePlan
from capsim.specs.precision import DType


def quantization_whatif(model: ModelSpec, accelerator: str | Accelerator, traffic: Traffic, slo: Slo,
                        tp: int = 1, schemes: tuple[str, ...] = ("none", "int8", "int4", "fp8", "w8a8-int8"),
                        kv_dtypes: tuple[str | None, ...] = (None, "fp8"), max_batch: int = 256,
                        engine: str = "vllm", *, perf: Perf, pp: int = 1) -> pd.DataFrame:
    """Each weight scheme x KV-cache format on one replica of tp x pp GPUs: memory, KV capacity, prefill and decode
    time, capacity per replica, replicas and cost for ``traffic``. Weight-only schemes (int8, int4) shrink the bytes
    decode reads and keep 16-bit math; fp8 and w8a8-int8 also run the GEMMs at the 8-bit rate."""
    acc = get_accelerator(accelerator)
    rows = []
    for scheme in schemes:
        for kv in kv_dtypes:
            q = Quantization(scheme)
            row: dict[str, Any] = {"quantization": q.value, "kv_cache_dtype": kv or "bf16"}
            if acc.peaks.of(q.compute_dtype(DType.BF16)) is None:
                rows.append({**row, "feasible": False, "reason": f"{acc.name} has no {q.compute_dtype(DType.BF16)} rate"})
                continue
            plan = ServePlan(tp=tp, pp=pp, quantization=q, kv_cache_dtype=kv, max_batch=max_batch)
            mem = serving_memory(model, plan, acc)
            row.update(weights_per_gpu_bytes=mem.weights_bytes, kv_bytes_per_token=mem.kv_bytes_per_token)
            b = _bound(model, acc, tp, q, max_batch, traffic, slo, engine, perf, kv, pp=pp)
            rows.append({**row, **b})
    return _relative(pd.DataFrame(rows), "quantization", "none")


def _bound(model: ModelSpec, acc: Accelerator, tp: int, q: Quantization, max_batch: int, traffic: Traffic,
           slo: Slo, engine: str, perf: Perf, kv: str | None = None,
           perf_transform: Any = None, pp: int = 1) -> dict[str, Any]:
    cand = Candidate(acc, tp, q, max_batch, kv, pp=pp)
    r = bound_table(model, [cand], traffic, slo, {acc.name: perf}, engine, perf_transform=perf_transform).iloc[0]
    keep = ("capacity_rps", "batch", "prefill_s", "step_s", "kv_tokens", "replicas_min", "gpus_min",
            "cost_per_hour_min", "reason", "calibration")
    return {**{k: r.get(k) for k in keep}, "feasible": bool(r["viable"])}


def _relative(df: pd.DataFrame, key: str, base: str) -> pd.DataFrame:
    if "cost_per_hour_min" in df and (df[key] == base).any():
        ref = df[(df[key] == base) & df["feasible"]]
        if len(ref):
            df["cost_vs_baseline"] = df["cost_per_hour_min"] / float(ref["cost_per_hour_min"].iloc[0])
    return df


# Pruning defaults. 2:4 sparse tensor cores double peak math (NVIDIA A100 whitepaper, "Fine-grained structured
# sparsity"); measured LLM inference gains are smaller, e.g. 1.27x end to end (HPC-AI Tech blog 2024, "2:4
# semi-structured sparsity"), and small-batch decode GEMVs are not accelerated (NVIDIA developer forum,
# "2:4 sparse slower than dense in the decode stage"). Defaults: 1.5x on compute-bound GEMMs, 1.0x memory-bound.
# Unstructured sparsity runs on dense kernels: no speed-up unless the user states one.
SPARSITY = {"2:4": {"gemm_speedup": 1.5, "memory_bound_speedup": 1.0, "weight_fraction": 0.5 + 0.5 * 2 / 16},
            "unstructured": {"gemm_speedup": 1.0, "memory_bound_speedup": 1.0, "weight_fraction": 1.0},
            "dense": {"gemm_speedup": 1.0, "memory_bound_speedup": 1.0, "weight_fraction": 1.0}}


def sparse_perf(perf: Perf, gemm_speedup: float, memory_bound_speedup: float = 1.0) -> Perf:
    """The device model with sparse GEMMs: math ``gemm_speedup`` x faster, weight streaming as stated."""
    p = perf.params
    gemm = replace(p.gemm, efficiency=replace(p.gemm.efficiency, peak_fraction=p.gemm.efficiency.peak_fraction
                                              * gemm_speedup))
    scale = dict(p.memory.kind_scale)
    scale["gemm"] = scale.get("gemm", 1.0) * memory_bound_speedup
    for kind in [k for k in scale if k.startswith("gemm@")]:  # each kernel path's bound (Perf.gemm_table_key)
        scale[kind] *= memory_bound_speedup
    return Perf(replace(p, name=f"{p.name} (sparse GEMMs x{gemm_speedup:g})", gemm=gemm,
                        memory=replace(p.memory, kind_scale=scale)))


def sparsity_whatif(model: ModelSpec, accelerator: str | Accelerator, traffic: Traffic, slo: Slo, tp: int = 1,
                    patterns: tuple[str, ...] = ("dense", "2:4", "unstructured"), gemm_speedup: float | None = None,
                    max_batch: int = 256, engine: str = "vllm", *, perf: Perf, pp: int = 1) -> pd.DataFrame:
    """Pruning patterns on one replica of tp x pp GPUs: prefill/decode time, capacity and cost with each pattern's GEMM speed-up (defaults in
    SPARSITY, or ``gemm_speedup`` for all sparse patterns). Weight memory is reported at the pattern's storage
    fraction (2:4 keeps half the values plus 2-bit indices); the KV budget is left at the dense size."""
    acc = get_accelerator(accelerator)
    rows = []
    for name in patterns:
        require(name in SPARSITY, "pattern", f"unknown pattern {name!r}", f"use one of {', '.join(SPARSITY)}")
        d = dict(SPARSITY[name])
        if gemm_speedup is not None and name != "dense":
            require(gemm_speedup > 0, "gemm_speedup", "must be > 0")
            d["gemm_speedup"] = gemm_speedup
        plan = ServePlan(tp=tp, pp=pp, max_batch=max_batch)
        weights = serving_memory(model, plan, acc).weights_bytes * d["weight_fraction"]
        dense = d["gemm_speedup"] == 1.0 and d["memory_bound_speedup"] == 1.0
        b = _bound(model, acc, tp, Quantization.NONE, max_batch, traffic, slo, engine, perf, pp=pp,
                   perf_transform=None if dense else
                   (lambda p, d=d: sparse_perf(p, d["gemm_speedup"], d["memory_bound_speedup"])))
        rows.append({"pattern": name, **d, "weights_per_gpu_bytes": weights, **b})
    return _relative(pd.DataFrame(rows), "pattern", "dense")


@dataclass(frozen=True)
class Distillation:
    """What producing a student costs, what serving it saves, and when it pays for itself."""

    teacher_forward_s: float  # wall time of the teacher's forward passes over the distillation tokens
    student_train_s: float
    produce_cost_usd: float
    teacher_serve_cost_per_hour: float
    student_serve_cost_per_hour: float
    saving_per_request_usd: float
    break_even_requests: float  # inf when the student saves nothing
    break_even_days: float  # at the traffic's rate
    notes: tuple[str, ...]
    feasible: bool = True
    reason: str = ""  # why not, when infeasible (every figure is then nan)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, notes=list(self.notes))

    @classmethod
    def infeasible(cls, reason: str) -> Distillation:
        return cls(*(math.nan,) * 8, notes=(), feasible=False, reason=reason)


def teacher_forward_tokens_per_s(teacher: ModelSpec, acc: Accelerator, seq_len: int,
                                 perf: Perf) -> tuple[float, int] | None:
    """Tokens per second per GPU of the teacher's forward pass with logits at every position (what distillation
    needs), on the smallest TP group whose memory holds it, from the serving iteration-time model; None when no
    TP group within a node holds it."""
    for tp in (1, 2, 4, 8, 16):
        if tp > acc.gpus_per_node or teacher.heads % tp:
            continue
        plan = ServePlan(tp=tp, max_batch=max(1, 16384 // seq_len), max_batched_tokens=16384)
        if not serving_memory(teacher, plan, acc, context_tokens=seq_len).fits:
            continue
        k = plan.max_batch
        shape = StepShape.prefill(k, seq_len)
        shape = replace(shape, logits=k * seq_len)
        t = float(iteration_time(teacher, plan, perf, shape, "vllm", acc).total_s)
        return k * seq_len / (t * tp), tp
    return None


def distillation_whatif(teacher: ModelSpec, student: ModelSpec, distill_tokens: float,
                        train_accelerator: str | Accelerator, train_gpus: int, traffic: Traffic, slo: Slo,
                        serve_accelerators: list[str], global_batch: int = 512, seq_len: int = 4096, *,
                        perfs: Mapping[str, Perf], framework: str = DEFAULT_FRAMEWORK) -> Distillation:
    """Knowledge distillation (Hinton et al. 2015): the teacher's forward passes over ``distill_tokens`` (with
    logits at every position) plus the student's training on them, against the cheaper fleet the student needs
    for ``traffic``. The teacher pass is priced as batched prefill steps; the student's training by the planner.
    ``perfs``: device models by accelerator name, for the training accelerator and every serving one; the
    student trains as ``framework`` runs it (the planner's search under that release)."""
    acc = get_accelerator(train_accelerator)
    require(distill_tokens > 0, "distill_tokens", "must be positive")
    forward = teacher_forward_tokens_per_s(teacher, acc, seq_len, perf_of(perfs, acc.name))
    if forward is None:
        return Distillation.infeasible(f"{teacher.name} does not fit a TP group of up to {acc.gpus_per_node} x "
                                       f"{acc.name}: use a larger accelerator")
    rate, teacher_tp = forward
    teacher_s = distill_tokens / (rate * train_gpus)
    splan = plan_training(student, acc, distill_tokens, global_batch, seq_len, num_gpus=train_gpus,
                          perf=perf_of(perfs, acc.name), framework=framework)
    if not splan.feasible:
        return Distillation.infeasible(f"no layout trains {student.name} on {train_gpus} x {acc.name} "
                                       f"({splan.reason}): use more GPUs or a larger accelerator")
    student_s = float(splan.best["time_to_train_s"])
    price = acc.price_usd_per_hour if acc.price_usd_per_hour is not None else math.nan
    produce = (teacher_s + student_s) / 3600 * train_gpus * price

    def fleet_cost(model: ModelSpec) -> float:
        cands = [Candidate(get_accelerator(a), tp, Quantization.NONE, 256) for a in serve_accelerators
                 for tp in (1, 2, 4, 8) if tp <= get_accelerator(a).gpus_per_node and model.heads % tp == 0]
        table = bound_table(model, cands, traffic, slo, perfs)
        ok = table[table["viable"]]
        return float(ok["cost_per_hour_min"].iloc[0]) if len(ok) else math.inf

    t_cost, s_cost = fleet_cost(teacher), fleet_cost(student)
    saving = (t_cost - s_cost) / (traffic.peak_rps * 3600)
    requests = produce / saving if saving > 0 else math.inf
    days = requests / traffic.peak_rps / 86400 if math.isfinite(requests) else math.inf
    notes = (f"teacher forward: {rate:,.0f} tokens/s per GPU (TP{teacher_tp} prefill steps with logits at every "
             f"position) on {train_gpus} x {acc.name}: {teacher_s / 86400:.2f} days",
             f"student trained on {distill_tokens:.3g} tokens by the planner's best layout: {student_s / 86400:.2f} days",
             "serving costs from the analytic capacity bound (cheapest candidate at the peak rate); the student's "
             "quality is not modelled")
    return Distillation(teacher_s, student_s, produce, t_cost, s_cost, saving, requests, days, notes)
