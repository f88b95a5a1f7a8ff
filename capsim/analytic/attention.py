"""Attention in the op list: projections, the attention kernel and the KV cache, for multi-head and grouped-query
attention, sliding-window layers and multi-head latent attention (MLA).

- Sliding window: a query attends to at most ``sliding_window`` keys (itself and the ones before), so a layer's
  causal pairs are sum_p min(p, W) and it reads and caches at most W keys per sequence (Beltagy et al. 2020,
  Longformer; Jiang et al. 2023, Mistral 7B, Sec. 2). Global and sliding layers are two attention ops whose
  ``share`` is their fraction of the stack.
- MLA (DeepSeek-AI 2024, DeepSeek-V2, Sec. 2.1): queries through a low-rank W^DQ/W^UQ pair, keys and values rebuilt
  by W^UK/W^UV from a cached latent of kv_lora_rank dims plus one shared RoPE key of qk_rope_head_dim dims. Training
  and prefill run it as multi-head attention over the rebuilt K and V; decode absorbs W^UK into the query and W^UV
  into the output and attends over the latent directly, one latent "head" shared by all query heads (vLLM's MLA
  backend, vllm/attention/backends/mla/common.py docstring: the compute-friendly path for prefill, the
  data-movement-friendly absorbed path for decode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim._types import Num
from capsim.analytic.primitives import (
    AttentionImpl,
    Op,
    OpKind,
    Phase,
    Saved,
    StepBatch,
    elementwise,
    gemm,
    norm,
)
from capsim.specs.engine import DecodeKvReads
from capsim.specs.model import ModelSpec, Position
from capsim.specs.precision import DType


def window_pairs(q: Num, c: Num, window: float) -> Num:
    """Causal (query, key) pairs of q queries after c cached tokens when each query sees at most ``window`` keys:
    F(c + q) - F(c) with F(n) = sum_{p<=n} min(p, W)."""
    def f(n: Num) -> Num:
        n = np.asarray(n, float)
        return np.where(n <= window, n * (n + 1) / 2, window * (window + 1) / 2 + (n - window) * window)
    return f(np.asarray(c, float) + q) - f(c)


def window_keys(q: Num, c: Num, window: float) -> Num:
    """Keys q queries after c cached tokens read under a window: the last W - 1 before the chunk and the chunk."""
    return np.minimum(np.asarray(c, float) + q, np.asarray(q, float) + window - 1)


@dataclass(frozen=True)
class KernelDims:
    """Per-rank sizes of one attention kernel."""

    heads: Num  # query heads on this rank
    qk_dim: int  # dims of each query-key dot product
    v_dim: int  # dims of each value row and output row
    kv_elems: Num  # key and value elements read per key (MLA decode: the latent serves as both)
    kv_cached: bool  # K and V are read from the cache (in the KV dtype); False: rebuilt in the activation dtype

    @property
    def flops_per_pair(self) -> Num:
        """QK^T and PV of one (query, key) pair over all heads: 2 heads (d_qk + d_v)."""
        return 2.0 * self.heads * (self.qk_dim + self.v_dim)

    @property
    def q_elems(self) -> Num:
        """Query elements read plus output elements written per query token."""
        return self.heads * (self.qk_dim + self.v_dim)


def kernel_dims(model: ModelSpec, tp: Num = 1, phase: Phase = Phase.PREFILL,
                kv_reads: DecodeKvReads = DecodeKvReads.PER_KV_HEAD) -> KernelDims:
    """The attention kernel one rank runs: heads split by TP (KV heads replicated when TP exceeds them). A decode
    kernel that reads the cache per query head (``kv_reads``) moves each cached head once per query head it serves."""
    heads = model.heads / np.asarray(tp, float)
    if model.is_mla and phase is Phase.DECODE:
        latent = model.kv_lora_rank + model.qk_rope_head_dim
        return KernelDims(heads, latent, model.kv_lora_rank, float(latent) * _reread(model, tp, phase, kv_reads), True)
    if model.is_mla:
        return KernelDims(heads, model.head_dim, model.v_dim, heads * (model.head_dim + model.v_dim), False)
    kv = kv_elems_per_token(model, tp) * _reread(model, tp, phase, kv_reads)
    return KernelDims(heads, model.head_dim, model.v_dim, kv, True)


def _reread(model: ModelSpec, tp: Num, phase: Phase, kv_reads: DecodeKvReads) -> Num:
    """Times a decode kernel reads each cached KV head of a rank: once, or once per query head it serves (one
    thread block per (sequence, query head), each reading its KV head's keys and values: TensorRT-LLM
    decoderMaskedMultiheadAttentionTemplate.h, hi_kv = hi / qhead_per_kv). MLA caches one latent head per rank."""
    if phase is not Phase.DECODE or kv_reads is DecodeKvReads.PER_KV_HEAD:
        return 1.0
    cached = 1.0 if model.is_mla else np.maximum(model.kv_heads / np.asarray(tp, float), 1.0)
    return model.heads / np.asarray(tp, float) / cached


def kv_elems_per_token(model: ModelSpec, tp: Num = 1) -> Num:
    """Elements one token caches in one layer on one rank: K and V of its KV heads (one replicated head per rank
    when TP exceeds them), or MLA's latent plus RoPE key, whole on every rank (vLLM caches MLA as one KV head)."""
    if model.is_mla:
        return float(model.kv_lora_rank + model.qk_rope_head_dim)
    return np.maximum(model.kv_heads / np.asarray(tp, float), 1.0) * (model.head_dim + model.v_dim)


