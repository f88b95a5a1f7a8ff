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
  capsim.analytic.fp8). B200's points are vLLM's CUTLASS ``cutlass_scaled_mm`` (bench_fp8_gemm.py), not cuBLAS;
  TE #1747's cuBLAS te.Linear figure, cast included, is their cross-check.
- Hopper (GH100: the H100 parts and H200, ``GH100_PARTS``): TE runs per-tensor FP8 through cuBLASLt, and the one
  published cuBLASLt FP8 table of that die with the quantization outside the timing is TE's own gemm_profiling table
  on an H200 NVL (``TE_H200_NVL``), a part capsim's catalog does not list (its datasheet peaks are not among the stored
  sources). Its FP8 over BF16 rate at the same shapes on the same harness (``FP8_OVER_BF16_GH100``, median over the
  shapes) needs no peak: a GH100 part prices FP8 at that ratio times its own BF16 rate, i.e. ``dtype_scale['fp8']`` =
  ratio x BF16 peak / FP8 peak. Where an accelerator has neither FP8 points nor a die with them, DeepGEMM's H800 table
  stands in (capsim.calibration.fp8), which assumes its FP8 tensor cores reach Hopper's block-scaled fraction of
  their peak. The table is not of the parts capsim's rows ran (700 W H100 SXM), so predictions on a part without its
  own FP8 points also report the prediction at the other published ratio (capsim.calibration.fp8.fp8_rates).
- MXFP8 and NVFP4 (Blackwell's block-scaled formats): ``dtype_scale['mxfp8']`` / ``['nvfp4']`` the same median
  against the FP8 / FP4 peak. Transformer Engine runs them through cuBLASLt (transformer_engine/common/gemm/
  cublaslt_gemm.cu), so only cuBLAS timings are recorded: pytorch/ao's ``torch._scaled_mm`` (NVFP4 on B200) and TE's
  own ``tex.generic_gemm`` (B300). flashinfer's autotuned CUTLASS MXFP8 kernel (PR #2464, B200: 3,201 TFLOP/s at
  8192x8192x4096) is another library's kernel, 1.2x the per-tensor FP8 rate, where TE's cuBLAS MXFP8 kernel runs at
  0.97x its per-tensor FP8 one on B300 (``MXFP8_OVER_FP8``, median over the shapes; 0.95x over the layer): left out.
- An accelerator without its own points takes those of the accelerator with the same GPU die (``SAME_DIE``: GB200's
  GPUs are B200 dies, GB300's B300 ones, at a higher power limit), as fractions of that accelerator's peaks. A
  Blackwell part with per-tensor FP8 points but no MXFP8 ones prices MXFP8 at its FP8 rate times ``MXFP8_OVER_FP8``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim.perf import Curve
from capsim.perf.model import curve_value

# The 12 GEMMs of TE's gemm_profiling 5B layer (M = 15872 tokens; QKV 4096->12288, attention out 4096->4096, fc1
# 4096->16384, fc2 16384->4096) as capsim's (m, n, k): Fprop [M, K] @ [K, N]; Dgrad swaps K and N; Wgrad has the
# features as rows and the tokens as the inner dimension (gemm_profiling.rst, "Appendix: How the Shapes Are Derived").
_TE_M, _TE_KN = 15872, ((4096, 12288), (4096, 4096), (4096, 16384), (16384, 4096))
_TE_FPROP = tuple((_TE_M, n, k) for k, n in _TE_KN)
_TE_DGRAD = tuple((_TE_M, k, n) for k, n in _TE_KN)
_TE_WGRAD = tuple((k, n, _TE_M) for k, n in _TE_KN)


@dataclass(frozen=True)
class GemmPoints:
    """Published (m, n, k, achieved TFLOP/s) points of one accelerator and format, with where they were read."""

    points: tuple[tuple[int, int, int, float], ...]
    source: str


def _te_table(gpu: str, column: str, group_tflops: tuple[float, float, float]) -> GemmPoints:
    """One format's column of a pre-quantized per-layer table of TE's gemm_profiling guide: the Fprop, Dgrad and Wgrad
    groups (4 GEMMs of equal FLOPs each, timed together), each group's mean rate given to its 4 shapes."""
    points = tuple((m, n, k, rate) for shapes, rate in zip((_TE_FPROP, _TE_DGRAD, _TE_WGRAD), group_tflops, strict=True)
                   for m, n, k in shapes)
    return GemmPoints(points, (
        "Transformer Engine benchmarks/gemm/benchmark_gemm.py --pre-quantize (tex.generic_gemm on cuBLASLt, inputs "
        f"quantized before timing) on '{gpu}', 5B config (hidden 4096, ffn 16384, M = 31 x 512 = 15872): "
        "NVIDIA/TransformerEngine docs/examples/gemm_profiling/gemm_profiling.rst @1609c89 (2026-06-01), pre-quantized "
        f"per-layer table, {column} ms for its 4 Fprop, 4 Dgrad and 4 Wgrad GEMMs (6.39e12 FLOPs per group)"))


def _te_b300(column: str, group_tflops: tuple[float, float, float]) -> GemmPoints:
    return _te_table("NVIDIA B300 SXM6 AC", column, group_tflops)


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
    ("B200", "nvfp4"): GemmPoints(
        ((3072, 3072, 3072, 3510.0), (4096, 4096, 4096, 4460.0), (6144, 6144, 6144, 5500.0),
         (8192, 8192, 8192, 5370.0)),
        "NVFP4 GEMM on 'NVIDIA B200', operands made in FP4 before timing: pytorch/ao PR #2427 (2025-06-23, "
        "benchmarks/float8/bench_matmul.py --recipe nvfp4: 3072^3 3.51, 4096^3 4.46, 6144^3 5.50, 8192^3 5.37 "
        "PFLOP/s; the same run's bf16 column is the B200 bf16 entry, and it states the fp4 peak as 9.00e15)"),
    ("B300", "bf16"): _te_b300("BF16 4.250 / 4.434 / 4.418", (1503.7, 1441.3, 1446.6)),
    ("B300", "fp8"): _te_b300("FP8Current 2.158 / 2.329 / 2.325", (2961.5, 2744.1, 2748.8)),
    ("B300", "mxfp8"): _te_b300("MXFP8 2.365 / 2.397 / 2.400", (2702.3, 2666.2, 2662.9)),
    ("B300", "nvfp4"): _te_b300("NVFP4 1.254 / 1.305 / 1.205", (5096.4, 4897.3, 5303.7)),
    ("H100-SXM5-80GB", "bf16"): GemmPoints(
        ((4096, 4096, 4096, 788.72), (8192, 8192, 8192, 797.51), (10240, 10240, 10240, 719.72)),
        "torch.matmul in bfloat16 on 'NVIDIA H100 80GB HBM3' (torch 2.7.0+cu128): zzc0721/torch-performance-test-data "
        "issue #79 (2025-10-18)"),
}


