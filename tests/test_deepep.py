"""Issue 12 item 3: the flex (DeepEP / HybridEP) dispatch priced against DeepEP's own published microbenchmarks, and
the ranks a token reaches under NeMo AutoModel's fake balanced gate."""

from types import SimpleNamespace

import numpy as np
import pytest

from capsim.analytic.moe import consecutive_holders
from capsim.analytic.training import comms, flex, get_framework
from capsim.analytic.training.collectives import placement
from capsim.analytic.training.framework import get_release
from capsim.analytic.training.release import FlexBackend, MoeDispatcher
from capsim.calibration import perf_for, published_ep

DATASHEET = perf_for("H100-SXM5-80GB", "datasheet")
FIT = [p for p in published_ep.POINTS if p.use == "fit"]
HELD_OUT = [p for p in published_ep.POINTS if p.use == "holdout"]
# Held-out points capsim misses by more than 15% (datasheet calibration), each with its reason.
_FP8_ROWS = ("FP8 dispatch at hidden 2048 (2 KB rows): the quantized rows' per-row cost (the report's 3.3: 'DeepEP's "
             "FP8 dispatch collapses hardest') is above the BF16 rows' the costs are fit to; training sends BF16 rows")
HELD_OUT_MISSES = {
    ("deepep", "dispatch", "H100", 8, 2048, "fp8"): "+27%: " + _FP8_ROWS,
    ("deepep", "dispatch", "H100", 16, 2048, "fp8"): "+16%: " + _FP8_ROWS,
    ("hybridep", "dispatch", "H100", 8, 2048, "fp8"): "+23%: " + _FP8_ROWS,
    ("hybridep", "dispatch", "H100", 16, 2048, "fp8"): "+18%: " + _FP8_ROWS,
    ("deepep", "combine", "H800", 32, 7168, "bf16"): "-19%: at 4 nodes DeepEP's H800 combine (57 GB/s) beats its EP 16 "
                                                     "one (43 GB/s); the H100 costs, fit at 2 nodes, carry no such gain",
}


def _key(p: published_ep.EpPoint) -> tuple:
    return (p.backend.value, p.direction, p.gpu, p.ep, p.hidden, "bf16" if p.row_bytes == 2.0 else "fp8")


def test_kernel_costs_are_the_fit_of_the_published_points():
    fitted = published_ep.fit_kernel_costs(DATASHEET)
    assert set(fitted) == set(flex.KERNEL_COSTS)
    for key, cost in fitted.items():
        assert flex.KERNEL_COSTS[key].row_s == pytest.approx(cost.row_s, rel=1e-3), key
        assert flex.KERNEL_COSTS[key].rate_over_link == pytest.approx(cost.rate_over_link, rel=1e-3), key


@pytest.mark.parametrize("point", FIT, ids=lambda p: "-".join(map(str, _key(p))))
def test_flex_pricing_reproduces_the_fit_points(point):
    """The dispatch code path prices each point it was fit to at its published rate (two points, two parameters per
    backend, direction and tier: this checks that pricing and fit read the same legs and costs)."""
    assert published_ep.predicted_gb_per_s(point, DATASHEET) == pytest.approx(point.gb_per_s, rel=1e-3)


@pytest.mark.parametrize("point", [pytest.param(p, marks=[pytest.mark.xfail(strict=True, reason=why)])
                                   if (why := HELD_OUT_MISSES.get(_key(p))) else p for p in HELD_OUT],
                         ids=lambda p: "-".join(map(str, _key(p))))
def test_held_out_kernel_points_within_15_percent(point):
    """Points the costs were not fit to: FP8 dispatch on the same H100s, and DeepEP's own H800 table (FP8 dispatch,
    BF16 combine; NVLink at the H800's 400 GB/s)."""
    assert published_ep.predicted_gb_per_s(point, DATASHEET) == pytest.approx(point.gb_per_s, rel=0.15)


def test_overlapped_tiers_not_their_sum_at_four_nodes():
    """DeepEP's RDMA sends and NVLink forwarding run in one kernel: the slower tier bounds it. Adding the two tiers'
    times would price DeepEP's H800 EP 32 dispatch (58 GB/s) about a third under; the slower tier is within 15%."""
    point = next(p for p in HELD_OUT if _key(p) == ("deepep", "dispatch", "H800", 32, 7168, "fp8"))
    perf = published_ep.bench_perf("H800", DATASHEET)
    fw = get_framework("megatron-core").with_(moe_dispatcher=MoeDispatcher.FLEX)
    where = placement(np.array([32]), np.array([1]), 8)
    nbytes = np.array([4096 * 8 * 7168 * point.row_bytes])
    legs = flex.flex_legs(perf, SimpleNamespace(experts=256, top_k=8), nbytes, np.array([4096.0]), where, fw)
    costs = [flex.KERNEL_COSTS[(FlexBackend.DEEPEP, "dispatch", tier)] for tier in legs]
    times = [link[0] / c.rate_over_link + rows[0] * c.row_s for (link, rows), c in zip(legs.values(), costs,
                                                                                          strict=True)]
    rate = published_ep.measured_s(point) * point.gb_per_s
    assert rate / max(times) == pytest.approx(58.0, rel=0.15)
    assert rate / sum(times) < 0.75 * 58.0


