"""Issue 12 item 3: what Megatron-Core's MoE block pays beyond its GEMMs: the EP A2A overlap's three-phase layer
schedule (each all-to-all hides only behind the compute of its phase; the passes the schedule runs alone expose
theirs) and TEGroupedMLP's FP8 row padding."""

from dataclasses import replace

import numpy as np
import pytest

from capsim import Layouts, Precision, get_model
from capsim.analytic import fp8
from capsim.analytic.moe import GROUPED, moe_ops
from capsim.analytic.training import comms, get_framework
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import release_for
from capsim.analytic.training.release import MoeDispatcher
from capsim.calibration import load_calibration
from capsim.specs.precision import DType

PERF = load_calibration("H100-SXM5-80GB").perf()
BF16, FP8 = Precision.preset("bf16"), Precision.preset("fp8")
QWEN = get_model("qwen3-30b-a3b")


def _times(**values: float):
    t = micro_batch_times(QWEN, Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096), BF16, PERF)
    return replace(t, **{k: np.array([v]) for k, v in values.items()})


# --- EP A2A overlap ------------------------------------------------------------------------------------------------

def test_overlapped_share_counts_the_passes_the_schedule_runs_alone():
    flat = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=32, seq_len=4096)  # 4 micro-batches, no pipeline
    assert comms.overlapped_share(flat)[0] == pytest.approx(0.75)  # the first forward and the last backward alone
    piped = Layouts.build(QWEN, pp=2, v=2, dp=8, ep=8, etp=1, global_batch=64, seq_len=4096)  # m 8, 16 chunk passes
    # warmup at the mean rank: (pp - 1) + (v - 1) pp + 1 = 1 + 2 + 1 = 4 of 16
    assert comms.overlapped_share(piped)[0] == pytest.approx(1 - 4 / 16)
    few = Layouts.build(QWEN, pp=2, v=2, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)  # 1 micro-batch
    assert comms.overlapped_share(few)[0] == 0.0


def test_paired_overlap_hides_each_all_to_all_only_behind_its_phase():
    # attention 1 ms forward / 2 ms backward, experts 1 ms / 2 ms; each all-to-all 0.5 ms: every phase hides it
    t = _times(layer_fwd_s=2e-3, layer_bwd_s=4e-3, experts_fwd_s=1e-3, experts_bwd_s=2e-3)
    assert comms._paired_exposed_s(t, np.array([0.5e-3]), np.array([0.5e-3]))[0] == pytest.approx(0.0)
    # a 0.1 ms attention forward: the backward's combine (1 ms) shows 0.9 ms though the layer's backward (4 ms)
    # is far longer than all four all-to-alls (4 ms) together, which the whole-layer bound would call hidden
    short = _times(layer_fwd_s=1.1e-3, layer_bwd_s=4e-3, experts_fwd_s=1e-3, experts_bwd_s=2e-3)
    exposed = comms._paired_exposed_s(short, np.array([1e-3]), np.array([1e-3]))[0]
    assert exposed == pytest.approx(0.9e-3)
    assert exposed <= 4e-3  # never more than the four all-to-alls unhidden


def test_a2a_overlap_exposes_more_than_the_whole_layer_bound_and_less_than_none():
    lay = Layouts.build(QWEN, dp=16, ep=16, etp=1, global_batch=64, seq_len=4096)  # EP over two nodes
    t = micro_batch_times(QWEN, lay, BF16, PERF)
    core = get_framework("megatron-core").with_(moe_dispatcher=MoeDispatcher.ALLTOALL)
    plain = sum(comms.ep_layer_s(PERF, QWEN, lay, BF16, 8, t, core))[0]
    overlapped = sum(comms.ep_layer_s(PERF, QWEN, lay, BF16, 8, t, core.with_(overlap_moe_a2a=True)))[0]
    fwd, bwd = comms.ep_layer_s(PERF, QWEN, lay, BF16, 8, t, core)
    whole_layer = max(fwd[0] - t.layer_bwd_s[0], 0.0) + max(bwd[0] - t.layer_fwd_s[0], 0.0)
    assert whole_layer <= overlapped < plain


