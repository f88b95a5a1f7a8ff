"""Memory per GPU: model states by ZeRO stage, activations by recompute/TP/SP and pipeline schedule,
KV cache, and temporary buffers. Vectorised over Layouts.

Sources: model states, Rajbhandari et al. 2020 (ZeRO), Sec. 3.1 and Fig. 1; activations, Korthikanti et al.
2022, Table 2 and Sec. 4.2.3 (in-flight micro-batches of 1F1B and the (1 + (p-1)/(p v)) factor of interleaving).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim._types import Num
from capsim.analytic import fp8, mtp, recompute
from capsim.analytic.attention import kv_elems_per_token
from capsim.analytic.cp_memory import CpRotate, cp_transient_bytes
from capsim.analytic.layouts import Layouts
from capsim.analytic.mixers import state_bytes_per_sequence
from capsim.analytic.moe import COMBINE
from capsim.analytic.ops import (
    AttentionImpl,
    Saved,
    StepBatch,
    forward_layer_ops,
    head_ops,
    layer_shape,
    serving_layer_ops,
)
from capsim.analytic.params import layer_params_by_kind, param_counts
from capsim.analytic.recompute import MEGATRON_SAC, SacPolicy, SelectiveAc
from capsim.errors import SpecError
from capsim.specs.hardware import Accelerator
from capsim.specs.model import Arch, ModelSpec
from capsim.specs.plans import ServePlan, TrainPlan
from capsim.specs.precision import Precision


def _scalar(x: Num) -> Num:
    return x.item() if isinstance(x, np.ndarray) and x.size == 1 else x


@dataclass(frozen=True)
class TrainingMemory:
    """Per-GPU bytes on the pipeline stage that needs the most (of all stages); arrays for sweeps."""

    weights_bytes: Num
    gradients_bytes: Num
    optimizer_bytes: Num  # master weights + Adam moments
    activations_bytes: Num  # kept for backward by all in-flight micro-batches
    temporary_bytes: Num  # recompute working set, ZeRO-3 gathered layers, logits
    capacity_bytes: float
    stage: Num  # pipeline rank of the peak stage (0 = first)
    pp: Num = 1  # pipeline stages (the peak is the last one when stage == pp - 1)

    @property
    def model_states_bytes(self) -> Num:
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes

    @property
    def total_bytes(self) -> Num:
        return self.model_states_bytes + self.activations_bytes + self.temporary_bytes

    @property
    def fits(self) -> Num:
        return self.total_bytes <= self.capacity_bytes

    @property
    def shortfall_bytes(self) -> Num:
        return np.maximum(self.total_bytes - self.capacity_bytes, 0.0)

    def to_dict(self) -> dict[str, object]:
        keys = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "temporary_bytes",
                "model_states_bytes", "total_bytes", "capacity_bytes", "fits", "shortfall_bytes")
        out = {k: _scalar(np.asarray(getattr(self, k))) for k in keys}
        stage, pp = np.asarray(self.stage), np.asarray(self.pp)
        names = np.where(stage == 0, "first", np.where(stage == pp - 1, "last", np.char.add("rank ", stage.astype(str))))
        out["peak_stage"] = _scalar(names)
        out["peak_rank"] = _scalar(stage)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def _layer_params_per_gpu(model: ModelSpec, lay: Layouts, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dense, expert) parameters of one layer on one GPU: the stack's mean layer, or of one ``kind`` ("moe" or
    "dense", ``layer_params_by_kind``)."""
    if kind is not None:
        dense, expert = layer_params_by_kind(model)[kind]
        return dense / lay.tp, expert / (lay.etp * lay.ep)
    pc = param_counts(model)
    per_layer = (pc.per_layer * model.layers + pc.encoder_per_layer * model.encoder_layers) / model.total_layers
    expert = pc.expert_per_layer * model.layers / model.total_layers
    return (per_layer - expert) / lay.tp, expert / (lay.etp * lay.ep)


