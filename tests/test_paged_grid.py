"""vLLM 0.2.3's PagedAttention decode launch grid and how its thread blocks share the SMs (capsim.analytic.paged_grid;
engines.yaml vllm-0.2 decode_grid)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim import get_accelerator, get_model, load_calibration
from capsim.analytic.paged_grid import blocks_per_sm, grid_factor, group_keys, sm_keys, uses_v1
from capsim.analytic.step_table import StepTable
from capsim.sim.serving import ServeConfig, Workload, engine_plan, simulate
from capsim.specs.engine import get_engine
from capsim.specs.engine_kinds import PagedGrid
from capsim.specs.precision import DType

GRID = get_engine("vllm-0.2").decode_grid
A100_FP16_128 = (125, 128)  # registers per thread of V1 and V2 in the 0.2.3 wheel's sm_80 cubin


def test_the_release_picks_v1_by_its_own_rule():
    """attention.py L225-236: V1 when the longest context fits one 512-key partition, or sequences x heads > 512,
    and never past 8,192 keys."""
    assert uses_v1(GRID, 1, 40, 512) and not uses_v1(GRID, 1, 40, 513)
    assert not uses_v1(GRID, 12, 40, 1000) and uses_v1(GRID, 13, 40, 1000)  # 480 vs 520 blocks
    assert not uses_v1(GRID, 64, 40, 8193)


def test_v2_blocks_are_partitions_and_v1_blocks_whole_contexts():
    groups, v1 = group_keys(GRID, np.array([1000, 300]), 40)  # V2: 2 x 40 < 512
    assert not v1 and groups == [512, 300, 488, 0]  # (partition, sequence), launch order
    groups, v1 = group_keys(GRID, np.array([1000] * 13), 40)
    assert v1 and groups == [1000] * 13


def test_residency_follows_the_builds_registers():
    """125 registers -> 4,096 per warp -> 4 blocks of 128 threads in 65,536 registers; 71 (sm_90) -> 7; a small
    kernel is held by threads (16) then."""
    assert blocks_per_sm(128, 125) == 4 and blocks_per_sm(128, 128) == 4
    assert blocks_per_sm(128, 71) == 7 and blocks_per_sm(128, 32) == 16
    assert GRID.registers_for("A100-SXM4-80GB", "fp16", 128) == A100_FP16_128
    assert GRID.registers_for("H100-SXM5-80GB", "fp16", 128) == (71, 95)
    assert GRID.registers_for("L4", "fp16", 128) is None and GRID.registers_for("A100-SXM4-80GB", "fp16", 72) is None


def test_every_key_lands_on_some_sm():
    rng = np.random.default_rng(0)
    for seqs in (1, 5, 12, 13, 40, 90):
        ctx = rng.integers(1, 2048, seqs)
        load = sm_keys(GRID, ctx, 40, 108, A100_FP16_128)
        assert sum(load) == 40 * ctx.sum() and load == sorted(load)  # least loaded SM first
        assert grid_factor(GRID, ctx, 40, 108, A100_FP16_128) >= 1.0


def test_uniform_grids_that_fill_the_gpu_are_balanced_and_small_ones_are_not():
    """flashinfer.ai's sizes (Llama-2-7B heads, 32): 64 x 1k keys fill 2,048 blocks in many rounds (balanced);
    16 x 512 is 512 blocks, 4 per SM then 80 more (5/4.74 = 1.055); 1 x 1k is 64 blocks on 108 SMs (108/64)."""
    assert grid_factor(GRID, np.full(64, 1024), 32, 108, A100_FP16_128) == pytest.approx(1.0, abs=0.01)
    assert grid_factor(GRID, np.full(16, 512), 32, 108, A100_FP16_128) == pytest.approx(5 / (512 / 108))
    assert grid_factor(GRID, np.full(1, 1024), 32, 108, A100_FP16_128) == pytest.approx(108 / 64)


def test_one_long_sequence_among_short_ones_sets_the_launch():
    """V1 (13 x 40 > 512 blocks): one 2,000-key sequence first among 12 of 100 keys. The first wave puts its 40
    blocks on SMs 0-39, each beside three 100-key blocks (4 per SM): those SMs hold 2,300 keys, the mean SM
    128,000 / 108, and the later blocks go to the other SMs."""
    ctx = np.array([2000] + [100] * 12)
    f = grid_factor(GRID, ctx, 40, 108, A100_FP16_128)
    assert f == pytest.approx(2300 * 108 / 128000)
    assert grid_factor(GRID, np.full(13, 254), 40, 108, A100_FP16_128) < f  # the same keys, evenly spread


def test_grid_must_be_positive_whole_numbers():
    with pytest.raises(ValueError, match="partition_tokens"):
        PagedGrid(0, 512, 8192, 128)
    with pytest.raises(ValueError, match="registers"):
        PagedGrid(512, 512, 8192, 128, {"A100": {"fp16": {128: (125,)}}})


OPT = get_model("opt-13b")
ACC = get_accelerator("A100-SXM4-80GB")
PERF = load_calibration("A100-SXM4-80GB-profile").perf()


def _table(engine: str) -> StepTable:
    eng = get_engine(engine)
    plan = engine_plan(eng, OPT, ACC, tp=1, dtype="fp16")
    return StepTable(OPT, plan, PERF, eng, ACC)


def test_only_the_release_whose_grid_was_read_prices_it():
    assert _table("vllm-0.2").grid is not None
    for other in ("vllm-0.2.6", "vllm-0.4", "vllm"):
        table = _table(other)
        assert table.grid is None and table.grid_scale([100, 2000, 5]) == 1.0


def test_grid_scales_decode_attention_only():
    """A decode step's attention body grows by the factor; the token kernels, launches and host time do not."""
    t = _table("vllm-0.2")
    ctx = [2000] + [100] * 12
    f = t.grid_scale(ctx)
    assert f > 1.5
    base = t.step_s(decode_seqs=13, decode_kv_tokens=float(sum(ctx)))
    scaled = t.step_s(decode_seqs=13, decode_kv_tokens=float(sum(ctx)), grid=f)
    att = t.layers * (t.decode_attention_s(13, float(sum(ctx))) - t.attn_launch_s)
    assert scaled - base == pytest.approx(att * (f - 1.0), rel=1e-9)
    pieces, dur = t.decode_run(13, float(sum(ctx)) - 13, 1, f)
    assert dur == pytest.approx(scaled, rel=1e-9)


