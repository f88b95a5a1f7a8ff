"""Suites that need no timing: ``params`` (published parameter counts) and ``memory`` (ZeRO, Korthikanti)."""

from __future__ import annotations

import re
from pathlib import Path

from capsim.analytic.memory import training_memory
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.params import param_counts
from capsim.errors import SpecError
from capsim.specs.catalog import get_model
from capsim.specs.model import ModelSpec
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import Precision
from capsim.validation.harness import Report, Row, read_csv

UNITS = {"B": 1e9, "M": 1e6, "GB": 1e9, "GiB": 2.0**30, "MB": 1e6, "MiB": 2.0**20}

# Published training recipes of each memory source (configuration facts, not corrections):
# ZeRO Fig. 1 uses mixed-precision Adam with fp16 weights and gradients and K = 12 (Rajbhandari et al. 2020,
# Sec. 3.1); Korthikanti et al. 2022 train with Megatron-LM: fp16 weights, fp32 main gradients, fp32 master and
# Adam states (18 bytes/param), unfused softmax attention and dropout 0.1.
RECIPES = {"zero": ("fp16-zero", AttentionImpl.UNFUSED, True),
           "korthikanti": ("fp16", AttentionImpl.UNFUSED, True)}


def params_suite(path: str | Path | None = None) -> Report:
    rows = []
    for r in read_csv(path, "params_published.csv", ("source", "model", "metric", "value", "unit"), UNITS):
        counts = param_counts(get_model(r["model"]))
        metric = r["metric"]
        if metric not in ("params_total", "params_active"):
            raise SpecError("metric", f"unknown metric {metric!r}", "use params_total or params_active")
        scale = UNITS[r["unit"]]
        predicted = (counts.total if metric == "params_total" else counts.active) / scale
        digits = int(r.get("digits") or 0)
        note = ""
        if digits:
            value = float(r["value"])
            ulp = 10 ** (len(str(int(value))) - digits) if value >= 1 else 0
            if ulp:
                note = f"published to {digits} significant figures: +/-{50 * ulp / value:.2f}% rounding"
        rows.append(Row(r["source"], r["model"], metric, float(r["value"]), predicted, r["unit"], note))
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


def _korthikanti_batches(model: str) -> dict[str, int]:
    """Micro- and global batch of the same run in training_published.csv (Korthikanti Table 5)."""
    for r in read_csv(None, "training_published.csv", ("source", "model")):
        if r["source"].startswith("korthikanti") and r["model"].lower() == model.lower():
            return {"micro_batch": int(r["micro_batch"]), "global_batch": int(r["global_batch"]),
                    "seq_len": int(r["seq"])}
    return {}


def memory_suite(path: str | Path | None = None) -> Report:
    rows = []
    for r in read_csv(path, "memory_published.csv", ("source", "model", "config", "metric", "value", "unit"),
                      UNITS):
        model = _memory_model(r["model"])
        plan_kw = parse_config(r["config"])
        recipe = next((v for k, v in RECIPES.items() if r["source"].lower().startswith(k)),
                      ("fp16", AttentionImpl.UNFUSED, True))
        precision, attention, dropout = recipe
        plan_kw = {**_korthikanti_batches(r["model"]), **plan_kw}
        dp, pp = plan_kw.get("dp", 1), plan_kw.get("pp", 1)
        mb = plan_kw.setdefault("micro_batch", 1)
        plan_kw.setdefault("global_batch", dp * mb * max(pp * 8, 1))  # steady-state pipeline when unpublished
        plan_kw.setdefault("seq_len", min(model.max_seq, 2048))
        plan = TrainPlan(**plan_kw, precision=Precision.preset(precision)).check(model)
        mem = training_memory(model, plan, attention=attention, dropout=dropout)
        metric = r["metric"]
        if metric == "activations_per_gpu":
            value = mem.activations_bytes
        elif metric in ("model_states_per_gpu", "params_and_optimizer_per_gpu"):
            value = mem.model_states_bytes
        else:
            raise SpecError("metric", f"unknown memory metric {metric!r}",
                            "use activations_per_gpu, model_states_per_gpu or params_and_optimizer_per_gpu")
        unit = r["unit"]
        rows.append(Row(r["source"], f"{r['model']} {r['config']}", metric, float(r["value"]),
                        float(value) / UNITS[unit], unit, f"precision={precision}"))
    return Report("memory", "none", tuple(rows))
