"""Training step time: each cost term against its formula, invariants of the whole, vectorised = scalar."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from capsim import Layouts, Precision, TrainPlan, get_accelerator, get_model, load_calibration
from capsim.analytic.training import BREAKDOWN, FrameworkName, comms, get_framework, stages, step_time
from capsim.analytic.training.collectives import collective_s, placement
from capsim.analytic.training.compute import micro_batch_times
from capsim.errors import SpecError
from capsim.specs.hardware import Cluster

A100 = get_accelerator("a100")
PERF = load_calibration("A100-SXM4-80GB").perf()
FP16 = Precision.preset("fp16")
GPT22 = get_model("gpt-22b")
GPT175 = get_model("gpt-175b")


def one(model, **kw):
    return Layouts.from_plans(model, [TrainPlan(precision=FP16, **kw)])


def test_hierarchical_all_reduce_is_rs_inter_ag():
    s = 1e9
    inside = collective_s(PERF, "all_reduce", s, placement(8, 1, 8))
    assert inside == pytest.approx(PERF.collective_s("all_reduce", s, 8, "intra"))
    # 16 ranks, 8 per node: reduce-scatter in the node, all-reduce of 1/8 across 2 nodes, all-gather in the node.
    two_nodes = collective_s(PERF, "all_reduce", s, placement(16, 1, 8))
    expect = (PERF.collective_s("reduce_scatter", s, 8, "intra") + PERF.collective_s("all_reduce", s / 8, 2, "inter")
              + PERF.collective_s("all_gather", s, 8, "intra"))
    assert two_nodes == pytest.approx(expect)
    # One rank per node (stride 8 = a DP group of tp=8 replicas): the whole buffer crosses the network.
    flat = collective_s(PERF, "all_reduce", s, placement(4, 8, 8))
    assert flat == pytest.approx(PERF.collective_s("all_reduce", s, 4, "inter"))
    assert inside < two_nodes < flat * 4


def test_placement_follows_megatron_rank_order():
    where = placement(np.array([32, 32, 8]), np.array([1, 4, 8]), 8)
    assert where.per_node.tolist() == [8, 2, 1]
    assert where.nodes.tolist() == [4, 16, 8]


@pytest.mark.parametrize("recompute, passes", [("none", 4), ("full", 6)])
def test_tp_all_reduces_per_layer(recompute, passes):
    """Megatron 2021 (no async TP): 2 all-reduces of b*s*h per layer forward, 2 backward, 2 more when recomputing."""
    lay = one(GPT175, tp=8, micro_batch=2, global_batch=2, recompute=recompute)
    t = micro_batch_times(GPT175, lay, FP16, PERF, get_framework("megatron-lm-2021").attention, True)
    fwd, bwd = comms.tp_layer_s(PERF, GPT175, lay, FP16, 8, t, get_framework("megatron-lm-2021"))
    nbytes = 2 * 2048 * 12288 * 2.0
    ar = PERF.collective_s("all_reduce", nbytes, 8, "intra")
    assert fwd[0] == pytest.approx(2 * ar)
    assert fwd[0] + bwd[0] == pytest.approx(passes * ar)


def test_tp_sequence_parallel_and_async_overlap():
    lay = one(GPT175, tp=8, micro_batch=1, global_batch=1, sequence_parallel=True, recompute="selective")
    t = micro_batch_times(GPT175, lay, FP16, PERF, get_framework("megatron-lm-2022").attention, True)
    nbytes = 2048 * 12288 * 2.0
    ag, rs = PERF.collective_s("all_gather", nbytes, 8, "intra"), PERF.collective_s("reduce_scatter", nbytes, 8, "intra")
    fwd, bwd = comms.tp_layer_s(PERF, GPT175, lay, FP16, 8, t, get_framework("megatron-lm-2021"))
    assert fwd[0] == pytest.approx(2 * (ag + rs))
    assert bwd[0] == pytest.approx(4 * ag + 2 * rs)  # conjugates + the re-gather of the saved sharded input
    _, hidden = comms.tp_layer_s(PERF, GPT175, lay, FP16, 8, t, get_framework("megatron-lm-2022"))
    # Async: the column-parallel reduce-scatters and re-gathers hide behind their GEMMs (large here).
    assert hidden[0] == pytest.approx(2 * ag)


def test_pipeline_bubble_formula_uniform():
    lay = Layouts.build(GPT22, pp=np.array([4, 8]), v=np.array([2, 3]), micro_batch=1, global_batch=np.array([16, 24]),
                        schedule=2)
    assert lay.first_stage_layers.tolist() == [12, 6] and lay.last_stage_layers.tolist() == [12, 6]
    w = 0.25
    costs = {k: {c: np.array([0.0, 0.0]) for c in stages.PER_MICRO_BATCH} for k in stages.KINDS}
    for k in stages.KINDS:
        costs[k]["compute_s"] = np.array([w, w])
    costs["_hop"] = {"hop_s": np.zeros(2)}
    out = stages.pipeline(costs, lay, get_framework("megatron-lm-2021"))
    p, v, m = lay.pp, lay.v, lay.micro_batches
    assert out["bubble_s"] / out["compute_s"] == pytest.approx((p - 1) / (v * m))


def test_dp_exposed_part_and_hidden_part():
    model = get_model("gpt-1.7b")
    plan = TrainPlan(dp=32, micro_batch=4, global_batch=512, recompute="full", precision=FP16)
    cluster = Cluster(A100, 32)
    no_overlap = step_time(model, plan, cluster, PERF, framework="megatron-lm-2021")
    assert no_overlap.feasible
    assert no_overlap.dp_comm_s == pytest.approx(no_overlap.dp_total_s) and no_overlap.dp_hidden_s == 0
    overlap = step_time(model, plan, cluster, PERF, framework=get_framework("megatron-lm-2021", "--DDP-impl=torch"))
    assert overlap.feasible
    assert overlap.dp_total_s == pytest.approx(no_overlap.dp_total_s)
    # Hidden behind the last micro-batch's backward, all but the last bucket (one layer of 24).
    assert overlap.dp_comm_s == pytest.approx(overlap.dp_total_s / 24)
    assert overlap.dp_hidden_s == pytest.approx(overlap.dp_total_s * 23 / 24)
    assert overlap.step_s < no_overlap.step_s


def test_dp_reduce_bytes_zero_and_sharded():
    lay = Layouts.build(GPT22, dp=np.array([8, 8]), tp=8, zero_stage=np.array([0, 1]), global_batch=8)
    params = np.array([2e9, 2e9])
    red = comms.grad_reduce_s(PERF, params, np.zeros(2), lay, FP16, 8)
    where = placement(8, 8, 8)
    assert red[0] == pytest.approx(float(collective_s(PERF, "all_reduce", 8e9, where)))
    assert red[1] == pytest.approx(float(collective_s(PERF, "reduce_scatter", 8e9, where)))


def test_breakdown_adds_up_and_names_calibration():
    r = step_time(GPT175, TrainPlan(tp=8, pp=8, pp_interleave=3, global_batch=64, recompute="full", precision=FP16),
                  Cluster(A100, 64), PERF, framework="megatron-lm-2022", train_tokens=1e9)
    assert sum(r.breakdown.values()) == pytest.approx(r.step_s)
    assert r.calibration == "A100-SXM4-80GB" and r.framework == "megatron-lm-2022"
    assert isinstance(r.step_s, float) and r.feasible is True and r.reason == ""
    assert r.tokens_per_s == pytest.approx(64 * 2048 / r.step_s)
    assert r.train_energy_j == pytest.approx(1e9 / r.tokens_per_s * 64 * 400.0)
    assert r.train_cost_usd == pytest.approx(1e9 / r.tokens_per_s / 3600 * 64 * A100.price_usd_per_hour)
    assert r.hfu > r.mfu > 0.3  # full recomputation counts in hardware FLOPs only
    d = r.to_dict()
    assert d["breakdown"]["bubble_s"] > 0 and d["bottleneck_stage"] == "last"


def test_vectorised_equals_scalar():
    plans = [TrainPlan(tp=8, pp=1, dp=8, micro_batch=2, global_batch=64, recompute="full", precision=FP16),
             TrainPlan(tp=4, pp=4, dp=4, pp_interleave=2, micro_batch=1, global_batch=64, sequence_parallel=True,
                       recompute="selective", distributed_optimizer=True, precision=FP16),
             TrainPlan(tp=2, pp=2, dp=16, micro_batch=1, global_batch=64, zero_stage=3, precision=FP16)]
    cluster = Cluster(A100, 64)
    # FSDP1 has neither SP nor Megatron's distributed optimizer: granted here, to cover those axes
    fw = get_framework("fsdp").with_(sequence_parallel=True, distributed_optimizer=True)
    many = step_time(GPT22, Layouts.from_plans(GPT22, plans), cluster, PERF, FP16, fw)
    for i, plan in enumerate(plans):
        single = step_time(GPT22, plan, cluster, PERF, FP16, fw)
        assert single.feasible, single.reason
        for k in (*BREAKDOWN, "step_s", "mfu", "memory_per_gpu_bytes"):
            assert getattr(many, k)[i] == pytest.approx(getattr(single, k)), k


def test_infeasible_layouts_say_why():
    r = step_time(GPT175, Layouts.build(GPT175, tp=8, global_batch=8), Cluster(A100, 8), PERF, FP16)
    assert r.reason[0] == "does not fit in memory" and not r.feasible[0]
    small = get_model("gpt-1.7b")  # 24 heads
    lay = Layouts.build(small, tp=np.array([16, 8, 8]), dp=np.array([1, 1, 2]), global_batch=8)
    r = step_time(small, lay, Cluster(A100, 16), PERF, FP16)
    assert "heads" in r.reason[0] and "GPUs" in r.reason[1] and r.reason[2] == ""
    assert r.feasible.tolist() == [False, False, True]


def test_bad_plan_raises():
    with pytest.raises(SpecError, match="plan.tp"):
        step_time(GPT22, TrainPlan(tp=3), Cluster(A100, 3), PERF)
    with pytest.raises(SpecError, match="framework"):
        step_time(GPT22, TrainPlan(tp=8), Cluster(A100, 8), PERF, framework="deepspeed-9")


def test_context_expert_and_zero3_terms():
    llama = get_model("llama-2-7b")
    lay = one(llama, cp=2, dp=1, tp=1, seq_len=32768, global_batch=1)
    t = micro_batch_times(llama, lay, FP16, PERF)
    fwd, bwd = comms.cp_layer_s(PERF, llama, lay, FP16, 8, t, get_framework("megatron-core"))
    assert fwd[0] == 0.0 and bwd[0] == 0.0  # 16k-token blocks: the KV pass hides behind attention
    short = one(llama, cp=8, dp=1, tp=8, seq_len=4096, global_batch=1)
    t = micro_batch_times(llama, short, FP16, PERF)
    assert sum(comms.cp_layer_s(PERF, llama, short, FP16, 1, t, get_framework("megatron-core")))[0] > 0  # across nodes, tiny blocks: exposed
    mixtral = get_model("mixtral-8x7b")
    moe = one(mixtral, dp=8, ep=8, global_batch=8)
    mt = micro_batch_times(mixtral, moe, FP16, PERF)
    core = get_framework("megatron-core")
    assert comms.ep_layer_s(PERF, mixtral, moe, FP16, 8, mt, core)[0][0] > 0
    assert comms.ep_layer_s(PERF, llama, one(llama), FP16, 8, t, core)[0][0] == 0
    z3 = step_time(llama, TrainPlan(dp=16, zero_stage=3, global_batch=32, precision=FP16), Cluster(A100, 16), PERF,
                   framework="fsdp")
    z1 = step_time(llama, TrainPlan(dp=16, zero_stage=1, global_batch=32, precision=FP16), Cluster(A100, 16), PERF,
                   framework="fsdp")
    assert z3.feasible and z1.feasible  # (ZeRO-0 does not fit: 18 bytes/param of a 7B model)
    assert z3.zero_comm_s > 0 and z1.zero_comm_s == 0
    assert z3.memory_per_gpu_bytes < z1.memory_per_gpu_bytes


def test_faster_network_is_faster():
    plan = TrainPlan(dp=32, tp=1, global_batch=64, precision=FP16)
    model = get_model("gpt-1.7b")
    slow = step_time(model, plan, Cluster(A100, 32), PERF, framework="megatron-lm-2021")
    fast = step_time(model, plan, Cluster(A100, 32, inter_node_bw_bytes_per_s=50e9), PERF, framework="megatron-lm-2021")
    assert slow.feasible and fast.feasible
    assert fast.dp_comm_s < slow.dp_comm_s and fast.compute_s == slow.compute_s
    assert "links" in fast.calibration


def test_uneven_split_uses_the_largest_middle_stage():
    even = TrainPlan(tp=8, pp=8, global_batch=64, recompute="full", precision=FP16)
    uneven = even.with_(layer_split=(10, 12, 13, 13, 13, 13, 12, 10))
    a = step_time(GPT175, even, Cluster(A100, 64), PERF, framework="nemo-25.02")
    b = step_time(GPT175, uneven, Cluster(A100, 64), PERF, framework="nemo-25.02")
    assert a.feasible and b.feasible, (a.reason, b.reason)
    assert b.bottleneck_stage == 1 and b.step_s > a.step_s


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4]),
       st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 2, 3]), st.booleans(), st.sampled_from(list(FrameworkName)))
def test_parts_are_non_negative_and_sum(tp, pp, mb, rec, zero, sp, fw):
    dp = 64 // (tp * pp)
    lay = Layouts.build(GPT22, dp=dp, tp=tp, pp=pp, micro_batch=mb, global_batch=dp * mb * 8, recompute=rec,
                        zero_stage=zero, sp=sp and tp > 1)
    r = step_time(GPT22, lay, Cluster(A100, 64), PERF, FP16, fw)
    assume(bool(r.feasible[0]))  # the invariants are those of a step that can run
    parts = np.array([getattr(r, k)[0] for k in BREAKDOWN])
    assert np.all(parts >= 0) and parts.sum() == pytest.approx(r.step_s[0])
    assert 0 < r.mfu[0] < 1
