"""The FP8 GEMM rate a calibration assumes, from published FP8 GEMM microbenchmarks.

capsim's measured and profile calibrations time BF16 GEMMs only (the Vidur profiles and ``capsim calibrate`` run
16-bit matmuls). Where FP8 is not measured, an FP8 GEMM is priced at the FP8 datasheet peak times the calibration's
BF16 efficiency at the same shape times one factor, ``fp8_scale``: the median, over the training-sized rows of a
published FP8 GEMM benchmark, of (measured FP8 fraction of the FP8 peak) / (the calibration's BF16 fraction at that
shape). So at the benchmark's shapes the FP8 rate is the published one, and elsewhere it follows the calibration's
shape dependence.

The benchmark: DeepGEMM's README, "Normal GEMMs for dense models", H800 SXM (the H100's FP8 tensor cores: 1,979 dense
FP8 TFLOP/s), NVCC 12.8, first published table (github.com/deepseek-ai/DeepGEMM@a6d97a1, 2025-02-25). Only its
M = 4096 rows are used: training GEMMs have thousands of token rows, the M = 64/128 rows are memory-bound decode
shapes. DeepGEMM scales per 128-element block (finer than Transformer Engine's per-tensor scaling). These rates are
NOT a bound on cuBLAS with per-tensor scaling: they put Hopper FP8 at 1.39x the calibration's BF16 rate, while Transformer
Engine's own cuBLASLt table (docs/examples/gemm_profiling/gemm_profiling.rst @1609c89, 2026-06-01, an H200 NVL at its
600 W limit, inputs quantized before timing) measures per-tensor FP8 at 1.90x BF16 on the same harness. Which ratio
holds for the 700 W SXM parts under the 2024-25 containers of the validation rows is not measured; priced at the TE
ratio, every H100 FP8 training row moves 10-20 points further too fast (training_modern median 8.9% -> 26.5%,
measured on a branch, not merged), so the missing FP8 step cost lies elsewhere. Open: see the closing note of stop 23.
Applied to other accelerators, the factor is an assumption: their FP8 tensor cores are taken to reach the same
fraction of their FP8 peak, relative to BF16, as Hopper's.
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
