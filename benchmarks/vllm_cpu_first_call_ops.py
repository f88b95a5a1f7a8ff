"""The first call of a new GEMM shape on vLLM's own CPU linear against the path capsim's calibration times, side by
side in one process: one layer's four linears of the vLLM-CPU suite's model (hidden 512, MLP 1408) on
``ops.create_onednn_mm`` + ``ops.onednn_mm`` (vLLM 0.32.0's dense linears: model_executor/layers/utils.py
dispatch_cpu_unquantized_gemm; csrc/cpu/dnnl_helper.cpp MatMulPrimitiveHandler) and on
``torch.ops.mkldnn._linear_pointwise`` with a reordered weight (kernels/gemm.py run_packed_gemm, whose first calls
``capsim calibrate`` fits into ``gemm.first_call``). The two paths alternate, each at row counts neither has run (the
torch path at odd counts, vLLM's at the even count above, so that oneDNN's global primitive cache cannot serve one
path's shape to the other). One thread, wall clock. Needs vLLM's CPU venv::

    /work/.vllm-venv/bin/python benchmarks/vllm_cpu_first_call_ops.py --dtype bfloat16

Lines ``<path>_m<rows>_extra_ms`` (first call less the median of the next two), then per path the median extra and
the ratio of vLLM's to torch's (headline).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SHAPES = ((1536, 512), (512, 512), (2816, 512), (512, 1408))  # qkv, o_proj, gate_up, down: (N, K)
ROWS = (1, 3, 17, 65, 129, 161, 199, 223, 257, 300, 337, 371)


def _layer_ms(mm, weights: list, rows: int, dtype: torch.dtype) -> float:
    start = time.perf_counter()
    for (_, k), w in zip(SHAPES, weights, strict=True):
        mm(torch.rand(rows, k, dtype=dtype), w)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    args = ap.parse_args()
    from vllm import _custom_ops as ops

    torch.set_num_threads(1)
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    raw = [torch.rand(n, k, dtype=dt) - 0.5 for n, k in SHAPES]
    paths = {
        "torch": (lambda x, w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""),
                  [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in raw]),
        "vllm": (lambda x, w: ops.onednn_mm(w, x, None), [ops.create_onednn_mm(w.t(), 32) for w in raw]),
    }
    for mm, weights in paths.values():
        for _ in range(3):
            _layer_ms(mm, weights, 256, dt)  # warm: the process's first primitives and allocations
    extra: dict[str, list[float]] = {name: [] for name in paths}
    for rows in ROWS:
        for name, (mm, weights) in paths.items():
            m = rows if name == "torch" else rows + 1
            first = _layer_ms(mm, weights, m, dt)
            after = statistics.median([_layer_ms(mm, weights, m, dt) for _ in range(2)])
            extra[name].append(first - after)
            print(f"{name}_m{m}_first_ms: {first:.3f}")
            print(f"{name}_m{m}_extra_ms: {first - after:.3f}")
    for name, xs in extra.items():
        print(f"{name}_extra_ms_median: {statistics.median(xs):.3f}")
    print(f"vllm_over_torch_extra_ratio: {statistics.median(extra['vllm']) / statistics.median(extra['torch']):.3f}")


if __name__ == "__main__":
    main()
