"""Serving simulator speed: simulated requests per wall-clock second on one core, and peak memory.

Cases (issue 5): the azure-conv trace (19,366 requests) replayed on 4 replicas of Llama-2-7B (A100, vLLM V1
profile), a 100,000-request Poisson run on 16 replicas, and (issue 13) the same Poisson run with prefix caching at
work: every prompt starts with a shared 500-token system prompt (an assumption of this benchmark), which vLLM V1
caches by default. Each case is timed end to end (building the fleet, simulating, computing every metric); the
headline is the median over the cases' medians, printed last.
For scale: Vidur simulates the azure-conv case at about 200 requests per second on this machine.

``--baseline TREE`` times another checkout (e.g. ``git worktree add /tmp/base main``) side by side with this one:
each repeat runs both trees, in alternating order, in fresh processes (one warm-up run per case first), so load
on the machine hits both alike; it reports both trees' medians and this tree's headline last.
Run: python benchmarks/serving_sim_speed.py [--repeats N] [--baseline TREE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, pin_one_core, report  # noqa: E402

pin_one_core()

HERE = Path(__file__).resolve().parents[1]


def cases() -> dict[str, tuple]:
    from capsim import get_accelerator, get_model, load_calibration
    from capsim.sim.serving import engine_plan
    from capsim.sim.serving.presets import WorkloadSpec, build_workload, preset_spec
    from capsim.sim.serving.workload import ArrivalKind, Lengths

    model, acc = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
    perf = load_calibration("A100-SXM4-80GB").perf()
    conv = build_workload(preset_spec("azure-conv"))
    # 16 replicas at ~60% of the load four replicas take from azure-conv's mean lengths.
    spec = WorkloadSpec(ArrivalKind.POISSON, lengths=Lengths.lognormal(1155, 0.96, 211, 0.77), rate_rps=40.0,
                        requests=100_000, seed=1, name="poisson-100k")
    plan16 = engine_plan("vllm", model, acc, replicas=16)
    out = {"azure_conv_4x_llama2_7b": (model, engine_plan("vllm", model, acc, replicas=4), acc, perf, conv),
           "poisson_100k_16x_llama2_7b": (model, plan16, acc, perf, build_workload(spec))}
    if "shared_prefix_tokens" in WorkloadSpec.__dataclass_fields__:  # a --baseline tree from before prefix caching
        out["poisson_100k_16x_llama2_7b_prefix_cached"] = (
            model, plan16, acc, perf, build_workload(replace(spec, shared_prefix_tokens=500)))
    return out


def runner(args_: tuple):  # noqa: ANN201
    from capsim.sim.serving import ServeConfig, simulate

    return lambda: simulate(args_[0], args_[1], args_[2], args_[3], args_[4], ServeConfig(engine="vllm"))


def child() -> None:
    """One timed run of each case after one warm-up run, as JSON (for --baseline): wall and CPU seconds."""
    out = {}
    for name, args_ in cases().items():
        run = runner(args_)
        run()
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        out[name] = (args_[-1].size, time.perf_counter() - t0, time.process_time() - c0)
    print(json.dumps(out))


def side_by_side(baseline: Path, repeats: int) -> None:
    trees = {"baseline": baseline.resolve(), "this": HERE}
    times: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    cpu: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    sizes: dict[str, int] = {}
    for r in range(repeats):
        for tree in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            env = {**os.environ, "PYTHONPATH": str(trees[tree])}
            out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                                 check=True, cwd=trees[tree]).stdout
            for name, (n, sec, cpu_s) in json.loads(out).items():
                times[tree].setdefault(name, []).append(sec)
                cpu[tree].setdefault(name, []).append(cpu_s)
                sizes[name] = n
    rates: dict[str, list[float]] = {t: [] for t in trees}
    cpu_rates: dict[str, list[float]] = {t: [] for t in trees}
    for tree in trees:
        for name, secs in times[tree].items():
            med, med_cpu = statistics.median(secs), statistics.median(cpu[tree][name])
            report(f"{name}_seconds_median_{tree}", f"{med:.3f}")
            report(f"{name}_cpu_seconds_median_{tree}", f"{med_cpu:.3f}")
            report(f"{name}_requests_per_s_{tree}", f"{sizes[name] / med:,.0f}")
            rates[tree].append(sizes[name] / med)
            cpu_rates[tree].append(sizes[name] / med_cpu)
    report("repeats", repeats)
    report("baseline_tree", trees["baseline"])
    report("load_average_1min", f"{os.getloadavg()[0]:.2f}")
    # On a shared machine the process's CPU time is what one core spends; wall time adds waiting for it.
    report("simulated_requests_per_cpu_s_baseline", f"{statistics.median(cpu_rates['baseline']):,.0f}")
    report("simulated_requests_per_cpu_s", f"{statistics.median(cpu_rates['this']):,.0f}")
    report("simulated_requests_per_wall_s_baseline", f"{statistics.median(rates['baseline']):,.0f}")
    report("simulated_requests_per_wall_s", f"{statistics.median(rates['this']):,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout to time side by side with this one")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child()
    if args.baseline is not None:
        return side_by_side(args.baseline, args.repeats)
    rates = []
    for name, args_ in cases().items():
        wl = args_[-1]
        run = runner(args_)
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
        report(f"{name}_prefix_cache_hit_rate", f"{res.summary.get('prefix_cache_hit_rate', 0.0):.3f}")
        report(f"{name}_requests_per_s", f"{wl.size / med:,.0f}")
        rates.append(wl.size / med)
    report("vidur_requests_per_s_azure_conv", 200)
    report("simulated_requests_per_wall_s", f"{statistics.median(rates):,.0f}")
    return None


if __name__ == "__main__":
    main()