def stage_params(model: ModelSpec, lay: Layouts, layers: Num, emb: Num, head: Num, dense_layers: Num = 0
                 ) -> tuple[Num, Num]:
    """(dense, expert) parameters one GPU of a stage holds: its ``layers`` (``dense_layers`` of them an MoE
    model's dense-FFN layers), the embedding if ``emb``, the final norm and LM head if ``head``. Megatron keeps the
    word embedding on the last stage too when tied and pp > 1."""
    pc = param_counts(model)
    lm_head = (pc.lm_head if not model.tied_embeddings else np.where(lay.pp == 1, 0, model.vocab * model.hidden)) / lay.tp
    ends = np.where(emb, pc.embedding / lay.tp, 0) + np.where(head, lm_head + pc.other, 0)
    if not model.dense_layers:
        dense, expert = _layer_params_per_gpu(model, lay)
        return layers * dense + ends, layers * expert
    (moe_d, moe_e), (dense_d, _) = (_layer_params_per_gpu(model, lay, k) for k in ("moe", "dense"))
    return (layers - dense_layers) * moe_d + dense_layers * dense_d + ends, (layers - dense_layers) * moe_e


def model_state_bytes(dense: Num, expert: Num, lay: Layouts, precision: Precision) -> tuple[Num, Num, Num]:
    """(weights, gradients, optimizer) bytes per GPU under ZeRO / the distributed optimizer.

    ZeRO (Rajbhandari et al. 2020, Sec. 5): stage 1 shards optimizer states, stage 2 also gradients,
    stage 3 also parameters, over the data-parallel group (dp x cp); experts over their expert-data-parallel group
    (tp x cp x dp / (ep x etp), ``Layouts.expert_dp``): Megatron-Core's DDP puts expert parameters in their own
    buffers over the expert data-parallel group, world / (etp x ep x pp), and the distributed optimizer shards each
    buffer over its own group (ML@55ac7082 distributed_data_parallel.py L294-302, distrib_optimizer.py L185-193,
    parallel_state.py L788-791). Hybrid sharding shards over its sharding group only
    (``Layouts.shard``, ``expert_shard``) and keeps a copy per replica (Zhao et al. 2023, "PyTorch FSDP", Sec. 3.2.2).
    """
    group = lay.shard
    expert_group = lay.expert_shard
    z = lay.zero_stage

    def sharded(nbytes_per_param: float, on: np.ndarray) -> Num:
        return nbytes_per_param * (dense / np.where(on, group, 1) + expert / np.where(on, expert_group, 1))

    weights = sharded(precision.weights.bytes, z >= 3)
    grads = sharded(precision.gradients.bytes, z >= 2)
    optimizer = sharded(precision.optimizer_bytes_per_param, (z >= 1) | lay.distributed_optimizer)
    return weights, grads, optimizer


def saved_by_class(model: ModelSpec, lay: Layouts, precision: Precision,
                   attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False,
                   moe_share: float | None = None, combine_saves: bool = True) -> dict[Saved, Num]:
    """Bytes one layer keeps for one micro-batch, summed per sharding class (before SP and selective): the
    stack's mean layer, or with ``moe_share`` 1 (0) an MoE (a dense-FFN) layer. ``combine_saves``: whether the MoE
    combine keeps the expert outputs (``Framework.moe_combine_saves``; else it saves nothing)."""
    dt = precision.activations
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    s = layer_shape(model, tokens, lay.micro_batch, lay.tp, lay.ep, lay.sp, lay.etp)

    def by_class(cross: bool) -> dict[Saved, Num]:
        out: dict[Saved, Num] = {c: 0.0 for c in Saved}
        # FP8 recipes keep the FP8 copies of TE's GEMM inputs (capsim.analytic.fp8).
        ops = forward_layer_ops(model, s, dt, attention, dropout, cross, model.causal, moe_share)
        for op in fp8.forward(ops, precision):
            if not combine_saves and op.name.split(".")[0] == COMBINE:
                continue  # probabilities applied in the experts' activation: the unpermute is a plain sum
            for kind, size in op.saved:
                out[kind] = out[kind] + size * op.count * op.share
        return out

    if model.arch is not Arch.ENCODER_DECODER:
        return by_class(False)
    enc, dec = by_class(False), by_class(True)
    return {c: (enc[c] * model.encoder_layers + dec[c] * model.layers) / model.total_layers for c in Saved}


