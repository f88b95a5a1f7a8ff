"""Megatron-FSDP (a sharding option of the Megatron-Core releases that have it) and hybrid sharding (HSDP), priced
on the one ZeRO/FSDP path: comm volumes and groups, memory by strategy, HSDP = FSDP when the group is dp x cp,
releases without Megatron-FSDP refuse, and the Megatron-FSDP rows of the Blackwell file."""

from pathlib import Path

import numpy as np
import pytest

from capsim import TrainPlan, get_accelerator, get_model
from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import model_state_bytes
from capsim.analytic.training import comms, step_time
from capsim.analytic.training.framework import get_release
from capsim.analytic.training.release import Reshard
from capsim.calibration import perf_for
from capsim.errors import SpecError
from capsim.specs.hardware import Cluster
from capsim.specs.precision import Precision
from capsim.validation.harness import DataError
from capsim.validation.training import predict_row
from capsim.validation.training_rows import check_fsdp

MODEL = get_model("llama-3-8b")
BLACKWELL = Path(__file__).parents[1] / "capsim/data/validation/training_bridge_blackwell.csv"
FSDP_FLAGS = "--use-megatron-fsdp --data-parallel-sharding-strategy=optim_grads_params"


class Recorder:
    """A Perf that records every collective it is asked for and prices it at 1 s per byte (so a result is the sum
    of the bytes it was asked to move)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int, str]] = []

    def collective_s(self, collective, nbytes, group, tier):  # noqa: ANN001, ANN201
        for b in np.atleast_1d(nbytes):
            self.calls.append((collective, float(b), int(group), tier))
        return np.asarray(nbytes, float)


def _lay(**kw) -> Layouts:
    return Layouts.build(MODEL, **{"dp": 16, "zero_stage": 3, "global_batch": 64, **kw})


def test_hsdp_reduce_scatters_in_the_shard_group_and_all_reduces_the_shard_over_replicas():
    # 16 data-parallel ranks on 8-GPU nodes, sharding groups of 8 (one node each), 2 replicas (across the network).
    perf, lay, params = Recorder(), _lay(shard=8), np.array([1e9])
    precision = Precision()  # bf16 with fp32 gradients (4 bytes)
    reduce = comms.grad_reduce_s(perf, params, np.zeros(1), lay, precision, 8)
    # reduce-scatter of 4e9 gradient bytes inside the node (8 ranks), then the 1/8 shard (5e8 bytes) all-reduced
    # over the 2 replicas, one per node: inter-node, 1 rank per node
    assert {("reduce_scatter", 4e9, 8, "intra"), ("all_reduce", 5e8, 2, "inter")} <= set(perf.calls)
    assert float(reduce[0]) == pytest.approx(4e9 + 5e8)  # (the all-reduce it prices too is not the one it takes)
    perf.calls.clear()
    comms.param_gather_s(perf, params, np.zeros(1), lay, precision, 8)
    assert perf.calls == [("all_gather", 2e9, 8, "intra")]  # bf16 weights, the shard group only


def test_full_sharding_gathers_over_all_of_dp_and_has_no_replica_reduce():
    perf, lay = Recorder(), _lay()  # shard defaults to dp x cp = 16: two nodes, hierarchical
    assert int(lay.shard[0]) == 16 and int(lay.replicas[0]) == 1
    reduce = comms.grad_reduce_s(perf, np.array([1e9]), np.zeros(1), lay, Precision(), 8)
    # hierarchical reduce-scatter: 8 ranks in the node on 4e9 bytes, then 2 nodes on 4e9 / 8; no replica traffic
    assert {("reduce_scatter", 4e9, 8, "intra"), ("reduce_scatter", 5e8, 2, "inter")} <= set(perf.calls)
    assert float(reduce[0]) == pytest.approx(4e9 + 5e8)
    assert float(comms.replica_reduce_s(Recorder(), np.array([1e9]), np.zeros(1), lay, Precision(), 8)[0]) == 0.0


@pytest.mark.parametrize(("zero", "weights", "grads", "optimizer"), [
    (1, 2.0, 4.0, 12.0 / 8), (2, 2.0, 4.0 / 8, 12.0 / 8), (3, 2.0 / 8, 4.0 / 8, 12.0 / 8)])
def test_memory_by_strategy_shards_over_the_shard_group_only(zero, weights, grads, optimizer):
    # bytes per parameter: bf16 weights 2, fp32 gradients 4, fp32 master + two Adam moments 12, each divided by the
    # sharding group (8) where the strategy shards it, whatever the 16-way data parallelism
    w, g, o = model_state_bytes(np.array([1e9]), np.zeros(1), _lay(zero_stage=zero, shard=8), Precision())
    assert (float(w[0]), float(g[0]), float(o[0])) == pytest.approx((weights * 1e9, grads * 1e9, optimizer * 1e9))


def test_hsdp_with_the_whole_group_is_fsdp():
    cluster, perf = Cluster(get_accelerator("h100"), 32), perf_for(get_accelerator("h100"))
    for fw in ("torchtitan-2025-06", get_release("megatron-bridge-26.04").configure(FSDP_FLAGS)[0]):
        plans = [TrainPlan(dp=32, zero_stage=3, global_batch=64, micro_batch=1, seq_len=4096, shard_group=g)
                 for g in (None, 32)]
        a, b = (step_time(MODEL, p, cluster, perf, framework=fw) for p in plans)
        assert a.step_s == pytest.approx(b.step_s) and a.memory.total_bytes == pytest.approx(b.memory.total_bytes)
        hybrid = step_time(MODEL, TrainPlan(dp=32, zero_stage=3, global_batch=64, micro_batch=1, seq_len=4096,
                                            shard_group=8), cluster, perf, framework=fw)
        assert hybrid.memory.total_bytes > a.memory.total_bytes  # 1/8 of the state per GPU instead of 1/32


def test_megatron_fsdp_replicas_sync_once_per_step_fsdp2_every_micro_batch():
    """With gradient accumulation (8 micro-batches), FSDP2's HSDP all-reduces every micro-batch, Megatron-FSDP's
    only after the last one: the same layout exposes less replica traffic under Megatron-FSDP."""
    mfsdp = get_release("megatron-bridge-26.04").configure(FSDP_FLAGS)[0]
    fsdp2 = mfsdp.with_(replica_reduce_every_micro_batch=True)
    cluster, perf = Cluster(get_accelerator("h100"), 32), perf_for(get_accelerator("h100"))
    plan = TrainPlan(dp=32, zero_stage=3, global_batch=256, micro_batch=1, seq_len=4096, shard_group=8)
    once, every = (step_time(MODEL, plan, cluster, perf, framework=fw) for fw in (mfsdp, fsdp2))
    assert once.zero_comm_s < every.zero_comm_s
    assert once.dp_comm_s >= every.dp_comm_s  # the once-per-step reduce is in the step's tail


def test_megatron_fsdp_flags_set_its_behaviour():
    release = get_release("megatron-bridge-26.04.01")
    fw, layout = release.configure("--use-megatron-fsdp --data-parallel-sharding-strategy=optim_grads")
    assert fw.zero and fw.zero3_prefetch and fw.reshard_after_forward is Reshard.ALWAYS
    assert not fw.defer_grad_sync and not fw.replica_reduce_every_micro_batch
    assert layout["zero_stage"] == 2 and layout["distributed_optimizer"] is False
    assert "L2425" in release.flags["--use-megatron-fsdp"].source
    # core 0.12-0.13 named it --use-custom-fsdp; 25.09 (core 0.14) has both
    assert {"--use-custom-fsdp", "--use-megatron-fsdp"} <= set(get_release("megatron-bridge-25.09").flags)


@pytest.mark.parametrize("name", ["megatron-core-0.8.0", "nemo-24.07", "nemo-25.02"])
def test_releases_before_megatron_fsdp_refuse_it(name):
    with pytest.raises(SpecError) as err:
        get_release(name).configure("--use-megatron-fsdp")
    assert err.value.field == "flags" and "Megatron-Core 0.14" in str(err.value)


def _row(**kw: str) -> dict[str, str]:
    return {"fsdp": "64", "dp": "64", "cp": "1", **kw}


def test_fsdp_column_needs_a_release_that_shards():
    plain = get_release("megatron-bridge-26.04").framework  # the distributed optimizer, no Megatron-FSDP
    with pytest.raises(DataError) as err:
        check_fsdp(_row(), plain, 64, 1)
    assert err.value.field == "fsdp" and "--use-megatron-fsdp" in str(err.value)
    fsdp = get_release("megatron-bridge-26.04").configure(FSDP_FLAGS)[0]
    assert check_fsdp(_row(), fsdp, 64, 1) == 64
    assert check_fsdp(_row(fsdp="16"), fsdp, 64, 1) == 16  # hybrid: 4 replicas of 16-way shards
    with pytest.raises(DataError):
        check_fsdp(_row(fsdp="48"), fsdp, 64, 1)  # does not divide dp x cp


def _blackwell_fsdp_rows() -> list[dict[str, str]]:
    import pandas as pd

    frame = pd.read_csv(BLACKWELL, comment="#", dtype=str, keep_default_na=False)
    return [r for r in frame.to_dict("records") if r["fsdp"].strip()]


def test_the_megatron_fsdp_rows_are_in_the_file():
    rows = _blackwell_fsdp_rows()
    assert len(rows) == 12 and all("--use-megatron-fsdp" in r["flags"] for r in rows)


@pytest.mark.parametrize("row", _blackwell_fsdp_rows(), ids=lambda r: f"{r['software']}-{r['model']}-{r['gpu']}")
def test_the_megatron_fsdp_rows_price(row):
    pred = predict_row(row, "datasheet")
    assert pred.value > 0 and pred.memory_bytes <= pred.capacity_bytes


def test_cpu_offloading_frees_the_offloaded_layers_but_one():
    """Llama 3 8B (32 layers) on GB200 under Megatron-FSDP: offloading 16 layers keeps 17 layers' activations (16
    not offloaded plus one in flight); the copies over the 450 GB/s host link hide behind the layers' compute."""
    base = get_release("megatron-bridge-26.04").configure(FSDP_FLAGS)[0]
    cluster, perf = Cluster(get_accelerator("gb200"), 8), perf_for(get_accelerator("gb200"))
    plan = TrainPlan(dp=8, zero_stage=3, global_batch=16, micro_batch=2, seq_len=8192)
    plain, off = (step_time(MODEL, plan, cluster, perf, framework=base.with_(offload_layers=n)) for n in (0, 16))
    assert off.memory.activations_bytes == pytest.approx(plain.memory.activations_bytes * 17 / 32, rel=1e-9)
    assert off.offload_s >= 0 and plain.offload_s == 0


