"""NeMo AutoModel's FSDP2 releases after October 2025, its front-loaded pipeline split, and every row of
training_fsdp2.csv against the 15% bound (misses are strict xfails with their measured error and reason)."""

from dataclasses import replace
from importlib import resources

import numpy as np
import pytest

from capsim import Cluster, get_accelerator, get_model, load_calibration
from capsim.analytic.layouts import Layouts
from capsim.analytic.training import step_time
from capsim.analytic.training.framework import FrameworkName, get_release, release_for
from capsim.analytic.training.release import BEHAVIOUR, MoeDispatcher, Reshard
from capsim.analytic.training.stages import schedules
from capsim.analytic.training.step import release_split
from capsim.errors import SpecError
from capsim.plan.train_layouts import layout_grid
from capsim.specs.pipeline_layout import SplitRule, even, front_loaded
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import DType
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED, predict_row
from capsim.validation.training_rows import row_model, row_precision, row_split

FSDP2 = read_csv(None, "training_fsdp2.csv", REQUIRED)
ROW_BOUND_PCT = 15.0
_DSV3 = ("DeepSeek-V3 on {} H100 (PP4, EP64 over 8 nodes, DeepEP, fake balanced gate: a token's 8 consecutive "
         "experts lie on 2 ranks of one node, so DeepEP sends it over RDMA once): priced faster than measured "
         "(step {} s, ep_comm {} s, against {} s measured).{} The rest is unexplained (compute and recompute {} s "
         "of the predicted step). Before DeepEP's RDMA/NVLink overlap and the gate's routing were priced, an all-to-all "
         "priced for k random experts (ep_comm 22.8 s at 1024 GPUs) hid this gap")
_GA4 = (" The recipe's 4 pipeline schedules a step (local_batch_size 8 of 32 sequences a replica: four fills and "
        "drains, --local-batch-size=8) are priced: bubble 1.08 s (datasheet) where one schedule's is 0.27 s.")
_LLAMA = ("Llama 3.1 70B, CP 2 x FSDP 64 over 8 nodes, full AC, compiled: priced faster than measured (step {} s "
          "against 18.90 s). FSDP2's exposed traffic is priced (the first all-gather of each pass, the last "
          "reduce-scatter: zero_comm {} s); each block's gather (8.7 ms, profile) fits in its forward (11.3 ms) and "
          "gather + reduce-scatter (17.4 ms) in its backward with recomputation (34.6 ms); all of them exposed would "
          "add 8.4 s against a 3.5 s gap (profile). "
          "torch's CP is priced as its code runs by default (all-gather rotation hidden behind the first step: "
          "cp_comm {} s; fp32 merge passes; later ring steps at their half shapes). Checked against the recipe "
          "and code (AM@dccd977aa): reshard after forward for every block but the last, bf16 param and reduce "
          "dtypes, whole-module checkpointing, no FP8, each as priced; attention is HF's SDPA path "
          "(attn_implementation sdpa, models/llama/model.py L135-137) on torch 2.9.0+cu129 with cuDNN 9.19 "
          "(uv.lock), where torch prefers cuDNN's Hopper kernel (pytorch/pytorch#162073, 'for 2.9'; "
          "check_prefer_cudnn_attention, sdp_utils.cpp): the main attention curve, as priced; the ring itself runs eagerly "
          "(distributed/cp_utils.py attach_cp_sdpa_hooks, torch._dynamo.disable) with the allgather rotater "
          "(cp_utils.py L310). Unpriced: TE FusedAdam's fp32 moments, the fp32 RMSNorm, compute slowed by the "
          "NCCL kernels running beside it")
