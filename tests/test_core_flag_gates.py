"""Since which Megatron-Core release each flag capsim prices exists (releases_current._MC_FLAGS, read at every tag
core_v0.8.0 ... core_v0.14.0), and how the NeMo releases reach the ones their core's argparse lacks: NeMo passes
config objects, so a config field the core has is a flag of that NeMo release even before the core's argparse
spells it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from capsim import Precision, TrainPlan, get_accelerator, get_model, load_calibration
from capsim.analytic.training import step_time
from capsim.analytic.training.core_flags import _MC_FLAGS, core_flag_arrived, megatron_core_flags
from capsim.analytic.training.framework import get_release, release_for
from capsim.analytic.training.releases_mcore import _CORES
from capsim.cli import app
from capsim.errors import SpecError
from capsim.specs.hardware import Cluster

# The corrected gates: (flag, the first core minor whose training/arguments.py has it).
CORRECTED = [("--account-for-embedding-in-pipeline-split", 11), ("--account-for-loss-in-pipeline-split", 11),
             ("--grad-reduce-in-bf16", 12), ("--fp8-param-gather", 9)]


@pytest.mark.parametrize(("flag", "since"), CORRECTED)
def test_corrected_gates(flag: str, since: int) -> None:
    assert _MC_FLAGS[flag][3] == since
    assert flag not in megatron_core_flags(since - 1) and flag in megatron_core_flags(since)
    assert f"ML@core_v0.{since}.0 " in megatron_core_flags(since)[flag].source  # cited at its first release


def test_gates_agree_with_the_per_tag_line_table_of_releases_mcore() -> None:
    """releases_mcore reads each flag's line at every core tag on its own: a flag has a line there iff the gate
    admits that release."""
    checked = 0
    for core in _CORES.values():
        for flag, (_field, _values, _where, since) in _MC_FLAGS.items():
            try:
                line = core.line(flag)
            except ValueError:  # not a key that table reads
                continue
            assert bool(line) == (since <= core.minor), (flag, core.tag)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(("release", "flag", "since"), [
    ("nemo-24.12", "--account-for-embedding-in-pipeline-split", "Megatron-Core 0.11"),
    ("nemo-24.09", "--expert-tensor-parallel-size", "Megatron-Core 0.10"),
    ("nemo-24.07", "--fp8-param-gather", "Megatron-Core 0.9"),
    ("megatron-core-0.11.0", "--grad-reduce-in-bf16", "Megatron-Core 0.12"),
    ("nemo-25.02", "--fp8-recipe=tensorwise", "Megatron-Core 0.12"),
])
def test_a_flag_older_than_its_release_is_an_error_naming_both(release: str, flag: str, since: str) -> None:
    with pytest.raises(SpecError, match=f"{release}.*{flag.split('=')[0]}.*exists from {since}"):
        get_release(release).configure(flag)


def test_flex_dispatcher_only_from_core_0_12() -> None:
    assert "flex" not in megatron_core_flags(11)["--moe-token-dispatcher-type"].values
    assert "flex" in megatron_core_flags(12)["--moe-token-dispatcher-type"].values


@pytest.mark.parametrize("release", ["nemo-24.07", "nemo-24.09", "nemo-24.12", "nemo-25.02", "nemo-25.04",
                                     "nemo-25.07"])
def test_nemo_reduces_in_bf16_by_its_own_config_key(release: str) -> None:
    """NeMo sets DistributedDataParallelConfig.grad_reduce_in_fp32 itself (NeMo 1.0: optim.grad_sync_dtype; NeMo 2:
    the precision plugin's grad_reduce_in_fp32), so every NeMo release has the flag, cited by that key."""
    rel = get_release(release)
    fw, _ = rel.configure("--grad-reduce-in-bf16")
    assert rel.framework.grads_fp32 and not fw.grads_fp32
    source = rel.flags["--grad-reduce-in-bf16"].source
    assert "grad_reduce_in_fp32" in source and ("grad_sync_dtype" in source or "plugins" in source)


def test_core_flag_arrived_names_the_tag_and_line() -> None:
    assert core_flag_arrived("--grad-reduce-in-bf16").startswith("Megatron-Core 0.12 (ML@core_v0.12.0")
    assert "L1999" in core_flag_arrived("--grad-reduce-in-bf16")
    assert core_flag_arrived("--no-such-flag") is None


def test_cli_exits_2_naming_the_flag_and_the_release() -> None:
    res = CliRunner().invoke(app, ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "8", "--global-batch", "64",
                                   "--framework", "megatron-core-0.10.0", "--flags", "--grad-reduce-in-bf16"])
    assert res.exit_code == 2
    assert "megatron-core-0.10.0" in res.output and "--grad-reduce-in-bf16" in res.output
    assert "exists from Megatron-Core 0.12" in res.output


def test_overlap_grad_reduce_false_exposes_the_dp_reduce_scatter() -> None:
    """--overlap-grad-reduce=false (DistributedDataParallelConfig.overlap_grad_reduce = False; Megatron-Bridge's
    ddp.overlap_grad_reduce, which MB@v0.1.0rc3 scripts/performance/run_script.py L94-95 turns off for DeepSeek-V3
    on H100): the distributed optimizer's gradient reduce-scatter runs after the last backward, none of it hidden;
    on (the Bridge default with dp > 1) all but the last bucket hides behind the last micro-batch's backward."""
    rel = release_for("megatron-core", "megatron-bridge-25.09")
    off, _ = rel.configure("--overlap-grad-reduce=false")
    on, _ = rel.configure("")
    assert rel.framework.overlap_grad_reduce and not off.overlap_grad_reduce
    assert rel.configure("--overlap-grad-reduce=true")[0] == on == rel.configure("--overlap-grad-reduce")[0]
    assert off == on.with_(overlap_grad_reduce=False)  # nothing else changes
    plan = TrainPlan(dp=16, tp=2, sequence_parallel=True, micro_batch=1, global_batch=128, seq_len=4096,
                     distributed_optimizer=True, precision=Precision.preset("bf16"))
    args = (get_model("llama-3-8b"), plan, Cluster(get_accelerator("h100"), 32),
            load_calibration("H100-SXM5-80GB").perf())
    hidden, exposed = step_time(*args, framework=on), step_time(*args, framework=off)
    assert hidden.feasible and exposed.feasible
    assert hidden.dp_total_s > 0 and exposed.dp_total_s == pytest.approx(hidden.dp_total_s)
    assert exposed.dp_comm_s == pytest.approx(exposed.dp_total_s) and exposed.dp_hidden_s == 0
    assert hidden.dp_hidden_s > 0.9 * hidden.dp_total_s
    assert exposed.step_s - hidden.step_s == pytest.approx(hidden.dp_hidden_s)


@pytest.mark.parametrize("release", ["megatron-core-0.9.0", "nemo-25.07", "megatron-bridge-26.04.01"])
def test_every_megatron_core_release_takes_overlap_grad_reduce_either_way(release: str) -> None:
    """One entry (core_flags._MC_FLAGS) gives every Megatron-Core, NeMo and Megatron-Bridge preset the value."""
    rel = get_release(release)
    assert rel.configure("--overlap-grad-reduce=false")[0].overlap_grad_reduce is False
    assert rel.configure("--overlap-grad-reduce=true")[0].overlap_grad_reduce is True
    assert "DistributedDataParallelConfig.overlap_grad_reduce" in rel.flags["--overlap-grad-reduce"].source
