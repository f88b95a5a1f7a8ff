"""A training plan for a 70B model on H100s: the fastest layout on 1,024 GPUs, what limits it, and what the run
costs; then the cheapest GPU count that finishes within a deadline.

Run: python examples/train_70b_on_h100.py [--small]
"""

import argparse

import capsim
from capsim.calibration import perf_for
from capsim.plan.training import plan_training

parser = argparse.ArgumentParser()
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
args = parser.parse_args()

model = capsim.get_model("llama-3-70b")
h100 = capsim.get_accelerator("h100")
tokens = 15e12  # Llama 3's pre-training budget
perf = perf_for(h100)  # the H100 GPU-profile calibration
plan = plan_training(model, h100, tokens, global_batch=1024, seq_len=8192, num_gpus=128 if args.small else 1024,
                     perf=perf)
best = plan.best
print(f"{plan.evaluated:,} layouts priced ({plan.calibration}, {plan.framework})")
print(f"best: dp{best['dp']} tp{best['tp']} pp{best['pp']} v{best['v']} cp{best['cp']} micro-batch "
      f"{best['micro_batch']} recompute {['none', 'selective', 'full'][best['recompute']]}; step {best['step_s']:.2f} s, "
      f"MFU {best['mfu']:.1%}; {best['time_to_train_s'] / 86400:.0f} days, ${best['cost_usd'] / 1e6:.1f}M")
for line in plan.explanation:
    print(" -", line)
deadline = plan_training(model, h100, tokens if not args.small else 1e12, 1024, 8192, deadline_s=90 * 86400,
                         max_gpus=2048 if args.small else 16384, perf=perf)
if deadline.feasible:
    d = deadline.best
    print(f"cheapest within 90 days: {d['gpus']} GPUs, {d['time_to_train_s'] / 86400:.0f} days, ${d['cost_usd'] / 1e6:.1f}M")
else:
    print("no GPU count meets the deadline:", deadline.reason)
