"""vLLM 0.32.0's CPU LM head alone: the kernel path its CPU backend runs the LM head on (vocab_parallel_embedding.py
UnquantizedEmbeddingMethod -> layers/utils.py dispatch_cpu_unquantized_gemm -> ops.create_onednn_mm(weight.t(), 32)
and ops.onednn_mm per call), fp32, one thread, at the vLLM-CPU suite model's shape (hidden 512, vocabulary 32,000),
beside torch's linear on the same weight. Needs vLLM's CPU venv:

    /work/.vllm-venv/bin/python benchmarks/vllm_cpu_lm_head.py     # ~30 s

Prints ``name: value`` lines (ms, the minimum and the median of 40 calls after 5 warm-ups); compare with capsim's
price of the same op (``capsim`` lines of benchmarks/vllm_cpu_host.py's width check, or iteration_time's head_s).
"""

from __future__ import annotations

import statistics
import time

import torch


def timed(fn, repeats: int = 40) -> tuple[float, float]:
    for _ in range(5):
        fn()
    t = []
    for _ in range(repeats):
        s = time.perf_counter()
        fn()
        t.append(time.perf_counter() - s)
    return min(t), statistics.median(t)


def main() -> None:
    from vllm import _custom_ops as ops

    torch.set_num_threads(1)
    hidden, vocab = 512, 32000
    w = torch.randn(vocab, hidden)
    handler = ops.create_onednn_mm(w.t(), 32)
    for m in (1, 8, 32):
        x = torch.randn(m, hidden)
        lo, med = timed(lambda x=x: torch.nn.functional.linear(x, w))
        print(f"torch_linear_ms[M={m}]: min {lo * 1e3:.3f} median {med * 1e3:.3f}")
        lo, med = timed(lambda x=x: ops.onednn_mm(handler, x, None))
        print(f"onednn_mm_ms[M={m}]: min {lo * 1e3:.3f} median {med * 1e3:.3f}")


if __name__ == "__main__":
    main()
