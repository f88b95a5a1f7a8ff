"""Model features a framework runs as eager PyTorch ops instead of one fused kernel: each eager op is one kernel
(and one host launch) of its own, a pass over its tensor. Which framework does so is a release fact
(``Framework.glu_clamp_eager``, ``Framework.yarn_rope``, ``Framework.moe_fc1_bias_eager``); what the op
list holds otherwise is the fused form (one activation kernel, one RoPE kernel, fc1's bias in the GEMM's epilogue).

- Clamped GLU (``ModelSpec.glu_clamp``, gpt-oss's swiglu_limit): Megatron-Core's ``weighted_bias_quick_geglu_impl``
  clamps fc1's output before its fused activation (megatron/core/fusions/fused_bias_geglu.py L424-432, NVIDIA/
  Megatron-LM@0d8e0714, the same lines at every Megatron-Bridge pin to 458c8d0e): ``x_glu, x_linear =
  input.chunk(2, -1)`` (views), ``x_glu.clamp(max=c)`` and ``x_linear.clamp(-c, c)`` (each reads and writes its
  half), ``torch.cat`` of both (reads and writes the whole). Autograd: each clamp's backward masks the gradient
  (reads it and its saved input, writes the gradient), the cat's backward is two views, and the chunk's backward
  (``split_backward``) concatenates the two halves' gradients (reads and writes the whole).
- YaRN RoPE (``ModelSpec.yarn_factor``): with an attention factor ``mscale`` other than 1, Megatron-Core's
  ``apply_rotary_pos_emb`` takes its unfused path (megatron/core/models/common/embeddings/rope_utils.py L279-284
  @0d8e0714 ... 458c8d0e: "mscale=... is not supported by TE's fused RoPE"), ``_apply_rotary_pos_emb_bshd``
  (L92-126), once for the queries and once for the keys: cos and sin tables of the micro-batch's positions scaled by
  ``mscale`` and cast (3 small kernels each), then ``t * cos_``, ``_rotate_half`` (``-x2`` over half, ``torch.cat``
  over all), ``* sin_``, the sum, and ``torch.cat((t, t_pass))`` (t_pass empty: a copy). Autograd: the last cat and
  the sum pass the gradient through (views), ``* sin_`` and ``* cos_`` multiply it, the negation and the chunk's
  concatenation rebuild the rotated half's gradient, and the two paths into ``t`` are summed. Megatron-Bridge also
  turns RoPE fusion off for any position type but plain "rope" (src/megatron/bridge/models/gpt_provider.py L198-200
  with utils/fusions.py L66-74 at v0.3.0: "yarn" is not "rope"), so the unfused path runs either way there.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.moe import GROUPED
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.model import ModelSpec
from capsim.specs.precision import DType


class YarnRope(StrEnum):
    """How a release applies a YaRN model's RoPE (``Framework.yarn_rope``)."""

    FUSED = "fused"  # one fused RoPE kernel (the op list's ``rope``)
    MEGATRON = "megatron"  # Megatron-Core's unfused _apply_rotary_pos_emb_bshd (module docstring)
    HALVES = "halves"  # NeMo AutoModel's gpt-oss _apply_rotary_emb: both halves rotated with four products


# Names of the ops below (the expert-node and host-run code places the clamp and fc1's bias with the experts).
CLAMP_OPS = frozenset({"glu_clamp_gate", "glu_clamp_up", "glu_clamp_cat"})
FC1_BIAS_OPS = frozenset({"moe_fc1_bias_add", "moe_fc1_bias_cat"})
EXPERT_OPS = CLAMP_OPS | FC1_BIAS_OPS
ROPE_OPS = frozenset({"rope_cos", "rope_neg", "rope_rotate", "rope_sin", "rope_add", "rope_out", "rope_tables",
                      "rope_half_mul", "rope_half_sub", "rope_half_add", "rope_half_cat"})


