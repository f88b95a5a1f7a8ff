"""trtllm-bench's max_batch_size / max_num_tokens heuristic (capsim/analytic/trtllm_bench.py), worked by hand from
TensorRT-LLM's bench/build/tuning.py finetune_setting and calc_engine_setting, and the serving flag bench= that
applies it (capsim/validation/serving.py _plan)."""

import pytest

from capsim.analytic.params import param_counts
from capsim.analytic.trtllm_bench import finetune, head_size, stored_elements, trtllm_bench_limits
from capsim.sim.serving import engine_plan
from capsim.specs.catalog import get_accelerator, get_model
from capsim.validation.harness import DataError
from capsim.validation.serving import _plan, row_software


@pytest.mark.parametrize(("requests", "isl", "osl", "pp", "want"), [
    (10, 1024, 1024, 1, (64, 2048)),  # min batch 64, min tokens 2048
    (100, 1024, 1024, 1, (128, 2048)),  # < 256: up to 32
    (700, 8192, 1024, 1, (768, 6656)),  # < 1024: up to 128; 700 x 9 = 6300 < 8192: up to 512
    (1634, 1024, 1024, 1, (1792, 3328)),  # >= 1024: up to 256; 3268 < 4096: up to 256
    (5000, 1024, 1024, 1, (4096, 8192)),  # capped at 4096 requests; 8192 tokens: up to 1024
    (5000, 1024, 128, 1, (4096, 32768)),  # tokens capped at 32768
    (1000, 1024, 1024, 2, (512, 2048)),  # divided by pp
])
def test_finetune_rounds_as_trtllm_bench_does(requests, isl, osl, pp, want):
    assert finetune(requests, isl, osl, pp) == want


def test_head_size_is_the_configs_or_hidden_over_heads_for_mla():
    assert head_size(get_model("qwen3-30b-a3b")) == 128  # config.json head_dim (hidden // heads would be 64)
    assert head_size(get_model("deepseek-r1")) == 7168 // 128  # no head_dim in an MLA config: 56


def test_an_nvfp4_checkpoint_stores_half_an_element_and_a_scale_per_16_for_its_quantized_weights():
    m = get_model("llama-3.3-70b")
    c = param_counts(m)
    assert stored_elements(m, "fp8") == c.decoder + c.embedding + c.lm_head + c.other
    assert stored_elements(m, "nvfp4") == pytest.approx(c.decoder * 9 / 16 + c.embedding + c.lm_head + c.other)


def test_llama_fp8_on_two_h200_worked_by_hand():
    m, acc = get_model("llama-3.3-70b"), get_accelerator("H200-SXM-141GB")
    plan = engine_plan("tensorrt-llm", m, acc, tp=2, quantization="fp8", kv_cache_dtype="fp8")
    lim = trtllm_bench_limits(m, plan, acc, 1024, 1024)
    kv = 2 * 80 * 8 * 128 * 1.0 / 2**30  # GiB per token, FP8
    engine = stored_elements(m, "fp8") * 1.0 / 2**30
    requests = (2 * acc.memory_bytes / 2**30 - engine) * 0.90 / (kv * 2048)
    assert 512 < requests < 640
    assert (lim.max_batch_size, lim.max_num_tokens) == (640, 2048)  # 128 x ceil; tokens max(2048, 1024 + 640)


def test_long_prompts_lift_max_num_tokens_to_the_prompt_plus_the_batch():
    m, acc = get_model("llama-3.3-70b"), get_accelerator("B200")
    plan = engine_plan("tensorrt-llm", m, acc, tp=1, quantization="nvfp4", kv_cache_dtype="fp8")
    lim = trtllm_bench_limits(m, plan, acc, 32768, 1024)
    assert lim.max_num_tokens == 32768 + lim.max_batch_size  # general.py get_settings, chunked prefill off


def test_attention_dp_applies_the_limits_per_rank():
    m, acc = get_model("qwen3-235b-a22b"), get_accelerator("B200")
    plan = engine_plan("tensorrt-llm", m, acc, tp=4, ep=4, quantization="nvfp4", kv_cache_dtype="fp8",
                       dp_attention=True)
    lim = trtllm_bench_limits(m, plan, acc, 1024, 8192)
    row = {**ROW, "model": "qwen3-235b-a22b", "gpu": "B200", "gpus": "4", "tp": "4", "precision": "fp4",
           "input_tokens": "1024", "output_tokens": "8192",
           "flags": "backend=pytorch;enable_attention_dp=1;moe_expert_parallel_size=4;kv_cache_dtype=fp8;"
                    "bench=trtllm-bench"}
    replica = _plan(row, row_software(row))
    assert (replica.max_batch, replica.max_batched_tokens) == (4 * lim.max_batch_size, 4 * lim.max_num_tokens)


def test_an_untuned_scheme_keeps_the_llm_api_defaults():
    m, acc = get_model("llama-3.3-70b"), get_accelerator("H200-SXM-141GB")
    plan = engine_plan("tensorrt-llm", m, acc, tp=2, quantization="int4")
    assert trtllm_bench_limits(m, plan, acc, 1024, 1024) is None  # build.py: not in TUNED_QUANTS


ROW = {"source": "t", "model": "llama-3.3-70b", "gpu": "H200-SXM-141GB", "gpus": "2", "tp": "2", "precision": "fp8",
       "engine": "tensorrt-llm", "engine_version": "1.2", "workload": "max-load", "trace": "", "batch": "3000",
       "input_tokens": "1024", "output_tokens": "1024", "rate_rps": "", "metric": "output_tokens_per_s",
       "value": "1", "unit": "tok/s", "flags": "backend=pytorch;bench=trtllm-bench"}


def test_a_row_run_by_trtllm_bench_gets_its_limits():
    plan = _plan(ROW, row_software(ROW))
    assert (plan.max_batch, plan.max_batched_tokens) == (640, 2048)
    plain = {**ROW, "flags": "backend=pytorch"}
    assert (_plan(plain, row_software(plain)).max_batch, _plan(plain, row_software(plain)).max_batched_tokens) \
        == (2048, 8192)  # the engine profile's LLM API defaults


def test_a_stated_limit_wins_over_the_heuristic():
    row = {**ROW, "flags": "backend=pytorch;bench=trtllm-bench;max_batch_size=100"}
    plan = _plan(row, row_software(row))
    assert (plan.max_batch, plan.max_batched_tokens) == (100, 2048)


@pytest.mark.parametrize("flags", ["bench=vllm-bench", "bench=genai-perf"])
def test_an_unknown_bench_tool_is_malformed(flags):
    with pytest.raises(DataError):
        row_software({**ROW, "flags": flags})


def test_trtllm_bench_runs_only_tensorrt_llm():
    with pytest.raises(DataError):
        row_software({**ROW, "engine": "vllm", "engine_version": "0.10.0", "flags": "bench=trtllm-bench"})
