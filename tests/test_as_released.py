"""One plan, one answer: the CLI, the Python API, the what-if study, `capsim memory` and the dashboard all price a
plan as its framework release runs it (``capsim.analytic.training.step.as_released``): the precision preset through
the release's recipe, sequence parallelism at the release's default where the user leaves it, and nothing the user
states explicitly overridden."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from ui_helpers import page, shown

import capsim
from capsim.analytic.training import get_framework, step_time
from capsim.calibration import perf_for
from capsim.cli import app
from capsim.plan.whatif_train import precision_whatif
from capsim.specs.precision import DType, Fp8Scaling

BRIDGE = "megatron-bridge-26.04.01"  # Megatron-Core through Megatron-Bridge: FP8 current scaling, FP8 parameters
CORE = "megatron-core-0.14.0"  # FP8 delayed scaling (--fp8-recipe default), 16-bit parameters
TITAN = "torchtitan-2025-06"  # its TP shards the sequence too: SP on wherever TP is
MODEL, ACC = "llama-3-8b", "H100-SXM5-80GB"
PLAN = dict(dp=4, tp=2, global_batch=64, seq_len=4096)
CLI = ["-m", MODEL, "-a", ACC, "-n", "8", "--tp", "2", "--global-batch", "64", "--seq-len", "4096"]


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    out = json.loads(result.stdout)
    # exit 1 where the plan does not fit (the JSON still printed), as every command
    assert result.exit_code == (0 if out.get("feasible", out.get("fits")) else 1), result.output
    return out


def _api(framework: str, **plan: object) -> capsim.StepTime:
    model, cluster = capsim.get_model(MODEL), capsim.Cluster(capsim.get_accelerator(ACC), 8)
    return step_time(model, capsim.TrainPlan(**{**PLAN, "precision": "fp8", **plan}), cluster,
                     perf_for(cluster.accelerator), framework=framework)


def test_an_fp8_plan_gets_one_step_time_from_the_api_the_cli_the_whatif_and_the_dashboard():
    from capsim.ui.training import manual_report
    api = _api(BRIDGE)
    cli = _cli("train", *CLI, "--precision", "fp8", "--framework", BRIDGE)
    model, cluster = capsim.get_model(MODEL), capsim.Cluster(capsim.get_accelerator(ACC), 8)
    whatif = precision_whatif(model, cluster, capsim.TrainPlan(**PLAN), ("bf16", "fp8"),
                              perf=perf_for(cluster.accelerator), framework=BRIDGE)
    ui, info = manual_report(model, ACC, None, 8, capsim.TrainPlan(**PLAN, precision="fp8"), 1e12, None, BRIDGE)
    steps = {"api": api.step_s, "cli": cli["step_time_s"],
             "whatif": float(whatif.loc[whatif["precision"] == "fp8", "step_s"].iloc[0]),
             "ui": float(ui["step_s"].iloc[0])}
    assert len({round(v, 9) for v in steps.values()}) == 1, steps
    # the release's recipe, not the plain preset's (which is faster here: delayed scaling, no parameter cast)
    plain = step_time(model, capsim.TrainPlan(**PLAN, precision="fp8-delayed"), cluster,
                      perf_for(cluster.accelerator), framework=get_framework(BRIDGE).with_(fp8_params=False))
    assert plain.step_s != api.step_s
    assert cli["plan"]["precision"]["fp8_scaling"] == "current" and cli["plan"]["precision"]["weights"] == "fp8"
    assert "current scaling" in info["recipe"] and "fp8 weights" in info["recipe"]
    fp8 = whatif.loc[whatif["precision"] == "fp8"].iloc[0]
    assert fp8["bytes_per_param"] == 1 + 4 + 12  # FP8 weights, fp32 gradients, fp32 master and moments


def test_memory_reports_what_train_reports():
    train = _cli("train", *CLI, "--precision", "fp8", "--framework", BRIDGE)
    memory = _cli("memory", "train", *CLI, "--precision", "fp8", "--framework", BRIDGE)
    assert memory["total_bytes"] == train["memory_per_gpu_bytes"]
    assert memory["plan"]["precision"]["weights"] == "fp8"  # FP8 parameters: the release's fp8_param_gather
    from capsim.analytic.training import release_memory
    model, acc = capsim.get_model(MODEL), capsim.get_accelerator(ACC)
    assert release_memory(model, capsim.TrainPlan(**PLAN, precision="fp8"), acc, BRIDGE).total_bytes == \
        memory["total_bytes"]


def test_sequence_parallelism_defaults_to_the_releases_everywhere():
    api = _api(TITAN, precision="bf16")
    cli = _cli("train", *CLI, "--framework", TITAN)
    assert cli["plan"]["sequence_parallel"] is True
    assert api.step_s == pytest.approx(cli["step_time_s"], rel=1e-12)
    assert _api(TITAN, precision="bf16", sequence_parallel=True).step_s == api.step_s
    mem = _cli("memory", "train", *CLI, "--framework", TITAN)
    assert mem["plan"]["sequence_parallel"] is True and mem["total_bytes"] == cli["memory_per_gpu_bytes"]
    assert _cli("train", *CLI, "--framework", CORE)["plan"]["sequence_parallel"] is False


def test_what_the_user_states_is_kept():
    assert _cli("train", *CLI, "--no-sp", "--framework", TITAN)["plan"]["sequence_parallel"] is False
    assert _api(TITAN, precision="bf16", sequence_parallel=False).step_s != _api(TITAN, precision="bf16").step_s
    # an FP8 scaling named in the preset wins over the release's: fp8-current under a delayed-scaling release ...
    cur = _cli("train", *CLI, "--precision", "fp8-current", "--framework", CORE)
    assert cur["plan"]["precision"]["fp8_scaling"] == "current"
    assert cur["step_time_s"] == pytest.approx(_api(CORE, precision="fp8-current").step_s, rel=1e-12)
    # ... and fp8-delayed under a current-scaling one; plain fp8 takes each release's own
    assert _cli("train", *CLI, "--precision", "fp8-delayed", "--framework", BRIDGE)["plan"]["precision"][
        "fp8_scaling"] == "delayed"
    assert _cli("train", *CLI, "--precision", "fp8", "--framework", CORE)["plan"]["precision"][
        "fp8_scaling"] == "delayed"


def test_sp_stated_on_a_release_without_it_is_refused_in_one_line():
    result = CliRunner().invoke(app, ["train", *CLI, "--sp", "--framework", "megatron-lm-2021"])
    assert result.exit_code == 1 and "megatron-lm-2021 has no sequence parallelism" in result.stderr
    api = _api("megatron-lm-2021", precision="bf16", sequence_parallel=True)
    assert not api.feasible and api.reason == "megatron-lm-2021 has no sequence parallelism"


def test_as_released_is_idempotent_and_keeps_the_plans_statements():
    from capsim.analytic.training import as_released
    model = capsim.get_model(MODEL)
    plan = capsim.TrainPlan(**PLAN, precision="fp8")
    once = as_released(model, plan, BRIDGE)
    assert as_released(model, once, BRIDGE) == once
    assert once.precision.fp8_scaling is Fp8Scaling.CURRENT and once.precision.weights is DType.FP8
    assert once.sequence_parallel is False  # Megatron's --sequence-parallel is store_true
    assert as_released(model, plan, TITAN).sequence_parallel is True
    assert as_released(model, plan.with_(sequence_parallel=False), TITAN).sequence_parallel is False
    assert plan.precision.fp8_scaling is None and plan.sequence_parallel is None  # the input is not changed


def test_the_simulated_pipeline_runs_the_releases_split():
    from capsim.sim.train_step import pipeline_inputs
    from capsim.specs.pipeline_layout import default_uneven, front_loaded
    model = capsim.get_model("deepseek-v3")  # 61 layers: NeMo AutoModel front-loads the remainder
    plan = capsim.TrainPlan(dp=64, pp=4, pp_interleave=8, ep=64, zero_stage=3, recompute="full",
                            global_batch=512, seq_len=4096)
    cluster = capsim.Cluster(capsim.get_accelerator("h100"), 256)
    perf, fw = perf_for(cluster.accelerator), "nemo-automodel-2025-10"
    own = front_loaded(61, 4, 8)
    assert default_uneven(61, 4, 8) is None  # 61 layers do not split over 32 chunks Megatron's way
    sim = pipeline_inputs(model, plan, cluster, perf, fw)
    stated = pipeline_inputs(model, plan.with_(pipeline_layout=own.layout), cluster, perf, fw)
    assert (sim.forward_s == stated.forward_s).all() and (sim.backward_s == stated.backward_s).all()


def test_the_dashboard_shows_the_releases_recipe():
    at = page("training", mode="manual", gpus="8", gb="64", seq="4096", model=MODEL, acc=ACC, tp="2",
              precision="fp8", fw=BRIDGE)
    assert not at.exception and not at.error
    captions = " ".join(shown(c.value) for c in at.caption)
    assert f"precision fp8 as {BRIDGE} runs it: fp8 GEMMs (current scaling), fp8 weights" in captions
    assert float(at.dataframe[0].value["step_s"].iloc[0]) == pytest.approx(_api(BRIDGE).step_s, rel=1e-12)
    at = page("training", mode="manual", gpus="8", gb="64", seq="4096", model=MODEL, acc=ACC, tp="2", fw=TITAN)
    assert not at.exception and not at.error
    assert " sp" in " " + at.dataframe[0].value["layout"].iloc[0]  # the release's SP default, shown


@pytest.mark.parametrize("framework, args, plan, reason", [
    ("megatron-lm-2021", ["--precision", "fp8"], {"precision": "fp8"}, "megatron-lm-2021 has no FP8 training"),
    ("megatron-lm-2022", ["--precision", "fp8"], {"precision": "fp8"}, "megatron-lm-2022 has no FP8 training"),
    ("megatron-deepspeed-2022", ["--precision", "fp8"], {"precision": "fp8"},
     "megatron-deepspeed-2022 has no FP8 training"),
    ("megatron-lm-2022", ["--distributed-optimizer"], {"precision": "bf16", "distributed_optimizer": True},
     "megatron-lm-2022 has no distributed optimizer"),
    ("megatron-lm-2021", ["--zero", "1"], {"precision": "bf16", "zero_stage": 1},
     "megatron-lm-2021 has no ZeRO/FSDP sharding"),
    ("fsdp-pytorch-2.3", ["--cp", "2", "--dp", "2"], {"precision": "bf16", "cp": 2, "dp": 2},
     "fsdp-pytorch-2.3 has no context parallelism"),
])
def test_a_feature_stated_on_a_release_without_it_is_refused_in_one_line(framework, args, plan, reason):
    result = CliRunner().invoke(app, ["train", *CLI, *args, "--framework", framework])
    assert result.exit_code == 1 and reason in result.stderr, result.output
    api = _api(framework, **plan)
    assert not api.feasible and api.reason.startswith(reason)
    # capsim memory train refuses it as capsim train does, through the same reasons (release_refusal)
    memory = CliRunner().invoke(app, ["memory", "train", *CLI, *args, "--framework", framework])
    assert memory.exit_code == 1 and reason in memory.stderr, memory.output
    from capsim.analytic.training import release_refusal
    plan = {**PLAN, **plan}
    assert release_refusal(capsim.get_model(MODEL), capsim.TrainPlan(**plan), framework).startswith(reason)


def test_fp8_on_the_first_megatron_release_with_it_is_priced():
    api = _api("megatron-core-0.8.0", precision="fp8")
    assert api.feasible, api.reason
    from capsim.analytic.training import release_refusal
    assert release_refusal(capsim.get_model(MODEL), capsim.TrainPlan(**PLAN, precision="fp8"),
                           "megatron-core-0.8.0") == ""
    result = CliRunner().invoke(app, ["memory", "train", *CLI, "--precision", "fp8", "--framework",
                                      "megatron-core-0.8.0"])
    assert "has no" not in result.output + result.stderr