def layer_activation_bytes(model: ModelSpec, lay: Layouts, precision: Precision,
                           attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False,
                           recompute: Num | None = None, classes: dict[Saved, Num] | None = None) -> np.ndarray:
    """Bytes one layer keeps for one micro-batch (Korthikanti et al. 2022, Table 2, generalised by op)."""
    mode = lay.recompute if recompute is None else np.asarray(recompute)
    c = classes if classes is not None else saved_by_class(model, lay, precision, attention, dropout)
    per = c[Saved.TP] + np.where(lay.sp, c[Saved.SP] / lay.tp, c[Saved.SP]) + np.where(mode == 1, 0.0, c[Saved.CORE])
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    full = precision.activations.bytes * tokens * model.hidden / np.where(lay.sp, lay.tp, 1)  # the layer input only
    return np.where(mode == 2, full, per)


def inflight_chunks(lay: Layouts, rank: Num) -> np.ndarray:
    """Model chunks whose activations pipeline rank ``rank`` holds at its peak.

    GPipe keeps all m micro-batches; 1F1B at most p - r; interleaved 1F1B 2(p-1-r) + (v-1)p + 1 chunks
    (Megatron-LM schedules.py warm-up count + 1), each l/(p v) layers; never more than m v.
    """
    m, p, v = lay.micro_batches, lay.pp, lay.v
    gpipe = m * v
    one_f = np.minimum(p - rank, m)
    inter = np.minimum(2 * (p - 1 - rank) + (v - 1) * p + 1, m * v)
    out = np.select([lay.schedule == 0, lay.schedule == 1], [gpipe, one_f], inter)
    return np.where(p == 1, 1, out)


def _middle_candidates(lay: Layouts, dense_layers: tuple[int, ...] = ()
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank, layers, dense-FFN layers) of each layout's middle stages that can hold the memory peak, (N, C)
    arrays; rank -1 pads."""
    cands = []
    for sp in lay.splits:
        dense = sp.count_on_stages(dense_layers)
        cands.append(tuple((r, n, dense[r]) for r, n in sp.peak_candidates()))
    width = max((len(c) for c in cands), default=0)
    table = np.full((len(cands) + 1, max(width, 1), 3), -1, np.int64)  # last row: layouts without a split
    for k, c in enumerate(cands):
        if c:
            table[k, :len(c)] = c
    rows = table[np.where(lay.split >= 0, lay.split, len(cands))]
    return rows[:, :width, 0], rows[:, :width, 1], rows[:, :width, 2]


def _selective_bytes(model: ModelSpec, lay: Layouts, precision: Precision, attention: AttentionImpl,
                     dropout: bool, sac: SelectiveAc, moe_share: float | None, no_recompute: Num) -> Num:
    """Bytes one layer keeps under recompute = selective, by the release's policy (``capsim.analytic.recompute``):
    the block input plus the op policy's saved outputs, or every N-th block's input only and the others' all."""
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    block_input = precision.activations.bytes * tokens * model.hidden / np.where(lay.sp, lay.tp, 1)
    if sac.policy is SacPolicy.BLOCKS:
        b = recompute.block_share(model, sac)
        return b * block_input + (1.0 - b) * no_recompute
    s = layer_shape(model, tokens, lay.micro_batch, lay.tp, lay.ep, lay.sp, lay.etp)
    ops = fp8.forward(forward_layer_ops(model, s, precision.activations, attention, dropout, False, model.causal,
                                       moe_share), precision)
    sdpa_out = tokens * s.heads * (model.v_dim * precision.activations.bytes + 4.0)  # output + fp32 logsumexp
    return block_input + recompute.ops_policy_kept_bytes(model, ops, precision.activations.bytes, sdpa_out)


