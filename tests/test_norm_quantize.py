"""Transformer Engine's LayerNormLinear quantizes the QKV and dense fc1 inputs in the norm kernel where its release
does (capsim.analytic.fp8.NormQuantize): the fused casts disappear there and stay everywhere else."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from capsim.analytic import fp8
from capsim.analytic.fp8 import CastKind, NormQuantize
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.training.framework import get_framework
from capsim.analytic.training.release import BEHAVIOUR
from capsim.specs.catalog import get_model
from capsim.specs.precision import DType, Fp8Scaling, Precision

DENSE = get_model("llama-3-70b")
BF16 = Precision.preset("bf16")
DELAYED = replace(BF16, compute=DType.FP8, fp8_scaling=Fp8Scaling.DELAYED)
CURRENT = replace(BF16, compute=DType.FP8, fp8_scaling=Fp8Scaling.CURRENT)


def _plain(model=DENSE, tp: int = 2, sp: bool = True) -> list:
    return forward_layer_ops(model, layer_shape(model, 8192.0, 1, tp, 1, sp), DType.BF16)


def _casts_before(ops: list, gemm: str) -> list[str]:
    """The names of the cast ops right before ``gemm`` in a forward list."""
    i = next(i for i, op in enumerate(ops) if op.name == gemm)
    out = []
    for op in reversed(ops[:i]):
        if not op.name.startswith("fp8_"):
            break
        out.append(op.name)
    return out


def _norm(ops: list, name: str):
    return next(op for op in ops if op.name == name)


@pytest.mark.parametrize("norm", [NormQuantize.FP8, NormQuantize.FP8_AMAX])
def test_delayed_scaling_norm_writes_the_fp8_copy_and_its_transpose_stays(norm):
    plain = _plain()
    fused, unfused = fp8.forward(plain, DELAYED, 2.0, norm), fp8.forward(plain, DELAYED, 2.0)
    for gemm, norm_name in (("qkv", "norm_attn"), ("mlp_up", "norm_mlp")):
        assert _casts_before(fused, gemm) == []  # no cast kernel: the norm writes FP8
        assert _casts_before(unfused, gemm) == [CastKind.INPUT.value]
        assert _norm(fused, norm_name).bytes_written == pytest.approx(_norm(plain, norm_name).bytes_written / 2)
    # the casts not fed by LayerNormLinear's norm stay: attention output projection, fc2
    for gemm in ("attn_out", "mlp_down"):
        assert _casts_before(fused, gemm) == [CastKind.INPUT.value]
    # the wgrad's transposed copy is its own kernel over all (gathered) rows, one byte in and out
    plain_by = {op.name: op for op in plain}
    bwd = fp8.backward_casts(plain, DELAYED, 2.0, norm)
    transposes = [op for op in bwd if op.name == CastKind.TRANSPOSE.value]
    assert [float(op.bytes_read) for op in transposes] == pytest.approx(
        [plain_by[g].shape[0] * plain_by[g].shape[2] for g in ("qkv", "mlp_up")])
    # the output-gradient casts are never fused
    assert len([op for op in bwd if op.name == CastKind.GRAD.value]) == \
        len([op for op in fp8.backward_casts(plain, DELAYED, 2.0) if op.name == CastKind.GRAD.value])


def test_current_scaling_keeps_its_cast_and_fuses_the_amax_only_from_te_2_8():
    plain = _plain(sp=False)
    # TE before 2.8: the norm runs in 16 bits, then the amax pass and the cast-transpose, as without fusion
    assert _casts_before(fp8.forward(plain, CURRENT, 1.0, NormQuantize.FP8), "qkv") == \
        _casts_before(fp8.forward(plain, CURRENT, 1.0), "qkv") == [CastKind.INPUT.value, CastKind.AMAX.value]
    # TE 2.8 on: FUSED_NORM_AMAX_FP8, the cast (both copies without a gather) stays, no transpose kernel
    fused = fp8.forward(plain, CURRENT, 1.0, NormQuantize.FP8_AMAX)
    assert _casts_before(fused, "qkv") == [CastKind.INPUT.value]
    assert _casts_before(fused, "attn_out") == [CastKind.INPUT.value, CastKind.AMAX.value]
    assert _norm(fused, "norm_attn") == _norm(plain, "norm_attn")  # the norm still writes 16 bits
    assert all(float(op.share) == 0.0 for op in fp8.norm_transposes(plain, CURRENT, 1.0, NormQuantize.FP8_AMAX))
    # under SP the cast writes the rowwise copy only; the transpose comes after the gather, on all the rows
    sp_plain = _plain()
    cast = next(op for op in fp8.forward(sp_plain, CURRENT, 2.0, NormQuantize.FP8_AMAX) if op.name == "fp8_cast")
    qkv = next(op for op in sp_plain if op.name == "qkv")
    assert float(cast.bytes_written) == pytest.approx(qkv.shape[0] / 2 * qkv.shape[2])
    assert all(float(op.share) == 1.0 for op in fp8.norm_transposes(sp_plain, CURRENT, 2.0, NormQuantize.FP8_AMAX))


@pytest.mark.parametrize("fmt", [DType.MXFP8, DType.NVFP4])
def test_block_scaled_recipes_are_not_fused(fmt):
    precision = replace(BF16, compute=fmt)
    plain = _plain()
    for norm in NormQuantize:
        assert fp8.forward(plain, precision, 2.0, norm) == fp8.forward(plain, precision, 2.0)
        assert fp8.backward_casts(plain, precision, 2.0, norm) == fp8.backward_casts(plain, precision, 2.0)


def test_grouped_experts_and_shared_experts_keep_their_casts():
    moe = get_model("deepseek-v3")
    plain = forward_layer_ops(moe, layer_shape(moe, 8192.0, 1, 2, 4, True), DType.BF16, moe_share=1.0)
    fused = fp8.forward(plain, DELAYED, 2.0, NormQuantize.FP8)
    assert fused == fp8.forward(plain, DELAYED, 2.0)  # MLA after a TENorm, grouped experts, shared experts
    assert not fp8.norm_transposes(plain, DELAYED, 2.0, NormQuantize.FP8)


def test_releases_state_their_norm_quantize():
    assert "norm_quantize" in BEHAVIOUR
    assert get_framework("nemo-24.07").norm_quantize is NormQuantize.FP8
    assert get_framework("megatron-bridge-26.04").norm_quantize is NormQuantize.FP8_AMAX
    assert get_framework("megatron-bridge-26.04.01").norm_quantize is NormQuantize.FP8_AMAX


def test_the_fused_norm_makes_a_te_fp8_layer_cheaper():
    from capsim.analytic.layouts import Layouts
    from capsim.analytic.training import resolve_perf
    from capsim.analytic.training.compute import micro_batch_times
    from capsim.calibration import load_calibration
    from capsim.specs.catalog import get_accelerator
    from capsim.specs.hardware import Cluster
    from capsim.specs.plans import TrainPlan

    lay = Layouts.from_plans(DENSE, [TrainPlan(tp=1, dp=8, global_batch=16, seq_len=8192)])
    perf = resolve_perf(load_calibration("H100").perf(), Cluster(get_accelerator("H100"), 8))
    plain = micro_batch_times(DENSE, lay, DELAYED, perf)
    fused = micro_batch_times(DENSE, lay, DELAYED, perf, norm_quantize=NormQuantize.FP8)
    assert np.all(fused.layer_fwd_s < plain.layer_fwd_s)
    assert np.all(fused.layer_bwd_s > plain.layer_bwd_s)  # the transposes
    assert np.all(fused.layer_fwd_s + fused.layer_bwd_s < plain.layer_fwd_s + plain.layer_bwd_s)
