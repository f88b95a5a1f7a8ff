"""Per-stage costs of one micro-batch, the pipeline's critical path, and the step's tail (gradient reduction,
optimizer, parameter gather). Stages are of three kinds: the first (embedding), the middle ones and the last (final
norm, LM head, loss); with one stage, the single stage holds both ends. Each kind is priced on its own layer count
(``Layouts.first_stage_layers``, ``last_stage_layers``; the middle ones on their heaviest stage for the steady state
and their mean for the fill and drain), so uneven splits are priced stage by stage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from capsim._types import Num
from capsim.analytic import fp8, mtp, recompute
from capsim.analytic.layouts import Layouts
from capsim.analytic.params import layer_params_by_kind, param_counts
from capsim.analytic.training import comms, host
from capsim.analytic.training.compute import MicroBatchTimes, distinct, micro_batch_times
from capsim.analytic.training.framework import Framework
from capsim.analytic.training.release import MoeDispatcher
from capsim.analytic.training.sharded import sharded_exposed_s
from capsim.perf import Perf
from capsim.specs.model import ModelSpec
from capsim.specs.precision import Precision

PER_MICRO_BATCH = ("compute_s", "recompute_s", "grad_accumulation_s", "tp_comm_s", "cp_comm_s", "ep_comm_s",
                   "pp_comm_s", "zero_comm_s")
STAGES = ("first", "middle", "last")
KINDS = ("first", "middle", "middle_mean", "last")  # middle_mean: a mean-sized middle stage (for the sum)
# What the data-parallel traffic and the optimizer depend on: computed once per distinct combination.
DP_KEYS = ("dp", "cp", "tp", "ep", "etp", "pp", "first_stage_layers", "last_stage_layers", "middle_max_layers",
           "first_stage_dense", "last_stage_dense", "middle_max_dense", "middle_dense", "zero_stage",
           "distributed_optimizer", "shard")
# Per-unit ZeRO-3/FSDP traffic (one transformer block, the embedding, the final norm + LM head).
UNITS = ("layer", "emb", "head")


@dataclass(frozen=True)
class StageLayers:
    """Layers per stage kind (arrays over layouts); ``middle_max`` is the most any middle stage holds. The
    ``*_dense`` fields count an MoE model's dense-FFN layers among them (``ModelSpec.dense_layers``, placed on the
    stages that hold them: ``LayerSplit.count_on_stages``)."""

    first: np.ndarray
    middle: np.ndarray  # mean layers of a middle stage
    middle_max: np.ndarray
    last: np.ndarray
    first_dense: np.ndarray
    middle_dense: np.ndarray  # mean over the middle stages
    middle_max_dense: np.ndarray
    last_dense: np.ndarray
    # multi-token-prediction layers among the first (pp 1) or last stage's layers (``capsim.analytic.mtp``:
    # all on the last pipeline stage, each a layer of the decoder's last layer's kind)
    first_mtp: np.ndarray
    last_mtp: np.ndarray

    @classmethod
    def of(cls, model: ModelSpec, lay: Layouts, mtp: int = 0) -> StageLayers:
        p = lay.pp
        mid = np.where(p > 2, (model.total_layers - lay.first_stage_layers - lay.last_stage_layers)
                       / np.maximum(p - 2, 1), 0.0)
        mid_dense = np.where(p > 2, lay.middle_dense / np.maximum(p - 2, 1), 0.0)
        last = (p > 1).astype(float)
        first_mtp, last_mtp = mtp * (1.0 - last), mtp * last
        return cls(lay.first_stage_layers + first_mtp, mid, lay.middle_max_layers.astype(float),
                   last * lay.last_stage_layers + last_mtp, lay.first_stage_dense.astype(float), mid_dense,
                   lay.middle_max_dense.astype(float), last * lay.last_stage_dense, first_mtp, last_mtp)

    def mtp_of_kind(self, kind: str) -> np.ndarray | float:
        return {"first": self.first_mtp, "last": self.last_mtp}.get(kind, 0.0)

    def of_kind(self, kind: str) -> np.ndarray:
        return {"first": self.first, "middle": self.middle_max, "middle_mean": self.middle, "last": self.last}[kind]

    def dense_of_kind(self, kind: str) -> np.ndarray:
        return {"first": self.first_dense, "middle": self.middle_max_dense, "middle_mean": self.middle_dense,
                "last": self.last_dense}[kind]

    def both(self, kind: str, moe: object, dense: object) -> np.ndarray:
        """A stage kind's total of a per-layer quantity worth ``moe`` on each MoE (or plain) layer and ``dense``
        on each dense-FFN layer."""
        d = self.dense_of_kind(kind)
        return (self.of_kind(kind) - d) * moe + d * dense

    def take(self, index: np.ndarray) -> StageLayers:
        return StageLayers(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass(frozen=True)
class LayerTimes:
    """Per-micro-batch times of the two kinds of layers: ``moe`` (every layer of a model without dense-FFN
    layers) and ``dense`` (an MoE model's dense-FFN layers; the same object when it has none)."""

    moe: MicroBatchTimes
    dense: MicroBatchTimes

    @classmethod
    def of(cls, model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, fw: Framework) -> LayerTimes:
        """Both kinds priced from the op list (``micro_batch_times``), once each."""
        if not model.dense_layers:
            t = micro_batch_times(model, lay, precision, perf, fw.attention, fw.dropout, sac=fw.selective_ac,
                                  fp8_padding=fw.moe_fp8_padding, random_routing=fw.moe_random_routing,
                                  local_casts=fw.tp_gather_quantized, torch_cp=fw.cp_rotate,
                                  norm_quantize=fw.norm_quantize, repeat_kv=fw.repeat_kv, eager=fw.eager(),
                                  loss=fw.loss_kernel, graph=fw.cuda_graph_scopes())
            return cls(t, t)
        return cls(*(micro_batch_times(model, lay, precision, perf, fw.attention, fw.dropout, share, fw.selective_ac,
                                       fw.moe_fp8_padding, fw.moe_random_routing, fw.tp_gather_quantized,
                                       fw.cp_rotate, fw.norm_quantize, fw.repeat_kv, fw.eager(),
                                       fw.loss_kernel, fw.cuda_graph_scopes())
                     for share in (1.0, 0.0)))

    def pair(self, fn) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        """``fn`` of each kind, computed once when both kinds are the same."""
        a = np.asarray(fn(self.moe), float)
        return a, (a if self.dense is self.moe else np.asarray(fn(self.dense), float))

    def mean(self, layers: StageLayers, kind: str) -> MicroBatchTimes:
        """The mean layer of one stage kind (its dense share mixed in)."""
        if self.dense is self.moe:
            return self.moe
        n = layers.of_kind(kind)
        return self.moe.mix(self.dense, np.where(n > 0, layers.dense_of_kind(kind) / np.maximum(n, 1), 0.0))


def _exists(lay: Layouts, kind: str) -> np.ndarray:
    if kind == "first":
        return np.ones(len(lay), bool)
    return lay.pp > (1 if kind == "last" else 2)


def unit_params(model: ModelSpec, lay: Layouts) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(dense, expert) parameters one GPU holds of one transformer layer, of the embedding and of the final norm +
    LM head (layers split by TP and EP; the vocabulary by TP)."""
    pc = param_counts(model)
    per_layer = (pc.per_layer * model.layers + pc.encoder_per_layer * model.encoder_layers) / model.total_layers
    expert = pc.expert_per_layer * model.layers / model.total_layers
    zero = np.zeros(len(lay))
    # Megatron keeps a copy of a tied word embedding on the last stage for the LM head when pp > 1.
    head = (pc.lm_head if not model.tied_embeddings else np.where(lay.pp == 1, 0, model.vocab * model.hidden)) / lay.tp
    return {"layer": ((per_layer - expert) / lay.tp, expert / (lay.etp * lay.ep)),
            "emb": (pc.embedding / lay.tp + zero, zero), "head": (head + pc.other + zero, zero)}


def stage_params(model: ModelSpec, lay: Layouts, layers: StageLayers) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(dense, expert) parameters one GPU of each stage kind holds: its MoE and dense-FFN layers each with their
    own parameters (``layer_params_by_kind``; the stack's mean layer for models without dense-FFN layers), and on
    the stage with MTP layers their norms and projections and the word-embedding copy (``mtp``)."""
    units = unit_params(model, lay)
    (dense, exp), emb, head = units["layer"], units["emb"][0], units["head"][0]
    single = lay.pp == 1
    ends = {"first": emb + np.where(single, head, 0), "last": np.where(single, 0, head)}
    extra = (mtp.extra_params(model) * (layers.first_mtp + layers.last_mtp)
             + np.where(layers.last_mtp > 0, mtp.embedding_copy_params(model, lay.pp), 0)) / lay.tp
    ends = {k: v + np.where(layers.mtp_of_kind(k) > 0, extra, 0.0) for k, v in ends.items()}
    if not model.dense_layers:
        return {k: (layers.of_kind(k) * dense + ends.get(k, 0.0), layers.of_kind(k) * exp) for k in KINDS}
    kinds = layer_params_by_kind(model)
    (moe_d, moe_e), (dense_d, _) = kinds["moe"], kinds["dense"]
    return {k: (layers.both(k, moe_d / lay.tp, dense_d / lay.tp) + ends.get(k, 0.0),
                layers.both(k, moe_e / (lay.etp * lay.ep), 0.0)) for k in KINDS}


def dp_costs(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, gpn: int, fw: Framework,
             layers: StageLayers) -> dict[str, np.ndarray]:
    """Raw data-parallel traffic, gradient accumulation and optimizer time of every stage kind, computed once per
    distinct DP_KEYS combination and spread back over the layouts."""
    first, inverse = distinct(lay, DP_KEYS)
    sub, sub_layers = lay.take(first), layers.take(first)
    params = stage_params(model, sub, sub_layers)
    shard = np.where((sub.zero_stage >= 1) | sub.distributed_optimizer, sub.shard, 1)
    expert_shard = np.where(shard > 1, sub.expert_shard, 1)
    # Every unit and stage kind in one collective call each (rows of one stacked array): far fewer calls per sweep.
    units = unit_params(model, sub)
    names = [f"{u}_" for u in UNITS] + [f"_{k}" for k in KINDS]
    dense = np.stack([units[u][0] for u in UNITS] + [params[k][0] for k in KINDS])
    expert = np.stack([units[u][1] for u in UNITS] + [params[k][1] for k in KINDS])
    gathers = comms.param_gather_s(perf, dense, expert, sub, precision, gpn)
    reduces = comms.grad_reduce_s(perf, dense, expert, sub, precision, gpn, replicas=False,
                                  zero_allreduce=fw.zero_grad_allreduce)
    # Hybrid sharding: each reduced shard is all-reduced over the replicas, after every micro-batch's reduce-scatter
    # or once per step (``Framework.replica_reduce_every_micro_batch``).
    replicas = comms.replica_reduce_s(perf, dense, expert, sub, precision, gpn)
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        unit = name.endswith("_")
        out[f"{name}gather" if unit else f"gather{name}"] = gathers[i]
        every = unit and fw.replica_reduce_every_micro_batch
        out[f"{name}reduce" if unit else f"reduce{name}"] = reduces[i] + (replicas[i] if every else 0.0)
        out[f"{name}replica" if unit else f"replica{name}"] = replicas[i]
    local = np.zeros(len(sub))
    for kind in KINDS:
        dense, expert = params[kind]
        z2 = sub.zero_stage >= 2  # ZeRO-2/3 keep a shard of the gradients
        grads = dense / np.where(z2, sub.shard, 1) + expert / np.where(z2, sub.expert_shard, 1)
        out[f"accumulate_{kind}"] = comms.grad_accumulation_s(perf, grads, precision, fw)
        # FP8: the weights' FP8 copies are made once per step (capsim.analytic.fp8), shared by its micro-batches
        cast = fp8.weight_cast_bytes(dense + expert, precision)
        out[f"weight_cast_{kind}"] = np.where(cast > 0, perf.memory_s(cast, "stream"), 0.0)
        if kind != "middle_mean":
            local = np.maximum(local, np.where(_exists(sub, kind), dense / shard + expert / expert_shard, 0.0))
    # one block's and the head's parameter elements on this GPU (DeepSpeed's reuse distance and reduce buckets)
    out["layer_numel"], out["head_numel"] = units["layer"][0] + units["layer"][1], units["head"][0]
    out["optimizer_s"] = comms.optimizer_s(perf, local, precision)
    out["embedding_sync_s"] = comms.embedding_sync_s(perf, model, sub, precision, gpn, fw.mtp_layers > 0)
    return {k: v[inverse] for k, v in out.items()}


def host_waits_s(t: MicroBatchTimes, ep_fwd: object, ep_bwd: object, point: host.SyncPoint | None = None,
                 paired: object = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) seconds one layer's GPU waits for the host per micro-batch: each pass's host issue time
    (``capsim.analytic.training.host``) beyond its GPU time, compute and the EP communication on its streams.
    ``point``: where the release's MoE dispatcher makes the host wait for the GPU in the forward (``sync_point``);
    the forward then runs from one wait to the next as kernels issued onto an empty queue (``host.synced_pass_s``,
    the EP forward time split evenly between the dispatch and the combine). Not floored: a recomputation's replay.

    ``paired``: the share of passes Megatron-Core's EP A2A overlap runs as one layer's forward of a micro-batch
    together with its backward of another (``comms.overlapped_share``). One host thread issues both passes' kernels
    in TransformerLayerSchedulePlan.run's order (megatron/core/models/common/model_chunk_schedule_plan.py L176-239,
    NVIDIA/Megatron-LM@0d8e0714; L190-254 at b0cc2706), and the forward's dispatcher still waits for the GPU once
    per pair (the all-to-all dispatcher's ``_maybe_dtoh_and_synchronize`` before the dispatch all-to-all runs inside
    the ``moe_dispatch`` node, token_dispatcher.py L671-674 at 0d8e0714, L663-666 at b0cc2706), so the host cannot
    build a lead across pairs beyond the expert backward it issued before the wait: a pair takes at least the host
    time of both passes (a lower bound; the wait itself, with the attention and router GPU time queued just before
    it, is not added). Such a pair's wait is counted on its forward; the unpaired passes (the schedule's warmup
    forwards and cooldown backwards) keep their own floors."""
    gpu_f = t.layer_fwd_s + ep_fwd
    fwd = t.host_fwd_s - gpu_f
    if point is not None:
        half = np.asarray(ep_fwd, float) / 2.0
        fwd = np.maximum(fwd, host.synced_pass_s(*t.runs(), half, half, point) - gpu_f)
    fwd, bwd = np.maximum(fwd, 0.0), np.maximum(t.host_bwd_s - t.layer_bwd_s - ep_bwd, 0.0)
    share = np.asarray(paired, float)
    pair = np.maximum(t.host_fwd_s + t.host_bwd_s - (gpu_f + t.layer_bwd_s + ep_bwd), 0.0)
    return (1.0 - share) * fwd + share * pair, (1.0 - share) * bwd


def host_wait_s(t: MicroBatchTimes, ep_fwd: object, ep_bwd: object, point: host.SyncPoint | None = None,
                paired: object = 0.0) -> np.ndarray:
    """Both passes' host waits of one layer and micro-batch (``host_waits_s``)."""
    fwd, bwd = host_waits_s(t, ep_fwd, ep_bwd, point, paired)
    return fwd + bwd


