"""The serving capacity planner: the cheapest fleet that carries a traffic level within its SLOs.

Candidates (accelerator kind x TP x quantization x batching limit) are pruned with an analytic capacity bound,
then the cheapest are confirmed, and sized up where needed, by the discrete-event simulation. The result is a
ranked table and the Pareto front of cost per hour against p99 TTFT.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capsim.analytic.serving import StepShape, iteration_time
from capsim.errors import SpecError, require
from capsim.perf import Perf
from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS, WorkEstimate, check_limit, check_work, estimate_work
from capsim.sim.serving.fleet import ServeConfig, engine_plan, kv_blocks, simulate
from capsim.sim.serving.presets import WorkloadSpec, build_workload
from capsim.sim.serving.workload import ArrivalKind, Lengths
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization, ServePlan

TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2, 4)  # pipeline stages across nodes, tried once TP fills a node
BATCH_CHOICES = (64, 128, 256)


@dataclass(frozen=True)
class Slo:
    """Latency targets. p99 targets bound the fleet's percentiles; ``goodput_min`` instead asks that at least that
    fraction of requests meet both per-request targets (TTFT and TPOT), as ``vllm bench serve --goodput``."""

    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    goodput_min: float | None = None

    def __post_init__(self) -> None:
        require(any(v is not None for v in (self.ttft_p99_s, self.tpot_p99_s)), "slo",
                "no latency target given", "give a p99 TTFT and/or TPOT target")
        for name in ("ttft_p99_s", "tpot_p99_s"):
            value = getattr(self, name)
            require(value is None or (math.isfinite(value) and value > 0), f"slo.{name}",
                    f"must be a finite number of seconds > 0, got {value}")
        require(self.goodput_min is None or 0 < self.goodput_min <= 1, "slo.goodput_min", "must be in (0, 1]")

    def met(self, summary: dict[str, Any]) -> bool:
        if self.goodput_min is not None:
            return summary["goodput"] >= self.goodput_min
        ok = True
        if self.ttft_p99_s is not None:
            ok &= summary["ttft_p99_s"] <= self.ttft_p99_s
        if self.tpot_p99_s is not None:
            ok &= summary["tpot_p99_s"] <= self.tpot_p99_s
        return bool(ok)


@dataclass(frozen=True)
class Traffic:
    """What the fleet must carry: a peak rate (Poisson) with request lengths, or a trace's lengths at that rate."""

    rate_rps: float
    lengths: Lengths | None = None
    trace: str | None = None  # a shipped trace name or CSV: lengths sampled from it
    diurnal_rates_rps: tuple[float, ...] = ()  # a daily curve: the fleet is sized for its peak
    requests: int | None = None  # requests per confirming simulation (default: 60 s of traffic, 2,000-20,000)

    def __post_init__(self) -> None:
        require(math.isfinite(self.rate_rps) and self.rate_rps > 0, "traffic.rate_rps",
                f"must be a finite number > 0, got {self.rate_rps}")
        require(all(math.isfinite(r) and r >= 0 for r in self.diurnal_rates_rps), "traffic.diurnal_rates_rps",
                "rates must be finite and >= 0")
        require(self.requests is None or self.requests >= 1, "traffic.requests",
                f"must be >= 1, got {self.requests}", "or leave it out for 60 s of traffic")
        require(self.lengths is not None or self.trace is not None, "traffic", "no request lengths",
                "give lengths (e.g. a preset's) or a trace")

    @property
    def peak_rps(self) -> float:
        return max(self.rate_rps, *self.diurnal_rates_rps) if self.diurnal_rates_rps else self.rate_rps

    def workload(self, rate: float, seed: int = 0) -> WorkloadSpec:
        n = self.requests if self.requests is not None else int(min(max(rate * 60, 2000), 20000))
        return WorkloadSpec(ArrivalKind.POISSON, lengths=self.lengths, trace=self.trace, rate_rps=rate,
                            requests=n, seed=seed, name="plan")


@dataclass(frozen=True)
class Candidate:
    accelerator: Accelerator
    tp: int
    quantization: Quantization
    max_batch: int
    kv_cache_dtype: str | None = None  # None: the serving dtype
    pp: int = 1