# (row index, calibration kind) -> why the row misses 15% or is not priced today.
MISSES = {
    (0, "datasheet"): "+51.9%: " + _DSV3.format(1024, "24.93", "3.92", "37.88", _GA4, "19.1"),
    (0, "profile"): "+46.3%: " + _DSV3.format(1024, "25.90", "3.92", "37.88", _GA4, "20.1"),
    (1, "datasheet"): "+30.0%: " + _DSV3.format(256, "6.29", "0.98", "8.18", "", "4.78"),
    (1, "profile"): "+25.4%: " + _DSV3.format(256, "6.52", "0.98", "8.18", "", "5.00"),
    (6, "profile"): "-18.8%: Qwen3-30B-A3B EP 16 over 2 nodes with HybridEP (8 SMs): priced slower than measured (step "
                    "6.74 s, ep_comm 1.75 s, against 5.47 s; DeepEP's row: ep_comm 1.31 s, -6.3%). HybridEP's combine "
                    "is priced from its hidden-2048 microbenchmark (33.5 GB/s across nodes at 8 SMs against DeepEP's "
                    "59.1, 4096 tokens, random routing); the report's section 4.2 finds that in training it fits "
                    "the compute window and HybridEP runs 7.9% faster than DeepEP: the kernel costs carry no "
                    "dependence on the fake gate's routing (one rank a token, no cross-rank reduction) or the 8192 "
                    "tokens a dispatch",
    # -14.0 -> -15.0% with cuDNN's H100 attention rates (published_attention_cudnn; step 6.36 -> 6.44 s)
    (6, "datasheet"): "-15.0%: as with the profile calibration (step 6.44 s, ep_comm 1.75 s, against 5.47 s)",
    (2, "datasheet"): "+30.3%: " + _LLAMA.format("14.5", "0.164", "0.037"),
    (2, "profile"): "+22.8%: " + _LLAMA.format("15.4", "0.153", "0.032"),
}


def _predict(priced, i: int, kind: str):
    return priced.row(FSDP2[i], kind)  # the accelerator's datasheet or profile calibration


def _param(i: int, kind: str):
    reason = MISSES.get((i, kind))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(i, kind, marks=marks, id=f"{kind}-{i}-{FSDP2[i]['software']}-{FSDP2[i]['model']}")


def test_the_file_ships_and_names_only_catalog_h100s():
    assert "training_fsdp2.csv" in SHIPPED and len(FSDP2) == 7
    assert {r["gpu"] for r in FSDP2} == {"H100-SXM5-80GB"} and {r["framework"] for r in FSDP2} == {"fsdp2"}


