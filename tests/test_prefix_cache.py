"""Prefix caching: the bookkeeping (full blocks only, the last prompt token recomputed, held vs evictable, LRU) and
its effect on a simulated replica's prefill work, on where the engine release has it and off where it had not."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import SpecError, get_accelerator, get_model, load_calibration
from capsim.sim.serving import ServeConfig, Workload, engine_plan
from capsim.sim.serving.fleet import Fleet, simulate
from capsim.sim.serving.prefix import PrefixCache
from capsim.sim.serving.presets import WorkloadSpec, build_workload
from capsim.sim.serving.workload import Lengths


def test_system_prompt_is_computed_once_then_served_in_full_blocks():
    cache = PrefixCache(16)
    hit, pinned = cache.admit(0, 500, 900)  # first request: nothing cached yet
    assert (hit, pinned) == (0, 0)
    assert cache.donate(0, 500) == 31  # its 31 full blocks (496 tokens) of the 500-token prompt become the group's
    hit, pinned = cache.admit(0, 500, 700)
    assert (hit, pinned) == (496, 0)  # already held by the first request
    assert cache.donate(0, 500) == 0
    assert cache.release(0) == 0 and cache.release(0) == 31  # the last user leaves: 31 evictable blocks
    assert cache.idle_blocks == 31
    hit, pinned = cache.admit(0, 500, 480)  # a prompt shorter than the prefix recomputes its last token
    assert (hit, pinned) == (464, 31) and cache.idle_blocks == 0
    assert cache.hit_rate == pytest.approx((496 + 464) / (900 + 700 + 480))


def test_conversation_history_grows_and_idle_groups_are_evicted_lru():
    cache = PrefixCache(16)
    for conv in (1, 2, 3):
        cache.admit(conv, 0, 100)
        assert cache.donate(conv, 100 + 60) == 10  # prompt and output of the first turn, 160 tokens
        assert cache.release(conv) == 10
    cache.admit(1, 160, 260)  # conversation 1 again: touched, held
    assert cache.trim(15) == 10  # 20 idle blocks in 15 free: the least recent idle group (2) goes
    assert 2 not in cache.tokens and set(cache.idle) == {3}
    assert cache.admit(2, 160, 260) == (0, 0)  # evicted: computed again
    assert cache.trim(0) == 10 and not cache.idle and cache.idle_blocks == 0


def _two_turns(engine: str, groups: bool) -> tuple:
    """Two requests of a 900-token prompt whose first 500 tokens are a shared system prompt, 100 s apart (each runs
    alone): (the fleet's step table, the run's per-request frame, its summary)."""
    model, acc = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
    perf = load_calibration("A100-SXM4-80GB").perf()
    wl = Workload("two", np.full(2, 900), np.full(2, 20), np.array([0.0, 100.0]),
                  prefix_group=np.zeros(2, np.int64) if groups else None,
                  prefix_tokens=np.full(2, 500) if groups else None)
    plan = engine_plan(engine, model, acc)
    res = simulate(model, plan, acc, perf, wl, ServeConfig(engine=engine))
    return Fleet(model, plan, acc, perf, wl, ServeConfig(engine=engine)).table, res.requests, res.summary


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_second_request_computes_only_its_uncached_tokens(engine):
    """Prefix caching on (vLLM V1, SGLang): the second request finds the system prompt's 31 full blocks (496 of its
    500 tokens, block size 16) and prefills the other 404 tokens attending over the cached 496."""
    table, req, summary = _two_turns(engine, groups=True)
    assert table.engine.prefix_caching and table.plan.block_size == 16
    full = table.step_s(900, 1, 900 * 901 / 2, 900.0, 0, 0.0, 1)
    cached = table.step_s(404, 1, 404 * 496 + 404 * 405 / 2, 900.0, 0, 0.0, 1)
    ttft = req["ttft_s"].to_numpy() - table.engine.ttft_offset_s
    assert ttft == pytest.approx([full, cached], rel=1e-12)
    assert cached < full
    assert summary["prefix_cache_hit_rate"] == pytest.approx(496 / 1800)


@pytest.mark.parametrize("engine", ["vllm-v0", "nim-1.8"])
def test_engines_without_prefix_caching_compute_every_prompt(engine):
    """Off where the release had it off (engines.yaml: vLLM V0 --enable-prefix-caching off by default; NIM 1.x
    KV cache reuse off unless NIM_ENABLE_KV_CACHE_REUSE=1): the shared prefix changes nothing."""
    table, req, summary = _two_turns(engine, groups=True)
    _, plain, plain_summary = _two_turns(engine, groups=False)
    assert not table.engine.prefix_caching
    assert req["ttft_s"].tolist() == plain["ttft_s"].tolist()
    assert req["ttft_s"].iloc[0] == pytest.approx(req["ttft_s"].iloc[1], rel=1e-12)
    assert summary["prefix_cache_hit_rate"] == plain_summary["prefix_cache_hit_rate"] == 0.0


def test_workload_spec_shared_system_prompt():
    wl = build_workload(WorkloadSpec(lengths=Lengths.uniform((100, 2000), (10, 20)), rate_rps=1.0, requests=50,
                                     shared_prefix_tokens=400))
    assert (wl.prefix_group == 0).all()
    assert (wl.prefix_tokens == np.minimum(wl.prompt_tokens, 400)).all()
    assert build_workload(WorkloadSpec(lengths=Lengths.fixed(10, 10), rate_rps=1.0, requests=5)).prefix_group is None
    with pytest.raises(SpecError, match="shared_prefix_tokens"):
        build_workload(WorkloadSpec(lengths=Lengths.fixed(10, 10), rate_rps=1.0, requests=5, shared_prefix_tokens=-1))
