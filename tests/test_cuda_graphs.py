"""Issue 12: Megatron-Core CUDA graphs as release data (capsim.analytic.training.core_flags) and their price: a
graphed scope's ops cost one graph launch of host time instead of their per-kernel issue
(capsim.analytic.training.host.graphed_ops)."""

import numpy as np
import pytest

from capsim import Layouts, Precision, get_model
from capsim.analytic.training import host, stages
from capsim.analytic.training.compute import layer_op_lists, micro_batch_times
from capsim.analytic.training.framework import RELEASES, FrameworkName
from capsim.calibration import load_calibration
from capsim.errors import SpecError

PERF = load_calibration("H100-SXM5-80GB").perf()
QWEN = get_model("qwen3-30b-a3b")
LLAMA = get_model("llama-3-8b")
BF16 = Precision.preset("bf16")
MOE_SCOPES = "attn,moe_router,moe_preprocess"


def _names(model, lay):
    _, fwd, _ = layer_op_lists(model, lay, BF16, RELEASES[FrameworkName.MEGATRON_BRIDGE_25_11].framework.attention,
                               False)
    return fwd


def test_a_graphed_scope_lowers_the_host_floor_of_a_host_bound_moe_layer():
    tiny = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=64)  # kernels of microseconds
    eager = micro_batch_times(QWEN, tiny, BF16, PERF)
    graphed = micro_batch_times(QWEN, tiny, BF16, PERF, graph=MOE_SCOPES)
    point = host.SyncPoint.BEFORE_DISPATCH
    before, after = (stages.host_wait_s(t, 0.0, 0.0, point)[0] for t in (eager, graphed))
    assert before > 0.0 and after < before
    assert graphed.host_fwd_s[0] < eager.host_fwd_s[0] and graphed.host_bwd_s[0] < eager.host_bwd_s[0]
    # the expert block stays eager (the host needs the routed counts): its run's host time is unchanged
    assert graphed.experts_host_s[0] == eager.experts_host_s[0]
    np.testing.assert_array_equal(graphed.layer_fwd_s, eager.layer_fwd_s)  # GPU time unchanged


def test_graphed_ops_cost_one_launch_per_run():
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=64)
    fwd = _names(QWEN, lay)
    graphed = host.graphed_ops(MOE_SCOPES, fwd)
    costs = host.host_costs(fwd, BF16, graphed)
    inside = [c for op, c in zip(fwd, costs, strict=True) if op.name.split(".")[0] in graphed]
    # norm_attn .. residual_attn, then norm_mlp, router, top-k, permute: one contiguous run, one graph launch
    assert sum(inside) == pytest.approx(host.GRAPH_LAUNCH_S)
    assert "mlp_up" not in graphed and "moe_sort" not in graphed


def test_whole_layer_scope_graphs_a_dense_layer_but_stops_at_the_moe_host_wait():
    dense = Layouts.build(LLAMA, dp=8, global_batch=8, seq_len=64)
    fwd = _names(LLAMA, dense)
    assert host.graphed_ops("full", fwd) == {op.name.split(".")[0] for op in fwd}
    assert float(host.host_s(fwd, BF16, host.graphed_ops("full", fwd))) == pytest.approx(host.GRAPH_LAUNCH_S)
    moe = _names(QWEN, Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=64))
    assert host.graphed_ops("full_iteration", moe) == host.graphed_ops(MOE_SCOPES, moe)
    assert host.graphed_ops("mlp", moe) == frozenset()  # the dense MLP scope captures nothing in an MoE layer


def test_a_compute_bound_dense_layer_is_unchanged():
    big = Layouts.build(LLAMA, dp=8, global_batch=8, seq_len=8192)
    eager = micro_batch_times(LLAMA, big, BF16, PERF)
    graphed = micro_batch_times(LLAMA, big, BF16, PERF, graph="full")
    assert graphed.host_fwd_s[0] < eager.host_fwd_s[0]
    assert stages.host_wait_s(eager, 0.0, 0.0)[0] == 0.0 == stages.host_wait_s(graphed, 0.0, 0.0)[0]
    np.testing.assert_array_equal(graphed.layer_fwd_s, eager.layer_fwd_s)
    np.testing.assert_array_equal(graphed.layer_bwd_s, eager.layer_bwd_s)


def test_the_flags_follow_the_release():
    b25_11 = RELEASES[FrameworkName.MEGATRON_BRIDGE_25_11]
    fw, _ = b25_11.configure("--cuda-graph-impl=transformer_engine --cuda-graph-scope=" + MOE_SCOPES)
    assert fw.cuda_graph_scopes() == MOE_SCOPES
    assert b25_11.framework.cuda_graph_scopes() == ""  # off unless stated
    fw, _ = RELEASES[FrameworkName.MEGATRON_BRIDGE_25_09].configure(
        "--enable-cuda-graph --cuda-graph-scope=full_iteration")
    assert fw.cuda_graph_scopes() == "full_iteration"
    assert b25_11.configure("--cuda-graph-scope=attn")[0].cuda_graph_scopes() == ""  # no capture without an impl


@pytest.mark.parametrize(("release", "flags", "reason"), [
    # core_v0.14.0 (Megatron-Bridge 25.09) has no --cuda-graph-impl: it arrives in core_v0.15.0
    (FrameworkName.MEGATRON_BRIDGE_25_09, "--cuda-graph-impl=local", "exists from Megatron-Core 0.15"),
    (FrameworkName.NEMO_24_07, "--enable-cuda-graph", "exists from Megatron-Core 0.11"),
    # the list scopes arrive in core_v0.16.0; core_v0.14.0 accepts full, attn, full_iteration
    (FrameworkName.MEGATRON_BRIDGE_25_09, "--enable-cuda-graph --cuda-graph-scope=moe_router", "unknown value"),
    # "moe" needs drop-and-pad MoE (transformer_config.py L1757-1763 at core_v0.16.0)
    (FrameworkName.MEGATRON_BRIDGE_25_11, "--cuda-graph-impl=transformer_engine --cuda-graph-scope=moe",
     "unknown value"),
])
def test_a_flag_or_scope_the_release_lacks_is_refused(release, flags, reason):
    with pytest.raises(SpecError, match=reason):
        RELEASES[release].configure(flags)
