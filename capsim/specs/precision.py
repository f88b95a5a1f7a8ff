"""Numeric formats and the mixed-precision recipe of a run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from capsim.errors import InfeasibleError, SpecError


class DType(StrEnum):
    """A number format. ``bytes`` is its storage size; ``peak_key`` the datasheet column that rates it."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    MXFP8 = "mxfp8"  # OCP microscaling FP8: E4M3 values, one E8M0 scale per 32 (Blackwell tensor cores)
    NVFP4 = "nvfp4"  # NVIDIA FP4: E2M1 values, one E4M3 scale per 16, plus one FP32 scale per tensor (Blackwell)
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bytes(self) -> float:
        """Storage per value, block scales included."""
        return _BYTES[self]

    @property
    def peak_key(self) -> str:
        """The accelerator peak that rates math in this format (fp16 and bf16 share tensor-core rates; MXFP8 runs
        at the FP8 rate and NVFP4 at the FP4 rate: NVIDIA HGX/GB200 spec tables list one FP8/FP6 and one FP4 row)."""
        return {DType.FP16: "bf16", DType.MXFP8: "fp8", DType.NVFP4: "fp4"}.get(self, self.value)

    @property
    def block_scaled(self) -> bool:
        """Whether the tensor cores apply the per-block scales inside the GEMM (Blackwell's block-scaled MMA, sm100
        and later): MXFP8 and NVFP4."""
        return self in (DType.MXFP8, DType.NVFP4)


_BYTES = {
    DType.FP32: 4.0,
    DType.TF32: 4.0,  # stored as fp32, multiplied on tensor cores
    DType.FP16: 2.0,
    DType.BF16: 2.0,
    DType.FP8: 1.0,
    # An E8M0 byte per 32 values / an E4M3 byte per 16 values (TE recipe/__init__.py MXFP8BlockScaling and
    # NVFP4BlockScaling docstrings, NVIDIA/TransformerEngine@v2.8); NVFP4's one FP32 per tensor is negligible.
    DType.MXFP8: 1.0 + 1.0 / 32,
    DType.NVFP4: 0.5 + 1.0 / 16,
    DType.INT8: 1.0,
    DType.INT4: 0.5,
}


class Fp8Scaling(StrEnum):
    """How an FP8 recipe scales each tensor into FP8's range (Transformer Engine's recipes)."""

    DELAYED = "delayed"  # scale from the amax history of earlier steps (DelayedScaling, TE's default recipe)
    CURRENT = "current"  # scale from the tensor's own amax, found by a pass before the cast (Float8CurrentScaling)


def dtype(value: str | DType, field: str = "dtype") -> DType:
    """Parse a dtype name, with a clear error for a wrong one."""
    try:
        return DType(str(value).lower())
    except ValueError:
        raise SpecError(field, f"unknown format {value!r}", f"use one of {', '.join(d.value for d in DType)}") from None


def require_block_scaling(fmt: DType | str, has_fp4_peak: bool, where: str) -> None:
    """A clear refusal where ``fmt`` needs Blackwell's block-scaled tensor cores and ``where`` (an accelerator or a
    calibration) lacks them: a valid plan the hardware cannot run, so infeasible (InfeasibleError, exit 1). Block-scaled MMA came with sm100 together with FP4 math, so an FP4 peak is capsim's
    mark of it (TE's MXFP8/NVFP4 recipes require compute capability 10.0+: transformer_engine/pytorch/fp8.py
    L48-61 check_mxfp8_support / check_nvfp4_support, TE v2.8)."""
    fmt = dtype(fmt, "precision.compute")
    if fmt.block_scaled and not has_fp4_peak:
        raise InfeasibleError("precision.compute", f"{fmt.value} needs Blackwell block-scaled tensor cores (sm100+), "
                        f"which {where} lacks (no fp4 peak)", "use fp8 or bf16 here, or a Blackwell accelerator: "
                        "B200, B300, GB200 or GB300")


