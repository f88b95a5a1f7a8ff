"""vLLM 0.32.0's CPU GEMMs of one decode step of the vLLM-CPU suite's model, in the order a step runs them.

The suite's model (capsim/data/vllm-cpu/model/config.json: hidden 512, 4 layers, MLP 1408, vocabulary 32,000,
fp32) runs per step, per layer, the fused QKV projection [M,512]x[512,1536], the attention output [M,512]x[512,512],
the fused gate/up [M,512]x[512,2816] and the down projection [M,1408]x[1408,512] (vllm/model_executor/models/
llama.py QKVParallelLinear, MergedColumnParallelLinear), then the LM head [M,512]x[512,32000], each on vLLM's
kernel path (layers/utils.py dispatch_cpu_unquantized_gemm -> ops.create_onednn_mm(weight.t(), 32), ops.onednn_mm
per call). Every layer has its own weights, so, as in the engine, each GEMM reads its weight after 116 MB of other
weights went through the 32 MB L3: the times include that, unlike a GEMM timed in a loop on one weight. One thread.
Needs vLLM's CPU venv::

    nice -n -10 taskset -c 0 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_step_gemms.py     # ~30 s

Prints ``name: value`` lines: each GEMM's median over ``--steps`` steps (ms), per batch M, and the step's sum.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

HIDDEN, MLP, VOCAB, LAYERS = 512, 1408, 32000, 4
SHAPES = (("qkv", HIDDEN, 3 * HIDDEN), ("attn_out", HIDDEN, HIDDEN), ("mlp_up", HIDDEN, 2 * MLP),
          ("mlp_down", MLP, HIDDEN))  # (name, K, N)


def main() -> None:
    from vllm import _custom_ops as ops

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gemms = [(name, k, ops.create_onednn_mm(torch.randn(n, k).t(), 32)) for _ in range(LAYERS)
             for name, k, n in SHAPES]
    gemms.append(("lm_head", HIDDEN, ops.create_onednn_mm(torch.randn(VOCAB, HIDDEN).t(), 32)))
    for m in map(int, args.batches.split(",")):
        xs = {k: torch.randn(m, k) for k in (HIDDEN, MLP)}
        times: dict[str, list[float]] = {}
        for step in range(args.steps + 3):
            per_step: dict[str, float] = {}
            for name, k, handler in gemms:
                t0 = time.perf_counter()
                ops.onednn_mm(handler, xs[k], None)
                per_step[name] = per_step.get(name, 0.0) + time.perf_counter() - t0
            if step >= 3:
                for name, t in per_step.items():
                    times.setdefault(name, []).append(t)
        total = 0.0
        for name, t in times.items():
            med = statistics.median(t) / (LAYERS if name != "lm_head" else 1)
            total += med * (LAYERS if name != "lm_head" else 1)
            print(f"onednn_ms[{name},M={m}]: {med * 1e3:.4f}")
        print(f"step_gemms_ms[M={m}]: {total * 1e3:.4f}")


if __name__ == "__main__":
    main()
