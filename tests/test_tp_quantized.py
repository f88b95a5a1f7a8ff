"""What a tensor-parallel group costs under Transformer Engine's quantized recipes, and the NVLink 5 collective rates:
the published GB200 nccl-tests table the Blackwell datasheet calibrations price intra-node collectives with, the
quantized sequence-parallel all-gathers, the casts of the local rows before them, and the amax all-reduces of
current scaling and NVFP4 (capsim.calibration.published_comm, capsim.analytic.fp8, capsim.analytic.training.comms)."""

from dataclasses import replace

import numpy as np
import pytest

from capsim.analytic import fp8
from capsim.analytic.layouts import Layouts
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.training import comms, resolve_perf
from capsim.analytic.training.collectives import collective_s, placement
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import get_framework
from capsim.calibration import load_calibration
from capsim.calibration.published_comm import PUBLISHED, fitted_links, points_for
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.hardware import Cluster
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import DType, Fp8Scaling, Precision

GB200 = load_calibration("GB200").perf()
FW = get_framework("megatron-bridge-26.04")
MODEL = get_model("llama-3-70b")
BF16 = Precision.preset("bf16")


def _precision(fmt: DType, scaling: Fp8Scaling | None = None) -> Precision:
    return replace(BF16, compute=fmt, fp8_scaling=scaling)


@pytest.mark.parametrize("name", ["B200", "GB200", "B300", "GB300"])
def test_nvlink5_datasheet_collectives_follow_the_published_gb200_table(name):
    table = PUBLISHED["GB200"]
    perf = load_calibration(name).perf()
    for size, busbw in table.points:
        measured_s = size * 2 * 3 / 4 / (busbw * 1e9)  # ring all-reduce over 4 GPUs: bus bytes 2(n-1)/n
        err = perf.collective_s("all_reduce", size, 4, "intra") / measured_s - 1.0
        assert abs(err) <= (0.08 if size >= 8 * 2**20 else 0.15), (name, size, err)


def test_parts_off_nvlink5_keep_the_stated_link_assumption():
    assert points_for("H100-SXM5-80GB") is None
    small, large = fitted_links(PUBLISHED["GB200"])
    assert small.bus_bw_bytes_per_s < large.bus_bw_bytes_per_s < 900e9  # under the 900 GB/s per direction
    h100 = load_calibration("H100-SXM5-80GB").perf()
    assert h100.collective_s("all_gather", 1e8, 2, "intra") == pytest.approx(15e-6 + 0.5e8 / (450e9 * 0.75))


@pytest.mark.parametrize("fmt, scaling, expected", [
    (DType.BF16, None, (2.0, 2.0)),
    (DType.FP8, Fp8Scaling.DELAYED, (1.0, 1.0)),  # per-tensor FP8: rowwise gathered, transposed after
    (DType.MXFP8, None, (1.03125, 2.0625)),  # the output gradient's rowwise and columnwise copies
    (DType.NVFP4, None, (0.5625, 1.125)),
])
def test_sequence_parallel_gathers_move_the_quantized_copies(fmt, scaling, expected):
    assert fp8.sp_gather_bytes(_precision(fmt, scaling)) == pytest.approx(expected)


def _cast_values(ops) -> float:
    """Values the rowwise and columnwise quantize kernels of ``ops`` read (NVFP4: one kernel each)."""
    return sum(float(op.shape[0]) for op in ops if op.name.startswith("fp8_cast"))


def test_casts_before_a_sequence_parallel_gather_cover_the_local_rows():
    nvfp4 = _precision(DType.NVFP4)
    plain = forward_layer_ops(MODEL, layer_shape(MODEL, 8192.0, 1, 2, 1, True), DType.BF16, FW.attention)
    inputs = {op.name: float(op.shape[0] * op.shape[2]) for op in plain if fp8.is_fp8(op, nvfp4)}
    grads = {op.name: float(op.shape[0] * op.shape[1]) for op in plain if fp8.is_fp8(op, nvfp4)}
    # the QKV and fc1 inputs and the attention-output and fc2 output gradients: two passes each, half the rows
    saved = _cast_values(fp8.forward(plain, nvfp4)) - _cast_values(fp8.forward(plain, nvfp4, 2))
    assert saved == pytest.approx(inputs["qkv"] + inputs["mlp_up"])
    saved = _cast_values(fp8.backward_casts(plain, nvfp4)) - _cast_values(fp8.backward_casts(plain, nvfp4, 2))
    assert saved == pytest.approx(grads["attn_out"] + grads["mlp_down"])
    assert fp8.forward(plain, BF16, 2) == plain  # nothing quantized, nothing cast


def _tp_forward(precision: Precision, sp: bool = True) -> tuple[np.ndarray, Layouts]:
    plan = TrainPlan(tp=2, dp=4, global_batch=16, seq_len=8192, sequence_parallel=sp)
    lay = Layouts.from_plans(MODEL, [plan])
    perf = resolve_perf(GB200, Cluster(get_accelerator("GB200"), 72))
    t = micro_batch_times(MODEL, lay, precision, perf, FW.attention)
    return comms.tp_layer_s(perf, MODEL, lay, precision, 72, t, FW)[0], lay


def test_quantized_gathers_and_amax_reductions_price_the_tp_forward():
    """Forward under SP: two all-gathers of the quantized input and two 16-bit reduce-scatters; current scaling and
    NVFP4 add an amax all-reduce (8 bytes) before each of the two quantizes, delayed scaling none."""
    where = placement(2, 1, 72)
    values = 8192 * MODEL.hidden
    rs = collective_s(GB200, "reduce_scatter", values * 2.0, where)
    amax = collective_s(GB200, "all_reduce", 8.0, where)
    for fmt, scaling, q, reduced in ((DType.FP8, Fp8Scaling.DELAYED, 1.0, False),
                                     (DType.FP8, Fp8Scaling.CURRENT, 1.0, True),
                                     (DType.NVFP4, None, 0.5625, True), (DType.BF16, None, 2.0, False)):
        fwd, _ = _tp_forward(_precision(fmt, scaling))
        ag = collective_s(GB200, "all_gather", values * q, where)
        assert fwd[0] == pytest.approx(2.0 * (ag + rs) + (2.0 * amax if reduced else 0.0)), (fmt, scaling)
    no_sp, _ = _tp_forward(_precision(DType.NVFP4), sp=False)
    assert no_sp[0] == pytest.approx(2.0 * collective_s(GB200, "all_reduce", values * 2.0, where))


def test_a_release_without_te_gathers_prices_16_bit_gathers_and_no_amax_reduction():
    """torchao's TP (FSDP2 releases) keeps the generic value: 16-bit gathers, casts of the gathered rows."""
    nvfp4 = _precision(DType.NVFP4)
    te, lay = _tp_forward(nvfp4)
    plain = FW.with_(tp_gather_quantized=False)
    perf = resolve_perf(GB200, Cluster(get_accelerator("GB200"), 72))
    t = micro_batch_times(MODEL, lay, nvfp4, perf, FW.attention)
    fwd, _ = comms.tp_layer_s(perf, MODEL, lay, nvfp4, 72, t, plain)
    bf16_fwd, _ = _tp_forward(BF16)
    assert fwd[0] == pytest.approx(bf16_fwd[0]) and te[0] < fwd[0]
    assert not get_framework("torchtitan-2024-12").tp_gather_quantized and FW.tp_gather_quantized
    local = micro_batch_times(MODEL, lay, nvfp4, perf, FW.attention, local_casts=True)
    assert local.layer_fwd_s[0] < t.layer_fwd_s[0] and local.layer_bwd_s[0] < t.layer_bwd_s[0]