def layer_shares(model: ModelSpec) -> list[tuple[float | None, float]]:
    """(window, share of the stack) of each kind of attention layer: (None, 1) without sliding windows; a hybrid
    stack's recurrent layers have none (their share is left out)."""
    sliding = model.sliding_layers / model.layers
    full = model.attention_layers / model.layers - sliding
    kinds = [(None, full), (float(model.sliding_window or 0), sliding)]
    return [(w, s) for w, s in kinds if s > 0]


def training_kernel(sequences: Num, heads: Num, kv_heads: Num, q_len: Num, kv_len: Num, head_dim: int,
                    dtype: DType, impl: AttentionImpl, dropout: bool, causal: bool, v_dim: int | None = None,
                    window: float | None = None, share: Num = 1.0) -> list[Op]:
    """The attention core over full sequences (training and single-shot prefill)."""
    b, a, d, v = sequences, heads, head_dim, v_dim or head_dim
    ab = dtype.bytes
    q_bytes = b * q_len * a * d * ab
    kv_bytes = b * kv_len * kv_heads * (d + v) * ab
    qk_saved = ((Saved.TP, q_bytes + kv_bytes),)  # Q, K and V (Korthikanti: 4sbh for QK^T + 2sbh for V)
    if impl.fused:
        if window:
            pairs, keys = b * window_pairs(q_len, 0.0, window), b * np.minimum(kv_len, window)
        else:
            pairs, keys = b * (q_len * (q_len + 1) / 2 if causal else q_len * kv_len), b * kv_len
        kernel = "" if impl is AttentionImpl.FLASH else impl.value  # the calibration's main curve, or that kernel's
        return [Op("attention", OpKind.ATTENTION, 2.0 * pairs * a * (d + v), q_bytes + kv_bytes,
                   b * q_len * a * v * ab, (b, a, b * q_len, keys, d), dtype, 1, qk_saved, causal, kernel, share)]
    # Unfused (Megatron-LM): one (q x d) @ (d x kv) product per sequence and head, the full square kept (a window
    # only masks it).
    batch, square = b * a, q_len * kv_len
    scores = batch * square
    ops = [
        Op("attn_scores", OpKind.GEMM, 2.0 * square * d, (q_len + kv_len) * d * ab, square * ab,
           (q_len, kv_len, d), dtype, batch, ((Saved.TP, (q_bytes + kv_bytes) / batch),), causal, share=share),
        elementwise("softmax", scores, dtype, 1, 1, 5, ((Saved.CORE, scores * ab),), share=share),
    ]
    if dropout:  # mask (1 byte) and dropped probabilities kept for backward
        ops.append(elementwise("attn_dropout", scores, dtype, 1, 1, 1, ((Saved.CORE, scores * (1 + ab)),),
                               extra_write_bytes=scores, share=share))
    ops.append(Op("attn_context", OpKind.GEMM, 2.0 * square * v, (square + kv_len * v) * ab, q_len * v * ab,
                  (q_len, v, kv_len), dtype, batch, (), causal, share=share))
    return ops


def projection_ops(model: ModelSpec, n: Num, heads: Num, kv_heads: Num, dtype: DType, ab: float, wb: float,
                   serving: bool = False, gemm_dtype: DType | None = None) -> list[Op]:
    """Q, K and V projections (fused, as Megatron and vLLM run them), RoPE and q/k norms of ``n`` tokens on one
    rank; MLA's down- and up-projections instead. Training records what backward needs; serving leaves MLA's
    K/V rebuild to :func:`serving_kernels` (it follows the keys read, not the new tokens)."""
    h, d, keep, gdt = model.hidden, model.head_dim, not serving, gemm_dtype or dtype
    layer_in = ((Saved.SP, ab * n * h),) if keep else ()
    if model.is_mla:
        return _mla_projections(model, n, heads, dtype, gdt, ab, wb, layer_in, keep)
    qd, kvd = heads * d, kv_heads * d
    gate = qd if model.attn_output_gate else 0  # Qwen3-Next: q_proj also emits the output gate
    ops = [gemm("qkv", n, qd + gate + kvd + kv_heads * model.v_dim, h, gdt, ab, wb, layer_in)]
    if model.qk_norm:  # Qwen3 / Gemma 3: RMSNorm over head_dim of each query and key head
        ops.append(norm("qk_norm", n * (qd + kvd), dtype, ((Saved.TP, n * (qd + kvd) * ab),) if keep else ()))
    if model.position is Position.ROPE:
        ops.append(elementwise("rope", n * (qd + kvd), dtype, 1, 1, 3))
    return ops


