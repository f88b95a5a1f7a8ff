"""Uneven pipelines: Megatron-Core's ways of stating a split, the layout string, stage-by-stage pricing, memory
over every stage, and the layout search over pipeline depths that do not divide the layers."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from capsim import Layouts, Precision, TrainPlan, get_accelerator, get_model, load_calibration
from capsim.analytic.memory import (
    inflight_chunks,
    layer_activation_bytes,
    model_state_bytes,
    saved_by_class,
    stage_params,
    training_memory,
)
from capsim.analytic.training import DEFAULT_FRAMEWORK, get_framework, resolve_perf, step_time
from capsim.analytic.training.compute import micro_batch_times
from capsim.cli import app
from capsim.errors import SpecError
from capsim.plan.train_layouts import layout_grid, plan_of_row, search_layouts
from capsim.sim.train_step import pipeline_inputs
from capsim.specs.hardware import Cluster
from capsim.specs.pipeline_layout import (
    LayerSplit,
    SplitRule,
    default_uneven,
    megatron,
    parse_layout,
    parse_stage_list,
)

H100 = get_accelerator("h100")
H100_DS = load_calibration("H100-SXM5-80GB").perf()  # the datasheet calibration these checks were written against
LLAMA8 = get_model("llama-3-8b")  # 32 layers
L405 = get_model("llama-3.1-405b")  # 126 layers
BRIDGE = "megatron-bridge-26.04.01"  # a release with uneven pipelines (Megatron-Core 0.8 splits only evenly)
OLD = "megatron-core-0.8.0"  # the release that splits only evenly


def test_megatron_docs_layout_string():
    # Megatron-LM docs/user-guide/features/pipeline_parallel_layout.md, with the MTP layer as a decoder layer.
    split = parse_layout("Et*3|(tt|)*29,t|L", 16)
    assert split.pp == 16 and split.v == 2 and split.total == 62
    assert split.chunks[0] == (3, 2) and split.chunks[14] == (2, 1) and split.chunks[15] == (2, 0)
    assert parse_layout("E||t|L", 4).chunks == ((0,), (0,), (1,), (0,))  # empty stages are allowed


@pytest.mark.parametrize("layout, pp, words", [
    ("Et*3|tx|L", 3, "unknown layer character 'x'"),
    ("Et|t|L", 2, "do not split over pp=2"),
    ("t|Et|L", 3, "must start with E"),
    ("Et|tL|t", 3, "must end with L"),
    ("Et|tE|L", 3, "each appear once"),
    ("Et*3|(tt|)*29,m|L", 16, "MTP"),
    ("", 2, "empty layout"),
])
def test_layout_string_errors_name_the_field_and_fix(layout, pp, words):
    with pytest.raises(SpecError) as err:
        parse_layout(layout, pp)
    assert err.value.field == "plan.pipeline_layout" and words in str(err.value) and err.value.fix


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.data())
def test_layout_string_round_trips(pp, v, data):
    chunks = tuple(tuple(data.draw(st.integers(0, 12)) for _ in range(v)) for _ in range(pp))
    split = LayerSplit(chunks, SplitRule.LAYOUT)
    assert parse_layout(split.layout, pp) == split
    if pp > 1 or v == 1:  # interleaving needs several stages
        assert TrainPlan(pp=pp, pipeline_layout=split.layout, global_batch=pp * 2).pp_interleave == v


def test_megatron_first_last_and_embedding_loss_splits():
    assert megatron(126, 16, first=7, last=7).stages == (7,) + (8,) * 14 + (7,)
    # Megatron-Bridge's 405B recipe: embedding and loss counted as layers; 8 stages x 8 chunks of 2, ends of 1.
    split = megatron(126, 8, 8, embedding=True, loss=True)
    assert split.chunks[0] == (1,) + (2,) * 7 and split.chunks[-1] == (2,) * 7 + (1,) and split.total == 126
    assert split.layout == "Et|(t*2|)*62,tL"
    with pytest.raises(SpecError, match="do not split evenly"):
        megatron(126, 16, first=6, last=7)
    with pytest.raises(SpecError, match="divisible by v=2"):
        megatron(126, 16, 2, first=7, last=7)
    with pytest.raises(SpecError, match="not take first/last"):
        megatron(126, 16, first=7, embedding=True)


def test_default_uneven_split_rule():
    assert default_uneven(96, 8).rule is SplitRule.EVEN
    assert default_uneven(126, 16).rule is SplitRule.EMBEDDING_LOSS
    five = default_uneven(126, 5)  # neither divides: first/last counts, middle ceil(126/5)
    assert five.rule is SplitRule.FIRST_LAST and five.stages == (24, 26, 26, 26, 24)
    assert default_uneven(32, 64) is None


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 130), st.integers(1, 40), st.integers(1, 4))
def test_default_uneven_is_a_valid_megatron_split(layers, pp, v):
    split = default_uneven(layers, pp, v)
    if split is None:
        return
    assert split.total == layers and split.pp == pp and split.v == v
    assert max(split.stages) <= -(-(layers + 2) // pp) + v  # never much heavier than an even share


def test_layer_split_option_parsing():
    assert parse_stage_list("7,8,...,7", 16) == (7,) + (8,) * 14 + (7,)
    assert parse_stage_list("7,8*14,7", 16) == parse_stage_list("7,8,...,7", 16)
    for bad, pp, words in (("7,8,...", 1, "exceed"), ("7,x,7", 3, "not a layer count"),
                           ("7,8,7", 4, "3 stage counts"), ("...,7", 3, "must follow a count")):
        with pytest.raises(SpecError, match=words) as err:
            parse_stage_list(bad, pp)
        assert err.value.field == "--layer-split"


def test_plan_states_the_split_one_way():
    with pytest.raises(SpecError, match="stated 2 ways"):
        TrainPlan(pp=4, layer_split=(8, 8, 8, 8), first_stage_layers=8, global_batch=4)
    with pytest.raises(SpecError, match="plan.pp_interleave"):
        TrainPlan(pp=2, pp_interleave=3, pipeline_layout="Et|t|t|tL", global_batch=4)
    with pytest.raises(SpecError, match="holds 4 transformer layers"):
        TrainPlan(pp=2, pipeline_layout="Et|t|t|tL", global_batch=4).check(LLAMA8)


def test_valid_uneven_split_is_not_rejected():
    """(8, 9, 8, 7): the middle stages differ, which an even-middle check once called 'does not divide'."""
    plan = TrainPlan(pp=4, dp=4, layer_split=(8, 9, 8, 7), global_batch=64)
    r = step_time(LLAMA8, plan, Cluster(H100, 16), H100_DS, framework=BRIDGE)
    assert r.feasible and r.reason == ""
    old = step_time(LLAMA8, plan, Cluster(H100, 16), H100_DS, framework=OLD)  # Megatron-Core 0.8 splits only evenly
    assert not old.feasible and old.reason == "megatron-core-0.8.0 splits the layers only evenly over pp x pp_interleave"
    lay = Layouts.from_plans(LLAMA8, [plan])
    assert lay.middle_max_layers[0] == 9 and lay.plan(0).layer_split == (8, 9, 8, 7)


def test_stage_times_follow_each_stages_layers():
    plan = TrainPlan(pp=4, dp=4, layer_split=(7, 10, 8, 7), global_batch=64)
    inputs = pipeline_inputs(LLAMA8, plan, Cluster(H100, 16), H100_DS)
    fwd, bwd = inputs.forward_s[:, 0], inputs.backward_s[:, 0]
    assert fwd[1] / fwd[2] == pytest.approx(10 / 8) and bwd[1] / bwd[2] == pytest.approx(10 / 8)
    lay = Layouts.from_plans(LLAMA8, [plan])
    fw = get_framework(DEFAULT_FRAMEWORK)  # step_time's default preset: its attention and dropout
    t = micro_batch_times(LLAMA8, lay, plan.precision, resolve_perf(H100_DS, Cluster(H100, 16)), fw.attention,
                          fw.dropout)
    uneven = step_time(LLAMA8, plan, Cluster(H100, 16), H100_DS)
    # The heaviest stage (10 layers; the last holds 7 + the LM head) bounds the steady state.
    assert uneven.bottleneck_stage == 1
    assert uneven.compute_s == pytest.approx(plan.micro_batches * 10 * (t.layer_fwd_s + t.layer_bwd_s)[0])
    assert uneven.step_s > step_time(LLAMA8, plan.with_(layer_split=(7, 9, 9, 7)), Cluster(H100, 16), H100_DS).step_s


@pytest.mark.parametrize("schedule, v", [("1f1b", 1), ("interleaved", 2), ("gpipe", 1)])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_memory_is_the_max_over_every_stage(schedule, v, data):
    pp = data.draw(st.integers(3, 6))
    stages = [data.draw(st.integers(1, 4)) * v for _ in range(pp)]
    layers = sum(stages)
    model = get_model("llama-2-7b").__class__(**{**get_model("llama-2-7b").__dict__, "layers": layers,
                                                  "aliases": ()})
    plan = TrainPlan(pp=pp, pp_interleave=v, schedule=schedule, layer_split=tuple(stages), global_batch=pp * 2,
                     seq_len=1024)
    lay = Layouts.from_plans(model, [plan])
    mem = training_memory(model, plan, accelerator=H100)
    prec = Precision()
    act = layer_activation_bytes(model, lay, prec, classes=saved_by_class(model, lay, prec))
    totals = []
    for rank, n in enumerate(stages):  # every stage, brute force
        dense, expert = stage_params(model, lay, n, rank == 0, rank == pp - 1)
        w, g, o = model_state_bytes(dense, expert, lay, prec)
        logits = 1024 * model.vocab * (4.0 + prec.activations.bytes) if rank == pp - 1 else 0.0
        totals.append(float((w + g + o + inflight_chunks(lay, rank) * n / v * act + logits)[0]))
    assert mem.total_bytes == pytest.approx(max(totals), rel=1e-9)
    assert mem.stage == int(np.argmax(totals))


def test_heavier_middle_stage_sets_the_memory_peak():
    plan = TrainPlan(pp=4, dp=4, layer_split=(4, 16, 6, 6), global_batch=64, seq_len=4096)
    mem = training_memory(LLAMA8, plan, accelerator=H100)
    assert mem.stage == 1 and mem.to_dict()["peak_stage"] == "rank 1"
    first_heavy = training_memory(LLAMA8, plan.with_(layer_split=(16, 4, 6, 6)), accelerator=H100)
    assert mem.total_bytes > training_memory(LLAMA8, plan.with_(layer_split=None), accelerator=H100).total_bytes
    assert first_heavy.stage == 0


def test_405b_on_16_stages_prices_and_plans():
    plan = TrainPlan(dp=64, tp=8, pp=16, global_batch=1024, seq_len=8192, sequence_parallel=True,
                     distributed_optimizer=True, recompute="full")
    split = plan.split(L405)  # not stated: the uneven split a search prices (embedding and loss as layers)
    assert split.stages == (7,) + (8,) * 14 + (7,) and split.rule is SplitRule.EMBEDDING_LOSS
    r = step_time(L405, plan, Cluster(H100, 8192), H100_DS, framework=BRIDGE)
    assert r.feasible and r.memory_per_gpu_bytes < H100.memory_bytes
    stated = step_time(L405, plan.with_(layer_split=split.stages), Cluster(H100, 8192), H100_DS, framework=BRIDGE)
    assert stated.step_s == pytest.approx(r.step_s)


def test_search_tries_pp_that_do_not_divide_the_layers():
    lay = layout_grid(L405, 1024, 1024, 4096, 8, {"zero_stage": 0})
    pps = set(lay.pp.tolist())
    assert {16, 32, 64} <= pps  # none divides 126
    rules = {lay.layer_split(i).rule for i in range(len(lay))}
    assert SplitRule.EMBEDDING_LOSS in rules and SplitRule.EVEN in rules
    frame = search_layouts(L405, Cluster(H100, 1024), 1024, 4096, H100_DS, top=None, framework=BRIDGE)
    assert (frame["split"] != "even").any()
    row = frame[frame["split"] != "even"].iloc[0].to_dict()
    plan = plan_of_row(row, 1024, 4096)
    assert step_time(L405, plan, Cluster(H100, 1024), H100_DS, framework=BRIDGE).step_s == pytest.approx(
        row["step_s"], rel=1e-9)
    # A release without uneven pipelines is offered only even splits, and interleaving only from its least pp.
    old = layout_grid(L405, 1024, 1024, 4096, 8, {"zero_stage": 0}, "megatron-lm-2021")
    assert all(L405.total_layers % (p * v) == 0 for p, v in zip(old.pp, old.v, strict=True))
    small = layout_grid(LLAMA8, 16, 64, 2048, 8, {"zero_stage": 0}, "megatron-lm-2021")  # interleaves from pp 3
    assert 2 not in set(small.pp[small.v > 1].tolist()) and 4 in set(small.pp[small.v > 1].tolist())
    every = layout_grid(LLAMA8, 16, 64, 2048, 8, {"zero_stage": 0})
    assert 2 in set(every.pp[every.v > 1].tolist())
    assert (search_layouts(L405, Cluster(H100, 1024), 1024, 4096, H100_DS, top=None, framework=OLD)["split"]
            == "even").all()


def test_cli_layer_split_layout_and_dp_inference():
    runner = CliRunner()
    out = runner.invoke(app, ["train", "-m", "llama-3.1-405b", "-a", "h100", "-n", "8192", "--tp", "8", "--pp", "16",
                              "--layer-split", "7,8,...,7", "--global-batch", "1024", "--seq-len", "8192", "--sp",
                              "--distributed-optimizer", "--recompute", "full", "--framework", BRIDGE, "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["plan"]["dp"] == 64 and d["pipeline"]["stages"] == [7] + [8] * 14 + [7] and d["feasible"]
    layout = runner.invoke(app, ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "16", "--pp", "4",
                                 "--pipeline-layout", "Et*3|t*4|t*5|t*4|t*4|t*4|t*5|t*3L", "--global-batch", "32",
                                 "--framework", BRIDGE, "--json"])
    assert layout.exit_code == 0, layout.output
    d = json.loads(layout.stdout)
    assert d["plan"]["pp_interleave"] == 2 and d["plan"]["dp"] == 4 and d["pipeline"]["stages"] == [7, 8, 10, 7]
    bad = runner.invoke(app, ["train", "-m", "llama-3-8b", "-n", "12", "--tp", "8"])
    assert bad.exit_code == 2 and "--dp" in bad.output and "multiple of 8" in bad.output
    wrong = runner.invoke(app, ["train", "-m", "llama-3-8b", "-n", "8", "--pp", "4", "--pipeline-layout", "Et|tt|L"])
    assert wrong.exit_code == 2 and "plan.pipeline_layout" in wrong.output


def test_planner_reports_the_constraint_that_left_no_layout():
    from capsim.plan.training import plan_training
    heads = plan_training(LLAMA8, H100, 1e9, 48, 2048, num_gpus=48, fixed={"tp": 3}, perf=H100_DS)
    assert not heads.feasible and "can run on 48 GPUs" in heads.reason and "attention heads" in heads.reason
    memory = plan_training(L405, H100, 1e12, 64, 4096, num_gpus=16, perf=H100_DS)
    assert not memory.feasible and "the smallest needs" in memory.reason
    big = plan_training(L405, H100, 15e12, 2048, 8192, num_gpus=16384, perf=H100_DS, framework=BRIDGE)
    assert big.feasible and (big.table["split"] != "even").any() and {16, 32, 64} & set(big.table["pp"])
    # Megatron-Core 0.8 cannot split 126 layers over a power-of-two pipeline: the reason says so.
    old = plan_training(L405, H100, 15e12, 2048, 8192, num_gpus=16384, perf=H100_DS, framework=OLD)
    assert not old.feasible and "megatron-core-0.8.0 cannot run the uneven or interleaved splits" in old.reason
