"""The FP8 GEMM rate a calibration assumes where no published cuBLAS FP8 GEMM rates of its die exist.

capsim's measured and profile calibrations time BF16 GEMMs only (the Vidur profiles and ``capsim calibrate`` run
16-bit matmuls). Where FP8 is not measured, an FP8 GEMM is priced at the FP8 datasheet peak times the calibration's
BF16 efficiency at the same shape times one factor, ``fp8_scale``. Accelerators with published per-tensor FP8 GEMM
rates (B200, B300 and their Grace parts) fit it to those, and the GH100 parts (H100, H200) to Transformer Engine's
cuBLASLt FP8/BF16 rate ratio on that die (capsim.calibration.published_gemm). This module is the fallback for every
other FP8 accelerator (L4, L40S, MI300X, MI325X, Gaudi, TPU): the median, over the training-sized rows of a published
FP8 GEMM benchmark, of (measured FP8 fraction of the FP8 peak) / (the calibration's BF16 fraction at that shape).
So at the benchmark's shapes the FP8 rate is the published one, and elsewhere it follows the calibration's shape
dependence.

The benchmark: DeepGEMM's README, "Normal GEMMs for dense models", H800 SXM (the H100's FP8 tensor cores: 1,979 dense
FP8 TFLOP/s), NVCC 12.8, first published table (github.com/deepseek-ai/DeepGEMM@a6d97a1, 2025-02-25). Only its
M = 4096 rows are used: training GEMMs have thousands of token rows, the M = 64/128 rows are memory-bound decode
shapes. DeepGEMM scales per 128-element block (DeepSeek-V3's recipe; TE's ``Float8BlockScaling`` is the same
scaling), a different kernel from the cuBLASLt per-tensor GEMMs that TE's delayed and current scaling run. Its rates are
NOT a bound on them: on the same die TE's own cuBLASLt table (docs/examples/gemm_profiling/gemm_profiling.rst @1609c89,
2026-06-01, an H200 NVL at its 600 W limit, inputs quantized before timing) measures per-tensor FP8 at 1.90x BF16,
where this table puts Hopper at 1.39x the H100 datasheet calibration's BF16 rate (1.50x the H100 profile's, 1.47x
the H200's). Applied to
other accelerators, the factor is an assumption: their FP8 tensor cores are taken to reach the same fraction of their
FP8 peak, relative to BF16, as Hopper's with block scaling.

Neither ratio is measured on the parts of the validation rows (700 W H100 SXM under 2024-25 containers), so where a
calibration's FP8 rate is not measured on its own accelerator (``fp8_rates``) a prediction reports the band over both
published FP8/BF16 ratios, every FP8 GEMM at one of them at each end. The point prices each GEMM by its role: TE's
table times every GEMM with cuBLASLt's fast accumulation and a BF16 output (benchmarks/gemm/benchmark_gemm.py @1609c89
L321-338: generic_gemm(..., accumulate=False, use_split_accumulator=False)), which is how the recipes run the forward
(fprop) GEMM, while TE and torchao run dgrad and wgrad with split accumulation, i.e. fast accumulation off
(capsim.analytic.fp8.SPLIT_ACCUMULATION_ROLES; common/gemm/cublaslt_gemm.cu L142 @v1.8:
CUBLASLT_MATMUL_DESC_FAST_ACCUM = !use_split_accumulator, which cuBLAS documents as "might be faster" when on).
DeepGEMM's kernel promotes its partial sums to FP32 on CUDA cores ("CUDA-core two-level accumulation", its README),
the same kind of work, and no published per-tensor cuBLASLt timing with fast accumulation off on GH100 was found: so
on a GH100 part the calibration holds ``dtype_scale['fp8.split']`` = DeepGEMM's factor, which prices the dgrad and
wgrad GEMMs (capsim.perf.Perf.gemm_s), and ``dtype_scale['fp8']`` = TE's, which prices the forward. Elsewhere
DeepGEMM's is the assumed rate of every role. Serving (forward only) prices every FP8 GEMM at ``dtype_scale['fp8']``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from capsim.calibration.published_gemm import (
    FP8_OVER_BF16_GH100,
    GH100_PARTS,
    GemmPoints,
    points_for,
    scale_to_points,
)
from capsim.perf import Curve, Perf

H800_FP8_PEAK_FLOPS_PER_S = 1979e12  # dense FP8 tensor-core peak of H100/H800 SXM (NVIDIA H100 datasheet)
# (M, N, K, achieved TFLOP/s): DeepGEMM README @a6d97a1, normal GEMMs, M = 4096 rows.
DEEPGEMM_H800 = (
    (4096, 2112, 7168, 1058.0),
    (4096, 24576, 1536, 990.0),
    (4096, 32768, 512, 590.0),
    (4096, 7168, 16384, 1358.0),
    (4096, 4096, 7168, 1304.0),
    (4096, 7168, 2048, 1025.0),
)
SOURCE = ("DeepGEMM README 'Normal GEMMs for dense models' (github.com/deepseek-ai/DeepGEMM@a6d97a1, H800, "
          "M=4096 rows)")


def fp8_scale(bf16_efficiency: Curve) -> float:
    """Median ratio of DeepGEMM's FP8 fraction of peak to ``bf16_efficiency`` at the same (m, n, k)."""
    return scale_to_points(GemmPoints(DEEPGEMM_H800, SOURCE), H800_FP8_PEAK_FLOPS_PER_S, bf16_efficiency)


