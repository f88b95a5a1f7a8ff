"""The Scaling page's default serving study (llama-3-8b, chatbot lengths, p99 TTFT 1 s and TPOT 50 ms, rates
1, 10, 100 and 1000 req/s, H100 / L4 / A100 x 4 quantizations, adaptive run lengths, one process), as the page
computes it (one rate at a time), side by side in one run:

- "per rate": each rate bounds every candidate again (before: the bound table was rate by rate);
- "shared bounds": the candidates' capacity bounds, which do not depend on the rate, kept across the rates
  (``memo`` of ``capsim.plan.serving.plan_serving``; the page keeps one per study);
- "best only": shared bounds, and the cheapest candidate of another accelerator kind sized only where its bound
  is not above the best fleet (``front=False``, what the study does now; the other two size every kind's cheapest
  for a Pareto front the study does not show).

All must give the same table (checked). CPU seconds of this process (steadier than wall on a shared machine);
medians of ``--repeats``.

    python benchmarks/scaling_serving_default.py [--repeats 2] [--rates 1,10,100,1000] [--variants ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from capsim import get_model  # noqa: E402
from capsim.calibration import perfs_for  # noqa: E402
from capsim.plan.scaling_study import serving_scaling  # noqa: E402
from capsim.plan.serving import QUANTIZATIONS, Slo, Traffic  # noqa: E402
from capsim.sim.serving.presets import get_preset  # noqa: E402

ACCS = ["H100-SXM5-80GB", "L4", "A100-SXM4-80GB"]  # the page's default candidates


def study(rates: list[float], shared: bool, front: bool) -> pd.DataFrame:
    """The page's loop: one call per rate; ``shared``: one memo for all of them (as the page keeps); ``front``:
    size every kind's cheapest candidate."""
    model, perfs, memo = get_model("llama-3-8b"), perfs_for(ACCS), {}
    frames = [serving_scaling(model, Traffic(1.0, get_preset("chatbot").lengths), Slo(1.0, 0.05), ACCS, [rate],
                              QUANTIZATIONS, workers=1, perfs=perfs, memo=memo if shared else {}, front=front)
              for rate in rates]
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rates", default="1,10,100,1000")
    ap.add_argument("--variants", default="per rate,shared bounds,best only")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    times: dict[str, list[float]] = {name: [] for name in args.variants.split(",")}
    tables: dict[str, pd.DataFrame] = {}
    for _ in range(args.repeats):
        for name in times:  # alternated, so both see the same machine
            t0 = time.process_time()
            tables[name] = study(rates, shared=name != "per rate", front=name != "best only")
            times[name].append(time.process_time() - t0)
    first, *rest = tables
    for name in rest:
        pd.testing.assert_frame_equal(tables[first], tables[name])
    report("same table", True)
    for name, ts in times.items():
        report(f"{name} cpu s (median of {len(ts)})", round(statistics.median(ts), 1))
    for name in rest:
        report(f"{name} / {first}", round(statistics.median(times[name]) / statistics.median(times[first]), 3))


if __name__ == "__main__":
    main()