def test_consecutive_experts_reach_the_ranks_they_span():
    assert consecutive_holders(128, 8, np.array([1, 8, 16]))[...].tolist() == [1.0, 1.0, 1.0]  # Qwen3-30B-A3B
    assert consecutive_holders(256, 8, np.array([64, 8])).tolist() == [2.0, 1.0]  # DeepSeek-V3: 2 ranks, 1 node
    # 8 experts over 4 ranks of 2, k = 3: starts 0, 3, 6, 1, 4, 7, 2, 5 each span two ranks
    assert consecutive_holders(8, 3, np.array([4])).tolist() == [2.0]
    assert consecutive_holders(8, 2, np.array([4, 8])).tolist() == [1.0, 2.0]
    # random experts reach far more ranks: the fake gate's dispatch moves ~6x fewer rows at EP 16
    assert comms.holders(128, 8, np.array([16]))[0] > 6.0


def test_fake_balanced_gate_is_a_flag_of_the_run():
    release = get_release("nemo-automodel-2026-07")
    assert not release.framework.moe_consecutive_experts  # the learned Gate by default
    fw, _ = release.configure("--fake-balanced-gate=true --dispatcher=deepep")
    assert fw.moe_consecutive_experts and fw.moe_dispatcher is MoeDispatcher.FLEX
    for name in ("nemo-automodel-2025-10", "nemo-automodel-2026-04"):
        assert get_release(name).configure("--fake-balanced-gate=true")[0].moe_consecutive_experts
    assert fw.moe_flex_backend is FlexBackend.DEEPEP
    hybrid, _ = release.configure("--dispatcher=hybridep")
    assert hybrid.moe_dispatcher is MoeDispatcher.FLEX and hybrid.moe_flex_backend is FlexBackend.HYBRIDEP
    assert release.configure("--dispatcher=torch")[0].moe_dispatcher is MoeDispatcher.ALLGATHER


def test_megatron_flex_backend_is_a_flag_from_core_0_16():
    bridge = get_release("megatron-bridge-26.04")
    assert bridge.framework.moe_flex_backend is FlexBackend.DEEPEP  # TransformerConfig's default
    fw, _ = bridge.configure("--moe-token-dispatcher-type=flex --moe-flex-dispatcher-backend=hybridep")
    assert fw.moe_dispatcher is MoeDispatcher.FLEX and fw.moe_flex_backend is FlexBackend.HYBRIDEP
    with pytest.raises(Exception, match="moe-flex-dispatcher-backend"):
        get_release("megatron-bridge-25.09").configure("--moe-flex-dispatcher-backend=hybridep")


def test_hybridep_prices_qwen3_small_rows_slower_to_combine_across_nodes():
    """HybridEP's 8-SM combine moves hidden-2048 rows at 33.5 GB/s across nodes against DeepEP's 59.1 (the report's
    3.3): the same code path prices the two backends apart by their own costs."""
    perf, model = DATASHEET, SimpleNamespace(experts=128, top_k=8)
    where, tokens = placement(np.array([16]), np.array([1]), 8), np.array([4096.0])
    nbytes = np.array([4096 * 8 * 2048 * 2.0])
    fw = get_framework("megatron-core").with_(moe_dispatcher=MoeDispatcher.FLEX)
    deepep = comms._dispatch_s(perf, model, nbytes, where, fw, tokens, "combine")[0]
    hybrid = comms._dispatch_s(perf, model, nbytes, where, fw.with_(moe_flex_backend=FlexBackend.HYBRIDEP), tokens,
                               "combine")[0]
    assert hybrid / deepep == pytest.approx(59.1 / 33.5, rel=1e-3)


def test_the_fake_gate_sends_each_qwen3_token_to_one_rank():
    """Qwen3-30B-A3B over EP 16 on two nodes: with the fake gate a token's 8 experts are one rank's 8, so DeepEP
    sends it over RDMA only when that rank is on the other node (half the tokens), not to ~1 other node each."""
    perf = perf_for("H100-SXM5-80GB", "profile")
    fw = get_framework("nemo-automodel-2026-07")
    model = SimpleNamespace(experts=128, top_k=8)
    where = placement(np.array([16]), np.array([1]), 8)
    nbytes = np.array([8192 * 8 * 2048 * 2.0])
    tokens = np.array([8192.0])
    spread = comms._dispatch_s(perf, model, nbytes, where, fw, tokens)[0]
    gate = comms._dispatch_s(perf, model, nbytes, where, fw.with_(moe_consecutive_experts=True), tokens)[0]
    remote = 8192 * 2048 * 2.0 / 2  # half the tokens leave the node, once each
    cost = flex.KERNEL_COSTS[(fw.moe_flex_backend, "dispatch", "inter")]
    rdma = perf.collective_s("all_to_all", remote * 2, 2, "inter") / cost.rate_over_link + 8192 / 2 * cost.row_s
    assert gate == pytest.approx(rdma, rel=1e-6)
    assert gate < 0.6 * spread


# The AutoModel report's DeepEP BF16 points on the profile calibration (its NVLink all-to-all measured, not the
# datasheet's the costs were fit on): the same costs keep them within 15%.
@pytest.mark.parametrize("point", [p for p in FIT if p.backend is FlexBackend.DEEPEP],
                         ids=lambda p: "-".join(map(str, _key(p))))
def test_flex_dispatch_matches_deepep_on_h100_profile(point):
    perf = perf_for("H100-SXM5-80GB", "profile")
    assert published_ep.predicted_gb_per_s(point, perf) == pytest.approx(point.gb_per_s, rel=0.15)
