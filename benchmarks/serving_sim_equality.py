"""One simulation answer: the fast mode against the one-event-per-step reference (issue 15, item 3).

Runs fleets in both modes and counts the requests whose start, first-token or finish times differ (beyond 1e-9 s)
and the fleets whose per-request replicas or preemption counts differ. Cases: a disaggregated fleet under KV
preemption (SGLang profile, 1 prefill + 3 decode replicas, random routing, a small KV cache, 100 requests at 20/s),
then ``--fleets`` random fleets drawn over engines and schedulers (chunked prefill, prefill-first, static,
disaggregated), KV memory, token budgets, replica counts, routers, open and closed loops and seeds.
Prints ``name: value`` lines; the headline (last) is the number of fleets that differ (0 to pass).
Run: python benchmarks/serving_sim_equality.py [--fleets N] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from capsim import SpecError, get_accelerator, get_model, load_calibration  # noqa: E402
from capsim.sim.serving import Lengths, ServeConfig, Workload, engine_plan, renewal  # noqa: E402
from capsim.sim.serving.fleet import Fleet  # noqa: E402

MODEL, ACC = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
PERF = load_calibration("A100-SXM4-80GB").perf()


def both(wl: Workload, plan_kw: dict, cfg: dict) -> tuple[Fleet, Fleet]:
    plan = engine_plan(cfg.get("engine", "vllm"), MODEL, ACC, **plan_kw)
    out = []
    for fast in (True, False):
        fleet = Fleet(MODEL, plan, ACC, PERF, wl, ServeConfig(fast=fast, **cfg))
        fleet.run()
        out.append(fleet)
    return out[0], out[1]


def compare(fast: Fleet, step: Fleet) -> dict[str, float]:
    """Requests whose times differ, the largest difference, and whether decisions differ."""
    diff = np.zeros(fast.req.n)
    for col in ("start_s", "first_s", "finish_s"):
        diff = np.maximum(diff, np.abs(np.asarray(getattr(fast.req, col)) - np.asarray(getattr(step.req, col))))
    decisions = (fast.req.replica != step.req.replica or fast.req.decode_replica != step.req.decode_replica
                 or fast.req.preemptions != step.req.preemptions)
    return {"requests_differing": int(np.sum(diff > 1e-9)), "max_diff_s": float(diff.max()),
            "preemptions_fast": sum(fast.req.preemptions), "preemptions_step": sum(step.req.preemptions),
            "differs": bool(decisions or np.any(diff > 1e-9))}


def issue_case() -> dict[str, float]:
    rng = np.random.default_rng(0)
    p, o = Lengths.lognormal(700, 0.9, 150, 0.9).draw(100, rng)
    wl = Workload("disagg", p, o, renewal(20.0, 100, None, rng))
    return compare(*both(wl, {"replicas": 4, "gpu_memory_utilization": 0.22},
                         {"engine": "sglang", "prefill_replicas": 1, "router": "random"}))


def random_fleet(rs: np.random.Generator) -> tuple[Workload, dict, dict]:
    engine = str(rs.choice(["vllm", "vllm-v0", "sglang"]))
    reps = int(rs.integers(1, 5))
    cfg: dict = {"engine": engine, "router": str(rs.choice(["round-robin", "least-outstanding", "random"])),
                 "seed": int(rs.integers(0, 7))}
    if rs.random() < 0.2:
        cfg["scheduler"] = "static"
    elif reps > 1 and rs.random() < 0.4:
        cfg["prefill_replicas"] = int(rs.integers(1, reps))
    plan_kw = {"replicas": reps, "gpu_memory_utilization": float(rs.choice([0.21, 0.22, 0.25, 0.3, 0.9])),
               "max_batched_tokens": [None, 512, 2048][int(rs.integers(3))]}
    n, rng = int(rs.integers(20, 200)), np.random.default_rng(int(rs.integers(10**6)))
    p, o = Lengths.uniform((1, 1200), (50, 900)).draw(n, rng)
    closed = rs.random() < 0.2
    wl = Workload("fuzz", p, o, None if closed else renewal(float(rs.uniform(2, 80)), n, None, rng),
                  int(rs.integers(1, 20)) if closed else 0)
    return wl, plan_kw, cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleets", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for key, value in issue_case().items():
        report(f"disaggregated_preemption_{key}", value)
    rs = np.random.default_rng(args.seed)
    fleets = preempted = differing = requests = requests_differing = 0
    while fleets < args.fleets:
        wl, plan_kw, cfg = random_fleet(rs)
        try:
            r = compare(*both(wl, plan_kw, cfg))
        except SpecError:  # a request longer than the drawn KV cache: draw another fleet
            continue
        fleets += 1
        preempted += r["preemptions_step"] > 0
        differing += r["differs"]
        requests += wl.size
        requests_differing += r["requests_differing"]
    report("random_fleets", fleets)
    report("random_fleets_with_preemption", preempted)
    report("random_requests", requests)
    report("random_requests_differing", requests_differing)
    report("random_fleets_differing", differing)


if __name__ == "__main__":
    main()
