"""The SimPy pipeline schedule: exact orders, the uniform bubble, and the analytic model checked against it."""

import numpy as np
import pytest

from capsim import Precision, TrainPlan, get_accelerator, get_model, load_calibration
from capsim.analytic.training import step_time
from capsim.errors import SpecError
from capsim.sim.pipeline import interleaved_order, one_f_one_b_order, simulate_pipeline
from capsim.sim.train_step import pipeline_inputs
from capsim.specs.hardware import Cluster

A100 = get_accelerator("a100")
DATASHEET = load_calibration("A100-SXM4-80GB").perf()
FP16 = Precision.preset("fp16")


def test_one_f_one_b_order_is_megatrons():
    assert one_f_one_b_order(0, 2, 3) == [("F", 0, 0), ("F", 1, 0), ("B", 0, 0), ("F", 2, 0), ("B", 1, 0),
                                          ("B", 2, 0)]
    assert one_f_one_b_order(1, 2, 3) == [("F", 0, 0), ("B", 0, 0), ("F", 1, 0), ("B", 1, 0), ("F", 2, 0),
                                          ("B", 2, 0)]


def test_interleaved_order_is_megatrons():
    # p=2, v=2, m=4 on stage 0: warm-up 2(p-1) + (v-1)p = 4 forwards, chunks cycle every p micro-batches.
    order = interleaved_order(0, 2, 4, 2)
    assert order[:4] == [("F", 0, 0), ("F", 1, 0), ("F", 0, 1), ("F", 1, 1)]
    assert order[4:8] == [("F", 2, 0), ("B", 0, 1), ("F", 3, 0), ("B", 1, 1)]
    assert order[-2:] == [("B", 2, 0), ("B", 3, 0)]
    assert sorted(order) == sorted([(k, mb, c) for k in "FB" for mb in range(4) for c in range(2)])


@pytest.mark.parametrize("schedule, p, v, m", [("gpipe", 4, 1, 8), ("1f1b", 8, 1, 32), ("interleaved", 4, 2, 8),
                                               ("interleaved", 8, 3, 16), ("interleaved", 16, 2, 64)])
def test_uniform_bubble_equals_analytic(schedule, p, v, m):
    result = simulate_pipeline(np.full((p, v), 1.0 / v), np.full((p, v), 2.0 / v), m, schedule)
    expect = (p - 1) / (v * m)
    assert result.bubble_fraction == pytest.approx(expect, rel=0.01)


def test_timeline_respects_dependencies_and_p2p():
    p, v, m, hop = 4, 2, 8, 0.05
    result = simulate_pipeline(np.full((p, v), 1.0), np.full((p, v), 2.0), m, "interleaved", p2p_s=hop,
                               blocking_p2p=False)
    tl = result.timeline
    assert list(tl.columns) == ["stage", "micro_batch", "chunk", "kind", "start_s", "end_s", "duration_s"]
    assert len(tl) == 2 * p * v * m
    ends = {(r.kind, r.micro_batch, r.chunk * p + r.stage): r.end_s for r in tl.itertuples()}
    for r in tl.itertuples():
        vs = r.chunk * p + r.stage
        if r.kind == "F" and vs > 0:
            assert r.start_s >= ends[("F", r.micro_batch, vs - 1)] + hop - 1e-12
        if r.kind == "B" and vs < p * v - 1:
            assert r.start_s >= ends[("B", r.micro_batch, vs + 1)] + hop - 1e-12
    # No stage runs two blocks at once.
    for _, g in tl.groupby("stage"):
        assert np.all(g["start_s"].to_numpy()[1:] >= g["end_s"].to_numpy()[:-1] - 1e-12)


def test_reduction_and_tail():
    r = simulate_pipeline(np.ones((2, 1)), np.ones((2, 1)), 4, "1f1b", reduce_s=np.array([0.5, 3.0]), tail_s=0.25)
    # Stage 1 ends its last backward one backward before stage 0, then reduces for 3 s.
    assert r.reduced_s == pytest.approx(r.pipeline_s - 1.0 + 3.0)
    assert r.step_s == pytest.approx(r.reduced_s + 0.25)


def test_bad_schedule_inputs():
    with pytest.raises(SpecError, match="micro_batches"):
        simulate_pipeline(np.ones((4, 2)), np.ones((4, 2)), 6, "interleaved")
    with pytest.raises(SpecError, match="schedule"):
        simulate_pipeline(np.ones((4, 2)), np.ones((4, 2)), 8, "1f1b")
    with pytest.raises(SpecError, match="schedule"):
        simulate_pipeline(np.ones((4, 1)), np.ones((4, 1)), 8, "zigzag")


