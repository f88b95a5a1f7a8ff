"""The op list of one transformer layer: what each kernel computes, reads, writes and keeps for backward.

Training, prefill and decode all price this same list (STYLE.md #4). Every numeric field may be a numpy
array, so one call describes a whole sweep of layouts. Conventions:
- a GEMM is C[m, n] = A[m, k] @ B[k, n]; ``flops = 2 m n k``; its shape is ``(m, n, k)``;
- attention's shape is ``(sequences, heads per rank, query tokens, key tokens, head_dim)``, token counts summed
  over the sequences, and its FLOPs are
  the two matmuls QK^T and PV that the kernel actually performs (an unfused kernel computes the full square);
- ``saved_bytes`` is what the forward pass keeps for the backward pass, accounted as in Korthikanti et al.
  2022, Sec. 4.1 (34 s b h + 5 a s^2 b per GPT layer without parallelism).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.specs.model import Mlp, ModelSpec, Position
from capsim.specs.precision import DType, Precision


class OpKind(StrEnum):
    GEMM = "gemm"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    NORM = "norm"


class Phase(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"
    PREFILL = "prefill"
    DECODE = "decode"


class AttentionImpl(StrEnum):
    FLASH = "flash"  # one fused kernel, no s^2 tensor in memory (Dao et al. 2022)
    UNFUSED = "unfused"  # bmm + fused scale-mask-softmax + dropout + bmm (Megatron-LM 2020-2022)


class Saved(StrEnum):
    """How a saved activation is sharded (Korthikanti et al. 2022, Table 2)."""

    TP = "tp"  # inside the tensor-parallel region: divided by t
    SP = "sp"  # outside it (norms, dropout, block inputs): divided by t only with sequence parallelism
    CORE = "core"  # attention's s^2 tensors: divided by t, dropped by selective recomputation


@dataclass(frozen=True)
class Op:
    """One kernel of a layer, as seen by one GPU."""

    name: str
    kind: OpKind
    flops: Num
    bytes_read: Num
    bytes_written: Num
    shape: tuple[Num, ...]
    dtype: DType = DType.BF16  # format of the math (GEMM/attention) or of the data (memory-bound ops)
    count: Num = 1  # identical instances (routed experts held by this GPU)
    saved: tuple[tuple[Saved, Num], ...] = ()  # activations kept for backward, by sharding class
    causal: bool = True
    impl: str = ""  # which variant of a memory-bound op (the model's norm or MLP activation); "" = generic

    @property
    def bytes(self) -> Num:
        return self.bytes_read + self.bytes_written

    @property
    def total_flops(self) -> Num:
        return self.flops * self.count

    def saved_bytes(self, tp: Num = 1, sp: Num = False, selective: Num = False) -> Num:
        """Bytes kept for backward. ``saved`` entries already carry the 1/t of TP and CORE tensors;
        SP tensors are stored whole and divided by ``tp`` here when sequence parallelism is on."""
        out: Num = 0.0
        for kind, size in self.saved:
            if kind is Saved.SP:
                out = out + np.where(sp, size / tp, size)
            elif kind is Saved.CORE:
                out = out + np.where(selective, 0.0, size)
            else:
                out = out + size
        return out * self.count


@dataclass(frozen=True)
class StepBatch:
    """Aggregate shape of the sequences in one serving engine step (vectorisable over steps).

    ``attention_pairs`` counts (query, key) pairs the causal kernel visits: a chunk of q new tokens after c
    cached ones visits q*c + q*(q+1)/2 pairs.
    """

    sequences: Num  # sequences in the step
    new_tokens: Num  # tokens whose activations are computed (prefill chunks + one per decoding sequence)
    attention_pairs: Num  # sum over sequences of causal (query, key) pairs
    kv_tokens: Num  # sum over sequences of keys attended to (cached + new): KV-cache tokens read

    @classmethod
    def prefill(cls, batch: Num, prompt_tokens: Num, cached_tokens: Num = 0) -> StepBatch:
        q, c = np.asarray(prompt_tokens, float), np.asarray(cached_tokens, float)
        return cls(batch, batch * q, batch * (q * c + q * (q + 1) / 2), batch * (c + q))

    @classmethod
    def decode(cls, batch: Num, context_tokens: Num) -> StepBatch:
        """``batch`` sequences each generating one token after ``context_tokens`` (prompt + generated)."""
        ctx = np.asarray(context_tokens, float)
        return cls(batch, batch, batch * (ctx + 1), batch * (ctx + 1))


def gemm(name: str, m: Num, n: Num, k: Num, dtype: DType, act_bytes: float, weight_bytes: float,
         saved: tuple[tuple[Saved, Num], ...] = (), count: Num = 1) -> Op:
    """A linear layer: activations [m, k] times weights [k, n]."""
    return Op(name, OpKind.GEMM, 2.0 * m * n * k, m * k * act_bytes + k * n * weight_bytes, m * n * act_bytes,
              (m, n, k), dtype, count, saved)


def tag_variants(ops: list[Op], model: ModelSpec) -> list[Op]:
    """Name the variant of each norm (layernorm/rmsnorm) and MLP activation (gelu/swiglu...) op, so a calibration
    that timed the variants apart can price them apart (``Perf.memory_kind``)."""
    impl = {OpKind.NORM: model.norm.value}
    return [replace(o, impl=model.mlp.value) if o.name == "mlp_act" else
            replace(o, impl=impl[o.kind]) if o.kind in impl else o for o in ops]


def elementwise(name: str, elements: Num, dtype: DType, reads: float = 1.0, writes: float = 1.0,
                flops_per_element: float = 1.0, saved: tuple[tuple[Saved, Num], ...] = (),
                kind: OpKind = OpKind.ELEMENTWISE, extra_write_bytes: Num = 0.0) -> Op:
    """A memory-bound op over ``elements`` values, reading ``reads`` and writing ``writes`` tensors of that size."""
    b = dtype.bytes
    return Op(name, kind, flops_per_element * elements, reads * elements * b,
              writes * elements * b + extra_write_bytes, (elements,), dtype, 1, saved)


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


def layer_shape(model: ModelSpec, tokens: Num, sequences: Num, tp: Num, ep: Num, sp: Num) -> LayerShape:
    """Per-GPU sizes of one layer: heads split by TP (KV heads replicated when TP exceeds them)."""
    tp = np.asarray(tp, float)
    return LayerShape(tokens, sequences, tp, np.asarray(ep, float), sp, model.heads / tp,
                      np.maximum(model.kv_heads / tp, 1.0))


def _mlp_ops(model: ModelSpec, s: LayerShape, dt: DType, ab: float, wb: float,
             touched: Num | None = None) -> list[Op]:
    """The MLP (or MoE) ops of one layer; ``touched``: the routed experts a serving step runs (ep = 1), else every
    local expert runs."""
    h, f, t = model.hidden, model.ffn_hidden, s.tp
    n, gated = s.tokens, model.mlp.matrices == 3
    ops: list[Op] = []
    if model.is_moe:
        # Router, then each GPU runs its experts/ep experts on the tokens routed to them (balanced load).
        ops.append(gemm("router", n, model.experts, h, dt, ab, wb))
        if touched is None:
            count = model.experts / s.ep
            rows = n * model.top_k * s.ep / model.experts  # tokens per local expert after the all-to-all
        else:
            count = np.maximum(touched, 1e-30)
            rows = n * model.top_k / count
    else:
        rows, count = n, 1
    up_cols = (2 if gated else 1) * f / t
    ops.append(gemm("mlp_up", rows, up_cols, h, dt, ab, wb, ((Saved.SP, rows * h * ab),), count))
    act_saved = (Saved.TP, (2 if gated else 1) * rows * f / t * ab)
    ops.append(Op("mlp_act", OpKind.ELEMENTWISE, 8.0 * rows * f / t, up_cols * rows * ab, rows * f / t * ab,
                  (rows * f / t,), dt, count, (act_saved,)))
    ops.append(gemm("mlp_down", rows, h, f / t, dt, ab, wb, ((Saved.TP, rows * f / t * ab),), count))
    if model.shared_experts:
        cols = (2 if gated else 1) * f * model.shared_experts / t
        ops.append(gemm("shared_up", n, cols, h, dt, ab, wb, (), 1))
        ops.append(gemm("shared_down", n, h, f * model.shared_experts / t, dt, ab, wb,
                        ((Saved.TP, 2 * n * f * model.shared_experts / t * ab),), 1))
    return ops


def forward_layer_ops(model: ModelSpec, s: LayerShape, dtype: DType = DType.BF16,
                      attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False,
                      cross_attention: bool = False, causal: bool = True) -> list[Op]:
    """Forward ops of one layer over ``s.tokens`` rows of full-length sequences (training / encoder)."""
    h, d, t, n = model.hidden, model.head_dim, s.tp, s.tokens
    ab = wb = dtype.bytes
    seq = n / s.sequences
    qd, kvd = s.heads * d, s.kv_heads * d
    hidden_elems = n * h  # a full [s, b, h] activation (divided by t under SP in saved_bytes)
    mask = n * h * (1.0 if dropout else 0.0)
    ops = [elementwise("norm_attn", hidden_elems, dtype, 1, 1, 5, ((Saved.SP, ab * hidden_elems),),
                       OpKind.NORM)]
    ops.append(gemm("qkv", n, qd + 2 * kvd, h, dtype, ab, wb, ((Saved.SP, ab * hidden_elems),), 1))
    if model.position is Position.ROPE:
        ops.append(elementwise("rope", n * (qd + kvd), dtype, 1, 1, 3))
    ops += attention_ops(s.sequences, s.heads, s.kv_heads, seq, seq, d, dtype, attention, dropout, causal, t)
    ops.append(gemm("attn_out", n, h, qd, dtype, ab, wb, ((Saved.TP, n * qd * ab),), 1))
    ops.append(elementwise("residual_attn", hidden_elems, dtype, 2, 1, 1, ((Saved.SP, mask),),
                           extra_write_bytes=mask))
    if cross_attention:
        ops.append(elementwise("norm_cross", hidden_elems, dtype, 1, 1, 5, ((Saved.SP, ab * hidden_elems),),
                               OpKind.NORM))
        ops.append(gemm("cross_qkv", n, qd + 2 * kvd, h, dtype, ab, wb, ((Saved.SP, ab * hidden_elems),), 1))
        ops += [replace(o, name="cross_" + o.name) for o in
                attention_ops(s.sequences, s.heads, s.kv_heads, seq, seq, d, dtype, attention, dropout, False, t)]
        ops.append(gemm("cross_out", n, h, qd, dtype, ab, wb, ((Saved.TP, n * qd * ab),), 1))
        ops.append(elementwise("residual_cross", hidden_elems, dtype, 2, 1, 1, ((Saved.SP, mask),),
                               extra_write_bytes=mask))
    ops.append(elementwise("norm_mlp", hidden_elems, dtype, 1, 1, 5, ((Saved.SP, ab * hidden_elems),),
                           OpKind.NORM))
    ops += _mlp_ops(model, s, dtype, ab, wb)
    ops.append(elementwise("residual_mlp", hidden_elems, dtype, 2, 1, 1, ((Saved.SP, mask),),
                           extra_write_bytes=mask))
    return tag_variants(ops, model)


def attention_ops(sequences: Num, heads: Num, kv_heads: Num, q_len: Num, kv_len: Num, head_dim: int,
                  dtype: DType, impl: AttentionImpl, dropout: bool, causal: bool, tp: Num = 1) -> list[Op]:
    """The attention core for full sequences (training and single-shot prefill)."""
    b, a, d = sequences, heads, head_dim
    ab = dtype.bytes
    q_bytes = b * q_len * a * d * ab
    kv_bytes = 2 * b * kv_len * kv_heads * d * ab
    qk_saved = ((Saved.TP, q_bytes + kv_bytes),)  # Q, K and V (Korthikanti: 4sbh for QK^T + 2sbh for V)
    if impl is AttentionImpl.FLASH:
        pairs = b * (q_len * (q_len + 1) / 2 if causal else q_len * kv_len)
        return [Op("attention", OpKind.ATTENTION, 4.0 * pairs * a * d, q_bytes + kv_bytes, q_bytes,
                   (b, a, b * q_len, b * kv_len, d), dtype, 1, qk_saved, causal)]
    # Unfused (Megatron-LM): one (q x d) @ (d x kv) product per sequence and head, the full square kept.
    batch, square = b * a, q_len * kv_len
    scores = batch * square
    ops = [
        Op("attn_scores", OpKind.GEMM, 2.0 * square * d, (q_len + kv_len) * d * ab, square * ab,
           (q_len, kv_len, d), dtype, batch, ((Saved.TP, (q_bytes + kv_bytes) / batch),), causal),
        elementwise("softmax", scores, dtype, 1, 1, 5, ((Saved.CORE, scores * ab),)),
    ]
    if dropout:  # mask (1 byte) and dropped probabilities kept for backward
        ops.append(elementwise("attn_dropout", scores, dtype, 1, 1, 1, ((Saved.CORE, scores * (1 + ab)),),
                               extra_write_bytes=scores))
    ops.append(Op("attn_context", OpKind.GEMM, 2.0 * square * d, (square + kv_len * d) * ab, q_len * d * ab,
                  (q_len, d, kv_len), dtype, batch, (), causal))
    return ops


def backward_ops(forward: Iterable[Op]) -> list[Op]:
    """The backward pass of forward ops, in reverse order.

    A GEMM (m, n, k) becomes its data-gradient GEMM (m, k, n) and weight-gradient GEMM (k, n, m), each with
    the forward FLOPs. Flash attention's backward recomputes QK^T: 5 matmuls against the forward's 2
    (Dao 2023, FlashAttention-2, Sec. 3.1.2). A memory-bound op y = f(x) reads dy and x and writes dx.
    """
    out: list[Op] = []
    for op in reversed(list(forward)):
        if op.kind is OpKind.GEMM:
            m, n, k = op.shape
            ab = op.bytes_written / np.maximum(m * n, 1e-30)
            out.append(replace(op, name=op.name + ".dgrad", shape=(m, k, n), bytes_read=m * n * ab + op.bytes_read
                               - m * k * ab, bytes_written=m * k * ab, saved=()))
            out.append(replace(op, name=op.name + ".wgrad", shape=(k, n, m), bytes_read=m * n * ab + m * k * ab,
                               bytes_written=op.bytes_read - m * k * ab, saved=()))
        elif op.kind is OpKind.ATTENTION:
            out.append(replace(op, name=op.name + ".bwd", flops=2.5 * op.flops,
                               bytes_read=op.bytes_read + 2 * op.bytes_written,
                               bytes_written=op.bytes_read, saved=()))
        else:
            out.append(replace(op, name=op.name + ".bwd", bytes_read=op.bytes_read + op.bytes_written,
                               bytes_written=op.bytes_read, saved=()))
    return out


def active_experts(model: ModelSpec, tokens: Num) -> Num:
    """Expected distinct routed experts a step of ``tokens`` tokens touches: each token picks top_k of the E
    experts, so an expert is missed by one token with probability 1 - k/E and by all of them with (1 - k/E)^N
    (routing balanced, as the op list assumes): E (1 - (1 - k/E)^N)."""
    e, k = float(model.experts), float(model.top_k)
    return e * (1.0 - (1.0 - k / e) ** np.asarray(tokens, float))


def serving_layer_ops(model: ModelSpec, batch: StepBatch, tp: Num = 1, dtype: DType = DType.BF16,
                      weight_dtype: DType | None = None, kv_dtype: DType | None = None,
                      compute_dtype: DType | None = None) -> list[Op]:
    """Ops of one decoder layer for one serving engine step (prefill chunks and decode tokens together).

    GEMMs scale with the step's new tokens; attention with each sequence's context (``batch``). Weight-only
    quantization shrinks the weight bytes; weight+activation quantization also changes the math format.
    """
    wb = (weight_dtype or dtype).bytes
    kvb = (kv_dtype or dtype).bytes
    cdt = compute_dtype or dtype
    ab = dtype.bytes
    s = layer_shape(model, batch.new_tokens, batch.sequences, tp, 1, False)
    h, d, n = model.hidden, model.head_dim, batch.new_tokens
    qd, kvd = s.heads * d, s.kv_heads * d
    ops = [elementwise("norm_attn", n * h, dtype, 1, 1, 5, kind=OpKind.NORM),
           gemm("qkv", n, qd + 2 * kvd, h, cdt, ab, wb)]
    if model.position is Position.ROPE:
        ops.append(elementwise("rope", n * (qd + kvd), dtype, 1, 1, 3))
    ops.append(Op("kv_cache_write", OpKind.ELEMENTWISE, 0.0, 2 * n * kvd * ab, 2 * n * kvd * kvb, (n * kvd,), dtype,
                  impl="copy"))
    kv_read = 2 * batch.kv_tokens * kvd * kvb
    ops.append(Op("attention", OpKind.ATTENTION, 4.0 * batch.attention_pairs * qd, n * qd * ab + kv_read,
                  n * qd * ab, (batch.sequences, s.heads, n, batch.kv_tokens, d), dtype))
    ops.append(gemm("attn_out", n, h, qd, cdt, ab, wb))
    ops.append(elementwise("residual_attn", n * h, dtype, 2, 1, 1))
    ops.append(elementwise("norm_mlp", n * h, dtype, 1, 1, 5, kind=OpKind.NORM))
    # A serving step runs only the experts its tokens touch (the only expert weights it reads).
    mlp = _mlp_ops(model, s, cdt, ab, wb, active_experts(model, n) if model.is_moe else None)
    ops += [replace(o, saved=()) for o in mlp]
    ops.append(elementwise("residual_mlp", n * h, dtype, 2, 1, 1))
    return tag_variants(ops, model)


def head_ops(model: ModelSpec, tokens: Num, tp: Num = 1, dtype: DType = DType.BF16,
             logits_tokens: Num | None = None, weight_dtype: DType | None = None) -> list[Op]:
    """Ops outside the layers: embedding lookup, final norm, LM head (vocab-parallel over tp) and loss.

    ``logits_tokens`` is how many positions need logits (all for training, one per sequence when serving).
    """
    h, v = model.hidden, model.vocab
    ab, wb = dtype.bytes, (weight_dtype or dtype).bytes
    rows = tokens if logits_tokens is None else logits_tokens
    return tag_variants([
        Op("embedding", OpKind.ELEMENTWISE, 0.0, tokens * h * wb, tokens * h * ab, (tokens * h,), dtype),
        elementwise("final_norm", tokens * h, dtype, 1, 1, 5, kind=OpKind.NORM),
        gemm("lm_head", rows, v / np.asarray(tp, float), h, dtype, ab, wb),
        # Vocab-parallel cross-entropy in fp32: read the logits, write the loss's softmax (Megatron).
        Op("logits_softmax", OpKind.ELEMENTWISE, 5.0 * rows * v / np.asarray(tp, float),
           rows * v / np.asarray(tp, float) * ab, rows * v / np.asarray(tp, float) * 4.0,
           (rows * v / np.asarray(tp, float),), DType.FP32),
    ], model)


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


def total(ops: Iterable[Op], attr: str = "flops", kinds: Iterable[OpKind] | None = None) -> Num:
    """Sum one field over ops (times their count), optionally over some kinds only."""
    keep = set(kinds) if kinds is not None else set(OpKind)
    out: Num = 0.0
    for op in ops:
        if op.kind in keep:
            out = out + getattr(op, attr) * op.count
    return out


MATMUL_KINDS = (OpKind.GEMM, OpKind.ATTENTION)
__all__ = ["AttentionImpl", "Mlp", "Op", "OpKind", "Phase", "Saved", "StepBatch", "attention_ops",
           "backward_ops", "elementwise", "forward_layer_ops", "gemm", "head_ops", "layer_shape", "optimizer_ops",
           "serving_layer_ops", "training_layer_ops", "total"]
