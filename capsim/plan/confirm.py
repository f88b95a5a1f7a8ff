"""Confirming a fleet by simulation, and for how long: the one rule every planner shares.

A fleet is judged on its steady state: the requests that arrived in the second half of a run (a fleet past its
capacity builds a queue that grows through the run, and the later arrivals expose it). From them come the p99
TTFT and TPOT, the goodput, and the output tokens the fleet delivers per second, hence its cost per token.

How precisely a run knows them is measured by sectioning: the judged span is cut into contiguous sections, each
section gives its own estimate, and the spread of those estimates gives a Student-t confidence interval around
the whole-span estimate (Asmussen & Glynn 2007, "Stochastic Simulation", Sec. III.5a; for quantiles, Nakayama
2014, ACM TOMACS 24(4), "Confidence intervals for quantiles using sectioning"). Contiguous sections keep the
autocorrelation of a queue inside each section, as batch means do (Law 2015, "Simulation Modeling and
Analysis", Sec. 9.5.3). A run is lengthened (to the length its variance says is needed, up to a cap) until every interval's half-width is
below a stated fraction of its scale (an SLO statistic: of its target; the cost per token: of itself), or until
an SLO is missed beyond doubt.

Identical replicas behind a round-robin router carry equal shares, so a fleet of R replicas is simulated as a
slice of min(R, ``slice_replicas``) replicas at the matching share of the traffic: per replica, the load is the
fleet's. Each replica of a slice sees every k-th arrival of a Poisson stream (Erlang-k gaps, squared coefficient of
variation 1/k: 0.25 for the default 4), a little burstier than the fleet's every R-th, so a slice errs towards a
larger fleet; a smaller slice needs fewer requests for the same simulated time, which is what the precision of a
p99 needs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from capsim.errors import require
from capsim.perf import Perf
from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS
from capsim.sim.serving.fleet import ServeConfig, engine_plan, simulate
from capsim.sim.serving.presets import build_workload
from capsim.specs.catalog import get_accelerator
from capsim.specs.model import ModelSpec


@dataclass(frozen=True)
class ConfirmRule:
    """How long a confirming simulation runs: it starts at ``min_requests`` and doubles until every judged quantity
    has a confidence-interval half-width within ``rel_precision`` of its scale (each p99 with a target, or the
    goodput where that is the target: of the target; the cost per output token: of its estimate), an SLO is
    missed beyond doubt, or ``max_requests`` is reached. A traffic with a fixed request count runs exactly that many (the precision
    reached is still reported)."""

    rel_precision: float = 0.10  # half-width over its scale at which a run stops
    confidence: float = 0.95  # two-sided level of the intervals
    sections: int = 10  # contiguous sections of the judged span (sectioning / batch means)
    # Each section spans at least this many mean request lifetimes (E2E): sections shorter than the time a batch
    # takes to turn over are correlated, and their spread understates the error (batch means must be long
    # against the correlation time, Law 2015, Sec. 9.5.3). 3 is a rule of thumb, not a fit: in the README's
    # 70B example the simulated fleet's bursts of long prompts last a few lifetimes (~12 s each), and runs with
    # 4-s sections reported intervals that longer runs showed to be too narrow.
    section_lifetimes: float = 3.0
    size_tolerance: float = 0.05  # sizing stops when the smallest passing fleet is known within this fraction
    grow_rounds: int = 8  # x1.25 steps above the analytic bound before a candidate is given up
    min_requests: int = 4000  # first run: 2,000 judged requests, 200 per section (a p99 from 2 tail samples)
    max_requests: int = 16000
    slice_replicas: int = 4  # replicas simulated to stand for a larger fleet

    def __post_init__(self) -> None:
        require(0 < self.rel_precision < 1, "rule.rel_precision", f"must be in (0, 1), got {self.rel_precision}")
        require(0 < self.confidence < 1, "rule.confidence", f"must be in (0, 1), got {self.confidence}")
        require(self.sections >= 2, "rule.sections", f"must be >= 2, got {self.sections}")
        require(self.min_requests >= 2 * self.sections, "rule.min_requests", f"must be >= {2 * self.sections}")
        require(self.max_requests >= self.min_requests, "rule.max_requests", "must be >= min_requests")
        require(self.slice_replicas >= 1, "rule.slice_replicas", "must be >= 1")

    def first(self, fixed: int | None = None) -> int:
        """Requests of the first run (``fixed``: that count, the only run)."""
        if fixed is not None:
            require(fixed >= 2 * self.sections, "requests", f"a confirming run needs at least {2 * self.sections} "
                    f"requests, got {fixed}", "give more requests, or none for the adaptive length")
            return fixed
        return self.min_requests

    def next(self, n: int, shortfall: float) -> int | None:
        """Requests of the run after one of ``n`` whose widest interval is ``shortfall`` times what the rule
        allows (> 1), or None at the cap. A half-width falls as 1/sqrt(requests), so the run that should reach
        the precision has n * shortfall^2 requests (Law 2015, Sec. 9.4.1, the sequential procedure for a
        relative precision), at least twice n, rounded up to a thousand; ``max_requests`` where that is at least
        half of it (a run that short would only be followed by one at the cap)."""
        if n >= self.max_requests:
            return None
        want = max(2 * n, math.ceil(n * shortfall**2 * 1.1 / 1000) * 1000)  # 1.1: the variance is estimated
        return self.max_requests if want >= self.max_requests / 2 else want  # no run that the next one repeats

    def describe(self, fixed: int | None = None) -> str:
        if fixed is not None:
            return f"{fixed:,} requests per run (a fixed count)"
        return (f"runs of {self.min_requests:,} requests, lengthened (to what the last run's variance says is "
                f"needed, at least doubled, at most {self.max_requests:,}) until the "
                f"{self.confidence:.0%} intervals of each SLO statistic and of the cost per token are within "
                f"{self.rel_precision:.0%} of the target and of the cost ({self.sections} sections of the second "
                f"half, each at least {self.section_lifetimes:g} request lifetimes long), or an SLO is missed beyond "
                "doubt")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


QUANTITIES = ("ttft_p99_s", "tpot_p99_s", "goodput", "delivered_fraction")


@dataclass(frozen=True)
class Estimate:
    """Steady-state estimates of one run and their confidence-interval half-widths (same units)."""

    values: dict[str, float]
    half_widths: dict[str, float]
    requests: int
    section_lifetimes: float = math.inf  # the shortest section's span over the mean request lifetime (E2E)

    def rel(self, key: str) -> float:
        v = self.values[key]
        return self.half_widths[key] / abs(v) if v else (0.0 if self.half_widths[key] == 0 else math.inf)


def _p99(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, 99)) if len(x) else math.nan


def estimate(requests: pd.DataFrame, sections: int = 10, confidence: float = 0.95) -> Estimate:
    """Steady-state p99 TTFT and TPOT, goodput and delivered fraction of a run, with sectioning CIs.

    Judged: the requests that arrived in the second half of the run (by arrival order), cut into ``sections``
    contiguous groups. Delivered fraction of a span: output tokens the fleet generated in it (each request's
    first token at its TTFT, the rest spread evenly to its finish) over those the requests arriving in it asked
    for. A fleet that keeps up delivers what it is offered (1); one that does not, its capacity over the load.
    As a ratio of two counts that share the run's randomness it is far less noisy than tokens per second, whose
    noise is mostly the workload's own (a ratio estimator, Law 2015, Sec. 9.5.1)."""
    order = requests.sort_values("arrival_s", kind="stable")
    late = order.iloc[len(order) // 2:]
    arrival = late["arrival_s"].to_numpy(float)
    t0, t1 = float(arrival[0]), float(arrival[-1])
    first, finish = requests["first_token_s"].to_numpy(float), requests["finish_s"].to_numpy(float)
    rest = requests["output_tokens"].to_numpy(float) - 1.0
    late_tokens = late["output_tokens"].to_numpy(float)
    groups = np.array_split(np.arange(len(late)), sections)
    edges = [t0] + [float(arrival[g[-1]]) for g in groups]
    span = np.maximum(finish - first, 1e-12)

    def delivered(a: float, b: float) -> float:
        offered = float(late_tokens[(arrival >= a) & (arrival < b)].sum())
        overlap = np.clip(np.minimum(finish, b) - np.maximum(first, a), 0.0, None) / span
        made = float(((first >= a) & (first < b)).sum() + np.dot(rest, np.where(finish > first, overlap, 0.0)))
        return made / offered if offered > 0 else math.nan

    cols = {"ttft_p99_s": late["ttft_s"].to_numpy(float), "tpot_p99_s": late["tpot_s"].to_numpy(float),
            "goodput": late["meets_slo"].to_numpy(float)}
    whole = {k: (_p99(v) if k != "goodput" else float(v.mean())) for k, v in cols.items()}
    whole["delivered_fraction"] = delivered(t0, t1)
    parts: dict[str, list[float]] = {k: [] for k in QUANTITIES}
    for i, g in enumerate(groups):
        for k, v in cols.items():
            parts[k].append(_p99(v[g]) if k != "goodput" else float(v[g].mean()))
        parts["delivered_fraction"].append(delivered(edges[i], edges[i + 1]))
    from scipy import stats  # imported here: scipy.stats takes a while, and only a confirming run needs it

    t = float(stats.t.ppf(0.5 + confidence / 2, sections - 1))
    half = {}
    for k, v in parts.items():
        arr = np.asarray(v, float)
        arr = arr[np.isfinite(arr)]
        half[k] = t * float(arr.std(ddof=1)) / math.sqrt(len(arr)) if len(arr) > 1 else math.inf
    e2e = float(np.nanmean(late["e2e_s"].to_numpy(float))) if "e2e_s" in late else 0.0
    shortest = min(b - a for a, b in itertools.pairwise(edges))
    return Estimate(whole, half, len(requests), shortest / e2e if e2e > 0 else math.inf)


def judged_scales(est: Estimate, slo: Any) -> dict[str, float]:
    """The quantities a run must know precisely, each with the scale its precision is relative to: an SLO
    statistic (each p99 with a target, or the goodput where that is the target) to its target, where the
    verdict is made; the delivered fraction (hence the cost per token) to its own estimate."""
    if slo.goodput_min is not None:
        scales = {"goodput": slo.goodput_min}
    else:
        scales = {k: t for k, t in (("ttft_p99_s", slo.ttft_p99_s), ("tpot_p99_s", slo.tpot_p99_s)) if t is not None}
    return {**scales, "delivered_fraction": abs(est.values["delivered_fraction"])}


def clearly_missed(est: Estimate, slo: Any) -> bool:
    """An SLO missed beyond doubt: the whole interval lies on the wrong side of the target."""
    if slo.goodput_min is not None:
        return est.values["goodput"] + est.half_widths["goodput"] < slo.goodput_min
    for key, target in (("ttft_p99_s", slo.ttft_p99_s), ("tpot_p99_s", slo.tpot_p99_s)):
        if target is not None and est.values[key] - est.half_widths[key] > target:
            return True
    return False


def shortfall(est: Estimate, slo: Any, rule: ConfirmRule) -> float:
    """How far a run is from the precision the rule asks, as a factor on the half-widths (<= 1: precise
    enough): the widest judged interval over what the rule allows it, or, where sections are shorter than
    ``rule.section_lifetimes`` request lifetimes, the square root of the factor they are short by (a run that
    long has sections that long, and a half-width falls as the root of the run's length)."""
    widest = max(est.half_widths[k] / (rule.rel_precision * scale) if scale > 0 else math.inf
                 for k, scale in judged_scales(est, slo).items())
    return max(widest, math.sqrt(rule.section_lifetimes / est.section_lifetimes))


def precise(est: Estimate, slo: Any, rule: ConfirmRule) -> bool:
    return shortfall(est, slo, rule) <= 1.0


def run_fleet(model: ModelSpec, row: dict[str, Any], replicas: int, traffic: Any, slo: Any, engine: str,
              perf: Perf, seed: int, rule: ConfirmRule, max_events: float = DEFAULT_MAX_EVENTS) -> dict[str, Any]:
    """Simulate ``replicas`` replicas of a candidate (as a slice) for as long as ``rule`` asks; the fleet's
    steady-state figures, their half-widths, cost per hour and per million output tokens, and the verdict."""
    acc = get_accelerator(row["accelerator"], row["price_usd_per_gpu_hour"])
    tp, pp = int(row["tp"]), int(row["pp"])
    k = min(replicas, rule.slice_replicas)
    plan = engine_plan(engine, model, acc, tp=tp, pp=pp, quantization=row["quantization"],
                       max_batch=int(row["max_batch"]), replicas=k, kv_cache_dtype=row.get("kv_cache_dtype"))
    cfg = ServeConfig(engine=engine, slo_ttft_s=slo.ttft_p99_s, slo_tpot_s=slo.tpot_p99_s, seed=seed,
                      max_events=max_events, sampling=traffic.sampling)
    rate = traffic.peak_rps * k / replicas
    offered_tokens_s = traffic.peak_rps * traffic.mean_lengths()[1]
    n: int | None = rule.first(traffic.requests)
    total, peak = 0, 0
    while n is not None:
        total += n
        result = simulate(model, plan, acc, perf, build_workload(traffic.workload(rate, seed, n)), cfg)
        peak = max(peak, int(result.timeline["batch_size"].max()))
        est = estimate(result.requests, rule.sections, rule.confidence)
        missed = clearly_missed(est, slo)
        if missed or precise(est, slo, rule) or traffic.requests is not None:
            break
        n = rule.next(n, shortfall(est, slo, rule))
    v, hw = est.values, est.half_widths
    cost_h = replicas * tp * pp * acc.price_usd_per_hour
    tokens_s = offered_tokens_s * min(v["delivered_fraction"], 1.0)  # a finite run may deliver a hair over 1
    cost_m = cost_h / 3600 / tokens_s * 1e6 if tokens_s > 0 else math.inf
    return {"replicas": replicas, "gpus": replicas * tp * pp, "simulated_replicas": k, "requests": est.requests,
            "requests_all_runs": total, "peak_batch": peak,
            "ttft_p99_s": v["ttft_p99_s"], "tpot_p99_s": v["tpot_p99_s"], "goodput": v["goodput"],
            "output_tokens_per_s": tokens_s, "cost_per_hour_usd": cost_h, "cost_per_million_output_tokens": cost_m,
            "ttft_p99_halfwidth_s": hw["ttft_p99_s"], "tpot_p99_halfwidth_s": hw["tpot_p99_s"],
            "goodput_halfwidth": hw["goodput"], "cost_per_million_halfwidth": cost_m * est.rel("delivered_fraction"),
            "precise": precise(est, slo, rule), "slo_met": not missed and slo.met(v)}


def size_fleet(model: ModelSpec, row: dict[str, Any], traffic: Any, slo: Any, engine: str, perf: Perf,
               limit: int | None, seed: int, rule: ConfirmRule, ceiling: float = math.inf,
               shared: dict[int, dict[str, Any]] | None = None,
               max_events: float = DEFAULT_MAX_EVENTS) -> list[dict[str, Any]]:
    """Every run that sized one candidate: from the analytic bound's replica count up (x1.25 per miss) until the
    SLOs hold, then bisection down to the smallest count that holds them (within ``rule.size_tolerance``). The
    climb ends at the GPU ``limit`` of the accelerator kind, and where the fleet would cost ``ceiling`` or more
    per hour (a cheaper fleet is already confirmed: this one cannot beat it).

    ``shared``: runs of candidates that differ from this one only in the batch limit, by replica count. A run
    whose batch never reached its limit (nor this candidate's) is the run this candidate would make: same
    workload, same seed, no decision the limit could change."""
    per = int(row["tp"]) * int(row["pp"])
    price = float(row["price_usd_per_gpu_hour"])

    def run(r: int) -> dict[str, Any]:
        hit = (shared or {}).get(r)
        if hit is not None and hit["peak_batch"] < min(hit["max_batch"], int(row["max_batch"])):
            return {k: v for k, v in hit.items() if k != "max_batch"}
        out = run_fleet(model, row, r, traffic, slo, engine, perf, seed, rule, max_events)
        if shared is not None:
            shared[r] = {**out, "max_batch": int(row["max_batch"])}
        return out

    runs: list[dict[str, Any]] = []
    miss, met, r = None, None, max(int(row["replicas_min"]), 1)
    for _ in range(rule.grow_rounds):
        if (limit is not None and r * per > limit) or r * per * price >= ceiling:
            break
        runs.append(run(r))
        if runs[-1]["slo_met"]:
            met = r
            break
        miss, r = r, max(r + 1, math.ceil(r * 1.25))
    while met is not None and miss is not None and met - miss > max(1.0, rule.size_tolerance * met):
        mid = (miss + met) // 2
        runs.append(run(mid))
        miss, met = (miss, mid) if runs[-1]["slo_met"] else (mid, met)
    return runs


def size_family(model: ModelSpec, rows: list[dict[str, Any]], traffic: Any, slo: Any, engine: str,
                perf: Perf, limit: int | None, seed: int, rule: ConfirmRule, ceiling: float = math.inf,
                max_events: float = DEFAULT_MAX_EVENTS) -> list[list[dict[str, Any]]]:
    """:func:`size_fleet` for candidates that differ only in the batch limit, in order, sharing their runs."""
    shared: dict[int, dict[str, Any]] = {}
    return [size_fleet(model, row, traffic, slo, engine, perf, limit, seed, rule, ceiling, shared, max_events)
            for row in rows]


__all__ = ["QUANTITIES", "ConfirmRule", "Estimate", "clearly_missed", "estimate", "judged_scales", "precise",
           "run_fleet", "shortfall", "size_family", "size_fleet"]