@dataclass(frozen=True)
class Fp8Rate:
    """One published FP8 GEMM rate a calibration could price FP8 at: its ``dtype_scale['fp8']`` and what it is."""

    dtype_scale: float
    over_bf16: float  # the FP8 rate over the calibration's BF16 rate at the same shape (every shape)
    label: str

    def to_dict(self) -> dict[str, object]:
        return {"dtype_scale": self.dtype_scale, "over_bf16": self.over_bf16, "label": self.label}


TE_LABEL = "TE cuBLASLt per-tensor, H200 NVL"
DEEPGEMM_LABEL = "DeepGEMM block-scaled, H800"


def fp8_rates(perf: Perf) -> tuple[Fp8Rate, Fp8Rate] | None:
    """Where ``perf`` prices FP8 at a rate not measured on its own accelerator (every FP8 calibration but those of
    parts, or dies, with published per-tensor FP8 points: capsim's calibrations time BF16 only): (the rate it prices,
    the other published Hopper FP8/BF16 ratio), each as ``dtype_scale['fp8']``; else None. A GH100 part prices TE's
    cuBLASLt ratio (the kernel TE's delayed and current scaling run, fast accumulation: its forward GEMMs) and the
    other is DeepGEMM's, which its training dgrad/wgrad GEMMs run at (``split_by_role``); elsewhere DeepGEMM's is the
    assumed one. A calibration whose own FP8 factor is neither is the point, named as its own."""
    p = perf.params
    peaks = p.peak_flops_per_s
    if not peaks.get("fp8") or not peaks.get("bf16") or points_for(p.device, "fp8") is not None:
        return None
    to_ratio = peaks["fp8"] / peaks["bf16"]
    gh100 = p.device in GH100_PARTS
    te = Fp8Rate(round(FP8_OVER_BF16_GH100 / to_ratio, 4), FP8_OVER_BF16_GH100,
                 TE_LABEL + (", per-tensor FP8's kernel" if gh100 else ""))
    block = round(fp8_scale(p.gemm.efficiency), 4)
    deepgemm = Fp8Rate(block, round(block * to_ratio, 3), DEEPGEMM_LABEL + ("" if gh100 else ", assumed"))
    point, other = (te, deepgemm) if gh100 else (deepgemm, te)
    own = p.gemm.dtype_scale.get("fp8", 1.0)
    if abs(own - point.dtype_scale) > 1e-3:
        return Fp8Rate(own, round(own * to_ratio, 3), f"calibration {p.name}'s own factor"), other
    return point, other


def split_by_role(perf: Perf) -> bool:
    """Whether ``perf`` prices FP8 dgrad/wgrad GEMMs (split accumulation) at a factor of their own."""
    scales = perf.params.gemm.dtype_scale
    return "fp8.split" in scales and abs(scales["fp8.split"] - scales.get("fp8", 1.0)) > 1e-3


def rates_note(rates: tuple[Fp8Rate, Fp8Rate], accelerator: str, by_role: bool = False) -> str:
    """The words every prediction that carries ``fp8_rates`` uses: "FP8 GEMMs at ... ; at <other>x (<label>)", or
    with ``by_role`` (training on a part that prices its GEMMs by role) which rate each role runs at."""
    point, other = rates
    if by_role:
        return (f"FP8 GEMMs: forward at {point.over_bf16:.2f}x BF16 ({point.label}, fast accumulation), dgrad and "
                f"wgrad at {other.over_bf16:.2f}x ({other.label}, FP32-promoted accumulation); neither measured on "
                f"{accelerator}")
    return (f"FP8 GEMMs at {point.over_bf16:.2f}x BF16 ({point.label}; not measured on {accelerator}); at "
            f"{other.over_bf16:.2f}x ({other.label})")


def band_ends(perf: Perf, rates: tuple[Fp8Rate, Fp8Rate]) -> list[tuple[str, Fp8Rate, Perf]]:
    """The FP8 band's ends other than ``perf``'s own point, each every FP8 GEMM at one published rate: (the words
    before its value in the note, the rate, ``perf`` at it). Priced by role, both ends ("; all at 1.90x", ...);
    else the other rate only ("", ...), ``rates_note`` naming it."""
    if split_by_role(perf):
        return [(f"; all at {r.over_bf16:.2f}x", r, with_fp8_scale(perf, r.dtype_scale)) for r in rates]
    return [("", rates[1], with_fp8_scale(perf, rates[1].dtype_scale))]


def with_fp8_scale(perf: Perf, dtype_scale: float) -> Perf:
    """``perf`` with every FP8 GEMM (each accumulation) priced at ``dtype_scale`` instead of its own."""
    g = perf.params.gemm
    scales = {**g.dtype_scale, "fp8": dtype_scale, **({"fp8.split": dtype_scale} if "fp8.split" in g.dtype_scale else {})}
    return Perf(replace(perf.params, gemm=replace(g, dtype_scale=scales)))


__all__ = ["DEEPGEMM_H800", "H800_FP8_PEAK_FLOPS_PER_S", "SOURCE", "Fp8Rate", "band_ends", "fp8_rates", "fp8_scale",
           "rates_note", "split_by_role", "with_fp8_scale"]
