"""Fleet sizing for the seed's customer-service chatbot: the cheapest fleet for a day's peak within the SLOs,
and how cost and latency trade off.

Run: python examples/fleet_sizing_customer_service.py [--small]
"""

import argparse

import capsim
from capsim.calibration import perfs_for
from capsim.plan.serving import Slo, Traffic, plan_serving
from capsim.sim.serving.presets import get_preset

parser = argparse.ArgumentParser()
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
args = parser.parse_args()

preset = get_preset("chatbot")  # ~1,000-token prompts with policies and history, ~200-token answers
print(preset.source)
# A business day: quiet nights, a lunchtime peak (requests per second, hourly).
day = (2, 1, 1, 1, 2, 4, 8, 14, 20, 24, 26, 30, 32, 28, 26, 24, 22, 20, 16, 12, 8, 6, 4, 3)
traffic = Traffic(rate_rps=max(day) / (8 if args.small else 1), lengths=preset.lengths,
                  requests=600 if args.small else None)
slo = Slo(ttft_p99_s=preset.slo_ttft_s, tpot_p99_s=preset.slo_tpot_s)
model = capsim.get_model("llama-3-8b")
kinds = ["L4", "H100-SXM5-80GB"] if args.small else ["L4", "L40S", "A100-SXM4-80GB", "H100-SXM5-80GB"]
perfs = perfs_for(kinds)  # each kind's GPU-profile calibration where one ships, else its datasheet one
small = {"max_candidates": 2, "workers": 1} if args.small else {}  # the full search, or two candidates sized
plan = plan_serving(model, traffic, slo, kinds, perfs, quantizations=("none", "fp8"), **small)
assert plan.feasible, plan.reason
best = plan.best
print(f"peak {traffic.peak_rps:g} req/s -> {best['replicas']:.0f} x {best['accelerator']} (TP{best['tp']}, "
      f"{best['quantization']}), ${best['cost_per_hour_usd']:.2f}/h, p99 TTFT {best['ttft_p99_s']:.2f} s, "
      f"p99 TPOT {1e3 * best['tpot_p99_s']:.0f} ms, ${best['cost_per_million_output_tokens']:.2f} per M output tokens")
print("Pareto front (cost per hour against p99 TTFT):")
print(plan.pareto[["accelerator", "tp", "quantization", "replicas", "cost_per_hour_usd", "ttft_p99_s"]].to_string())
