import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim import Layouts, ServePlan, TrainPlan, get_accelerator, get_model, serving_memory, training_memory
from capsim.analytic.memory import kv_cache_bytes_per_token


def test_kv_cache_bytes_per_token():
    assert kv_cache_bytes_per_token(get_model("llama-2-7b"), 2) == 2 * 32 * 4096 * 2  # 0.5 MiB per token
    assert kv_cache_bytes_per_token(get_model("llama-3-70b"), 2) == 2 * 80 * 8 * 128 * 2  # GQA: 8 KV heads
    assert kv_cache_bytes_per_token(get_model("llama-3-70b"), 1, tp=16) == 2 * 80 * 1 * 128  # one replicated head


@given(st.integers(1, 100_000), st.integers(1, 100_000))
def test_kv_bytes_are_linear_in_tokens(a, b):
    per = kv_cache_bytes_per_token(get_model("mixtral-8x7b"), 2)
    assert per * (a + b) == pytest.approx(per * a + per * b)


def test_serving_memory_verdicts():
    acc = get_accelerator("H100-SXM5-80GB")
    model = get_model("llama-3-70b")
    fits = serving_memory(model, ServePlan(tp=4, max_batch=128), acc, context_tokens=2048)
    assert fits.fits and fits.max_kv_tokens >= 128 * 2048
    crowded = serving_memory(model, ServePlan(tp=4, max_batch=512), acc, context_tokens=2048)
    assert not crowded.fits and crowded.max_kv_tokens == fits.max_kv_tokens
    too_big = serving_memory(model, ServePlan(tp=1), acc, context_tokens=2048)
    assert not too_big.fits and too_big.kv_cache_bytes < 0
    int4 = serving_memory(model, ServePlan(tp=1, max_batch=128, quantization="int4"), acc, context_tokens=1024)
    assert int4.weights_bytes == pytest.approx(fits.weights_bytes, rel=1e-9)  # 4 bits on 1 GPU = 16 bits on 4


def test_training_memory_fits_flag_against_capacity():
    acc = get_accelerator("A100-SXM4-80GB")
    model = get_model("gpt-175b")
    ok = training_memory(model, TrainPlan(tp=8, pp=8, global_batch=64, recompute="full", precision="fp16"), accelerator=acc)
    bad = training_memory(model, TrainPlan(tp=8, global_batch=8, precision="fp16"), accelerator=acc)
    assert ok.fits and not bad.fits and bad.shortfall_bytes > 0


layouts = st.fixed_dictionaries({
    "dp": st.sampled_from([1, 2, 4, 8]), "tp": st.sampled_from([1, 2, 4]), "pp": st.sampled_from([1, 2, 4]),
    "micro_batch": st.sampled_from([1, 2, 4]), "zero_stage": st.integers(0, 3),
    "recompute": st.integers(0, 2), "sp": st.booleans(), "m": st.sampled_from([1, 4, 16]),
})


def _mem(model, **kw):
    m = kw.pop("m")
    kw["sp"] = kw["sp"] and kw["tp"] > 1
    lay = Layouts.build(model, global_batch=kw["dp"] * kw["micro_batch"] * m, **kw)
    return float(training_memory(model, lay).total_bytes[0])


@settings(max_examples=150, deadline=None)
@given(layouts, st.sampled_from(["gpt-7.5b", "llama-2-7b", "mixtral-8x7b"]))
def test_memory_never_rises_with_zero_tp_or_pp(kw, name):
    model = get_model(name)
    base = _mem(model, **dict(kw))
    if kw["zero_stage"] < 3:
        assert _mem(model, **{**kw, "zero_stage": kw["zero_stage"] + 1}) <= base * (1 + 1e-12)
    if kw["tp"] < 8:
        assert _mem(model, **{**kw, "tp": kw["tp"] * 2}) <= base * (1 + 1e-12)
    if kw["pp"] < 8:
        assert _mem(model, **{**kw, "pp": kw["pp"] * 2}) <= base * (1 + 1e-12)