def _discarded_bytes(model: ModelSpec, lay: Layouts, precision: Precision, attention: AttentionImpl, dropout: bool,
                     sac: SelectiveAc, moe_share: float | None) -> Num:
    """Bytes of one layer's kept activations that Megatron-Core's output-discarding recompute modules free under
    recompute = selective (``capsim.analytic.recompute.discarded``), sharded as the layer's own saves are."""
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    s = layer_shape(model, tokens, lay.micro_batch, lay.tp, lay.ep, lay.sp, lay.etp)
    ops = fp8.forward(forward_layer_ops(model, s, precision.activations, attention, dropout, False, model.causal,
                                       moe_share), precision)
    quantized = frozenset(op.name for op in ops if fp8.is_fp8(op, precision))
    freed: dict[Saved, Num] = {c: 0.0 for c in Saved}
    for op, drop in zip(ops, recompute.discarded(ops, sac, quantized), strict=True):
        for kind, size in op.saved if drop else ():
            freed[kind] = freed[kind] + size * op.count * op.share
    return layer_activation_bytes(model, lay, precision, recompute=0, classes=freed)


def _layer_kinds(model: ModelSpec, lay: Layouts, precision: Precision, attention: AttentionImpl, dropout: bool,
                 sac: SelectiveAc = MEGATRON_SAC, combine_saves: bool = True) -> dict[str, dict[str, Num]]:
    """Per kind of layer ("moe", and "dense" for an MoE model's dense-FFN layers; the stack's mean layer as
    "moe" otherwise): kept activations, the recompute working set and the ZeRO-3 gathered parameters."""
    kinds = {"moe": 1.0, "dense": 0.0} if model.dense_layers else {"moe": None}
    out = {}
    for kind, share in kinds.items():
        classes = saved_by_class(model, lay, precision, attention, dropout, share, combine_saves)
        # Working set: recomputing a layer rebuilds its full activations (full) or its attention core (selective).
        no_recompute = layer_activation_bytes(model, lay, precision, recompute=0, classes=classes)
        dense, expert = _layer_params_per_gpu(model, lay, kind if share is not None else None)
        act = layer_activation_bytes(model, lay, precision, classes=classes)
        replayed = classes[Saved.CORE]
        # torchtitan's policies rebuild a whole block's activations; Megatron-Core's modules (recompute.py) are
        # priced as the attention-core policy less what their output-discarding checkpoints free
        if sac.policy is SacPolicy.MODULES:
            act = np.where(lay.recompute == 1, act - _discarded_bytes(model, lay, precision, attention, dropout, sac,
                                                                      share), act)
        elif sac.policy is not SacPolicy.ATTENTION_CORE:
            act = np.where(lay.recompute == 1, _selective_bytes(model, lay, precision, attention, dropout, sac, share,
                                                                no_recompute), act)
            replayed = no_recompute
        out[kind] = {"act": act, "none": no_recompute,
                     "ws": np.select([lay.recompute == 2, lay.recompute == 1], [no_recompute, replayed], 0),
                     # ZeRO-3 gathers the layer being computed and prefetches the next (none in a group of one).
                     "zero3": np.where((lay.zero_stage >= 3) & (lay.shard > 1),
                                       2 * (dense + expert) * precision.weights.bytes, 0)}
    out.setdefault("dense", out["moe"])
    return out


