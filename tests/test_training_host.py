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
    assert t.host_fwd_s[0] > 0 and t.host_bwd_s[0] > t.host_fwd_s[0]
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
