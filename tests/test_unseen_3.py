"""Published runs capsim had not seen, priced through the public CLI exactly as a new user would (issues 12 and 13):
``capsim validate training --file tests/data/unseen_3/training.csv --json`` (torchtitan's async-TP benchmark of
June 2025 on 64 and 256 H100s, and the Llama 3.1 405B 3-D/4-D tables of its December 2024 benchmark on 512 H100s)
and ``capsim validate serving --file tests/data/unseen_3/serving.csv --json`` (TensorRT-LLM 1.0's H200 and H100 FP8
throughput columns). The sources, and the defaults taken where they are silent, are in each file's header.

Every row must be priced. A row within TOL_PCT of its measurement must stay there; a row outside is a strict xfail
whose reason carries the figure measured when it was added (so a change that moves it fails loudly either way)."""

import functools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.analytic.training.framework import get_release
from capsim.analytic.training.release import PipelineSplit
from capsim.cli import app
from capsim.specs.pipeline_layout import SplitRule, even, middle_loaded

DATA = Path(__file__).parent / "data" / "unseen_3"
TOL_PCT = 15.0  # issue 12's worst-row target for Megatron-Core/FSDP runs; issue 13's median for unseen serving runs


@functools.cache
def _report(kind: str) -> dict:
    out = CliRunner().invoke(app, ["validate", kind, "--file", str(DATA / f"{kind}.csv"), "--json"])
    assert out.exit_code == 0, out.output[-800:]
    return json.loads(out.stdout)


