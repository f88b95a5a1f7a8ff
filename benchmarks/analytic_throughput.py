"""Vectorised memory + FLOPs over a grid of training layouts, on one core.

Target (foundation issue): >= 1,000,000 layouts/s over >= 100,000 layouts. Calculon evaluates ~100 layouts/s/core.
Run: python benchmarks/analytic_throughput.py
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, pin_one_core, report  # noqa: E402

pin_one_core()

from capsim import Layouts, get_model, training_memory  # noqa: E402
from capsim.analytic.flops import training_flops_per_token  # noqa: E402


def grid() -> dict[str, np.ndarray]:
    """Every combination of the usual degrees (valid or not: the sweep prices them all, then filters)."""
    axes = dict(dp=[1, 2, 4, 8, 16, 32, 64, 128, 256], tp=[1, 2, 4, 8], pp=[1, 2, 4, 8, 16], v=[1, 2, 3],
                micro_batch=[1, 2, 4, 8], zero_stage=[0, 1, 2, 3], recompute=[0, 1, 2], sp=[False, True],
                cp=[1, 2])
    combos = np.array(list(itertools.product(*axes.values())), dtype=object).T
    out = {k: np.array(list(v), dtype=bool if k == "sp" else np.int64) for k, v in zip(axes, combos, strict=True)}
    out["global_batch"] = out["dp"] * out["micro_batch"] * 16
    return out


def evaluate(model, lay: Layouts) -> tuple[np.ndarray, np.ndarray]:
    """Memory per GPU and FLOPs per step of every layout."""
    mem = training_memory(model, lay)
    flops = training_flops_per_token(model, lay.seq_len, recompute_full=False) * lay.global_batch * lay.seq_len
    return mem.total_bytes, flops


def main() -> None:
    model = get_model("gpt3-175b")
    arrays = grid()
    lay = Layouts.build(model, **arrays)
    n = len(lay)
    med, lo, hi = median_time(lambda: evaluate(model, lay), repeats=7)
    report("layouts", n)
    report("seconds_median", f"{med:.4f}")
    report("seconds_min_max", f"{lo:.4f} {hi:.4f}")
    report("calculon_layouts_per_s_per_core", 100)
    report("speedup_vs_calculon", f"{n / med / 100:.0f}x")
    report("layouts_per_s", f"{n / med:,.0f}")


if __name__ == "__main__":
    main()
