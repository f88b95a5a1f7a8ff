"""Page: compression and precision what-ifs. Serving: quantization (weights x KV format), pruning (sparsity),
distillation; training: mixed-precision recipes and the global batch size (``capsim.plan.whatif_serve``,
``capsim.plan.whatif_train``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.calibration import perf_for, perfs_for
from capsim.errors import SpecError
from capsim.plan.serving import Slo
from capsim.plan.whatif_serve import SPARSITY, distillation_whatif, quantization_whatif, sparsity_whatif
from capsim.plan.whatif_train import batch_size_whatif, precision_whatif
from capsim.sim.serving.presets import PRESETS
from capsim.specs.catalog import accelerators, get_accelerator, get_model, models
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan, TrainPlan
from capsim.ui import figures, fmt
from capsim.ui.common import (
    checked,
    downloads,
    framework_input,
    infeasible,
    model_input,
    money,
    parse_numbers,
    plain_md,
    preset_traffic,
    show_table,
    stop,
    table_with_downloads,
)
from capsim.ui.state import number, select, text

STUDIES = ("quantization", "sparsity", "distillation", "training precision", "batch size")
SERVE_COLUMNS = ("capacity_rps", "prefill_s", "step_s", "replicas_min", "cost_per_hour_min", "cost_vs_baseline",
                 "reason")


@st.cache_data(show_spinner=False, max_entries=32)
def quantization_table(model: ModelSpec, acc: str, tp: int, preset: str, rate: float, ttft: float | None,
                       tpot: float | None, pp: int = 1) -> pd.DataFrame:
    return quantization_whatif(model, acc, preset_traffic(preset, rate), Slo(ttft, tpot), tp, perf=perf_for(acc),
                               pp=pp)


@st.cache_data(show_spinner=False, max_entries=32)
def sparsity_table(model: ModelSpec, acc: str, tp: int, preset: str, rate: float, ttft: float | None,
                   tpot: float | None, gemm_speedup: float | None, pp: int = 1) -> pd.DataFrame:
    return sparsity_whatif(model, acc, preset_traffic(preset, rate), Slo(ttft, tpot), tp, gemm_speedup=gemm_speedup,
                           perf=perf_for(acc), pp=pp)


@st.cache_data(show_spinner=False, max_entries=32)
def distillation(teacher: str, student: str, tokens: float, acc: str, gpus: int, preset: str, rate: float,
                 ttft: float | None, tpot: float | None, framework: str = DEFAULT_FRAMEWORK) -> dict[str, Any]:
    return distillation_whatif(get_model(teacher), get_model(student), tokens, acc, gpus,
                               preset_traffic(preset, rate), Slo(ttft, tpot), [acc], perfs=perfs_for([acc]),
                               framework=framework).to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def precision_table(model: ModelSpec, acc: str, gpus: int, tp: int, pp: int, micro_batch: int, global_batch: int,
                    seq_len: int, framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """``capsim whatif precision``: each recipe as ``framework`` runs it (pure; cached by its inputs)."""
    plan = TrainPlan(dp=gpus // (tp * pp), tp=tp, pp=pp, micro_batch=micro_batch, global_batch=global_batch,
                     seq_len=seq_len)
    return precision_whatif(model, Cluster(get_accelerator(acc), gpus), plan, perf=perf_for(acc), framework=framework)


@st.cache_data(show_spinner=False, max_entries=32)
def batch_table(model: ModelSpec, acc: str, gpus: int, tokens: float, batches: tuple[int, ...], seq_len: int,
                framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """``capsim whatif batch``: each batch's fastest layout as ``framework`` runs it (pure; cached by its inputs)."""
    return batch_size_whatif(model, Cluster(get_accelerator(acc), gpus), tokens, list(batches), seq_len,
                             perf=perf_for(acc), framework=framework)


