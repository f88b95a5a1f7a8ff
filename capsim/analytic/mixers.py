"""Recurrent token mixers in the op list: Mamba-2 (SSD) and Gated DeltaNet layers of hybrid stacks.

Both run as: an input projection (one GEMM), a causal depthwise conv1d over the key/value channels with SiLU, the
gates, a chunked scan, a gated RMSNorm and the output projection (one GEMM). The scan is priced as the batched
matmuls of its chunked form, each a GEMM on the calibration's GEMM roofline (compute- or memory-bound as its shape
gives), so training (backward = a data- and a weight-gradient product per forward product, 3x in all, as for the
other layers), prefill chunks and decode steps price one list. A sequence's q new tokens run in ceil(q / Q) chunks
of the chunk length Q, so a decode token is a chunk of one: the recurrent step.

- Mamba-2 SSD (Dao & Gu 2024, arXiv 2405.21060, Sec. 6 and Listing 1 ``ssd_minimal_discrete``; transformers 5.25.0
  modeling_granitemoehybrid.py torch_forward L460-506): per chunk, C B^T of each group (Q x Q x N), the diagonal
  block (L o CB) X of each head (Q x P x Q), the chunk's state B^T X (N x P x Q), and the states' output C S
  (Q x P x N); the recurrence between chunks is an elementwise pass over the states.
- Gated DeltaNet (Yang et al. 2024, arXiv 2412.06464, Sec. 3.3, chunkwise form with the UT transform; transformers
  5.25.0 modeling_qwen3_next.py torch_chunk_gated_delta_rule L425-565): per chunk and value head, (k beta) K^T and
  Q K^T (C x C x dk, L509-510), the UT transform applied to v beta and the decayed k beta (C x (dv + dk) x C,
  L527-535), k_cumdecay S and Q S (C x dv x dk each, L553-554), the intra-chunk product (C x dv x C, L555) and the
  state update K^T v_new (dk x dv x C, L557). Queries and keys are repeated to the value heads (L465-467).

Each sequence's cached state (SSM and conv state) is read at its first chunk and written at its last, the states
between its chunks once each way in fp32: the ``scan_state`` op. Tensor parallelism splits the heads; key groups are replicated where TP exceeds them (as KV heads).
"""

from __future__ import annotations

import numpy as np

from capsim._types import Num
from capsim.analytic.params import in_proj_cols
from capsim.analytic.primitives import Op, OpKind, Saved, elementwise, gemm, norm
from capsim.specs.model import Mixer, ModelSpec
from capsim.specs.precision import DType

# Ops whose cost follows each sequence's chunks and state, not only the step's new tokens (serving prices them with
# the step's sequences, as it prices attention with its contexts).
SCAN_PREFIX = "scan_"


def recurrent_shares(model: ModelSpec) -> list[tuple[Mixer, float]]:
    """(kind, share of the stack) of each recurrent mixer the model has."""
    out = [(k, model.mixer_layers(k) / model.layers) for k in (Mixer.MAMBA2, Mixer.GATED_DELTANET)]
    return [(k, s) for k, s in out if s > 0]


def state_elems(model: ModelSpec, kind: Mixer, tp: Num = 1) -> Num:
    """Elements of one sequence's recurrent state in one layer on one rank: the conv state (kernel - 1 past inputs
    of the conv channels) and the SSM state (heads x head_dim x state dims) (vLLM MambaStateShapeCalculator,
    mamba_utils.py: mamba2_state_shape conv (d_conv - 1, conv_dim / tp), temporal (heads / tp, head_dim, d_state);
    gated_delta_net_state_shape conv (d_conv - 1, conv_dim / tp), temporal (v_heads / tp, head_k_dim, head_v_dim))."""
    t = np.asarray(tp, float)
    heads, groups = model.ssm_heads / t, np.maximum(model.ssm_groups / t, 1.0)
    conv = (model.ssm_conv - 1) * _widths(model, heads, groups)[2]
    return conv + heads * model.ssm_head_dim * model.ssm_state


