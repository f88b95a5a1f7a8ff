"""The op list of one transformer layer: what each kernel computes, reads, writes and keeps for backward.

Training, prefill and decode all price this same list (STYLE.md #4). Every numeric field may be a numpy
array, so one call describes a whole sweep of layouts. The conventions (GEMM shapes, attention shapes, saved
activations as in Korthikanti et al. 2022, Sec. 4.1: 34 s b h + 5 a s^2 b per GPT layer without parallelism, and
each op's ``share`` of the stack for models whose layers differ) are in :mod:`capsim.analytic.primitives`; the
attention variants (GQA, sliding windows, MLA) in :mod:`capsim.analytic.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from capsim._types import Num
from capsim.analytic.attention import (
    kv_write_op,
    layer_shares,
    projection_ops,
    serving_kernels,
    training_kernel,
)
from capsim.analytic.mixers import mixer_ops
from capsim.analytic.moe import mlp_act, moe_ops
from capsim.analytic.primitives import (
    MATMUL_KINDS,
    AttentionImpl,
    Op,
    OpKind,
    Phase,
    Saved,
    StepBatch,
    backward_ops,
    elementwise,
    gemm,
    norm,
    total,
)
from capsim.specs.engine import DecodeKvReads
from capsim.specs.model import Mlp, ModelSpec
from capsim.specs.precision import DType, Precision


def tag_variants(ops: list[Op], model: ModelSpec) -> list[Op]:
    """Name the variant of each norm (layernorm/rmsnorm) and MLP activation (gelu/swiglu...) op, so a calibration
    that timed the variants apart can price them apart (``Perf.memory_kind``)."""
    impl = {OpKind.NORM: model.norm.value}
    return [replace(o, impl=model.mlp.value) if o.name == "mlp_act" else
            replace(o, impl=impl[o.kind]) if o.kind in impl else o for o in ops]


@dataclass(frozen=True)
class LayerShape:
    """Per-GPU sizes of one layer for a given parallel layout (all fields broadcast)."""

    tokens: Num  # token rows through the GEMMs (b * s / cp for training)
    sequences: Num
    tp: Num = 1
    ep: Num = 1
    sp: Num = False
    heads: Num = 1  # query heads on this GPU
    kv_heads: Num = 1  # KV heads on this GPU (replicated when tp > kv heads)
    etp: Num = 1  # tensor-parallel width of the routed experts (Megatron-Core's expert_tensor_parallel_size)
    busiest: Num = 1.0  # the busiest EP rank's routed copies over the mean (capsim.analytic.moe.busiest_rank)


def layer_shape(model: ModelSpec, tokens: Num, sequences: Num, tp: Num, ep: Num, sp: Num,
                etp: Num | None = None) -> LayerShape:
    """Per-GPU sizes of one layer: heads split by TP (KV heads replicated when TP exceeds them); the routed experts
    split by ``etp`` (None: by tp, Megatron-Core's default, model_parallel_config.py)."""
    tp = np.asarray(tp, float)
    return LayerShape(tokens, sequences, tp, np.asarray(ep, float), sp, model.heads / tp,
                      np.maximum(model.kv_heads / tp, 1.0), tp if etp is None else np.asarray(etp, float))


def _ffn(model: ModelSpec, rows: Num, width: int, t: Num, dt: DType, ab: float, wb: float, count: Num,
         share: float) -> list[Op]:
    """One FFN (or ``count`` experts' FFNs) over ``rows`` tokens each, its inner width split by TP."""
    h, gated = model.hidden, model.mlp.matrices == 3
    f = width / t
    up_cols = (2 if gated else 1) * f
    return [gemm("mlp_up", rows, up_cols, h, dt, ab, wb, ((Saved.SP, rows * h * ab),), count, share),
            mlp_act(model, rows, f, dt, ab, count, share),
            gemm("mlp_down", rows, h, f, dt, ab, wb, ((Saved.TP, rows * f * ab),), count, share)]


def _mlp_ops(model: ModelSpec, s: LayerShape, dt: DType, ab: float, wb: float, training: bool = False,
             moe_share: float | None = None, touched: Num | None = None) -> list[Op]:
    """The FFN part of a layer: dense, or an MoE block; for a model with both kinds of layers, each op weighted
    by its kind's share of the stack (``moe_share`` overrides it: 1 prices an MoE layer, 0 a dense one).
    ``touched``: the routed experts a serving step runs on this GPU (active_experts / ep), else every local expert
    runs."""
    n, t = s.tokens, s.tp
    if not model.is_moe:
        return _ffn(model, n, model.ffn_hidden, t, dt, ab, wb, 1, 1.0)
    moe = model.moe_layers / model.layers if moe_share is None else moe_share
    ops = _ffn(model, n, model.dense_ffn, t, dt, ab, wb, 1, 1.0 - moe) if moe < 1 else []
    return ops + (moe_ops(model, n, t, s.etp, s.ep, s.sp, dt, ab, wb, moe, training, touched, s.busiest) if moe > 0 else [])


def _attention_share(model: ModelSpec, ops: list[Op]) -> list[Op]:
    """Attention's ops weighted by the attention layers' share of a hybrid stack (unchanged otherwise)."""
    if not model.is_hybrid:
        return ops
    a = model.attention_layers / model.layers
    return [replace(o, share=o.share * a) for o in ops]


def _output_gate(model: ModelSpec, n: Num, heads: Num, dtype: DType, keep: bool) -> list[Op]:
    """Qwen3-Next's gated attention: attn * sigmoid(gate) before o_proj (modeling_qwen3_next.py Qwen3NextAttention
    forward), one pass reading both and writing the product."""
    if not model.attn_output_gate:
        return []
    elems = n * heads * model.v_dim
    return [elementwise("attn_gate", elems, dtype, 2, 1, 5, ((Saved.TP, 2 * elems * dtype.bytes),) if keep else ())]


def _post_norm(model: ModelSpec, name: str, elems: Num, dtype: DType, keep: bool) -> list[Op]:
    """Gemma 2/3's norm on a sub-layer's output before the residual add (a 'sandwich' around each sub-layer)."""
    if not model.sandwich_norm:
        return []
    return [norm(name, elems, dtype, ((Saved.SP, dtype.bytes * elems),) if keep else ())]


def forward_layer_ops(model: ModelSpec, s: LayerShape, dtype: DType = DType.BF16,
                      attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False,
                      cross_attention: bool = False, causal: bool = True, moe_share: float | None = None
                      ) -> list[Op]:
    """Forward ops of one layer over ``s.tokens`` rows of full-length sequences (training / encoder); for an MoE
    model with dense layers, the mean layer of the stack, or with ``moe_share`` 1 (0) an MoE (a dense) layer."""
    h, d, v, n = model.hidden, model.head_dim, model.v_dim, s.tokens
    ab = wb = dtype.bytes
    seq = n / s.sequences
    hidden_elems = n * h  # a full [s, b, h] activation (divided by t under SP in saved_bytes)
    mask = n * h * (1.0 if dropout else 0.0)
    kv_heads = s.heads if model.is_mla else s.kv_heads  # MLA rebuilds K and V for every query head
    ops = [norm("norm_attn", hidden_elems, dtype, ((Saved.SP, ab * hidden_elems),))]
    ops += _attention_share(model, projection_ops(model, n, s.heads, s.kv_heads, dtype, ab, wb))
    for window, share in layer_shares(model):  # shares of the stack: a hybrid's attention layers only
        ops += training_kernel(s.sequences, s.heads, kv_heads, seq, seq, d, dtype, attention, dropout, causal, v,
                               window, share)
    ops += _attention_share(model, _output_gate(model, n, s.heads, dtype, True) + [
        gemm("attn_out", n, h, s.heads * v, dtype, ab, wb, ((Saved.TP, n * s.heads * v * ab),), 1)])
    ops += mixer_ops(model, n, s.sequences, s.tp, dtype, ab, wb, True)
    ops += _post_norm(model, "norm_attn_post", hidden_elems, dtype, True)
    ops.append(elementwise("residual_attn", hidden_elems, dtype, 2, 1, 1, ((Saved.SP, mask),),
                           extra_write_bytes=mask))
    if cross_attention:
        qd, kvd = s.heads * d, s.kv_heads * d
        ops.append(norm("norm_cross", hidden_elems, dtype, ((Saved.SP, ab * hidden_elems),)))
        ops.append(gemm("cross_qkv", n, qd + 2 * kvd, h, dtype, ab, wb, ((Saved.SP, ab * hidden_elems),), 1))
        ops += [replace(o, name="cross_" + o.name) for o in
                training_kernel(s.sequences, s.heads, s.kv_heads, seq, seq, d, dtype, attention, dropout, False)]
        ops.append(gemm("cross_out", n, h, qd, dtype, ab, wb, ((Saved.TP, n * qd * ab),), 1))
        ops.append(elementwise("residual_cross", hidden_elems, dtype, 2, 1, 1, ((Saved.SP, mask),),
                               extra_write_bytes=mask))
    ops.append(norm("norm_mlp", hidden_elems, dtype, ((Saved.SP, ab * hidden_elems),)))
    ops += _mlp_ops(model, s, dtype, ab, wb, training=True, moe_share=moe_share)
    ops += _post_norm(model, "norm_mlp_post", hidden_elems, dtype, True)
    ops.append(elementwise("residual_mlp", hidden_elems, dtype, 2, 1, 1, ((Saved.SP, mask),),
                           extra_write_bytes=mask))
    return tag_variants(ops, model)


def attention_ops(sequences: Num, heads: Num, kv_heads: Num, q_len: Num, kv_len: Num, head_dim: int,
                  dtype: DType, impl: AttentionImpl, dropout: bool, causal: bool, tp: Num = 1) -> list[Op]:
    """The attention core for full sequences of standard multi-head attention (training and single-shot prefill);
    :func:`capsim.analytic.attention.training_kernel` adds value dims, windows and layer shares."""
    return training_kernel(sequences, heads, kv_heads, q_len, kv_len, head_dim, dtype, impl, dropout, causal)


def active_experts(model: ModelSpec, tokens: Num) -> Num:
    """Expected distinct routed experts a step of ``tokens`` tokens touches: each token picks top_k of the E
    experts, so an expert is missed by one token with probability 1 - k/E and by all of them with (1 - k/E)^N
    (routing balanced, as the op list assumes): E (1 - (1 - k/E)^N)."""
    e, k = float(model.experts), float(model.top_k)
    return e * (1.0 - (1.0 - k / e) ** np.asarray(tokens, float))


def serving_layer_ops(model: ModelSpec, batch: StepBatch, tp: Num = 1, dtype: DType = DType.BF16,
                      weight_dtype: DType | None = None, kv_dtype: DType | None = None,
                      compute_dtype: DType | None = None, phase: Phase = Phase.PREFILL,
                      kv_reads: DecodeKvReads = DecodeKvReads.PER_KV_HEAD) -> list[Op]:
    """Ops of one decoder layer for one serving engine step (prefill chunks and decode tokens together).

    GEMMs scale with the step's new tokens; attention with each sequence's context (``batch``). Weight-only
    quantization shrinks the weight bytes; weight+activation quantization also changes the math format. ``phase``
    picks MLA's form (decode absorbs its up-projections; prefill rebuilds K and V); other models ignore it.
    ``kv_reads``: how the engine's decode attention kernel reads a GQA group's cache (the bytes it moves).
    """
    wb = (weight_dtype or dtype).bytes
    kv_dt = kv_dtype or dtype
    cdt = compute_dtype or dtype
    ab = dtype.bytes
    s = layer_shape(model, batch.new_tokens, batch.sequences, tp, 1, False)
    h, n = model.hidden, batch.new_tokens
    ops = [norm("norm_attn", n * h, dtype)]
    ops += _attention_share(model, projection_ops(model, n, s.heads, s.kv_heads, dtype, ab, wb, serving=True,
                                                  gemm_dtype=cdt) + [kv_write_op(model, n, tp, dtype, kv_dt)])
    ops += serving_kernels(model, batch, tp, phase, dtype, kv_dt, cdt, wb, kv_reads)  # at layer_shares' shares
    ops += _attention_share(model, _output_gate(model, n, s.heads, dtype, False)
                            + [gemm("attn_out", n, h, s.heads * model.v_dim, cdt, ab, wb)])
    ops += mixer_ops(model, n, batch.sequences, tp, dtype, ab, wb, False, cdt)
    ops += _post_norm(model, "norm_attn_post", n * h, dtype, False)
    ops.append(elementwise("residual_attn", n * h, dtype, 2, 1, 1))
    ops.append(norm("norm_mlp", n * h, dtype))
    # A serving step runs only the experts its tokens touch (the only expert weights it reads).
    mlp = _mlp_ops(model, s, cdt, ab, wb, touched=active_experts(model, n) if model.is_moe else None)
    ops += [replace(o, saved=()) for o in mlp]
    ops += _post_norm(model, "norm_mlp_post", n * h, dtype, False)
    ops.append(elementwise("residual_mlp", n * h, dtype, 2, 1, 1))
    return tag_variants(ops, model)


def head_ops(model: ModelSpec, tokens: Num, tp: Num = 1, dtype: DType = DType.BF16,
             logits_tokens: Num | None = None, weight_dtype: DType | None = None) -> list[Op]:
    """Ops outside the layers: embedding lookup, final norm, LM head (vocab-parallel over tp) and loss.

    ``logits_tokens`` is how many positions need logits (all for training, one per sequence when serving).
    Gemma scales the looked-up embeddings by sqrt(hidden) (one more pass over them, counted in the embedding op)
    and soft-caps the logits with tanh (Gemma 2: ``logits = cap * tanh(logits / cap)``, one pass over them).
    """
    h, v = model.hidden, model.vocab
    ab, wb = dtype.bytes, (weight_dtype or dtype).bytes
    rows = tokens if logits_tokens is None else logits_tokens
    cols = v / np.asarray(tp, float)
    scale = 1.0 if model.embedding_scale else 0.0
    ops = [
        Op("embedding", OpKind.ELEMENTWISE, scale * tokens * h, tokens * h * (wb + scale * ab),
           tokens * h * ab * (1 + scale), (tokens * h,), dtype),
        norm("final_norm", tokens * h, dtype),
        gemm("lm_head", rows, cols, h, dtype, ab, wb),
    ]
    if model.logit_softcap:
        ops.append(elementwise("logit_softcap", rows * cols, dtype, 1, 1, 3))
    # Vocab-parallel cross-entropy in fp32: read the logits, write the loss's softmax (Megatron).
    ops.append(Op("logits_softmax", OpKind.ELEMENTWISE, 5.0 * rows * cols, rows * cols * ab, rows * cols * 4.0,
                  (rows * cols,), DType.FP32))
    return tag_variants(ops, model)


def training_layer_ops(model: ModelSpec, micro_batch: Num, seq_len: Num, tp: Num = 1, sp: Num = False,
                       cp: Num = 1, ep: Num = 1, dtype: DType = DType.BF16,
                       attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False,
                       phase: Phase = Phase.FORWARD, cross_attention: bool = False) -> list[Op]:
    """Forward or backward ops of one layer for one micro-batch of ``micro_batch`` sequences."""
    tokens = np.asarray(micro_batch, float) * np.asarray(seq_len, float) / np.asarray(cp, float)
    s = layer_shape(model, tokens, micro_batch, tp, ep, sp)
    fwd = forward_layer_ops(model, s, dtype, attention, dropout, cross_attention, model.causal)
    return fwd if phase is Phase.FORWARD else backward_ops(fwd)


def optimizer_ops(params: Num, precision: Precision) -> list[Op]:
    """Adam over ``params`` local parameters: a memory-bound pass (Kingma & Ba 2015, Alg. 1).

    Reads each gradient, the master (or only) weights and both moments; writes the weights and moments back,
    and with mixed precision also the 16-bit working copy (as Megatron-LM's and PyTorch's fused Adam do).
    """
    p = np.asarray(params, float)
    master = precision.master_weights.bytes if precision.master_weights is not None else precision.weights.bytes
    moments = 2 * precision.optimizer_states.bytes
    copy = precision.weights.bytes if precision.master_weights is not None else 0.0
    read = p * (precision.gradients.bytes + master + moments)
    written = p * (master + moments + copy)
    return [Op("adam", OpKind.ELEMENTWISE, 12.0 * p, read, written, (p,), DType.FP32, impl="adam")]


__all__ = ["MATMUL_KINDS", "AttentionImpl", "LayerShape", "Mlp", "Op", "OpKind", "Phase", "Saved", "StepBatch",
           "attention_ops", "backward_ops", "elementwise", "forward_layer_ops", "gemm", "head_ops", "layer_shape",
           "optimizer_ops", "serving_layer_ops", "tag_variants", "total", "training_layer_ops"]
