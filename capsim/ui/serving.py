"""Page: the serving simulator. A fleet of engine replicas under a workload preset or an uploaded trace,
simulated request by request (SimPy): latency CDFs, a load sweep, KV-cache occupancy and queue over time, SLOs."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from capsim.calibration import available, perf_for
from capsim.sim.serving import ServeConfig, ServingResult, engine_plan, simulate
from capsim.sim.serving.presets import PRESETS, WorkloadSpec, build_workload, get_preset, preset_spec
from capsim.sim.serving.router import RouterKind
from capsim.sim.serving.workload import ArrivalKind
from capsim.specs.catalog import accelerators, get_accelerator
from capsim.specs.engine import SchedulerKind, engines, get_engine
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization
from capsim.ui import figures
from capsim.ui.common import checked, downloads, model_input, parse_numbers
from capsim.ui.state import number, select, text

ENGINE_DEFAULT, AUTO_CAL = "engine default", "auto (GPU profile, else datasheet)"
PRESET, UPLOAD = "preset", "trace CSV"
TRACE_COLUMNS = "arrived_at,num_prefill_tokens,num_decode_tokens"
SWEEP_KEYS = ("request_throughput_rps", "output_tokens_per_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
              "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "goodput", "kv_occupancy_mean", "queue_length_mean")


def _trace_file(text: str) -> str:
    """An uploaded trace's text on disk (named by its hash), for the trace loader."""
    folder = Path(tempfile.gettempdir()) / "capsim-ui-traces"
    folder.mkdir(exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.csv"
    if not path.is_file():
        path.write_text(text)
    return str(path)


def workload_spec(preset: str | None, trace_text: str | None, rate: float, requests: int, seed: int,
                  load: float = 1.0) -> WorkloadSpec:
    """A preset's or an uploaded trace's workload, at ``load`` times its rate (a replay runs its clock faster)."""
    if preset is not None:
        base = preset_spec(preset, rate or None, requests, None, seed)
    else:
        base = WorkloadSpec(ArrivalKind.POISSON if rate else ArrivalKind.TRACE, trace=_trace_file(trace_text or ""),
                            rate_rps=rate or None, requests=requests, seed=seed, name="uploaded trace")
    if base.arrival is ArrivalKind.TRACE:
        return replace(base, time_scale=base.time_scale / load)
    return replace(base, rate_rps=base.rate_rps * load)


@st.cache_data(show_spinner=False, max_entries=128)
def run_serving(model: ModelSpec, acc_name: str, tp: int, replicas: int, engine: str, scheduler: str | None,
                router: str, quantization: str, calibration: str | None, preset: str | None, trace_text: str | None,
                rate: float, requests: int, seed: int, load: float, slo_ttft_s: float | None,
                slo_tpot_s: float | None) -> ServingResult:
    """One simulated run (pure: every input is an argument; cached by them)."""
    acc = get_accelerator(acc_name)
    plan = engine_plan(engine, model, acc, tp=tp, replicas=replicas, quantization=quantization)
    wl = build_workload(workload_spec(preset, trace_text, rate, requests, seed, load))
    cfg = ServeConfig(engine=get_engine(engine), scheduler=scheduler, router=router, slo_ttft_s=slo_ttft_s,
                      slo_tpot_s=slo_tpot_s, seed=seed)
    return simulate(model, plan, acc, perf_for(acc, calibration), wl, cfg)


def offered_rps(result: ServingResult) -> float:
    """Requests per second of the simulated arrivals."""
    t = result.requests["arrival_s"]
    span = float(t.max() - t.min())
    return (len(t) - 1) / span if span > 0 else float("nan")


def _inputs() -> dict[str, Any]:
    c = st.columns(4)
    with c[0]:
        model = model_input(default="llama-2-7b")
    acc = select("Accelerator", list(accelerators()), "acc", "A100-SXM4-80GB", where=c[1])
    tp = number("TP per replica", "tp", 1, 1, 64, where=c[1])
    replicas = number("Replicas", "replicas", 1, 1, 256, where=c[2])
    engine = select("Engine", list(engines()), "engine", "vllm", where=c[2])
    sched = select("Scheduler", [ENGINE_DEFAULT, *(s.value for s in SchedulerKind)], "scheduler", ENGINE_DEFAULT,
                   where=c[3])
    router = select("Router", [r.value for r in RouterKind], "router", RouterKind.ROUND_ROBIN.value, where=c[3])
    c = st.columns(4)
    src = select("Workload from", [PRESET, UPLOAD], "wl_src", PRESET, where=c[0], radio=True)
    preset, trace_text = None, None
    if src == PRESET:
        preset = select("Workload preset", list(PRESETS), "workload", "chatbot", where=c[0],
                        help="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
    else:
        up = c[0].file_uploader(f"Trace CSV ({TRACE_COLUMNS})", type=["csv"], key="trace_file")
        if up is None:
            st.info(f"Upload a CSV with the columns {TRACE_COLUMNS} (uploads are not kept in the page's link).")
            st.stop()
        trace_text = up.getvalue().decode("utf-8", errors="replace")
    rate = number("Rate req/s (0: preset's / trace's own)", "rate", 4.0, 0.0, where=c[1], step=0.5)
    requests = number("Requests", "requests", 300, 1, 100_000, where=c[1])
    slo_default = get_preset(preset) if preset else None
    ttft = number("TTFT SLO s (0: preset's)", "slo_ttft", 0.0, 0.0, where=c[2], step=0.1)
    tpot = number("TPOT SLO s (0: preset's)", "slo_tpot", 0.0, 0.0, where=c[2], step=0.01, fmt="%.3f")
    quant = select("Quantization", [q.value for q in Quantization], "quant", "none", where=c[3])
    cal = select("Calibration", [AUTO_CAL, *available()], "cal", AUTO_CAL, where=c[3])
    loads = text("Load sweep (multiples of the rate)", "loads", "0.25,0.5,1,1.5,2,3")
    return dict(model=model, acc=acc, tp=tp, replicas=replicas, engine=engine,
                scheduler=None if sched == ENGINE_DEFAULT else sched, router=router, quant=quant,
                cal=None if cal == AUTO_CAL else cal, preset=preset, trace_text=trace_text, rate=rate,
                requests=requests, seed=number("Seed", "seed", 0, 0, where=c[1]),
                slo_ttft=ttft or (slo_default.slo_ttft_s if slo_default else None),
                slo_tpot=tpot or (slo_default.slo_tpot_s if slo_default else None),
                loads=checked(parse_numbers, loads, "load sweep", "0.5,1,2,4", most=12))


def _run(x: dict[str, Any], load: float) -> ServingResult:
    return checked(run_serving, x["model"], x["acc"], x["tp"], x["replicas"], x["engine"], x["scheduler"],
                   x["router"], x["quant"], x["cal"], x["preset"], x["trace_text"], x["rate"], x["requests"],
                   x["seed"], load, x["slo_ttft"], x["slo_tpot"])


def sweep(x: dict[str, Any]) -> tuple[ServingResult, pd.DataFrame]:
    """The run at the chosen rate and one per load multiple, with a progress bar."""
    loads = sorted({1.0, *x["loads"]})
    bar = st.progress(0.0, text="Simulating...")
    rows, main = [], None
    for i, load in enumerate(loads):
        bar.progress(i / len(loads), text=f"Simulating load x{load:g} ({i + 1} of {len(loads)})...")
        res = _run(x, load)
        main = res if load == 1.0 else main
        rows.append({"load": load, "offered_rps": offered_rps(res), **{k: res.summary[k] for k in SWEEP_KEYS}})
    bar.empty()
    return main, pd.DataFrame(rows)


def render() -> None:
    st.header("Serving simulator")
    st.caption("A fleet of engine replicas serving a workload, simulated request by request (SimPy), with "
               "`vllm bench serve` metrics. Runs are cached by their inputs.")
    x = _inputs()
    res, table = sweep(x)
    s = res.summary
    st.subheader(f"{x['model'].name} on {s['replicas']} x {s['gpus'] // s['replicas']} {x['acc']} "
                 f"({s['engine']}, {s['scheduler']})")
    st.caption(f"{s['completed']} requests, calibration {s['calibration']}; SLO TTFT "
               f"{s['slo_ttft_s'] or '-'} s, TPOT {s['slo_tpot_s'] or '-'} s")
    if s["requests_over_context"]:
        st.warning(f"{s['requests_over_context']} requests are longer than the model's context window.")
    _metrics(res)
    slo = {"ttft_s": s["slo_ttft_s"], "tpot_s": s["slo_tpot_s"]}
    st.plotly_chart(figures.ecdf_panels(res.requests, {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E latency"},
                                        "Latency distributions (CDF)", unit="seconds", marks=slo), width="stretch")
    _sweep_charts(table, s)
    st.plotly_chart(figures.step_series(res.timeline, "time_s", {"kv_occupancy": "KV-cache occupancy (fraction)",
                                                                 "waiting": "queue length (requests waiting)"},
                                        "replica", "KV cache and queue over time", "seconds"), width="stretch")
    st.dataframe(res.replicas, hide_index=True)
    downloads("serving-requests", res.requests, {"inputs": _inputs_dict(x), "summary": s}, key="requests",
              what="requests")
    downloads("serving-load-sweep", table, None, key="sweep", what="load sweep")


def _metrics(res: ServingResult) -> None:
    s, req = res.summary, res.requests
    c = st.columns(7)
    c[0].metric("Requests/s", f"{s['request_throughput_rps']:.3g}")
    c[1].metric("Output tokens/s", f"{s['output_tokens_per_s']:,.0f}")
    c[2].metric("TTFT p99", f"{s['ttft_p99_s'] * 1e3:,.0f} ms")
    c[3].metric("TPOT p99", f"{s['tpot_p99_s'] * 1e3:,.1f} ms")
    c[4].metric("E2E p99", f"{s['e2e_p99_s']:,.2f} s")
    c[5].metric("SLO attainment", f"{s['goodput']:.1%}", help=_slo_help(req, s))
    c[6].metric("$ / M output tokens", f"{s['cost_per_million_output_tokens']:,.2f}")


def _slo_help(req: pd.DataFrame, s: dict[str, Any]) -> str:
    parts = []
    if s["slo_ttft_s"] is not None:
        parts.append(f"TTFT <= {s['slo_ttft_s']} s: {(req['ttft_s'] <= s['slo_ttft_s']).mean():.1%}")
    if s["slo_tpot_s"] is not None:
        parts.append(f"TPOT <= {s['slo_tpot_s']} s: {(~(req['tpot_s'] > s['slo_tpot_s'])).mean():.1%}")
    return "Requests meeting every SLO. " + "; ".join(parts) if parts else "No SLO given: every request counts."


def _sweep_charts(table: pd.DataFrame, s: dict[str, Any]) -> None:
    c = st.columns(3)
    c[0].plotly_chart(figures.lines(table, "offered_rps", {"request_throughput_rps": "achieved"},
                                    "Throughput against load", "offered load (req/s)", "requests/s"),
                      width="stretch")
    c[1].plotly_chart(figures.lines(table, "offered_rps", {"ttft_p50_s": "TTFT p50", "ttft_p99_s": "TTFT p99",
                                                           "e2e_p50_s": "E2E p50", "e2e_p99_s": "E2E p99"},
                                    "Latency against load", "offered load (req/s)", "seconds", log_y=True),
                      width="stretch")
    c[2].plotly_chart(figures.lines(table, "offered_rps", {"goodput": "meeting SLOs"}, "SLO attainment against load",
                                    "offered load (req/s)", "fraction of requests", y_range=(0, 1.05)),
                      width="stretch")


def _inputs_dict(x: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in x.items() if k not in ("model", "trace_text")}
    out["model"] = x["model"].name
    return out


__all__ = ["offered_rps", "render", "run_serving", "sweep", "workload_spec"]
