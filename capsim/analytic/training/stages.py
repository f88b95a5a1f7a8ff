"""Per-stage costs of one micro-batch, the pipeline's critical path, and the step's tail (gradient reduction,
optimizer, parameter gather). Stages are of three kinds: the first (embedding), the middle ones (even split) and
the last (final norm, LM head, loss); with one stage, the single stage holds both ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim.analytic.layouts import Layouts
from capsim.analytic.params import param_counts
from capsim.analytic.training import comms
from capsim.analytic.training.compute import MicroBatchTimes
from capsim.analytic.training.framework import Framework
from capsim.perf import Perf
from capsim.specs.model import ModelSpec
from capsim.specs.precision import Precision

PER_MICRO_BATCH = ("compute_s", "recompute_s", "grad_accumulation_s", "tp_comm_s", "cp_comm_s", "ep_comm_s",
                   "pp_comm_s", "zero_comm_s")
STAGES = ("first", "middle", "last")


@dataclass(frozen=True)
class StageLayers:
    """Layers per stage kind (arrays over layouts); ``middle_max`` is the most any middle stage holds."""

    first: np.ndarray
    middle: np.ndarray  # mean layers of a middle stage
    middle_max: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, model: ModelSpec, lay: Layouts, middle_max: np.ndarray | None = None) -> StageLayers:
        p = lay.pp
        mid = np.where(p > 2, (model.total_layers - lay.first_stage_layers - lay.last_stage_layers)
                       / np.maximum(p - 2, 1), 0.0)
        return cls(lay.first_stage_layers.astype(float), mid, mid if middle_max is None else middle_max,
                   np.where(p > 1, lay.last_stage_layers, 0).astype(float))


def stage_params(model: ModelSpec, lay: Layouts, layers: StageLayers) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(dense, expert) parameters one GPU of each stage kind holds (layers split by TP and EP; embeddings by TP)."""
    pc = param_counts(model)
    per_layer = (pc.per_layer * model.layers + pc.encoder_per_layer * model.encoder_layers) / model.total_layers
    expert = pc.expert_per_layer * model.layers / model.total_layers
    dense, exp = (per_layer - expert) / lay.tp, expert / (lay.tp * lay.ep)
    single = lay.pp == 1
    # Megatron keeps a copy of a tied word embedding on the last stage for the LM head when pp > 1.
    head = (pc.lm_head if not model.tied_embeddings else np.where(single, 0, model.vocab * model.hidden)) / lay.tp
    first = layers.first * dense + pc.embedding / lay.tp + np.where(single, head + pc.other, 0)
    last = layers.last * dense + np.where(single, 0, head + pc.other)
    return {"first": (first, layers.first * exp), "middle": (layers.middle_max * dense, layers.middle_max * exp),
            "last": (last, layers.last * exp)}