def _pass(name: str, elems: Num, dt: DType, reads: float, writes: float, grad: tuple[float, float],
          share: Num = 1.0) -> Op:
    """One eager elementwise kernel over ``elems`` values: ``reads``/``writes`` tensors of that size forward,
    ``grad`` = (reads, writes) of its backward kernel in the same unit (0, 0: none)."""
    b = dt.bytes * np.asarray(elems, float)
    return Op(name, OpKind.ELEMENTWISE, 0.0, reads * b, writes * b, (elems,), dt, share=share,
              grad=(grad[0] * b, grad[1] * b))


def clamp_ops(up: Op) -> list[Op]:
    """The eager clamp of a clamped GLU's fc1 output (``up``: the fc1 GEMM, [m, 2f] per instance, ``count``
    instances: the concatenated rows of the local experts, clamped as one tensor)."""
    m, n, _k = up.shape
    whole = np.asarray(m, float) * n * up.count
    half = whole / 2.0
    return [_pass("glu_clamp_gate", half, up.dtype, 1, 1, (2, 1), up.share),
            _pass("glu_clamp_up", half, up.dtype, 1, 1, (2, 1), up.share),
            _pass("glu_clamp_cat", whole, up.dtype, 1, 1, (1, 1), up.share)]


def fc1_bias_ops(up: Op) -> list[Op]:
    """fc1's bias added outside the grouped GEMM (``up``: [m, n] per local expert, ``count`` experts), as NeMo
    AutoModel's GroupedExpertsDeepEP does: ``torch.cat([t + b for t, b in zip(torch.split(value, tokens), bias)])``
    (nemo_automodel/components/moe/layers.py L376-380, L486-487, NVIDIA-NeMo/Automodel@8d9bfb9): one add per expert
    (reads and writes its rows; backward: the rows' gradient passes through, the bias's is a sum over them) and one
    concatenation of all the rows (backward: views; the split's backward concatenates the experts' gradients)."""
    m, n, _k = up.shape
    rows = np.asarray(m, float) * n
    b = up.dtype.bytes
    add = Op("moe_fc1_bias_add", OpKind.ELEMENTWISE, rows, rows * b, rows * b, (rows,), up.dtype, up.count,
             share=up.share, grad=(rows * b, 0.0))
    whole = rows * up.count
    return [add, _pass("moe_fc1_bias_cat", whole, up.dtype, 1, 1, (1, 1), up.share)]


def _rope_one(elems: Num, positions: Num, rot_dim: int, dt: DType) -> list[Op]:
    """``_apply_rotary_pos_emb_bshd`` over one tensor of ``elems`` values (see the module docstring)."""
    table = np.asarray(positions, float) * rot_dim  # cos (sin) of [s, 1, 1, d] fp32 freqs, * mscale, .to(dt)
    tables = Op("rope_tables", OpKind.ELEMENTWISE, 0.0, 2 * table * 12.0, 2 * table * (8.0 + dt.bytes), (table,),
                DType.FP32, grad=(0.0, 0.0))
    return [tables,
            _pass("rope_cos", elems, dt, 1, 1, (3, 2)),  # g * cos_, then the two paths' gradients summed into t
            _pass("rope_neg", elems / 2.0, dt, 1, 1, (1, 1)),
            _pass("rope_rotate", elems, dt, 1, 1, (1, 1)),  # cat((-x2, x1)); backward: the chunk's cat of grads
            _pass("rope_sin", elems, dt, 1, 1, (1, 1)),
            _pass("rope_add", elems, dt, 2, 1, (0, 0)),
            _pass("rope_out", elems, dt, 1, 1, (0, 0))]


