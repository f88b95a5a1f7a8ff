"""Every face that prices a training plan refuses what ``step_time`` refuses, with the same one-line reason and exit
1: the SimPy pipeline (``pipeline_inputs`` / ``simulate_step``), the planner (``capsim plan train``, ``capsim train
--auto``), the what-ifs (``capsim whatif precision / batch / distill``), the scaling study (``capsim scale train``)
and their dashboard pages, each under the ``--framework`` release it is given. Block-scaled formats (MXFP8, NVFP4)
are refused on releases without their recipe (``block_scaling.BLOCK_SCALED``) and on accelerators without
Blackwell's block-scaled tensor cores."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from ui_helpers import page, shown

import capsim
from capsim.analytic.training import RELEASES, release_refusal, step_time
from capsim.analytic.training.block_scaling import BLOCK_SCALED
from capsim.calibration import perf_for
from capsim.cli import app
from capsim.errors import InfeasibleError
from capsim.sim.train_step import pipeline_inputs, simulate_step

MODEL = "llama-3-8b"
runner = CliRunner()


def _priced(framework: str, acc: str = "H100-SXM5-80GB", **plan: object) -> tuple[capsim.StepTime, object]:
    model, cluster = capsim.get_model(MODEL), capsim.Cluster(capsim.get_accelerator(acc), 8)
    tp = capsim.TrainPlan(**{"dp": 4, "tp": 2, "global_batch": 64, "seq_len": 4096, **plan})
    return step_time(model, tp, cluster, perf_for(cluster.accelerator), framework=framework), (model, tp, cluster)


# --- the SimPy pipeline ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework, acc, plan, reason", [
    ("megatron-lm-2022", "H100-SXM5-80GB", {"precision": "fp8"}, "megatron-lm-2022 has no FP8 training"),
    ("fsdp-pytorch-2.3", "H100-SXM5-80GB", {"cp": 2, "dp": 2}, "fsdp-pytorch-2.3 has no context parallelism"),
    ("megatron-core-0.8.0", "B200", {"precision": "mxfp8"}, "megatron-core-0.8.0 has no MXFP8 training"),
])
def test_the_pipeline_simulation_refuses_what_step_time_refuses(framework, acc, plan, reason):
    st, (model, tp, cluster) = _priced(framework, acc, **plan)
    assert not st.feasible and st.reason == reason
    perf = perf_for(cluster.accelerator)
    for face in (pipeline_inputs, simulate_step):
        with pytest.raises(InfeasibleError) as err:
            face(model, tp, cluster, perf, framework)
        assert err.value.problem == st.reason  # the same one-line reason
    assert release_refusal(model, tp, framework) == reason


def test_the_pipeline_simulation_still_runs_what_step_time_prices():
    st, (model, tp, cluster) = _priced("megatron-core-0.8.0", precision="fp8")
    assert st.feasible
    assert simulate_step(model, tp, cluster, perf_for(cluster.accelerator), "megatron-core-0.8.0").step_s > 0


# --- the planner ----------------------------------------------------------------------------------------------------

def test_the_planner_and_train_auto_refuse_with_the_releases_reason():
    common = ["-m", MODEL, "-a", "H100-SXM5-80GB", "--gpus", "8", "--global-batch", "64", "--precision", "fp8",
              "--framework", "megatron-lm-2022"]
    for args in (["plan", "train", *common], ["train", "--auto", *common]):
        out = runner.invoke(app, args)
        assert out.exit_code == 1 and "megatron-lm-2022 has no FP8 training" in out.stderr, out.output


# --- what-if and scale: --framework, as capsim train ----------------------------------------------------------------

def _rows(args: list[str], code: int = 0) -> list[dict]:
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == code, out.output
    return json.loads(out.stdout)


def test_whatif_precision_prices_each_recipe_as_the_release_runs_it():
    args = ["whatif", "precision", "-m", MODEL, "-a", "B200", "--gpus", "8", "--tp", "8"]
    default = {r["precision"]: r for r in _rows(args)}
    core = {r["precision"]: r for r in _rows([*args, "--framework", "megatron-core-0.14.0"])}
    assert default["nvfp4"]["feasible"] and not core["nvfp4"]["feasible"]
    assert core["nvfp4"]["reason"] == "megatron-core-0.14.0 has no NVFP4 training"
    assert core["mxfp8"]["feasible"] and core["fp8"]["step_s"] != default["fp8"]["step_s"]  # delayed vs current


def test_whatif_precision_exits_1_when_the_release_refuses_the_layout():
    # 32 layers over 3 stages: Megatron-Core splits them unevenly, the 2021 release only evenly
    args = ["whatif", "precision", "-m", MODEL, "--gpus", "6", "--tp", "2", "--pp", "3"]
    assert any(r["feasible"] for r in _rows(args))
    out = runner.invoke(app, [*args, "--framework", "megatron-lm-2021"])
    assert out.exit_code == 1 and "megatron-lm-2021 splits the layers only evenly" in out.stderr, out.output


@pytest.mark.parametrize("args", [
    ["whatif", "batch", "-m", MODEL, "--gpus", "8", "--batches", "64", "--seq-len", "4096"],
    ["scale", "train", "-m", MODEL, "--gpus", "8", "--global-batch", "64", "--seq-len", "4096"],
])
def test_whatif_batch_and_scale_train_run_under_the_framework_and_refuse_with_its_reason(args):
    default, old = _rows(args)[0], _rows([*args, "--framework", "megatron-lm-2022"])[0]
    assert default["feasible"] and old["feasible"] and old["step_s"] != default["step_s"]
    out = runner.invoke(app, [*args, "--precision", "fp8", "--framework", "megatron-lm-2022"])
    assert out.exit_code == 1 and "megatron-lm-2022 has no FP8 training" in out.stderr, out.output


def test_whatif_distill_trains_the_student_under_the_framework():
    args = ["whatif", "distill", "--gpus", "64"]
    default, old = _rows(args), _rows([*args, "--framework", "megatron-lm-2022"])
    assert old["student_train_s"] != default["student_train_s"]
    assert old["teacher_forward_s"] == default["teacher_forward_s"]  # serving: no training release


# --- block-scaled formats by release and by accelerator ---------------------------------------------------------------

def test_every_release_states_its_block_scaled_formats_with_a_source():
    assert set(BLOCK_SCALED) == {r.name for r in RELEASES.values()}
    for rel in RELEASES.values():
        assert rel.framework.block_scaled == BLOCK_SCALED[rel.name][0] and len(rel.cite["block_scaled"]) > 20
        assert rel.framework.fp8_training or not rel.framework.block_scaled


@pytest.mark.parametrize("framework, offered", [
    ("megatron-core-0.11.0", ()), ("megatron-core-0.12.0", ("mxfp8",)), ("megatron-core-0.14.0", ("mxfp8",)),
    ("nemo-25.02", ()), ("nemo-25.04", ("mxfp8",)), ("megatron-bridge-25.09", ("mxfp8",)),
    ("megatron-bridge-25.11", ("mxfp8", "nvfp4")), ("torchtitan-2024-12", ()), ("torchtitan-2025-06", ("mxfp8",)),
    ("torchtitan-2026-08", ("mxfp8", "nvfp4")), ("nemo-automodel-2026-07", ("mxfp8",)), ("deepspeed-0.14", ()),
])
def test_block_scaled_formats_are_priced_only_where_the_release_has_their_recipe(framework, offered):
    for fmt in ("mxfp8", "nvfp4"):
        st, _ = _priced(framework, "B200", precision=fmt, dp=8, tp=1)
        why = f"{framework} has no {fmt.upper()} training"
        assert (st.reason != why) if fmt in offered else (st.reason == why), (fmt, st.reason)


def test_the_cli_refuses_a_block_scaled_format_the_release_lacks_in_one_line():
    out = runner.invoke(app, ["train", "-m", MODEL, "-a", "B200", "-n", "8", "--tp", "8", "--global-batch", "8",
                              "--precision", "mxfp8", "--framework", "megatron-core-0.11.0"])
    assert out.exit_code == 1 and "megatron-core-0.11.0 has no MXFP8 training" in out.stderr, out.output


@pytest.mark.parametrize("args", [["train", "-n", "8"], ["whatif", "batch", "--gpus", "8", "--batches", "64"]])
def test_a_block_scaled_format_on_hopper_is_infeasible_with_its_reason(args):
    out = runner.invoke(app, [*args, "-m", MODEL, "-a", "H100-SXM5-80GB", "--precision", "mxfp8"])
    assert out.exit_code == 1 and "needs Blackwell block-scaled tensor cores" in out.stderr, out.output


# --- the dashboard --------------------------------------------------------------------------------------------------

def test_the_whatif_precision_page_prices_under_the_chosen_release():
    at = page("whatif", study="training precision", model=MODEL, acc="B200", gpus="8", tp="8",
              fw="megatron-core-0.14.0")
    assert not at.exception and not at.error
    df = at.dataframe[0].value
    assert not bool(df.loc[df["precision"] == "nvfp4", "feasible"].iloc[0])
    captions = " ".join(shown(c.value) for c in at.caption)
    assert "nvfp4 is infeasible: megatron-core-0.14.0 has no NVFP4 training" in captions
    assert at.selectbox(key="fw").value == "megatron-core-0.14.0"


def test_the_scaling_page_trains_under_the_chosen_release_and_says_why_not():
    at = page("scaling", study="training", model=MODEL, gpus="8", gb="64", seq="4096")
    assert not at.exception and not at.error
    default = float(at.dataframe[0].value["step_s"].iloc[0])
    at = page("scaling", study="training", model=MODEL, gpus="8", gb="64", seq="4096", fw="megatron-lm-2022")
    assert not at.exception and not at.error
    assert float(at.dataframe[0].value["step_s"].iloc[0]) != default
