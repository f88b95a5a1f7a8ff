"""torchtitan's Llama without torch.compile: its RMSNorm, RoPE and SwiGLU run as torch eager's separate kernels
(capsim.analytic.eager), priced beyond the op list's fused kernels; a compiled block adds nothing."""

from __future__ import annotations

import pytest

from capsim.analytic.eager import FUSED, RMSNORM, ROPE, SWIGLU, Eager, YarnRope, apply, extra_ops
from capsim.analytic.layouts import Layouts
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.recompute import SacPolicy, SelectiveAc
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import get_framework
from capsim.calibration import perf_for
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.precision import Precision
from capsim.validation.harness import read_csv
from capsim.validation.training import predict_row

LLAMA8 = get_model("llama-3-8b")
BF16 = Precision.preset("bf16")


@pytest.mark.parametrize(("kernels", "fwd", "bwd"), [(RMSNORM, 36.0, 92.0), (ROPE, 20.0, 20.0), (SWIGLU, 10.0, 18.0)])
def test_bf16_bytes_are_the_dispatched_kernels(kernels, fwd: float, bwd: float) -> None:
    # benchmarks/eager_kernels.py: rmsnorm 36.01 / 92.01, rope 20.20 / 20.60 (freqs_cis reads left out), swiglu 10 / 18
    extra_f, extra_b = kernels.extra(2.0)
    assert (extra_f + kernels.fused[0] * 2.0, extra_b + kernels.fused[1] * 2.0) == (fwd, bwd)


def test_fp32_activations_drop_the_casts() -> None:
    # x.float() and type_as of an fp32 tensor launch nothing: pow, mean, mul, * weight = 28 bytes, the fused op 8
    assert RMSNORM.extra(4.0)[0] == 28.0 - 8.0
    assert SWIGLU.extra(4.0) == (2.0 * 4.0, 4.0 * 4.0)  # no casts in silu * up


def test_compile_fuses_the_blocks_but_not_the_final_norm() -> None:
    eager = get_framework("torchtitan-2024-12", "--activation_checkpoint.mode=selective")
    compiled = get_framework("torchtitan-2024-12", "--training.compile")
    fused_norm = get_framework("torchtitan-2024-12", "--model.norm_type=fused_rmsnorm")
    assert eager.eager() == Eager(norm=True, pointwise=True, final_norm=True)
    assert compiled.eager() == Eager(norm=False, pointwise=False, final_norm=True)  # only blocks are compiled
    assert fused_norm.eager() == Eager(norm=False, pointwise=True, final_norm=False)
    assert get_framework("megatron-core-0.14.0").eager() == FUSED


OP_POLICY = SelectiveAc(SacPolicy.OPS)


def _times(eager: Eager, sac: SelectiveAc = OP_POLICY):
    lay = Layouts.build(LLAMA8, dp=8, global_batch=16, seq_len=8192, micro_batch=2, recompute=1, zero_stage=3)
    return micro_batch_times(LLAMA8, lay, BF16, perf_for(get_accelerator("H100-SXM5-80GB")), sac=sac, eager=eager)


def test_each_eager_op_adds_time_and_the_op_policy_replays_it() -> None:
    full, pointwise, fused = _times(Eager(True, True, True)), _times(Eager(False, True)), _times(FUSED)
    for field in ("layer_fwd_s", "layer_bwd_s", "layer_selective_s"):
        assert getattr(full, field)[0] > getattr(pointwise, field)[0] > getattr(fused, field)[0]
    assert full.head_fwd_s[0] > pointwise.head_fwd_s[0] == fused.head_fwd_s[0]  # the final norm
    assert full.layer_gemm_fwd_s[0] == fused.layer_gemm_fwd_s[0]  # GEMMs untouched
    # the op policy recomputes every non-matmul op: the eager kernels' forward is replayed whole
    added_fwd = full.layer_fwd_s[0] - fused.layer_fwd_s[0]
    assert full.layer_selective_s[0] - fused.layer_selective_s[0] == pytest.approx(added_fwd, rel=1e-9)


def test_uncompiled_grand_teton_row_is_priced_slower_than_its_compiled_twin() -> None:
    rows = [r for r in read_csv(None, "training_torchtitan.csv", ("source",))
            if r["source"].endswith("table 1") and r["precision"] == "bf16"]
    eager, compiled = (next(r for r in rows if ("--training.compile" in r["flags"]) is c) for c in (False, True))
    slow, fast = predict_row(eager, "datasheet"), predict_row(compiled, "datasheet")
    assert slow.value < fast.value  # one price for both before the eager kernels were priced


# NeMo AutoModel 2025-10 (AM@8d9bfb9): TE RMSNorm, eager RoPE (its rotate-half for GQA, capsim.analytic.eager's
# HALVES form; complex fp32 for MLA) and dense MLP, the routed experts' activation its own compiled function.
def _extra_names(model_name: str, eager: Eager) -> tuple[set[str], dict[str, float]]:
    """(the rotate-half RoPE ops in the layer, the extra eager kernels' bytes by name)."""
    model = get_model(model_name)
    shape = layer_shape(model, 4096, 1, 1, 8, False, 1)
    ops = apply(forward_layer_ops(model, shape, BF16.activations), model, 4096, shape.heads, shape.kv_heads,
                eager.clamp, eager.yarn_rope, eager.fc1_bias)
    fwd, _ = extra_ops(ops, eager)
    return ({op.name for op in ops if op.name.startswith("rope_half")},
            {op.name: float(op.bytes_read + op.bytes_written) for op in fwd})


def test_automodel_prices_eager_rope_but_not_its_compiled_expert_activation() -> None:
    fw = get_framework("nemo-automodel-2025-10")
    assert fw.eager() == Eager(norm=False, pointwise=True, final_norm=False, yarn_rope=YarnRope.HALVES,
                               fc1_bias=True, experts=False)
    halves, extra = _extra_names("qwen3-30b-a3b", fw.eager())  # every layer MoE, TE norms
    assert halves and not extra  # RoPE is the rotate-half ops, the routed experts' activation compiled
    assert set(_extra_names("qwen3-30b-a3b", Eager(pointwise=True))[1]) == {"eager_rope", "eager_mlp_act"}
    # DeepSeek V3: MLA's RoPE keeps the complex fp32 form; its dense layers' silu * up are eager
    halves, mla = _extra_names("deepseek-v3", fw.eager())
    assert not halves and set(mla) == {"eager_rope", "eager_mlp_act"}
    assert mla["eager_rope"] == _extra_names("deepseek-v3", Eager(pointwise=True))[1]["eager_rope"]


@pytest.mark.parametrize("release", ["nemo-automodel-2026-04", "nemo-automodel-2026-07"])
def test_later_automodel_releases_run_fused_norm_and_rope(release: str) -> None:
    assert get_framework(release).eager() == Eager(experts=True)  # TE / compiled norm, TE fused RoPE
