"""Page: the serving simulator. A fleet of engine replicas under a workload preset or an uploaded trace,
simulated request by request (SimPy): latency CDFs, a load sweep, KV-cache occupancy and queue over time, SLOs."""

from __future__ import annotations

import csv
import io
import os
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
from capsim.sim.serving.workload import ArrivalKind, Workload
from capsim.specs.catalog import accelerators, get_accelerator
from capsim.specs.engine import SchedulerKind, engines, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization, ServePlan
from capsim.ui import figures, fmt
from capsim.ui.common import (
    SAMPLING_HELP,
    SAMPLINGS,
    checked,
    downloads,
    infeasible,
    model_input,
    money,
    parse_numbers,
    plain_md,
    show_table,
    use_in_link,
)
from capsim.ui.nearest import nearest_replica, serving_fit
from capsim.ui.state import number, select, text

ENGINE_DEFAULT, AUTO_CAL = "engine default", "auto (GPU profile, else datasheet)"
PRESET, UPLOAD = "preset", "trace CSV"
RECORDED, POISSON = "as recorded", "Poisson at a rate"
TRACE_COLUMNS = "arrived_at,num_prefill_tokens,num_decode_tokens"
SWEEP_KEYS = ("request_throughput_rps", "output_tokens_per_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
              "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "goodput", "kv_occupancy_mean", "queue_length_mean")


def workload_spec(preset: str | None, trace: str | None, rate: float | None, requests: int, seed: int,
                  load: float = 1.0, speed: float = 1.0) -> WorkloadSpec:
    """A preset's or a trace file's workload: Poisson at ``rate`` x ``load``, or (``rate`` None) the recorded
    arrivals replayed ``speed`` x ``load`` times as fast."""
    if preset is not None:
        base = preset_spec(preset, rate, requests, None, seed)
    else:
        base = WorkloadSpec(ArrivalKind.TRACE if rate is None else ArrivalKind.POISSON, trace=trace,
                            rate_rps=rate, requests=requests, seed=seed, name="uploaded trace")
    if base.arrival is ArrivalKind.TRACE:
        return replace(base, time_scale=base.time_scale / (speed * load))
    return replace(base, rate_rps=base.rate_rps * load)


def build(preset: str | None, trace_text: str | None, rate: float | None, requests: int, seed: int, load: float,
          speed: float) -> Workload:
    """The requests of a preset, or of an uploaded trace. An upload is written to a private temporary folder
    (``mkdtemp``: mode 0700, a fresh name) only while the trace loader reads it, then deleted."""
    if trace_text is None:
        return build_workload(workload_spec(preset, None, rate, requests, seed, load, speed))
    with tempfile.TemporaryDirectory(prefix="capsim-upload-") as folder:
        path = Path(folder) / "trace.csv"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(trace_text)
        return build_workload(workload_spec(None, str(path), rate, requests, seed, load, speed))


def has_arrivals(trace_text: str) -> bool:
    """Whether an uploaded trace's header names an ``arrived_at`` column (else it has lengths only)."""
    header = next(csv.reader(io.StringIO(trace_text.lstrip())), [])
    return "arrived_at" in [h.strip() for h in header]


@st.cache_data(show_spinner=False, max_entries=128)
def run_serving(model: ModelSpec, acc_name: str, tp: int, replicas: int, engine: str, scheduler: str | None,
                router: str, quantization: str, calibration: str | None, preset: str | None, trace_text: str | None,
                rate: float | None, requests: int, seed: int, load: float, slo_ttft_s: float | None,
                slo_tpot_s: float | None, speed: float = 1.0, pp: int = 1, sampling: str = "random") -> ServingResult:
    """One simulated run (pure: every input is an argument; cached by them)."""
    acc = get_accelerator(acc_name)
    plan = replica_plan(model, acc, engine, tp, pp, quantization, replicas)
    wl = build(preset, trace_text, rate, requests, seed, load, speed)
    cfg = ServeConfig(engine=get_engine(engine), scheduler=scheduler, router=router, slo_ttft_s=slo_ttft_s,
                      slo_tpot_s=slo_tpot_s, seed=seed, sampling=sampling)
    return simulate(model, plan, acc, perf_for(acc, calibration), wl, cfg)


def replica_plan(model: ModelSpec, acc: Accelerator, engine: str, tp: int, pp: int, quantization: str,
                 replicas: int = 1) -> ServePlan:
    """The engine's plan for this layout, checked against the model as `capsim serve` checks it (``ServePlan.check``:
    tp divides the attention heads, pp the layers): a SpecError naming the field and the values that work."""
    return engine_plan(engine, model, acc, tp=tp, pp=pp, replicas=replicas, quantization=quantization).check(model)


def offered_rps(result: ServingResult) -> float:
    """Requests per second of the simulated arrivals."""
    t = result.requests["arrival_s"]
    span = float(t.max() - t.min())
    return (len(t) - 1) / span if span > 0 else float("nan")


def _workload_inputs(c: list[Any]) -> dict[str, Any]:
    """Where the requests come from and how they arrive: a preset (Poisson at a rate; the Azure traces replay
    their recorded arrivals unless a rate is chosen) or an uploaded trace (replayed as recorded by default)."""
    src = select("Workload from", [PRESET, UPLOAD], "wl_src", PRESET, where=c[0], radio=True)
    preset, trace_text, recorded = None, None, False
    if src == PRESET:
        preset = select("Workload preset", list(PRESETS), "workload", "chatbot", where=c[0],
                        help="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
        p = get_preset(preset)
        recorded = isinstance(p.lengths, str) and p.rate_rps is None
    else:
        up = c[0].file_uploader(f"Trace CSV ({TRACE_COLUMNS})", type=["csv"], key="trace_file")
        if up is None:
            st.info(f"Upload a CSV with the columns {TRACE_COLUMNS} (uploads are not kept in the page's link).")
            st.stop()
        trace_text = up.getvalue().decode("utf-8", errors="replace")
        recorded = has_arrivals(trace_text)
        if not recorded:
            c[0].caption("This trace has no arrived_at column: its lengths arrive as Poisson at the rate given.")
    arrivals = select("Arrivals", [RECORDED, POISSON], "arrivals", RECORDED, where=c[1],
                      help="Replay the trace's own arrival times, or draw Poisson arrivals with its lengths.") \
        if recorded else POISSON
    rate, speed = None, 1.0
    if arrivals == RECORDED:
        speed = number("Replay speed (x recorded)", "speed", 1.0, 0.001, where=c[1], step=0.5,
                       help="2 replays the trace twice as fast (half the gaps between arrivals).")
    else:
        rate = number("Rate (req/s)", "rate", 4.0, 0.001, where=c[1], step=0.5)
    return dict(preset=preset, trace_text=trace_text, rate=rate, speed=speed)


def _inputs() -> dict[str, Any]:
    c = st.columns(4)
    with c[0]:
        model = model_input(default="llama-3-8b")
    acc = select("Accelerator", list(accelerators()), "acc", "A100-SXM4-80GB", where=c[1])
    tp = number("TP per replica", "tp", 1, 1, 64, where=c[1])
    pp = number("PP stages per replica", "pp", 1, 1, where=c[1],
                help="Pipeline-parallel stages (`capsim serve --pp`): each replica splits the layers over pp stages "
                     "of tp GPUs and keeps pp batches in flight (vLLM's virtual engines); pp must divide the layers.")
    replicas = number("Replicas", "replicas", 1, 1, 256, where=c[2])
    engine = select("Engine", list(engines()), "engine", "vllm", where=c[2])
    sched = select("Scheduler", [ENGINE_DEFAULT, *(s.value for s in SchedulerKind)], "scheduler", ENGINE_DEFAULT,
                   where=c[3])
    router = select("Router", [r.value for r in RouterKind], "router", RouterKind.ROUND_ROBIN.value, where=c[3])
    sampling = select("Sampling", list(SAMPLINGS), "sampling", "random", where=c[3], help=SAMPLING_HELP)
    c = st.columns(4)
    wl = _workload_inputs(c)
    requests = number("Requests", "requests", 300, 1, 100_000, where=c[1],
                      help="A replay takes the trace's first requests, up to this many.")
    seed = number("Seed", "seed", 0, 0, where=c[1])
    preset = get_preset(wl["preset"]) if wl["preset"] else None
    own = "preset's" if preset else "none"
    ttft = number(f"TTFT SLO s (0: {own})", "slo_ttft", 0.0, 0.0, where=c[2], step=0.1)
    tpot = number(f"TPOT SLO s (0: {own})", "slo_tpot", 0.0, 0.0, where=c[2], step=0.01, fmt="%.3f")
    quant = select("Quantization", [q.value for q in Quantization], "quant", "none", where=c[3])
    cal = select("Calibration", [AUTO_CAL, *available()], "cal", AUTO_CAL, where=c[3])
    loads = text("Load sweep (multiples of the rate, or of the replay speed)", "loads", "0.25,0.5,1,1.5,2,3")
    return dict(model=model, acc=acc, tp=tp, pp=pp, replicas=replicas, engine=engine, sampling=sampling,
                scheduler=None if sched == ENGINE_DEFAULT else sched, router=router, quant=quant,
                cal=None if cal == AUTO_CAL else cal, requests=requests, seed=seed, **wl,
                slo_ttft=ttft or (preset.slo_ttft_s if preset else None),
                slo_tpot=tpot or (preset.slo_tpot_s if preset else None),
                loads=checked(parse_numbers, loads, "load sweep", "0.5,1,2,4", most=12))


def _run(x: dict[str, Any], load: float) -> ServingResult:
    return checked(run_serving, x["model"], x["acc"], x["tp"], x["replicas"], x["engine"], x["scheduler"],
                   x["router"], x["quant"], x["cal"], x["preset"], x["trace_text"], x["rate"], x["requests"],
                   x["seed"], load, x["slo_ttft"], x["slo_tpot"], x["speed"], x["pp"], x["sampling"])


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
    if not _replica_fits(x):
        return
    res, table = sweep(x)
    s = res.summary
    slo_set = s["slo_ttft_s"] is not None or s["slo_tpot_s"] is not None
    st.subheader(plain_md(f"{x['model'].name} on {s['replicas']} x {s['gpus'] // s['replicas']} {x['acc']} "
                          f"(TP {x['tp']} x PP {x['pp']}; {s['engine']}, {s['scheduler']})"))
    how = (f"recorded arrivals x{x['speed']:g}" if x["rate"] is None else f"Poisson arrivals at {x['rate']:g} req/s")
    slos = (f"SLO TTFT {_or_dash(s['slo_ttft_s'])} s, TPOT {_or_dash(s['slo_tpot_s'])} s" if slo_set
            else "no SLO set")
    st.caption(plain_md(f"{s['completed']:,} requests, {how}; calibration {s['calibration']}; {slos}"))
    over = s["requests_over_context"]
    if over:
        st.warning(plain_md(f"{over} of {s['completed']:,} requests are longer than {x['model'].name}'s context "
                            f"window ({x['model'].max_seq:,} tokens); they are simulated as given. Pick a model "
                            "with a longer context, or a workload with shorter requests."))
    _metrics(res, slo_set)
    slo = {"ttft_s": s["slo_ttft_s"], "tpot_s": s["slo_tpot_s"]}
    st.plotly_chart(figures.ecdf_panels(res.requests, {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E latency"},
                                        "Latency distributions (CDF)", unit="seconds", marks=slo), width="stretch")
    _sweep_charts(table, slo_set)
    timeline = virtual_engines(res.timeline, x["pp"], label=True)
    st.plotly_chart(figures.step_series(timeline, "time_s", {"kv_occupancy": "KV-cache occupancy (fraction)",
                                                             "waiting": "queue length (requests waiting)"},
                                        "replica", "KV cache and queue over time", "seconds"), width="stretch")
    show_table(virtual_engines(res.replicas, x["pp"]))
    downloads("serving-requests", res.requests, {"inputs": _inputs_dict(x), "summary": s}, key="requests",
              what="requests")
    downloads("serving-load-sweep", table, None, key="sweep", what="load sweep")


@st.cache_data(show_spinner=False, max_entries=64)
def replica_check(model: ModelSpec, acc_name: str, engine: str, tp: int, quantization: str, need_tokens: int,
                  pp: int = 1) -> tuple[str | None, dict[str, Any] | None]:
    """Why one replica cannot hold the model and the longest request's KV cache, and the nearest replica that
    can (pure; cached by its inputs). A layout the model cannot take (tp not dividing the heads, pp not dividing
    the layers) is a bad input: its SpecError is raised, not offered a fix."""
    acc = get_accelerator(acc_name)
    replica_plan(model, acc, engine, tp, pp, quantization)
    why = serving_fit(model, acc, engine, tp, quantization, need_tokens, pp)
    return why, (nearest_replica(model, acc, engine, tp, quantization, need_tokens, pp) if why else None)


def _replica_fits(x: dict[str, Any]) -> bool:
    """True when a replica fits; else the infeasible box with the nearest replica that does, and a button."""
    wl = checked(build, x["preset"], x["trace_text"], x["rate"], x["requests"], x["seed"], 1.0, x["speed"])
    need = int((wl.prompt_tokens + wl.output_tokens).max())
    why, fix = checked(replica_check, x["model"], x["acc"], x["engine"], x["tp"], x["quant"], need, x["pp"])
    if why is None:
        return True
    infeasible(why, fix["change"] if fix else "no replica within one node fits: pick a larger accelerator, or more "
               "PP stages across nodes (on a calibration that states the inter-node link)")
    if fix:
        st.button("Use the nearest replica", on_click=use_in_link,
                  args=({"tp": fix["tp"], "pp": fix["pp"], "quant": fix["quantization"]},))
    return False


def virtual_engines(df: pd.DataFrame, pp: int, label: bool = False) -> pd.DataFrame:
    """The simulator's per-scheduler rows named as a person reads them: at pp > 1 each replica runs pp virtual
    engines (scheduler i is replica i // pp's virtual engine i % pp; capsim.sim.serving.metrics), so the rows get
    their replica and virtual engine (``label``: one "R, virtual engine V" name, for a chart's legend)."""
    if pp == 1:
        return df
    idx = df["replica"].to_numpy()
    if label:
        return df.assign(replica=[f"{i // pp}, virtual engine {i % pp}" for i in idx])
    out = df.assign(replica=idx // pp)
    out.insert(1, "virtual_engine", idx % pp)
    return out


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _metrics(res: ServingResult, slo_set: bool) -> None:
    s, req = res.summary, res.requests
    c = st.columns(7)
    c[0].metric("Requests/s", fmt.count(s["request_throughput_rps"]))
    c[1].metric("Output tokens/s", fmt.count(s["output_tokens_per_s"]))
    c[2].metric("TTFT p99", fmt.seconds(s["ttft_p99_s"]))
    c[3].metric("TPOT p99", fmt.seconds(s["tpot_p99_s"]))
    c[4].metric("E2E p99", fmt.seconds(s["e2e_p99_s"]))
    if slo_set:
        c[5].metric("SLO attainment", f"{s['goodput']:.1%}", help=_slo_help(req, s))
    else:
        c[5].metric("SLO attainment", "no SLO", help="Set a TTFT or TPOT SLO to count the requests that meet it.")
    c[6].metric("$ / M output tokens", money(s["cost_per_million_output_tokens"]))


def _slo_help(req: pd.DataFrame, s: dict[str, Any]) -> str:
    parts = []
    if s["slo_ttft_s"] is not None:
        parts.append(f"TTFT <= {s['slo_ttft_s']:g} s: {(req['ttft_s'] <= s['slo_ttft_s']).mean():.1%}")
    if s["slo_tpot_s"] is not None:
        parts.append(f"TPOT <= {s['slo_tpot_s']:g} s: {(~(req['tpot_s'] > s['slo_tpot_s'])).mean():.1%}")
    return "Requests meeting every SLO. " + "; ".join(parts)


def _sweep_charts(table: pd.DataFrame, slo_set: bool) -> None:
    c = st.columns(3 if slo_set else 2)
    c[0].plotly_chart(figures.lines(table, "offered_rps", {"request_throughput_rps": "achieved"},
                                    "Throughput against load", "offered load (req/s)", "requests/s"),
                      width="stretch")
    c[1].plotly_chart(figures.lines(table, "offered_rps", {"ttft_p50_s": "TTFT p50", "ttft_p99_s": "TTFT p99",
                                                           "e2e_p50_s": "E2E p50", "e2e_p99_s": "E2E p99"},
                                    "Latency against load", "offered load (req/s)", "seconds", log_y=True),
                      width="stretch")
    if slo_set:
        c[2].plotly_chart(figures.lines(table, "offered_rps", {"goodput": "meeting SLOs"},
                                        "SLO attainment against load", "offered load (req/s)", "fraction of requests",
                                        y_range=(0, 1.05)), width="stretch")


def _inputs_dict(x: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in x.items() if k not in ("model", "trace_text")}
    out["model"] = x["model"].name
    return out


__all__ = ["offered_rps", "render", "replica_plan", "run_serving", "sweep", "virtual_engines", "workload_spec"]