def test_vectorised_memory_matches_per_plan():
    model = get_model("llama-2-13b")
    plans = [TrainPlan(dp=d, tp=t, pp=p, micro_batch=1, global_batch=64, recompute=r, zero_stage=z)
             for d, t, p, r, z in [(8, 1, 1, "full", 1), (2, 4, 1, "selective", 0), (1, 4, 2, "none", 0),
                                   (4, 2, 1, "none", 3)]]
    lay = Layouts.from_plans(model, plans)
    vec = training_memory(model, lay).total_bytes
    one = [training_memory(model, p).total_bytes for p in plans]
    assert np.allclose(vec, one)


def test_moe_combine_keeps_the_expert_outputs_only_where_it_merges_the_probabilities():
    # Megatron-Core <= 0.12 merges the router probabilities in the combine's unpermute, which keeps each token's k
    # expert outputs (k x hidden 16-bit values per token and layer); from 0.13 they scale the experts' activation.
    model = get_model("qwen3-30b-a3b")
    plan = TrainPlan(dp=8, ep=8, micro_batch=2, global_batch=16, seq_len=4096, distributed_optimizer=True)
    merged = training_memory(model, plan)
    summed = training_memory(model, plan, combine_saves=False)
    per_layer = 2 * 4096 * model.top_k * model.hidden * 2  # tokens x k x hidden x bf16
    assert merged.activations_bytes - summed.activations_bytes == pytest.approx(per_layer * model.layers)
    assert merged.model_states_bytes == summed.model_states_bytes


def test_loss_copy_bytes_set_the_logits_memory_of_the_last_stage():
    # the logits of the LM head (bf16) plus the loss's copy: fp32 (4 B), bf16 log_softmax (2 B) or none (TE in place)
    model = get_model("llama-3-8b")
    plan = TrainPlan(micro_batch=2, global_batch=2, seq_len=4096)
    temp = {b: training_memory(model, plan, loss_copy_bytes=b).temporary_bytes for b in (4.0, 2.0, 0.0)}
    logits = 2 * 4096 * model.vocab
    assert temp[4.0] - temp[0.0] == pytest.approx(4 * logits)
    assert temp[2.0] - temp[0.0] == pytest.approx(2 * logits)


def test_releases_state_the_combine_and_the_loss():
    from capsim.analytic.training import release_for
    from capsim.analytic.training.release import LossCopy

    bridge = release_for("megatron-core", "megatron-bridge-26.02").configure("")[0]
    nemo = release_for("megatron-core", "nemo-24.07").configure("")[0]
    automodel = release_for("fsdp2", "nemo-automodel-2025-10").configure("")[0]
    assert (bridge.moe_combine_saves, bridge.loss_copy) == (False, LossCopy.NONE)
    assert (nemo.moe_combine_saves, nemo.loss_copy) == (True, LossCopy.FP32)
    assert automodel.loss_copy is LossCopy.ACTIVATION and automodel.loss_copy_bytes(2.0) == 2.0


def test_fp8_keeps_the_attention_output_in_16_bits_beside_the_projections_copy():
    # TE's fused attention saves its bf16 output for its own backward; under FP8 the output projection keeps an FP8
    # copy of it too (1 byte a value), so per layer: q_heads x head_dim x (2 + 1) bytes a token; selective recompute
    # (the core checkpointed) drops the 16-bit one.
    from capsim.analytic.memory import saved_by_class
    from capsim.analytic.primitives import Saved
    from capsim.specs.precision import Precision

    model = get_model("llama-3-8b")
    lay = Layouts.from_plans(model, [TrainPlan(micro_batch=1, global_batch=1, seq_len=4096)])
    fp8 = saved_by_class(model, lay, Precision.preset("fp8"))
    bf16 = saved_by_class(model, lay, Precision.preset("bf16"))
    o = 4096 * model.heads * model.head_dim
    assert float(np.asarray(fp8[Saved.CORE]).ravel()[0]) - float(np.asarray(bf16[Saved.CORE]).ravel()[0]) == \
        pytest.approx(2 * o)