def training_memory(model: ModelSpec, plan: TrainPlan | Layouts, precision: Precision | None = None,
                    accelerator: Accelerator | None = None, attention: AttentionImpl = AttentionImpl.FLASH,
                    dropout: bool = False, keep_gathered: Num = False, unsharded_grads: Num = False,
                    sac: SelectiveAc = MEGATRON_SAC, combine_saves: bool = True, loss_copy_bytes: float = 4.0,
                    offloaded_layers: Num = 0.0, cp_rotate: CpRotate | str = CpRotate.P2P, repeat_kv: bool = False,
                    recompute_method: str = "uniform", recompute_layers: int = 1, mtp_layers: int = 0
                    ) -> TrainingMemory:
    """Per-GPU training memory of one plan, or of every layout in ``plan`` at once: the largest over all pipeline
    stages (the first with the embedding, the last with the LM head and logits, and every middle stage that
    could be heavier, each with its own layers, dense-FFN layers and in-flight micro-batches).

    ZeRO-3/FSDP that keeps the parameters gathered from the forward to the backward (``keep_gathered``) holds the
    stage's whole parameters at the end of its forward; deferred gradient sync (``unsharded_grads``) also holds the
    stage's unsharded gradients until the step's last backward (FSDP2 without gradient sync). ``sac`` is the
    release's selective-recompute policy (what recompute = selective keeps); ``combine_saves`` is the release's
    ``Framework.moe_combine_saves``; ``loss_copy_bytes`` what its loss keeps per logit beside the 16-bit logits
    (``Framework.loss_copy_bytes``: 4 for an fp32 softmax copy, 0 for TE's in-place fused loss);
    ``offloaded_layers`` of a stage's layers keep their activations in host memory but for one in flight
    (``capsim.analytic.training.offload``); ``cp_rotate`` and ``repeat_kv`` (``Framework``) say which ring attention
    runs under context parallelism and with how many K/V heads, whose buffers one layer at a time holds
    (``capsim.analytic.cp_memory``). Under full recomputation ``recompute_method`` and ``recompute_layers`` (N) say
    what each stage keeps (``recompute.full_replay_share``): "uniform" one input per N layers and N layers rebuilt at
    once in the backward; "block" the inputs of the first N layers of each chunk and everything of the others.
    ``mtp_layers`` MTP layers sit on the last stage (``capsim.analytic.mtp``), each with its own logits and loss,
    projection input and, with pp > 1, the word-embedding copy."""
    if isinstance(plan, TrainPlan):
        precision = precision or plan.precision
        lay = Layouts.from_plans(model, [plan])
    else:
        lay = plan
    precision = precision or Precision()
    kinds = _layer_kinds(model, lay, precision, attention, dropout, sac, combine_saves)
    moe, dense_kind = kinds["moe"], kinds["dense"]
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    # Embedding dropout mask on the first stage, for every in-flight micro-batch (Korthikanti Sec. 4.3).
    emb_mask = (tokens * model.hidden / np.where(lay.sp, lay.tp, 1)) if dropout else 0.0
    # LM-head output plus what the loss keeps beside it (none where TE's fused loss overwrites the logits with their
    # gradient in place: TE@v2.8 transformer_engine/pytorch/cross_entropy.py L50-59)
    logits = tokens * model.vocab / lay.tp * (precision.activations.bytes + loss_copy_bytes)
    single = lay.pp == 1
    # the ring's buffers, one layer's at a time, on top of that layer's recompute working set
    ring = cp_transient_bytes(model, lay, precision.activations.bytes, cp_rotate, repeat_kv)

    sharded3, sharded2 = (lay.zero_stage >= 3) & (lay.shard > 1), (lay.zero_stage >= 2) & (lay.shard > 1)

    full = lay.recompute == 2
    group = recompute_layers if recompute_method == "uniform" else 1  # layers one checkpoint rebuilds at once
    # MTP: eh_proj's saved input [tokens, 2h] beside its layer's activations (multi_token_prediction.py L511-522)
    proj_in = 2.0 * tokens * model.hidden * precision.activations.bytes / np.where(lay.sp, lay.tp, 1)
    # an MTP layer is its own checkpoint under full "uniform" and not recomputed under "block" (recompute.py)
    replayed = full & (recompute_method == "uniform")
    mtp_act = np.where(replayed, moe["act"], np.where(full, moe["none"], moe["act"]) + proj_in)

    def stage(rank: Num, layers: Num, d: Num, emb: Num, head: Num) -> list[Num]:
        inflight = inflight_chunks(lay, rank)
        n_mtp = np.where(head, mtp_layers, 0)
        dense, expert = stage_params(model, lay, layers + n_mtp, emb, head, d)
        dense = dense + n_mtp * mtp.extra_params(model) / lay.tp \
            + np.where(head & (n_mtp > 0), mtp.embedding_copy_params(model, lay.pp), 0) / lay.tp
        w, g, o = model_state_bytes(dense, expert, lay, precision)
        per_layer = (layers - d) * moe["act"] + d * dense_kind["act"]
        none = (layers - d) * moe["none"] + d * dense_kind["none"]
        share = recompute.full_replay_share(layers, 0, lay.v, recompute_method, recompute_layers)
        per_layer = np.where(full, (share * per_layer + (1.0 - share) * none) / group, per_layer) + n_mtp * mtp_act
        # CPU offloading: the layers not offloaded plus the one whose copy is in flight (TE's double buffering)
        n = np.maximum(np.asarray(layers, float), 1.0)
        per_layer = per_layer * np.where(offloaded_layers > 0, np.clip((n - offloaded_layers + 1.0) / n, 0, 1), 1.0)
        act = inflight * per_layer / lay.v + np.where(emb, inflight / lay.v * emb_mask, 0.0)
        # the parts of the stage's parameters (gradients) held beyond this GPU's shard
        rest = dense * (1.0 - 1.0 / lay.shard) + expert * (1.0 - 1.0 / lay.expert_shard)
        has_dense, has_moe = d > 0, layers - d > 0
        zero3 = np.maximum(np.where(has_moe, moe["zero3"], 0), np.where(has_dense, dense_kind["zero3"], 0))
        gathered = np.where(sharded3 & keep_gathered, rest * precision.weights.bytes, zero3)
        grads = np.where(sharded2 & unsharded_grads, rest * precision.gradients.bytes, 0.0)
        ws = np.maximum(np.where(has_moe, moe["ws"], 0), np.where(has_dense, dense_kind["ws"], 0))
        ws = ws * np.where(full, np.clip(np.asarray(layers, float) / lay.v, 1.0, group), 1.0)
        ws = ws + np.where(layers > 0, ring, 0.0)
        return [w, g, o, act, ws + gathered + grads + np.where(head, (1.0 + n_mtp) * logits, 0.0)]

    best = stage(0, lay.first_stage_layers, lay.first_stage_dense, True, single)
    rank = np.zeros(len(lay), np.int64)
    ranks, layers, dense = _middle_candidates(lay, model.dense_layers)
    candidates = [(lay.pp - 1, lay.last_stage_layers, lay.last_stage_dense, single, True, lay.pp > 1)]
    candidates += [(ranks[:, c], layers[:, c], np.maximum(dense[:, c], 0), False, False, ranks[:, c] > 0)
                   for c in range(ranks.shape[1])]
    for r, n, d, emb, head, exists in candidates:
        parts = stage(r, n, d, emb, head)
        more = exists & (sum(parts) > sum(best))
        best = [np.where(more, a, b) for a, b in zip(parts, best, strict=True)]
        rank = np.where(more, r, rank)
    capacity = accelerator.memory_bytes if accelerator is not None else float("inf")
    if isinstance(plan, TrainPlan):  # one plan in, plain numbers out
        return TrainingMemory(*(float(np.asarray(x).reshape(-1)[0]) for x in best), capacity, int(rank[0]),
                              int(lay.pp[0]))
    return TrainingMemory(*best, capacity, rank, lay.pp)