@dataclass(frozen=True)
class Precision:
    """Where each kind of tensor lives and which format the matrix math runs in.

    Defaults are Megatron-LM's bf16 recipe: 16-bit weights and activations, fp32 gradient
    accumulation ("main_grad"), fp32 master weights and fp32 Adam moments (18 bytes per parameter).
    """

    compute: DType = DType.BF16  # format of GEMM and attention math (sets the peak FLOP/s)
    weights: DType = DType.BF16  # the working copy used in forward/backward
    activations: DType = DType.BF16  # stored activations, prefill/decode tensors
    kv_cache: DType = DType.BF16  # serving KV cache
    gradients: DType = DType.FP32  # gradient buffer that is accumulated and reduced
    optimizer_states: DType = DType.FP32  # each of Adam's two moments
    master_weights: DType | None = DType.FP32  # fp32 copy kept by mixed precision; None when weights are fp32
    loss_scaling: bool = False  # fp16 needs dynamic loss scaling (Micikevicius et al. 2018)
    # FP8 recipes only: how tensors are scaled; None = the framework release's recipe (Framework.run_precision; TE's
    # default DelayedScaling where no release is applied). Weights stored in FP8 (Megatron-Core's
    # --fp8-param-gather, NeMo's fp8_params) are weights=FP8.
    fp8_scaling: Fp8Scaling | None = None

    def __post_init__(self) -> None:
        for name in ("compute", "weights", "activations", "kv_cache", "gradients", "optimizer_states"):
            object.__setattr__(self, name, dtype(getattr(self, name), f"precision.{name}"))
        if self.master_weights is not None:
            object.__setattr__(self, "master_weights", dtype(self.master_weights, "precision.master_weights"))
        if self.fp8_scaling is not None:
            try:
                object.__setattr__(self, "fp8_scaling", Fp8Scaling(str(self.fp8_scaling).lower()))
            except ValueError:
                raise SpecError("precision.fp8_scaling", f"unknown scaling {self.fp8_scaling!r}",
                                f"use one of {', '.join(s.value for s in Fp8Scaling)}") from None

    @property
    def optimizer_bytes_per_param(self) -> float:
        """Adam's two moments plus the master copy (ZeRO's K; 12 for fp32 moments and master)."""
        master = self.master_weights.bytes if self.master_weights is not None else 0.0
        return 2 * self.optimizer_states.bytes + master

    def with_(self, **changes: object) -> Precision:
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> Precision:
        """A named recipe: fp32, tf32, fp16 (loss scaling), bf16, fp8 (Transformer Engine, the release's scaling:
        delayed where no release says), fp8-delayed and fp8-current (that per-tensor scaling, whatever the
        release's), mxfp8 and nvfp4 (Transformer Engine's block-scaled recipes, Blackwell only)."""
        try:
            return _PRESETS[name.lower()]
        except KeyError:
            raise SpecError("precision", f"unknown recipe {name!r}", f"use one of {', '.join(_PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return {k: (str(v) if v is not None and not isinstance(v, bool) else v) for k, v in self.__dict__.items()}

    def summary(self) -> str:
        """One line a person reads: ``fp8 GEMMs (current scaling), fp8 weights, bf16 gradients, fp32 master,
        fp32 Adam moments``."""
        scaling = f" ({self.fp8_scaling} scaling)" if self.compute is DType.FP8 and self.fp8_scaling else ""
        master = f", {self.master_weights} master" if self.master_weights is not None else ", no master copy"
        return (f"{self.compute} GEMMs{scaling}, {self.weights} weights, {self.gradients} gradients{master}, "
                f"{self.optimizer_states} Adam moments" + (", loss scaling" if self.loss_scaling else ""))


_PRESETS: dict[str, Precision] = {
    "fp32": Precision(DType.FP32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, None),
    "tf32": Precision(DType.TF32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, None),
    # fp16 with fp32 main grads and master weights, as Megatron-LM and Korthikanti et al. 2022 (18 B/param).
    "fp16": Precision(DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP32, DType.FP32, DType.FP32, True),
    "bf16": Precision(),
    # fp8 GEMMs with bf16 weights kept for the optimizer (NVIDIA Transformer Engine recipe), delayed scaling: TE's
    # default recipe (transformer_engine/common/recipe/__init__.py DelayedScaling, TE v1.8 to v2.x on Hopper).
    "fp8": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32),
    "fp8-delayed": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32,
                             fp8_scaling=Fp8Scaling.DELAYED),
    # Per-tensor current scaling (TE v2.2 Float8CurrentScaling; Megatron-Core --fp8-recipe tensorwise).
    "fp8-current": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32,
                             fp8_scaling=Fp8Scaling.CURRENT),
    # Transformer Engine's block-scaled recipes (TE v2.8, NVIDIA/TransformerEngine@40c69e7,
    # transformer_engine/common/recipe/__init__.py): MXFP8BlockScaling (L260-297: E4M3, 32-value blocks, E8M0 scales,
    # rowwise and columnwise copies both quantized from the 16-bit input) and NVFP4BlockScaling (L381-446: E2M1,
    # 16-value blocks, E4M3 block scales and an FP32 tensor scale; 2D 16x16 weight scales, random Hadamard transform
    # on the wgrad operands, stochastic rounding of gradients). Weights, master copy and moments as the fp8 recipe;
    # which GEMMs run in the format and the quantize work around them: capsim.analytic.fp8.
    "mxfp8": Precision(DType.MXFP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32),
    "nvfp4": Precision(DType.NVFP4, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32),
    # ZeRO paper's mixed-precision Adam: fp16 weights and gradients, K = 12 (Rajbhandari et al. 2020, Sec. 3.1).
    "fp16-zero": Precision(DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP32, DType.FP32, True),
}
PRESET_NAMES = tuple(_PRESETS)