def candidates(model: ModelSpec, accelerators: list[Accelerator], quantizations: tuple[Quantization, ...],
               tps: tuple[int, ...] = TP_CHOICES, batches: tuple[int, ...] = BATCH_CHOICES,
               pps: tuple[int, ...] = PP_CHOICES) -> list[Candidate]:
    """Every accelerator x TP x PP x quantization x max batch that can run (heads and layers split, format
    supported). Pipeline stages span nodes, so PP > 1 is tried only with TP filling a node."""
    out = []
    for acc in accelerators:
        layouts = [(tp, pp) for tp in tps for pp in pps
                   if tp <= acc.gpus_per_node and (pp == 1 or tp == acc.gpus_per_node)
                   and not model.heads % tp and not (model.kv_heads % tp and tp % model.kv_heads)
                   and not model.layers % pp]
        for tp, pp in layouts:
            for q in quantizations:
                if acc.peaks.of(q.compute_dtype(ServePlan().dtype)) is None:
                    continue  # e.g. fp8 math on an A100
                out += [Candidate(acc, tp, q, b, pp=pp) for b in batches]
    return out


def capacity_bound(model: ModelSpec, plan: ServePlan, acc: Accelerator, perf: Perf, engine: str,
                   prompt_mean: float, output_mean: float, slo: Slo) -> dict[str, Any]:
    """Most requests/s one replica carries within the TPOT target, from the iteration-time model.

    In steady state with B sequences decoding, B/O of them finish per step and as many prompts enter, so the
    step that carries the load holds B decode tokens and B P/O prefill tokens (chunked prefill mixes them; a
    prefill-first scheduler runs the same tokens in separate, batched steps at nearly the same cost). One such
    step takes t(B); the replica finishes X(B) = B / (O t(B)) requests/s and a request sees TPOT = t(B).
    B is limited by max_num_seqs, the KV cache and the TPOT target; the TTFT target must exceed one prompt's
    prefill. Scheduling gaps only lower X, so the simulation confirms (and sizes up) what this bound prunes.
    """
    b = np.arange(1, plan.max_batch + 1, dtype=float)
    p, o = prompt_mean, max(output_mean, 1.0)
    entering = b / o
    ctx = p + o / 2
    shape = StepShape(prefill_tokens=entering * p, prefill_seqs=entering, prefill_pairs=entering * p * (p + 1) / 2,
                      prefill_kv_tokens=entering * p, decode_seqs=b, decode_kv_tokens=b * (ctx + 1))
    t = np.asarray(iteration_time(model, plan, perf, shape, engine, acc).total_s)
    t_p = float(iteration_time(model, plan, perf, StepShape.prefill(1, p), engine, acc).total_s)
    kv_tokens = kv_blocks(model, plan, acc, get_engine(engine)) * plan.block_size
    fits = b * (p + o) <= kv_tokens
    ok = fits & (t <= (slo.tpot_p99_s if slo.tpot_p99_s is not None else np.inf))
    if slo.ttft_p99_s is not None and t_p > slo.ttft_p99_s:
        ok[:] = False
    x = b / (o * t)
    if not ok.any():
        why = ("a prefill alone exceeds the TTFT target" if slo.ttft_p99_s is not None and t_p > slo.ttft_p99_s
               else "no batch size meets the TPOT target within the KV cache")
        return {"capacity_rps": 0.0, "batch": 0, "prefill_s": t_p, "step_s": float(t[0]), "reason": why}
    i = int(np.argmax(np.where(ok, x, -1)))
    return {"capacity_rps": float(x[i]), "batch": int(b[i]), "prefill_s": t_p, "step_s": float(t[i]),
            "kv_tokens": int(kv_tokens), "reason": ""}


def _lengths_mean(traffic: Traffic) -> tuple[float, float]:
    if traffic.lengths is not None:
        return traffic.lengths.mean()
    w = build_workload(traffic.workload(1.0))
    return float(np.mean(w.prompt_tokens)), float(np.mean(w.output_tokens))


@dataclass(frozen=True)
class ServingPlan:
    """The ranked candidates (analytic bound for all, simulation for the cheapest), the best, and the Pareto
    front of cost per hour against p99 TTFT over the simulated fleets that met the SLOs."""

    model: str
    rate_rps: float
    table: pd.DataFrame  # one row per candidate, cheapest confirmed first
    simulated: pd.DataFrame  # one row per simulated fleet (candidate x replicas)
    pareto: pd.DataFrame  # the non-dominated simulated fleets
    feasible: bool
    reason: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def best(self) -> dict[str, Any]:
        ok = self.table[self.table["confirmed"]]
        return ok.iloc[0].to_dict() if len(ok) else {}

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {"model": self.model, "rate_rps": self.rate_rps, "feasible": self.feasible, "reason": self.reason,
                "best": self.best, "top": self.table.head(top).to_dict("records"),
                "pareto": self.pareto.to_dict("records"), "notes": list(self.notes)}