def test_fast_mode_and_the_step_reference_agree_with_the_grid():
    """Both modes take the factor at the first step after the batch last changed (DecodeSet.grid_scale), so the
    closed-form runs and the one-step-at-a-time reference price every step alike."""
    eng = get_engine("vllm-0.2")
    plan = engine_plan(eng, OPT, ACC, tp=1, dtype="fp16")
    rng = np.random.default_rng(3)
    n = 60
    wl = Workload("mixed", rng.integers(20, 1500, n), rng.integers(20, 300, n), np.sort(rng.uniform(0, 20, n)))
    out = [simulate(OPT, plan, ACC, PERF, wl, ServeConfig(engine=eng, fast=fast)).summary for fast in (True, False)]
    assert out[0]["tpot_mean_s"] == pytest.approx(out[1]["tpot_mean_s"], rel=1e-9)
    assert out[0]["ttft_mean_s"] == pytest.approx(out[1]["ttft_mean_s"], rel=1e-9)


def test_opt_13b_decode_attention_follows_the_batchs_longest_sequences():
    """A replay at vLLM 0.2.3: the grid makes decode slower than a balanced kernel, never faster."""
    eng = get_engine("vllm-0.2")
    plan = engine_plan(eng, OPT, ACC, tp=1, dtype=DType.FP16.value)
    rng = np.random.default_rng(4)
    n = 80
    wl = Workload("mixed", rng.integers(20, 1800, n), rng.integers(20, 300, n), np.sort(rng.uniform(0, 30, n)))
    grid = simulate(OPT, plan, ACC, PERF, wl, ServeConfig(engine=eng)).summary
    flat = simulate(OPT, plan, ACC, PERF, wl, ServeConfig(engine=eng.with_(decode_grid=None))).summary
    assert grid["tpot_mean_s"] > flat["tpot_mean_s"]


def _one_sm_at_a_time(grid, contexts, heads, sms, registers):
    """The list scheduling spelled out per SM (the implementation before the loads were kept sorted): the first
    wave block by block, one SM after another, then each group's blocks on the least loaded SMs."""
    groups, v1 = group_keys(grid, contexts, heads)
    groups = np.array(groups)
    wave = sms * blocks_per_sm(grid.threads_per_block, registers[0] if v1 else registers[1])
    first = min(len(groups), -(-wave // heads))
    keys = np.repeat(groups[:first], heads)[:wave]
    load = np.bincount(np.arange(len(keys)) % sms, weights=keys, minlength=sms)
    rest = heads * first - len(keys)
    for count, k in ([(rest, groups[first - 1])] if rest else []) + [(heads, g) for g in groups[first:]]:
        if k <= 0:
            continue
        whole, part = divmod(count, sms)
        load += whole * k
        if part:
            load[np.argpartition(load, part - 1)[:part]] += k
    return load


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 9000), min_size=1, max_size=60), st.sampled_from([8, 32, 40, 64, 128, 200]),
       st.sampled_from([1, 7, 108, 132]), st.tuples(st.integers(32, 170), st.integers(32, 170)))
def test_sorted_loads_are_the_per_sm_schedule(contexts, heads, sms, registers):
    """sm_keys keeps the SMs' loads sorted (the least loaded first): the same loads as the schedule kept per SM,
    and the same factor to the bit."""
    ctx = np.array(contexts)
    want = _one_sm_at_a_time(GRID, ctx, heads, sms, registers)
    load = sm_keys(GRID, ctx, heads, sms, registers)
    assert load == sorted(want.astype(np.int64).tolist())
    factor = max(float(want.max()) * sms / float(want.sum()), 1.0)
    assert grid_factor(GRID, ctx, heads, sms, registers) == factor
    assert grid_factor(GRID, contexts, heads, sms, registers) == factor  # a list as the simulator passes it
