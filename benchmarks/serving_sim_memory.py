"""Serving simulator memory: peak resident memory of large runs, each in a fresh process (issue 15, target 2 GB).

Cases: one million Poisson requests on 16 replicas of Llama-2-7B (A100, vLLM V1 profile; the speed benchmark's
100k case ten times longer), and 100,000 requests of 1500 prompt + 1500 output tokens offered to 4 replicas at
three times what they carry, so queues grow for the whole run and the KV cache runs out (preemptions). Each case
runs in a child process; its peak RSS is the child's ``ru_maxrss`` (os.wait4), which includes the interpreter and
imports (reported alone as ``baseline_process``). Prints ``name: value`` lines; the headline (last) is the larger
peak in MB.
Run: python benchmarks/serving_sim_memory.py [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

CASES = ("baseline_process", "poisson_1m_16x_llama2_7b", "overloaded_100k_4x_llama2_7b")


def run_case(name: str) -> dict[str, object]:
    """Build and simulate one case in this process; returns its summary figures."""
    import numpy as np

    from capsim import get_accelerator, get_model, load_calibration
    from capsim.sim.serving import Lengths, ServeConfig, Workload, engine_plan, renewal, simulate

    model, acc = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
    perf = load_calibration("A100-SXM4-80GB").perf()
    if name == "baseline_process":
        return {}
    rng = np.random.default_rng(1)
    if name == "poisson_1m_16x_llama2_7b":
        n, rate, replicas, lengths = 1_000_000, 40.0, 16, Lengths.lognormal(1155, 0.96, 211, 0.77)
    else:  # a small KV cache (8,912 tokens, three 3000-token sequences per replica): three times the load it carries
        n, rate, replicas, lengths = int(os.environ.get("CAPSIM_BENCH_N", 100_000)), 4.0, 4, Lengths.fixed(1500, 1500)
    p, o = lengths.draw(n, rng)
    wl = Workload(name, p, o, renewal(rate, n, None, rng))
    t0 = time.perf_counter()
    memory = 0.23 if name.startswith("overloaded") else None
    plan = engine_plan("vllm", model, acc, replicas=replicas, gpu_memory_utilization=memory)
    res = simulate(model, plan, acc, perf, wl, ServeConfig())
    s = res.summary
    return {"seconds": time.perf_counter() - t0, "requests": n, "preemptions": s["preemptions"],
            "itl_p99_s": s["itl_p99_s"], "ttft_p99_s": s["ttft_p99_s"]}


def measure(name: str) -> tuple[dict[str, object], float]:
    """Run ``name`` in a child process: (its figures, its peak RSS in MB)."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", name], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{name}: child exited with {proc.returncode}")
    return json.loads(out), usage.ru_maxrss / 1024  # Linux reports kilobytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child)))
        return
    peaks = []
    for name in args.cases:
        figures, peak = measure(name)
        for key, value in figures.items():
            report(f"{name}_{key}", f"{value:.4g}" if isinstance(value, float) else value)
        report(f"{name}_peak_rss_mb", f"{peak:.0f}")
        if name != "baseline_process":
            peaks.append(peak)
    report("serving_sim_peak_rss_mb_max", f"{max(peaks):.0f}" if peaks else "nan")


if __name__ == "__main__":
    main()