def perf_of(perfs: Mapping[str, Perf], accelerator: str) -> Perf:
    """The device model of ``accelerator`` from the planner's ``perfs`` (accelerator name -> Perf)."""
    if accelerator not in perfs:
        raise SpecError("perfs", f"no device model for {accelerator} (have {', '.join(perfs) or 'none'})",
                        "build them with capsim.calibration.perfs_for(accelerators, calibration)")
    return perfs[accelerator]


def bound_table(model: ModelSpec, cands: list[Candidate], traffic: Traffic, slo: Slo, perfs: Mapping[str, Perf],
                engine: str = "vllm", limits: dict[str, int] | None = None,
                perf_transform: Any = None) -> pd.DataFrame:
    """Every candidate's analytic capacity, minimum replicas and cost, viable ones cheapest first.
    ``perfs``: device models by accelerator name; ``perf_transform(perf) -> perf`` lets a what-if change the
    device model (e.g. sparse GEMMs)."""
    limits = limits or {}
    prompt, output = _lengths_mean(traffic)
    used: dict[str, Perf] = {}
    rows = []
    for c in cands:
        acc = c.accelerator
        if acc.name not in used:
            base = perf_of(perfs, acc.name)
            used[acc.name] = perf_transform(base) if perf_transform is not None else base
        perf = used[acc.name]
        row = {"accelerator": acc.name, "tp": c.tp, "pp": c.pp, "quantization": c.quantization.value,
               "max_batch": c.max_batch, "kv_cache_dtype": c.kv_cache_dtype,
               "price_usd_per_gpu_hour": acc.price_usd_per_hour, "calibration": perf.name}
        try:
            plan = engine_plan(engine, model, acc, tp=c.tp, pp=c.pp, quantization=c.quantization,
                               max_batch=c.max_batch, kv_cache_dtype=c.kv_cache_dtype)
            row.update(capacity_bound(model, plan.check(model), acc, perf, engine, prompt, output, slo))
        except SpecError as err:
            row.update(capacity_rps=0.0, reason=str(err))
        cap = row["capacity_rps"]
        row["replicas_min"] = math.ceil(traffic.peak_rps / cap) if cap > 0 else 0
        row["gpus_min"] = row["replicas_min"] * c.tp * c.pp
        limit = limits.get(acc.name)
        if cap > 0 and limit is not None and row["gpus_min"] > limit:
            row["reason"] = f"needs {row['gpus_min']} GPUs, over the limit of {limit}"
        row["cost_per_hour_min"] = row["gpus_min"] * (acc.price_usd_per_hour or math.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    df["viable"] = (df["capacity_rps"] > 0) & (df["reason"] == "") & df["cost_per_hour_min"].notna()
    return df.sort_values(["viable", "cost_per_hour_min"], ascending=[False, True], kind="stable").reset_index(drop=True)


def why_not(bounds: pd.DataFrame, most: int = 3) -> str:
    """The candidates' reasons, most common kind first ('N of M: an example; ...'); reasons that differ only in
    their numbers (the TP degree, the GB short) count as one kind."""
    reasons = bounds["reason"].where(bounds["reason"] != "", "no price")
    kinds = reasons.str.replace(r"\d+(\.\d+)?", "#", regex=True)
    counts = kinds.value_counts()
    parts = [f"{n} of {len(bounds)}: {reasons[kinds == kind].iloc[0]}" for kind, n in counts.head(most).items()]
    return "; ".join(parts) + ("; ..." if len(counts) > most else "")


def _simulate(model: ModelSpec, row: pd.Series, replicas: int, traffic: Traffic, slo: Slo, engine: str,
              perf: Perf, seed: int, max_events: float) -> dict[str, Any]:
    acc = get_accelerator(row["accelerator"], row["price_usd_per_gpu_hour"])
    plan = engine_plan(engine, model, acc, tp=int(row["tp"]), pp=int(row["pp"]), quantization=row["quantization"],
                       max_batch=int(row["max_batch"]), replicas=replicas, kv_cache_dtype=row.get("kv_cache_dtype"))
    workload = build_workload(traffic.workload(traffic.peak_rps, seed))
    cfg = ServeConfig(engine=engine, slo_ttft_s=slo.ttft_p99_s, slo_tpot_s=slo.tpot_p99_s, seed=seed,
                      max_events=max_events)
    result = simulate(model, plan, acc, perf, workload, cfg)
    s = {**result.summary, **steady_state(result.requests)}
    keep = ("ttft_p99_s", "tpot_p99_s", "e2e_p99_s", "ttft_mean_s", "tpot_mean_s", "goodput",
            "output_tokens_per_s", "cost_per_hour_usd", "cost_per_million_output_tokens")
    return {"replicas": replicas, "gpus": replicas * int(row["tp"]) * int(row["pp"]), **{k: s[k] for k in keep},
            "slo_met": slo.met(s)}


def steady_state(requests: pd.DataFrame) -> dict[str, float]:
    """Latency percentiles and goodput of the requests that arrived in the second half of the run.

    A fleet past its capacity builds a queue that grows through the run; judging the later arrivals (rather
    than the whole run, or the warm-up) is what exposes it in a finite simulation."""
    late = requests[requests["arrival_s"] >= requests["arrival_s"].median()]
    return {"ttft_p99_s": float(np.percentile(late["ttft_s"], 99)),
            "tpot_p99_s": float(np.percentile(late["tpot_s"], 99)),
            "e2e_p99_s": float(np.percentile(late["e2e_s"], 99)), "ttft_mean_s": float(late["ttft_s"].mean()),
            "tpot_mean_s": float(late["tpot_s"].mean()), "goodput": float(late["meets_slo"].mean())}


def _confirm(model: ModelSpec, row: pd.Series, traffic: Traffic, slo: Slo, engine: str, perf: Perf,
             limit: int | None, seed: int, max_runs: int, max_events: float) -> tuple[list[dict[str, Any]], str]:
    """Simulate from the bound's replica count upwards (x1.25 per miss) until the SLO holds or a limit binds
    (GPUs, the events one simulation may take, or ``max_runs``): the runs, and the limit that stopped the sizing
    ("" when the SLO held)."""
    runs, replicas = [], int(row["replicas_min"])
    for _ in range(max_runs):
        if limit is not None and replicas * int(row["tp"]) * int(row["pp"]) > limit:
            return runs, f"{replicas} replicas would be over the limit of {limit} GPUs"
        work = _work(model, row, replicas, traffic, engine)
        if work.over(max_events):
            return runs, f"{replicas} replicas not simulated: {work.describe()}, over --max-events {max_events:.3g}"
        runs.append(_simulate(model, row, replicas, traffic, slo, engine, perf, seed, max_events))
        if runs[-1]["slo_met"]:
            return runs, ""
        replicas = max(replicas + 1, math.ceil(replicas * 1.25))
    return runs, f"SLOs missed by {max_runs} fleet sizes up to {replicas} replicas"


def _work(model: ModelSpec, row: pd.Series, replicas: int, traffic: Traffic, engine: str) -> WorkEstimate:
    """The events and memory of confirming ``row`` with ``replicas`` replicas by simulation."""
    prompt, output = _lengths_mean(traffic)
    step_tokens = get_engine(engine).limits(model, get_accelerator(row["accelerator"]))[1]
    return estimate_work(traffic.workload(traffic.peak_rps).requests, replicas, prompt, output, step_tokens)


def _within_budget(model: ModelSpec, bounds: pd.DataFrame, picks: list[Any], traffic: Traffic, engine: str,
                   max_events: float) -> list[Any]:
    """The picks whose first simulation fits in ``max_events`` events; the others get their estimate as the
    reason. When none fits, the plan is refused with the smallest estimate and what lowers it."""
    work = {i: _work(model, bounds.loc[i], int(bounds.loc[i, "replicas_min"]), traffic, engine) for i in picks}
    over = [i for i in picks if work[i].over(max_events)]
    if over and len(over) == len(picks):
        check_work(min(work.values(), key=lambda w: w.limit_needed), max_events,
                   "lower --rate (fewer replicas per candidate fleet) or --requests (per simulation)")
    for i in over:
        bounds.loc[i, "reason"] = f"not simulated: {work[i].describe()}, over --max-events {max_events:.3g}"
    return [i for i in picks if i not in over]


def pareto_front(df: pd.DataFrame, cost: str = "cost_per_hour_usd", latency: str = "ttft_p99_s") -> pd.DataFrame:
    """Rows no other row beats on both cost and latency, cheapest first."""
    ordered = df.sort_values([cost, latency], kind="stable")
    keep, best = [], math.inf
    for i, lat in zip(ordered.index, ordered[latency], strict=True):
        if lat < best:
            keep.append(i)
            best = lat
    return ordered.loc[keep].reset_index(drop=True)


def plan_serving(model: ModelSpec, traffic: Traffic, slo: Slo, accelerators: list[str | Accelerator],
                 perfs: Mapping[str, Perf], prices: dict[str, float] | None = None,
                 limits: dict[str, int] | None = None,
                 quantizations: tuple[str, ...] = ("none", "int8", "int4", "fp8"), engine: str = "vllm",
                 confirm_top: int = 4, seed: int = 0, max_runs: int = 5, workers: int | None = None,
                 max_events: float = DEFAULT_MAX_EVENTS) -> ServingPlan:
    """The cheapest fleet for ``traffic`` within ``slo``, over the candidate accelerators (``perfs``: their
    device models by name; ``prices`` and ``limits`` by accelerator name override catalog prices and cap GPU
    counts). A candidate fleet whose simulation would take more than ``max_events`` events is not simulated; when
    that rules out every candidate worth confirming, the plan is refused with the estimate."""
    require(len(accelerators) > 0, "accelerators", "give at least one candidate accelerator")
    get_engine(engine)  # a typo is an input error, not a reason on every candidate
    check_limit(max_events)
    prices, limits = prices or {}, limits or {}
    accs = [get_accelerator(a) for a in accelerators]
    accs = [a.with_(price_usd_per_hour=prices.get(a.name, a.price_usd_per_hour)) for a in accs]
    for a in accs:
        require(a.price_usd_per_hour is not None, "prices", f"{a.name} has no catalog price",
                f"pass a price for {a.name}")
    limits = {get_accelerator(k).name: v for k, v in limits.items()}
    quants = tuple(Quantization(q) for q in quantizations)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    bounds = bound_table(model, candidates(model, accs, quants), traffic, slo, perfs, engine, limits)
    viable = bounds[bounds["viable"]]
    # the cheapest by the bound overall, and the cheapest of each accelerator kind (so the front spans kinds)
    picks = list(dict.fromkeys([*viable.index[: max(confirm_top, 1)],
                                *viable.groupby("accelerator", sort=False).head(1).index]))
    picks = _within_budget(model, bounds, picks, traffic, engine, max_events)
    jobs = [(model, bounds.loc[i], traffic, slo, engine, perf_of(perfs, bounds.loc[i, "accelerator"]),
             limits.get(bounds.loc[i, "accelerator"]), seed, max_runs, max_events) for i in picks]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = list(pool.map(_confirm, *zip(*jobs, strict=True)))
    else:
        results = [_confirm(*job) for job in jobs]
    sims, confirmed = [], {}
    for i, (runs, stopped) in zip(picks, results, strict=True):
        row = bounds.loc[i]
        for r in runs:
            sims.append({**{k: row[k] for k in ("accelerator", "tp", "pp", "quantization", "max_batch")}, **r})
        met = [r for r in runs if r["slo_met"]]
        if met:
            confirmed[i] = met[-1]
        else:
            bounds.loc[i, "reason"] = f"not confirmed: {stopped}"
    table = bounds.copy()
    table["confirmed"] = table.index.isin(list(confirmed))
    for key in ("replicas", "gpus", "cost_per_hour_usd", "ttft_p99_s", "tpot_p99_s", "goodput",
                "cost_per_million_output_tokens"):
        table[key] = [confirmed[i][key] if i in confirmed else math.nan for i in table.index]
    table = table.sort_values(["confirmed", "cost_per_hour_usd", "cost_per_hour_min"],
                              ascending=[False, True, True], kind="stable").reset_index(drop=True)
    simulated = pd.DataFrame(sims)
    front = pareto_front(simulated[simulated["slo_met"]]) if len(simulated) else simulated
    feasible = bool(confirmed)
    reason = "" if feasible else (f"no candidate can meet the SLOs ({why_not(bounds)})" if not bounds["viable"].any()
                                  else f"no simulated fleet met the SLOs within the replica, GPU and event limits "
                                  f"({why_not(bounds[bounds['viable'] & (bounds['reason'] != '')])})")
    notes = (f"analytic bound for {len(bounds)} candidates, {len(simulated)} fleets simulated "
             f"({traffic.workload(traffic.peak_rps).requests} requests each at {traffic.peak_rps:g} req/s); "
             "SLOs judged on the requests that arrived in the second half of each run",)
    return ServingPlan(model.name, traffic.peak_rps, table, simulated, front, feasible, reason, notes)
