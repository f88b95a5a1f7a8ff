"""A quantization what-if: Llama-3-70B on H100s under each weight scheme and KV-cache format, for a chatbot's
traffic; then the same with 2:4 sparsity.

Run: python examples/quantization_whatif.py [--small]
"""

import argparse

import pandas as pd

import capsim
from capsim.calibration import perf_for
from capsim.plan.serving import Slo, Traffic
from capsim.plan.whatif_serve import quantization_whatif, sparsity_whatif
from capsim.sim.serving.presets import get_preset

parser = argparse.ArgumentParser()
parser.add_argument("--small", action="store_true", help="a quick run (CI)")
args = parser.parse_args()
pd.set_option("display.width", 200)

model = capsim.get_model("llama-3-8b" if args.small else "llama-3-70b")
preset = get_preset("chatbot")
traffic = Traffic(rate_rps=20.0 if args.small else 100.0, lengths=preset.lengths)
slo = Slo(ttft_p99_s=preset.slo_ttft_s, tpot_p99_s=preset.slo_tpot_s)
tp = 1 if args.small else 4
perf = perf_for("H100-SXM5-80GB")  # the GPU-profile calibration
q = quantization_whatif(model, "H100-SXM5-80GB", traffic, slo, tp=tp, perf=perf)
print(q[["quantization", "kv_cache_dtype", "weights_per_gpu_bytes", "kv_tokens", "prefill_s", "step_s",
         "capacity_rps", "replicas_min", "cost_per_hour_min", "cost_vs_baseline"]].to_string())
s = sparsity_whatif(model, "H100-SXM5-80GB", traffic, slo, tp=tp, perf=perf)
print(s[["pattern", "gemm_speedup", "weights_per_gpu_bytes", "prefill_s", "capacity_rps", "cost_per_hour_min"]].to_string())