@pytest.mark.parametrize(("plan", "gpu", "why"), [
    (TrainPlan(dp=4, pp=2, global_batch=16, micro_batch=1), "gb200", "pipeline parallelism"),
    (TrainPlan(dp=8, global_batch=16, micro_batch=1), "h100", "host link"),
])
def test_cpu_offloading_refuses_what_megatron_core_refuses(plan, gpu, why):
    fw = get_release("megatron-bridge-26.04").configure("--cpu-offloading-num-layers=4")[0]
    result = step_time(MODEL, plan, Cluster(get_accelerator(gpu), 8), perf_for(get_accelerator(gpu)), framework=fw)
    assert not result.feasible and why in result.reason


def test_cli_fsdp_group():
    from typer.testing import CliRunner

    from capsim.cli import app

    base = ["train", "-m", "llama-3-8b", "-a", "h100", "-n", "32", "--zero", "3", "--global-batch", "64",
            "--framework", "torchtitan-2025-06", "--json"]
    runner = CliRunner()
    ok = runner.invoke(app, [*base, "--fsdp-group", "8"])
    assert ok.exit_code == 0, ok.output
    assert '"shard_group": 8' in ok.output
    for bad in (["--fsdp-group", "5"], ["--fsdp-group", "8", "--zero", "0"], ["--fsdp-group", "5", "--auto"]):
        out = runner.invoke(app, [*base, *bad])
        assert out.exit_code == 2 and "--fsdp-group" in out.output, out.output


