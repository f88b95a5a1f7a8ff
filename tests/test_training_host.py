"""Issue 12 item 3: the host's time to issue a training layer's kernels, the floor under its GPU time
(capsim.analytic.training.host): one launch per op, one per local expert for TE's grouped GEMMs and for the
per-expert quantize kernels of every recipe but FP8 delayed scaling."""

import numpy as np
import pytest

from capsim import Layouts, Precision, get_model
from capsim.analytic import fp8
from capsim.analytic.ops import backward_ops, forward_layer_ops, layer_shape
from capsim.analytic.training import host, stages
from capsim.analytic.training.compute import micro_batch_times
from capsim.calibration import load_calibration

PERF = load_calibration("H100-SXM5-80GB").perf()
B200 = load_calibration("B200").perf()
QWEN = get_model("qwen3-30b-a3b")  # 128 experts: 16 per GPU at EP 8
LLAMA = get_model("llama-3-8b")


def _ops(model, precision: Precision, ep: int = 8):
    shape = layer_shape(model, 4096.0, 1, 1, ep, False, 1)
    plain = forward_layer_ops(model, shape, precision.activations)
    return fp8.forward(plain, precision), backward_ops(plain) + fp8.backward_casts(plain, precision)


def test_grouped_gemms_launch_once_per_local_expert():
    fwd, bwd = _ops(QWEN, Precision.preset("bf16"))
    grouped = [op for op in fwd if op.name in ("mlp_up", "mlp_down")]
    assert [float(host.launches(op, Precision.preset("bf16"))) for op in grouped] == [16.0, 16.0]
    act = next(op for op in fwd if op.name == "mlp_act")
    assert float(act.count) == 16.0 and float(host.launches(act, Precision.preset("bf16"))) == 1.0  # one kernel
    # forward: 32 expert GEMMs plus the layer's other GEMMs (qkv, attn_out, router) at the TE GEMM cost
    gemms = sum(float(host.launches(op, Precision.preset("bf16"))) for op in fwd if op.kind.value == "gemm")
    assert gemms == 35.0
    # backward: data and weight gradients of each, twice the forward's GEMM launches
    bwd_gemms = sum(float(host.launches(op, Precision.preset("bf16"))) for op in bwd if op.kind.value == "gemm")
    assert bwd_gemms == 70.0


def test_expert_quantize_is_one_kernel_per_expert_except_fp8_delayed():
    mx, delayed, current = Precision.preset("mxfp8"), Precision.preset("fp8"), Precision.preset("fp8-current")

    def cast_launches(precision: Precision) -> float:
        fwd, _ = _ops(QWEN, precision)
        return sum(float(host.launches(op, precision)) for op in fwd if op.name.startswith("fp8_"))

    # qkv and attn_out inputs, then fc1 and fc2 inputs per expert (16 each)
    assert cast_launches(mx) == 2 + 2 * 16
    assert cast_launches(delayed) == 2 + 2  # TE's fused multi-tensor cast-transpose for the experts
    assert cast_launches(current) == 2 * (2 + 2 * 16)  # an amax kernel before each cast


def test_host_time_is_launches_times_the_cited_costs():
    bf16 = Precision.preset("bf16")
    fwd, _ = _ops(LLAMA, bf16, ep=1)
    gemm = sum(1 for op in fwd if op.kind.value == "gemm")
    other = len(fwd) - gemm
    assert float(host.host_s(fwd, bf16)) == pytest.approx(gemm * host.GEMM_LAUNCH_S + other * host.EAGER_OP_S)


def test_host_wait_counts_only_host_time_beyond_the_gpu_and_its_ep_streams():
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)
    t = micro_batch_times(QWEN, lay, Precision.preset("bf16"), PERF)
    # the forward's 32 expert GEMMs at the profile's per-expert figure outweigh the backward's 64 at the cuBLAS call's
    assert t.host_fwd_s[0] > t.host_bwd_s[0] > 0
    none = stages.host_wait_s(t, 0.0, 0.0)[0]
    expected = max(t.host_fwd_s[0] - t.layer_fwd_s[0], 0.0) + max(t.host_bwd_s[0] - t.layer_bwd_s[0], 0.0)
    assert none == pytest.approx(expected)
    # an all-to-all on the compute stream is GPU time the host's issuing overlaps
    assert stages.host_wait_s(t, 1.0, 1.0)[0] == 0.0