@pytest.mark.parametrize("i, kind", [_param(i, k) for k in ("datasheet", "profile") for i in range(len(FSDP2))])
def test_fsdp2_row_within_15_pct(i, kind, priced):
    pred = _predict(priced, i, kind)
    measured = float(FSDP2[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (FSDP2[i]["model"], pred.value, pred.note)


@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_every_row_is_priced(kind, priced):
    report = priced.suite(str(resources.files("capsim.data").joinpath("validation", "training_fsdp2.csv")), kind)
    assert len(report.rows) == len(FSDP2) and all(r.predicted is not None and r.predicted > 0 for r in report.rows)


def test_deepseek_rows_run_automodels_front_loaded_split():
    """61 layers over pp 4 x v 8 = 32 virtual stages: the first 29 take 2 layers, the last 3 one; virtual stage i
    on rank i mod 4 (AutoModel's looped interleaved schedule), so ranks 1-3 end on a one-layer chunk."""
    split = front_loaded(61, 4, 8)
    assert split.chunks[0] == (2,) * 8 and split.chunks[1] == split.chunks[3] == (2,) * 7 + (1,)
    assert split.stages == (16, 15, 15, 15) and split.rule is SplitRule.FRONT_LOADED
    assert front_loaded(64, 4, 8) == even(64, 4, 8) and front_loaded(3, 4) is None
    row = FSDP2[1]
    assert row_split(row_model(row), 4, 8, {}, release_for("fsdp2", row["software"]).framework) == split
    with pytest.raises(SpecError, match="does not divide"):  # Megatron-Core's releases have no such split
        row_split(row_model(row), 4, 8, {}, get_release(FrameworkName.MEGATRON_BRIDGE_26_04_01).framework)
    assert predict_row(row).value > 0  # priced on that split


def test_layout_search_uses_the_releases_own_split():
    model = row_model(FSDP2[1])
    fixed = {"tp": 1, "pp": 4, "v": 8, "cp": 1, "ep": 64, "etp": 1, "micro_batch": 1, "sp": False, "zero_stage": 3,
             "recompute": 2, "distributed_optimizer": False}
    lay = layout_grid(model, 256, 512, 4096, 8, fixed, release_for("fsdp2", "nemo-automodel-2025-10").framework)
    assert {lay.layer_split(i).rule for i in range(len(lay))} == {SplitRule.FRONT_LOADED}
    with pytest.raises(SpecError, match="splits deepseek-v3's 61 layers"):
        layout_grid(model, 256, 512, 4096, 8, fixed)  # Megatron-Core's options: none for 61 over 32


def test_automodel_2026_04_states_its_fsdp2_config_defaults():
    release = release_for("fsdp2", "nemo-automodel-2026-04")
    fw = release.framework
    assert release.name == FrameworkName.NEMO_AUTOMODEL_2026_04.value and set(release.cite) == set(BEHAVIOUR)
    assert fw.reshard_after_forward is Reshard.NOT_WITH_PP and fw.defer_grad_sync and not fw.fp32_master
    assert not fw.grads_fp32 and fw.moe_dispatcher is MoeDispatcher.FLEX and not fw.selective_recompute
    assert release.defaults["recompute"].value == "none"
    run, layout = release.configure(FSDP2[2]["flags"])
    assert not run.defer_grad_sync and run.torch_compile and run.zero3_prefetch and layout["recompute"] == "full"
    # Without the explicit prefetch chains FSDP2 still prefetches implicitly: both values price alike.
    assert release.configure("--enable-fsdp2-prefetch=false")[0].zero3_prefetch
    with pytest.raises(SpecError, match="no flag"):
        release.configure("--patch-is-packed-sequence=true")


def test_automodel_releases_are_distinct_and_named_by_their_month():
    old, new = release_for("fsdp2", "nemo-automodel-2025-10"), release_for("fsdp2", "nemo-automodel-2026-04")
    assert old is not new and old.covers is None and new.covers is None
    # The priced facts differ, so neither preset may cover the other's month.
    assert old.framework.reshard_after_forward is Reshard.NEVER and not old.framework.defer_grad_sync
    for month in ("nemo-automodel-2026-03", "nemo-automodel-2025-11", "nemo-automodel-2026"):
        with pytest.raises(SpecError, match="unknown fsdp2 release"):
            release_for("fsdp2", month)


def test_covers_release_compares_the_names_prefix_then_their_numbers():
    ranged = replace(get_release(FrameworkName.NEMO_AUTOMODEL_2026_04),
                     covers=("nemo-automodel-2025-10", "nemo-automodel-2026-04"))
    assert ranged.covers_release("nemo-automodel-2026-01") and ranged.covers_release("NEMO-AUTOMODEL-2025-10")
    assert ranged.covers_release("nemo-automodel-2026-04-10")  # a day inside the last month
    assert not ranged.covers_release("nemo-automodel-2026-05") and not ranged.covers_release("nemo-automodel-2025-09")
    assert not ranged.covers_release("nemo-automodel-2026")  # the whole year is not inside the range
    assert not ranged.covers_release("torchtitan-2026-01")  # another name's numbers never match


def test_automodel_2026_07_reduces_bf16_parameters_gradients_in_fp32():
    release = release_for("fsdp2", "nemo-automodel-2026-07")
    fw = release.framework
    assert fw.grads_fp32 and not fw.fp32_master and fw.defer_grad_sync and set(release.cite) == set(BEHAVIOUR)
    qwen = FSDP2[3]
    run = release.configure(qwen["flags"])[0]
    assert run.reshard_after_forward is Reshard.NEVER and run.moe_dispatcher is MoeDispatcher.FLEX
    p = row_precision(qwen, run)
    assert p.master_weights is None and p.optimizer_states is DType.BF16 and p.gradients is DType.FP32
    llama = FSDP2[2]  # 2026-04 reduced in bf16
    assert row_precision(llama, release_for("fsdp2", llama["software"]).configure(llama["flags"])[0]).gradients \
        is DType.BF16
    assert release.configure("--dispatcher=torch")[0].moe_dispatcher is MoeDispatcher.ALLGATHER


def test_deepep_and_hybridep_rows_price_by_their_own_kernels(priced):
    """--dispatcher picks the flex backend, each priced by its kernel microbenchmarks (capsim.analytic.training.flex):
    HybridEP's 8-SM combine is slower per row at hidden 2048 (the report's 3.3), so its rows are priced slower."""
    for deepep, hybridep in ((3, 4), (5, 6)):
        assert _predict(priced, hybridep, "profile").value < _predict(priced, deepep, "profile").value


def test_automodel_runs_a_pipeline_schedule_per_local_batch(priced):
    """NeMo AutoModel steps its pipeline schedule once per local batch: DeepSeek-V3's 1024-GPU recipe (local batch
    8 of the 32 sequences a replica) runs 4 schedules, 4 fills and drains; the 256-GPU one (8 of 8) one."""
    release = get_release("nemo-automodel-2025-10")
    fw, _ = release.configure("--local-batch-size=8")
    assert fw.pp_schedule_sequences == 8 and release.framework.pp_schedule_sequences == 0
    lay = Layouts.build(row_model(FSDP2[0]), dp=np.array([256, 64, 4]), pp=np.array([4, 4, 1]),
                        global_batch=np.array([8192, 512, 64]), micro_batch=np.array([1, 1, 1]))
    assert schedules(lay, fw).tolist() == [4.0, 1.0, 1.0]  # no pipeline: no schedule to repeat
    assert schedules(lay, release.framework).tolist() == [1.0, 1.0, 1.0]
    one = _predict(priced, 0, "datasheet").note
    # four times the 0.27 s of one schedule (1.05 and 0.26 before the eager RoPE; 1.07 before cuDNN's H100
    # attention rates)
    assert "bubble 1.08" in one


@pytest.mark.xfail(strict=True, reason="the report measures HybridEP 5.5% (1 node) and 7.9% (2 nodes) faster than "
                                       "DeepEP in training; its hidden-2048 microbenchmarks, which capsim prices the "
                                       "kernels from, have HybridEP's 8-SM combine slower (188 vs 287 GB/s in a node, "
                                       "33.5 vs 59.1 across nodes), and the SMs DeepEP's 24 take from the GEMMs are "
                                       "not priced")
def test_hybridep_rows_priced_faster_as_measured(priced):
    for deepep, hybridep in ((3, 4), (5, 6)):
        assert float(FSDP2[hybridep]["value"]) > float(FSDP2[deepep]["value"])
        assert _predict(priced, hybridep, "profile").value > _predict(priced, deepep, "profile").value


@pytest.mark.parametrize("kind", [pytest.param("datasheet", marks=[pytest.mark.xfail(
    strict=True, reason="median |error| 15.0% (datasheet; 14.0% before cuDNN's H100 attention rates): the HybridEP "
                        "EP 16 row (-15.0%) joins the two DeepSeek-V3 rows and Llama 3.1 70B above 15% (MISSES)")]),
                                  pytest.param("profile", marks=[pytest.mark.xfail(
    strict=True, reason="median |error| 18.8% (profile): the HybridEP EP 16 row (-18.8%) joins the "
                        "two DeepSeek-V3 rows and Llama 3.1 70B above 15% (MISSES)")])])
def test_fsdp2_median_within_15_pct(kind, priced):
    errors = [abs(_predict(priced, i, kind).value / float(r["value"]) - 1.0) * 100 for i, r in enumerate(FSDP2)]
    assert np.median(errors) <= ROW_BOUND_PCT


def test_a_plan_without_a_split_runs_its_releases_own():
    import json

    from typer.testing import CliRunner

    from capsim.cli import app
    args = ["train", "-m", "deepseek-v3", "-a", "h100", "-n", "256", "--pp", "4", "-v", "8", "--ep", "64",
            "--global-batch", "512", "--seq-len", "4096", "--zero", "3", "--recompute", "full", "--json"]
    out = CliRunner().invoke(app, [*args, "--framework", "nemo-automodel-2025-10"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["pipeline"]["stages"] == [16, 15, 15, 15]
    megatron = CliRunner().invoke(app, [*args, "--framework", "megatron-bridge-26.04.01"])
    assert megatron.exit_code == 2 and "does not divide 61 layers" in megatron.output  # no such split there
    plan = TrainPlan(dp=64, pp=4, pp_interleave=8, ep=64, global_batch=512, seq_len=4096)
    automodel = release_for("fsdp2", "nemo-automodel-2025-10").framework
    model = row_model(FSDP2[1])
    assert release_split(model, plan, automodel).split(model).chunks == front_loaded(61, 4, 8).chunks
    stated = plan.with_(account_for_embedding=True, account_for_loss=True, pp_interleave=1)  # the run's own wins
    assert release_split(model, stated, automodel) is stated


def test_a_local_batch_that_does_not_divide_the_replica_batch_is_infeasible():
    """AutoModel asserts the per-replica batch is a multiple of local_batch_size (step_scheduler.py L53-58 @8d9bfb9):
    such a layout is reported infeasible with that reason, not priced with a fractional schedule count."""
    fw, _ = get_release("nemo-automodel-2025-10").configure("--local-batch-size=8")
    lay = Layouts.build(get_model("llama-3-8b"), dp=np.array([8, 8]), pp=np.array([4, 4]),
                        global_batch=np.array([80, 64]), micro_batch=np.array([1, 1]), seq_len=np.array([4096, 4096]))
    res = step_time(get_model("llama-3-8b"), lay, Cluster(get_accelerator("h100"), 32),
                    load_calibration("H100-SXM5-80GB").perf(), framework=fw)
    assert "does not divide the per-replica batch" in str(res.reason[0]) and not res.feasible[0]
    assert "does not divide the per-replica batch" not in str(res.reason[1])


def test_torch_pipeline_stage_keeps_fsdp2_gradients_unsharded_across_the_step():
    """torch.distributed.pipelining's stage runs every backward of its FSDP2 module with
    set_requires_gradient_sync(False) and set_reshard_after_backward(False) and reduce-scatters once after the last
    micro-batch (stage.py backward_maybe_with_nosync): with pp > 1 the stage's unsharded fp32 gradients stay resident
    across the step; without a pipeline torchtitan reduce-scatters every backward."""
    fw = get_release("torchtitan-2024-12").framework
    assert fw.pp_defer_grad_sync and not fw.defer_grad_sync
    assert fw.defers_grad_sync(np.array([1, 8])).tolist() == [False, True]
    assert not get_release(FrameworkName.MEGATRON_CORE).framework.pp_defer_grad_sync
    model = get_model("llama-3.1-405b")
    lay = Layouts.build(model, tp=np.array([8, 8]), pp=np.array([8, 1]), dp=np.array([8, 8]),
                        global_batch=np.array([256, 256]), micro_batch=np.array([4, 4]), seq_len=np.array([8192, 8192]),
                        recompute=np.array([2, 2]), zero_stage=np.array([3, 3]))
    cluster, perf = Cluster(get_accelerator("h100"), 512), load_calibration("H100-SXM5-80GB").perf()
    on = step_time(model, lay, cluster, perf, framework=fw).memory
    off = step_time(model, lay, cluster, perf, framework=replace(fw, pp_defer_grad_sync=False)).memory
    extra = on.temporary_bytes - off.temporary_bytes
    # 405B over tp 8 x pp 8: about 6.3e9 parameters a GPU, 7/8 of them beyond its shard, in fp32: about 22 GB
    assert 20e9 < extra[0] < 24e9 and extra[1] == 0.0


def test_automodel_2025_10_stage_does_not_defer_the_gradient_sync():
    """AutoModel's pipeline stage holds the causal-LM part, which fully_shard does not wrap (only its .model, blocks,
    embedding and head): torch's stage takes its plain backward, FSDP2's own hooks reduce-scatter every micro-batch,
    and no unsharded gradients stay resident under pp (AM@8d9bfb9 moe/parallelizer.py L138-172)."""
    fw = get_release("nemo-automodel-2025-10").framework
    assert not fw.pp_defer_grad_sync and not np.any(fw.defers_grad_sync(np.array([1, 4])))
def _405b_pp8(global_batch: int = 256) -> tuple:
    """Llama 3.1 405B over tp 8 x pp 8 x dp 8 (torchtitan's Table 5 layout, even split for the test)."""
    model = get_model("llama-3.1-405b")
    lay = Layouts.build(model, tp=np.array([8]), pp=np.array([8]), dp=np.array([8]),
                        global_batch=np.array([global_batch]), micro_batch=np.array([4]), seq_len=np.array([8192]),
                        recompute=np.array([2]), zero_stage=np.array([3]))
    return model, lay, Cluster(get_accelerator("h100"), 512), load_calibration("H100-SXM5-80GB").perf()


def _stage_reduces(model, lay, perf, fw) -> dict[str, float]:
    """Each stage kind's reduce-scatters, unit by unit (one block's, the embedding's, the head's)."""
    from capsim.analytic.training import stages
    from capsim.specs.precision import Precision
    layers = stages.StageLayers.of(model, lay)
    dp = stages.dp_costs(model, lay, fw.run_precision(Precision()), perf, 8, fw, layers)
    r = dp["layer_reduce"][0]
    return {"first": layers.first[0] * r + dp["emb_reduce"][0], "middle": layers.middle[0] * r,
            "last": layers.last[0] * r + dp["head_reduce"][0], "unit": r}


def test_torch_pipeline_stage_reduces_once_a_step_on_the_drain():
    """torch 2.4-2.9's stage runs its FSDP2 reduce-scatters inside its last backward, each waited for before the next
    and before the input-gradient send (pytorch#134052, #144535; #165106 moved them): with pp > 1 no micro-batch
    reduce-scatters, and the step's tail carries every stage's reduction in turn: their sum, exposed."""
    fw = get_release("torchtitan-2024-12").framework
    assert fw.pp_defer_grad_sync and not fw.pp_reduce_at_step_end
    model, lay, cluster, perf = _405b_pp8()
    on = step_time(model, lay, cluster, perf, framework=fw)
    off = step_time(model, lay, cluster, perf, framework=replace(fw, pp_defer_grad_sync=False))
    rs = _stage_reduces(model, lay, perf, fw)
    chain = rs["first"] + 6 * rs["middle"] + rs["last"]
    assert on.dp_comm_s[0] == pytest.approx(chain, rel=1e-9) and off.dp_comm_s[0] == 0.0
    assert on.dp_total_s[0] == pytest.approx(chain, rel=1e-9) and on.dp_hidden_s[0] == 0.0  # none of it hidden
    assert chain > 3.0  # 8 stages of about 6.3e9 fp32 gradients each, reduce-scattered over 8 nodes
    # the micro-batches' exposed ZeRO traffic is the step's first forward's gathers only: less than one unit's RS
    assert on.zero_comm_s[0] < rs["unit"] < off.zero_comm_s[0]


def test_torch_pipeline_stage_gathers_once_a_step_with_the_parameters_kept():
    """The stage also sets set_reshard_after_backward(False) and torchtitan keeps the parameters after the forward
    under pp (reshard_after_forward False): after the step's first forward nothing is gathered again, so the step's
    exposed ZeRO traffic does not grow with its micro-batches; without the stage's deferral it does."""
    fw = get_release("torchtitan-2024-12").framework
    zero = {}
    for defer in (True, False):
        for batch in (256, 512):
            model, lay, cluster, perf = _405b_pp8(batch)
            res = step_time(model, lay, cluster, perf, framework=replace(fw, pp_defer_grad_sync=defer))
            zero[defer, batch] = res.zero_comm_s[0]
    assert zero[True, 512] == pytest.approx(zero[True, 256], rel=1e-9) and zero[True, 256] > 0.0
    assert zero[False, 512] == pytest.approx(2.0 * zero[False, 256], rel=1e-9)


def test_torch_2_10_stage_reduces_after_its_schedule_behind_the_drain():
    """From pytorch#165106 the stage reduces after its schedule (torch 2.13.0 schedules.py L1172-1177): a stage's
    reduction hides behind the drain still ahead of the first stage, which has none: the first stage's reduction is
    what is exposed (torchtitan 2026-08 runs the nightly)."""
    fw = get_release("torchtitan-2026-08").framework
    assert fw.pp_defer_grad_sync and fw.pp_reduce_at_step_end
    old = replace(fw, pp_reduce_at_step_end=False)
    model, lay, cluster, perf = _405b_pp8()
    rs = _stage_reduces(model, lay, perf, fw)
    end = step_time(model, lay, cluster, perf, framework=fw)
    inside = step_time(model, lay, cluster, perf, framework=old)
    assert end.dp_comm_s[0] == pytest.approx(rs["first"], rel=1e-9)
    assert end.dp_total_s[0] == pytest.approx(max(rs["first"], rs["middle"], rs["last"]), rel=1e-9)
    assert inside.dp_comm_s[0] == pytest.approx(rs["first"] + 6 * rs["middle"] + rs["last"], rel=1e-9)
    assert inside.step_s[0] - end.step_s[0] == pytest.approx(inside.dp_comm_s[0] - end.dp_comm_s[0], rel=1e-9)