# Non-uniform stages: the embedding on the first stage, the LM head and loss on the last, uneven splits, ZeRO,
# DP overlap. The analytic formula T = m W_max + (sum W - W_max)/v is checked against the event simulation;
# measured agreement is within 1.2% on these cases, asserted at 1.5%. (At m = p with a middle stage well above the
# others the formula's fill and drain run up to ~4% long; those stay with the simulator.) Uneven splits run under a
# release that has them (megatron-core-0.14.0): the simulation refuses what step_time refuses, as every face does.
UNEVEN = "megatron-core-0.14.0"
CASES = [
    ("gpt-529.6b", 280, dict(tp=8, pp=35, pp_interleave=3, global_batch=280, recompute="full"), "megatron-2022"),
    ("gpt-529.6b", 280, dict(tp=8, pp=35, global_batch=280, recompute="full"), "megatron-2022"),
    ("gpt-175b", 64, dict(tp=8, pp=8, pp_interleave=3, global_batch=64, recompute="selective",
                          sequence_parallel=True), "megatron-2022"),
    ("gpt-175b", 64, dict(tp=8, pp=8, global_batch=64, recompute="full",
                          layer_split=(10, 12, 13, 13, 13, 13, 12, 10)), UNEVEN),
    ("gpt-175b", 64, dict(tp=8, pp=8, global_batch=16, recompute="full", schedule="gpipe",
                          layer_split=(10, 12, 13, 13, 13, 13, 12, 10)), UNEVEN),
    ("gpt-1.7b", 32, dict(pp=4, dp=8, pp_interleave=2, micro_batch=4, global_batch=512,
                          distributed_optimizer=True), "megatron-core"),
    ("llama-2-7b", 16, dict(tp=2, pp=4, dp=2, global_batch=32, recompute="selective", zero_stage=1), "fsdp"),
    ("llama-2-7b", 32, dict(pp=2, dp=16, global_batch=64, recompute="full", zero_stage=3), "fsdp"),
    ("llama-3-8b", 16, dict(pp=4, dp=4, layer_split=(8, 9, 8, 7), global_batch=256), UNEVEN),
    ("llama-3-8b", 16, dict(pp=4, dp=2, tp=2, global_batch=64,
                            pipeline_layout="Et*3|t*4|t*5|t*4|t*4|t*4|t*5|t*3L"), UNEVEN),
    ("llama-3.1-405b", 512, dict(tp=8, pp=8, dp=8, pp_interleave=8, account_for_embedding=True,
                                 account_for_loss=True, global_batch=128, sequence_parallel=True, recompute="full",
                                 seq_len=8192, distributed_optimizer=True), UNEVEN),
    ("llama-3.1-405b", 1024, dict(tp=8, pp=16, dp=8, global_batch=256, sequence_parallel=True, recompute="full",
                                  seq_len=8192), UNEVEN),
]


@pytest.mark.parametrize("name, gpus, plan, framework", CASES)
def test_analytic_matches_simulation_on_uneven_stages(name, gpus, plan, framework):
    model, cluster = get_model(name), Cluster(A100, gpus)
    plan = TrainPlan(precision=FP16, **plan)
    analytic = step_time(model, plan, cluster, DATASHEET, framework=framework)
    assert analytic.reason in ("", "does not fit in memory"), analytic.reason  # a plan the release runs
    inputs = pipeline_inputs(model, plan, cluster, DATASHEET, framework=framework)
    assert inputs.calibration == analytic.calibration
    simulated = inputs.simulate()
    assert analytic.step_s == pytest.approx(simulated.step_s, rel=0.015)
    # The stages really differ: the last stage's last chunk carries the LM head and loss (beyond its layers).
    chunks = np.array(plan.split(model).chunks, float)
    per_layer = inputs.forward_s[1:-1].sum() / chunks[1:-1].sum() if plan.pp > 2 else inputs.forward_s[0, -1] / chunks[0, -1]
    assert inputs.forward_s[-1, -1] > chunks[-1, -1] * per_layer * 1.01


@pytest.mark.xfail(strict=True, reason="known miss: 1F1B with one middle stage far above the others and few "
                   "micro-batches (m = p): the analytic fill and drain, sum of the other stages' times, runs ~4% "
                   "long against the event simulation (1.5% at m = 4p, 0.4% at m = 16p)")
def test_heavy_middle_stage_with_few_micro_batches():
    model, cluster = get_model("llama-2-7b"), Cluster(get_accelerator("h100"), 64)
    plan = TrainPlan(pp=4, dp=16, global_batch=64, layer_split=(4, 12, 8, 8))
    perf = load_calibration("H100-SXM5-80GB").perf()
    analytic = step_time(model, plan, cluster, perf)
    assert analytic.step_s == pytest.approx(pipeline_inputs(model, plan, cluster, perf).simulate().step_s, rel=0.015)
