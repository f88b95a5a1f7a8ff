"""FP8 training as Transformer Engine runs it: which GEMMs run in FP8, and the casts TE adds around each of them.

Under ``fp8_autocast`` only Transformer Engine's own linear modules compute in FP8: in a Megatron-Core GPT layer
built from the TE spec those are the fused QKV (TELayerNormColumnParallelLinear), the attention output projection
(TERowParallelLinear), the MLP's fc1/fc2, the routed experts' grouped GEMMs (TEGroupedMLP) and the shared experts, and
MLA's projections (megatron/core/models/gpt/gpt_layer_specs.py, NVIDIA/Megatron-LM@core_v0.8.0 and later). The rest
stays in 16 bits: the attention core (TEDotProductAttention runs BF16 unless ``fp8_dot_product_attention`` is set,
off by default: megatron/core/transformer/transformer_config.py), the LM head (``tensor_parallel.ColumnParallelLinear``,
not a TE module: megatron/core/models/gpt/gpt_model.py), the MoE router (TopKRouter's plain ``torch`` matmul,
megatron/core/transformer/moe/router.py) and the embedding lookup.

Each FP8 GEMM C = A B needs A and B in FP8, row-wise for the forward and data-gradient GEMMs and transposed for the
weight-gradient GEMM. TE quantizes them with one fused cast-transpose kernel per tensor (transformer_engine/pytorch/
module/linear.py L129-137: ``fp8_cast_transpose_fused`` on the input in the forward, the same on the output gradient
in the backward; TE v1.8, NVIDIA/TransformerEngine@3ec998e): it reads the 16-bit tensor and writes an FP8
copy and its FP8 transpose. The weights are cast once per optimizer step, not per micro-batch (``is_first_microbatch``
caches their FP8 copies: Megatron-Core custom_layers/transformer_engine.py, TELinear.forward). The scaling recipe
decides what else runs:
- delayed scaling (TE's ``DelayedScaling``, its default recipe through v2.x on Hopper: transformer_engine/common/
  recipe/__init__.py, HYBRID format, amax history 1024, "max"): the scale comes from earlier steps' amax history and
  the cast kernel records this step's amax as it goes; no extra pass;
- per-tensor current scaling (``Float8CurrentScaling``, TE v2.2, NVIDIA/TransformerEngine@c55e425): the scale comes
  from this tensor's own amax, which ``Float8CurrentScalingQuantizer`` finds "by scanning the input" before the
  cast (transformer_engine/pytorch/tensor/float8_tensor.py L175): one more read of the tensor.
The weight-gradient GEMM also runs in FP8 (``fp8_wgrad`` on by default). TE keeps the FP8 copy of each GEMM input for
the backward instead of the 16-bit one, so those saved activations take one byte per value.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.precision import DType, Fp8Scaling, Precision

# The weight GEMMs Transformer Engine's modules run (see the module docstring); everything else stays 16-bit.
FP8_GEMMS = frozenset({"qkv", "attn_out", "mlp_up", "mlp_down", "shared_up", "shared_down", "cross_qkv",
                       "cross_out", "q_proj", "q_down", "q_up", "kv_down", "kv_up"})


class CastKind(StrEnum):
    """What one FP8 cast quantizes (the names of the cast ops)."""

    INPUT = "fp8_cast"  # a GEMM input, forward: cast + transpose
    GRAD = "fp8_cast.grad"  # a GEMM's output gradient, backward: cast + transpose
    AMAX = "fp8_amax"  # current scaling's amax pass before a cast


def _base(name: str) -> str:
    return name.split(".")[0]


def is_fp8(op: Op, precision: Precision) -> bool:
    """Whether ``op`` runs in FP8 under ``precision`` (an FP8 compute format and one of TE's weight GEMMs)."""
    return precision.compute is DType.FP8 and op.kind is OpKind.GEMM and _base(op.name) in FP8_GEMMS


def gemm_format(name: str, precision: Precision) -> DType:
    """The math format of a GEMM named ``name``: FP8 only for TE's weight GEMMs, the 16-bit activation format for
    the others under an FP8 recipe, else the recipe's compute format."""
    if precision.compute is not DType.FP8:
        return precision.compute
    return DType.FP8 if _base(name) in FP8_GEMMS else precision.activations


def _casts(name: str, elements: Num, count: Num, share: Num, precision: Precision) -> list[Op]:
    """The cast-transpose of ``elements`` values (times ``count``): read 16 bits, write an FP8 copy and its FP8
    transpose; with current scaling an amax pass reads them once more first."""
    ab, eb = precision.activations.bytes, DType.FP8.bytes
    out = []
    if precision.fp8_scaling is Fp8Scaling.CURRENT:
        out.append(Op(CastKind.AMAX.value, OpKind.ELEMENTWISE, elements, elements * ab, 0.0, (elements,),
                      precision.activations, count, share=share))
    out.append(Op(name, OpKind.ELEMENTWISE, 2.0 * elements, elements * ab, 2.0 * elements * eb, (elements,),
                  DType.FP8, count, share=share))
    return out


def forward(ops: list[Op], precision: Precision) -> list[Op]:
    """The forward op list with TE's GEMMs in FP8, their inputs' casts before them, and their saved inputs kept
    in FP8; unchanged when the recipe is not FP8."""
    if precision.compute is not DType.FP8:
        return ops
    scale = DType.FP8.bytes / precision.activations.bytes
    out: list[Op] = []
    for op in ops:
        if not is_fp8(op, precision):
            out.append(op)
            continue
        m, _n, k = op.shape
        out += _casts(CastKind.INPUT.value, np.asarray(m, float) * k, op.count, op.share, precision)
        out.append(replace(op, dtype=DType.FP8, saved=tuple((kind, size * scale) for kind, size in op.saved)))
    return out


def backward_casts(ops: list[Op], precision: Precision) -> list[Op]:
    """The casts the backward adds: each FP8 GEMM's output gradient [m, n], cast and transposed once for its
    data- and weight-gradient GEMMs (``ops`` is the forward list)."""
    out: list[Op] = []
    for op in ops:
        if is_fp8(op, precision):
            m, n, _k = op.shape
            out += _casts(CastKind.GRAD.value, np.asarray(m, float) * n, op.count, op.share, precision)
    return out


def weight_cast_bytes(params: Num, precision: Precision) -> Num:
    """Bytes moved casting ``params`` 16-bit weights to FP8 (a copy and its transpose) once per optimizer step;
    0 when the weights are already stored in FP8 (fp8 parameters) or the recipe is not FP8."""
    if precision.compute is not DType.FP8 or precision.weights is DType.FP8:
        return np.zeros(np.shape(params))
    return np.asarray(params, float) * (precision.weights.bytes + 2.0 * DType.FP8.bytes)


__all__ = ["FP8_GEMMS", "CastKind", "backward_casts", "forward", "gemm_format", "is_fp8", "weight_cast_bytes"]