def sync_point(fw: Framework) -> host.SyncPoint | None:
    """Where ``fw``'s MoE dispatcher waits for the GPU in the forward (``host.SyncPoint``), with or without the EP
    A2A overlap schedule (which runs the same dispatcher inside its ``moe_dispatch`` node)."""
    if fw.moe_dispatcher is MoeDispatcher.ALLGATHER:
        return host.SyncPoint.AFTER_DISPATCH
    return host.SyncPoint.BEFORE_DISPATCH


def paired_share(lay: Layouts, fw: Framework) -> np.ndarray:
    """Share of an MoE layer's passes the EP A2A overlap schedule pairs (``comms.overlapped_share``); 0 without it."""
    return comms.overlapped_share(lay) if fw.overlap_moe_a2a else np.zeros(len(lay))


def micro_batch_costs(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, gpn: int, fw: Framework,
                      times: LayerTimes, layers: StageLayers, dp: dict[str, np.ndarray]
                      ) -> dict[str, dict[str, np.ndarray]]:
    """Seconds each stage kind spends on one micro-batch, by component (PER_MICRO_BATCH), over all its chunks.
    Each stage's MoE and dense-FFN layers are priced by kind; only its MoE layers run the all-to-alls."""
    t = times.moe
    layer = times.pair(lambda x: x.layer_fwd_s + x.layer_bwd_s)
    full, sel = times.pair(lambda x: x.layer_fwd_s), times.pair(lambda x: x.layer_selective_s)
    tp_layer = times.pair(lambda x: sum(comms.tp_layer_s(perf, model, lay, precision, gpn, x, fw)))
    tp_embed, tp_head_f, tp_head_b = comms.tp_ends_s(perf, model, lay, precision, gpn)
    tp_head = tp_head_f + tp_head_b
    cp_layer = sum(comms.cp_layer_s(perf, model, lay, precision, gpn, t, fw))  # the same attention in both kinds
    ep_f, ep_b = comms.ep_layer_s(perf, model, lay, precision, gpn, t, fw)  # one MoE layer
    ep_layer = ep_f + ep_b
    waits = (host_wait_s(t, ep_f, ep_b, sync_point(fw) if model.is_moe else None, paired_share(lay, fw)),
             host_wait_s(times.dense, 0.0, 0.0))
    hop = comms.p2p_hop_s(perf, model, lay, precision, gpn, fw)
    pp_mb = np.where(fw.overlaps_p2p(lay.v), 0.0, 2.0 * lay.v * hop)  # blocking send+recv per chunk, each way
    single = lay.pp == 1
    # MTP (capsim.analytic.mtp): each layer runs the embedding again, eh_proj, and the head and loss again
    heads = 1.0 + fw.mtp_layers
    mtp_ends: tuple[Num, Num] = (0.0, 0.0)
    if fw.mtp_layers:
        proj = mtp.proj_gemm_s(perf, model, lay.micro_batch * lay.seq_len / lay.cp, lay.tp, precision.compute)
        mtp_ends = (fw.mtp_layers * (t.embed_fwd_s + t.embed_bwd_s + proj),
                    fw.mtp_layers * (tp_embed + comms.mtp_proj_tp_s(perf, model, lay, precision, gpn)))
    ends = {"first": (t.embed_fwd_s + t.embed_bwd_s + np.where(single, heads * (t.head_fwd_s + t.head_bwd_s)
                                                                + mtp_ends[0], 0.0),
                      tp_embed + np.where(single, heads * tp_head + mtp_ends[1], 0.0)),
            "middle": (0.0, 0.0), "last": (heads * (t.head_fwd_s + t.head_bwd_s) + mtp_ends[0],
                                           heads * tp_head + mtp_ends[1])}
    out: dict[str, dict[str, np.ndarray]] = {}
    for kind in KINDS:
        n = layers.of_kind(kind)
        end_compute, end_tp = ends[kind.split("_")[0]]
        mtp_n = layers.mtp_of_kind(kind)
        replay = recompute.full_replay_share(n - mtp_n, mtp_n, lay.v, fw.recompute_method, fw.recompute_layers)
        rec = np.select([lay.recompute == 2, lay.recompute == 1],
                        [replay * layers.both(kind, *full), layers.both(kind, *sel)], 0.0)
        emb, head = np.full(len(lay), kind == "first"), (kind == "last") | ((kind == "first") & single)
        zero = sharded_exposed_s(lay, fw, times.mean(layers, kind), n, emb, np.broadcast_to(head, (len(lay),)), dp)
        costs = {"compute_s": layers.both(kind, *layer) + layers.both(kind, *waits) + end_compute
                 + dp[f"weight_cast_{kind}"] / lay.micro_batches,
                 "recompute_s": rec,
                 "grad_accumulation_s": dp[f"accumulate_{kind}"], "tp_comm_s": layers.both(kind, *tp_layer) + end_tp,
                 "cp_comm_s": n * cp_layer, "ep_comm_s": layers.both(kind, ep_layer, 0.0), "pp_comm_s": pp_mb,
                 "zero_comm_s": zero}
        exists = _exists(lay, kind.split("_")[0])
        out[kind] = {k: np.where(exists, v, 0.0) for k, v in costs.items()}
    out["_hop"] = {"hop_s": hop}
    return out


