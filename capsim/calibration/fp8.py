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
shapes. DeepGEMM scales per 128-element block; its rates are NOT an upper bound for per-tensor scaling: on the same
die, TE's cuBLASLt per-tensor FP8 GEMMs run at 1.90x their BF16 rate with the quantization outside the timing, where
this table priced Hopper at about 1.39x (and TE's own guide finds FP8 block scaling the slowest FP8 recipe on Hopper,
1.40x BF16 against 1.58x for current scaling, cast included). Applied to other accelerators, the factor is an
assumption: their FP8 tensor cores are taken to reach the same fraction of their FP8 peak, relative to BF16, as
Hopper's with block scaling.
"""

from __future__ import annotations

from capsim.calibration.published_gemm import GemmPoints, scale_to_points
from capsim.perf import Curve

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


__all__ = ["DEEPGEMM_H800", "H800_FP8_PEAK_FLOPS_PER_S", "SOURCE", "fp8_scale"]
