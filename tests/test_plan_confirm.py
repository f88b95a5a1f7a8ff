"""The confirmation rule every planner shares: sectioning intervals, when a run stops, and the search around it."""

import math

import numpy as np
import pandas as pd
import pytest

from capsim import SpecError, get_model
from capsim.calibration import perf_for, perfs_for
from capsim.plan.confirm import ConfirmRule, Estimate, clearly_missed, estimate, precise, shortfall
from capsim.plan.scaling_study import serving_scaling
from capsim.plan.serving import Slo, Traffic, plan_serving
from capsim.sim.serving.workload import Lengths

MODEL = get_model("llama-3-8b")
LENGTHS = Lengths.fixed(512, 128)
KINDS = perfs_for(["h100", "l4", "a100"])  # each kind's calibration by the one rule
H100 = perf_for("h100")


def _requests(n: int, seed: int = 0, stretch: float = 0.0) -> pd.DataFrame:
    """Independent requests at 10/s: exponential TTFT (p99 = ln 100 s), 100 output tokens each; ``stretch`` > 0
    makes finishing lag arrivals more and more (a fleet falling behind)."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(0.1, n))
    ttft = rng.exponential(1.0, n)
    first = arrival + ttft + stretch * arrival
    return pd.DataFrame({"arrival_s": arrival, "ttft_s": ttft, "tpot_s": np.full(n, 0.01), "first_token_s": first,
                         "finish_s": first + 1.0 + stretch * arrival, "output_tokens": np.full(n, 100),
                         "meets_slo": ttft <= 2.0})


def test_sectioning_interval_covers_the_true_p99_and_narrows_with_length():
    short, long = estimate(_requests(4000)), estimate(_requests(64000))
    true_p99 = math.log(100.0)
    for est in (short, long):
        assert abs(est.values["ttft_p99_s"] - true_p99) <= est.half_widths["ttft_p99_s"]
    # 16x the requests: about a quarter of the half-width (1/sqrt(16)), within the noise of 10 sections
    ratio = long.half_widths["ttft_p99_s"] / short.half_widths["ttft_p99_s"]
    assert 0.1 < ratio < 0.5
    assert long.values["goodput"] == pytest.approx(1 - math.exp(-2.0), abs=0.01)


def test_delivered_fraction_is_one_when_the_fleet_keeps_up_and_falls_when_it_lags():
    keeps_up = estimate(_requests(8000)).values["delivered_fraction"]
    lags = estimate(_requests(8000, stretch=0.3)).values["delivered_fraction"]
    assert keeps_up == pytest.approx(1.0, abs=0.02)
    assert lags < 0.85


def test_a_run_stops_when_precise_or_when_a_target_is_missed_beyond_doubt():
    rule = ConfirmRule(rel_precision=0.05)
    slo = Slo(ttft_p99_s=1.0)
    est = Estimate({"ttft_p99_s": 0.8, "tpot_p99_s": 0.01, "goodput": 1.0, "delivered_fraction": 1.0},
                   {"ttft_p99_s": 0.04, "tpot_p99_s": 0.0, "goodput": 0.0, "delivered_fraction": 0.01}, 4000)
    assert precise(est, slo, rule) and not clearly_missed(est, slo)  # +-40 ms is 4% of the 1 s target
    wide = Estimate({**est.values}, {**est.half_widths, "ttft_p99_s": 0.2}, 4000)
    assert not precise(wide, slo, rule) and not clearly_missed(wide, slo)
    over = Estimate({**est.values, "ttft_p99_s": 1.5}, {**est.half_widths, "ttft_p99_s": 0.2}, 4000)
    assert clearly_missed(over, slo)
    costly = Estimate({**est.values}, {**est.half_widths, "delivered_fraction": 0.08}, 4000)
    assert not precise(costly, slo, rule)  # the cost per token is not yet known within 5%
    brief = Estimate(est.values, est.half_widths, 4000, section_lifetimes=0.75)
    assert not precise(brief, slo, rule)  # sections of 0.75 request lifetimes are correlated: run 4x longer
    assert shortfall(brief, slo, rule) == pytest.approx(2.0)


def test_rule_lengths_and_bad_values():
    rule = ConfirmRule(max_requests=64000)
    assert rule.first() == 4000 and rule.first(fixed=600) == 600
    assert rule.next(4000, 1.2) == 8000  # at least doubled
    assert rule.next(4000, 1.8) == 15000  # 4000 x 1.8^2 x 1.1: what the variance says is needed
    assert rule.next(4000, 2.5) == 28000 and rule.next(4000, 3.0) == 64000  # 39,600 is over half the cap: the cap
    assert rule.next(64000, 1.5) is None
    assert ConfirmRule().next(4000, 1.2) == ConfirmRule().max_requests == 16000
    with pytest.raises(SpecError, match="requests"):
        rule.first(fixed=5)
    with pytest.raises(SpecError, match="rel_precision"):
        ConfirmRule(rel_precision=0.0)


@pytest.fixture(scope="module")
def small_plan():
    return plan_serving(MODEL, Traffic(12.0, LENGTHS, requests=1000), Slo(ttft_p99_s=1.0, tpot_p99_s=0.05),
                        ["h100", "l4", "a100"], KINDS, quantizations=("none", "fp8"), workers=1)


def test_branch_and_bound_leaves_no_candidate_that_could_be_cheaper(small_plan):
    t = small_plan.table
    best = small_plan.best["cost_per_hour_usd"]
    unsized = t[t["viable"] & ~t["sized"]]
    assert (unsized["cost_per_hour_min"] >= best).all()
    assert (t.loc[t["confirmed"], "cost_per_hour_usd"] >= t.loc[t["confirmed"], "cost_per_hour_min"] - 1e-9).all()
    # every confirmed fleet is the smallest that met the SLOs: one replica fewer was simulated and missed,
    # or is below the analytic bound
    sims = small_plan.simulated
    for _, r in t[t["confirmed"]].iterrows():
        same = sims[(sims["accelerator"] == r["accelerator"]) & (sims["tp"] == r["tp"])
                    & (sims["quantization"] == r["quantization"]) & (sims["max_batch"] == r["max_batch"])]
        fewer = same[same["replicas"] == r["replicas"] - 1]
        assert r["replicas"] == r["replicas_min"] or (len(fewer) and not fewer["slo_met"].any())


def test_the_answer_does_not_depend_on_the_worker_count(small_plan):
    pooled = plan_serving(MODEL, Traffic(12.0, LENGTHS, requests=1000), Slo(ttft_p99_s=1.0, tpot_p99_s=0.05),
                          ["h100", "l4", "a100"], KINDS, quantizations=("none", "fp8"), workers=2)
    pd.testing.assert_frame_equal(pooled.table, small_plan.table)


def test_a_plan_for_its_best_alone_skips_only_kinds_that_cannot_be_the_best(small_plan):
    """front=False (the scaling study) sizes the cheapest candidate of another kind only where its bound is not
    above the best confirmed cost: the best, feasibility and reason are those of the full plan, with fewer runs."""
    lean = plan_serving(MODEL, Traffic(12.0, LENGTHS, requests=1000), Slo(ttft_p99_s=1.0, tpot_p99_s=0.05),
                        ["h100", "l4", "a100"], KINDS, quantizations=("none", "fp8"), workers=1, front=False)
    full_best, lean_best = small_plan.best, lean.best
    assert lean_best.keys() == full_best.keys()
    for key, value in full_best.items():
        assert lean_best[key] == value or (value != value and lean_best[key] != lean_best[key]), key
    assert (lean.feasible, lean.reason) == (small_plan.feasible, small_plan.reason)
    assert len(lean.simulated) < len(small_plan.simulated)  # it did skip work here
    t = small_plan.table.set_index(["accelerator", "tp", "pp", "quantization", "max_batch"])
    skipped = set(t.index[t["sized"]]) - set(lean.table.set_index(list(t.index.names)).index[lean.table["sized"]])
    assert skipped and all(t.loc[k, "cost_per_hour_min"] > full_best["cost_per_hour_usd"] for k in skipped)


def test_scaling_study_picks_the_planners_fleet_at_each_rate(small_plan):
    df = serving_scaling(MODEL, Traffic(1.0, LENGTHS), Slo(ttft_p99_s=1.0, tpot_p99_s=0.05), ["h100", "l4", "a100"],
                         rates=[12.0], quantizations=("none", "fp8"), requests=1000, workers=1, perfs=KINDS)
    row, best = df.iloc[0], small_plan.best
    for key in ("accelerator", "tp", "pp", "quantization", "max_batch", "replicas", "cost_per_hour_usd"):
        assert row[key] == best[key], key


def test_capacity_bounds_shared_across_rates_give_the_same_plans():
    """The scaling study computes each candidate's capacity bound once for all its rates (it does not depend on
    the rate): every bound table and plan is the one each rate gets alone, and the bound ran once per candidate."""
    from capsim.plan import serving_bound

    slo, calls = Slo(ttft_p99_s=1.0, tpot_p99_s=0.05), []
    counted = serving_bound.capacity_bound

    def counting(*args, **kwargs):
        calls.append(args)
        return counted(*args, **kwargs)

    memo: dict = {}
    alone, shared, counts = [], [], []
    for rate in (3.0, 100.0):
        traffic = Traffic(rate, LENGTHS, requests=600)
        alone.append(plan_serving(MODEL, traffic, slo, ["h100"], KINDS, quantizations=("none",), workers=1))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(serving_bound, "capacity_bound", counting)
            shared.append(plan_serving(MODEL, traffic, slo, ["h100"], KINDS, quantizations=("none",),
                                       workers=1, memo=memo))
        counts.append((len(calls), len(memo)))
    for a, s in zip(alone, shared, strict=True):
        pd.testing.assert_frame_equal(a.table, s.table)
        pd.testing.assert_frame_equal(a.simulated, s.simulated)
    assert alone[0].best["cost_per_hour_usd"] < alone[1].best["cost_per_hour_usd"]  # different fleets per rate
    assert counts[0][0] > 0 and counts[1] == counts[0]  # every bound at the first rate, none again at the second
    assert counts[0][1] == len(alone[0].table)  # one memo entry per candidate
    calls.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serving_bound, "capacity_bound", counting)
        df = serving_scaling(MODEL, Traffic(1.0, LENGTHS), slo, ["h100"], rates=[3.0, 100.0],
                             quantizations=("none",), requests=600, workers=1, perfs=KINDS)
    assert len(calls) == counts[0][0]  # the study's two rates too: one bound per candidate
    assert list(df["replicas"]) == [p.best["replicas"] for p in alone]
    assert list(df["cost_per_hour_usd"]) == [p.best["cost_per_hour_usd"] for p in alone]


def test_candidates_that_differ_in_the_batch_limit_share_only_runs_the_limit_cannot_change():
    from capsim.plan.confirm import size_family, size_fleet
    from capsim.plan.serving import bound_table, candidates
    from capsim.specs.catalog import get_accelerator
    from capsim.specs.plans import Quantization

    traffic, slo, rule = Traffic(3.0, LENGTHS, requests=600), Slo(ttft_p99_s=1.0, tpot_p99_s=0.05), ConfirmRule()
    bounds = bound_table(MODEL, candidates(MODEL, [get_accelerator("h100")], (Quantization.NONE,), tps=(1,), pps=(1,)),
                         traffic, slo, KINDS)
    rows = [r for _, r in bounds.sort_values("max_batch").iterrows() if r["viable"]]
    rows = [r.to_dict() for r in rows]
    alone = [size_fleet(MODEL, r, traffic, slo, "vllm", H100, None, 0, rule) for r in rows]
    together = size_family(MODEL, rows, traffic, slo, "vllm", H100, None, 0, rule)
    assert together == alone  # shared or simulated, every candidate gets the runs it would make alone
    assert all(run["peak_batch"] < rows[0]["max_batch"] for run in alone[0])  # so the later ones were shared
    # a limit the batch reaches is not shared: a tight limit gives other runs
    tight = {**rows[0], "max_batch": 2}
    own = size_fleet(MODEL, tight, traffic, slo, "vllm", H100, None, 0, rule)
    assert own != alone[-1]
    assert size_family(MODEL, [rows[-1], tight], traffic, slo, "vllm", H100, None, 0, rule)[1] == own
