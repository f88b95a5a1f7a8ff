"""TensorRT-LLM's GUARANTEED_NO_EVICT admission (engines.yaml kv_reservation: whole_sequence): a request is admitted
only when the blocks of its whole sequence (prompt + its output tokens) fit beside those the running requests
reserved, and nothing is ever preempted; every other engine keeps its per-step allocation and preemption."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import SpecError, get_accelerator, get_model, load_calibration
from capsim.sim.serving import Lengths, ServeConfig, Workload, engine_plan, renewal
from capsim.sim.serving.fleet import Fleet
from capsim.sim.serving.kv import DecodeSet, ReservedDecodeSet, blocks_for
from capsim.sim.serving.state import Requests
from capsim.specs.engine import KvReservation, engines, get_engine
from capsim.specs.engine_flags import apply_flags

MODEL, ACC = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
PERF = load_calibration("A100-SXM4-80GB").perf()
NO_EVICT = {"tensorrt-llm", "tensorrt-llm-0.14", "tensorrt-llm-0.11", "tensorrt-llm-0.10", "nim-1.8"}


def run(engine, wl: Workload, fast: bool = True, memory: float = 0.25, replicas: int = 1, **kw) -> Fleet:
    plan = engine_plan(engine, MODEL, ACC, gpu_memory_utilization=memory, replicas=replicas)
    fleet = Fleet(MODEL, plan, ACC, PERF, wl, ServeConfig(engine=engine, fast=fast, **kw))
    fleet.run()
    return fleet


def burst(n: int = 300, p: int = 500, o: int = 500) -> Workload:
    return Workload("burst", np.full(n, p), np.full(n, o), np.zeros(n))


def test_the_trtllm_executor_profiles_reserve_whole_sequences_and_the_others_per_step():
    for name, eng in engines().items():
        want = KvReservation.WHOLE_SEQUENCE if name in NO_EVICT else KvReservation.PER_STEP
        assert eng.kv_reservation is want, name


def test_reserved_set_takes_the_whole_sequence_at_admission_and_nothing_per_step():
    req = Requests(np.array([100, 33]), np.array([60, 1]), None)
    kv, plain = ReservedDecodeSet(req, 16, 1000), DecodeSet(req, 16, 1000)
    assert kv.need(0) == blocks_for(160, 16) == 10 and plain.need(0) == blocks_for(100, 16) == 7
    assert kv.need(1) == blocks_for(34, 16) == 3
    kv.admit(0, kv.need(0))
    req.gen[0] = 1
    kv.join(0)
    assert kv.used == 10 and kv.demand(0) == 0 and kv.cum_demand(200) == 0
    assert kv.run_length() == 59  # to its last token: blocks never run short
    assert kv.advance(59) == [0] and kv.used == 0  # the whole reservation comes back


def test_no_evict_never_preempts_where_per_step_allocation_does():
    wl = burst()
    trt = get_engine("tensorrt-llm")
    held = run(trt, wl)
    stepwise = run(trt.with_(kv_reservation=KvReservation.PER_STEP), wl)
    assert sum(held.req.preemptions) == 0 and held.fin_count == [1] * wl.size
    assert sum(stepwise.req.preemptions) > 0  # the same cache with per-step blocks runs short


def test_no_evict_admits_exactly_the_sequences_whose_whole_blocks_fit():
    p, o = 500, 500
    fleet = run("tensorrt-llm", burst(300, p, o))
    rep = fleet.replicas[0]
    t = np.asarray(rep.timeline, float).reshape(-1, 5)  # (time, decoding, prefilling, waiting, blocks used)
    per_seq = blocks_for(p + o, fleet.plan.block_size)
    cap = min(fleet.blocks // per_seq, fleet.plan.max_batch)
    assert cap < 300  # the cache, not the batch limit, binds
    assert (t[:, 1] + t[:, 2]).max() == cap  # admits while a whole sequence fits, and only then
    assert (t[:, 4] <= fleet.blocks).all() and (t[:, 4] % per_seq == 0).all()  # blocks held = whole reservations


@pytest.mark.parametrize("prefill", [0, 1])
def test_no_evict_fast_mode_equals_step_mode(prefill):
    rng = np.random.default_rng(1)
    p, o = Lengths.uniform((1, 1200), (50, 900)).draw(200, rng)
    wl = Workload("mixed", p, o, renewal(30.0, 200, None, rng))
    kw = dict(replicas=2, prefill_replicas=prefill, router="least-outstanding") if prefill else {}
    fast, step = run("tensorrt-llm", wl, True, 0.22, **kw), run("tensorrt-llm", wl, False, 0.22, **kw)
    for col in ("start_s", "first_s", "finish_s"):
        np.testing.assert_allclose(getattr(fast.req, col), getattr(step.req, col), rtol=1e-9, atol=1e-9)
    assert sum(fast.req.preemptions) == sum(step.req.preemptions) == 0
    stepwise = run(get_engine("tensorrt-llm").with_(kv_reservation=KvReservation.PER_STEP), wl, True, 0.22, **kw)
    assert sum(stepwise.req.preemptions) > 0  # the cache is under pressure
    for rep in fast.replicas:
        assert rep.kv.used == 0


def test_capacity_policy_flag_switches_the_reservation():
    trt = get_engine("tensorrt-llm-0.14")
    assert apply_flags(trt, {"capacity_scheduler_policy": "MAX_UTILIZATION"}, "fp8").engine.kv_reservation \
        is KvReservation.PER_STEP
    assert apply_flags(trt, {"capacity_scheduler_policy": "guaranteed_no_evict"}, "fp8").engine.kv_reservation \
        is KvReservation.WHOLE_SEQUENCE
    with pytest.raises(SpecError, match="capacity_scheduler_policy"):
        apply_flags(trt, {"capacity_scheduler_policy": "static_batch"}, "fp8")
    with pytest.raises(SpecError, match="not a vllm option"):
        apply_flags(get_engine("vllm"), {"capacity_scheduler_policy": "max_utilization"}, "bf16")


def test_no_evict_with_prefix_caching_conserves_blocks_and_equals_step_mode():
    """Shared prefixes (TensorRT-LLM 1.0 reuses KV blocks by default): a request reserves its whole sequence less
    the cached blocks it shares; every block comes back, and fast mode == step mode."""
    rng = np.random.default_rng(2)
    n = 300
    p, o = Lengths.uniform((100, 1200), (50, 600)).draw(n, rng)
    groups = rng.integers(0, 5, n)
    tokens = np.minimum(p, rng.integers(0, 600, 5)[groups])
    wl = Workload("prefix", p, o, renewal(40.0, n, None, rng), prefix_group=groups, prefix_tokens=tokens)
    fast, step = run("tensorrt-llm", wl, True, 0.22), run("tensorrt-llm", wl, False, 0.22)
    np.testing.assert_allclose(fast.req.finish_s, step.req.finish_s, rtol=1e-9, atol=1e-9)
    assert fast.fin_count == [1] * n and sum(fast.req.preemptions) == 0
    rep = fast.replicas[0]
    assert rep.kv.used == 0 and rep.kv.prefix.hit_tokens > 0


@pytest.mark.parametrize("fast", [True, False])
def test_a_token_budget_equal_to_the_batch_limit_still_lets_prompts_progress(fast):
    """TensorRT-LLM 0.10's published runs build max_batch_size 2048 with max_num_tokens 2048 (perf-overview.md of
    0.10): while a slot is free the running decodes leave a token to a prompt, so equal is served (vLLM's own check
    is >=) and a smaller budget is refused."""
    eng = get_engine("tensorrt-llm-0.10")
    wl = burst(n=100, p=300, o=40)
    plan = engine_plan(eng, MODEL, ACC, gpu_memory_utilization=0.9, max_batch=32, max_batched_tokens=32)
    fleet = Fleet(MODEL, plan, ACC, PERF, wl, ServeConfig(engine=eng, fast=fast))
    fleet.run()
    assert fleet.fin_count == [1] * wl.size
    short = engine_plan(eng, MODEL, ACC, gpu_memory_utilization=0.9, max_batch=32, max_batched_tokens=31)
    with pytest.raises(SpecError, match="max_batched_tokens"):
        Fleet(MODEL, short, ACC, PERF, wl, ServeConfig(engine=eng, fast=fast)).run()
