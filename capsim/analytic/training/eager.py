"""The memory traffic a block's pointwise ops add when they run as torch eager's separate aten kernels instead of
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

from capsim.analytic.moe import GROUPED  # the impl of the routed experts' GEMMs around their mlp_act
from capsim.analytic.primitives import Op, OpKind

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
# NeMo AutoModel 8d9bfb9 nemo_automodel/components/models/gpt_oss/layers.py L30-40 _apply_rotary_emb (qwen3_moe/
# layers.py L132-133 calls it too), per element of q and k, all in the activation format: x1 * cos, x2 * sin,
# x2 * cos, x1 * sin (1b each), the sub and the add (1.5b each), cat (2b): 9b; backward: the four products with cos
# and sin (4b), sub's neg (1b), the two adds of each half's grads (3b), cat (2b): 10b (benchmarks/eager_kernels.py
# rope_half, 18.5 and 20.2 bytes per element at bf16 with the reads and casts of cos and sin, left out as for ROPE).
ROPE_HALF = Kernels((9.0, 0.0), (10.0, 0.0), (2.0, 3.0), 0,
                    "AM@8d9bfb9 nemo_automodel/components/models/gpt_oss/layers.py L30-40 _apply_rotary_emb "
                    "(rotate-half in the activation format): 8 kernels forward, 8 backward")
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
    """Which of a block's pointwise ops run as eager aten kernels (``Framework.eager_norm`` /
    ``eager_pointwise``, both off under ``torch_compile``; the final norm is outside the compiled blocks).
    ``experts``: the routed experts' activation runs eager with the rest (False: it is its own compiled function,
    ``Framework.compiled_expert_act``); ``rope_half``: RoPE of non-MLA attention is the rotate-half form
    (``ROPE_HALF``), MLA's stays the complex fp32 form (``Framework.eager_rope_half``)."""

    norm: bool = False
    pointwise: bool = False
    final_norm: bool = False
    experts: bool = True
    rope_half: bool = False


FUSED = Eager()  # every pointwise op fused: no extra ops


def extra_ops(ops: list[Op], eager: Eager, final: bool = False, mla: bool = False) -> tuple[list[Op], list[Op]]:
    """(forward, backward) ops carrying the bytes that ``eager``'s kernels move beyond the fused ``ops`` (one
    layer's forward op list, or the head's with ``final``); RMSNorm only (torch's LayerNorm is one kernel). ``mla``:
    the layer's attention is MLA (its RoPE on the rope dims keeps the complex form)."""
    fwd: list[Op] = []
    bwd: list[Op] = []
    prev: Op | None = None
    for op in ops:
        name = op.name.split(".")[0]
        routed = prev is not None and prev.name.split(".")[0] == "mlp_up" and prev.impl == GROUPED
        prev = op
        if name in NORM_OPS and op.kind is OpKind.NORM and op.impl == "rmsnorm" \
                and (eager.final_norm if final else eager.norm):
            kernels = RMSNORM
        elif name in POINTWISE and eager.pointwise and not final and (name != "mlp_act" or op.impl == "swiglu") \
                and (eager.experts or not routed):
            kernels = ROPE_HALF if name == "rope" and eager.rope_half and not mla else POINTWISE[name]
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


__all__ = ["FUSED", "NORM_OPS", "PREFIX", "RMSNORM", "ROPE", "ROPE_HALF", "SWIGLU", "Eager", "Kernels", "extra_ops"]
