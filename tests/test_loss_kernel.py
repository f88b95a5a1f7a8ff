"""Megatron's unfused vocab-parallel cross-entropy runs each step as its own pass over the logits
(capsim.analytic.loss): the releases that run it price those passes, the others the op list's one-pass loss."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.analytic.layouts import Layouts
from capsim.analytic.loss import LOSS_OP, LossKernel, loss_ops, megatron_ce_ops
from capsim.analytic.ops import backward_ops, head_ops
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import RELEASES, get_framework
from capsim.calibration import perf_for
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.precision import DType, Precision

LLAMA3 = get_model("llama-3-8b")


def _per_logit(ops: list, logits: float) -> tuple[float, float]:
    return (sum(float(op.bytes_read) for op in ops) / logits, sum(float(op.bytes_written) for op in ops) / logits)


def test_megatron_passes_move_the_bytes_of_each_torch_op():
    logits = 4096.0 * 128256
    fwd, bwd = megatron_ce_ops(logits, DType.BF16)
    # .float() (2 in, 4 out), max (4), -= (4, 4), exp (4, 4), sum (4), div_ (4, 4)
    assert _per_logit(fwd, logits) == pytest.approx((2 + 5 * 4, 4 * 4))
    # mul_ by the loss gradient (4, 4), the cast back to bf16 (4, 2)
    assert _per_logit(bwd, logits) == pytest.approx((8, 4 + 2))
    assert len(fwd) == 6 and len(bwd) == 2


def test_fused_kernel_keeps_the_one_pass_loss():
    head = head_ops(LLAMA3, 4096.0, 1, DType.BF16)
    same, bwd = loss_ops(head, LossKernel.FUSED, DType.BF16)
    assert same is head and bwd is None
    replaced, bwd = loss_ops(head, LossKernel.MEGATRON_FP32, DType.BF16)
    assert LOSS_OP not in [op.name for op in replaced] and len(bwd) == 2
    # the one-pass loss moves fewer bytes each way than Megatron's passes
    one = next(op for op in head if op.name == LOSS_OP)
    extra = [op for op in replaced if op.name.startswith("ce_")]
    assert sum(float(o.bytes_read + o.bytes_written) for o in extra) > float(one.bytes_read + one.bytes_written)
    one_b = backward_ops([one])[0]
    assert sum(float(o.bytes_read + o.bytes_written) for o in bwd) > float(one_b.bytes_read + one_b.bytes_written)


@pytest.mark.parametrize("vocab_scale", [1, 4])
def test_head_time_grows_by_the_extra_passes_with_the_vocabulary(vocab_scale):
    model = LLAMA3.with_(vocab=32000 * vocab_scale)
    perf = perf_for(get_accelerator("H100-SXM5-80GB"), "datasheet")
    lay = Layouts.build(model, dp=1, global_batch=1, seq_len=4096, tp=1, pp=1, v=1, cp=1, micro_batch=1, sp=False,
                        recompute=0, ep=1, etp=1, distributed_optimizer=False, zero_stage=0)
    prec = Precision.preset("bf16")
    fused = micro_batch_times(model, lay, prec, perf)
    megatron = micro_batch_times(model, lay, prec, perf, loss=LossKernel.MEGATRON_FP32)
    logits = 4096.0 * model.vocab
    # the forward's extra bytes: (2 + 20 + 16) - (2 + 4) per logit, at no more than the streaming bandwidth
    extra_fwd = float(megatron.head_fwd_s[0] - fused.head_fwd_s[0])
    assert extra_fwd >= 32.0 * logits / perf.params.memory.bandwidth_bytes_per_s
    assert float(megatron.head_bwd_s[0]) > float(fused.head_bwd_s[0])
    np.testing.assert_allclose(megatron.layer_fwd_s, fused.layer_fwd_s)  # the layers are untouched


def test_releases_running_megatrons_unfused_loss():
    assert get_framework("nemo-24.07").loss_kernel is LossKernel.MEGATRON_FP32
    assert get_framework("megatron-lm-2021").loss_kernel is LossKernel.MEGATRON_FP32
    assert get_framework("megatron-core-0.14.0").loss_kernel is LossKernel.MEGATRON_FP32
    # TE's fused loss (Megatron-Bridge) and torch's cross_entropy (FSDP2 stacks) keep the one-pass loss
    assert get_framework("megatron-bridge-26.04.01").loss_kernel is LossKernel.FUSED
    assert get_framework("torchtitan-2024-12").loss_kernel is LossKernel.FUSED
    for release in RELEASES.values():  # Megatron's passes only where the loss keeps Megatron's fp32 softmax
        if release.framework.loss_kernel is LossKernel.MEGATRON_FP32:
            assert release.framework.loss_copy.value == "fp32"
            assert "cross_entropy.py" in release.cite["loss_kernel"]


def test_the_fused_loss_flag_keeps_the_one_pass_loss():
    # NeMo 24.07's Llama 3 launcher configs set cross_entropy_loss_fusion: Megatron-Core's fused loss, not read pass
    # by pass (the generic one-pass loss); the Llama 2 and GPT-3 configs leave the unfused loss
    release = RELEASES[next(n for n in RELEASES if n.value == "nemo-24.07")]
    fused, _ = release.configure("--cross-entropy-loss-fusion")
    unfused, _ = release.configure("--gradient-accumulation-fusion")
    assert fused.loss_kernel is LossKernel.FUSED and unfused.loss_kernel is LossKernel.MEGATRON_FP32
