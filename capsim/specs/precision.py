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

    def __post_init__(self) -> None:
        for name in ("compute", "weights", "activations", "kv_cache", "gradients", "optimizer_states"):
            object.__setattr__(self, name, dtype(getattr(self, name), f"precision.{name}"))
        if self.master_weights is not None:
            object.__setattr__(self, "master_weights", dtype(self.master_weights, "precision.master_weights"))

    @property
    def optimizer_bytes_per_param(self) -> float:
        """Adam's two moments plus the master copy (ZeRO's K; 12 for fp32 moments and master)."""
        master = self.master_weights.bytes if self.master_weights is not None else 0.0
        return 2 * self.optimizer_states.bytes + master

    def with_(self, **changes: object) -> Precision:
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> Precision:
        """A named recipe: fp32, tf32, fp16 (loss scaling), bf16, fp8 (Transformer Engine style)."""
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
    # fp8 GEMMs with bf16 weights kept for the optimizer (NVIDIA Transformer Engine recipe).
    "fp8": Precision(DType.FP8, DType.BF16, DType.BF16, DType.BF16, DType.FP32, DType.FP32, DType.FP32),
    # ZeRO paper's mixed-precision Adam: fp16 weights and gradients, K = 12 (Rajbhandari et al. 2020, Sec. 3.1).
    "fp16-zero": Precision(DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP16, DType.FP32, DType.FP32, True),
}
PRESET_NAMES = tuple(_PRESETS)