def test_zero_under_a_release_without_sharding_is_infeasible():
    plan = TrainPlan(dp=16, zero_stage=3, global_batch=64)
    result = step_time(MODEL, plan, Cluster(get_accelerator("h100"), 16), perf_for(get_accelerator("h100")),
                       framework="megatron-bridge-26.04.01")
    assert not result.feasible and "--use-megatron-fsdp" in result.reason


def test_a_hybrid_row_prices_with_more_memory_than_its_fully_sharded_twin():
    """A Megatron-FSDP row of the file restated with 2 replicas of 32-way shards (the fsdp column; 40 layers offloaded
    to leave room): it prices, the state sharded 32 ways only needs more memory, and the replica all-reduce once per
    step lands in the tail."""
    row = next(r for r in _blackwell_fsdp_rows() if r["software"] == "megatron-bridge-26.04.01" and r["gpu"] == "GB300")
    row = dict(row, flags=row["flags"].replace("--cpu-offloading-num-layers=20", "--cpu-offloading-num-layers=40"))
    full, hybrid = predict_row(row, "datasheet"), predict_row(dict(row, fsdp="32"), "datasheet")
    assert hybrid.memory_bytes > full.memory_bytes and hybrid.value > 0
    assert "dp_comm 0," in full.note and "dp_comm 0," not in hybrid.note