def _serving_inputs(model: ModelSpec, c: list[Any]) -> dict[str, Any]:
    """One replica's accelerator and layout (checked as `capsim whatif quantization --tp --pp` checks it), the
    traffic and the SLOs."""
    acc = select("Accelerator", list(accelerators()), "acc", "H100-SXM5-80GB", where=c[1])
    tp = number("TP", "tp", 4, 1, 64, where=c[1])
    pp = number("PP stages", "pp", 1, 1, where=c[1], help="Pipeline-parallel stages per replica; pp must divide "
                "the layers.")
    checked(lambda: ServePlan(tp=tp, pp=pp).check(model))
    preset = select("Request lengths of", list(PRESETS), "workload", "chatbot", where=c[2])
    rate = number("Peak rate (req/s)", "rate", 20.0, 0.001, where=c[2], step=1.0)
    ttft = number("p99 TTFT target s (0: none)", "ttft", 2.0, 0.0, where=c[3], step=0.1)
    tpot = number("p99 TPOT target s (0: none)", "tpot", 0.1, 0.0, where=c[3], step=0.01, fmt="%.3f")
    return dict(acc=acc, tp=tp, pp=pp, preset=preset, rate=rate, ttft=ttft or None, tpot=tpot or None)


def answer(df: pd.DataFrame, key: str, base: str, describe: Any) -> str | None:
    """One sentence: the cheapest feasible option against the baseline (``df[key] == base``), or None."""
    ok = df[df["feasible"]].sort_values(["cost_per_hour_min", "capacity_rps"], ascending=[True, False])
    ref = ok[(ok[key] == base) & ((ok["kv_cache_dtype"] == "bf16") if "kv_cache_dtype" in ok else True)]
    if ok.empty or ref.empty:
        return None
    best, ref = ok.iloc[0], ref.iloc[0]
    if best["cost_per_hour_min"] >= ref["cost_per_hour_min"]:
        return (f"No option is cheaper than {describe(ref)}: {int(ref['replicas_min'])} replicas at "
                f"{money(ref['cost_per_hour_min'])}/h already meet the traffic and SLOs.")
    return (f"Cheapest: {describe(best)}, {int(best['replicas_min'])} replicas at {money(best['cost_per_hour_min'])}/h"
            f", {best['cost_per_hour_min'] / ref['cost_per_hour_min']:.2f}x the cost of {describe(ref)} "
            f"({int(ref['replicas_min'])} replicas at {money(ref['cost_per_hour_min'])}/h).")


def _reasons(df: pd.DataFrame, key: str) -> None:
    bad = df[~df["feasible"].astype(bool)]
    for _, row in bad.iterrows():
        st.caption(plain_md(f"{row[key]}{' / KV ' + str(row['kv_cache_dtype']) if 'kv_cache_dtype' in row else ''}"
                            f" is infeasible: {row['reason']}"))


def _quantization(model: ModelSpec, c: list[Any]) -> None:
    x = _serving_inputs(model, c)
    df = checked(quantization_table, model, x["acc"], x["tp"], x["preset"], x["rate"], x["ttft"], x["tpot"], x["pp"])
    df = df.assign(weights_gb=df.get("weights_per_gpu_bytes", pd.Series(dtype=float)) / 1e9)
    ok = df[df["feasible"]]
    line = answer(df, "quantization", "none",
                  lambda r: f"{'bf16' if r['quantization'] == 'none' else r['quantization']} weights, "
                  f"{r['kv_cache_dtype']} KV cache")
    if line:
        st.markdown(f"**{plain_md(line)}**")
    _reasons(df, "quantization")
    c3 = st.columns(3)
    c3[0].plotly_chart(figures.grouped_bar(ok, "quantization", "capacity_rps", "kv_cache_dtype",
                                           "Capacity per replica within the SLOs", "requests/s (by KV format)"),
                       width="stretch")
    weights = ok.drop_duplicates("quantization")
    c3[1].plotly_chart(figures.stacked_bar(weights, "quantization", ["weights_gb"], "Weights per GPU", "GB",
                                           labels={"weights_gb": "weights"}), width="stretch")
    c3[2].plotly_chart(figures.grouped_bar(ok, "quantization", "kv_tokens", "kv_cache_dtype",
                                           "KV-cache capacity per replica", "tokens (by KV format)"),
                       width="stretch")
    table_with_downloads(df, "whatif-quantization", ["quantization", "kv_cache_dtype", "weights_gb", "kv_tokens", *SERVE_COLUMNS])


