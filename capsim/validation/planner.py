"""Suite ``planner``: for each SC21 Table 1 run, the training planner must find a layout at least as fast as the
published one by capsim's own model, and say where its choice differs.

Rows: ``measured`` is capsim's step time of the published layout (blank settings searched, as in the
``training`` suite); ``predicted`` is the planner's best step time on the same GPUs, batch and sequence length,
so a negative error is the planner's speed-up.
"""

from __future__ import annotations

from pathlib import Path

from capsim.calibration import perf_for
from capsim.plan.training import plan_training
from capsim.specs.catalog import get_accelerator
from capsim.specs.precision import Precision
from capsim.validation.harness import Report, Row, read_csv
from capsim.validation.training import REQUIRED, _fixed, _framework, predict_row, row_model

LAYOUT = ("dp", "tp", "pp", "v", "micro_batch", "recompute", "sp", "zero_stage", "distributed_optimizer", "cp")


def planner_suite(path: str | Path | None = None, calibration: str | None = None) -> Report:
    rows = []
    for r in read_csv(path, "training_published.csv", REQUIRED):
        if not r["source"].startswith("sc21"):
            continue
        published = predict_row(r, calibration)
        model, acc = row_model(r), get_accelerator(r["gpu"])
        plan = plan_training(model, acc, 1e9, int(r["global_batch"]), int(r["seq"]), num_gpus=int(r["gpus"]),
                             perf=perf_for(acc, calibration), precision=Precision.preset(r["precision"]),
                             framework=_framework(r["source"]), usable_memory_fraction=1.0)
        best = plan.best
        pub = {**{k: v for k, v in _fixed(r).items() if v is not None}, **published.chosen, "dp": int(r["dp"])}
        diff = [f"{k} {_v(pub.get(k))}->{_v(best[k])}" for k in LAYOUT
                if k in pub and str(_v(pub[k])) != str(_v(best[k]))]
        note = "planner: " + (", ".join(diff) if diff else "same layout as published")
        rows.append(Row(r["source"], f"{r['model']} on {r['gpus']} GPUs", "step_s", published.step_s,
                        float(best["step_s"]), "s", note))
    return Report("planner", calibration or published.calibration, tuple(rows),
                  ("measured = capsim's step time of the published layout; predicted = the planner's best; "
                   "a negative error is the planner's speed-up",))


def _v(value: object) -> object:
    if isinstance(value, str) and value in ("none", "selective", "full"):
        return ("none", "selective", "full").index(value)
    if isinstance(value, str) and value in ("yes", "no"):
        return value == "yes"
    if hasattr(value, "item"):
        value = value.item()
    return bool(value) if isinstance(value, bool) else int(value) if value is not None else None