# (suite, row index in its file, what the row is, error % when added: positive = capsim predicts faster/more)
ROWS = [
    # Async TP rows (1, 3, 5, 7, 9, 11) were +33.2/+13.5/+71.2/+59.5/+29.5/+84.3% when added, with torch's async TP
    # priced as Transformer Engine's userbuffers (every TP collective hidden behind the whole layer's GEMMs); priced
    # as Inductor's micro-pipeline (comms._torch_async_tp_s: only the fused patterns overlap, fill/drain exposed, the
    # backward's input-gradient reduce-scatters unfused, the GEMMs run as tp chunks of M/tp rows) they are
    # +16.4/-6.5/+41.0/+26.9/+9.0/+55.1%. The vanilla rows do not move; the rowwise rows' remaining miss is the
    # vanilla rows' too (+29.3%, +53.5%).
    ("training", 0, "asyncTP 70B bf16 vanilla TP", 11.3),
    ("training", 1, "asyncTP 70B bf16 async TP", 16.4),
    ("training", 2, "asyncTP 70B fp8 tensorwise vanilla TP", -4.2),
    ("training", 3, "asyncTP 70B fp8 tensorwise async TP", -6.5),
    ("training", 4, "asyncTP 70B fp8 rowwise vanilla TP", 29.3),
    ("training", 5, "asyncTP 70B fp8 rowwise async TP", 41.0),
    ("training", 6, "asyncTP 8B bf16 vanilla TP", 25.3),
    ("training", 7, "asyncTP 8B bf16 async TP", 26.9),
    ("training", 8, "asyncTP 8B fp8 tensorwise vanilla TP", 12.1),
    ("training", 9, "asyncTP 8B fp8 tensorwise async TP", 9.0),
    ("training", 10, "asyncTP 8B fp8 rowwise vanilla TP", 53.5),
    ("training", 11, "asyncTP 8B fp8 rowwise async TP", 55.1),
    # The 405B rows run async TP too (--experimental.enable_async_tensor_parallel): with the micro-pipeline priced
    # tables 5 (+21.2, +22.9%) and 6 CP1 (+15.9%) are +7.8/+9.3/+6.3%, so normal tests; CP2/4/8 were
    # +28.4/+25.7/+35.9% when added; torch's ring traced into torchtitan's compiled blocks (titancp,
    # Framework.cp_in_graph) exposes every transfer: +14.8/+4.6/+12.8%, and the micro-pipeline +8.8/+1.3/+10.7%.
    # torch's pipeline stage (at torch 1963fc8) reduce-scatters each stage's FSDP2 gradients once a step inside its
    # last backward, before its input-gradient send (Framework.pp_reduce_at_step_end False): every stage's reduction
    # on the drain (4.44 s of table 5's 41.8 s step) where each micro-batch's reduce-scatters were priced, and no
    # gathers after the first forward: tables 5 and 6 +7.8/+9.3/+6.3/+8.8/+1.3/+10.7% -> the figures below
    ("training", 12, "405B table 5 1F1B (uneven 15,16x6,15)", -2.0),
    ("training", 13, "405B table 5 interleaved 1F1B (v=2, 7,8x14,7)", -3.6),
    ("training", 14, "405B table 6 CP1 seq 32k", -1.1),
    ("training", 15, "405B table 6 CP2 seq 64k", 3.9),
    ("training", 16, "405B table 6 CP4 seq 128k", -1.6),
    ("training", 17, "405B table 6 CP8 seq 256k", 8.9),
    # H100/H200 prefill attention at cuDNN's causal rates (FA3 paper Fig. 5(d), published_attention_cudnn), decode at
    # its unmasked ones, for the flat 0.60 of peak: rows 0-4, 6-8, 13 were +24.7/+5.9/+15.1/+5.4/-5.5/+0.7/-0.4/+15.7/
    # +32.0% -> the figures below (rows 2 and 8 now within 15%)
    ("serving", 0, "TRT-LLM 1.0 8B H200 128/128", 24.2),
    ("serving", 1, "TRT-LLM 1.0 8B H200 1000/1000", 5.4),
    ("serving", 2, "TRT-LLM 1.0 8B H200 2048/128", 13.4),
    ("serving", 3, "TRT-LLM 1.0 8B H200 5000/500", 4.0),
    ("serving", 4, "TRT-LLM 1.0 8B H200 20000/2000", -6.4),
    ("serving", 5, "TRT-LLM 1.0 8B H100 128/2048", -2.9),
    ("serving", 6, "TRT-LLM 1.0 8B H100 5000/500", -0.3),
    ("serving", 7, "TRT-LLM 1.0 70B H200 TP1 1000/1000", -0.7),
    ("serving", 8, "TRT-LLM 1.0 70B H200 TP1 2048/128", 14.5),
    ("serving", 9, "TRT-LLM 1.0 70B H100 TP2 1000/1000", 2.7),
    ("serving", 10, "TRT-LLM 1.0 70B H100 TP2 128/2048", -8.6),
    ("serving", 11, "TRT-LLM 1.0 405B H200 TP8 1000/1000", 6.6),
    ("serving", 12, "TRT-LLM 1.0 405B H100 TP8 1000/1000", -0.8),
    # Qwen3 runs enable_attention_dp: it was +10.8% with the LLM API's max_batch_size 2048 taken for the whole
    # replica, holding 952 of the 3000 requests back; TensorRT-LLM applies it per attention-DP rank (engine_plan,
    # capsim/sim/serving/fleet.py attention_dp_ranks), so all 3000 run at once (8 x 2048 slots): +32.7%; with
    # bench=trtllm-bench (below) its heuristic's batch per rank: +32.0%
    # Every TRT-LLM 1.0 row ran `trtllm-bench throughput` without --max_batch_size / --max_num_tokens (the header), so
    # each states bench=trtllm-bench: the tool's own limits (capsim/analytic/trtllm_bench.py) instead of the LLM API's
    # 2048 / 8192. Before -> after: 21.7 -> 24.7, 7.3 -> 5.9, 13.6 -> 15.1 (now outside 15%), 5.5 -> 5.4, -5.7 -> -5.5,
    # -5.5 -> -2.9, 0.9 -> 0.7, -0.1 -> -0.4, 15.8 -> 15.7, 2.9 -> 2.7, -8.5 -> -8.6, 6.7 -> 6.6, -0.5 -> -0.8, 32.7 -> 32.0
    ("serving", 13, "TRT-LLM 1.0 Qwen3-235B-A22B H200 TP8 1000/1000", 31.4),
]


def _case(kind: str, index: int, what: str, added: float):
    marks = [] if abs(added) <= TOL_PCT else [pytest.mark.xfail(
        strict=True, reason=f"{what}: {added:+.1f}% when added, outside {TOL_PCT:.0f}%")]
    return pytest.param(kind, index, id=f"{kind}-{index}-{what}", marks=marks)


def test_every_unseen_row_is_priced():
    for kind, rows in (("training", 18), ("serving", 14)):
        report = _report(kind)
        assert report["rows_priced"] == rows and report["rows_failed"] == 0, \
            [r["note"] for r in report["rows"] if r.get("predicted") is None]


@pytest.mark.parametrize(("kind", "index"), [_case(*r) for r in ROWS])
def test_an_unseen_row_is_within_tolerance(kind, index):
    row = _report(kind)["rows"][index]
    assert row["predicted"] is not None, row["note"]
    assert abs(row["error_pct"]) <= TOL_PCT, (row["case"], row["measured"], row["predicted"], row["error_pct"])


