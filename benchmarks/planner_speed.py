"""Planner speed (issue 6 targets), on this machine as it is (the serving planner uses its process pool).

- Serving: the README's example, Llama-3-70B at 200 req/s (chatbot lengths, p99 TTFT 2 s, p99 TPOT 100 ms) over 6
  accelerator kinds, analytic bound plus simulated confirmation to the default precision (capsim.plan.confirm):
  target <= 60 s. (Vidur's configuration search: ~1 CPU-hour.)
- Training: every valid layout of a 175B model on 1,024 GPUs: target <= 10 s.
- Training (issue 12): Llama-3.1-405B (126 layers) on 16,384 H100s, pp up to 64 with the uneven splits
  Megatron-Core users state where pp x v does not divide the layers, under megatron-bridge-26.04.01 (a release
  that runs them): its best layouts in <= 10 s.
Run: python benchmarks/planner_speed.py [--repeats N] [--only train]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, report  # noqa: E402

from capsim import get_accelerator, get_model  # noqa: E402
from capsim.calibration import perf_for, perfs_for  # noqa: E402
from capsim.plan.serving import Slo, Traffic, plan_serving  # noqa: E402
from capsim.plan.training import plan_training  # noqa: E402
from capsim.sim.serving.presets import get_preset  # noqa: E402

KINDS = ["H100-SXM5-80GB", "A100-SXM4-80GB", "H200-SXM-141GB", "L40S", "B200", "MI300X"]


def serving() -> object:
    # the README's example: MI300X has no catalog price, B200 is capped at 64 GPUs
    return plan_serving(get_model("llama-3-70b"), Traffic(200.0, get_preset("chatbot").lengths),
                        Slo(ttft_p99_s=2.0, tpot_p99_s=0.1), KINDS, perfs_for(KINDS), prices={"MI300X": 2.5},
                        limits={"B200": 64})


def training() -> object:
    # megatron-core offers every layout feature (SP, selective recompute, distributed optimizer, CP), so the
    # search covers tp x pp x v x dp x cp x micro-batch x recompute x SP x ZeRO/distributed optimizer.
    acc = get_accelerator("a100")
    return plan_training(get_model("gpt3-175b"), acc, 300e9, 1536, 2048, num_gpus=1024, perf=perf_for(acc))


def training_405b() -> object:
    # A release with uneven pipelines (Megatron-Core 0.8 splits only evenly, and 126 layers do not split evenly
    # over a power-of-two pipeline deeper than 2).
    acc = get_accelerator("h100")
    return plan_training(get_model("llama-3.1-405b"), acc, 15e12, 2048, 8192, num_gpus=16384, perf=perf_for(acc),
                         framework="megatron-bridge-26.04.01")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["train", "serve"], help="run one half")
    args = ap.parse_args()
    report("cpu_count", os.cpu_count())
    report("load_average_1min", f"{os.getloadavg()[0]:.2f}")
    if args.only != "serve":
        train(args.repeats)
    if args.only != "train":
        serve(args.repeats)


def train(repeats: int) -> None:
    b_med, b_lo, b_hi = median_time(training_405b, repeats=repeats)
    plan = training_405b()
    best = plan.best
    report("train_405b_16384_layouts_evaluated", plan.evaluated)
    report("train_405b_16384_best", f"dp{best['dp']} tp{best['tp']} pp{best['pp']} v{best['v']} cp{best['cp']} "
                                    f"mb{best['micro_batch']} split {best['split']} step {best['step_s']:.2f} s")
    report("train_405b_16384_planner_s_median_min_max", f"{b_med:.2f} {b_lo:.2f} {b_hi:.2f}")
    t_med, t_lo, t_hi = median_time(training, repeats=repeats)
    plan = training()
    report("train_layouts_evaluated", plan.evaluated)
    report("train_best", f"dp{plan.best['dp']} tp{plan.best['tp']} pp{plan.best['pp']} v{plan.best['v']} "
                         f"mb{plan.best['micro_batch']} step {plan.best['step_s']:.2f} s")
    report("train_planner_s_median_min_max", f"{t_med:.2f} {t_lo:.2f} {t_hi:.2f}")
    report("train_planner_s", f"{t_med:.2f}")
    report("train_405b_16384_planner_s", f"{b_med:.2f}")


def serve(repeats: int) -> None:
    s_med, s_lo, s_hi = median_time(serving, repeats=repeats, warmup=0)
    plan = serving()
    report("serve_candidates", len(plan.table))
    report("serve_fleets_simulated", len(plan.simulated))
    best = plan.best
    report("serve_best", f"{best['accelerator']} tp{best['tp']} {best['quantization']} x{best['replicas']:.0f} "
                         f"${best['cost_per_hour_usd']:.1f}/h ${best['cost_per_million_output_tokens']:.3f}/M output "
                         f"tokens (+-{best['cost_per_million_halfwidth']:.3f})")
    report("serve_requests_simulated", int(plan.simulated["requests_all_runs"].sum()))
    report("serve_planner_s_median_min_max", f"{s_med:.1f} {s_lo:.1f} {s_hi:.1f}")
    report("serve_planner_s", f"{s_med:.1f}")


if __name__ == "__main__":
    main()
