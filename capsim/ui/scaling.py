"""Page: scaling studies, small to large. Serving from a few to thousands of requests per second (the cheapest
fleet at each rate, confirmed by simulation), training from 8 to 16,384 GPUs (the best layout at each count), and
the compute-optimal model size for a FLOP budget (``capsim.plan.scaling_study``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.calibration import perf_for, perfs_for
from capsim.perf import Perf
from capsim.plan.scaling_study import model_size_study, serving_scaling, training_scaling
from capsim.plan.serving import QUANTIZATIONS, Slo
from capsim.sim.serving.presets import PRESETS
from capsim.specs.catalog import accelerators
from capsim.specs.model import ModelSpec
from capsim.ui import figures, fmt
from capsim.ui.common import (
    checked,
    framework_input,
    model_input,
    parse_numbers,
    plain_md,
    preset_traffic,
    table_with_downloads,
)
from capsim.ui.state import multi, number, select, text

STUDIES = ("serving", "training", "model size")
DAY_S = 86400.0


@st.cache_resource(show_spinner=False, max_entries=16)
def _study(model: ModelSpec, preset: str, accs: tuple[str, ...], ttft: float | None, tpot: float | None,
           quants: tuple[str, ...]) -> tuple[dict[str, Perf], dict]:
    """What the rates of one serving study share: the device models, and the memo of the candidates' capacity
    bounds (``capsim.plan.serving.bound_table``), which do not depend on the rate."""
    return perfs_for(accs), {}


@st.cache_data(show_spinner=False, max_entries=256)
def serving_point(model: ModelSpec, preset: str, accs: tuple[str, ...], rate: float, ttft: float | None,
                  tpot: float | None, quants: tuple[str, ...], requests: int | None) -> pd.DataFrame:
    """One rate of the serving study (pure; cached by its inputs, so a longer list reuses the rates it had):
    ``capsim scale serve``'s search (``requests`` None or 0: adaptive), in one process."""
    perfs, memo = _study(model, preset, accs, ttft, tpot, quants)
    return serving_scaling(model, preset_traffic(preset, 1.0), Slo(ttft, tpot), list(accs), [rate], quants,
                           requests=requests or None, workers=1, perfs=perfs, memo=memo)


