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

Blackwell's block-scaled recipes (TE v2.8, NVIDIA/TransformerEngine@40c69e7) quantize the same GEMMs (the same TE
modules under the same autocast; attention, LM head and router stay 16-bit: TE's ``fp8_dpa`` is off and "Not yet
supported" for NVFP4, transformer_engine/common/recipe/__init__.py L421-423). Their quantize work differs:
- MXFP8 (``MXFP8BlockScaling``, recipe/__init__.py L260-297): one scale per 32 values, E8M0, 1D on both operands;
  because a block runs along one axis, the rowwise copy and the columnwise (transposed-use) copy are "both computed
  from the high precision input" in one quantize kernel: read 16 bits, write two copies of 1 + 1/32 bytes per
  value. The scale is found per block inside that kernel, so there is no amax pass.
- NVFP4 (``NVFP4BlockScaling``, L381-446; transformer_engine/pytorch/csrc/quantizer.cpp NVFP4Quantizer::quantize_impl
  L1438-1640): E2M1 values, an E4M3 scale per 16 values and an FP32 scale per tensor, which needs the tensor's amax
  first. Inputs and output gradients (random Hadamard transform on their columnwise, wgrad-side copy; stochastic
  rounding on gradients, QParams L432-446) take three passes over the 16-bit tensor: the amax kernel
  (``nvte_hadamard_transform_amax``, rowwise and post-RHT amax together, L1485-1491), the rowwise quantize (L1562)
  and the fused RHT + columnwise quantize (``nvte_hadamard_transform_cast_fusion_columnwise``, L1632), each
  copy 0.5 + 1/16 bytes per value. Weights use 2D 16x16 scales without RHT: an amax pass (L1497-1509) and one
  quantize writing both copies (L1638).
TE's Linear keeps only the columnwise copy of its input for the backward (module/linear.py L371-385 at v2.8:
"Discard row-wise data since it is not needed in backward pass"), so a saved GEMM input costs one copy in the
format. TE leaves the NVFP4 paper's "last few layers in higher precision" to the training script (docs/examples/
fp8_primer.ipynb, "NVFP4 training recipe", TE v2.10); Megatron-Core does it only with --first-last-layers-bf16,
which Megatron-Bridge's ``bf16_with_nvfp4_mixed`` leaves off (src/megatron/bridge/training/mixed_precision.py,
NVIDIA-NeMo/Megatron-Bridge@067f987), so every layer's TE GEMMs are NVFP4 here.

