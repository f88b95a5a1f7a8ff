"""Training step time, vectorised over ~100,000 layouts, and the SimPy schedule of a large interleaved pipeline.

Targets (issue 4): >= 100,000 layouts/s on one core; the SimPy schedule of a 64-stage, 512-micro-batch interleaved
pipeline in <= 2 s. Run: python benchmarks/train_step_throughput.py
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, pin_one_core, report  # noqa: E402

pin_one_core()

from capsim import Layouts, get_accelerator, get_model, load_calibration  # noqa: E402
from capsim.analytic.training import step_time  # noqa: E402
from capsim.sim.pipeline import simulate_pipeline  # noqa: E402
from capsim.specs.hardware import Cluster  # noqa: E402


def grid(model) -> Layouts:  # noqa: ANN001
    """Every combination of the usual degrees on 1,024 GPUs' worth of choices (valid or not: all are priced)."""
    axes = dict(dp=[1, 2, 4, 8, 16, 32, 64, 128, 256], tp=[1, 2, 4, 8], pp=[1, 2, 4, 8, 16], v=[1, 2, 3],
                micro_batch=[1, 2, 4, 8], zero_stage=[0, 1, 2, 3], recompute=[0, 1, 2], sp=[False, True], cp=[1, 2])
    combos = np.array(list(itertools.product(*axes.values())), dtype=object).T
    arrays = {k: np.array(list(v), dtype=bool if k == "sp" else np.int64) for k, v in zip(axes, combos, strict=True)}
    arrays["global_batch"] = arrays["dp"] * arrays["micro_batch"] * 16
    return Layouts.build(model, **arrays)


def main() -> None:
    p, v, m = 64, 2, 512
    fwd, bwd = np.full((p, v), 0.5), np.full((p, v), 1.0)
    med, lo, hi = median_time(lambda: simulate_pipeline(fwd, bwd, m, "interleaved", p2p_s=0.01), repeats=3)
    report("simpy_blocks", 2 * p * v * m)
    report("simpy_interleaved_64x512_v2_seconds_median", f"{med:.3f}")
    report("simpy_interleaved_64x512_v2_seconds_min_max", f"{lo:.3f} {hi:.3f}")
    nb, _, _ = median_time(lambda: simulate_pipeline(fwd, bwd, m, "interleaved", p2p_s=0.01, blocking_p2p=False),
                           repeats=3)
    report("simpy_interleaved_64x512_v2_async_p2p_seconds_median", f"{nb:.3f}")

    model = get_model("gpt3-175b")
    lay = grid(model)
    cluster = Cluster(get_accelerator("a100"), 1024)
    report("layouts", len(lay))
    rates = {}
    for name in ("A100-SXM4-80GB", "A100-SXM4-80GB-profile"):
        perf = load_calibration(name).perf()
        med, lo, hi = median_time(lambda perf=perf: step_time(model, lay, cluster, perf), repeats=5)
        rates[name] = len(lay) / med
        report(f"seconds_median[{name}]", f"{med:.3f}")
        report(f"seconds_min_max[{name}]", f"{lo:.3f} {hi:.3f}")
        report(f"layouts_per_s[{name}]", f"{rates[name]:,.0f}")
    report("layouts_per_s", f"{min(rates.values()):,.0f}")


if __name__ == "__main__":
    main()