def _rope_halves(elems: Num, positions: Num, rot_dim: int, dt: DType) -> list[Op]:
    """NeMo AutoModel's gpt-oss ``_apply_rotary_emb`` over one tensor of ``elems`` values (nemo_automodel/components/
    models/gpt_oss/layers.py L30-40, NVIDIA-NeMo/Automodel@8d9bfb9, not compiled): cos and sin cast to the tensor's
    dtype, ``x1, x2 = chunk(x)`` (views), ``o1 = x1 * cos - x2 * sin`` and ``o2 = x2 * cos + x1 * sin`` (four products
    over a half each, a difference and a sum), ``torch.cat((o1, o2))``. Autograd: the cat and the sum pass their
    gradient through, the difference negates one (a half), each product multiplies it (a half each), the two paths
    into x1 and into x2 are summed, and the chunk's backward concatenates them."""
    half = np.asarray(elems, float) / 2.0
    table = np.asarray(positions, float) * rot_dim / 2.0  # cos (sin) of [s, d/2] fp32, cast to dt
    tables = Op("rope_tables", OpKind.ELEMENTWISE, 0.0, 2 * table * 4.0, 2 * table * dt.bytes, (table,), DType.FP32,
                grad=(0.0, 0.0))
    muls = [_pass("rope_half_mul", half, dt, 1, 1, (1, 1)) for _ in range(4)]
    return [tables, *muls,
            _pass("rope_half_sub", half, dt, 2, 1, (1, 1)),  # backward: -g for x2 * sin
            _pass("rope_half_add", half, dt, 2, 1, (4, 2)),  # backward: the x1 and x2 sums (pass-through itself)
            _pass("rope_half_cat", 2 * half, dt, 1, 1, (1, 1))]  # backward: views; the chunk's concatenation


def unfused_rope_ops(model: ModelSpec, rope: Op, heads: Num, kv_heads: Num, positions: Num,
                     form: YarnRope = YarnRope.MEGATRON) -> list[Op]:
    """A release's eager RoPE (``form``) in place of the fused ``rope`` op: once over the queries, once over the keys
    (``positions``: the micro-batch's sequence length, the rows of its cos and sin tables)."""
    tokens = np.asarray(rope.shape[0], float) / np.maximum(np.asarray(heads, float) + kv_heads, 1e-30) / model.head_dim
    d = model.head_dim
    one = _rope_halves if form is YarnRope.HALVES else _rope_one
    return [op for part in (heads, kv_heads) for op in one(tokens * np.asarray(part, float) * d, positions, d,
                                                           rope.dtype)]


def apply(ops: list[Op], model: ModelSpec, positions: Num, heads: Num, kv_heads: Num, glu_clamp_eager: bool,
          yarn_rope: YarnRope = YarnRope.FUSED, fc1_bias_eager: bool = False) -> list[Op]:
    """The forward op list with the framework's eager paths for this model's features: the clamp after each fc1
    of a clamped GLU (``glu_clamp_eager``), the release's eager RoPE in place of the fused one for a YaRN model
    (``yarn_rope``), and a biased model's routed-expert fc1 bias outside the grouped GEMM (``fc1_bias_eager``)."""
    clamp = glu_clamp_eager and model.glu_clamp is not None
    rope = YarnRope(yarn_rope) is not YarnRope.FUSED and model.yarn_factor is not None
    bias = fc1_bias_eager and model.bias and model.is_moe
    if not (clamp or rope or bias):
        return ops
    out: list[Op] = []
    for op in ops:
        if rope and op.name == "rope":
            out += unfused_rope_ops(model, op, heads, kv_heads, positions, YarnRope(yarn_rope))
            continue
        out.append(op)
        if bias and op.name == "mlp_up" and op.impl == GROUPED:
            out += fc1_bias_ops(op)
        if clamp and op.name == "mlp_up":
            out += clamp_ops(op)
    return out


__all__ = ["CLAMP_OPS", "EXPERT_OPS", "FC1_BIAS_OPS", "ROPE_OPS", "YarnRope", "apply", "clamp_ops", "fc1_bias_ops", "unfused_rope_ops"]
