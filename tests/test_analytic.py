import numpy as np
import pytest

from capsim import AttentionImpl, Phase, StepBatch, get_model, param_counts, training_layer_ops
from capsim.analytic.flops import (
    matmul_params,
    megatron_iteration_flops,
    oplist_training_flops,
    training_flops_per_token,
)
from capsim.analytic.ops import MATMUL_KINDS, OpKind, backward_ops, serving_layer_ops, total

PUBLISHED = {  # Acceptance figures of the foundation issue (billions), within 1%
    "gpt3-175b": 174.6, "llama-2-7b": 6.74, "llama-2-70b": 68.98, "llama-3-8b": 8.03, "llama-3-405b": 405.8,
    "mixtral-8x7b": 46.7, "bert-base": 0.110, "gpt2-124m": 0.124, "t5-base": 0.223,
}


@pytest.mark.parametrize("name, billions", sorted(PUBLISHED.items()))
def test_param_counts_match_published(name, billions):
    assert param_counts(get_model(name)).total / 1e9 == pytest.approx(billions, rel=0.01)


def test_mixtral_active_params():
    pc = param_counts(get_model("mixtral-8x7b"))
    assert pc.active / 1e9 == pytest.approx(12.9, rel=0.01)
    assert pc.embedding == 32000 * 4096 and pc.lm_head == 32000 * 4096


@pytest.mark.parametrize("name", ["gpt-1.7b", "gpt-22b", "gpt-175b", "gpt-1008b"])
@pytest.mark.parametrize("full", [False, True])
def test_op_list_reproduces_megatron_iteration_flops_exactly(name, full):
    model = get_model(name)
    ops = oplist_training_flops(model, 4, 2048, recompute_full=full)
    assert ops == pytest.approx(megatron_iteration_flops(model, 4, 2048, recompute_full=full), rel=1e-12)


def test_flops_per_token_is_6n_plus_attention():
    model = get_model("llama-2-7b")
    s = 4096
    per_token = training_flops_per_token(model, s)
    assert per_token == pytest.approx(6 * matmul_params(model) + 12 * model.layers * s * model.q_dim)
    gemm_per_token = total(training_layer_ops(model, 1, s), kinds=[OpKind.GEMM]) / s
    assert 3 * gemm_per_token * model.layers + 6 * model.vocab * model.hidden == pytest.approx(6 * matmul_params(model))


@pytest.mark.parametrize("tp, sp, selective, coeff", [
    (1, False, False, lambda a, s, h, t: 34 + 5 * a * s / h),
    (8, False, False, lambda a, s, h, t: 10 + 24 / t + 5 * a * s / (h * t)),
    (8, True, False, lambda a, s, h, t: 34 / t + 5 * a * s / (h * t)),
    (8, False, True, lambda a, s, h, t: 10 + 24 / t),
    (8, True, True, lambda a, s, h, t: 34 / t),
])
def test_activation_bytes_per_layer_match_korthikanti_table2(tp, sp, selective, coeff):
    model = get_model("gpt-175b")
    b, s = 2, 2048
    ops = training_layer_ops(model, b, s, tp=tp, sp=sp, attention=AttentionImpl.UNFUSED, dropout=True)
    saved = sum(op.saved_bytes(tp, sp, selective) for op in ops)
    assert saved / (s * b * model.hidden) == pytest.approx(coeff(model.heads, s, model.hidden, tp))


def test_backward_gemms_transpose_and_keep_flops():
    fwd = [op for op in training_layer_ops(get_model("gpt2"), 2, 512) if op.name == "qkv"]
    dgrad, wgrad = backward_ops(fwd)
    m, n, k = fwd[0].shape
    assert dgrad.shape == (m, k, n) and wgrad.shape == (k, n, m)
    assert dgrad.flops == wgrad.flops == fwd[0].flops


def test_flops_are_linear_in_layers():
    base = get_model("llama-2-7b")
    f = [training_flops_per_token(base.with_(layers=n), 2048) for n in (8, 16, 24)]
    assert f[2] - f[1] == pytest.approx(f[1] - f[0])
    assert f[1] - f[0] == pytest.approx(8 * (f[0] - training_flops_per_token(base.with_(layers=7), 2048)))


def test_serving_ops_scale_gemms_with_tokens_and_attention_with_context():
    model = get_model("llama-2-7b")
    short, long_ = StepBatch.decode(16, 100), StepBatch.decode(16, 1000)
    a, b = serving_layer_ops(model, short), serving_layer_ops(model, long_)
    gemm = lambda ops: total(ops, kinds=[OpKind.GEMM])  # noqa: E731
    assert gemm(a) == gemm(b)
    attn = lambda ops: next(o for o in ops if o.kind is OpKind.ATTENTION)  # noqa: E731
    assert attn(b).bytes_read > 9 * attn(a).bytes_read
    assert total(serving_layer_ops(model, StepBatch.prefill(2, 512)), kinds=MATMUL_KINDS) > 0


def test_vectorised_ops_accept_arrays():
    tp = np.array([1, 2, 4, 8])
    ops = training_layer_ops(get_model("gpt-22b"), 1, 2048, tp=tp, phase=Phase.BACKWARD)
    flops = total(ops, kinds=MATMUL_KINDS)
    assert flops.shape == (4,) and np.allclose(flops * tp, flops[0])