def test_host_floor_binds_where_the_gpu_work_is_tiny():
    tiny = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=64)  # 64 tokens: kernels of microseconds
    t = micro_batch_times(QWEN, tiny, Precision.preset("bf16"), PERF)
    assert t.host_fwd_s[0] > t.layer_fwd_s[0]
    assert stages.host_wait_s(t, 0.0, 0.0)[0] > 0.0
    big = Layouts.build(LLAMA, dp=8, global_batch=8, seq_len=8192)  # a dense layer at 8k tokens: GPU-bound
    t = micro_batch_times(LLAMA, big, Precision.preset("bf16"), PERF)
    assert np.all(stages.host_wait_s(t, 0.0, 0.0) == 0.0)


# The forward's host wait (host.SyncPoint): from one wait to the next, kernels issued onto an empty GPU queue.
def test_an_issued_run_is_not_max_of_host_and_gpu():
    host_first = host.Issue(10.0, 10.0, 0.0)  # a kernel the host needs 10 to issue and the GPU runs instantly
    gpu_after = host.Issue(10.0, 0.0, 10.0)  # then one free to issue that runs 10 on the GPU
    run = host_first.then(gpu_after)
    assert (run.span_s, run.host_s, run.gpu_s) == (20.0, 10.0, 10.0)  # serial: the GPU idles while the host issues
    assert gpu_after.then(host_first).span_s == 10.0  # the other order overlaps fully
    a, b, c = host.Issue(3.0, 1.0, 2.0), host.Issue(5.0, 4.0, 1.0), host.Issue(2.0, 0.5, 1.5)
    assert a.then(b).then(c) == a.then(b.then(c))  # associative: runs compose block by block


def test_moe_runs_partition_the_forward_and_dense_layers_have_none():
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)
    mx = Precision.preset("mxfp8")
    t = micro_batch_times(QWEN, lay, mx, B200, fp8_padding=True)
    pre, experts, post = t.runs()
    assert float(pre.host_s[0] + experts.host_s[0] + post.host_s[0]) == pytest.approx(float(t.host_fwd_s[0]))
    assert float(pre.gpu_s[0] + experts.gpu_s[0] + post.gpu_s[0]) == pytest.approx(float(t.layer_fwd_s[0]))
    assert float(experts.host_s[0]) > float(post.host_s[0])  # 16 experts' GEMMs and casts dominate the issuing
    dense = micro_batch_times(LLAMA, Layouts.build(LLAMA, dp=8, global_batch=8, seq_len=4096), mx, B200)
    assert all(float(r.span_s[0]) == 0.0 for r in dense.runs())


def test_the_forward_wait_exposes_the_experts_issue_before_the_attention():
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)
    t = micro_batch_times(QWEN, lay, Precision.preset("mxfp8"), B200, fp8_padding=True)
    ep = 0.4e-3
    old = stages.host_wait_s(t, ep, ep)[0]
    before = stages.host_wait_s(t, ep, ep, host.SyncPoint.BEFORE_DISPATCH)[0]
    assert before > old  # the experts' issuing can no longer hide behind the next layer's attention
    half = ep / 2.0
    span = host.synced_pass_s(*t.runs(), half, half, host.SyncPoint.BEFORE_DISPATCH)[0]
    assert span >= max(t.host_fwd_s[0] + 2 * host.EAGER_OP_S, t.layer_fwd_s[0] + ep)
    assert before == pytest.approx(span - t.layer_fwd_s[0] - ep + max(t.host_bwd_s[0] - t.layer_bwd_s[0] - ep, 0))


