"""CPU GEMM paths side by side: torch's linear on the weight as stored, torch's oneDNN linear on a prepacked weight
(what `capsim calibrate`'s gemm_packed bench times, kernels/gemm.py run_packed_gemm), and, when run from a vLLM CPU
venv, vLLM's own ``ops.onednn_mm`` (the path vllm/model_executor/layers/utils.py dispatch_cpu_unquantized_gemm gives
vLLM-CPU's dense linears and LM head). One thread, that thread's CPU clock, weights rotated through enough copies to
stream from memory, medians of 7 repeats.

    .venv/bin/python benchmarks/cpu_gemm_paths.py              # torch paths only
    /work/.vllm-venv/bin/python benchmarks/cpu_gemm_paths.py   # also vLLM's onednn_mm (needs vllm-cpu)

Shapes: the linears of the vllm-cpu suite's model (capsim/data/vllm-cpu/model: hidden 512, MLP 1408, vocabulary
32,000) at decode batches of 1-32 rows. Headline: the LM head at 4 rows, torch linear over prepacked.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = {"qkv": (1536, 512), "o_proj": (512, 512), "gate_up": (2816, 512), "down": (512, 1408),
          "lm_head": (32000, 512)}
ROWS = (1, 2, 4, 8, 32)
STREAM_BYTES = 128e6  # rotate weights through at least this much memory (twice a large last-level cache)


def _median_s(fn, calls: int, repeats: int = 7) -> float:  # noqa: ANN001
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(calls):
            fn()
        times.append((time.thread_time() - start) / calls)
    return statistics.median(times)


def _vllm_ops():  # noqa: ANN202
    try:
        import vllm._custom_ops as ops
    except ImportError:
        return None
    return ops if getattr(ops, "_supports_onednn", False) else None


def main() -> None:
    torch.set_num_threads(1)
    ops = _vllm_ops()
    headline = 0.0
    for name, (n, k) in SHAPES.items():
        copies = max(2, int(STREAM_BYTES / (n * k * 4)) + 1)
        weights = [torch.rand(n, k) - 0.5 for _ in range(copies)]
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in weights]
        handlers = [ops.create_onednn_mm(w.t(), 32) for w in weights] if ops else []
        turn = iter(range(10**12))
        for m in ROWS:
            x = torch.rand(m, k) - 0.5
            calls = max(4, int(2e7 / (n * k)))
            plain = _median_s(lambda: F.linear(x, weights[next(turn) % copies]), calls)  # noqa: B023
            pre = _median_s(lambda: torch.ops.mkldnn._linear_pointwise(  # noqa: B023
                x, packed[next(turn) % copies], None, "none", [], ""), calls)  # noqa: B023
            print(f"{name}_m{m}_torch_linear_us: {plain * 1e6:.1f}")
            print(f"{name}_m{m}_torch_prepacked_us: {pre * 1e6:.1f}")
            if ops:
                vl = _median_s(lambda: ops.onednn_mm(handlers[next(turn) % copies], x, None), calls)  # noqa: B023
                print(f"{name}_m{m}_vllm_onednn_mm_us: {vl * 1e6:.1f}")
                print(f"{name}_m{m}_prepacked_over_vllm: {pre / vl:.3f}")
            if name == "lm_head" and m == 4:
                headline = plain / pre
    print(f"lm_head_m4_torch_linear_over_prepacked: {headline:.2f}")


if __name__ == "__main__":
    main()
