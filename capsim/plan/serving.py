"""The serving capacity planner: the cheapest fleet that carries a traffic level within its SLOs.

Candidates (accelerator kind x TP/PP x quantization x batching limit) are priced with an analytic capacity bound,
then sized by the discrete-event simulation, cheapest bound first, until no candidate left can beat the best
(branch and bound); every simulation runs until its p99s and cost per token are known to the precision of
``capsim.plan.confirm.ConfirmRule``. The result is a table ranked by simulated cost and the Pareto front of cost
per hour against p99 TTFT. ``capsim plan serve``, ``capsim scale serve`` and the dashboard's capacity planner and
scaling page all call :func:`plan_serving`.
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
from capsim.plan.confirm import ConfirmRule, size_family
from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS, WorkEstimate, check_limit, check_work, estimate_work
from capsim.sim.serving.fleet import engine_plan, kv_blocks
from capsim.sim.serving.presets import WorkloadSpec, build_workload
from capsim.sim.serving.workload import ArrivalKind, Lengths
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization, ServePlan

QUANTIZATIONS = ("none", "int8", "int4", "fp8")  # schemes every planner tries unless told otherwise
MAX_CANDIDATES = 24  # candidates sized by simulation at most, before the search reports where it stopped
DEFAULT_RULE = ConfirmRule()
FAMILY = ["accelerator", "tp", "pp", "quantization", "kv_cache_dtype"]  # candidates that differ in the batch limit
WAVE = 4  # candidates sized together (in parallel where workers allow); fixed, so the answer is the workers'
TRACE_SAMPLE = 20000  # requests drawn to estimate a trace's mean lengths
TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2, 4)  # pipeline stages (each replica keeps pp batches in flight: capsim.sim.serving.pipeline)
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
    requests: int | None = None  # requests per confirming simulation (None: as many as ConfirmRule asks)

    def __post_init__(self) -> None:
        require(math.isfinite(self.rate_rps) and self.rate_rps > 0, "traffic.rate_rps",
                f"must be a finite number > 0, got {self.rate_rps}")
        require(all(math.isfinite(r) and r >= 0 for r in self.diurnal_rates_rps), "traffic.diurnal_rates_rps",
                "rates must be finite and >= 0")
        require(self.requests is None or self.requests >= 1, "traffic.requests",
                f"must be >= 1, got {self.requests}", "or leave it out for the adaptive length")
        require(self.lengths is not None or self.trace is not None, "traffic", "no request lengths",
                "give lengths (e.g. a preset's) or a trace")

    def mean_lengths(self) -> tuple[float, float]:
        """Mean prompt and output tokens: the distribution's, or a large sample of the trace's."""
        if self.lengths is not None:
            return self.lengths.mean()
        w = build_workload(self.workload(1.0, requests=TRACE_SAMPLE))
        return float(np.mean(w.prompt_tokens)), float(np.mean(w.output_tokens))

    @property
    def peak_rps(self) -> float:
        return max(self.rate_rps, *self.diurnal_rates_rps) if self.diurnal_rates_rps else self.rate_rps

    def workload(self, rate: float, seed: int = 0, requests: int = 2000) -> WorkloadSpec:
        """Poisson arrivals at ``rate`` with these lengths (``requests`` of them)."""
        return WorkloadSpec(ArrivalKind.POISSON, lengths=self.lengths, trace=self.trace, rate_rps=rate,
                            requests=requests, seed=seed, name="plan")


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
    supported). TP stays inside a node; pipeline stages go inside a node or across nodes (the TP tier is TP's
    alone, capsim.analytic.serving.comm_tier)."""
    out = []
    for acc in accelerators:
        # --- ppserve (issue 13 item 3): PP > 1 with any TP, not only with TP filling a node ---
        layouts = [(tp, pp) for tp in tps for pp in pps
                   if tp <= acc.gpus_per_node
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
    With pp stages the replica runs pp virtual engines, each with B sequences and 1/pp of the KV cache, each step
    a whole traversal t(B) (capsim.sim.serving.pipeline): X(B) = pp B / (O t(B)), TPOT = t(B).
    """
    b = np.arange(1, plan.max_batch + 1, dtype=float)
    p, o = prompt_mean, max(output_mean, 1.0)
    entering = b / o
    ctx = p + o / 2
    shape = StepShape(prefill_tokens=entering * p, prefill_seqs=entering, prefill_pairs=entering * p * (p + 1) / 2,
                      prefill_kv_tokens=entering * p, decode_seqs=b, decode_kv_tokens=b * (ctx + 1))
    t = np.asarray(iteration_time(model, plan, perf, shape, engine, acc).total_s)
    t_p = float(iteration_time(model, plan, perf, StepShape.prefill(1, p), engine, acc).total_s)
    # --- ppserve: per virtual engine, 1/pp of the blocks (vLLM V0 Scheduler num_gpu_blocks //= pp) ---
    kv_tokens = kv_blocks(model, plan, acc, get_engine(engine)) // plan.pp * plan.block_size
    fits = b * (p + o) <= kv_tokens
    ok = fits & (t <= (slo.tpot_p99_s if slo.tpot_p99_s is not None else np.inf))
    if slo.ttft_p99_s is not None and t_p > slo.ttft_p99_s:
        ok[:] = False
    x = plan.pp * b / (o * t)  # --- ppserve: pp batches in flight ---
    if not ok.any():
        why = ("a prefill alone exceeds the TTFT target" if slo.ttft_p99_s is not None and t_p > slo.ttft_p99_s
               else "no batch size meets the TPOT target within the KV cache")
        return {"capacity_rps": 0.0, "batch": 0, "prefill_s": t_p, "step_s": float(t[0]), "reason": why}
    i = int(np.argmax(np.where(ok, x, -1)))
    return {"capacity_rps": float(x[i]), "batch": int(b[i]), "prefill_s": t_p, "step_s": float(t[i]),
            "kv_tokens": int(kv_tokens) * plan.pp, "reason": ""}


@dataclass(frozen=True)
class ServingPlan:
    """The ranked candidates (analytic bound for all, simulation for those the search sized), the best, and the
    Pareto front of cost per hour against p99 TTFT over the simulated fleets that met the SLOs."""

    model: str
    rate_rps: float
    table: pd.DataFrame  # one row per candidate, cheapest confirmed first
    simulated: pd.DataFrame  # one row per simulated fleet (candidate x replicas)
    pareto: pd.DataFrame  # the non-dominated simulated fleets
    feasible: bool
    reason: str = ""
    notes: tuple[str, ...] = field(default=())
    rule: dict[str, Any] = field(default_factory=dict)  # the confirmation rule the fleets were judged by

    @property
    def best(self) -> dict[str, Any]:
        ok = self.table[self.table["confirmed"]]
        return ok.iloc[0].to_dict() if len(ok) else {}

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {"model": self.model, "rate_rps": self.rate_rps, "feasible": self.feasible, "reason": self.reason,
                "best": self.best, "top": self.table.head(top).to_dict("records"),
                "pareto": self.pareto.to_dict("records"), "notes": list(self.notes), "rule": self.rule}


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
    prompt, output = traffic.mean_lengths()
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
    # --- ppserve: equal bound costs go lowest single-prompt latency first (prefill_s), so a deeper pipeline
    # (a longer traversal per step) is taken over a TP layout only where it is cheaper ---
    keys = [k for k in ("viable", "cost_per_hour_min", "prefill_s") if k in df]  # no prefill_s: every bound failed
    return df.sort_values(keys, ascending=[k != "viable" for k in keys],
                          kind="stable").reset_index(drop=True)


def why_not(bounds: pd.DataFrame, most: int = 3) -> str:
    """The candidates' reasons, most common kind first ('N of M: an example; ...'); reasons that differ only in
    their numbers (the TP degree, the GB short) count as one kind."""
    reasons = bounds["reason"].where(bounds["reason"] != "", "no price")
    kinds = reasons.str.replace(r"\d+(\.\d+)?", "#", regex=True)
    counts = kinds.value_counts()
    parts = [f"{n} of {len(bounds)}: {reasons[kinds == kind].iloc[0]}" for kind, n in counts.head(most).items()]
    return "; ".join(parts) + ("; ..." if len(counts) > most else "")


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
                 limits: dict[str, int] | None = None, quantizations: tuple[str, ...] = QUANTIZATIONS,
                 engine: str = "vllm", seed: int = 0, workers: int | None = None, rule: ConfirmRule = DEFAULT_RULE,
                 max_candidates: int = MAX_CANDIDATES, max_events: float = DEFAULT_MAX_EVENTS) -> ServingPlan:
    """The cheapest fleet for ``traffic`` within ``slo``, over the candidate accelerators (``perfs``: their device
    models by name; ``prices`` and ``limits`` by accelerator name override catalog prices and cap GPU counts).

    Branch and bound: candidates are taken cheapest-bound first, in waves of ``WAVE``, each sized by simulation
    (:func:`capsim.plan.confirm.size_fleet`, run lengths by ``rule``), until no candidate left has a bound below
    the cheapest confirmed fleet (the bound never exceeds what a candidate costs, so none of them can be
    cheaper), or ``max_candidates`` have been sized; a candidate's climb stops where it would cost as much as
    the best fleet confirmed before its wave, and candidates that differ only in the batch limit share the runs
    the limit cannot change. The cheapest candidate of each accelerator kind is sized too, so the Pareto front
    spans kinds. Confirmed fleets are ranked by their simulated cost. ``workers`` changes only the speed: the
    waves, and so the answer, do not depend on it.

    Bounded work: a candidate whose confirming run (its longest, on the fleet's replicas) is estimated over
    ``max_events`` (:mod:`capsim.sim.serving.budget`) is not sized, its row says why; when that leaves no viable
    candidate the plan is refused with the estimate and what lowers it."""
    require(len(accelerators) > 0, "accelerators", "give at least one candidate accelerator")
    require(max_candidates >= 1, "max_candidates", f"must be >= 1, got {max_candidates}")
    get_engine(engine)  # a typo is an input error, not a reason on every candidate
    check_limit(max_events)
    accs = [get_accelerator(a) for a in accelerators]
    prices, limits = _by_candidate(prices or {}, accs, "prices"), _by_candidate(limits or {}, accs, "limits")
    accs = [a.with_(price_usd_per_hour=prices.get(a.name, a.price_usd_per_hour)) for a in accs]
    for a in accs:
        require(a.price_usd_per_hour is not None, "prices", f"{a.name} has no catalog price",
                f"pass a price for {a.name}")
    quants = tuple(Quantization(q) for q in quantizations)
    bounds = bound_table(model, candidates(model, accs, quants), traffic, slo, perfs, engine, limits)
    _within_budget(model, bounds, traffic, engine, rule, max_events)
    sizing = _Sizing(model, bounds, traffic, slo, engine, perfs, limits, seed, rule,
                     workers if workers is not None else (os.cpu_count() or 1), max_events)
    try:
        left = sizing.branch_and_bound(max_candidates)
        viable = bounds[bounds["viable"]]
        sizing.size([i for i in viable.groupby("accelerator", sort=False).head(1).index if i not in sizing.runs])
    finally:
        sizing.close()
    return _assemble(model, traffic, bounds, sizing, left)


def _work(model: ModelSpec, row: pd.Series, traffic: Traffic, engine: str, rule: ConfirmRule) -> WorkEstimate:
    """The events and memory of confirming ``row``: its longest run (``traffic.requests``, else the rule's cap),
    on the fleet's replicas (a run of the whole fleet holds each replica's state; the planner simulates a slice)."""
    prompt, output = traffic.mean_lengths()
    step_tokens = get_engine(engine).limits(model, get_accelerator(row["accelerator"]))[1]
    requests = rule.first(traffic.requests) if traffic.requests is not None else rule.max_requests
    # --- ppserve: every virtual engine of a pp-stage replica is a scheduler of its own ---
    return estimate_work(requests, int(row["replicas_min"]) * int(row["pp"]), prompt, output, step_tokens)


def _within_budget(model: ModelSpec, bounds: pd.DataFrame, traffic: Traffic, engine: str, rule: ConfirmRule,
                   max_events: float) -> None:
    """Viable candidates whose confirmation is estimated over ``max_events`` are left unsized, with their estimate
    as the reason; when none is left, the plan is refused with the smallest estimate and what lowers it."""
    viable = list(bounds.index[bounds["viable"]])
    work = {i: _work(model, bounds.loc[i], traffic, engine, rule) for i in viable}
    over = [i for i in viable if work[i].over(max_events)]
    if over and len(over) == len(viable):
        check_work(min(work.values(), key=lambda w: w.limit_needed), max_events,
                   "lower --rate (fewer replicas per candidate fleet) or --requests (per simulation)")
    for i in over:
        bounds.loc[i, ["viable", "reason"]] = [False, f"not simulated: {work[i].describe()}, over --max-events "
                                                      f"{max_events:.3g}"]


def _by_candidate(values: dict[str, Any], accs: list[Accelerator], field: str) -> dict[str, Any]:
    """Prices or limits keyed by the candidates' catalog names; one for an accelerator that is not a candidate
    is an error (it would be ignored)."""
    names = [a.name for a in accs]
    out = {}
    for key, value in values.items():
        name = get_accelerator(key).name
        require(name in names, field, f"{name} has a {field[:-1]} but is not a candidate accelerator",
                f"add it to the candidates ({', '.join(names)}) or drop its {field[:-1]}")
        out[name] = value
    return out


def name_values(values: list[str], field: str) -> dict[str, float]:
    """NAME=VALUE items (``--price h100=3.5``, the dashboard's price and limit fields) as a dict, for
    :func:`plan_serving`'s ``prices`` and ``limits``."""
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise SpecError(field, f"{item!r} is not NAME=VALUE", f"write e.g. {field} h100=3.5")
        try:
            out[name] = float(value)
        except ValueError:
            raise SpecError(field, f"{value!r} is not a number", f"write e.g. {field} {name}=3.5") from None
    return out


class _Sizing:
    """Sizes rows of the bound table by simulation (:func:`capsim.plan.confirm.size_fleet`), on a process pool
    when workers > 1."""

    def __init__(self, model: ModelSpec, bounds: pd.DataFrame, traffic: Traffic, slo: Slo, engine: str,
                 perfs: Mapping[str, Perf], limits: dict[str, int], seed: int, rule: ConfirmRule, workers: int,
                 max_events: float) -> None:
        self.model, self.bounds, self.traffic, self.slo, self.engine = model, bounds, traffic, slo, engine
        self.perfs, self.limits, self.seed, self.rule, self.workers = perfs, limits, seed, rule, workers
        self.max_events = max_events
        self.runs: dict[int, list[dict[str, Any]]] = {}
        self.pool: ProcessPoolExecutor | None = None

    def size(self, rows: list[int], ceiling: float = math.inf) -> None:
        """Size ``rows``; candidates that differ only in the batch limit go to one job and share their runs."""
        families: dict[tuple, list[int]] = {}
        for i in rows:
            families.setdefault(tuple(self.bounds.loc[i, FAMILY]), []).append(i)
        jobs = []
        for members in families.values():
            acc = self.bounds.loc[members[0], "accelerator"]
            jobs.append((self.model, [self.bounds.loc[i].to_dict() for i in members], self.traffic, self.slo,
                         self.engine, perf_of(self.perfs, acc), self.limits.get(acc), self.seed, self.rule, ceiling,
                         self.max_events))
        if self.workers > 1 and len(jobs) > 1:
            if self.pool is None:
                self.pool = ProcessPoolExecutor(max_workers=min(self.workers, WAVE))
            results = list(self.pool.map(size_family, *zip(*jobs, strict=True)))
        else:
            results = [size_family(*job) for job in jobs]
        for members, runs in zip(families.values(), results, strict=True):
            self.runs.update(zip(members, runs, strict=True))

    def best_cost(self) -> float:
        return min((r["cost_per_hour_usd"] for runs in self.runs.values() for r in runs if r["slo_met"]),
                   default=math.inf)

    def branch_and_bound(self, max_candidates: int) -> int:
        """Size candidates in bound order while one may beat the best; returns how many the cap left unsized
        with a bound below the best."""
        bound = self.bounds["cost_per_hour_min"]
        pending = list(self.bounds.index[self.bounds["viable"]])  # cheapest bound first
        while pending and len(self.runs) < max_candidates:
            best = self.best_cost()
            wave = [i for i in pending[:WAVE] if bound[i] < best][: max_candidates - len(self.runs)]
            if not wave:
                return 0
            self.size(wave, ceiling=best)
            pending = pending[len(wave):]
        return sum(1 for i in pending if bound[i] < self.best_cost())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


CONFIRMED = ("replicas", "gpus", "simulated_replicas", "requests", "cost_per_hour_usd", "ttft_p99_s",
             "ttft_p99_halfwidth_s", "tpot_p99_s", "tpot_p99_halfwidth_s", "goodput", "output_tokens_per_s",
             "cost_per_million_output_tokens", "cost_per_million_halfwidth", "precise")


def _assemble(model: ModelSpec, traffic: Traffic, bounds: pd.DataFrame, sizing: _Sizing, left: int) -> ServingPlan:
    """The ranked table, the simulated fleets, the Pareto front and the notes of a finished search."""
    sims, confirmed = [], {}
    for i, runs in sizing.runs.items():
        row = bounds.loc[i]
        sims += [{**{k: row[k] for k in ("accelerator", "tp", "pp", "quantization", "max_batch")}, **r} for r in runs]
        met = [r for r in runs if r["slo_met"]]
        if met:
            confirmed[i] = min(met, key=lambda r: r["replicas"])
    table = bounds.copy()
    table["sized"] = table.index.isin(list(sizing.runs))
    table["confirmed"] = table.index.isin(list(confirmed))
    for key in CONFIRMED:
        table[key] = [confirmed[i][key] if i in confirmed else math.nan for i in table.index]
    table = table.sort_values(["confirmed", "cost_per_hour_usd", "cost_per_million_output_tokens",
                               "cost_per_hour_min"], ascending=[False, True, True, True],
                              kind="stable").reset_index(drop=True)
    simulated = pd.DataFrame(sims)
    front = pareto_front(simulated[simulated["slo_met"]]) if len(simulated) else simulated
    feasible = bool(confirmed)
    reason = "" if feasible else (f"no candidate can meet the SLOs ({why_not(bounds)})" if not bounds["viable"].any()
                                  else "no simulated fleet met the SLOs within the replica and GPU limits")
    rule = sizing.rule
    notes = [f"analytic bound for {len(bounds)} candidates; {len(sizing.runs)} sized by simulation, cheapest bound "
             f"first until none left could beat the best ({len(simulated)} fleets simulated, each as a slice of at "
             f"most {rule.slice_replicas} replicas at its share of {traffic.peak_rps:g} req/s)",
             f"confirmation: {rule.describe(traffic.requests)}; SLOs judged on the requests that arrived in the "
             "second half of each run"]
    if left:
        notes.append(f"search stopped at {len(sizing.runs)} sized candidates: {left} more have an analytic bound "
                     "below the best fleet and were not simulated (raise max_candidates)")
    if feasible and not table.iloc[0]["precise"]:
        notes.append("the best fleet's p99s and cost are less precise than the rule asks (see the half-widths)")
    return ServingPlan(model.name, traffic.peak_rps, table, simulated, front, feasible, reason, tuple(notes),
                       rule.to_dict())
