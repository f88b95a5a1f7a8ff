"""FSDP / ZeRO-3 at a fixed global batch on more and more GPUs: the per-GPU batch shrinks, each block's compute
with it, while its all-gather and reduce-scatter keep their size, so more of them is exposed.

Run: python examples/fsdp_small_batch.py [--model llama-3-8b] [--accelerator h100] [--global-batch 256]
     [--seq-len 2048] [--small]
"""

from __future__ import annotations

import argparse

from capsim import TrainPlan, get_accelerator, get_model
from capsim.analytic.training import step_time
from capsim.calibration import perf_for
from capsim.specs.hardware import Cluster


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--accelerator", default="h100")
    ap.add_argument("--global-batch", type=int, default=256, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--zero", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="three GPU counts only (CI)")
    args = ap.parse_args()
    model, acc = get_model(args.model), get_accelerator(args.accelerator)
    perf = perf_for(acc)  # the GPU-profile calibration where one ships, else the datasheet one
    counts = [16, 64, 256] if args.small else [16, 32, 64, 128, 256]
    print(f"{model.name} on {acc.name}, framework fsdp, ZeRO-{args.zero}, global batch {args.global_batch} x "
          f"{args.seq_len} tokens, one micro-batch per step (no gradient accumulation)")
    print(f"{'gpus':>6} {'seqs/gpu':>9} {'step s':>8} {'exposed ZeRO s':>15} {'share':>6} {'tokens/s/gpu':>13}")
    for gpus in counts:
        if args.global_batch % gpus:
            continue
        plan = TrainPlan(dp=gpus, zero_stage=args.zero, micro_batch=args.global_batch // gpus,
                         global_batch=args.global_batch, seq_len=args.seq_len)
        r = step_time(model, plan, Cluster(acc, gpus), perf, framework="fsdp")
        print(f"{gpus:>6} {args.global_batch // gpus:>9} {r.step_s:>8.3f} {r.zero_comm_s:>15.3f} "
              f"{r.zero_comm_s / r.step_s:>6.1%} {r.tokens_per_s / gpus:>13,.0f}")


if __name__ == "__main__":
    main()