def kv_cache_bytes_per_token(model: ModelSpec, kv_dtype_bytes: float, tp: Num = 1, pp: Num = 1,
                             context_tokens: Num | None = None) -> Num:
    """KV-cache bytes one token takes on one GPU, over the layers of one pipeline stage.

    Per layer: K and V of its KV heads, 2 x kv_heads x head_dim (GQA shrinks it; when tp exceeds the KV heads each
    rank holds one replicated head), or MLA's latent plus RoPE key, kv_lora_rank + qk_rope_head_dim, whole on every
    TP rank (DeepSeek-V2, Sec. 2.1.2: 576 values per token and layer; vLLM caches it as one KV head). A
    sliding-window layer keeps only the last ``sliding_window`` tokens of a sequence: with ``context_tokens`` the
    result is the mean over a sequence that long; without, every layer keeps every token (the bound for an engine
    that does not free a window's old blocks)."""
    per_layer = kv_elems_per_token(model, tp) * kv_dtype_bytes
    # only attention layers cache keys and values: a hybrid's recurrent layers keep a fixed state per sequence
    # instead (:func:`capsim.analytic.mixers.state_bytes_per_sequence`; vLLM V1 gives them a MambaSpec page, not
    # token blocks)
    layers = np.asarray(float(model.attention_layers))
    if context_tokens is not None and model.sliding_layers:
        ctx = np.maximum(np.asarray(context_tokens, float), 1.0)
        kept = np.minimum(ctx, float(model.sliding_window)) / ctx
        layers = model.attention_layers - model.sliding_layers + model.sliding_layers * kept
    return layers / np.asarray(pp, float) * per_layer