# --- FP8 padding of the grouped experts ----------------------------------------------------------------------------

def _moe(precision: Precision) -> list:
    return moe_ops(QWEN, 4096, 1, 1, 8, False, precision.activations, 2.0, 2.0, 1.0)


def test_grouped_padding_copies_each_experts_rows_under_fp8_only():
    ops = _moe(FP8)
    up = next(o for o in ops if o.name == "mlp_up")
    assert up.impl == GROUPED
    fwd, bwd = fp8.grouped_padding(ops, FP8)
    rows = up.shape[0] * up.count  # every local expert's token copies
    pad = next(o for o in fwd if o.name == fp8.PAD)
    unpad = next(o for o in fwd if o.name == fp8.UNPAD)
    assert pad.bytes_read == pytest.approx(rows * QWEN.hidden * 2) == pad.bytes_written
    assert unpad.bytes_read == pytest.approx(rows * QWEN.hidden * 2)
    assert {o.name for o in bwd} == {o.name + ".bwd" for o in fwd}
    assert fp8.grouped_padding(ops, BF16) == ([], [])
    dense = [replace(o, impl="") for o in ops]  # a dense MLP's GEMMs (not TEGroupedMLP) pad nothing
    assert fp8.grouped_padding(dense, FP8) == ([], [])


def test_fp8_padding_lengthens_the_moe_layer_and_not_a_dense_one():
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)
    on = micro_batch_times(QWEN, lay, FP8, PERF, fp8_padding=True)
    off = micro_batch_times(QWEN, lay, FP8, PERF, fp8_padding=False)
    moved = 4 * 4096 * QWEN.top_k * QWEN.hidden * 2 * 2  # four copies (two each way), each read and written
    extra = (on.layer_fwd_s + on.layer_bwd_s - off.layer_fwd_s - off.layer_bwd_s)[0]
    assert extra > 0.8 * moved / PERF.params.memory.bandwidth_bytes_per_s
    assert (on.experts_fwd_s > off.experts_fwd_s)[0]  # the copies belong to the expert node
    llama = get_model("llama-3-8b")
    dense = Layouts.build(llama, dp=8, global_batch=8, seq_len=4096)
    assert micro_batch_times(llama, dense, FP8, PERF, fp8_padding=True).layer_fwd_s[0] == pytest.approx(
        micro_batch_times(llama, dense, FP8, PERF).layer_fwd_s[0])


def test_releases_cite_the_fp8_padding_by_megatron_core_version():
    assert release_for("megatron-core", "megatron-bridge-25.11").configure("")[0].moe_fp8_padding
    # NeMo 25.02 (core_r0.11.0): moe_grouped_gemm defaults False, so experts are SequentialMLP (no TEGroupedMLP
    # Fp8Padding) unless the run states --moe-grouped-gemm
    nemo = release_for("megatron-core", "nemo-25.02")
    assert not nemo.configure("")[0].moe_fp8_padding and nemo.configure("--moe-grouped-gemm")[0].moe_fp8_padding
    assert not release_for("megatron-core", "nemo-24.07").configure("")[0].moe_fp8_padding  # core_v0.8.0


def test_moe_ops_mark_the_routed_experts_grouped_and_nothing_else():
    ops = _moe(BF16)
    assert {o.name for o in ops if o.impl == GROUPED} == {"mlp_up", "mlp_down"}
    assert all(o.dtype is DType.BF16 for o in ops if o.impl == GROUPED)