def test_torchtitans_generated_split_puts_the_remainder_in_the_middle_stages():
    # torchtitan@9dec370 pipelining_utils.py generate_split_points: first stage base, the next ones base + 1 while
    # the remainder lasts, the last what is left; virtual stage i on rank i mod pp
    assert middle_loaded(126, 8).stages == (15, 16, 16, 16, 16, 16, 16, 15)
    split = middle_loaded(126, 8, 2)
    assert split.chunks[0] == (7, 8) and split.chunks[-1] == (8, 7) and split.chunks[3] == (8, 8)
    assert split.rule is SplitRule.MIDDLE_LOADED and sum(split.stages) == 126
    assert middle_loaded(10, 4).stages == (2, 3, 3, 2)  # remainder 2 over the two middle stages
    assert middle_loaded(11, 4).stages == (2, 3, 3, 3)  # remainder 3: the last stage takes what is left
    assert middle_loaded(128, 8, 2) == even(128, 8, 2) and middle_loaded(3, 4) is None


def test_torchtitan_2024_12_splits_an_uneven_pipeline_as_torchtitan_does():
    fw = get_release("torchtitan-2024-12").framework
    assert fw.pipeline_split is PipelineSplit.MIDDLE_LOADED
    assert fw.split(126, 8, 1).stages == (15, 16, 16, 16, 16, 16, 16, 15)


def test_torchtitan_2025_06_takes_async_tp_and_the_float8_recipe():
    release = get_release("torchtitan-2025-06")
    assert not release.framework.overlap_tp_comm
    fw = release.configure("--parallelism.enable_async_tensor_parallel --float8.recipe_name=rowwise")[0]
    assert fw.overlap_tp_comm and not fw.fp8_params  # a recipe gathers the 16-bit weights (float8.py L57-75)
    with pytest.raises(ValueError, match="recipe_name"):
        release.configure("--float8.recipe_name=mxfp8")


@pytest.mark.parametrize("rule", ["profile", "datasheet"])
def test_serving_validation_takes_the_calibration_rules_training_takes(rule, tmp_path):
    # Was: 'capsim validate serving -c profile' left every row unpriced ("unknown calibration 'profile'").
    lines = (DATA / "serving.csv").read_text().splitlines()
    head = [x for x in lines if not x.startswith("#")][:2]
    path = tmp_path / "one.csv"
    path.write_text("\n".join(head) + "\n")
    out = CliRunner().invoke(app, ["validate", "serving", "--file", str(path), "-c", rule, "--json"])
    assert out.exit_code == 0, out.output[-600:]
    report = json.loads(out.stdout)
    assert report["rows_priced"] == 1, report["rows"][0]["note"]
    assert report["calibration"] == "H200-SXM-141GB"  # no H200 profile ships: both rules give its datasheet


_405B = ["train", "-m", "llama-3.1-405b", "-a", "H100-96GB-HBM2e-500W", "-n", "512", "--tp", "8", "--pp", "8",
         "--zero", "3", "--global-batch", "256", "--micro-batch", "4", "--seq-len", "8192", "--recompute", "full",
         "--precision", "fp8", "--framework", "torchtitan-2024-12", "--json",
         "--flags=--training.compile --float8.enable_fsdp_float8_all_gather --experimental.enable_async_tensor_parallel"]


def test_train_runs_torchtitans_table_5_as_torchtitan_runs_it():
    # Was: --sp defaulted to off whatever the release (torchtitan's TP always shards the sequence: apply_tp's
    # SequenceParallel norms), so the run that measured 82.5 GiB was "infeasible: 158.47 GB of 96.00 GB"; and the
    # FP8 preset ignored the release's recipe (current scaling) and the run's FP8 all-gather flag.
    out = CliRunner().invoke(app, _405B)
    assert out.exit_code == 0, out.output[-600:]
    plan = json.loads(out.stdout)["plan"]
    assert plan["sequence_parallel"] is True
    assert plan["precision"]["fp8_scaling"] == "current" and plan["precision"]["weights"] == "fp8"
    assert plan["pipeline_layout"] == "Et*15|(t*16|)*6,t*15L"  # torchtitan's generated split
    off = CliRunner().invoke(app, [*_405B, "--no-sp"])
    assert off.exit_code != 0 and "does not fit" in off.output  # stated off, priced off