def micro_batch_costs(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, gpn: int, fw: Framework,
                      t: MicroBatchTimes, layers: StageLayers) -> dict[str, dict[str, np.ndarray]]:
    """Seconds each stage kind spends on one micro-batch, by component (PER_MICRO_BATCH), over all its chunks."""
    rec = np.select([lay.recompute == 2, lay.recompute == 1], [t.layer_fwd_s, t.layer_core_s], 0.0)
    tp_layer = comms.tp_layer_s(perf, model, lay, precision, gpn, t, fw)
    tp_embed, tp_head = comms.tp_ends_s(perf, model, lay, precision, gpn)
    cp_layer = comms.cp_layer_s(perf, model, lay, precision, gpn, t)
    ep_layer = comms.ep_layer_s(perf, model, lay, precision, gpn)
    hop = comms.p2p_hop_s(perf, model, lay, precision, gpn, fw)
    pp_mb = np.zeros(len(lay)) if fw.overlap_p2p else 2.0 * lay.v * hop  # blocking send+recv per chunk, each way
    params = stage_params(model, lay, layers)
    single = lay.pp == 1
    ends = {"first": (t.embed_fwd_s + t.embed_bwd_s + np.where(single, t.head_fwd_s + t.head_bwd_s, 0.0),
                      tp_embed + np.where(single, tp_head, 0.0), t.embed_bwd_s + np.where(single, t.head_bwd_s, 0)),
            "middle": (0.0, 0.0, 0.0), "last": (t.head_fwd_s + t.head_bwd_s, tp_head, t.head_bwd_s)}
    out: dict[str, dict[str, np.ndarray]] = {}
    kinds = [("first", layers.first), ("middle", layers.middle_max), ("last", layers.last)]
    if np.any(layers.middle != layers.middle_max):  # an uneven split: the sum over stages needs the mean too
        kinds.append(("middle_mean", layers.middle))
    for stage, n in kinds:
        kind = stage.split("_")[0]
        end_compute, end_tp, end_bwd = ends[kind]
        dense, expert = params[kind]
        if stage == "middle_mean":  # params of a mean-sized middle stage
            ratio = layers.middle / np.maximum(layers.middle_max, 1e-9)
            dense, expert = dense * ratio, expert * ratio
        bwd = n * t.layer_bwd_s + end_bwd
        zero = _zero_micro_batch_s(perf, lay, precision, gpn, fw, t, n, (dense, expert), bwd)
        grads = (dense + expert) / np.where(lay.zero_stage >= 2, lay.dp * lay.cp, 1)  # ZeRO-2/3 keep a shard
        costs = {"compute_s": n * (t.layer_fwd_s + t.layer_bwd_s) + end_compute, "recompute_s": n * rec,
                 "grad_accumulation_s": comms.grad_accumulation_s(perf, grads, precision, fw),
                 "tp_comm_s": n * tp_layer + end_tp, "cp_comm_s": n * cp_layer, "ep_comm_s": n * ep_layer,
                 "pp_comm_s": pp_mb, "zero_comm_s": zero}
        exists = np.ones(len(lay), bool) if stage == "first" else (lay.pp > (1 if stage == "last" else 2))
        out[stage] = {k: np.where(exists, v, 0.0) for k, v in costs.items()}
    out.setdefault("middle_mean", out["middle"])
    out["_hop"] = {"hop_s": hop}
    return out


def _zero_micro_batch_s(perf: Perf, lay: Layouts, precision: Precision, gpn: int, fw: Framework,
                        t: MicroBatchTimes, n: np.ndarray, params: tuple[np.ndarray, np.ndarray],
                        bwd_s: np.ndarray) -> np.ndarray:
    """Exposed ZeRO-2/3 traffic of one micro-batch: the gradient reduce-scatter after each backward (gradients
    are sharded, so they cannot accumulate locally), and ZeRO-3's per-layer parameter all-gathers in every pass,
    prefetched one layer ahead (Rajbhandari et al. 2020, Sec. 5.2-5.3; Zhao et al. 2023, FSDP, Sec. 4.2)."""
    dense, expert = params
    rs = comms.grad_reduce_s(perf, dense, expert, lay, precision, gpn)
    buckets = np.maximum(n, 1.0)  # the last bucket (one layer) is reduced after the backward ends
    rs_exposed = np.maximum(rs - bwd_s, rs / buckets) if fw.overlap_grad_reduce else rs
    layer_ag = comms.param_gather_s(perf, dense / buckets, expert / buckets, lay, precision, gpn)
    passes = [(t.layer_fwd_s, 1.0), (t.layer_bwd_s, 1.0), (t.layer_fwd_s, comms.recompute_passes(lay))]
    gathers = np.zeros(len(lay))
    for compute, count in passes:
        hidden = np.maximum(layer_ag - compute, 0.0) * (n - 1) + layer_ag if fw.zero3_prefetch else layer_ag * n
        gathers = gathers + count * hidden
    return np.where(lay.zero_stage >= 2, rs_exposed, 0.0) + np.where(lay.zero_stage >= 3, gathers, 0.0)