def _sparsity(model: ModelSpec, c: list[Any]) -> None:
    x = _serving_inputs(model, c)
    speedup = number("Sparse GEMM speed-up (0: documented defaults)", "speedup", 0.0, 0.0, 8.0, where=c[0],
                     step=0.1, help="Defaults: " + "; ".join(f"{k} x{v['gemm_speedup']:g}" for k, v in SPARSITY.items()))
    df = checked(sparsity_table, model, x["acc"], x["tp"], x["preset"], x["rate"], x["ttft"], x["tpot"],
                 speedup or None, x["pp"])
    df = df.assign(weights_gb=df["weights_per_gpu_bytes"] / 1e9)
    line = answer(df, "pattern", "dense", lambda r: f"{r['pattern']} weights")
    if line:
        st.markdown(f"**{plain_md(line)}**")
    _reasons(df, "pattern")
    times = df.melt(id_vars="pattern", value_vars=["prefill_s", "step_s"], var_name="time", value_name="seconds")
    times["time"] = times["time"].map({"prefill_s": "prefill of one prompt", "step_s": "loaded decode step"})
    left, right = st.columns(2)
    left.plotly_chart(figures.stacked_bar(df, "pattern", ["capacity_rps"], "Capacity per replica within the SLOs",
                                          "requests/s", labels={"capacity_rps": "capacity"}), width="stretch")
    right.plotly_chart(figures.grouped_bar(times, "pattern", "seconds", "time", "Prefill and decode step time",
                                           "seconds"), width="stretch")
    table_with_downloads(df, "whatif-sparsity", ["pattern", "gemm_speedup", "weights_gb", *SERVE_COLUMNS])


def _distillation(c: list[Any]) -> None:
    names = list(models())
    teacher = select("Teacher", names, "teacher", "llama-3-70b", where=c[0])
    student = select("Student", names, "student", "llama-3-8b", where=c[0])
    tokens = number("Distillation tokens", "tokens", 1e11, 1.0, where=c[1], fmt="%.3e")
    acc = select("Accelerator (train and serve)", list(accelerators()), "acc", "H100-SXM5-80GB", where=c[1])
    gpus = number("Training GPUs", "gpus", 64, 1, 1 << 20, where=c[2])
    preset = select("Request lengths of", list(PRESETS), "workload", "chatbot", where=c[2])
    rate = number("Serving rate (req/s)", "rate", 50.0, 0.001, where=c[3], step=1.0)
    ttft = number("p99 TTFT target s", "ttft", 2.0, 0.0, where=c[3], step=0.1)
    tpot = number("p99 TPOT target s", "tpot", 0.1, 0.0, where=c[3], step=0.01, fmt="%.3f")
    fw = framework_input(where=c[0])
    d = checked(distillation, teacher, student, tokens, acc, gpus, preset, rate, ttft or None, tpot or None, fw)
    if not d["feasible"]:
        infeasible(d["reason"], None)
        return
    m = st.columns(4)
    m[0].metric("Cost to produce the student", money(d["produce_cost_usd"]))
    m[1].metric("Teacher fleet", f"{money(d['teacher_serve_cost_per_hour'])}/h")
    m[2].metric("Student fleet", f"{money(d['student_serve_cost_per_hour'])}/h")
    m[3].metric("Break-even", fmt.seconds(d["break_even_days"] * 86400),
                help=f"after {fmt.count(d['break_even_requests'])} requests")
    parts = pd.DataFrame([{"what": "produce (one-off)", "teacher forward": d["teacher_forward_s"] / 86400,
                           "student training": d["student_train_s"] / 86400}])
    st.plotly_chart(figures.stacked_bar(parts, "what", ["teacher forward", "student training"],
                                        f"Days on {gpus} x {acc} to produce {student} from {teacher}", "days"),
                    width="stretch")
    for note in d["notes"]:
        st.caption(plain_md(note))
    table = pd.DataFrame([{k: v for k, v in d.items() if k != "notes"}])
    show_table(table)
    downloads("whatif-distillation", table, d, key="distill", what="distillation")


