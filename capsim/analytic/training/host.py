"""Host (CPU) time to issue one layer's kernels in a training pass: the floor under that pass's GPU time.

Eager PyTorch training issues every kernel from the host; a pass whose kernels take less GPU time than the host needs
to issue them runs at the host's pace (H. He, "Making Deep Learning Go Brrrr From First Principles", 2022,
"Overhead"). Megatron-Core's all-to-all token dispatcher synchronises the host with the GPU in every MoE layer's
forward (the routing counts it reads to size the all-to-all), so the host cannot build a queue across layers there;
the floor is priced per layer and pass, which for a stack of identical layers is the same as per pass.

Per-launch host costs (cited; no fit to the validated rows):
- ``GEMM_LAUNCH_S``: one cuBLAS GEMM issued through Transformer Engine, 13.7 us median host time of the
  ``nvte_cublas_gemm`` NVTX range (10.3 us min, 645,099 calls) in the Nsight Systems profile of a Megatron-Core
  Qwen3-30B-A3B run on 8 B200 (EP 8, micro-batch 1, TE grouped GEMM), yanring/Megatron-MoE-ModelZoo issue #7
  (2025-08-18) -- an operator profile, read for this per-call figure only;
- ``EAGER_OP_S``: any other kernel, ~10 us of host time per eager PyTorch op (He 2022, "Overhead"; the same stated
  default as the serving engines' ``kernel_dispatch_s``, capsim/specs/catalog/engines.yaml).

Launch counts: one per op, except TE's grouped experts: ``GroupedLinear`` issues one cuBLAS GEMM per local expert
(``multi_stream_cublas_gemm`` loops ``nvte_cublas_gemm_v2`` over ``num_gemms`` on 4 compute streams,
transformer_engine/common/gemm/cublaslt_gemm.cu L923-966, NVIDIA/TransformerEngine@v2.9), and quantizes each
expert's input with its own kernel except under FP8 delayed scaling, which has one fused multi-tensor
cast-transpose (``multi_tensor_quantize_impl``, transformer_engine/pytorch/csrc/extensions/cast.cpp L103-149 at v2.9:
"Currently only have fused kernel for FP8 delayed scaling", else "Quantize kernels individually"), and a biased
model's fc2 bias is a scale and an add per expert (``capsim.analytic.moe._expert_bias``). The experts'
activation runs once on the concatenated rows (one kernel). CUDA graphs, which some recipes set on parts of a layer,
are not priced (capsim prices no training CUDA graphs), so the floor is an upper bound on the host time there.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from capsim._types import Num
from capsim.analytic.fp8 import CastKind
from capsim.analytic.moe import GROUPED
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.precision import DType, Fp8Scaling, Precision

GEMM_LAUNCH_S = 13.7e-6  # TE nvte_cublas_gemm host time, median (Megatron-MoE-ModelZoo issue #7 nsys profile)
EAGER_OP_S = 1.0e-5  # one eager PyTorch op's host time (He 2022, "Overhead")
# TE's quantize ops (capsim.analytic.fp8 cast names), per expert unless FP8 delayed scaling fuses them
_CASTS = frozenset(kind.value for kind in CastKind)
# fc2's eager bias (capsim.analytic.moe._expert_bias): a scale and an add per local expert
MOE_BIAS_PER_EXPERT = frozenset({"moe_bias_scale", "moe_bias_add"})


def _per_expert(op: Op, precision: Precision) -> bool:
    """Whether ``op``'s ``count`` instances are issued one launch each (see the module docstring)."""
    base = op.name.split(".")[0]
    if op.kind is OpKind.GEMM:
        return op.impl == GROUPED
    if base in MOE_BIAS_PER_EXPERT:
        return True
    if base in _CASTS:
        return not (precision.compute is DType.FP8 and precision.fp8_scaling is Fp8Scaling.DELAYED)
    return False


def launches(op: Op, precision: Precision) -> Num:
    """Kernels ``op`` launches per layer (its count where TE issues one per expert), times its share of layers."""
    count = op.count if _per_expert(op, precision) else 1.0
    return np.asarray(count, float) * np.asarray(op.share, float)


def host_s(ops: Iterable[Op], precision: Precision) -> Num:
    """Host seconds to issue ``ops`` (one layer's pass)."""
    out: Num = 0.0
    for op in ops:
        each = GEMM_LAUNCH_S if op.kind is OpKind.GEMM else EAGER_OP_S
        out = out + launches(op, precision) * each
    return out


__all__ = ["EAGER_OP_S", "GEMM_LAUNCH_S", "host_s", "launches"]
