"""The first call of a new GEMM shape on a CPU: one layer's four linears of the vLLM-CPU suite's model (hidden 512,
MLP 1408) on oneDNN-prepacked weights (``torch.ops.mkldnn._linear_pointwise``, the path capsim's gemm_packed bench
times), at row counts the process has not run, then the same rows twice more. One thread, wall clock.

    .venv/bin/python benchmarks/cpu_gemm_first_call.py            # fp32 and bf16 (bf16 where the CPU runs it natively)

Lines ``<dtype>_m<rows>_first_ms``, ``..._after_ms`` (median of the next two calls) and ``..._extra_ms``; headline:
the median extra over the row counts of the last format timed.
"""

from __future__ import annotations

import statistics
import time

import torch

SHAPES = ((1536, 512), (512, 512), (2816, 512), (512, 1408))  # qkv, o_proj, gate_up, down: (N, K)
ROWS = (1, 3, 17, 161, 223, 300, 371)


def _layer_ms(weights: list[torch.Tensor], rows: int, dtype: torch.dtype) -> float:
    linear = torch.ops.mkldnn._linear_pointwise
    start = time.perf_counter()
    for (_, k), w in zip(SHAPES, weights, strict=True):
        linear(torch.rand(rows, k, dtype=dtype), w, None, "none", [], "")
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    dtypes = [("fp32", torch.float32)]
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        dtypes.append(("bf16", torch.bfloat16))
    extra: list[float] = []
    for name, dt in dtypes:
        weights = [torch.ops.mkldnn._reorder_linear_weight(torch.rand(n, k, dtype=dt) - 0.5, None) for n, k in SHAPES]
        for _ in range(3):
            _layer_ms(weights, 256, dt)  # warm: the process's first primitives and allocations
        extra = []
        for rows in ROWS:
            first = _layer_ms(weights, rows, dt)
            after = statistics.median([_layer_ms(weights, rows, dt) for _ in range(2)])
            extra.append(first - after)
            print(f"{name}_m{rows}_first_ms: {first:.3f}")
            print(f"{name}_m{rows}_after_ms: {after:.3f}")
            print(f"{name}_m{rows}_extra_ms: {first - after:.3f}")
    print(f"first_call_extra_ms_median: {statistics.median(extra):.3f}")


if __name__ == "__main__":
    main()