def test_sync_point_follows_the_dispatcher():
    from dataclasses import replace

    from capsim.analytic.training.framework import get_framework
    from capsim.analytic.training.release import MoeDispatcher

    fw = get_framework("megatron-bridge-25.11")
    assert stages.sync_point(replace(fw, moe_dispatcher=MoeDispatcher.ALLTOALL)) is host.SyncPoint.BEFORE_DISPATCH
    assert stages.sync_point(replace(fw, moe_dispatcher=MoeDispatcher.FLEX)) is host.SyncPoint.BEFORE_DISPATCH
    assert stages.sync_point(replace(fw, moe_dispatcher=MoeDispatcher.ALLGATHER)) is host.SyncPoint.AFTER_DISPATCH
    # the EP A2A overlap schedule runs the same dispatcher (and its wait) inside its moe_dispatch node
    assert stages.sync_point(replace(fw, moe_dispatcher=MoeDispatcher.ALLTOALL, overlap_moe_a2a=True)) \
        is host.SyncPoint.BEFORE_DISPATCH


def test_a_paired_layer_takes_at_least_both_passes_host_time():
    # EP A2A overlap: one host thread issues a layer's forward of one micro-batch and its backward of another between
    # two of the dispatcher's waits, so the pair is floored by both passes' issue time, not each pass by its own
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=512)  # few tokens: the host binds
    t = micro_batch_times(QWEN, lay, Precision.preset("mxfp8"), B200, fp8_padding=True)
    ep, point = 0.05e-3, host.SyncPoint.BEFORE_DISPATCH
    gpu = float(t.layer_fwd_s[0] + t.layer_bwd_s[0]) + 2 * ep
    both = float(t.host_fwd_s[0] + t.host_bwd_s[0])
    assert both > gpu  # the premise: this layer is host-bound
    fwd, bwd = stages.host_waits_s(t, ep, ep, point, paired=1.0)
    assert float(bwd[0]) == 0.0 and float(fwd[0]) == pytest.approx(both - gpu)
    alone = stages.host_wait_s(t, ep, ep, point)[0]
    half = stages.host_wait_s(t, ep, ep, point, paired=0.5)[0]
    assert float(half) == pytest.approx(0.5 * float(alone) + 0.5 * (both - gpu))  # unpaired passes keep theirs
    # a GPU-bound layer has no wait either way
    big = micro_batch_times(QWEN, Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=16384),
                            Precision.preset("bf16"), PERF)
    assert float(stages.host_wait_s(big, ep, ep, point, paired=1.0)[0]) == 0.0


def test_the_event_simulation_prices_the_same_host_waits_as_the_analytic_step():
    from capsim import TrainPlan, get_accelerator
    from capsim.analytic.training import step_time
    from capsim.sim.train_step import pipeline_inputs
    from capsim.specs.hardware import Cluster

    cluster = Cluster(get_accelerator("B200"), 8, 8)
    plan = TrainPlan(dp=8, ep=8, etp=1, micro_batch=1, global_batch=16, seq_len=4096,
                     precision=Precision.preset("mxfp8"))
    fw = "megatron-bridge-25.11"
    analytic = step_time(QWEN, plan, cluster, B200, framework=fw)
    simulated = pipeline_inputs(QWEN, plan, cluster, B200, framework=fw).simulate()
    assert analytic.step_s == pytest.approx(simulated.step_s, rel=0.01)


def test_forward_grouped_gemms_cost_the_profiled_experts_block_per_expert():
    bf16 = Precision.preset("bf16")
    fwd, bwd = _ops(QWEN, bf16)
    # the profile's :#MOE_EXPERTS_COMP median over its 2 x 16 expert GEMMs, against the cuBLAS call alone
    assert abs(host.FWD_GROUPED_LAUNCH_S - 68.35e-6) < 0.1e-6
    assert host.FWD_GROUPED_LAUNCH_S > 4 * host.GEMM_LAUNCH_S
    up = next(op for op in fwd if op.name == "mlp_up")
    assert float(host.op_host_s(up, bf16)) == pytest.approx(16 * host.FWD_GROUPED_LAUNCH_S)
    # its data and weight gradients keep the cuBLAS call's figure (the profile's Python ranges are forward only)
    for name in ("mlp_up.dgrad", "mlp_up.wgrad"):
        op = next(o for o in bwd if o.name == name)
        assert float(host.op_host_s(op, bf16)) == pytest.approx(16 * host.GEMM_LAUNCH_S)
    # a dense GEMM is one cuBLAS call
    qkv = next(op for op in fwd if op.name == "qkv")
    assert float(host.op_host_s(qkv, bf16)) == pytest.approx(host.GEMM_LAUNCH_S)