def test_a_blank_seq_parallel_takes_the_releases_default():
    from capsim.analytic.training.release import default_sp

    assert get_release("torchtitan-2025-06").defaults["sp"].value == "tp>1"
    assert default_sp("tp>1", 8) and not default_sp("tp>1", 1) and not default_sp(False, 8)
    assert not get_release("megatron-core-0.14.0").defaults["sp"].value  # --sequence-parallel: store_true
    row = next(r for r in _report("training")["rows"] if "dp8 gb96" in r["case"])
    assert "defaults sp=yes" in row["note"]


def test_run_precision_is_the_validation_rows_precision_and_idempotent():
    from capsim.specs.precision import Precision

    for name in ("torchtitan-2025-06", "megatron-bridge-26.04.01", "nemo-automodel-2025-10", "deepspeed-0.14"):
        fw = get_release(name).framework
        for preset in ("bf16", "fp8"):
            once = fw.run_precision(Precision.preset(preset))
            assert fw.run_precision(once) == once


def test_the_planner_ranks_by_time_on_an_accelerator_without_a_price():
    # Was: 'capsim plan train -a H100-96GB-HBM2e-500W ...' (the torchtitan runs' part, no catalog price) crashed with
    # TypeError: float * NoneType in the cost column.
    import math

    from capsim import get_accelerator, get_model
    from capsim.calibration import perf_for
    from capsim.errors import SpecError
    from capsim.plan.training import plan_training

    acc = get_accelerator("H100-96GB-HBM2e-500W")
    assert acc.price_usd_per_hour is None
    plan = plan_training(get_model("gpt2-124m"), acc, 1e9, 16, 1024, 8, perf=perf_for(acc))
    assert plan.feasible and math.isnan(plan.table["cost_usd"].iloc[0])
    with pytest.raises(SpecError, match="no price"):
        plan_training(get_model("gpt2-124m"), acc, 1e9, 16, 1024, 8, rank_by="cost", perf=perf_for(acc))


def test_torchs_async_tp_is_the_inductor_micro_pipeline_not_userbuffers():
    release = get_release("torchtitan-2025-06")
    fw = release.configure("--parallelism.enable_async_tensor_parallel --training.compile")[0]
    assert fw.overlap_tp_comm and fw.tp_micro_pipeline
    eager = release.configure("--parallelism.enable_async_tensor_parallel")[0]
    assert eager.overlap_tp_comm and not eager.tp_micro_pipeline  # the pass exists only in compiled graphs
    megatron = get_release("megatron-core-0.8.0").configure("--tp-comm-overlap")[0]
    assert megatron.overlap_tp_comm and not megatron.tp_micro_pipeline  # Transformer Engine's userbuffers


@pytest.mark.parametrize("vanilla", [0, 2, 4, 6, 8, 10])
def test_async_tp_gains_what_the_micro_pipeline_can_hide(vanilla):
    # The benchmark measures async TP 1.04-1.16x plain TP; priced as userbuffers capsim made it 1.27-1.40x. The
    # backward's unfused reduce-scatters and the pipelines' fill and drain keep the gain under 1.2x.
    rows = _report("training")["rows"]
    plain, fused = rows[vanilla], rows[vanilla + 1]
    assert 1.0 < fused["predicted"] / plain["predicted"] < 1.2, (plain["case"], plain["predicted"], fused["predicted"])


def test_async_tps_gemm_chunks_cost_more_the_fewer_rows_they_have():
    # torch's async TP runs each fused GEMM as tp matmuls of M/tp rows (compute.chunked_extra_s): the extra time is
    # never negative and grows, relative to the GEMMs, as the chunks shrink (fewer tokens per micro-batch)
    import numpy as np

    from capsim.analytic.layouts import Layouts
    from capsim.analytic.training import resolve_perf
    from capsim.analytic.training.compute import micro_batch_times
    from capsim.calibration import load_calibration
    from capsim.specs.catalog import get_accelerator, get_model
    from capsim.specs.hardware import Cluster
    from capsim.specs.plans import TrainPlan
    from capsim.specs.precision import Precision

    model = get_model("llama-3.1-8b")
    perf = resolve_perf(load_calibration("H100").perf(), Cluster(get_accelerator("H100"), 8))
    share = []
    for seq in (512, 8192):
        lay = Layouts.from_plans(model, [TrainPlan(tp=8, dp=1, global_batch=1, seq_len=seq, sequence_parallel=True)])
        t = micro_batch_times(model, lay, Precision.preset("bf16"), perf)
        assert np.all(t.chunk_fwd_s >= 0.0) and np.all(t.chunk_bwd_s >= 0.0)
        share.append(float(t.chunk_fwd_s[0] / t.layer_gemm_fwd_s[0]))
    assert share[0] > share[1] > 0.0, share