def step_tail(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, gpn: int, fw: Framework,
              t: MicroBatchTimes, layers: StageLayers, hop: np.ndarray) -> dict[str, np.ndarray]:
    """What follows the pipeline flush: gradient reduction (the part not hidden behind the last backward), the
    tied-embedding sync, the optimizer step and the post-step parameter all-gather."""
    params = stage_params(model, lay, layers)
    once = (lay.zero_stage <= 1)  # ZeRO-2/3 reduce every micro-batch instead (in micro_batch_costs)
    v = lay.v.astype(float)
    chunk_bwd = np.where(lay.pp > 2, layers.middle, layers.first) * t.layer_bwd_s / v + hop
    # Stage s finishes its last backward s chunk-backwards (and hops) before stage 0 does (1F1B and interleaved).
    slack = {"first": 0.0, "middle": chunk_bwd, "last": (lay.pp - 1) * chunk_bwd}
    last_bwd = {"first": layers.first * t.layer_bwd_s + t.embed_bwd_s + np.where(lay.pp == 1, t.head_bwd_s, 0),
                "middle": layers.middle_max * t.layer_bwd_s, "last": layers.last * t.layer_bwd_s + t.head_bwd_s}
    exposed, full, local = np.zeros(len(lay)), np.zeros(len(lay)), np.zeros(len(lay))
    gather = np.zeros(len(lay))
    shard = np.where((lay.zero_stage >= 1) | lay.distributed_optimizer, lay.dp * lay.cp, 1)
    expert_shard = np.where(shard > 1, np.maximum(lay.dp * lay.cp // lay.ep, 1), 1)
    for stage in STAGES:
        exists = np.ones(len(lay), bool) if stage == "first" else lay.pp > (1 if stage == "last" else 2)
        dense, expert = params[stage]
        red = np.where(once & exists, comms.grad_reduce_s(perf, dense, expert, lay, precision, gpn), 0.0)
        buckets = np.maximum({"first": layers.first, "middle": layers.middle_max, "last": layers.last}[stage], 1)
        # Bucketed reduction overlapped with the last micro-batch's backward; the last bucket cannot be hidden
        # (Li et al. VLDB 2020, "PyTorch Distributed", Sec. 3.2.3).
        left = np.maximum(red - last_bwd[stage], red / buckets) if fw.overlap_grad_reduce else red
        exposed = np.maximum(exposed, np.where(exists, left - slack[stage], 0.0))
        full = np.maximum(full, red)
        local = np.maximum(local, np.where(exists, dense / shard + expert / expert_shard, 0.0))
        ag = np.where(((lay.zero_stage == 1) | (lay.zero_stage == 2) | lay.distributed_optimizer) & exists,
                      comms.param_gather_s(perf, dense, expert, lay, precision, gpn), 0.0)
        gather = np.maximum(gather, ag)
    first_fwd = layers.first * t.layer_fwd_s + t.embed_fwd_s
    gather = np.maximum(gather - first_fwd, 0.0) if fw.overlap_param_gather else gather
    exposed = np.maximum(exposed, 0.0)
    return {"dp_comm_s": exposed, "dp_total_s": full,
            "embedding_sync_s": comms.embedding_sync_s(perf, model, lay, precision, gpn),
            "optimizer_s": comms.optimizer_s(perf, local, precision), "param_gather_s": gather}


def pipeline(costs: dict[str, dict[str, np.ndarray]], lay: Layouts, fw: Framework) -> dict[str, np.ndarray]:
    """The pipeline's critical path: m micro-batches at the pace of the slowest stage plus the fill and drain,
    T = m W_max + (sum_s W_s - W_max) / v; for uniform stages the bubble is (p-1)/(v m) of the ideal time
    (Narayanan et al. SC21, Sec. 2.2, Eq. 1 and 2), for GPipe, 1F1B and interleaved 1F1B alike."""
    w = {s: sum(costs[s][k] for k in PER_MICRO_BATCH) for s in STAGES}
    p = lay.pp.astype(float)
    mean_middle = sum(costs["middle_mean"][k] for k in PER_MICRO_BATCH)
    total = w["first"] + np.maximum(p - 2, 0) * mean_middle + w["last"]
    which = np.argmax(np.stack([w[s] for s in STAGES]), axis=0)
    w_max = np.choose(which, [w[s] for s in STAGES])
    m = lay.micro_batches.astype(float)
    out = {k: m * np.choose(which, [costs[s][k] for s in STAGES]) for k in PER_MICRO_BATCH}
    fill = 2.0 * (p - 1) * costs["_hop"]["hop_s"] if fw.overlap_p2p else 0.0  # sends along the fill and drain
    out["bubble_s"] = (total - w_max) / lay.v + fill
    out["bottleneck_stage"] = which
    return out


__all__ = ["PER_MICRO_BATCH", "StageLayers", "micro_batch_costs", "pipeline", "stage_params", "step_tail"]
