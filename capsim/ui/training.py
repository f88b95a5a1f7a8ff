"""Page: the training planner. A model on N accelerators, a layout given or searched; step-time and memory
breakdowns, MFU, time and cost to train, and the pipeline schedule simulated event by event (SimPy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from capsim.analytic.layouts import Layouts
from capsim.analytic.training import (
    BREAKDOWN,
    StepTime,
    as_released,
    get_framework,
    step_time,
)
from capsim.calibration import available, perf_for
from capsim.errors import SpecError
from capsim.plan.training import plan_training
from capsim.sim.train_step import simulate_step
from capsim.specs.catalog import accelerators, get_accelerator
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Recompute, TrainPlan
from capsim.specs.precision import PRESET_NAMES, Precision
from capsim.ui import figures, fmt, nearest
from capsim.ui.common import (
    checked,
    downloads,
    framework_input,
    infeasible,
    model_input,
    money,
    plain_md,
    show_table,
    stop,
    use_in_link,
)
from capsim.ui.nearest import fewest_gpus, nearest_layout
from capsim.ui.state import flag, number, select

AUTO, MANUAL = "auto (search)", "manual"
DEFAULT_CAL = "auto (GPU profile, else datasheet)"  # the one rule of capsim.calibration.select
TOP = 5  # layouts compared side by side in auto mode
MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations", "temporary")
DAY_S = 86400.0
SP_CHOICES = {"release": "the release's default", "true": "on", "false": "off"}  # link value -> label


def layout_labels(lay: Layouts) -> list[str]:
    """Short names of layouts: ``dp4 tp4 pp4 v5 mb1 sp dist-opt``."""
    out = []
    for i in range(len(lay)):
        parts = [f"dp{lay.dp[i]} tp{lay.tp[i]} pp{lay.pp[i]}"]
        parts += [f"v{lay.v[i]}"] if lay.v[i] > 1 else []
        parts += [f"cp{lay.cp[i]}"] if lay.cp[i] > 1 else []
        parts += [f"ep{lay.ep[i]}"] if lay.ep[i] > 1 else []
        parts += [f"mb{lay.micro_batch[i]}", ["", "sel-rec", "full-rec"][int(lay.recompute[i])]]
        parts += ["sp"] if lay.sp[i] else []
        parts += [f"zero{lay.zero_stage[i]}"] if lay.zero_stage[i] else []
        parts += ["dist-opt"] if lay.distributed_optimizer[i] else []
        parts += [f"fsdp-group{lay.shard[i]}"] if lay.shard[i] < lay.dp[i] * lay.cp[i] else []
        out.append(" ".join(p for p in parts if p))
    return out


def _frame(lay: Layouts, res: StepTime) -> pd.DataFrame:
    """One row per layout: the layout, its step breakdown (s), memory per GPU (GB), MFU and train totals."""
    n = len(lay)

    def col(x: Any) -> np.ndarray:
        return np.atleast_1d(np.asarray(x)).astype(float) * np.ones(n)

    mem = res.memory
    cols: dict[str, Any] = {"rank": [f"#{i + 1}" for i in range(n)], "layout": layout_labels(lay)}
    cols |= {k: np.asarray(getattr(lay, k)) for k in ("dp", "tp", "pp", "v", "cp", "ep", "micro_batch", "recompute",
                                                      "sp", "zero_stage", "distributed_optimizer", "shard")}
    cols |= {"micro_batches": np.asarray(lay.micro_batches), "step_s": col(res.step_s)}
    cols |= {k: col(getattr(res, k)) for k in BREAKDOWN}
    cols |= {f"{p}_gb": col(getattr(mem, f"{p}_bytes")) / 1e9 for p in MEMORY_PARTS}
    cols |= {"memory_gb": col(mem.total_bytes) / 1e9, "capacity_gb": np.full(n, mem.capacity_bytes / 1e9)}
    cols |= {k: col(getattr(res, k)) for k in ("mfu", "hfu", "tflops_per_gpu_model", "tokens_per_s",
                                               "train_time_s", "train_cost_usd", "train_energy_j")}
    cols["train_days"] = cols["train_time_s"] / DAY_S
    cols["feasible"] = np.atleast_1d(np.asarray(res.feasible, dtype=bool))
    cols["reason"] = np.atleast_1d(np.asarray(res.reason, dtype=object))
    return pd.DataFrame(cols)


@st.cache_data(show_spinner=False, max_entries=64)
def manual_report(model: ModelSpec, acc_name: str, price: float | None, gpus: int, plan: TrainPlan,
                  tokens: float, calibration: str | None, framework: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Step time of one given plan as its release runs it (``as_released``; pure; cached by its inputs)."""
    cluster = Cluster(get_accelerator(acc_name, price), gpus)
    run = as_released(model, plan, framework)
    res = step_time(model, run, cluster, perf_for(cluster.accelerator, calibration), framework=framework,
                    train_tokens=tokens)
    table = _frame(Layouts.from_plans(model, [run]), res)
    return table, {"calibration": res.calibration, "framework": res.framework, "evaluated": 1, "explanation": [],
                   "recipe": run.precision.summary()}