# TE's Hopper table ("Worked Example: 5B Model on H200", same commit and harness as B300's): an H200 NVL (GH100 die,
# PCIe card). Its FP8 DelayedScaling column is left out: it always runs in autocast, the cast inside the timing.
TE_H200_NVL: dict[str, GemmPoints] = {
    "bf16": _te_table("NVIDIA H200 NVL", "BF16 10.632 / 10.747 / 10.530", (601.1, 594.7, 606.9)),
    "fp8": _te_table("NVIDIA H200 NVL", "FP8Current 5.577 / 5.661 / 5.547", (1145.9, 1128.9, 1152.1)),
}
# The catalog's parts with the GH100 die (NVIDIA H100 and H200 datasheets: Hopper; H200 is H100's GPU with HBM3e).
GH100_PARTS = frozenset({"H100-SXM5-80GB", "H100-PCIe-80GB", "H100-NVL-94GB", "H100-96GB-HBM2e-500W", "H200-SXM-141GB"})

BLOCK_SCALED_REFERENCE = "B200"  # the Blackwell whose NVFP4 points stand in where neither a part nor its die has any
# The same GPU die in another package (NVIDIA GB200 NVL72 and GB300 NVL72 specs: Blackwell / Blackwell Ultra GPUs):
# a part without published points takes its die's, as fractions of the peaks.
SAME_DIE = {"GB200": "B200", "GB300": "B300"}


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


def points_for(accelerator: str, fmt: str) -> tuple[str, GemmPoints] | None:
    """(whose points, the points) pricing ``fmt`` on ``accelerator``: its own, else its die's (``SAME_DIE``)."""
    for name in (accelerator, SAME_DIE.get(accelerator)):
        entry = PUBLISHED.get((name, fmt)) if name else None
        if entry is not None:
            return name, entry
    return None


def _te_ratio(table: dict[str, GemmPoints], numerator: str, denominator: str) -> float:
    """Median over one TE table's shapes of the ``numerator`` format's rate over the ``denominator`` one's."""
    a, b = (np.array(table[f].points, float)[:, 3] for f in (numerator, denominator))
    return float(np.median(a / b))


# cuBLAS MXFP8 rate over per-tensor FP8 at the same shapes, both pre-quantized on one harness (TE's B300 table).
MXFP8_OVER_FP8 = round(_te_ratio({f: PUBLISHED[("B300", f)] for f in ("mxfp8", "fp8")}, "mxfp8", "fp8"), 4)
# cuBLASLt per-tensor FP8 rate over BF16 at the same shapes on GH100, both pre-quantized on one harness (TE's H200 NVL
# table): a GH100 part's FP8 rate is this times its BF16 rate at the same shape.
FP8_OVER_BF16_GH100 = round(_te_ratio(TE_H200_NVL, "fp8", "bf16"), 4)


def gh100_fp8_scale(peaks: dict[str, float]) -> float:
    """``dtype_scale['fp8']`` that puts a GH100 part's FP8 rate at ``FP8_OVER_BF16_GH100`` times its BF16 rate."""
    return FP8_OVER_BF16_GH100 * peaks["bf16"] / peaks["fp8"]


__all__ = ["BLOCK_SCALED_REFERENCE", "FP8_OVER_BF16_GH100", "GH100_PARTS", "MXFP8_OVER_FP8", "PUBLISHED", "SAME_DIE",
           "TE_H200_NVL", "GemmPoints", "fitted_peak_fraction", "gh100_fp8_scale", "points_for", "published",
           "scale_to_points"]
