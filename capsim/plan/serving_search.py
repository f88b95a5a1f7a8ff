"""The serving planner's search: rows of the bound table sized by simulation, cheapest bound first, until none
left can beat the best confirmed fleet (branch and bound, :class:`_Sizing`); candidates whose confirming run is
estimated over the event budget are left unsized (:func:`_within_budget`). Called by
:func:`capsim.plan.serving.plan_serving`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pandas as pd

from capsim.perf import Perf
from capsim.plan.confirm import ConfirmRule, size_family
from capsim.plan.serving_bound import perf_of
from capsim.plan.serving_specs import Slo, Traffic
from capsim.sim.serving.budget import WorkEstimate, check_work, estimate_work
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import get_engine
from capsim.specs.model import ModelSpec

FAMILY = ["accelerator", "tp", "pp", "quantization", "kv_cache_dtype"]  # candidates that differ in the batch limit
WAVE = 4  # candidates sized together (in parallel where workers allow); fixed, so the answer is the workers'


def _work(model: ModelSpec, row: pd.Series, traffic: Traffic, engine: str, rule: ConfirmRule) -> WorkEstimate:
    """The events and memory of confirming ``row``: its longest run (``traffic.requests``, else the rule's cap),
    on the fleet's replicas (a run of the whole fleet holds each replica's state; the planner simulates a slice)."""
    prompt, output = traffic.mean_lengths()
    step_tokens = get_engine(engine).limits(model, get_accelerator(row["accelerator"]))[1]
    requests = rule.first(traffic.requests) if traffic.requests is not None else rule.max_requests
    # every virtual engine of a pp-stage replica is a scheduler of its own
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
