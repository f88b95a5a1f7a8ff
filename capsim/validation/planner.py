"""Suite ``planner``: for each published training run, the training planner must find a layout at least as fast
as the published one by capsim's own model, and say where its choice differs.

Rows: ``measured`` is capsim's step time of the published layout (blank settings at the release's documented
defaults, as in the ``training`` suite); ``predicted`` is the planner's best step time on the same GPUs, batch and
sequence length under the same release, so a negative error is the planner's speed-up. A run capsim cannot price
is a row with its reason.
"""

from __future__ import annotations

from pathlib import Path

from capsim.calibration import default_calibration, perf_for
from capsim.plan.training import plan_training
from capsim.specs.catalog import get_accelerator
from capsim.specs.precision import Precision
from capsim.validation.harness import Report, Row, attempt, failed_row, read_csv
from capsim.validation.training import REQUIRED, predict_row, published_settings, row_model, row_release

LAYOUT = ("dp", "tp", "pp", "v", "micro_batch", "recompute", "sp", "zero_stage", "distributed_optimizer", "cp")


def _row(r: dict[str, str], calibration: str | None) -> Row:
    published = predict_row(r, calibration)
    _release, fw, _defaults = row_release(r)
    acc = get_accelerator(r["gpu"])
    plan = plan_training(row_model(r), acc, 1e9, int(r["global_batch"]), int(r["seq"]), num_gpus=int(r["gpus"]),
                         perf=perf_for(acc, calibration), precision=Precision.preset(r["precision"]), framework=fw,
                         usable_memory_fraction=1.0)
    best = plan.best
    pub = {**published_settings(r), **published.settings,
           "dp": int(r["dp"]), "tp": int(r["tp"]), "pp": int(r["pp"])}
    diff = [f"{k} {_v(pub.get(k))}->{_v(best[k])}" for k in LAYOUT
            if pub.get(k) is not None and str(_v(pub[k])) != str(_v(best[k]))]
    note = "planner: " + (", ".join(diff) if diff else "same layout as published")
    return Row(r["source"], f"{r['model']} on {r['gpus']} GPUs", "step_s", published.step_s, float(best["step_s"]),
               "s", note)


def planner_suite(path: str | Path | None = None, calibration: str | None = None) -> Report:
    rows, names = [], set()
    for r in read_csv(path, "training_published.csv", REQUIRED):
        names.add(calibration or default_calibration(r["gpu"]))
        row, err = attempt(_row, r, calibration)
        rows.append(row or failed_row(r["source"], f"{r['model']} on {r['gpus']} GPUs", "step_s", float("nan"), "s",
                                      str(err)))
    return Report("planner", " + ".join(sorted(names)), tuple(rows),
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
