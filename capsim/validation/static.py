"""Suites that need no timing: ``params`` (published parameter counts) and ``memory`` (ZeRO, Korthikanti).

A memory row's attention kernel and dropout come from the framework release its ``framework``/``software``
columns name; its precision recipe from its ``precision`` column; nothing from its source's name."""

from __future__ import annotations

import re
from pathlib import Path

from capsim.analytic.memory import training_memory
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.params import param_counts
from capsim.analytic.training import release_for
from capsim.errors import SpecError
from capsim.specs.catalog import get_model
from capsim.specs.model import ModelSpec
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import Precision
from capsim.validation.harness import (
    LINE,
    DataError,
    Report,
    Row,
    attempt,
    check_metric,
    failed_row,
    measured_value,
    read_csv,
)

UNITS = {"B": 1e9, "M": 1e6, "GB": 1e9, "GiB": 2.0**30, "MB": 1e6, "MiB": 2.0**20}
# What each published count measures (sources differ: Mistral's "active" includes the embedding table,
# DeepSeek's "activated" leaves it out; Qwen's and Gemma's "non-embedding" leaves out the embedding and the LM head).
PARAMS_METRICS = {"params_total": "total", "params_active": "active",
                  "params_active_non_embedding": "active_non_embedding", "params_transformer": "transformer",
                  "params_embedding": "embedding"}
MEMORY_METRICS = ("activations_per_gpu", "model_states_per_gpu", "params_and_optimizer_per_gpu")
MEMORY_COLUMNS = ("source", "model", "config", "metric", "value", "unit", "precision", "seq", "micro_batch",
                  "global_batch", "framework", "software")
SOFTWARE_FREE = ("model_states_per_gpu", "params_and_optimizer_per_gpu")  # metrics the kernels do not change


def _unit(r: dict[str, str]) -> float:
    unit = r["unit"].strip()
    if unit not in UNITS:
        raise DataError("unit", f"line {r.get(LINE, '?')}: unknown unit {unit!r}", f"use one of {', '.join(UNITS)}")
    return UNITS[unit]


def _params_row(r: dict[str, str], measured: float) -> Row:
    counts = param_counts(get_model(r["model"]))
    metric = r["metric"]
    predicted = getattr(counts, PARAMS_METRICS[metric]) / _unit(r)
    digits = int(r.get("digits") or 0)
    note = ""
    ulp = 10.0 ** (len(str(int(measured))) - digits) if digits and measured >= 1 else 0
    if ulp:  # sources round or truncate: the count is known to one unit of its last digit
        note = f"published to {digits} significant figures: +/-{100 * ulp / measured:.2g}%"
    return Row(r["source"], r["model"], metric, measured, predicted, r["unit"], note)


def params_suite(path: str | Path | None = None) -> Report:
    table = read_csv(path, "params_published.csv", ("source", "model", "metric", "value", "unit"))
    for r in table:
        check_metric(r, PARAMS_METRICS)
        measured_value(r)
        _unit(r)
    rows = []
    for r in table:
        measured = measured_value(r)
        row, err = attempt(_params_row, r, measured)
        rows.append(row or failed_row(r["source"], r["model"], r["metric"], measured, r["unit"], str(err)))
    return Report("params", "none", tuple(rows))


def _memory_model(name: str) -> ModelSpec:
    if re.fullmatch(r"\d+(\.\d+)?[BbMm]", name):  # a bare size names the Megatron GPT of that size
        name = f"gpt-{name}"
    return get_model(name)


def parse_config(config: str) -> dict[str, object]:
    """Read a layout written as in the memory CSV: 'tp8 pp8 v3 sp + selective recompute', 'dp64 stage 2'."""
    text = config.lower()
    plan: dict[str, object] = {}
    for key, field in (("dp", "dp"), ("tp", "tp"), ("pp", "pp"), ("v", "pp_interleave"), ("mb", "micro_batch"),
                       ("gb", "global_batch"), ("cp", "cp")):
        m = re.search(rf"\b{key}(\d+)\b", text)
        if m:
            plan[field] = int(m.group(1))
    m = re.search(r"stage (\d)", text)
    if m:
        plan["zero_stage"] = int(m.group(1))
    plan["sequence_parallel"] = bool(re.search(r"\bsp\b", text)) and "no sp" not in text
    plan["recompute"] = ("selective" if "selective" in text else "full" if "full recompute" in text else "none")
    return plan


def _software(r: dict[str, str]) -> tuple[AttentionImpl, bool, dict[str, object], str]:
    """(attention, dropout, layout defaults, release name) of the row's release; blank only for SOFTWARE_FREE
    metrics (a DataError otherwise, or for an unknown framework or release)."""
    if not r["framework"].strip() and not r["software"].strip() and r["metric"] in SOFTWARE_FREE:
        return AttentionImpl.UNFUSED, False, {}, ""
    try:
        release = release_for(r["framework"], r["software"])
    except SpecError as err:
        raise DataError(err.field, f"line {r.get(LINE, '?')}: {err.problem}", err.fix) from None
    fw, defaults = release.configure("")
    return fw.attention, fw.dropout, defaults, release.name


def _memory_row(r: dict[str, str], measured: float) -> Row:
    model = _memory_model(r["model"])
    attention, dropout, defaults, release = _software(r)
    plan_kw = parse_config(r["config"])
    for column in ("seq", "micro_batch", "global_batch"):
        if r[column].strip():
            plan_kw["seq_len" if column == "seq" else column] = int(r[column])
    dp, pp = plan_kw.get("dp", 1), plan_kw.get("pp", 1)
    mb = plan_kw.setdefault("micro_batch", defaults.get("micro_batch", 1))
    plan_kw.setdefault("global_batch", dp * mb * max(pp * 8, 1))  # enough micro-batches to fill the pipeline
    plan_kw.setdefault("seq_len", min(model.max_seq, 2048))
    plan = TrainPlan(**plan_kw, precision=Precision.preset(r["precision"])).check(model)
    mem = training_memory(model, plan, attention=attention, dropout=dropout)
    value = mem.activations_bytes if r["metric"] == "activations_per_gpu" else mem.model_states_bytes
    note = f"precision={r['precision']}" + (f"; {release}" if release else "")
    return Row(r["source"], f"{r['model']} {r['config']}", r["metric"], measured, float(value) / _unit(r),
               r["unit"], note)


def memory_suite(path: str | Path | None = None) -> Report:
    table = read_csv(path, "memory_published.csv", MEMORY_COLUMNS)
    for r in table:
        check_metric(r, MEMORY_METRICS)
        measured_value(r)
        _unit(r)
        _software(r)
    rows = []
    for r in table:
        measured = measured_value(r)
        row, err = attempt(_memory_row, r, measured)
        rows.append(row or failed_row(r["source"], f"{r['model']} {r['config']}", r["metric"], measured, r["unit"],
                                      str(err)))
    return Report("memory", "none", tuple(rows))