def state_bytes_per_sequence(model: ModelSpec, state_dtype_bytes: float, tp: Num = 1, pp: Num = 1) -> Num:
    """Bytes of one sequence's recurrent state over the layers of one pipeline stage, on one GPU."""
    out: Num = 0.0
    for kind, _share in recurrent_shares(model):
        out = out + model.mixer_layers(kind) * state_elems(model, kind, tp) * state_dtype_bytes
    return out / np.asarray(pp, float)


def _widths(model: ModelSpec, heads: Num, groups: Num) -> tuple[Num, Num, Num]:
    """(value dims, key dims, conv channels) of ``heads`` value heads and ``groups`` key groups."""
    values, keys = heads * model.ssm_head_dim, groups * model.ssm_state
    return values, keys, values + 2 * keys


def _chunks(model: ModelSpec, tokens: Num, sequences: Num) -> tuple[Num, Num]:
    """(chunks, tokens per chunk) of a step: each sequence's new tokens in chunks of the chunk length, at least one
    chunk per sequence (a decode token is a chunk of one)."""
    n, s = np.asarray(tokens, float), np.maximum(np.asarray(sequences, float), 1e-30)
    chunk = float(model.ssm_chunk)
    c = np.maximum(n / chunk, np.minimum(s, n))
    return c, n / np.maximum(c, 1e-30)


def _scan(model: ModelSpec, kind: Mixer, n: Num, sequences: Num, heads: Num, groups: Num, dt: DType, ab: float,
          share: float, keep: bool) -> list[Op]:
    """The chunked scan's batched products on one rank (see the module docstring), and its state traffic."""
    conv_dim = _widths(model, heads, groups)[2]
    c, q = _chunks(model, n, sequences)
    p, d = model.ssm_head_dim, model.ssm_state  # value dims, key (state) dims per head
    state = heads * p * d
    if kind is Mixer.MAMBA2:
        ops = [gemm("scan_cb", q, q, d, dt, ab, ab, count=c * groups, share=share),
               gemm("scan_diag", q, p, q, dt, ab, ab, count=c * heads, share=share),
               gemm("scan_chunk_state", d, p, q, dt, ab, ab, count=c * heads, share=share),
               gemm("scan_state_out", q, p, d, dt, ab, ab, count=c * heads, share=share)]
    else:
        ops = [gemm("scan_kkt", q, q, d, dt, ab, ab, count=2 * c * heads, share=share),
               gemm("scan_ut", q, p + d, q, dt, ab, ab, count=c * heads, share=share),
               gemm("scan_state_in", q, p, d, dt, ab, ab, count=2 * c * heads, share=share),
               gemm("scan_intra", q, p, q, dt, ab, ab, count=c * heads, share=share),
               gemm("scan_state_update", d, p, q, dt, ab, ab, count=c * heads, share=share)]
    # Each sequence reads its cached state and writes it back, in the cache dtype (vLLM: the model dtype,
    # mamba_ssm_cache_dtype "auto"; MambaStateDtypeCalculator, mamba_utils.py @02d71083), conv state (kernel - 1
    # inputs of the conv channels) included; the states between one sequence's chunks are written and read again in
    # fp32 (ssd_minimal and torch_chunk_gated_delta_rule compute them in float32).
    seqs = np.minimum(np.asarray(sequences, float), n)
    cached = seqs * (state + (model.ssm_conv - 1) * conv_dim) * ab
    between = np.maximum(c - seqs, 0.0) * state * 4.0
    # backward keeps the scan's output (its inputs are kept by the conv and the gates) and each chunk's state
    saved = ((Saved.TP, n * heads * p * ab + c * state * 4.0),) if keep else ()
    ops.append(Op("scan_state", OpKind.ELEMENTWISE, 2.0 * c * state, cached + between, cached + between,
                  (c * state,), DType.FP32, 1, saved, share=share))
    return ops