@st.cache_data(show_spinner=False, max_entries=64)
def auto_report(model: ModelSpec, acc_name: str, price: float | None, gpus: int, global_batch: int, seq_len: int,
                precision: str, tokens: float, calibration: str | None, framework: str, usable: float
                ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The fastest layouts on ``gpus`` (``capsim.plan.training``), the top few priced term by term (pure)."""
    acc = get_accelerator(acc_name, price)
    prec = Precision.preset(precision)
    perf = perf_for(acc, calibration)
    plan = plan_training(model, acc, tokens, global_batch, seq_len, gpus, perf=perf, precision=prec,
                         framework=framework, usable_memory_fraction=usable)
    if not plan.feasible:
        return pd.DataFrame(), {"reason": plan.reason, "evaluated": plan.evaluated}
    top = plan.table.head(TOP)
    lay = Layouts.build(model, **{c: top[c].to_numpy() for c in ("dp", "tp", "pp", "v", "cp", "ep", "micro_batch",
                                                                 "recompute", "sp", "zero_stage",
                                                                 "distributed_optimizer", "shard", "schedule")},
                        global_batch=global_batch, seq_len=seq_len)
    res = step_time(model, lay, Cluster(acc, gpus), perf, prec, framework, train_tokens=tokens)
    return _frame(lay, res), {"calibration": res.calibration, "framework": res.framework,
                              "evaluated": plan.evaluated, "explanation": list(plan.explanation),
                              "recipe": get_framework(framework).run_precision(prec).summary()}


@st.cache_data(show_spinner=False, max_entries=32)
def nearest_fix(model: ModelSpec, acc_name: str, price: float | None, gpus: int, plan: TrainPlan,
                calibration: str | None, framework: str) -> dict[str, Any] | None:
    """The closest layout to ``plan`` that fits (pure; cached by its inputs)."""
    acc = get_accelerator(acc_name, price)
    return nearest_layout(model, Cluster(acc, gpus), plan, perf_for(acc, calibration), framework)


@st.cache_data(show_spinner=False, max_entries=32)
def more_gpus(model: ModelSpec, acc_name: str, price: float | None, gpus: int, global_batch: int, seq_len: int,
              precision: str, tokens: float, calibration: str | None, framework: str, usable: float
              ) -> dict[str, Any] | None:
    """The fewest GPUs above ``gpus`` on which a layout fits (pure; cached by its inputs)."""
    acc = get_accelerator(acc_name, price)
    return fewest_gpus(model, acc, gpus, global_batch, seq_len, tokens, perf_for(acc, calibration),
                       Precision.preset(precision), framework, usable)


@st.cache_data(show_spinner=False, max_entries=32)
def pipeline_timeline(model: ModelSpec, acc_name: str, price: float | None, gpus: int, plan: TrainPlan,
                      calibration: str | None, framework: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """The plan's step simulated block by block on the SimPy pipeline (pure; cached by its inputs)."""
    acc = get_accelerator(acc_name, price)
    res = simulate_step(model, plan, Cluster(acc, gpus), perf_for(acc, calibration), framework)
    return res.timeline, res.to_dict()


def _plan_of(row: dict[str, Any], global_batch: int, seq_len: int, precision: str) -> TrainPlan:
    return TrainPlan(dp=int(row["dp"]), tp=int(row["tp"]), pp=int(row["pp"]), pp_interleave=int(row["v"]),
                     cp=int(row["cp"]), ep=int(row["ep"]), sequence_parallel=bool(row["sp"]),
                     zero_stage=int(row["zero_stage"]), distributed_optimizer=bool(row["distributed_optimizer"]),
                     recompute=list(Recompute)[int(row["recompute"])], micro_batch=int(row["micro_batch"]),
                     global_batch=global_batch, seq_len=seq_len, precision=Precision.preset(precision),
                     shard_group=_group(row))


def _group(row: dict[str, Any]) -> int | None:
    """A row's hybrid sharding group (None: sharded over all of dp x cp)."""
    shard = int(row.get("shard") or 0)
    return shard if 0 < shard < int(row["dp"]) * int(row["cp"]) else None


def _manual_plan(gpus: int, global_batch: int, seq_len: int, precision: str) -> TrainPlan:
    c = st.columns(5)
    tp = number("TP", "tp", 1, 1, 1024, where=c[0])
    pp = number("PP", "pp", 1, 1, 1024, where=c[1])
    v = number("Interleave v", "v", 1, 1, 64, where=c[2], help="Model chunks per stage (interleaved 1F1B).")
    cp = number("CP", "cp", 1, 1, 1024, where=c[3])
    ep = number("EP", "ep", 1, 1, 1024, where=c[4], help="Expert parallelism (MoE models).")
    c = st.columns(5)
    mb = number("Micro-batch", "mb", 1, 1, 1024, where=c[0])
    rec = select("Recompute", [r.value for r in Recompute], "recompute", "none", where=c[1])
    zero = select("ZeRO stage", [0, 1, 2, 3], "zero", 0, where=c[2])
    sp = select("Sequence parallel", list(SP_CHOICES), "sp", "release", where=c[3], format_func=SP_CHOICES.get,
                help="The release's default: off in Megatron's, on wherever TP is in torchtitan's.")
    dist = flag("Distributed optimizer", "distopt", False, where=c[4])
    if gpus % (tp * pp * cp):
        stop(SpecError("layout", f"tp*pp*cp = {tp * pp * cp} does not divide the {gpus} GPUs",
                       "pick tp, pp and cp whose product divides the GPU count"))
    dp = gpus // (tp * pp * cp)
    st.caption(f"dp = GPUs / (tp x pp x cp) = {dp}")
    return checked(TrainPlan, dp=dp, tp=tp, pp=pp, pp_interleave=v, cp=cp, ep=ep,
                   sequence_parallel=None if sp == "release" else sp == "true",
                   zero_stage=zero, distributed_optimizer=dist, recompute=rec, micro_batch=mb,
                   global_batch=global_batch, seq_len=seq_len, precision=Precision.preset(precision))


def _inputs() -> dict[str, Any]:
    c = st.columns(4)
    with c[0]:
        model = model_input(default="llama-2-70b")
    accs = list(accelerators())
    acc = select("Accelerator", accs, "acc", "A100-SXM4-80GB", where=c[1])
    gpus = number("GPUs", "gpus", 64, 1, 1 << 20, where=c[1])
    precision = select("Precision", list(PRESET_NAMES), "precision", "bf16", where=c[2])
    seq = number("Sequence length", "seq", 4096, 1, 1 << 21, where=c[2])
    gb = number("Global batch (sequences)", "gb", 128, 1, 1 << 24, where=c[3])
    tokens = number("Tokens to train", "tokens", 1e12, 1.0, where=c[3], fmt="%.3e")
    c = st.columns(4)
    cals = [DEFAULT_CAL, *available()]
    cal = select("Calibration", cals, "cal", DEFAULT_CAL, where=c[0])
    fw = framework_input(where=c[1])
    price = number("Price $/GPU-hour (0: catalog)", "price", 0.0, 0.0, where=c[2], step=0.1)
    mode = select("Layout", [AUTO, MANUAL], "mode", AUTO, where=c[3], radio=True)
    usable = number("Usable memory fraction", "usable", 0.9, 0.1, 1.0, step=0.05, where=c[3],
                    help="Auto: plan within this share of device memory (headroom for CUDA context, NCCL, "
                         "fragmentation, which the memory model does not count).") if mode == AUTO else 1.0
    return dict(usable=usable, model=model, acc=acc, gpus=gpus, precision=precision, seq=seq, gb=gb, tokens=tokens,
                cal=None if cal == DEFAULT_CAL else cal, fw=fw, price=price or None, mode=mode)


def _metrics(best: dict[str, Any]) -> None:
    c = st.columns(6)
    c[0].metric("Step time", fmt.seconds(best["step_s"]))
    c[1].metric("MFU", f"{best['mfu']:.1%}", help="Model FLOPs utilisation (PaLM, Appendix B); HFU "
                f"{best['hfu']:.1%} counts recomputation")
    c[2].metric("Tokens/s", fmt.count(best["tokens_per_s"]))
    c[3].metric("Memory per GPU", f"{best['memory_gb']:,.1f} GB", help=f"of {best['capacity_gb']:,.0f} GB")
    c[4].metric("Time to train", fmt.seconds(best["train_time_s"]), help=f"{best['train_time_s']:,.0f} s")
    c[5].metric("Cost to train", money(best["train_cost_usd"]),
                help=f"${best['train_cost_usd']:,.0f}: GPU-hours at the catalog price (or the one given)")


def _no_layout(x: dict[str, Any], info: dict[str, Any]) -> None:
    """Auto mode found nothing that fits: the reason, and the fewest GPUs on which something does."""
    with st.spinner("Looking for the fewest GPUs on which a layout fits..."):
        more = more_gpus(x["model"], x["acc"], x["price"], x["gpus"], x["gb"], x["seq"], x["precision"],
                         x["tokens"], x["cal"], x["fw"], x["usable"])
    change = None
    if more is not None:
        change = (f"{more['gpus']} GPUs: dp{int(more['dp'])} tp{int(more['tp'])} pp{int(more['pp'])} fits in "
                  f"{fmt.gigabytes(more['memory_per_gpu_bytes'])} per GPU")
    infeasible(f"{info['reason']} on {x['gpus']} GPUs (of {info['evaluated']:,} layouts priced)",
               change or "none up to 16,384 GPUs: lower the global batch or the sequence length")
    if more is not None:
        st.button(f"Use {more['gpus']} GPUs", on_click=use_in_link, args=({"gpus": more["gpus"]},))


def _infeasible_plan(x: dict[str, Any], table: pd.DataFrame, plan: TrainPlan) -> None:
    """A manual plan that cannot run: why, the nearest layout that can, and the memory that rules it out."""
    best = table.iloc[0].to_dict()
    reason = best["reason"]
    if reason == "does not fit in memory":
        reason = (f"{best['layout']} needs {best['memory_gb']:,.1f} GB per GPU; {x['acc']} has "
                  f"{best['capacity_gb']:,.0f} GB")
    with st.spinner("Looking for the nearest layout that fits..."):
        fix = nearest_fix(x["model"], x["acc"], x["price"], x["gpus"], plan, x["cal"], x["fw"])
    change = None
    if fix is not None:
        change = (f"{fix['change']} (dp{int(fix['dp'])}): {fmt.gigabytes(fix['memory_per_gpu_bytes'])} per GPU, "
                  f"within {nearest.USABLE:.0%} of memory; step {fmt.seconds(fix['step_s'])}")
    infeasible(reason, change or "no layout of this model fits these GPUs: add GPUs or lower the batch")
    if fix is not None:
        keys = {"tp": "tp", "pp": "pp", "v": "v", "cp": "cp", "ep": "ep", "micro_batch": "mb", "sp": "sp",
                "zero_stage": "zero", "distributed_optimizer": "distopt"}
        values = {keys[k]: (bool(fix[k]) if k in ("sp", "distributed_optimizer") else int(fix[k])) for k in keys}
        values["recompute"] = nearest.RECOMPUTE[int(fix["recompute"])]
        st.button("Use the nearest layout", on_click=use_in_link, args=(values,))
    st.plotly_chart(figures.stacked_bar(table, "layout", [f"{p}_gb" for p in MEMORY_PARTS], "Memory per GPU",
                                        "GB", float(table["capacity_gb"].iloc[0]), "capacity",
                                        labels={f"{p}_gb": p for p in MEMORY_PARTS}), width="stretch")
    show_table(table[["layout", "dp", "tp", "pp", *[f"{p}_gb" for p in MEMORY_PARTS], "memory_gb", "capacity_gb",
                      "reason"]])


def render() -> None:
    st.header("Training planner")
    st.caption("Step time of a training layout, its breakdown, memory per GPU, MFU, and the time and cost to "
               "train; the pipeline schedule is simulated event by event (SimPy).")
    x = _inputs()
    if x["mode"] == MANUAL:
        plan = _manual_plan(x["gpus"], x["gb"], x["seq"], x["precision"])
        table, info = checked(manual_report, x["model"], x["acc"], x["price"], x["gpus"], plan, x["tokens"],
                              x["cal"], x["fw"])
        plan = as_released(x["model"], plan, x["fw"])  # the plan as priced: the release's SP default and split
        if not table["feasible"].iloc[0]:
            _infeasible_plan(x, table, plan)
            return
    else:
        with st.spinner("Searching layouts..."):
            table, info = checked(auto_report, x["model"], x["acc"], x["price"], x["gpus"], x["gb"], x["seq"],
                                  x["precision"], x["tokens"], x["cal"], x["fw"], x["usable"])
        if table.empty:
            _no_layout(x, info)
            return
        plan = as_released(x["model"], _plan_of(table.iloc[0].to_dict(), x["gb"], x["seq"], x["precision"]),
                           x["fw"])
    best = table.iloc[0].to_dict()
    st.subheader(plain_md(f"{x['model'].name} on {x['gpus']} x {x['acc']}: #1 {best['layout']}"))
    st.caption(plain_md(f"calibration {info['calibration']}, framework {info['framework']}"
                        + (f"; fastest of {info['evaluated']:,} layouts" if x["mode"] == AUTO else "")))
    st.caption(plain_md(f"precision {x['precision']} as {info['framework']} runs it: {info['recipe']}"))
    _metrics(best)
    for line in info["explanation"]:
        st.markdown(f"- {plain_md(line)}")
    _charts(x, table, plan)


def _charts(x: dict[str, Any], table: pd.DataFrame, plan: TrainPlan) -> None:
    left, right = st.columns(2)
    names = {k: k.removesuffix("_s").replace("_", " ") for k in BREAKDOWN}
    left.plotly_chart(figures.stacked_bar(table, "rank", list(BREAKDOWN), "Step time breakdown", "seconds",
                                          labels=names, hover="layout"), width="stretch")
    right.plotly_chart(figures.stacked_bar(table, "rank", [f"{p}_gb" for p in MEMORY_PARTS],
                                           "Memory per GPU (peak stage)", "GB", float(table["capacity_gb"].iloc[0]),
                                           "capacity", labels={f"{p}_gb": p for p in MEMORY_PARTS}, hover="layout"),
                       width="stretch")
    with st.spinner("Simulating the pipeline schedule..."):
        timeline, sim = checked(pipeline_timeline, x["model"], x["acc"], x["price"], x["gpus"], plan, x["cal"],
                                x["fw"])
    st.plotly_chart(figures.gantt(timeline, f"Pipeline schedule of #1 ({plan.schedule.value}, "
                                  f"{plan.micro_batches} micro-batches): step {sim['step_s']:.3g} s, bubble "
                                  f"{sim['bubble_fraction']:.1%} of ideal",
                                  {"flush": sim["pipeline_s"]}), width="stretch")
    show_table(table)
    payload = {"model": x["model"].name, "accelerator": x["acc"], "gpus": x["gpus"], "plan": plan.to_dict(),
               "layouts": table.to_dict("records"), "pipeline": sim}
    downloads("training-plan", table, payload, key="train", what="layouts")
    downloads("pipeline-timeline", timeline, None, key="timeline", what="timeline")


__all__ = ["auto_report", "layout_labels", "manual_report", "pipeline_timeline", "render"]