def test_the_profiled_run_prices_its_experts_block_at_the_profiled_host_time():
    # the profiled run: Qwen3-30B-A3B on 8 B200s, EP 8, micro-batch 1, 4096 tokens, BF16 (ModelZoo issue #7): its
    # forward experts run (sort, fc1, activation, fc2, unsort) issues in the range's 1.94-2.19 ms plus its eager ops,
    # several times its GPU time, so that stretch of the forward runs at the host's pace
    lay = Layouts.build(QWEN, dp=8, ep=8, etp=1, global_batch=8, seq_len=4096)
    t = micro_batch_times(QWEN, lay, Precision.preset("bf16"), B200)
    assert 1.94e-3 < t.experts_host_s[0] < 2.187e-3 + 5 * host.EAGER_OP_S
    assert t.experts_host_s[0] > 3 * t.experts_gpu_s[0]
    # with fewer local experts (EP 16: 8) the block's host time halves less its fixed ops
    lay16 = Layouts.build(QWEN, dp=16, ep=16, etp=1, global_batch=16, seq_len=4096)
    t16 = micro_batch_times(QWEN, lay16, Precision.preset("bf16"), B200)
    assert t16.experts_host_s[0] == pytest.approx(t.experts_host_s[0] - 16 * host.FWD_GROUPED_LAUNCH_S)


@pytest.mark.xfail(strict=True, reason=(
    "+149%: the profiled run itself, priced with the Megatron-Core release before it (0.13.0, 2025-07-25) and the "
    "issue's settings, runs 16,314 tokens/s/GPU where its reporter measured ~150 TFLOP/s ('~7% MFU on a B200'), "
    "~6,540 tokens/s/GPU at Megatron's 22.94 GFLOP per token; the host constants it gave capsim "
    "(FWD_GROUPED_LAUNCH_S, GEMM_LAUNCH_S) price the forward experts' issue, but the step they belong to is 2.5x "
    "capsim's GPU time, host issue and exposed all-to-alls together: the gap of the B200 micro-batch-1 alltoall rows "
    "of training_bridge_blackwell.csv (+64%/+71%, MXFP8) and of the EP 8 rows with the EP A2A overlap "
    "(tests/test_ep_overlap_ab.py). What fills the rest of the step the issue's excerpt does not say (its nsys "
    "kernel summary: 'the dispatcher ops taking the majority of the time')"))
def test_the_profiled_run_is_priced_at_its_reported_throughput():
    # yanring/Megatron-MoE-ModelZoo issue #7 (2025-08-18): Qwen3-30B-A3B on 8 B200, EP 8, TP 1, PP 1, micro-batch 1,
    # global batch 64, BF16, alltoall dispatcher, TE grouped GEMM, forced balancing, no recomputation: ~150 TFLOP/s
    # per GPU by Megatron's count, which Megatron-Bridge's performance page pairs with 22.94 GFLOP per token for this
    # model at seq 4096 (docs/performance-summary-archive.md at 067f987d, 25.11 DGX-H100: 121 TFLOP/s at 5275 tokens/s)
    from capsim import TrainPlan, get_accelerator
    from capsim.analytic.training import step_time
    from capsim.analytic.training.framework import get_framework
    from capsim.analytic.training.release import MoeDispatcher
    from capsim.specs.hardware import Cluster

    fw = get_framework("megatron-core-0.13.0").with_(moe_dispatcher=MoeDispatcher.ALLTOALL)
    plan = TrainPlan(dp=8, ep=8, etp=1, micro_batch=1, global_batch=64, seq_len=4096,
                     precision=Precision.preset("bf16"))
    result = step_time(QWEN, plan, Cluster(get_accelerator("B200"), 8, 8), B200, framework=fw)
    measured = 150e12 / (121e12 / 5275)  # tokens/s/GPU
    assert abs(float(np.ravel(result.tokens_per_s)[0]) / 8 / measured - 1.0) <= 0.15
