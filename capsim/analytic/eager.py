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

Torch eager without torch.compile (torchtitan; ``Eager.norm``/``pointwise``, ``extra_ops``):
The memory traffic a block's pointwise ops add when they run as torch eager's separate aten kernels instead of
the one fused kernel each that the op list prices (``capsim.analytic.ops``: a norm reads x and writes y, RoPE reads
and writes q and k once, SwiGLU reads both halves and writes the product; their backward reads dy and x, writes dx).

A model written as torch ops and not compiled (torchtitan's Llama with ``--training.compile`` off) runs each op as
its own kernel, with fp32 intermediates where the code upcasts. The kernels below are those torch dispatches for
torchtitan's code at 9dec370 (and 1ea476e, the same functions), counted with a ``TorchDispatchMode`` over the
forward and the autograd backward (``benchmarks/eager_kernels.py``, torch 2.13 CPU: the same aten ops and autograd
formulas, tools/autograd/derivatives.yaml, as the CUDA build): each kernel's bytes per element of the op's output,
in ``b`` (the activation format) and ``f`` (fp32) bytes, views (reshape, view_as_complex, expand) moving nothing.
Inductor (``torch.compile`` of each block) fuses them back into about the op list's kernels, so a compiled block
adds nothing here. Priced as extra bytes at the streaming bandwidth on one op per op and pass, so the launches of
the extra kernels (microseconds each) are not counted, nor the fp32 tensors autograd saves for them (memory).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.moe import GROUPED
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.model import ModelSpec
from capsim.specs.precision import DType


class YarnRope(StrEnum):
    """How a release applies RoPE beside the fused kernel (``Framework.yarn_rope``): Megatron-Core's unfused path
    for a YaRN model only (its mscale), NeMo AutoModel's rotate-half for every attention but MLA (``apply``)."""

    FUSED = "fused"  # one fused RoPE kernel (the op list's ``rope``)
    MEGATRON = "megatron"  # Megatron-Core's unfused _apply_rotary_pos_emb_bshd (module docstring)
    HALVES = "halves"  # NeMo AutoModel's _apply_rotary_emb (gpt_oss, qwen3_moe): halves rotated with four products


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


F32 = 4.0  # bytes of an fp32 intermediate


@dataclass(frozen=True)
class Kernels:
    """One pointwise op's eager kernels: bytes moved per element as (bytes in ``b``, bytes in fp32) per pass, and
    the fused op the op list prices in ``b`` per element (forward, backward)."""

    fwd: tuple[float, float]
    bwd: tuple[float, float]
    fused: tuple[float, float]
    casts: int  # of those, the casts to and from fp32 per pass (b + f each): none when the activations are fp32
    source: str

    def extra(self, b: float) -> tuple[float, float]:
        """Bytes per element the eager kernels move beyond the fused op's, (forward, backward)."""
        cast = self.casts * (b + F32) if b >= F32 else 0.0  # .float() / type_as of an fp32 tensor: no kernel
        return (self.fwd[0] * b + self.fwd[1] * F32 - cast - self.fused[0] * b,
                self.bwd[0] * b + self.bwd[1] * F32 - cast - self.fused[1] * b)


# torchtitan 9dec370 torchtitan/models/norms.py L96-101 RMSNorm: x.float() (b+f), pow(2) (2f), mean(-1) (f),
# + eps and rsqrt (per row), x * rsqrt (2f), type_as (f+b), * weight (2b): 4b + 7f. Its autograd backward: grad *
# output and its sum for the weight (3b), grad * weight (2b), the cast back to fp32 (b+f), grad * rsqrt and grad * x
# with its row sum (5f), mean's expand / N (f), pow's 2 x (2f, 2f) times grad (3f), the two x grads added (3f), the
# cast to the input format (f+b): 8b + 19f. Fused (``ops.norm``): 2b forward, 3b backward.
RMSNORM = Kernels((4.0, 7.0), (8.0, 19.0), (2.0, 3.0), 2,
                  "TT@9dec370 torchtitan/models/norms.py L96-101 RMSNorm (x.float(), pow, mean, rsqrt, mul, "
                  "type_as, * weight): 8 kernels forward, 16 backward")
# TT@9dec370 torchtitan/models/llama/model.py L108-113 apply_rotary_emb, per element of q and k: .float() (b+f),
# the complex multiply by freqs_cis (2f), view_as_real, type_as (f+b): 2b + 4f; backward the same three kernels
# (the complex multiply by conj(freqs_cis), the casts): 2b + 4f. Fused (``elementwise('rope')``): 2b, 3b. The reads of
# freqs_cis itself (0.2 and 0.6 bytes per element in benchmarks/eager_kernels.py) are left out.
ROPE = Kernels((2.0, 4.0), (2.0, 4.0), (2.0, 3.0), 2,
               "TT@9dec370 torchtitan/models/llama/model.py L108-113 apply_rotary_emb in fp32 complex arithmetic")
# TT@9dec370 torchtitan/models/llama/model.py FeedForward.forward: F.silu(w1(x)) * w3(x), per element of the inner
# width: silu (2b), mul (3b); backward: grad * w3(x) (3b), grad * silu (3b), silu_backward (3b). Fused
# (``ops._ffn`` mlp_act, reading both halves): 3b forward, 5b backward.
SWIGLU = Kernels((5.0, 0.0), (9.0, 0.0), (3.0, 5.0), 0,
                 "TT@9dec370 torchtitan/models/llama/model.py FeedForward.forward F.silu(self.w1(x)) * self.w3(x)")

# op list names -> their eager kernels: the block's two norms (``final_norm`` is outside the blocks), RoPE, SwiGLU
NORM_OPS = frozenset({"norm_attn", "norm_mlp", "final_norm"})
POINTWISE = {"rope": ROPE, "mlp_act": SWIGLU}
PREFIX = "eager_"  # the extra ops' names: eager_<op>, priced at the streaming bandwidth (plain aten kernels)


@dataclass(frozen=True)
class Eager:
    """Which ops a release runs as eager kernels: a block's pointwise ops (``Framework.eager_norm`` /
    ``eager_pointwise``, both off under ``torch_compile``; the final norm is outside the compiled blocks) and the
    model features below (``apply``)."""

    norm: bool = False
    pointwise: bool = False
    final_norm: bool = False
    clamp: bool = False  # a clamped GLU's clamp as eager ops (``Framework.glu_clamp_eager``, ``clamp_ops``)
    yarn_rope: YarnRope = YarnRope.FUSED  # the release's RoPE form (``Framework.yarn_rope``, ``unfused_rope_ops``)
    fc1_bias: bool = False  # routed experts' fc1 bias outside the grouped GEMM (``Framework.moe_fc1_bias_eager``)
    # the routed experts' activation runs eager with the rest under ``pointwise`` (False: it is its own compiled
    # function, ``Framework.compiled_expert_act``)
    experts: bool = True


FUSED = Eager()  # every pointwise op fused: no extra ops


def extra_ops(ops: list[Op], eager: Eager, final: bool = False) -> tuple[list[Op], list[Op]]:
    """(forward, backward) ops carrying the bytes that ``eager``'s kernels move beyond the fused ``ops`` (one
    layer's forward op list, or the head's with ``final``); RMSNorm only (torch's LayerNorm is one kernel)."""
    fwd: list[Op] = []
    bwd: list[Op] = []
    routed = False  # the last fc1 was the routed experts' grouped GEMM (eager ops such as fc1's bias may follow it)
    for op in ops:
        name = op.name.split(".")[0]
        if name == "mlp_up":
            routed = op.impl == GROUPED
        if name in NORM_OPS and op.kind is OpKind.NORM and op.impl == "rmsnorm" \
                and (eager.final_norm if final else eager.norm):
            kernels = RMSNORM
        elif name in POINTWISE and eager.pointwise and not final and (name != "mlp_act" or op.impl == "swiglu") \
                and (eager.experts or not routed):
            kernels = POINTWISE[name]
        else:
            continue
        elems = op.shape[0]
        f, b = kernels.extra(op.dtype.bytes)
        fwd.append(_op(PREFIX + name, op, elems, f))
        bwd.append(_op(PREFIX + name + ".bwd", op, elems, b))
    return fwd, bwd


def _op(name: str, like: Op, elems: object, per_elem: float) -> Op:
    nbytes = elems * per_elem  # type: ignore[operator]
    return replace(like, name=name, kind=OpKind.ELEMENTWISE, flops=0.0, bytes_read=nbytes / 2,
                   bytes_written=nbytes / 2, saved=(), impl="")


def apply(ops: list[Op], model: ModelSpec, positions: Num, heads: Num, kv_heads: Num, glu_clamp_eager: bool,
          yarn_rope: YarnRope = YarnRope.FUSED, fc1_bias_eager: bool = False) -> list[Op]:
    """The forward op list with the framework's eager paths for this model's features: the clamp after each fc1
    of a clamped GLU (``glu_clamp_eager``), the release's eager RoPE in place of the fused one (``yarn_rope``:
    Megatron-Core's for a YaRN model, NeMo AutoModel's rotate-half for any attention but MLA), and a biased
    model's routed-expert fc1 bias outside the grouped GEMM (``fc1_bias_eager``)."""
    clamp = glu_clamp_eager and model.glu_clamp is not None
    form = YarnRope(yarn_rope)
    # Megatron-Core's unfused path is taken for YaRN's mscale only; AutoModel's rotate-half is every non-MLA RoPE
    rope = (form is YarnRope.MEGATRON and model.yarn_factor is not None) or (form is YarnRope.HALVES
                                                                            and not model.is_mla)
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


__all__ = ["CLAMP_OPS", "EXPERT_OPS", "FC1_BIAS_OPS", "FUSED", "NORM_OPS", "PREFIX", "RMSNORM", "ROPE", "ROPE_OPS", "SWIGLU",
           "Eager", "Kernels", "YarnRope", "apply", "clamp_ops", "extra_ops", "fc1_bias_ops", "unfused_rope_ops"]
