"""Serving simulator speed: simulated requests per wall-clock second on one core, and peak memory.

Cases (issue 5): the azure-conv trace (19,366 requests) replayed on 4 replicas of Llama-2-7B (A100, vLLM V1
profile), and a 100,000-request Poisson run on 16 replicas. Each case is timed end to end (building the fleet,
simulating, computing every metric); the headline is the median over both cases' medians, printed last.
For scale: Vidur simulates the azure-conv case at about 200 requests per second on this machine.
Run: python benchmarks/serving_sim_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, pin_one_core, report  # noqa: E402

pin_one_core()

from capsim import get_accelerator, get_model, load_calibration  # noqa: E402
from capsim.sim.serving import ServeConfig, engine_plan, simulate  # noqa: E402
from capsim.sim.serving.presets import WorkloadSpec, build_workload, preset_spec  # noqa: E402
from capsim.sim.serving.workload import ArrivalKind, Lengths  # noqa: E402


def cases() -> dict[str, tuple]:
    model, acc = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
    perf = load_calibration("A100-SXM4-80GB").perf()
    conv = build_workload(preset_spec("azure-conv"))
    # 16 replicas at ~60% of the load four replicas take from azure-conv's mean lengths.
    poisson = build_workload(WorkloadSpec(ArrivalKind.POISSON, lengths=Lengths.lognormal(1155, 0.96, 211, 0.77),
                                          rate_rps=40.0, requests=100_000, seed=1, name="poisson-100k"))
    return {"azure_conv_4x_llama2_7b": (model, engine_plan("vllm", model, acc, replicas=4), acc, perf, conv),
            "poisson_100k_16x_llama2_7b": (model, engine_plan("vllm", model, acc, replicas=16), acc, perf,
                                           poisson)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rates = []
    for name, args_ in cases().items():
        wl = args_[-1]
        run = lambda a=args_: simulate(a[0], a[1], a[2], a[3], a[4], ServeConfig(engine="vllm"))  # noqa: E731
        med, lo, hi = median_time(run, repeats=args.repeats, warmup=1)
        tracemalloc.start()
        res = run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        report(f"{name}_requests", wl.size)
        report(f"{name}_seconds_median", f"{med:.3f}")
        report(f"{name}_seconds_min_max", f"{lo:.3f} {hi:.3f}")
        report(f"{name}_peak_memory_mb", f"{peak / 1e6:.1f}")
        report(f"{name}_request_throughput_rps_simulated", f"{res.summary['request_throughput_rps']:.2f}")
        report(f"{name}_requests_per_s", f"{wl.size / med:,.0f}")
        rates.append(wl.size / med)
    report("vidur_requests_per_s_azure_conv", 200)
    report("simulated_requests_per_wall_s", f"{statistics.median(rates):,.0f}")


if __name__ == "__main__":
    main()
