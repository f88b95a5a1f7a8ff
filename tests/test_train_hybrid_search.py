"""The layout search tries hybrid sharding (HSDP): a given sharding group with the rest of the layout searched
(``capsim train --auto --fsdp-group N``, ``capsim plan train --fsdp-group N``), and for the FSDP2 releases the group
as an axis of its own (powers of two and the GPUs of a node that divide dp x cp)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import Cluster, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.training import step_time
from capsim.cli import app
from capsim.plan.train_layouts import hybrid_groups, layout_grid, plan_of_row, search_layouts, searches_hybrid
from capsim.plan.training import plan_training

H100 = load_calibration("H100-SXM5-80GB").perf()
MODEL = get_model("llama-3-8b")
TITAN = "torchtitan-2025-06"
CLUSTER = Cluster(get_accelerator("h100"), 32)


def test_hybrid_groups_are_powers_of_two_and_the_node_below_the_gpu_count():
    assert hybrid_groups(64, 8) == [2, 4, 8, 16, 32]
    assert hybrid_groups(48, 6) == [2, 4, 6, 8, 16, 32]
    assert hybrid_groups(2, 8) == []


def test_a_given_group_is_kept_and_every_layout_can_shard_over_it():
    lay = layout_grid(MODEL, 32, 64, 4096, 8, {"shard": 8}, TITAN)
    dpcp = lay.dp * lay.cp
    assert len(lay) > 0 and np.all(lay.shard == 8) and np.all(dpcp % 8 == 0)
    assert np.all((lay.zero_stage > 0) | lay.distributed_optimizer)
    assert np.any(dpcp > 8)  # hybrid ones (replicas > 1), not only groups that span all of dp x cp
    assert set(np.unique(lay.replicas)) >= {2, 4}


def test_a_searched_group_is_smaller_than_dp_x_cp_and_divides_it():
    lay = layout_grid(MODEL, 32, 64, 4096, 8, {}, TITAN, hybrid=True)
    dpcp = lay.dp * lay.cp
    hybrid = lay.shard < dpcp
    assert hybrid.any() and (~hybrid).any()
    assert np.all(dpcp[hybrid] % lay.shard[hybrid] == 0)
    assert np.all((lay.zero_stage > 0)[hybrid] | lay.distributed_optimizer[hybrid])
    plain = layout_grid(MODEL, 32, 64, 4096, 8, {}, TITAN)
    assert np.all(plain.shard == plain.dp * plain.cp) and len(plain) == int((~hybrid).sum())


def test_a_group_no_layout_can_shard_over_is_an_error_naming_the_group():
    with pytest.raises(SpecError) as err:
        layout_grid(MODEL, 32, 64, 4096, 8, {"shard": 3}, TITAN)
    assert err.value.field == "shard" and "3" in err.value.problem


def test_fsdp2_releases_search_hybrid_groups_and_megatron_core_does_not():
    assert searches_hybrid(TITAN) and searches_hybrid("nemo-automodel-2025-10")
    assert not searches_hybrid("torchtitan-2024-04")  # no data_parallel_replicate_degree at 1ea476e
    assert not searches_hybrid("megatron-bridge-26.04.01") and not searches_hybrid("deepspeed-0.14")
    titan = search_layouts(MODEL, CLUSTER, 64, 4096, H100, framework=TITAN, top=None)
    assert (titan["shard"] < titan["dp"] * titan["cp"]).any()
    mcore = search_layouts(MODEL, CLUSTER, 64, 4096, H100, framework="megatron-bridge-26.04.01", top=None)
    assert (mcore["shard"] == mcore["dp"] * mcore["cp"]).all()


def test_searching_hybrid_groups_never_loses_the_best_full_sharding_layout():
    full = search_layouts(MODEL, CLUSTER, 64, 4096, H100, framework=TITAN, top=1, hybrid=False)
    both = search_layouts(MODEL, CLUSTER, 64, 4096, H100, framework=TITAN, top=1, hybrid=True)
    assert both.attrs["evaluated"] > full.attrs["evaluated"]
    assert both["step_s"].iloc[0] <= full["step_s"].iloc[0]


def test_a_hybrid_row_is_the_plan_it_was_priced_as():
    frame = search_layouts(MODEL, CLUSTER, 64, 4096, H100, framework=TITAN, fixed={"shard": 8}, top=5)
    for row in frame.to_dict("records"):
        plan = plan_of_row(row, 64, 4096)
        assert plan.shard_group == (8 if row["dp"] * row["cp"] != 8 else None)
        priced = step_time(MODEL, plan, CLUSTER, H100, framework=TITAN)
        assert float(priced.step_s) == pytest.approx(row["step_s"], rel=1e-12)


def test_planner_keeps_a_given_group_and_skips_counts_it_does_not_divide():
    plan = plan_training(MODEL, get_accelerator("h100"), 1e11, 64, 4096, num_gpus=32, perf=H100, framework=TITAN,
                         fixed={"shard": 16})
    assert plan.feasible and (plan.table["shard"] == 16).all() and plan.best["shard"] == 16


RUNNER = CliRunner()
AUTO = ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "32", "--global-batch", "64", "--seq-len", "4096",
        "--framework", TITAN, "--auto", "--json", "--top", "5"]


def test_cli_train_auto_with_a_group():
    out = RUNNER.invoke(app, [*AUTO, "--fsdp-group", "8"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert all(r["shard"] == 8 for r in d["top"])
    assert d["plan"]["shard_group"] == (8 if d["plan"]["dp"] * d["plan"]["cp"] != 8 else None)


def test_cli_train_auto_searches_groups_for_fsdp2():
    d = json.loads(RUNNER.invoke(app, AUTO).output)
    assert d["evaluated"] > json.loads(RUNNER.invoke(app, [*AUTO, "--fsdp-group", "32"]).output)["evaluated"]


@pytest.mark.parametrize("args", [
    [*AUTO, "--fsdp-group", "3"],  # divides no dp x cp of 32 GPUs
    ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "32", "--zero", "3", "--global-batch", "64",
     "--fsdp-group", "3"],  # does not divide dp = 32
    ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "32", "--global-batch", "64", "--fsdp-group", "8"],  # no --zero
    ["plan", "train", "-m", "llama-3-8b", "-a", "h100", "--gpus", "32", "--global-batch", "64", "--fsdp-group", "64"],
])
def test_refused_groups_exit_2_naming_fsdp_group(args):
    out = RUNNER.invoke(app, args)
    assert out.exit_code == 2 and "--fsdp-group" in out.output, out.output


def test_cli_plan_train_with_a_group():
    out = RUNNER.invoke(app, ["plan", "train", "-m", "llama-3-8b", "-a", "h100", "--gpus", "32", "--global-batch",
                              "64", "--seq-len", "4096", "--tokens", "1e11", "--framework", TITAN, "--fsdp-group", "8",
                              "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["best"]["shard"] == 8 and all(r["shard"] == 8 for r in d["top"])


def test_every_release_searched_for_hybrid_groups_is_a_cited_fsdp2_preset():
    from capsim.analytic.training.framework import get_release
    from capsim.analytic.training.release import FrameworkFamily
    from capsim.plan.train_layouts import HYBRID_RELEASES

    for name, source in HYBRID_RELEASES.items():
        assert get_release(name).family is FrameworkFamily.FSDP2 and "@" in source and " L" in source


def test_a_group_too_narrow_to_fit_is_infeasible_and_says_so():
    # 70B over 64 H100s with the distributed optimizer sharded over 32: tp x pp <= 2 leaves the weights unsharded
    out = RUNNER.invoke(app, ["train", "-m", "llama-3-70b", "-a", "h100", "-n", "64", "--global-batch", "128",
                              "--seq-len", "4096", "--auto", "--fsdp-group", "32"])
    assert out.exit_code == 1 and "sharding group 32" in out.output and "--fsdp-group" in out.output, out.output


def test_auto_keeps_the_layout_options_given_and_reads_the_flags():
    d = json.loads(RUNNER.invoke(app, [*AUTO, "--tp", "2", "--zero", "3"]).output)
    assert all(r["tp"] == 2 and r["zero_stage"] == 3 for r in d["top"]) and d["plan"]["tp"] == 2
    # Megatron-FSDP turned on by the run's flags: the search may shard (ZeRO) under a Megatron-Core release
    mcore = [a if a != TITAN else "megatron-bridge-26.04.01" for a in AUTO]
    out = RUNNER.invoke(app, [*mcore, "--zero", "3", "--flags", "--use-megatron-fsdp"])
    assert out.exit_code == 0, out.output
    assert all(r["zero_stage"] == 3 for r in json.loads(out.output)["top"])


@pytest.mark.parametrize(("args", "named"), [(["--dp", "4"], "--dp"), (["--layer-split", "16,16"], "--layer-split"),
                                             (["--flags", "--no-such-flag"], "--no-such-flag")])
def test_auto_refuses_what_it_would_drop(args, named):
    out = RUNNER.invoke(app, [*AUTO, *args])
    assert out.exit_code == 2 and named in out.output, out.output


# A sharding group below dp x cp prices only under a release whose code has hybrid sharding (capsim.analytic.training
# .hybrid): step_time refuses it under the others, for one plan and for a search alike.
_NO_HSDP = ["torchtitan-2024-04", "deepspeed-0.14", "megatron-deepspeed-2022", "megatron-core-0.9.0", "nemo-24.12",
            "nemo-25.04", "megatron-lm-2022"]


@pytest.mark.parametrize("release", _NO_HSDP)
def test_a_hybrid_plan_is_a_pricing_error_under_a_release_without_hsdp(release):
    from capsim import TrainPlan

    plan = TrainPlan(dp=32, zero_stage=1, shard_group=8, global_batch=64, seq_len=4096)
    with pytest.raises(SpecError) as err:
        step_time(MODEL, plan, CLUSTER, H100, framework=release)
    assert err.value.field == "shard" and release in str(err.value) and "hybrid sharding" in str(err.value)
    assert "--fsdp-group" in err.value.fix


@pytest.mark.parametrize("release", ["torchtitan-2025-06", "nemo-automodel-2025-10", "fsdp-pytorch-2.3",
                                     "megatron-core-0.10.0", "megatron-core-0.14.0", "nemo-25.07",
                                     "megatron-bridge-25.09"])
def test_a_release_with_hsdp_prices_a_hybrid_plan(release):
    from capsim import TrainPlan

    plan = TrainPlan(dp=32, distributed_optimizer=True, shard_group=8, global_batch=64, seq_len=4096)
    res = step_time(MODEL, plan, CLUSTER, H100, framework=release)
    assert res.step_s > 0


@pytest.mark.parametrize("release", _NO_HSDP)
def test_a_whole_dp_group_still_prices_under_a_release_without_hsdp(release):
    from capsim import TrainPlan

    plan = TrainPlan(dp=32, zero_stage=1, shard_group=32, global_batch=64, seq_len=4096)
    assert step_time(MODEL, plan, CLUSTER, H100, framework=release).step_s > 0


@pytest.mark.parametrize("args", [
    ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "32", "--global-batch", "64", "--zero", "3", "--fsdp-group", "8",
     "--framework", "torchtitan-2024-04"],
    ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "32", "--global-batch", "64", "--auto", "--fsdp-group", "8",
     "--framework", "deepspeed-0.14"],
    ["plan", "train", "-m", "llama-3-8b", "-a", "h100", "--gpus", "32", "--global-batch", "64", "--tokens", "1e10",
     "--fsdp-group", "8", "--framework", "torchtitan-2024-04"]])
def test_cli_refuses_a_group_under_a_release_without_hsdp(args):
    out = RUNNER.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert "--fsdp-group" in out.output and args[-1] in out.output and "no hybrid sharding" in out.output


def test_every_release_with_hybrid_sharding_is_a_cited_preset():
    from capsim.analytic.training.framework import get_release
    from capsim.analytic.training.hybrid import HYBRID_SHARDING
    from capsim.plan.train_layouts import HYBRID_RELEASES

    assert set(HYBRID_RELEASES) <= set(HYBRID_SHARDING)
    for name, source in HYBRID_SHARDING.items():
        assert get_release(name).name == name and ("@" in source or "PyTorch v2.3.0" in source)


def test_the_event_simulator_refuses_a_hybrid_plan_alike():
    from capsim import TrainPlan
    from capsim.sim.train_step import simulate_step

    plan = TrainPlan(dp=32, zero_stage=1, shard_group=8, global_batch=64, seq_len=4096)
    with pytest.raises(SpecError, match="torchtitan-2024-04 has no hybrid sharding"):
        simulate_step(MODEL, plan, CLUSTER, H100, framework="torchtitan-2024-04")
    assert simulate_step(MODEL, plan, CLUSTER, H100, framework=TITAN).step_s > 0