def step_tail(lay: Layouts, fw: Framework, times: LayerTimes, layers: StageLayers, hop: np.ndarray,
              dp: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What follows the pipeline flush: gradient reduction (the part not hidden behind the last backward), the
    tied-embedding sync, the optimizer step and the post-step parameter all-gather."""
    t = times.moe
    once = lay.zero_stage <= 1  # ZeRO-2/3 reduce every micro-batch instead (in micro_batch_costs)
    bwd = times.pair(lambda x: x.layer_bwd_s)
    mean_kind = np.where(lay.pp > 2, 1, 0)  # a mean middle stage's chunk, else the first stage's
    chunk_bwd = np.choose(mean_kind, [layers.both("first", *bwd), layers.both("middle_mean", *bwd)]) / lay.v + hop
    # Stage s finishes its last backward s chunk-backwards (and hops) before stage 0 does (1F1B and interleaved).
    slack = {"first": 0.0, "middle": chunk_bwd, "last": (lay.pp - 1) * chunk_bwd}
    last_bwd = {"first": layers.both("first", *bwd) + t.embed_bwd_s + np.where(lay.pp == 1, t.head_bwd_s, 0),
                "middle": layers.both("middle", *bwd), "last": layers.both("last", *bwd) + t.head_bwd_s}
    exposed, full, gather = np.zeros(len(lay)), np.zeros(len(lay)), np.zeros(len(lay))
    gathers_after = (lay.zero_stage == 1) | (lay.zero_stage == 2) | lay.distributed_optimizer
    for kind in STAGES:
        exists = _exists(lay, kind)
        # ZeRO-0/1: the whole reduction once per step (with any replica all-reduce); ZeRO-2/3 reduce-scatter every
        # micro-batch, and under hybrid sharding a release that syncs the replicas once per step all-reduces the
        # shards after the last backward (Megatron-FSDP's outer-DP reduce on the last micro-batch).
        per_step = ~once & (not fw.replica_reduce_every_micro_batch)
        red = np.where(exists, np.where(once, dp[f"reduce_{kind}"] + dp[f"replica_{kind}"],
                                        np.where(per_step, dp[f"replica_{kind}"], 0.0)), 0.0)
        buckets = np.maximum(layers.of_kind(kind), 1)
        # Bucketed reduction overlapped with the last micro-batch's backward; the last bucket cannot be hidden
        # (Li et al. VLDB 2020, "PyTorch Distributed", Sec. 3.2.3).
        left = np.where(fw.overlaps_grad_reduce(lay.zero_stage), np.maximum(red - last_bwd[kind], red / buckets), red)
        exposed = np.maximum(exposed, np.where(exists, left - slack[kind], 0.0))
        full = np.maximum(full, red)
        gather = np.maximum(gather, np.where(gathers_after & exists, dp[f"gather_{kind}"], 0.0))
    first_fwd = layers.both("first", *times.pair(lambda x: x.layer_fwd_s)) + t.embed_fwd_s
    gather = np.maximum(gather - first_fwd, 0.0) if fw.overlap_param_gather else gather
    stage_exposed, stage_full = deferred_stage_reduce_s(lay, fw, layers, dp, slack)
    return {"dp_comm_s": np.maximum(exposed, 0.0) + stage_exposed, "dp_total_s": np.maximum(full, stage_full),
            "embedding_sync_s": dp["embedding_sync_s"], "optimizer_s": dp["optimizer_s"], "param_gather_s": gather}


def deferred_stage_reduce_s(lay: Layouts, fw: Framework, layers: StageLayers, dp: dict[str, np.ndarray],
                            slack: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """(exposed, whole) seconds of the one reduction a pipeline stage that defers the FSDP2 gradient sync
    (``Framework.stage_defers``) runs per step, on the ZeRO >= 2 layouts; zero elsewhere. A stage reduce-scatters
    each of its units once, one after another: FSDP2's post_backward waits for the previous unit's reduce-scatter
    before issuing the next (one input buffer in flight, pytorch#186000; torch 2.13.0 _fsdp_param_group.py
    L647-658). Inside the last backward (``pp_reduce_at_step_end`` False) the stage's input-gradient send waits for
    them, so the drain carries every stage's in turn (pytorch#165106): their sum, all exposed (torch before
    pytorch#144535, 2025-01, did not wait for the last unit's: priced waited). After the schedule (True: torch 2.13.0
    schedules.py L1172-1177) a stage's reduction hides behind the drain still ahead of the first stage (``slack``).
    ``whole``: the drain's sum, or after the schedule the largest stage's reduction."""
    out, whole = np.zeros(len(lay)), np.zeros(len(lay))
    on = np.asarray(fw.stage_defers(lay.pp), bool) & (lay.zero_stage >= 2)
    if not np.any(on):
        return out, whole
    r = dp["layer_reduce"]
    kind = {"first": layers.first * r + dp["emb_reduce"], "middle": layers.middle_max * r,
            "middle_mean": layers.middle * r, "last": layers.last * r + dp["head_reduce"]}
    if fw.pp_reduce_at_step_end:
        left = [np.where(_exists(lay, k), kind[k] - slack[k], 0.0) for k in STAGES]
        out = np.maximum(np.max(np.stack(left), axis=0), 0.0)
        whole = np.max(np.stack([np.where(_exists(lay, k), kind[k], 0.0) for k in STAGES]), axis=0)
    else:  # the drain's whole reduction is the sum, none of it hidden
        out = whole = kind["first"] + np.maximum(lay.pp - 2, 0) * kind["middle_mean"] + kind["last"]
    return np.where(on, out, 0.0), np.where(on, whole, 0.0)


def pipeline(costs: dict[str, dict[str, np.ndarray]], lay: Layouts, fw: Framework) -> dict[str, np.ndarray]:
    """The pipeline's critical path: m micro-batches at the pace of the slowest stage plus the fill and drain,
    T = m W_max + (sum_s W_s - W_max) / v; for uniform stages the bubble is (p-1)/(v m) of the ideal time
    (Narayanan et al. SC21, Sec. 2.2, Eq. 1 and 2), for GPipe, 1F1B and interleaved 1F1B alike."""
    w = {s: sum(costs[s][k] for k in PER_MICRO_BATCH) for s in KINDS}
    p = lay.pp.astype(float)
    total = w["first"] + np.maximum(p - 2, 0) * w["middle_mean"] + w["last"]
    which = np.argmax(np.stack([w[s] for s in STAGES]), axis=0)
    w_max = np.choose(which, [w[s] for s in STAGES])
    m = lay.micro_batches.astype(float)
    out = {k: m * np.choose(which, [costs[s][k] for s in STAGES]) for k in PER_MICRO_BATCH}
    fill = np.where(fw.overlaps_p2p(lay.v), 2.0 * (p - 1) * costs["_hop"]["hop_s"], 0.0)  # fill and drain sends
    out["bubble_s"] = ((total - w_max) / lay.v + fill) * schedules(lay, fw)
    out["bottleneck_stage"] = which
    return out


def schedules(lay: Layouts, fw: Framework) -> np.ndarray:
    """Pipeline schedules a step runs, each with its own fill and drain: the per-replica batch over
    ``fw.pp_schedule_sequences`` (NeMo AutoModel runs one ``schedule.step`` per gradient-accumulation step of
    step_scheduler.local_batch_size sequences, nemo_automodel/recipes/llm/train_ft.py L741, L893-944 @8d9bfb9; its
    step_scheduler.py L53-58 asserts the division is exact); 1 without a pipeline or the field."""
    if fw.pp_schedule_sequences <= 0:
        return np.ones(len(lay))
    per_replica = lay.micro_batches * lay.micro_batch
    return np.where(lay.pp > 1, per_replica / fw.pp_schedule_sequences, 1.0)


__all__ = ["DP_KEYS", "deferred_stage_reduce_s", "host_wait_s", "host_waits_s", "paired_share", "sync_point", "PER_MICRO_BATCH", "LayerTimes", "StageLayers", "dp_costs", "micro_batch_costs", "pipeline",
           "schedules", "stage_params", "step_tail"]
