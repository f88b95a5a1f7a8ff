"""``capsim validate training``: step times of published large-scale runs (Narayanan et al. SC21 Table 1,
Korthikanti et al. 2022 Table 5), one calibration and one code path for every row.

A blank micro_batch, recompute, seq_parallel, pp_interleave or zero_stage is a setting the authors did not publish:
capsim searches it (fastest feasible layout in the accelerator's memory) and says what it chose in the row's note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsim.analytic.flops import megatron_iteration_flops
from capsim.analytic.training import Framework, FrameworkName, get_framework, resolve_perf
from capsim.calibration import perf_for
from capsim.errors import SpecError
from capsim.plan.train_layouts import layout_grid, rank_layouts
from capsim.specs.catalog import get_accelerator
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.precision import Precision
from capsim.validation.harness import Report, Row, read_csv

REQUIRED = ("source", "model", "hidden", "layers", "heads", "kv_heads", "ffn_hidden", "mlp", "seq", "vocab", "gpu",
            "gpus", "tp", "pp", "pp_interleave", "cp", "dp", "zero_stage", "global_batch", "micro_batch", "recompute",
            "seq_parallel", "precision", "metric", "value")
METRICS = ("tflops_per_gpu_hw", "tflops_per_gpu_model", "iteration_s")
RECOMPUTE = {"none": 0, "selective": 1, "full": 2}
# The published runs' software (a configuration fact, not a correction): Megatron-LM 2021-22 runs used unfused
# softmax attention, dropout 0.1, no overlap of the DP all-reduce, blocking p2p with scatter/gather.
FRAMEWORK_OF_SOURCE = {"sc21": FrameworkName.MEGATRON_2021, "korthikanti": FrameworkName.MEGATRON_2022}


def row_model(r: dict[str, str]) -> ModelSpec:
    """The model a row describes, from its own columns (GPT-style defaults for what the CSV does not state)."""
    return ModelSpec(name=r["model"], hidden=int(r["hidden"]), layers=int(r["layers"]), heads=int(r["heads"]),
                     kv_heads=int(r["kv_heads"]) if r["kv_heads"] else None,
                     ffn_hidden=int(r["ffn_hidden"]) if r["ffn_hidden"] else None, mlp=r["mlp"] or "gelu",
                     vocab=int(r["vocab"]), max_seq=int(r["seq"]))


def _int(value: str) -> int | None:
    return int(value) if value.strip() else None


def _fixed(r: dict[str, str]) -> dict[str, object]:
    rec = r["recompute"].strip().lower()
    if rec and rec not in RECOMPUTE:
        raise SpecError("recompute", f"unknown value {rec!r}", "use none, selective, full or leave blank")
    sp = r["seq_parallel"].strip().lower()
    zero = _int(r["zero_stage"])
    return {"tp": int(r["tp"]), "pp": int(r["pp"]), "v": _int(r["pp_interleave"]), "cp": int(r["cp"] or 1),
            "ep": 1, "micro_batch": _int(r["micro_batch"]), "recompute": RECOMPUTE.get(rec),
            "sp": None if not sp else sp in ("yes", "true", "1"), "zero_stage": zero,
            "distributed_optimizer": False if zero is not None else None}


def _framework(source: str) -> Framework:
    name = next((v for k, v in FRAMEWORK_OF_SOURCE.items() if source.lower().startswith(k)),
                FrameworkName.MEGATRON_2021)
    return get_framework(name)


@dataclass(frozen=True)
class RowPrediction:
    """capsim's prediction for one published run, with the layout it priced."""

    value: float  # in the row's metric
    step_s: float
    memory_bytes: float  # per GPU, peak stage, by capsim's memory model
    capacity_bytes: float
    chosen: dict[str, object]  # the unpublished settings capsim chose
    note: str
    calibration: str