def _training_inputs(c: list[Any]) -> dict[str, Any]:
    acc = select("Accelerator", list(accelerators()), "acc", "H100-SXM5-80GB", where=c[1])
    gpus = number("GPUs", "gpus", 8, 1, 1 << 20, where=c[1])
    seq = number("Sequence length", "seq", 4096, 1, 1 << 21, where=c[2])
    fw = framework_input(where=c[2])
    return dict(acc=acc, gpus=gpus, seq=seq, fw=fw)


def _precision(model: ModelSpec, c: list[Any]) -> None:
    x = _training_inputs(c)
    tp = number("TP", "tp", 8, 1, 1024, where=c[2])
    pp = number("PP", "pp", 1, 1, 1024, where=c[3])
    mb = number("Micro-batch", "mb", 1, 1, 1024, where=c[3])
    gb = number("Global batch", "gb", 64, 1, 1 << 24, where=c[3])
    if x["gpus"] % (tp * pp):
        stop(SpecError("layout", f"tp*pp = {tp * pp} does not divide the {x['gpus']} GPUs",
                       "pick tp and pp whose product divides the GPU count"))
    df = checked(precision_table, model, x["acc"], x["gpus"], tp, pp, mb, gb, x["seq"], x["fw"])
    _reasons(df, "precision")
    df = df.assign(memory_gb=df.get("memory_per_gpu_bytes", pd.Series(dtype=float)) / 1e9)
    ok = df[df.get("step_s", pd.Series(dtype=float)).notna()] if "step_s" in df else df.iloc[:0]
    left, right = st.columns(2)
    left.plotly_chart(figures.stacked_bar(ok, "precision", ["step_s"], "Step time by recipe", "seconds",
                                          labels={"step_s": "step"}), width="stretch")
    right.plotly_chart(figures.stacked_bar(ok, "precision", ["memory_gb"], "Memory per GPU by recipe", "GB",
                                           get_accelerator(x["acc"]).memory_bytes / 1e9, "capacity",
                                           labels={"memory_gb": "memory"}), width="stretch")
    table_with_downloads(df, "whatif-precision", [c for c in df.columns if c != "memory_per_gpu_bytes"])


def _batch(model: ModelSpec, c: list[Any]) -> None:
    x = _training_inputs(c)
    tokens = number("Tokens (at the smallest batch)", "tokens", 1e12, 1.0, where=c[3], fmt="%.3e")
    batches = checked(parse_numbers, text("Global batches", "batches", "256,512,1024,2048,4096", where=c[3]),
                      "global batches", "256,512,1024", integer=True, most=12)
    df = checked(batch_table, model, x["acc"], x["gpus"], tokens, batches, x["seq"], x["fw"])
    _reasons(df, "global_batch")
    df = df.assign(days=df.get("time_to_train_s", pd.Series(dtype=float)) / 86400)
    left, right = st.columns(2)
    left.plotly_chart(figures.lines(df, "global_batch", {"days": "time to the same loss"},
                                    "Time to the same loss against the global batch", "global batch (sequences)",
                                    "days", log_x=True), width="stretch")
    right.plotly_chart(figures.lines(df, "global_batch", {"tokens_needed": "tokens needed"},
                                     "Tokens needed (McCandlish et al. 2018)", "global batch (sequences)", "tokens",
                                     log_x=True), width="stretch")
    table_with_downloads(df, "whatif-batch", list(df.columns))


def render() -> None:
    st.header("Compression and precision what-ifs")
    st.caption("What quantization, pruning and distillation do to a serving fleet's memory, latency, capacity and "
               "cost; what the precision recipe and the batch size do to training. Accuracy is not modelled.")
    study = select("What-if", list(STUDIES), "study", "quantization", radio=True)
    c = st.columns(4)
    if study == "distillation":
        _distillation(c)
        return
    with c[0]:  # a 70B model on 4 GPUs: the sizes where compression changes the fleet
        model = model_input(default="llama-3-70b" if study in ("quantization", "sparsity") else "llama-2-7b")
    {"quantization": _quantization, "sparsity": _sparsity, "training precision": _precision,
     "batch size": _batch}[study](model, c)


__all__ = ["render"]
