"""Model features a framework runs as eager PyTorch ops instead of one fused kernel: each eager op is one kernel
(and one host launch) of its own, a pass over its tensor. Which framework does so is a release fact
(``Framework.glu_clamp_eager``, ``Framework.rope_mscale_unfused``, ``Framework.moe_fc1_bias_eager``); what the op
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

import numpy as np

from capsim._types import Num
from capsim.analytic.moe import GROUPED
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.model import ModelSpec
from capsim.specs.precision import DType

# Names of the ops below (the expert-node and host-run code places the clamp and fc1's bias with the experts).
CLAMP_OPS = frozenset({"glu_clamp_gate", "glu_clamp_up", "glu_clamp_cat"})
FC1_BIAS_OPS = frozenset({"moe_fc1_bias_add", "moe_fc1_bias_cat"})
EXPERT_OPS = CLAMP_OPS | FC1_BIAS_OPS
ROPE_OPS = frozenset({"rope_cos", "rope_neg", "rope_rotate", "rope_sin", "rope_add", "rope_out", "rope_tables"})


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


def unfused_rope_ops(model: ModelSpec, rope: Op, heads: Num, kv_heads: Num, positions: Num) -> list[Op]:
    """Megatron-Core's unfused RoPE in place of the fused ``rope`` op: once over the queries, once over the keys
    (``positions``: the micro-batch's sequence length, the rows of its cos and sin tables)."""
    tokens = np.asarray(rope.shape[0], float) / np.maximum(np.asarray(heads, float) + kv_heads, 1e-30) / model.head_dim
    d = model.head_dim
    return [op for part in (heads, kv_heads)
            for op in _rope_one(tokens * np.asarray(part, float) * d, positions, d, rope.dtype)]


def apply(ops: list[Op], model: ModelSpec, positions: Num, heads: Num, kv_heads: Num, glu_clamp_eager: bool,
          rope_unfused: bool, fc1_bias_eager: bool = False) -> list[Op]:
    """The forward op list with the framework's eager paths for this model's features: the clamp after each fc1
    of a clamped GLU (``glu_clamp_eager``), an unfused RoPE in place of the fused one for a YaRN model
    (``rope_unfused``), and a biased model's routed-expert fc1 bias outside the grouped GEMM (``fc1_bias_eager``)."""
    clamp = glu_clamp_eager and model.glu_clamp is not None
    rope = rope_unfused and model.yarn_factor is not None
    bias = fc1_bias_eager and model.bias and model.is_moe
    if not (clamp or rope or bias):
        return ops
    out: list[Op] = []
    for op in ops:
        if rope and op.name == "rope":
            out += unfused_rope_ops(model, op, heads, kv_heads, positions)
            continue
        out.append(op)
        if bias and op.name == "mlp_up" and op.impl == GROUPED:
            out += fc1_bias_ops(op)
        if clamp and op.name == "mlp_up":
            out += clamp_ops(op)
    return out


__all__ = ["CLAMP_OPS", "EXPERT_OPS", "FC1_BIAS_OPS", "ROPE_OPS", "apply", "clamp_ops", "fc1_bias_ops", "unfused_rope_ops"]
