import json

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import Cluster, SpecError, TrainPlan, get_accelerator, get_model, load_calibration
from capsim.analytic.training import step_time
from capsim.cli import app
from capsim.plan.train_layouts import framework_limits, search_layouts
from capsim.plan.training import candidate_gpu_counts, plan_training
from capsim.validation import run_suite
from capsim.validation.harness import read_csv

# The datasheet calibrations these checks were written against.
A100, H100 = load_calibration("A100-SXM4-80GB").perf(), load_calibration("H100-SXM5-80GB").perf()


def test_planner_beats_or_matches_every_published_layout():
    report = run_suite("planner")
    # the planner suite reads the 2021-22 file (training_published.csv), every row of it
    assert report.rows_failed == 0 and len(report.rows) == len(read_csv(None, "training_published.csv", ("model",)))
    for row in report.rows:  # predicted = planner's best step, measured = the published layout's, same model
        assert row.predicted <= row.measured * (1 + 1e-9), row
        assert row.note.startswith("planner: ")


def test_frameworks_limit_the_search_to_features_they_had():
    assert framework_limits("megatron-2021") == {"sp": False, "distributed_optimizer": False, "zero_stage": 0, "cp": 1}
    df = search_layouts(get_model("gpt-7.5b"), Cluster(get_accelerator("a100"), 64), 512, 2048, A100,
                        framework="megatron-2021", top=None)
    assert not df["sp"].any() and (df["zero_stage"] == 0).all() and set(df["recompute"]) <= {0, 2}


def test_plan_on_fixed_gpus_ranks_by_time_and_explains():
    acc = get_accelerator("h100")
    plan = plan_training(get_model("llama-2-13b"), acc, 1e11, 256, 4096, num_gpus=64, perf=H100)
    assert plan.feasible and plan.evaluated > 1000
    t = plan.table["time_to_train_s"].to_numpy()
    assert np.all(np.diff(t) >= 0)
    assert (plan.table["memory_per_gpu_bytes"] <= 0.9 * acc.memory_bytes).all()
    assert any(line.startswith("main limit:") for line in plan.explanation)
    # the winner priced on its own as a TrainPlan gives the same step time
    b = plan.best
    rec = ["none", "selective", "full"][int(b["recompute"])]
    tp = TrainPlan(dp=int(b["dp"]), tp=int(b["tp"]), pp=int(b["pp"]), pp_interleave=int(b["v"]), cp=int(b["cp"]),
                   micro_batch=int(b["micro_batch"]), global_batch=256, seq_len=4096, recompute=rec,
                   sequence_parallel=bool(b["sp"]), zero_stage=int(b["zero_stage"]),
                   distributed_optimizer=bool(b["distributed_optimizer"]))
    single = step_time(get_model("llama-2-13b"), tp, Cluster(acc, 64), H100)
    assert single.step_s == pytest.approx(b["step_s"], rel=1e-9)


def test_deadline_searches_gpu_counts_and_ranks_by_cost():
    acc = get_accelerator("a100")
    plan = plan_training(get_model("llama-2-7b"), acc, 2e11, 512, 4096, deadline_s=10 * 86400, max_gpus=512,
                         perf=A100)
    assert plan.feasible and plan.rank_by == "cost"
    assert (plan.table["time_to_train_s"] <= 10 * 86400).all()
    assert np.all(np.diff(plan.table["cost_usd"].to_numpy()) >= 0)
    impossible = plan_training(get_model("llama-2-7b"), acc, 2e13, 512, 4096, deadline_s=86400, max_gpus=64,
                               perf=A100)
    assert not impossible.feasible and "deadline" in impossible.reason


def test_bad_planner_inputs():
    acc = get_accelerator("a100")
    with pytest.raises(SpecError, match="num_gpus"):
        plan_training(get_model("gpt2"), acc, 1e9, 8, 1024, perf=A100)
    with pytest.raises(SpecError, match="tokens"):
        plan_training(get_model("gpt2"), acc, -1, 8, 1024, num_gpus=8, perf=A100)
    assert candidate_gpu_counts(8, 64) == [1, 2, 4, 8, 16, 32, 64]


def test_plan_train_cli():
    runner = CliRunner()
    out = runner.invoke(app, ["plan", "train", "-m", "llama-2-7b", "-a", "a100", "-n", "16", "--tokens", "1e10",
                              "--global-batch", "64", "--seq-len", "2048", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["feasible"] and d["best"]["gpus"] == 16 and len(d["top"]) == 10 and d["calibration"]
    bad = runner.invoke(app, ["plan", "train", "-m", "llama-2-7b", "--tokens", "1e10"])
    assert bad.exit_code == 2 and "num_gpus" in bad.output