def test_a2a_overlap_refuses_what_megatron_core_refuses():
    from capsim import Cluster, TrainPlan, get_accelerator
    from capsim.analytic.training import step_time

    cluster = Cluster(get_accelerator("H100-SXM5-80GB"), 16)
    fw = get_framework("megatron-core").with_(moe_dispatcher=MoeDispatcher.ALLTOALL, overlap_moe_a2a=True)
    base = dict(dp=8, ep=8, etp=1, global_batch=64, seq_len=4096, precision=BF16)
    flat = TrainPlan(pp=2, pp_interleave=2, **base)
    assert step_time(QWEN, flat, cluster, PERF, framework=fw).feasible
    no_v = step_time(QWEN, TrainPlan(pp=2, **base), cluster, PERF, framework=fw)
    assert not no_v.feasible and "virtual pipeline" in no_v.reason
    gather = step_time(QWEN, flat, cluster, PERF, framework=fw.with_(moe_dispatcher=MoeDispatcher.ALLGATHER))
    assert "dispatcher" in gather.reason
    full = step_time(QWEN, flat.with_(recompute="full"), cluster, PERF, framework=fw)
    assert "full recomputation" in full.reason
    assert step_time(QWEN, TrainPlan(pp=2, **base), cluster, PERF, framework=fw.with_(overlap_moe_a2a=False)).feasible


# --- forced balancing is random per token --------------------------------------------------------------------------

def test_forced_balancing_leaves_the_busiest_rank_a_few_percent_over_the_mean():
    from capsim.analytic.moe import busiest_rank

    assert busiest_rank(QWEN, 4096, 1) == 1.0  # one rank holds every expert: nothing to wait for
    eight, sixteen = busiest_rank(QWEN, 4096, 8), busiest_rank(QWEN, 4096, 16)
    assert 1.0 < eight < sixteen < 1.05  # more ranks, a busier maximum
    assert busiest_rank(QWEN, 16384, 8) - 1 == pytest.approx((eight - 1) / 2)  # the spread shrinks as 1/sqrt(tokens)
    busy = moe_ops(QWEN, 4096, 1, 1, 8, False, DType.BF16, 2.0, 2.0, 1.0, busiest=eight)
    up = {o.name: o for o in _moe(BF16)}["mlp_up"], {o.name: o for o in busy}["mlp_up"]
    assert up[1].shape[0] == pytest.approx(up[0].shape[0] * eight)
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)
    core = get_framework("megatron-core").with_(moe_dispatcher=MoeDispatcher.ALLTOALL)
    t = micro_batch_times(QWEN, lay, BF16, PERF)
    a2a = [sum(comms.ep_layer_s(PERF, QWEN, lay, BF16, 8, t, core.with_(moe_random_routing=r)))[0] for r in (0, 1)]
    assert a2a[1] > a2a[0]  # the all-to-all waits for the busiest rank only where forced balancing is random
    layer = [micro_batch_times(QWEN, lay, BF16, PERF, random_routing=r).experts_fwd_s[0] for r in (False, True)]
    assert layer[1] > layer[0]
    assert release_for("megatron-core", "megatron-bridge-26.04").configure("")[0].moe_random_routing
    assert not release_for("fsdp2", "nemo-automodel-2025-10").configure("")[0].moe_random_routing


# --- expert biases (TEGroupedMLP._apply_bias) ---------------------------------------------------------------------
def test_a_biased_models_fc2_bias_is_an_eager_scale_and_add_per_local_expert_and_one_concat():
    oss = get_model("gpt-oss-120b")
    ops = {op.name: op for op in moe_ops(oss, 4096, 1, 1, 8, False, DType.BF16, 2, 2, 1.0)}
    local, copies = 128 / 8, 4096 * 4
    assert ops["moe_bias_scale"].count == ops["moe_bias_add"].count == local and ops["moe_bias_cat"].count == 1
    # b * p writes the rows; the add reads them and the GEMM output and writes the sum; the concat copies them all
    assert ops["moe_bias_scale"].bytes * local == pytest.approx(copies * oss.hidden * 2)
    assert ops["moe_bias_add"].bytes * local == pytest.approx(3 * copies * oss.hidden * 2)
    assert ops["moe_bias_cat"].bytes == pytest.approx(2 * copies * oss.hidden * 2)
    assert not {"moe_bias_scale", "moe_bias_add", "moe_bias_cat"} & {op.name for op in moe_ops(
        QWEN, 4096, 1, 1, 8, False, DType.BF16, 2, 2, 1.0)}  # no biases
    assert "moe_bias_add" not in {op.name for op in moe_ops(oss, 4096, 1, 1, 8, False, DType.BF16, 2, 2, 1.0,
                                                            dispatcher=False)}  # serving engines fuse them