def predict_row(r: dict[str, str], calibration: str | None = None) -> RowPrediction:
    """Price one CSV row: the published layout, with any blank setting searched (fastest that fits)."""
    model = row_model(r)
    acc = get_accelerator(r["gpu"])
    gpus, gb, seq = int(r["gpus"]), int(r["global_batch"]), int(r["seq"])
    cluster = Cluster(acc, gpus)
    perf = resolve_perf(perf_for(acc, calibration), cluster)
    fixed = _fixed(r)
    lay = layout_grid(model, gpus, gb, seq, int(cluster.gpus_per_node), fixed)
    lay = lay.take(np.flatnonzero(lay.dp == int(r["dp"])))
    if len(lay) == 0:
        raise SpecError("row", f"{r['model']}: dp={r['dp']} tp={r['tp']} pp={r['pp']} does not make {gpus} GPUs")
    precision = Precision.preset(r["precision"])
    result, order = rank_layouts(model, cluster, lay, perf, precision, _framework(r["source"]))
    if len(order) == 0:
        best = int(np.argmin(np.asarray(result.memory.total_bytes)))
        raise SpecError("row", f"{r['model']}: no layout fits in {acc.memory_bytes / 1e9:.0f} GB by capsim's memory "
                        f"model (least {float(result.memory.total_bytes[best]) / 1e9:.1f} GB)")
    i = int(order[0])
    step = float(result.step_s[i])
    metric = r["metric"]
    rec = int(lay.recompute[i])
    flops = megatron_iteration_flops(model, gb, seq, recompute_full=(metric == "tflops_per_gpu_hw" and rec == 2))
    value = {"iteration_s": step, "tflops_per_gpu_hw": flops / step / gpus / 1e12,
             "tflops_per_gpu_model": flops / step / gpus / 1e12}[metric]
    chosen = {k: _show(k, getattr(lay, k)[i]) for k, given in fixed.items() if given is None}
    memory = float(result.memory.total_bytes[i])
    note = (f"chose {' '.join(f'{k}={v}' for k, v in chosen.items())}; " if chosen else "") + (
        f"{memory / 1e9:.1f} GB/GPU; step {step:.3f} s; bottleneck "
        f"{('first', 'middle', 'last')[int(result.bottleneck_stage[i])]} stage; "
        + ", ".join(f"{k[:-2]} {float(getattr(result, k)[i]):.3g}" for k in
                    ("compute_s", "recompute_s", "grad_accumulation_s", "tp_comm_s", "pp_comm_s", "bubble_s",
                     "dp_comm_s", "optimizer_s")))
    return RowPrediction(float(value), step, memory, float(acc.memory_bytes), chosen, note, perf.name)


def _show(key: str, value: object) -> str:
    if key == "recompute":
        return ("none", "selective", "full")[int(value)]
    if key in ("sp", "distributed_optimizer"):
        return "yes" if value else "no"
    return str(int(value))


def training_suite(path: str | Path | None = None, calibration: str | None = None) -> Report:
    """Every row of training_published.csv (or ``path``) predicted under one calibration."""
    rows, names = [], set()
    for r in read_csv(path, "training_published.csv", REQUIRED):
        if r["metric"] not in METRICS:
            raise SpecError("metric", f"unknown training metric {r['metric']!r}", f"use one of {', '.join(METRICS)}")
        pred = predict_row(r, calibration)
        names.add(pred.calibration)
        case = f"{r['model']} tp{r['tp']} pp{r['pp']} dp{r['dp']} gb{r['global_batch']} {r['recompute'] or '?'}"
        if r["seq_parallel"].strip().lower() in ("yes", "true", "1"):
            case += "+sp"
        unit = "s" if r["metric"] == "iteration_s" else "TFLOP/s"
        rows.append(Row(r["source"], case, r["metric"], float(r["value"]), pred.value, unit, pred.note))
    notes = ("framework: megatron-2021 for SC21 rows, megatron-2022 for Korthikanti rows (unfused attention, dropout "
             "0.1, DP all-reduce not overlapped, blocking p2p with scatter/gather; 2022 adds async TP backward comm "
             "and gradient-accumulation fusion); precision and parallel degrees from each row",)
    return Report("training", " + ".join(sorted(names)), tuple(rows), notes)


__all__ = ["RowPrediction", "predict_row", "row_model", "training_suite"]
