"""Training step time, vectorised over ~200,000 layouts, and the SimPy schedule of a large interleaved pipeline.

Targets (issues 4 and 12): >= 100,000 layouts/s on one core, with uneven pipeline splits and MoE layouts in the
grid; the SimPy schedule of a 64-stage, 512-micro-batch interleaved pipeline in <= 2 s.

The grid: GPT-3 175B (96 layers, even splits), Llama-3.1-405B (126 layers: pp 4, 8, 16, 32 and v 2, 4 do not
divide it, so most of its layouts take uneven splits) and Mixtral 8x7B (MoE, ep 1-8, experts split like the
attention or not at all: etp = tp or 1). The 405B grid shards ZeRO state over all of dp x cp or in hybrid groups of
8 (HSDP, shard=8: the layout search tries these). Every layout is priced, valid or not.

Run: python benchmarks/train_step_throughput.py [--baseline DIR] [--rounds N]
With --baseline, a checkout of another capsim tree (e.g. `git worktree add /tmp/base main`) is measured on the
same grid in alternating worker processes, and both medians are printed side by side. Layouts/s are per CPU second
of the pricing process (one thread, pinned to one core): on a shared machine its wall time also counts the other
processes' turns; the wall-clock figure is printed beside it.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import median_time, pin_one_core, report  # noqa: E402

CALIBRATIONS = ("A100-SXM4-80GB", "A100-SXM4-80GB-profile")
GRIDS = {  # model: (accelerator, GPUs, axes)
    "gpt3-175b": ("a100", 1024, dict(dp=[1, 2, 4, 8, 16, 32, 64, 128, 256], tp=[1, 2, 4, 8], pp=[1, 2, 4, 8, 16],
                                     v=[1, 2, 3], micro_batch=[1, 2, 4, 8], zero_stage=[0, 1, 2, 3],
                                     recompute=[0, 1, 2], sp=[False, True], cp=[1, 2])),
    "llama-3.1-405b": ("a100", 1024, dict(dp=[1, 2, 4, 8, 16, 32, 64], tp=[4, 8], pp=[1, 2, 4, 8, 16, 32],
                                          v=[1, 2, 4], micro_batch=[1, 2, 4], zero_stage=[0, 1, 3],
                                          recompute=[0, 2], sp=[False, True], cp=[1, 2], shard=[0, 8])),
    "mixtral-8x7b": ("a100", 1024, dict(dp=[1, 2, 4, 8, 16, 32, 64], tp=[1, 2, 4, 8], pp=[1, 2, 4, 8],
                                        v=[1, 2], ep=[1, 2, 4, 8], etp=[0, 1], micro_batch=[1, 2, 4],
                                        zero_stage=[0, 1, 3],
                                        recompute=[0, 2], sp=[False, True])),
}


def grid(model, axes: dict):  # noqa: ANN001, ANN201
    """Every combination of the axes (valid or not: all are priced), 16 micro-batches per pipeline."""
    import numpy as np

    from capsim import Layouts
    combos = np.array(list(itertools.product(*axes.values())), dtype=object).T
    arrays = {k: np.array(list(v), dtype=bool if k == "sp" else np.int64) for k, v in zip(axes, combos, strict=True)}
    arrays["global_batch"] = arrays["dp"] * arrays["micro_batch"] * 16
    return Layouts.build(model, **arrays)


def worker(repeats: int) -> dict:
    """Seconds per grid and calibration (medians) in this process's capsim."""
    pin_one_core()
    import numpy as np

    from capsim import get_accelerator, get_model, load_calibration
    from capsim.analytic.training import step_time
    from capsim.sim.pipeline import simulate_pipeline
    from capsim.specs.hardware import Cluster
    out: dict = {"grids": {}}
    p, v, m = 64, 2, 512
    fwd, bwd = np.full((p, v), 0.5), np.full((p, v), 1.0)
    out["simpy_s"] = median_time(lambda: simulate_pipeline(fwd, bwd, m, "interleaved", p2p_s=0.01), repeats=3)[0]
    out["simpy_async_s"] = median_time(lambda: simulate_pipeline(fwd, bwd, m, "interleaved", p2p_s=0.01,
                                                                 blocking_p2p=False), repeats=3)[0]
    for name, (acc, gpus, axes) in GRIDS.items():
        model = get_model(name)
        lay = grid(model, axes)
        cluster = Cluster(get_accelerator(acc), gpus)
        uneven = int(np.sum(model.total_layers % (lay.pp * lay.v) != 0))
        row = {"layouts": len(lay), "uneven": uneven, "moe": int(np.sum(lay.ep > 1)), "seconds": {}}
        row["wall_seconds"] = {}
        for cal in CALIBRATIONS:
            price = functools.partial(step_time, model, lay, cluster, load_calibration(cal).perf())
            row["seconds"][cal] = median_time(price, repeats=repeats, clock=time.process_time)[0]
            row["wall_seconds"][cal] = median_time(price, repeats=repeats, warmup=0)[0]
        out["grids"][name] = row
    return out


def run_worker(tree: Path | None, repeats: int) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, __file__, "--worker", "--repeats", str(repeats)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(label: str, runs: list[dict]) -> float:
    """Print one tree's medians over rounds; return its headline (layouts/s, all grids, slower calibration)."""
    first = runs[0]["grids"]
    report(f"simpy_interleaved_64x512_v2_seconds_median[{label}]",
           f"{statistics.median(r['simpy_s'] for r in runs):.3f}")
    report(f"simpy_interleaved_64x512_v2_async_p2p_seconds_median[{label}]",
           f"{statistics.median(r['simpy_async_s'] for r in runs):.3f}")
    rates = []
    layouts = sum(g["layouts"] for g in first.values())
    for cal in CALIBRATIONS:
        total_s = wall_s = 0.0
        for name, g in first.items():
            sec = statistics.median(r["grids"][name]["seconds"][cal] for r in runs)
            total_s += sec
            wall_s += statistics.median(r["grids"][name]["wall_seconds"][cal] for r in runs)
            report(f"layouts_per_s[{label}][{name}][{cal}]", f"{g['layouts'] / sec:,.0f}")
        rates.append(layouts / total_s)
        report(f"layouts_per_s[{label}][all][{cal}]", f"{layouts / total_s:,.0f} (wall clock {layouts / wall_s:,.0f})")
    return min(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, help="another capsim tree to measure on the same grid")
    ap.add_argument("--rounds", type=int, default=3, help="alternating worker processes per tree")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.repeats)))
        return
    trees = {"this": None} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(args.rounds):
        for label, tree in trees.items():
            runs[label].append(run_worker(tree, args.repeats))
    for name, g in runs["this"][0]["grids"].items():
        report(f"layouts[{name}]", f"{g['layouts']} ({g['uneven']} with pp x v not dividing the layers, "
                                   f"{g['moe']} with ep > 1)")
    headline = {label: summarise(label, r) for label, r in runs.items()}
    if "baseline" in headline:
        report("layouts_per_s_baseline", f"{headline['baseline']:,.0f}")
    report("layouts_per_s", f"{headline['this']:,.0f}")


if __name__ == "__main__":
    main()
