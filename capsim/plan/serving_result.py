"""The serving planner's answer: the ranked candidates, the simulated fleets and their Pareto front
(:class:`ServingPlan`, assembled from a finished search by :func:`_assemble`). Re-exported by
:mod:`capsim.plan.serving`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from capsim.plan.serving_bound import why_not
from capsim.plan.serving_search import _Sizing
from capsim.plan.serving_specs import Traffic
from capsim.specs.model import ModelSpec


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
    sampling: str = "random"  # the requests' sampling the steps were priced with (Traffic.sampling)

    @property
    def best(self) -> dict[str, Any]:
        ok = self.table[self.table["confirmed"]]
        return ok.iloc[0].to_dict() if len(ok) else {}

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {"model": self.model, "rate_rps": self.rate_rps, "feasible": self.feasible, "reason": self.reason,
                "best": self.best, "top": self.table.head(top).to_dict("records"),
                "pareto": self.pareto.to_dict("records"), "notes": list(self.notes), "rule": self.rule,
                "sampling": self.sampling}


def pareto_front(df: pd.DataFrame, cost: str = "cost_per_hour_usd", latency: str = "ttft_p99_s") -> pd.DataFrame:
    """Rows no other row beats on both cost and latency, cheapest first."""
    ordered = df.sort_values([cost, latency], kind="stable")
    keep, best = [], math.inf
    for i, lat in zip(ordered.index, ordered[latency], strict=True):
        if lat < best:
            keep.append(i)
            best = lat
    return ordered.loc[keep].reset_index(drop=True)


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
             "second half of each run",
             f"sampling {traffic.sampling.name}: the sampler each step runs for the requests' sampling parameters"]
    if left:
        notes.append(f"search stopped at {len(sizing.runs)} sized candidates: {left} more have an analytic bound "
                     "below the best fleet and were not simulated (raise max_candidates)")
    if feasible and not table.iloc[0]["precise"]:
        notes.append("the best fleet's p99s and cost are less precise than the rule asks (see the half-widths)")
    return ServingPlan(model.name, traffic.peak_rps, table, simulated, front, feasible, reason, tuple(notes),
                       rule.to_dict(), traffic.sampling.name)


__all__ = ["CONFIRMED", "ServingPlan", "pareto_front"]