def _mla_projections(model: ModelSpec, n: Num, heads: Num, dtype: DType, gdt: DType, ab: float, wb: float,
                     layer_in: tuple[tuple[Saved, Num], ...], keep: bool) -> list[Op]:
    """MLA's projections: the down-projections run whole on every TP rank (Megatron-Core and vLLM replicate them),
    the up-projections split their heads."""
    h, d, v, rope = model.hidden, model.head_dim, model.v_dim, model.qk_rope_head_dim
    kvr, qr = model.kv_lora_rank, model.q_lora_rank

    def kept(elems: Num) -> tuple[tuple[Saved, Num], ...]:
        return ((Saved.SP, ab * elems),) if keep else ()

    if qr is None:
        ops = [gemm("q_proj", n, heads * d, h, gdt, ab, wb, layer_in)]
    else:
        ops = [gemm("q_down", n, qr, h, gdt, ab, wb, layer_in), norm("q_norm", n * qr, dtype, kept(n * qr)),
               gemm("q_up", n, heads * d, qr, gdt, ab, wb, kept(n * qr))]
    ops += [gemm("kv_down", n, kvr + rope, h, gdt, ab, wb),  # reads the same layer input as the query path
            norm("kv_norm", n * kvr, dtype, kept(n * kvr))]
    if keep:
        ops.append(gemm("kv_up", n, heads * (d - rope + v), kvr, gdt, ab, wb, kept(n * kvr)))
    ops.append(elementwise("rope", n * (heads + 1) * rope, dtype, 1, 1, 3))
    return ops


def serving_kernels(model: ModelSpec, batch: StepBatch, tp: Num, phase: Phase, dtype: DType, kv_dtype: DType,
                    compute_dtype: DType, wb: float,
                    kv_reads: DecodeKvReads = DecodeKvReads.PER_KV_HEAD) -> list[Op]:
    """The context-dependent part of one layer in a serving step: the attention kernel of each layer kind, and
    MLA's GEMMs whose size follows the context (prefill rebuilds K and V of every key it reads; decode absorbs
    W^UK and W^UV around the latent kernel; ``kv_reads``: how the engine's decode kernel reads the cache)."""
    k = kernel_dims(model, tp, phase, kv_reads)
    ab, n = dtype.bytes, batch.new_tokens
    kv_bytes = kv_dtype.bytes if k.kv_cached else ab
    ops: list[Op] = []
    for window, share in layer_shares(model):
        pairs, keys = batch.attention_pairs, batch.kv_tokens
        if window:
            pairs, keys = capped(n, batch.sequences, pairs, keys, window)
        if model.is_mla and phase is not Phase.DECODE:
            ops.append(gemm("kv_up", keys, k.heads * (model.head_dim - model.qk_rope_head_dim + model.v_dim),
                            model.kv_lora_rank, compute_dtype, ab, wb, share=share))
        # A prefill chunk runs under the causal mask; a decode query sees every cached key (no mask to apply).
        ops.append(Op("attention", OpKind.ATTENTION, pairs * k.flops_per_pair,
                      n * k.heads * k.qk_dim * ab + keys * k.kv_elems * kv_bytes, n * k.heads * k.v_dim * ab,
                      (batch.sequences, k.heads, n, keys, k.qk_dim), dtype, causal=phase is not Phase.DECODE,
                      share=share))
    if model.is_mla and phase is Phase.DECODE:
        nope, kvr = model.head_dim - model.qk_rope_head_dim, model.kv_lora_rank
        ops.insert(0, gemm("q_absorb", n, kvr, nope, compute_dtype, ab, wb, count=k.heads))
        ops.append(gemm("out_absorb", n, model.v_dim, kvr, compute_dtype, ab, wb, count=k.heads))
    return ops


def capped(tokens: Num, seqs: Num, pairs: Num, keys: Num, window: float) -> tuple[Num, Num]:
    """A step's pairs and keys in a sliding-window layer: its totals scaled by what the window leaves of the mean
    sequence (exact for equal sequences; for unequal ones an upper bound, since min(x, W) is concave)."""
    s = np.maximum(np.asarray(seqs, float), 1e-30)
    q, kv = np.asarray(tokens, float) / s, np.asarray(keys, float) / s
    c = np.maximum(kv - q, 0.0)
    full = q * c + q * (q + 1) / 2
    pairs = pairs * np.where(full > 0, window_pairs(q, c, window) / np.maximum(full, 1e-30), 1.0)
    keys = keys * np.where(kv > 0, window_keys(q, c, window) / np.maximum(kv, 1e-30), 1.0)
    return pairs, keys


def kv_write_op(model: ModelSpec, n: Num, tp: Num, dtype: DType, kv_dtype: DType) -> Op:
    """Appending ``n`` new tokens' keys and values (MLA: latent and RoPE key) to the paged cache."""
    elems = n * kv_elems_per_token(model, tp)
    return Op("kv_cache_write", OpKind.ELEMENTWISE, 0.0, elems * dtype.bytes, elems * kv_dtype.bytes, (elems,), dtype,
              impl="copy")


__all__ = ["KernelDims", "capped", "kernel_dims", "kv_elems_per_token", "kv_write_op", "layer_shares", "projection_ops",
           "serving_kernels", "training_kernel", "window_keys", "window_pairs"]