@dataclass(frozen=True)
class ServingMemory:
    """Per-GPU serving memory of one replica layout and how many KV-cache tokens fit."""

    weights_bytes: float
    activations_bytes: float  # peak transient of the largest engine step (max_batched_tokens)
    kv_cache_bytes: float  # memory left for the paged KV cache
    kv_bytes_per_token: float
    max_kv_tokens: int  # per replica (vLLM's "# GPU blocks" x block size)
    requested_kv_tokens: int  # what the caller asked to hold (max_batch x context), 0 if not asked
    capacity_bytes: float
    usable_bytes: float  # capacity x gpu_memory_utilization
    state_bytes: float = 0.0  # recurrent states of max_batch sequences (a hybrid's Mamba-2 / GDN layers), reserved

    @property
    def fits(self) -> bool:
        return self.kv_cache_bytes > 0 and self.max_kv_tokens >= max(self.requested_kv_tokens, 1)

    @property
    def total_bytes(self) -> float:
        used_kv = self.kv_bytes_per_token * max(self.requested_kv_tokens, 0)
        return self.weights_bytes + self.activations_bytes + self.state_bytes + used_kv

    @property
    def shortfall_bytes(self) -> float:
        return max(self.total_bytes - self.usable_bytes, 0.0)

    def to_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out.update(fits=self.fits, total_bytes=self.total_bytes, shortfall_bytes=self.shortfall_bytes)
        return out


def profile_sampler_bytes(model: ModelSpec, plan: ServePlan, per_logit: tuple[float, float]) -> float:
    """Bytes allocated at the sampler's peak of an engine's memory profile run, whose ``plan.max_batch`` dummy
    prompts share ``plan.max_batched_tokens`` tokens and are each sampled once (vLLM v0.2.3
    vllm/worker/model_runner.py profile_run L295-321). ``per_logit``: what the engine's sampler holds per row x
    vocabulary element, (tensors in the serving dtype, further bytes) (engines.yaml profile_sampler). With TP the
    logits are gathered whole on every rank (vllm/model_executor/layers/sampler.py v0.2.3 _get_logits L101-111);
    the vocabulary's padding to a multiple of 64 (< 64 columns) is not counted."""
    d = plan.dtype.bytes
    output = plan.max_batched_tokens * model.hidden * d  # the model's output, held while it samples (L279-291)
    rows = plan.max_batch * model.hidden * d  # the last token of each prompt (sampler.py _prune_hidden_states)
    return output + rows + plan.max_batch * model.vocab * (per_logit[0] * d + per_logit[1])


