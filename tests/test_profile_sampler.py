"""The KV cache vLLM 0.2.3 sizes after its memory profile run: the larger of the forward's peak and the sampler's
(engines.yaml vllm-0.2 profile_sampler), on the DistServe OPT-13B deployment."""

import pytest

from capsim.analytic.memory import profile_sampler_bytes, serving_memory
from capsim.errors import SpecError
from capsim.sim.serving.fleet import engine_plan, kv_blocks
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.engine import get_engine

OPT, A100 = get_model("opt-13b"), get_accelerator("A100-SXM4-80GB")
# The DistServe launcher's flags (LLMServe/DistServe 8f13114, 2-start-api-server.py)
DISTSERVE = dict(max_batch=1024, max_batched_tokens=16384, gpu_memory_utilization=0.95, block_size=16)


def _plan(engine: str, **changes: object):
    return engine_plan(engine, OPT, A100, **{**DISTSERVE, **changes})


def test_the_sampler_peak_is_the_itemised_tensors_of_0_2_3():
    plan = _plan("vllm-0.2")
    # 16384 x 5120 fp16 model output + 1024 sampled rows x 5120 + 1024 x 50272 logits x (4 x 2 B + 26 B)
    expect = 16384 * 5120 * 2 + 1024 * 5120 * 2 + 1024 * 50272 * 34
    assert profile_sampler_bytes(OPT, plan, get_engine("vllm-0.2").profile_sampler) == expect == 1_928_527_872


def test_vllm_0_2_sizes_its_cache_after_the_larger_peak():
    eng = get_engine("vllm-0.2")
    plan = _plan("vllm-0.2")
    mem = serving_memory(OPT, plan, A100, profile_sampler=eng.profile_sampler)
    forward = 2 * 16384 * 20480 * 2 + 2 * 16384 * 5120 * 2  # fc1's output and ReLU's + two hidden-sized tensors
    assert mem.activations_bytes == max(forward, 1_928_527_872) == 1_928_527_872
    block = 16 * 2 * 40 * 5120 * 2  # K and V of 40 layers x 40 heads x 128, fp16, per 16-token block
    expect = int((0.95 * A100.memory_bytes - mem.weights_bytes - mem.activations_bytes) // block)
    assert kv_blocks(OPT, plan, A100, eng) == expect == 4059


def test_few_rows_leave_the_forward_peak():
    eng = get_engine("vllm-0.2")
    few = serving_memory(OPT, _plan("vllm-0.2", max_batch=8), A100, profile_sampler=eng.profile_sampler)
    generic = serving_memory(OPT, _plan("vllm-0.2", max_batch=8), A100)
    forward = 2 * 16384 * 20480 * 2 + 2 * 16384 * 5120 * 2
    assert few.activations_bytes == forward < generic.activations_bytes  # the generic one adds its head on top


def test_more_sampled_rows_never_give_more_blocks():
    eng = get_engine("vllm-0.2")
    blocks = [kv_blocks(OPT, _plan("vllm-0.2", max_batch=n), A100, eng) for n in (64, 256, 1024, 2048)]
    assert blocks == sorted(blocks, reverse=True) and blocks[0] > blocks[-1]


def test_releases_not_reread_keep_the_generic_peak():
    for name in ("vllm-0.2.6", "vllm-0.4", "vllm-v0", "vllm", "tensorrt-llm"):
        assert get_engine(name).profile_sampler is None
    plan = _plan("vllm-0.2.6")
    assert kv_blocks(OPT, plan, A100, get_engine("vllm-0.2.6")) == 4062


def test_a_bad_profile_sampler_is_refused():
    with pytest.raises(SpecError, match="profile_sampler"):
        get_engine("vllm-0.2").with_(profile_sampler=(4.0, -1.0))
