"""ZeRO-2/3 and FSDP: each block's gathers and reduce-scatters share one overlap budget, counted once."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim import TrainPlan, get_accelerator, get_model
from capsim.analytic.training import get_framework, step_time
from capsim.analytic.training.sharded import _exposed
from capsim.calibration import perf_for
from capsim.specs.hardware import Cluster

A100_DS = perf_for("a100", "A100-SXM4-80GB")  # the datasheet calibration these checks were written against

FSDP = get_framework("fsdp")


def _window(n, a, r, f, b, emb=False, head=False, ends=0.0, fw=FSDP):
    one = np.array([1.0])
    times = {"f": f * one, "b": b * one, "emb_f": 0.0 * one, "emb_b": 0.0 * one, "head_b": 0.0 * one}
    traffic = {"layer_gather": a * one, "layer_reduce": r * one, "emb_gather": ends * one, "emb_reduce": ends * one,
               "head_gather": ends * one, "head_reduce": ends * one}
    return float(_exposed(fw, times, traffic, np.array([a > 0]), n * one, np.array([emb]), np.array([head]))[0])


def test_gather_and_reduce_scatter_share_one_budget():
    # Each alone (0.6 s) hides behind a block's 1 s backward; together (1.2 s) they expose 0.2 s per window.
    # Forward: the first gather; backward: the first gather, 8 windows carrying both (blocks 8 .. 1; block 9
    # carries only block 8's gather, block 0 only block 1's reduce-scatter), the last reduce-scatter.
    assert _window(10, 0.6, 0.6, 1.0, 1.0) == pytest.approx(0.6 + 0.6 + 8 * 0.2 + 0.6)
    # ZeRO-2 (no gathers): only the last reduce-scatter is exposed.
    assert _window(10, 0.0, 0.6, 1.0, 1.0) == pytest.approx(0.6)
    # Without prefetching every gather waits: 2 passes x 10 blocks, plus the reduce-scatter windows.
    no_prefetch = FSDP.with_(zero3_prefetch=False)
    assert _window(10, 0.6, 0.6, 1.0, 1.0, fw=no_prefetch) == pytest.approx(2 * 10 * 0.6 + 0.6)


def test_ends_add_their_own_traffic():
    plain = _window(8, 0.5, 0.5, 2.0, 2.0)
    assert _window(8, 0.5, 0.5, 2.0, 2.0, emb=True, ends=0.3) > plain  # the embedding's gather and last RS
    assert _window(0, 0.5, 0.5, 2.0, 2.0, emb=True, head=True, ends=0.3) == pytest.approx(5 * 0.3)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.floats(0, 2), st.floats(0, 2), st.floats(0.01, 2), st.floats(0.01, 4))
def test_exposure_bounds(n, a, r, f, b):
    exposed = _window(n, a, r, f, b)
    total = 2 * n * a + n * r  # every gather of both passes and every reduce-scatter
    assert -1e-12 <= exposed <= total + 1e-12
    assert exposed >= a + r - 1e-12 or n == 0  # the first gather and the last reduce-scatter never hide
    assert _window(n, a, r, f, 2 * b) <= exposed + 1e-12  # more compute hides more


def test_zero3_exposure_grows_as_the_per_gpu_batch_shrinks():
    """Fixed global batch (256 x 2048 tokens), no gradient accumulation: more GPUs, less compute per block, the
    same bytes per gather and reduce-scatter."""
    model, acc = get_model("llama-3-8b"), get_accelerator("h100")
    shares, per_gpu = [], []
    for gpus in (16, 64, 128, 256):
        plan = TrainPlan(dp=gpus, zero_stage=3, micro_batch=256 // gpus, global_batch=256, seq_len=2048)
        r = step_time(model, plan, Cluster(acc, gpus), perf_for(acc, acc.name), framework="fsdp")
        shares.append(r.zero_comm_s / r.step_s)
        per_gpu.append(r.tokens_per_s / gpus)
    assert all(b > a for a, b in zip(shares, shares[1:], strict=False))
    assert all(b < a for a, b in zip(per_gpu, per_gpu[1:], strict=False))
    assert shares[-1] > 0.15 and shares[0] < 0.02


def test_zero2_exposes_less_than_zero3():
    model, cluster = get_model("llama-2-7b"), Cluster(get_accelerator("a100"), 64)
    z2, z3 = (step_time(model, TrainPlan(dp=64, zero_stage=z, global_batch=64), cluster, A100_DS, framework="fsdp")
              for z in (2, 3))
    assert 0 < z2.zero_comm_s < z3.zero_comm_s