def serving_memory(model: ModelSpec, plan: ServePlan, accelerator: Accelerator,
                   context_tokens: int = 0, profile_sampler: tuple[float, float] | None = None) -> ServingMemory:
    """Weights, activation peak and KV-cache capacity per GPU, as vLLM sizes its cache.

    vLLM profiles a forward pass of max_num_batched_tokens and gives the KV cache what is left of
    gpu_memory_utilization x capacity after weights and that peak (vLLM docs, "gpu_memory_utilization").
    With ``context_tokens``, a token's KV bytes are the mean over sequences that long (sliding-window layers keep
    at most their window). With ``profile_sampler`` (the engine's, engines.yaml) the peak is the larger of the
    forward's and the sampler's (:func:`profile_sampler_bytes`), which run one after the other; without, the
    forward's plus the fp32 logits.
    """
    pc = param_counts(model)
    weights = pc.total * plan.weight_dtype.bytes / plan.gpus_per_replica
    if plan.dp_attention:  # what every token uses (attention, norms, router, shared experts) on every GPU
        dense = pc.dense_per_layer * pc.layers * plan.weight_dtype.bytes / plan.pp
        weights += dense - dense / plan.tp
    n = plan.max_batched_tokens
    live = serving_layer_ops(model, StepBatch.prefill(1, n), plan.tp, plan.dtype, plan.weight_dtype)
    biggest = max(float(np.max(op.bytes_written)) for op in live)  # largest intermediate tensor
    forward = 2 * biggest + 2 * n * model.hidden * plan.dtype.bytes
    if profile_sampler is not None:
        activations = max(forward, profile_sampler_bytes(model, plan, profile_sampler))
    else:
        logits = max(float(np.max(op.bytes_written)) for op in head_ops(model, n, plan.tp, plan.dtype,
                                                                          logits_tokens=plan.max_batch))
        activations = forward + logits
    usable = accelerator.memory_bytes * plan.gpu_memory_utilization
    # A hybrid's recurrent layers: one state per running sequence, in the model dtype (vLLM mamba_cache_dtype and
    # mamba_ssm_cache_dtype "auto", MambaStateDtypeCalculator, vllm/model_executor/layers/mamba/mamba_utils.py
    # @02d71083), held for max_num_seqs sequences (vLLM V1 allocates each request's state as one MambaSpec page of
    # sum(prod(shape)) x dtype bytes, vllm/v1/kv_cache_interface.py @001cabc1, from the same pool as the KV blocks;
    # at a full batch that is this reserve)
    # (attention data parallel: each GPU holds every head of its 1/tp of the sequences)
    state = float(state_bytes_per_sequence(model, plan.dtype.bytes, 1 if plan.dp_attention else plan.tp, plan.pp)) \
        * plan.max_batch / (plan.tp if plan.dp_attention else 1) if model.is_hybrid else 0.0
    if model.attention_layers == 0:
        raise SpecError("model.mixers", f"{model.name} has no attention layer, so no paged KV cache to size",
                        "serving a model of recurrent layers only is not modelled; give a hybrid with attention")
    kv_budget = usable - weights - activations - state
    # Attention data parallel: each GPU keeps every KV head of its own sequences (so the replica holds tp x its
    # tokens); else the KV heads are split by TP.
    per_token = float(kv_cache_bytes_per_token(model, plan.kv_cache_dtype.bytes, 1 if plan.dp_attention else plan.tp,
                                               plan.pp, context_tokens or None))
    blocks = max(int(kv_budget // (per_token * plan.block_size)), 0) * (plan.tp if plan.dp_attention else 1)
    return ServingMemory(weights, activations, kv_budget, per_token, blocks * plan.block_size,
                         plan.max_batch * context_tokens if context_tokens else 0, accelerator.memory_bytes, usable,
                         state)