@st.cache_data(show_spinner=False, max_entries=32)
def _training_layouts(model: ModelSpec, acc: str, global_batch: int, seq_len: int,
                      counts: tuple[int, ...], framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """The best layout at each count for a reference budget of one token, as ``framework`` runs it (pure; cached
    without the budget)."""
    return training_scaling(model, acc, 1.0, global_batch, seq_len, list(counts), perf=perf_for(acc),
                            framework=framework)


def training_study(model: ModelSpec, acc: str, tokens: float, global_batch: int, seq_len: int,
                   counts: tuple[int, ...], framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """The training study for ``tokens``: the layout search does not depend on the budget, and the time, cost
    and energy to train are linear in it, so a new budget rescales the cached one-token study."""
    df = _training_layouts(model, acc, global_batch, seq_len, counts, framework).copy()
    for col in ("time_to_train_s", "cost_usd", "energy_j"):
        if col in df:
            df[col] = df[col] * tokens
    return df


def _serving(c: list[Any]) -> None:
    with c[0]:
        model = model_input(default="llama-3-8b")
    preset = select("Request lengths of", list(PRESETS), "workload", "chatbot", where=c[1])
    rates = checked(parse_numbers, text("Rates (req/s)", "rates", "1,10,100,1000", where=c[1]), "rates",
                    "1,10,100,1000", most=12)
    ttft = number("p99 TTFT target s (0: none)", "ttft", 1.0, 0.0, where=c[2], step=0.1)
    tpot = number("p99 TPOT target s (0: none)", "tpot", 0.05, 0.0, where=c[2], step=0.01, fmt="%.3f")
    accs = multi("Candidate accelerators", list(accelerators()), "accs", ["H100-SXM5-80GB", "L4", "A100-SXM4-80GB"],
                 where=c[3])
    quants = multi("Quantizations", list(QUANTIZATIONS), "quants", list(QUANTIZATIONS), where=c[3])
    requests = number("Requests per simulation (0: adaptive)", "requests", 0, 0, 100_000, where=c[2], step=1000)
    bar = st.progress(0.0, text="Sizing fleets...")
    frames = []
    for i, rate in enumerate(rates):
        bar.progress(i / len(rates), text=f"Sizing and simulating the fleet for {rate:g} req/s ({i + 1} of "
                                          f"{len(rates)})...")
        frames.append(checked(serving_point, model, preset, tuple(accs), rate, ttft or None, tpot or None,
                              tuple(quants), requests))
    bar.empty()
    df = pd.concat(frames, ignore_index=True)
    ok = df[df["feasible"]] if "feasible" in df else df
    if len(ok) < len(df):
        st.warning(plain_md("No candidate meets the SLOs at " + ", ".join(
            f"{r:g} req/s ({why})" for r, why in zip(df.loc[~df["feasible"], "rate_rps"],
                                                    df.loc[~df["feasible"], "reason"], strict=True)) + "."))
    c2 = st.columns(3)
    c2[0].plotly_chart(figures.lines(ok, "rate_rps", {"cost_per_hour_usd": "fleet"}, "Fleet cost against traffic",
                                     "requests/s", "USD per hour", log_x=True, log_y=True), width="stretch")
    c2[1].plotly_chart(figures.lines(ok, "rate_rps", {"cost_per_million_output_tokens": "per M output tokens"},
                                     "Cost per million output tokens", "requests/s", "USD", log_x=True),
                       width="stretch")
    c2[2].plotly_chart(figures.lines(ok, "rate_rps", {"ttft_p99_s": "p99 TTFT", "tpot_p99_s": "p99 TPOT"},
                                     "p99 latency of the chosen fleet", "requests/s", "seconds", log_x=True,
                                     log_y=True), width="stretch")
    table_with_downloads(df, "scaling-serving")


def _training(c: list[Any]) -> None:
    with c[0]:
        model = model_input(default="llama-2-7b")
    acc = select("Accelerator", list(accelerators()), "acc", "H100-SXM5-80GB", where=c[1])
    counts = checked(parse_numbers, text("GPU counts", "gpus", "8,32,128,512,2048,8192", where=c[1]), "GPU counts",
                     "8,64,512,4096", integer=True, most=16)
    tokens = number("Tokens to train", "tokens", 1e12, 1.0, where=c[2], fmt="%.3e")
    gb = number("Global batch (sequences)", "gb", 1024, 1, 1 << 24, where=c[2])
    seq = number("Sequence length", "seq", 4096, 1, 1 << 21, where=c[3])
    fw = framework_input(where=c[3])
    with st.spinner(f"Searching the best layout at {len(counts)} GPU counts..."):
        df = checked(training_study, model, acc, tokens, gb, seq, counts, fw)
    ok = df[df["feasible"].astype(bool)]
    for _, row in df[~df["feasible"].astype(bool)].iterrows():  # each count's own reason, never dropped
        st.warning(plain_md(f"{row['gpus']} GPUs: {row['reason']}"))
    if ok.empty:
        table_with_downloads(df, "scaling-training")
        return
    ok = ok.assign(days=ok["time_to_train_s"] / DAY_S)
    c2 = st.columns(3)
    c2[0].plotly_chart(figures.lines(ok, "gpus", {"mfu": "MFU", "scaling_efficiency": "scaling efficiency"},
                                     "MFU and scaling efficiency", "GPUs", "fraction", log_x=True, y_range=(0, 1.05)),
                       width="stretch")
    c2[1].plotly_chart(figures.lines(ok, "gpus", {"days": "time to train"}, f"Time to train {fmt.count(tokens)} tokens",
                                     "GPUs", "days", log_x=True, log_y=True), width="stretch")
    c2[2].plotly_chart(figures.lines(ok, "gpus", {"cost_usd": "cost"}, "Cost to train", "GPUs", "USD", log_x=True),
                       width="stretch")
    table_with_downloads(df, "scaling-training")


def _model_size(c: list[Any]) -> None:
    budgets = checked(parse_numbers, text("FLOP budgets", "flops", "1e21,1e22,1e23,1e24,1e25", where=c[0]),
                      "FLOP budgets", "1e21,1e23,1e25")
    df = model_size_study(list(budgets))
    left, right = st.columns(2)
    left.plotly_chart(figures.lines(df, "flops", {"params": "parameters", "tokens": "tokens"},
                                    "Compute-optimal parameters and tokens (Chinchilla)", "training FLOPs", "count",
                                    log_x=True, log_y=True), width="stretch")
    right.plotly_chart(figures.lines(df, "flops", {"loss": "loss"}, "Predicted loss", "training FLOPs", "loss",
                                     log_x=True), width="stretch")
    table_with_downloads(df, "scaling-model-size")


def render() -> None:
    st.header("Scaling study")
    st.caption("From small to large: what serving costs and how fast it answers as traffic grows, how training "
               "time, MFU and cost change with the GPU count, and the model size a compute budget buys.")
    study = select("Study", list(STUDIES), "study", "serving", radio=True)
    c = st.columns(4)
    {"serving": _serving, "training": _training, "model size": _model_size}[study](c)


__all__ = ["render", "serving_point", "training_study"]