The fused QKV and a dense MLP's fc1 are TE's LayerNormLinear (Megatron-Core's TELayerNormColumnParallelLinear, with
``input_layernorm`` / ``pre_mlp_layernorm`` IdentityOp: megatron/core/models/gpt/gpt_layer_specs.py L59, L69, L119 at
core_v0.8.0; an MoE layer's pre_mlp_layernorm is its own TENorm and its experts take dispatched rows, MLA's
projections follow a TENorm), which hands its input quantizer to the norm kernel (``NormQuantize``, a release fact):
- TE v1.8 / v1.13 (module/layernorm_linear.py L126-137 / L129-147): under FP8 the (RMS)norm kernel writes the FP8
  copy of its output and records its amax (``fp8_out``: delayed scaling, TE 1.x's only recipe); no cast kernel. The
  wgrad's transposed copy is a separate ``tex.fp8_transpose`` of the (gathered) FP8 norm output in the backward
  (L584 / L599).
- TE v2.0-v2.7 (module/layernorm_linear.py ``with_quantized_norm``; csrc/extensions/normalization.cpp rmsnorm_fwd):
  a ``Float8Quantizer`` (delayed) output is written by the norm kernel; a columnwise copy is a separate
  ``nvte_transpose`` of it (common/normalization/rmsnorm/rmsnorm_api.cpp L86-91 at v2.0), or, under SP, made after
  the rowwise-only gather (``supports_only_rowwise_all_gather``). MXFP8 (v2.0: "Use high precision output from
  normalization", then ``nvte_quantize``) and current scaling (v2.2: ``force_unfused_kernel`` for every quantizer
  but Float8Quantizer) are computed in 16 bits and quantized after, as a plain cast.
- TE v2.8 onward (normalization.cpp ``Impl``, v2.8 and 71bbefbf L40-62): delayed FULLY_FUSED as above; current
  scaling FUSED_NORM_AMAX_FP8: the norm kernel writes 16 bits and the amax, then ``quantize_with_amax`` casts (the
  amax pass goes, the cast stays); MXFP8 UNFUSED unless NVTE_NORM_FWD_USE_CUDNN (off by default); NVFP4 UNFUSED for
  the inputs, whose quantizer takes the post-RHT amax (``with_rht and with_post_rht_amax``, quantization.py L1333).
The gradient casts in the backward (``grad_output_preprocess``) are never fused into a norm.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.moe import GROUPED
from capsim.analytic.primitives import Op, OpKind, Saved
from capsim.specs.precision import DType, Fp8Scaling, Precision

# The weight GEMMs Transformer Engine's modules run (see the module docstring); everything else stays 16-bit.
# A Mamba-2 layer's in_proj and out_proj are TE modules too (Megatron-LM core_v0.14.0
# megatron/core/models/mamba/mamba_layer_specs.py L28: TELayerNormColumnParallelLinear, TERowParallelLinear), as are
# a Gated DeltaNet's (Megatron-LM@d98e8a64 megatron/core/models/gpt/experimental_attention_variant_module_specs.py
# L88-90: backend.column_parallel_layer_norm_linear / row_parallel_linear); their chunked scans (scan_*) run in the
# mamba_ssm / FLA Triton kernels, 16-bit.
FP8_GEMMS = frozenset({"qkv", "attn_out", "mlp_up", "mlp_down", "shared_up", "shared_down", "cross_qkv",
                       "cross_out", "q_proj", "q_down", "q_up", "kv_down", "kv_up", "ssm_in_proj", "ssm_out_proj"})
# Compute formats that are Transformer Engine recipes: per-tensor FP8 and the block-scaled MXFP8 / NVFP4.
QUANTIZED = frozenset({DType.FP8, DType.MXFP8, DType.NVFP4})
# 16-bit passes over an activation or gradient before its quantized copies are written (module docstring): one cast
# for FP8 delayed scaling and MXFP8; FP8 current scaling adds an amax pass; NVFP4 an amax pass plus separate
# rowwise and RHT-columnwise quantize kernels.
_RHT_FLOPS_PER_VALUE = 2.0 * 16
# GEMMs whose input is the attention core's output, which the core keeps in 16 bits for its own backward (TE
# FusedAttnFunc saves (q, k, v, out) outside FP8 attention, TE@v2.8 attention/dot_product_attention/backends.py
# L1240, L1276): their quantized copy comes on top of it, unless selective recompute checkpoints the core (CORE class).
_CORE_OUTPUT_INPUT = frozenset({"attn_out", "cross_out"})
# Under sequence parallelism TE quantizes the sequence-sharded tensor on each rank before the all-gather, so these
# casts cover 1/t of the rows: the inputs of the column-parallel GEMMs (LayerNormLinear: the norm writes the quantized
# copy of the local rows, then ``gather_along_first_dim(ln_out, tp_group, quantizer=...)``) and the output gradients
# of the row-parallel ones (``grad_output_preprocess``: "FP8 case with gather", cast then gather) (TE@v1.8
# module/layernorm_linear.py L126-157, module/base.py grad_output_preprocess; TE@71bbefbf, Megatron-Bridge v0.4.0's
# pin, module/layernorm_linear.py L243-276, module/linear.py L570-610, module/base.py L1172-1235). The routed
# experts' GEMMs (grouped) take their rows from the dispatcher, not from a sequence-parallel gather.
_SP_GATHERED_INPUT = frozenset({"qkv", "mlp_up", "cross_qkv"})
_SP_GATHERED_GRAD = frozenset({"attn_out", "mlp_down", "cross_out"})
PAD, UNPAD = "moe_fp8_pad", "moe_fp8_unpad"  # the grouped experts' row padding copies (``grouped_padding``)  # a 16-point Hadamard transform: a 16x16 matrix times each 16 values


class NormQuantize(StrEnum):
    """What the norm kernel of TE's LayerNormLinear does of the quantize of its output (module docstring)."""

    NONE = "none"  # no LayerNormLinear under FP8 here: the cast after the norm is its own kernel
    FP8 = "fp8"  # the norm writes the per-tensor FP8 copy under delayed scaling (TE 1.x to 2.7)
    FP8_AMAX = "fp8+amax"  # that, and under current scaling the norm finds the amax (TE v2.8 onward)


# The GEMMs whose input LayerNormLinear normalizes, and the norm op before each (module docstring).
NORM_FED = {"qkv": "norm_attn", "mlp_up": "norm_mlp"}


class CastKind(StrEnum):
    """What one quantize op does (the names of the cast ops)."""

    INPUT = "fp8_cast"  # a GEMM input, forward: cast + transpose (both copies)
    GRAD = "fp8_cast.grad"  # a GEMM's output gradient, backward: cast + transpose (both copies)
    AMAX = "fp8_amax"  # a pass finding the tensor's amax before its cast (FP8 current scaling, NVFP4)
    INPUT_COL = "fp8_cast.col"  # NVFP4: the RHT + columnwise quantize of a GEMM input, its own kernel
    GRAD_COL = "fp8_cast.grad_col"  # NVFP4: the same for an output gradient
    TRANSPOSE = "fp8_transpose"  # a norm-fed input's transposed FP8 copy made from its rowwise one (NormQuantize)


def _base(name: str) -> str:
    return name.split(".")[0]


def is_fp8(op: Op, precision: Precision) -> bool:
    """Whether ``op`` runs in the recipe's quantized format under ``precision`` (an FP8, MXFP8 or NVFP4 compute
    format and one of TE's weight GEMMs)."""
    return precision.compute in QUANTIZED and op.kind is OpKind.GEMM and _base(op.name) in FP8_GEMMS


def gemm_format(name: str, precision: Precision) -> DType:
    """The math format of a GEMM named ``name``: the recipe's quantized format only for TE's weight GEMMs, the
    16-bit activation format for the others under a quantized recipe, else the recipe's compute format."""
    if precision.compute not in QUANTIZED:
        return precision.compute
    return precision.compute if _base(name) in FP8_GEMMS else precision.activations


# The GEMM roles the FP8 recipes run with split accumulation (partial sums promoted to FP32; cuBLASLt's fast
# accumulation off): dgrad and wgrad, fprop fast. TE: module/base.py _2X_ACC_FPROP = False, _2X_ACC_DGRAD =
# _2X_ACC_WGRAD = True in every release v1.0-v2.18 (L41-43 @v1.8, L42-44 @v2.2, L57-59 @v2.8, L56-58 @v2.9); from v2.2
# DelayedScaling / Float8CurrentScaling's fp8_gemm_fprop/dgrad/wgrad say the same (common/recipe/__init__.py L232-234
# @v2.2). torchao Float8LinearConfig: gemm_config_output use_fast_accum=True, gemm_config_grad_input and
# gemm_config_grad_weight Float8GemmConfig() (use_fast_accum=False) (torchao/float8/config.py L185-187 @eab345c,
# L174-176 @0afa4c1), torch._scaled_mm's use_fast_accum being cuBLASLt's fast accumulation.
SPLIT_ACCUMULATION_ROLES = frozenset({"dgrad", "wgrad"})
SPLIT = "split"


def accumulation(name: str, precision: Precision) -> str:
    """``SPLIT`` for a quantized weight GEMM in a role the recipes accumulate in FP32 (``SPLIT_ACCUMULATION_ROLES``),
    else "" (the forward's fast accumulation, or a 16-bit GEMM)."""
    if precision.compute not in QUANTIZED or _base(name) not in FP8_GEMMS:
        return ""
    return SPLIT if name.rsplit(".", 1)[-1] in SPLIT_ACCUMULATION_ROLES else ""


def _elementwise(name: str, elements: Num, flops_per_value: float, read_b: float, write_b: float, fmt: DType,
                 count: Num, share: Num) -> Op:
    return Op(name, OpKind.ELEMENTWISE, flops_per_value * elements, elements * read_b, elements * write_b,
              (elements,), fmt, count, share=share)


def _casts(name: str, elements: Num, count: Num, share: Num, precision: Precision, amax: bool = True,
           copies: Num = 2.0) -> list[Op]:
    """The quantize work on ``elements`` 16-bit values (times ``count``) before a quantized GEMM, per recipe (see
    the module docstring): each pass reads the 16-bit tensor; the quantized copies (rowwise and columnwise) are
    written at the format's bytes per value, block scales included. ``amax``: False where the norm kernel found the
    amax; ``copies``: per-tensor FP8 copies the cast writes (1 where the transpose comes after a gather)."""
    ab, fmt = precision.activations.bytes, precision.compute
    qb = fmt.bytes
    out = []
    if amax and (precision.fp8_scaling is Fp8Scaling.CURRENT or fmt is DType.NVFP4):
        out.append(_elementwise(CastKind.AMAX.value, elements, 1.0, ab, 0.0, precision.activations, count, share))
    if fmt is DType.NVFP4:
        col = CastKind.GRAD_COL if name == CastKind.GRAD.value else CastKind.INPUT_COL
        out.append(_elementwise(name, elements, 1.0, ab, qb, fmt, count, share))
        out.append(_elementwise(col.value, elements, 1.0 + _RHT_FLOPS_PER_VALUE, ab, qb, fmt, count, share))
        return out
    copies = np.asarray(copies, float)
    out.append(_elementwise(name, elements, copies, ab, copies * qb, fmt, count, share))
    return out


def _norm_fused(op: Op, precision: Precision, norm: NormQuantize) -> bool:
    """Whether ``op`` is a per-tensor FP8 GEMM whose input LayerNormLinear's norm kernel quantizes (or finds the
    amax of) under ``norm`` (module docstring): the QKV and a dense fc1, not the grouped experts."""
    if norm is NormQuantize.NONE or precision.compute is not DType.FP8 or not is_fp8(op, precision):
        return False
    return _base(op.name) in NORM_FED and op.impl != GROUPED


def _norm_input_casts(op: Op, rows: Num, gathered: np.ndarray, precision: Precision, norm: NormQuantize
                      ) -> list[Op]:
    """The forward quantize kernels left of a norm-fed GEMM's input (``_norm_fused``) on ``rows`` local rows: none
    under delayed scaling (the norm writes the FP8 copy); under current scaling the amax pass (unless
    ``FP8_AMAX``) and the cast, writing both copies, or only the rowwise one when the input is gathered (its
    transpose made after, ``norm_transposes``)."""
    if precision.fp8_scaling is not Fp8Scaling.CURRENT:
        return []
    _m, _n, k = op.shape
    copies = np.where(gathered, 1.0, 2.0)
    return _casts(CastKind.INPUT.value, rows * k, op.count, op.share, precision,
                  amax=norm is not NormQuantize.FP8_AMAX, copies=copies)


def _sp_rows(op: Op, names: frozenset[str], sp_shard: Num) -> Num:
    """The share of ``op``'s rows a rank quantizes: 1/``sp_shard`` for a dense GEMM of ``names`` (see
    ``_SP_GATHERED_INPUT``), else all of them."""
    return 1.0 / np.asarray(sp_shard, float) if _base(op.name) in names and op.impl != GROUPED else 1.0


def forward(ops: list[Op], precision: Precision, sp_shard: Num = 1.0, norm: NormQuantize = NormQuantize.NONE
            ) -> list[Op]:
    """The forward op list with TE's GEMMs in the recipe's quantized format, their inputs' casts before them, and
    their saved inputs kept as one quantized copy; unchanged when the recipe is not quantized. ``sp_shard``: the
    ranks a sequence-parallel GEMM input is gathered from (t under SP, else 1; arrays over layouts), whose casts
    run before the gather on 1/t of the rows (``_SP_GATHERED_INPUT``). ``norm``: what the release's LayerNormLinear
    norm kernel does of the quantize of the QKV and dense fc1 inputs (``NormQuantize``): under delayed scaling the
    norm op writes the FP8 copy (its output bytes at the format's width) and no cast runs."""
    if precision.compute not in QUANTIZED:
        return ops
    scale = precision.compute.bytes / precision.activations.bytes
    out: list[Op] = []
    for op in ops:
        if not is_fp8(op, precision):
            out.append(op)
            continue
        m, _n, k = op.shape
        rows = np.asarray(m, float) * _sp_rows(op, _SP_GATHERED_INPUT, sp_shard)
        if _norm_fused(op, precision, norm):
            out += _norm_input_casts(op, rows, np.asarray(sp_shard, float) > 1, precision, norm)
            if precision.fp8_scaling is not Fp8Scaling.CURRENT:
                out = _norm_writes_fp8(out, NORM_FED[_base(op.name)], op, precision)
        else:
            out += _casts(CastKind.INPUT.value, rows * k, op.count, op.share, precision)
        saved = tuple((kind, size * scale) for kind, size in op.saved)
        if _base(op.name) in _CORE_OUTPUT_INPUT:
            saved += tuple((Saved.CORE, size) for _kind, size in op.saved)
        out.append(replace(op, dtype=precision.compute, saved=saved))
    return out


def _norm_writes_fp8(out: list[Op], norm_name: str, op: Op, precision: Precision) -> list[Op]:
    """``out`` with the last norm op named ``norm_name`` writing ``op``'s share of its output in FP8 instead of
    16 bits (the fused norm + cast of delayed scaling)."""
    for i in range(len(out) - 1, -1, -1):
        if out[i].name.split(".")[0] == norm_name:
            fused = np.asarray(op.share, float) * np.asarray(op.count, float)
            keep = 1.0 - fused * (1.0 - precision.compute.bytes / precision.activations.bytes)
            return out[:i] + [replace(out[i], bytes_written=out[i].bytes_written * keep)] + out[i + 1:]
    return out


def norm_transposes(ops: list[Op], precision: Precision, sp_shard: Num = 1.0,
                    norm: NormQuantize = NormQuantize.NONE) -> list[Op]:
    """The separate transposes of the norm-fed GEMM inputs' FP8 copies (``_norm_fused``), for the wgrad: a
    ``fp8_transpose`` kernel (read and write one byte per value) over all the GEMM's rows, gathered ones included
    (TE@v1.8 layernorm_linear.py L584 transposes ``ln_out_total``); under delayed scaling always, under current
    scaling where the input is gathered (else its cast wrote both copies). Priced in the backward, where TE 1.x
    runs it."""
    out: list[Op] = []
    for op in ops:
        if not _norm_fused(op, precision, norm):
            continue
        m, _n, k = op.shape
        share = np.asarray(op.share, float)
        if precision.fp8_scaling is Fp8Scaling.CURRENT:  # a share of 0 where the cast wrote both copies
            share = share * (np.asarray(sp_shard, float) > 1)
        qb = precision.compute.bytes
        out.append(_elementwise(CastKind.TRANSPOSE.value, np.asarray(m, float) * k, 0.0, qb, qb,
                                precision.compute, op.count, share))
    return out


def backward_casts(ops: list[Op], precision: Precision, sp_shard: Num = 1.0,
                   norm: NormQuantize = NormQuantize.NONE) -> list[Op]:
    """The casts the backward adds: each quantized GEMM's output gradient [m, n], quantized once for its data- and
    weight-gradient GEMMs (``ops`` is the forward list); a row-parallel GEMM's under SP on the 1/``sp_shard`` rows
    its rank holds, before the gather (``_SP_GATHERED_GRAD``); and the norm-fed inputs' transposes
    (``norm_transposes``)."""
    out: list[Op] = norm_transposes(ops, precision, sp_shard, norm)
    for op in ops:
        if is_fp8(op, precision):
            m, n, _k = op.shape
            rows = np.asarray(m, float) * _sp_rows(op, _SP_GATHERED_GRAD, sp_shard)
            out += _casts(CastKind.GRAD.value, rows * n, op.count, op.share, precision)
    return out


def sp_gather_bytes(precision: Precision) -> tuple[float, float]:
    """Bytes per value of a sequence-parallel all-gather under ``precision``: (a column-parallel GEMM's input, a
    row-parallel GEMM's output gradient). With TE's quantized GEMMs the rank quantizes its rows and gathers the
    quantized copy (``_SP_GATHERED_INPUT``; TE@71bbefbf distributed.py ``_all_gather_fp8``,
    ``_all_gather_mxfp8``, ``_all_gather_nvfp4``: data and block scales, the format's bytes): the input one usage
    (rowwise in the forward, the wgrad's columnwise copy when re-gathered in the backward; per-tensor FP8 gathers
    rowwise and transposes after, ``supports_only_rowwise_all_gather``), the output gradient both usages for the
    block-scaled formats (module/linear.py L577-579 ``set_usage(rowwise=True, columnwise=True)``) and one for
    per-tensor FP8 (TE@v1.8 module/base.py grad_output_preprocess: cast, gather, then transpose). Else the 16-bit
    activation. Reduce-scatters stay 16-bit (GEMM outputs)."""
    if precision.compute not in QUANTIZED:
        return precision.activations.bytes, precision.activations.bytes
    q = precision.compute.bytes
    return q, (q if precision.compute is DType.FP8 else 2.0 * q)


def amax_reduced(precision: Precision) -> bool:
    """Whether a sequence-parallel quantize all-reduces its amax over the TP group first: FP8 current scaling and
    NVFP4, whose scale needs the whole tensor's amax (``capsim.analytic.training.comms``)."""
    return precision.compute is DType.NVFP4 or (precision.compute is DType.FP8
                                                and precision.fp8_scaling is Fp8Scaling.CURRENT)


def grouped_padding(ops: list[Op], precision: Precision) -> tuple[list[Op], list[Op]]:
    """(forward, backward) copies Megatron-Core's TEGroupedMLP adds around its quantized grouped GEMMs: under FP8 it
    pads each expert's rows to the quantization alignment before fc1 (the tokens and their router probabilities)
    and unpads fc2's output (megatron/core/transformer/moe/experts.py L862-890 TEGroupedMLP.forward,
    NVIDIA/Megatron-LM@0d8e0714), each one ``fused_multi_row_padding``/``unpadding`` kernel over all the experts'
    rows that reads and writes them; the backward runs the opposite copy on each gradient (transformer_engine/pytorch/
    module/fp8_padding.py L21-61, fp8_unpadding.py, NVIDIA/TransformerEngine@v2.8). TE skips the copy only when
    every expert's count is already aligned (fp8_padding.py L121), which the benchmarks' random routing
    (``moe_router_force_load_balancing``: i.i.d. normal logits per token, moe_utils.py L901-935 RandomSTE) leaves
    to chance: 16 or more local experts each a multiple of 16 rows."""
    if precision.compute not in QUANTIZED:
        return [], []
    fwd: list[Op] = []
    bwd: list[Op] = []
    ab = precision.activations.bytes
    for op in ops:
        if op.kind is not OpKind.GEMM or op.impl != GROUPED or not is_fp8(op, precision):
            continue
        m, n, k = op.shape
        rows = np.asarray(m, float) * op.count
        if _base(op.name) == "mlp_up":  # the tokens [rows, hidden] and their probabilities [rows] fp32
            moved = ((f"{PAD}", rows * k * ab), (f"{PAD}_probs", rows * 4.0))
        else:  # fc2's output [rows, hidden]
            moved = ((f"{UNPAD}", rows * n * ab),)
        for name, nbytes in moved:
            fwd.append(Op(name, OpKind.ELEMENTWISE, 0.0, nbytes, nbytes, (nbytes / ab,), precision.activations,
                          share=op.share))
            bwd.append(Op(name + ".bwd", OpKind.ELEMENTWISE, 0.0, nbytes, nbytes, (nbytes / ab,),
                          precision.activations, share=op.share))
    return fwd, bwd


def weight_cast_bytes(params: Num, precision: Precision) -> Num:
    """Bytes moved quantizing ``params`` 16-bit weights (both copies) once per optimizer step: one read for FP8 and
    MXFP8, two for NVFP4 (its amax pass, then the 2D-scaled quantize); 0 when the weights are already stored in
    the format (FP8 parameters) or the recipe is not quantized."""
    if precision.compute not in QUANTIZED or precision.weights is precision.compute:
        return np.zeros(np.shape(params))
    reads = 2.0 if precision.compute is DType.NVFP4 else 1.0
    return np.asarray(params, float) * (reads * precision.weights.bytes + 2.0 * precision.compute.bytes)


__all__ = ["FP8_GEMMS", "QUANTIZED", "SPLIT", "SPLIT_ACCUMULATION_ROLES", "CastKind", "accumulation", "amax_reduced",
           "backward_casts", "forward", "gemm_format", "grouped_padding", "is_fp8", "sp_gather_bytes", "weight_cast_bytes"]
