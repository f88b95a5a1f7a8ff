"""The serving capacity planner: the cheapest fleet that carries a traffic level within its SLOs.

Candidates (accelerator kind x TP/PP x quantization x batching limit) are priced with an analytic capacity bound,
then sized by the discrete-event simulation, cheapest bound first, until no candidate left can beat the best
(branch and bound); every simulation runs until its p99s and cost per token are known to the precision of
``capsim.plan.confirm.ConfirmRule``. The result is a table ranked by simulated cost and the Pareto front of cost
per hour against p99 TTFT. ``capsim plan serve``, ``capsim scale serve`` and the dashboard's capacity planner and
scaling page all call :func:`plan_serving`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from capsim.errors import SpecError, require
from capsim.perf import Perf
from capsim.plan.confirm import ConfirmRule
from capsim.plan.serving_bound import (
    BATCH_CHOICES,
    PP_CHOICES,
    TP_CHOICES,
    Candidate,
    bound_table,
    candidates,
    capacity_bound,
    perf_of,
    why_not,
)
from capsim.plan.serving_result import CONFIRMED, ServingPlan, _assemble, pareto_front
from capsim.plan.serving_search import FAMILY, WAVE, _Sizing, _within_budget
from capsim.plan.serving_specs import TRACE_SAMPLE, Slo, Traffic
from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS, check_limit
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Quantization

QUANTIZATIONS = ("none", "int8", "int4", "fp8")  # schemes every planner tries unless told otherwise
MAX_CANDIDATES = 24  # candidates sized by simulation at most, before the search reports where it stopped
DEFAULT_RULE = ConfirmRule()


def plan_serving(model: ModelSpec, traffic: Traffic, slo: Slo, accelerators: list[str | Accelerator],
                 perfs: Mapping[str, Perf], prices: dict[str, float] | None = None,
                 limits: dict[str, int] | None = None, quantizations: tuple[str, ...] = QUANTIZATIONS,
                 engine: str = "vllm", seed: int = 0, workers: int | None = None, rule: ConfirmRule = DEFAULT_RULE,
                 max_candidates: int = MAX_CANDIDATES, max_events: float = DEFAULT_MAX_EVENTS,
                 memo: dict | None = None, front: bool = True) -> ServingPlan:
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
    candidate the plan is refused with the estimate and what lowers it.

    ``memo``: a dict kept across plans that differ only in the rate (:func:`bound_table`'s; the scaling study),
    so each candidate's capacity bound, which the rate does not change, is computed once; the answer is the same.

    ``front=False``: only the best fleet is wanted (the scaling study reads nothing else), so the cheapest
    candidate of another kind is sized only where it could still be the best (:func:`_for_front`); ``best``,
    ``feasible`` and ``reason`` are those of ``front=True``, the table, simulated fleets and front may hold less."""
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
    bounds = bound_table(model, candidates(model, accs, quants), traffic, slo, perfs, engine, limits, memo=memo)
    _within_budget(model, bounds, traffic, engine, rule, max_events)
    sizing = _Sizing(model, bounds, traffic, slo, engine, perfs, limits, seed, rule,
                     workers if workers is not None else (os.cpu_count() or 1), max_events)
    try:
        left = sizing.branch_and_bound(max_candidates)
        viable = bounds[bounds["viable"]]
        kinds = [i for i in viable.groupby("accelerator", sort=False).head(1).index if i not in sizing.runs]
        sizing.size(kinds if front else _for_front(kinds, bounds, sizing.best_cost()))
    finally:
        sizing.close()
    return _assemble(model, traffic, bounds, sizing, left)


def _for_front(rows: list[int], bounds: Any, best: float) -> list[int]:
    """Of the cheapest candidates of the other kinds, those that could still be the best fleet: a bound not above
    ``best``, the cheapest confirmed cost. Proof that a dropped one cannot be: every fleet :func:`size_fleet` runs
    has at least ``replicas_min`` replicas (the climb starts there and only grows; bisection stays between a miss
    and a met, both from the climb), and its cost, replicas x tp x pp x the same price, is then at least
    ``cost_per_hour_min`` = ``replicas_min`` x tp x pp x price (an int times a positive float is monotone in the
    int), which is above ``best``; the ranking (:func:`_assemble`: confirmed, then cost per hour) puts it after
    the best, whose row and runs are unchanged. Ties (a bound equal to ``best``) and a search with no confirmed
    fleet (``best`` infinite) keep every candidate."""
    return [i for i in rows if not bounds.loc[i, "cost_per_hour_min"] > best]


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


__all__ = ["BATCH_CHOICES", "CONFIRMED", "DEFAULT_RULE", "FAMILY", "MAX_CANDIDATES", "PP_CHOICES", "QUANTIZATIONS",
           "TP_CHOICES", "TRACE_SAMPLE", "WAVE", "Candidate", "ServingPlan", "Slo", "Traffic", "bound_table",
           "candidates", "capacity_bound", "name_values", "pareto_front", "perf_of", "plan_serving", "why_not"]