def recurrent_ops(model: ModelSpec, kind: Mixer, n: Num, sequences: Num, tp: Num, dtype: DType, ab: float,
                  wb: float, share: float, keep: bool, gemm_dtype: DType | None = None) -> list[Op]:
    """One recurrent mixer over ``n`` tokens of ``sequences`` sequences on one TP rank, weighted by ``share`` of the
    stack; ``keep``: training, record what backward needs."""
    t = np.asarray(tp, float)
    gdt, h = gemm_dtype or dtype, model.hidden
    heads, groups = model.ssm_heads / t, np.maximum(model.ssm_groups / t, 1.0)
    values, keys, conv_dim = _widths(model, heads, groups)
    mamba = kind is Mixer.MAMBA2
    cols = in_proj_cols(kind, heads, values, keys)

    def kept(elems: Num) -> tuple[tuple[Saved, Num], ...]:
        return ((Saved.TP, elems * ab),) if keep else ()

    layer_in = ((Saved.SP, n * h * ab),) if keep else ()
    ops = [gemm("ssm_in_proj", n, cols, h, gdt, ab, wb, layer_in, share=share),
           # causal depthwise conv1d: kernel multiply-adds per channel and token, then SiLU
           elementwise("ssm_conv", n * conv_dim, dtype, 1, 1, 2 * model.ssm_conv + 4, kept(n * conv_dim), share=share),
           # gates per head and token: Mamba-2 softplus(dt + dt_bias), exp(dt A); GDN sigmoid(b), -exp(A) softplus(a)
           elementwise("ssm_gates", n * heads, dtype, 2, 2, 8, kept(n * heads), share=share)]
    if not mamba:  # GDN normalizes queries and keys (use_qk_l2norm_in_kernel)
        ops.append(norm("ssm_qk_l2norm", n * 2 * keys, dtype, kept(n * 2 * keys), share=share))
    ops += _scan(model, kind, n, sequences, heads, groups, dtype, ab, share, keep)
    # gated RMSNorm: norm(y) * silu(z), reading y and z (RMSNormGated)
    ops.append(elementwise("ssm_gated_norm", n * values, dtype, 2, 1, 9, kept(2 * n * values), OpKind.NORM,
                           share=share))
    ops.append(gemm("ssm_out_proj", n, h, values, gdt, ab, wb, kept(n * values), share=share))
    return ops


def mixer_ops(model: ModelSpec, n: Num, sequences: Num, tp: Num, dtype: DType, ab: float, wb: float,
              keep: bool, gemm_dtype: DType | None = None) -> list[Op]:
    """Every recurrent mixer kind of the stack, each at its share of the layers (none for an attention-only model)."""
    ops: list[Op] = []
    for kind, share in recurrent_shares(model):
        ops += recurrent_ops(model, kind, n, sequences, tp, dtype, ab, wb, share, keep, gemm_dtype)
    return ops


def scan_flops_per_token(model: ModelSpec, seq_len: Num) -> Num:
    """Forward FLOPs of the chunked scans per token over the stack, for full sequences of ``seq_len`` (one
    sequence; the batched products of :func:`recurrent_ops` named ``scan_``)."""
    s = np.asarray(seq_len, float)
    out: Num = 0.0 * s
    for kind, share in recurrent_shares(model):
        ops = _scan(model, kind, s, 1.0, float(model.ssm_heads), float(model.ssm_groups), DType.BF16, 2.0, share,
                    False)
        out = out + model.layers * sum(o.total_flops for o in ops if o.kind is OpKind.GEMM) / s
    return out


__all__ = ["SCAN_PREFIX", "mixer_ops", "recurrent_ops", "recurrent_shares", "scan_flops_per_token",
           "state_bytes_per_sequence", "state_elems"]
