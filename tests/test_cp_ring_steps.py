"""A context-parallel ring step as the code runs it: the later steps' kernels at their own (half) shapes under causal
load balancing, and torchtitan's repeat_kv (K, V expanded to every query head before SDPA) in the layer and in torch's
ring."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from capsim.analytic.layouts import Layouts
from capsim.analytic.ops import AttentionImpl, Op, OpKind, forward_layer_ops, layer_shape
from capsim.analytic.training import comms
from capsim.analytic.training.collectives import collective_s, placement
from capsim.analytic.training.compute import micro_batch_times, repeat_kv_ops, ring_attention_ops
from capsim.analytic.training.framework import get_framework, get_release
from capsim.calibration import perf_for
from capsim.specs.catalog import get_model
from capsim.specs.precision import Precision

LLAMA3 = get_model("llama-3-8b")  # 32 query heads, 8 KV heads
BF16 = Precision.preset("bf16")
H100 = perf_for("H100-SXM5-80GB", "datasheet")


def _f(x: object) -> float:
    return float(np.asarray(x, float).reshape(-1)[0])


def _attention_op(lay: Layouts, impl: AttentionImpl) -> Op:
    shape = layer_shape(LLAMA3, lay.micro_batch * lay.seq_len / lay.cp, lay.micro_batch, lay.tp, lay.ep, lay.sp)
    ops = forward_layer_ops(LLAMA3, shape, BF16.activations, impl)
    return next(o for o in ops if o.kind is OpKind.ATTENTION)


@pytest.mark.parametrize("impl", [AttentionImpl.FLASH, AttentionImpl.SDPA_FLASH])
def test_later_ring_steps_run_at_their_half_shapes(impl) -> None:
    """Step 0 is the causal local block; each of the cp - 1 later steps is all local queries against half the keys or
    the later half of the queries against all keys, and the slowest rank runs the slower kind every time."""
    cp = 4
    lay = Layouts.build(LLAMA3, cp=cp, dp=1, seq_len=8192, global_batch=1, micro_batch=1)
    op = _attention_op(lay, impl)
    seqs, heads, q, kv, d = op.shape
    local = _f(H100.op_s(op))
    half_kv = _f(H100.op_s(replace(op, shape=(seqs, heads, q, kv / 2.0, d), causal=False)))  # no mask in later steps
    half_q = _f(H100.op_s(replace(op, shape=(seqs, heads, q / 2.0, kv, d), causal=False)))
    expected = local + (cp - 1) * max(half_kv, half_q)
    t = micro_batch_times(LLAMA3, lay, BF16, H100, impl)
    assert float(t.layer_attn_fwd_s[0]) == pytest.approx(expected, rel=1e-9)
    # Both kernels on Hopper (FlashAttention-2 for SDPA_FLASH, cuDNN for FLASH): the later steps run without the mask,
    # at the published non-causal rate, above the causal one (arXiv 2407.08608v2 Fig. 5(c) vs 5(d)); priced causal,
    # each later step would cost more. (FLASH had one rate for both before the cuDNN bars: its ring then cost more
    # than cp local blocks, > cp * local * 1.001.)
    masked = _f(H100.op_s(replace(op, shape=(seqs, heads, q, kv / 2.0, d))))
    assert masked > half_kv * 1.05
    assert float(t.layer_attn_fwd_s[0]) < cp * local
    one = micro_batch_times(LLAMA3, Layouts.build(LLAMA3, cp=1, dp=1, seq_len=2048, global_batch=1, micro_batch=1),
                            BF16, H100, impl)
    assert float(one.layer_attn_fwd_s[0]) == pytest.approx(local, rel=1e-9)  # no CP: the local block alone


def test_torchtitan_releases_state_repeat_kv_from_their_model_code() -> None:
    for name, where in (("torchtitan-2024-04", "L196-197"), ("torchtitan-2024-12", "L201-202"),
                        ("torchtitan-2025-06", "L250-251")):
        rel = get_release(name)
        assert rel.framework.repeat_kv and "repeat_kv" in rel.cite["repeat_kv"] and where in rel.cite["repeat_kv"]
    later = get_release("torchtitan-2026-08")
    assert not later.framework.repeat_kv and "enable_gqa" in later.cite["repeat_kv"]
    assert not get_framework("megatron-core").repeat_kv


def test_repeat_kv_copies_every_query_head_and_sums_them_back() -> None:
    shape = layer_shape(LLAMA3, 8192, 1, 1, 1, False)
    (fwd,), (bwd,) = repeat_kv_ops(LLAMA3, shape, BF16.activations)
    own, every = 8192 * 8 * 256 * 2.0, 8192 * 32 * 256 * 2.0
    assert (fwd.bytes_read, fwd.bytes_written) == (own, every)
    assert (bwd.bytes_read, bwd.bytes_written) == (every, own)
    mha = get_model("llama-2-13b")  # every query head has its own K, V: repeat_kv returns x
    assert repeat_kv_ops(mha, layer_shape(mha, 4096, 1, 1, 1, False), BF16.activations) == ([], [])
    lay = Layouts.build(LLAMA3, dp=1, seq_len=8192, global_batch=1, micro_batch=1)
    plain, expanded = (micro_batch_times(LLAMA3, lay, BF16, H100, AttentionImpl.SDPA_FLASH, repeat_kv=r)
                       for r in (False, True))
    assert float(expanded.layer_fwd_s[0] - plain.layer_fwd_s[0]) == pytest.approx(float(H100.op_s(fwd)), rel=1e-9)
    assert float(expanded.layer_bwd_s[0] - plain.layer_bwd_s[0]) == pytest.approx(float(H100.op_s(bwd)), rel=1e-9)
    assert expanded.layer_attn_fwd_s[0] == plain.layer_attn_fwd_s[0]  # the kernel's FLOPs do not change


def test_torch_ring_moves_the_expanded_heads() -> None:
    """With repeat_kv the all-gather carries every query head's K, V (4x Llama 3's 8 KV heads) and the merge and
    accumulation passes cover them too."""
    cp = 8
    titan = get_release("torchtitan-2024-12").framework
    lay = Layouts.build(LLAMA3, cp=cp, dp=1, seq_len=65536, global_batch=1, micro_batch=1)
    t = replace(micro_batch_times(LLAMA3, lay, BF16, H100), layer_attn_fwd_s=np.zeros(1), layer_attn_bwd_s=np.zeros(1))
    fwd, _ = comms.cp_layer_s(H100, LLAMA3, lay, BF16, 8, t, titan)
    kv = 65536 / cp * LLAMA3.heads * (LLAMA3.head_dim + LLAMA3.v_dim) * 2.0
    assert fwd[0] == pytest.approx(float(collective_s(H100, "all_gather", cp * kv, placement(cp, 1, 8))))
    gqa, _ = comms.cp_layer_s(H100, LLAMA3, lay, BF16, 8, t, titan.with_(repeat_kv=False))
    assert fwd[0] > 3.0 * gqa[0]
    shape = layer_shape(LLAMA3, 65536 / cp, 1, 1, 1, False)
    own, every = (ring_attention_ops(LLAMA3, shape, np.array([cp]), BF16.activations, True, r) for r in (False, True))
    assert float(np.asarray(every[0].bytes)[0]) > float(np.asarray(own[0].bytes)[0])
    assert float(np.asarray(every[1].bytes)[0]) > float(np.asarray(own[1].bytes)[0])
