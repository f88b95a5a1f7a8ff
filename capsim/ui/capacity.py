"""Page: the capacity planner. SLOs and traffic in; the cheapest fleet out (accelerator, TP/PP, quantization,
batch limit, replicas), with the Pareto front of cost per hour against p99 TTFT (``capsim.plan.serving``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from capsim.calibration import available, perfs_for
from capsim.plan.serving import Slo, name_values, plan_serving
from capsim.sim.serving.presets import PRESETS
from capsim.specs.catalog import accelerators
from capsim.specs.engine import engines
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization
from capsim.ui import figures, fmt
from capsim.ui.common import (
    SAMPLING_HELP,
    SAMPLINGS,
    checked,
    downloads,
    infeasible,
    model_input,
    money,
    plain_md,
    preset_traffic,
    show_table,
)
from capsim.ui.state import multi, number, select, text

AUTO_CAL = "auto (GPU profile, else datasheet)"
CANDIDATES = ("H100-SXM5-80GB", "A100-SXM4-80GB", "H200-SXM-141GB", "L40S")  # `capsim plan serve`'s default set
SHOWN = ("accelerator", "tp", "pp", "quantization", "max_batch", "capacity_rps", "replicas", "gpus",
         "cost_per_hour_usd", "ttft_p99_s", "tpot_p99_s", "goodput", "cost_per_million_output_tokens")


@st.cache_data(show_spinner=False, max_entries=32)
def capacity_plan(model: ModelSpec, preset: str, rate_rps: float, ttft_p99_s: float | None,
                  tpot_p99_s: float | None, goodput: float | None, accs: tuple[str, ...], quants: tuple[str, ...],
                  engine: str, requests: int | None, calibration: str | None,
                  prices: tuple[tuple[str, float], ...] = (), limits: tuple[tuple[str, int], ...] = (),
                  sampling: str = "random") -> dict[str, Any]:
    """The planner's result for these inputs (pure; cached by them): ``capsim plan serve``'s search and
    confirmation rule (``requests`` None or 0: adaptive). One process: the dashboard's server is not a place to
    fork a pool, and the answer does not depend on it."""
    plan = plan_serving(model, preset_traffic(preset, rate_rps, requests or None, sampling), Slo(ttft_p99_s, tpot_p99_s, goodput),
                        list(accs), perfs_for(accs, calibration), dict(prices), dict(limits), quants, engine,
                        workers=1)
    return {"table": plan.table, "simulated": plan.simulated, "pareto": plan.pareto, "feasible": plan.feasible,
            "reason": plan.reason, "notes": list(plan.notes), "best": plan.best, "rate_rps": plan.rate_rps}


def _inputs() -> dict[str, Any]:
    c = st.columns(4)
    with c[0]:
        model = model_input(default="llama-3-8b")
    preset = select("Request lengths of", list(PRESETS), "workload", "chatbot", where=c[1],
                    help="A workload preset's prompt and output lengths; arrivals are Poisson at the peak rate.")
    rate = number("Peak rate (req/s)", "rate", 10.0, 0.001, where=c[1], step=1.0)
    ttft = number("p99 TTFT target s (0: none)", "ttft", 2.0, 0.0, where=c[2], step=0.1)
    tpot = number("p99 TPOT target s (0: none)", "tpot", 0.1, 0.0, where=c[2], step=0.01, fmt="%.3f")
    goodput = number("Goodput target (0: use the p99s)", "goodput", 0.0, 0.0, 1.0, where=c[2], step=0.01,
                     help="Instead of p99s: this fraction of requests must meet both targets.")
    accs = multi("Candidate accelerators", list(accelerators()), "accs", list(CANDIDATES), where=c[3])
    quants = multi("Quantizations tried", [q.value for q in Quantization], "quants",
                   ["none", "int8", "int4", "fp8"], where=c[3])
    c = st.columns(4)
    engine = select("Engine", list(engines()), "engine", "vllm", where=c[0])
    sampling = select("Sampling", list(SAMPLINGS), "sampling", "random", where=c[0], help=SAMPLING_HELP)
    requests = number("Requests per confirming simulation (0: adaptive)", "requests", 0, 0, 100_000, where=c[1],
                      step=1000, help="0: each simulation runs until its p99s and cost per token are known within "
                      "5% (as `capsim plan serve`); a number: exactly that many requests.")
    cal = select("Calibration", [AUTO_CAL, *available()], "cal", AUTO_CAL, where=c[2])
    prices = checked(name_values, _items(text("Prices (NAME=USD per GPU-hour, ...)", "prices", "", where=c[3])),
                     "prices")
    limits = checked(name_values, _items(text("GPU limits (NAME=count, ...)", "limits", "", where=c[3])), "limits")
    return dict(model=model, preset=preset, rate=rate, ttft=ttft or None, tpot=tpot or None,
                goodput=goodput or None, accs=tuple(accs), quants=tuple(quants), engine=engine, requests=requests,
                cal=None if cal == AUTO_CAL else cal, prices=tuple(prices.items()),
                limits=tuple((k, int(v)) for k, v in limits.items()), sampling=sampling)


def _items(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def _label(df: pd.DataFrame) -> pd.Series:
    reps = df["replicas"].astype(int).astype(str) + " x " if "replicas" in df else ""
    return (reps + df["accelerator"].astype(str) + " tp" + df["tp"].astype(str) + " pp" + df["pp"].astype(str)
            + " " + df["quantization"].astype(str) + " b" + df["max_batch"].astype(str))


def why_none(table: pd.DataFrame, reason: str) -> tuple[str, str]:
    """Why no fleet qualified (the planner's reason and how many candidates failed for each cause) and the
    nearest change: the targets the best candidate comes closest to."""
    if table.empty or "reason" not in table:
        return reason, "add candidate accelerators or quantizations"
    counts = table.loc[table["reason"].astype(str) != "", "reason"].astype(str).value_counts()
    causes = "; ".join(f"{n} candidates: {r}" for r, n in counts.head(3).items())
    fixes = []
    if counts.index.str.contains("TTFT").any():
        fixes.append(f"a p99 TTFT target above {fmt.seconds(float(table['prefill_s'].min()))} (the fastest prefill "
                     "of a typical prompt among the candidates)")
    if counts.index.str.contains("TPOT").any():
        fixes.append(f"a p99 TPOT target above {fmt.seconds(float(table['step_s'].min()))} (the fastest decode "
                     "step among the candidates)")
    return f"{reason} ({causes})" if causes else reason, "; or ".join(fixes) or "add candidate accelerators, " \
        "quantizations or a larger tensor-parallel size"


def render() -> None:
    st.header("Capacity planner")
    st.caption("Every candidate fleet (accelerator x TP/PP x quantization x batch limit) priced with the analytic "
               "capacity bound; the cheapest confirmed, and sized up where needed, by the serving simulator.")
    x = _inputs()
    with st.spinner("Pricing every candidate, then simulating the cheapest fleets (SimPy)..."):
        r = checked(capacity_plan, x["model"], x["preset"], x["rate"], x["ttft"], x["tpot"], x["goodput"], x["accs"],
                    x["quants"], x["engine"], x["requests"], x["cal"], x["prices"], x["limits"], x["sampling"])
    table, sims = r["table"], r["simulated"]
    if not r["feasible"]:
        infeasible(*why_none(table, r["reason"]))
    else:
        b = r["best"]
        st.subheader(plain_md(f"Cheapest: {int(b['replicas'])} x {b['accelerator']} (tp{b['tp']} pp{b['pp']}, "
                              f"{b['quantization']}, max batch {b['max_batch']})"))
        c = st.columns(5)
        c[0].metric("GPUs", f"{int(b['gpus']):,}")
        c[1].metric("Cost per hour", money(b["cost_per_hour_usd"]))
        c[2].metric("$ / M output tokens", money(b["cost_per_million_output_tokens"]))
        c[3].metric("p99 TTFT", fmt.seconds(b["ttft_p99_s"]))
        c[4].metric("p99 TPOT", fmt.seconds(b["tpot_p99_s"]))
    for note in r["notes"]:
        st.caption(plain_md(note))
    if len(sims):
        sims = sims.assign(label=_label(sims))
        front = r["pareto"].assign(label=_label(r["pareto"])) if len(r["pareto"]) else r["pareto"]
        st.plotly_chart(figures.pareto(sims, front, "cost_per_hour_usd", "ttft_p99_s", "label", "slo_met",
                                       f"Simulated fleets at {r['rate_rps']:g} req/s: cost against p99 TTFT",
                                       "USD per hour", "p99 TTFT (s)"), width="stretch")
    confirmed = table[table["confirmed"]] if "confirmed" in table else table.iloc[:0]
    if len(confirmed):
        st.markdown("**Fleets that meet the SLOs, cheapest first**")
        show_table(confirmed[[c for c in SHOWN if c in confirmed]])
    with st.expander(f"All {len(table):,} candidates with their analytic capacity bound"):
        show_table(table)
    downloads("capacity-plan", table, {"inputs": {**x, "model": x["model"].name}, "best": r["best"],
                                       "pareto": r["pareto"].to_dict("records"), "simulated": sims.to_dict("records"),
                                       "candidates": table.to_dict("records")}, key="plan", what="plan")


__all__ = ["capacity_plan", "render", "why_none"]
