"""Numeric formats and the mixed-precision recipe of a run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from capsim.errors import SpecError


class DType(StrEnum):
    """A number format. ``bytes`` is its storage size; ``peak_key`` the datasheet column that rates it."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bytes(self) -> float:
        return _BYTES[self]

    @property
    def peak_key(self) -> str:
        """The accelerator peak that rates math in this format (fp16 and bf16 share tensor-core rates)."""
        return "bf16" if self is DType.FP16 else self.value


_BYTES = {
    DType.FP32: 4.0,
    DType.TF32: 4.0,  # stored as fp32, multiplied on tensor cores
    DType.FP16: 2.0,
    DType.BF16: 2.0,
    DType.FP8: 1.0,
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
    # FP8 recipes only: how tensors are scaled (None when compute is not FP8). Weights stored in FP8 (Megatron-Core's
    # --fp8-param-gather, NeMo's fp8_params) are weights=FP8.
    fp8_scaling: Fp8Scaling | None = None

    def __post_init__(self) -> None:
        for name in ("compute", "weights", "activations", "kv_cache", "gradients", "optimizer_states"):
            object.__setattr__(self, name, dtype(getattr(self, name), f"precision.{name}"))
        if self.master_weights is not None:
            object.__setattr__(self, "master_weights", dtype(self.master_weights, "precision.master_weights"))
        if self.compute is DType.FP8 and self.fp8_scaling is None:
            object.__setattr__(self, "fp8_scaling", Fp8Scaling.DELAYED)  # TE's default recipe
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
        """A named recipe: fp32, tf32, fp16 (loss scaling), bf16, fp8 (Transformer Engine, delayed scaling),
        fp8-delayed, fp8-current (per-tensor current scaling)."""
        try:
            return _PRESETS[name.lower()]
        except KeyError:
            raise SpecError("precision", f"unknown recipe {name!r}", f"use one of {', '.join(_PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return {k: (str(v) if v is not None and not isinstance(v, bool) else v) for k, v in self.__dict__.items()}


_PRESETS: dict[str, Precision] = {
    "fp32": Precision(DType.FP32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, None),
    "tf32": Precision(DType.TF32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, DType.FP32, None),
    # fp16 with fp32 main grads and master weights, as Megatron-LM and Korthikanti et al. 2022 (18 B/param).
    "fp16": Precision(DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP32, DType.FP32, DType.FP32, True),
    "bf16": Precision(),
    # fp8 GEMMs with bf16 weights kept for the optimizer (NVIDIA Transformer Engine recipe), delayed scaling: TE's
    # default recipe (transformer_engine/common/recipe/__init__.py DelayedScaling, TE v1.8 to v2.x on Hopper).
    "fp8": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32,
                     fp8_scaling=Fp8Scaling.DELAYED),
    "fp8-delayed": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32,
                             fp8_scaling=Fp8Scaling.DELAYED),
    # Per-tensor current scaling (TE v2.2 Float8CurrentScaling; Megatron-Core --fp8-recipe tensorwise).
    "fp8-current": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32,
                             fp8_scaling=Fp8Scaling.CURRENT),
    # ZeRO paper's mixed-precision Adam: fp16 weights and gradients, K = 12 (Rajbhandari et al. 2020, Sec. 3.1).
    "fp16-zero": Precision(DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP32, DType.FP32, True),
}
PRESET_NAMES = tuple(_PRESETS)
