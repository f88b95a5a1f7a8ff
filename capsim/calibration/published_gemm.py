"""Published GEMM microbenchmarks, per accelerator and format: what the datasheet calibration fits its GEMM rates
to where an accelerator has them, instead of the generic assumptions of ``capsim.calibration.datasheet``.

Each entry is whole-GPU GEMM throughput at large shapes (thousands of rows), timed by the benchmark's own harness
on cuBLAS (torch.mm / F.linear) or an equivalent library kernel, with its source and date. Only numbers read in the
cited text are recorded. End-to-end training or serving rows are never used here.

- BF16: the efficiency curve keeps the datasheet's shape (``gemm_half_size``); its peak fraction is the median, over
  the accelerator's points, of (measured fraction of the BF16 peak) / (the curve's shape factor at that (m, n, k)).
- FP8 with one scale per tensor (Transformer Engine's delayed and current scaling, torchao's tensorwise recipe):
  ``GemmParams.dtype_scale['fp8']`` is the median of (measured FP8 fraction of the FP8 peak) / (the BF16 curve at that
  shape). The points exclude quantizing the activations (capsim prices the casts as their own ops,
  capsim.analytic.fp8). Where an accelerator has no FP8 points, DeepGEMM's H800 table stands in
  (capsim.calibration.fp8), which assumes its FP8 tensor cores reach Hopper's fraction of their peak.
- MXFP8 and NVFP4 (Blackwell's block-scaled formats): ``dtype_scale['mxfp8']`` / ``['nvfp4']`` the same median
  against the FP8 / FP4 peak. Only B200 has published points; another Blackwell accelerator takes B200's
  (``BLOCK_SCALED_REFERENCE``), which assumes its tensor cores reach B200's fraction of their peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim.perf import Curve
from capsim.perf.model import curve_value


@dataclass(frozen=True)
class GemmPoints:
    """Published (m, n, k, achieved TFLOP/s) points of one accelerator and format, with where they were read."""

    points: tuple[tuple[int, int, int, float], ...]
    source: str


PUBLISHED: dict[tuple[str, str], GemmPoints] = {
    ("B200", "bf16"): GemmPoints(
        ((3072, 3072, 3072, 1510.0), (4096, 4096, 4096, 1410.0), (6144, 6144, 6144, 1450.0),
         (8192, 8192, 8192, 1420.0),
         (16384, 6144, 4096, 1512.8), (1024, 4096, 4096, 1362.7), (2048, 4096, 4096, 1444.4),
         (1024, 6144, 4096, 1433.0)),
        "torch.bfloat16 matmul on 'NVIDIA B200': pytorch/ao PR #2427 (2025-06-23, benchmarks/float8/bench_matmul.py: "
        "3072^3 1.51, 4096^3 1.41, 6144^3 1.45, 8192^3 1.42 PFLOP/s); vllm-project/vllm PR #19566 (2025-06, "
        "benchmarks/kernels/bench_fp8_gemm.py torch-bf16 column, B200: M=16384 N=6144 K=4096 1512.8, M=1024/2048 "
        "N=4096 K=4096 1362.7/1444.4 TFLOP/s) and PR #18778 (2025-05-27, B200: M=1024 N=6144 K=4096 1433.0)"),
    ("B200", "fp8"): GemmPoints(
        ((16384, 6144, 4096, 2544.7), (1024, 4096, 4096, 2076.7), (1024, 6144, 4096, 2207.5)),
        "FP8 e4m3 GEMM with one scale per tensor, activation quantization excluded, on B200: vllm-project/vllm "
        "PR #19566 (2025-06, bench_fp8_gemm.py fp8-tensor-w-tensor-a-noquant: M=16384 N=6144 K=4096 2544.7, "
        "M=1024 N=4096 K=4096 2076.7 TFLOP/s) and PR #18778 (2025-05-27: M=1024 N=6144 K=4096 2207.5); "
        "NVIDIA/TransformerEngine issue #1747 (2025-05-03, HGX B200) times te.Linear in FP8 at 8192^3, cast "
        "included, at 2377 TFLOP/s, consistent with these"),
    ("B200", "mxfp8"): GemmPoints(
        ((8192, 8192, 4096, 3200.870), (16384, 16384, 16384, 3099.690), (1024, 4096, 4096, 2014.903)),
        "MXFP8 GEMM (E4M3, E8M0 scales per 32) on B200, operands quantized before timing: flashinfer-ai/flashinfer "
        "PR #2464 (2026-02-02, benchmarks/flashinfer_benchmark.py --routine mm_mxfp8 --backends cutlass --autotune: "
        "M=8192 N=8192 K=4096 3200.870, M=N=K=16384 3099.690, M=1024 N=4096 K=4096 2014.903 TFLOP/s)"),
    ("B200", "nvfp4"): GemmPoints(
        ((3072, 3072, 3072, 3510.0), (4096, 4096, 4096, 4460.0), (6144, 6144, 6144, 5500.0),
         (8192, 8192, 8192, 5370.0)),
        "NVFP4 GEMM on 'NVIDIA B200', operands made in FP4 before timing: pytorch/ao PR #2427 (2025-06-23, "
        "benchmarks/float8/bench_matmul.py --recipe nvfp4: 3072^3 3.51, 4096^3 4.46, 6144^3 5.50, 8192^3 5.37 "
        "PFLOP/s; the same run's bf16 column is the B200 bf16 entry, and it states the fp4 peak as 9.00e15)"),
    ("H100-SXM5-80GB", "bf16"): GemmPoints(
        ((4096, 4096, 4096, 788.72), (8192, 8192, 8192, 797.51), (10240, 10240, 10240, 719.72)),
        "torch.matmul in bfloat16 on 'NVIDIA H100 80GB HBM3' (torch 2.7.0+cu128): zzc0721/torch-performance-test-data "
        "issue #79 (2025-10-18)"),
}


BLOCK_SCALED_REFERENCE = "B200"  # the accelerator whose MXFP8/NVFP4 points stand in for other Blackwell parts


def _fractions(entry: GemmPoints, peak_flops_per_s: float) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array(entry.points, float)
    return rows[:, :3], rows[:, 3] * 1e12 / peak_flops_per_s


def fitted_peak_fraction(entry: GemmPoints, peak_flops_per_s: float, half_sizes: tuple[float, ...]) -> float:
    """The BF16 curve's peak fraction that puts it through the median of ``entry``'s points."""
    shapes, measured = _fractions(entry, peak_flops_per_s)
    shape = np.asarray(curve_value(Curve(1.0, half_sizes), shapes[:, 0], shapes[:, 1], shapes[:, 2]), float)
    return float(np.median(measured / shape))


def scale_to_points(entry: GemmPoints, peak_flops_per_s: float, bf16_efficiency: Curve) -> float:
    """Median ratio of ``entry``'s fraction of ``peak_flops_per_s`` to ``bf16_efficiency`` at the same (m, n, k)."""
    shapes, measured = _fractions(entry, peak_flops_per_s)
    bf16 = np.asarray(curve_value(bf16_efficiency, shapes[:, 0], shapes[:, 1], shapes[:, 2]), float)
    return float(np.median(measured / bf16))


def published(accelerator: str, fmt: str) -> GemmPoints | None:
    return PUBLISHED.get((accelerator, fmt))


__all__ = ["BLOCK_SCALED_REFERENCE", "GemmPoints", "PUBLISHED", "fitted_peak_fraction", "published", "scale_to_points"]
