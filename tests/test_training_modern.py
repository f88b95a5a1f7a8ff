"""Issue 12: FP8 as Transformer Engine runs it, MoE with expert (tensor) parallelism, context parallelism, the
releases of today's stacks, and every row of training_modern.csv against its bound (misses are strict xfails)."""

from functools import cache

import numpy as np
import pytest

from capsim import Layouts, Precision, TrainPlan, get_accelerator, get_model
from capsim.analytic import fp8
from capsim.analytic.memory import training_memory
from capsim.analytic.moe import moe_ops
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.training import comms, get_framework, step_time
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import RELEASES, FrameworkName, get_release, release_for
from capsim.analytic.training.release import MoeDispatcher, Reshard
from capsim.calibration import load_calibration
from capsim.calibration.published_gemm import FP8_OVER_BF16_GH100, TE_H200_NVL
from capsim.errors import SpecError
from capsim.perf.model import curve_value
from capsim.specs.hardware import Cluster
from capsim.specs.precision import DType, Fp8Scaling
from capsim.validation import run_suite
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, predict_row

H100 = get_accelerator("H100-SXM5-80GB")
PERF = load_calibration("H100-SXM5-80GB").perf()
CORE = get_framework("megatron-core")
BF16, FP8 = Precision.preset("bf16"), Precision.preset("fp8")


def _ops(model, precision, **shape):
    s = layer_shape(model, shape.get("tokens", 4096), 1, shape.get("tp", 1), shape.get("ep", 1),
                    shape.get("sp", False), shape.get("etp"))
    return fp8.forward(forward_layer_ops(model, s, precision.activations), precision)


# --- FP8 -----------------------------------------------------------------------------------------------------------

def test_only_te_weight_gemms_run_in_fp8():
    model = get_model("qwen3-30b-a3b")
    ops = _ops(model, FP8, ep=8)
    gemms = {o.name: o.dtype for o in ops if o.kind.value == "gemm"}
    assert gemms["qkv"] is gemms["mlp_up"] is gemms["mlp_down"] is gemms["attn_out"] is DType.FP8
    assert gemms["router"] is DType.BF16  # the router stays 16-bit
    assert fp8.gemm_format("lm_head", FP8) is DType.BF16 and fp8.gemm_format("lm_head", BF16) is DType.BF16
    assert all(o.dtype is not DType.FP8 for o in ops if o.kind.value == "attention")


def test_each_fp8_gemm_input_is_cast_and_current_scaling_reads_it_once_more():
    model = get_model("llama-3-8b")
    delayed = _ops(model, FP8)
    current = _ops(model, Precision.preset("fp8-current"))
    fp8_gemms = [o for o in delayed if fp8.is_fp8(o, FP8)]
    casts = [o for o in delayed if o.name == fp8.CastKind.INPUT.value]
    assert len(casts) == len(fp8_gemms) == 4
    assert all(o.bytes_written == 2 * o.bytes_read / 2 for o in casts)  # an FP8 copy and its transpose
    amax = [o for o in current if o.name == fp8.CastKind.AMAX.value]
    assert len(amax) == 4 and sum(o.bytes for o in amax) == sum(o.bytes_read for o in casts)
    assert not [o for o in _ops(model, BF16) if o.name.startswith("fp8")]


def test_fp8_keeps_gemm_inputs_in_one_byte():
    model = get_model("llama-3-8b")
    lay = Layouts.build(model, seq_len=8192, micro_batch=1, global_batch=8, dp=8)
    bf16 = training_memory(model, lay, BF16).activations_bytes[0]
    eight = training_memory(model, lay, FP8).activations_bytes[0]
    assert 0.5 * bf16 < eight < bf16


def test_fp8_gemm_rate_is_te_cublas_ratio_over_bf16_at_its_shapes():
    """H100 (GH100): FP8 runs at TE's cuBLASLt per-tensor FP8/BF16 rate ratio on that die times the calibration's BF16
    rate, at every shape, the published table's included (not DeepGEMM's block-scaled rates)."""
    params = PERF.params
    peaks = params.peak_flops_per_s
    for m, n, k, _ in TE_H200_NVL["fp8"].points + ((4096, 4096, 7168, 0.0), (1024, 8192, 28672, 0.0)):
        bf16 = curve_value(params.gemm.efficiency, m, n, k) * peaks["bf16"]
        fp8_rate = curve_value(params.gemm.efficiency, m, n, k) * params.gemm.dtype_scale["fp8"] * peaks["fp8"]
        assert fp8_rate / bf16 == pytest.approx(FP8_OVER_BF16_GH100, rel=1e-3)
    scale = params.gemm.dtype_scale["fp8"]
    big = PERF.gemm_s(4096, 4096, 7168, "bf16") / PERF.gemm_s(4096, 4096, 7168, "fp8")
    assert 1.3 < big < 2.0 and 0.5 < scale < 1.0  # faster than BF16, short of the 2x of the peaks


def test_fp8_step_beats_bf16_but_not_by_the_peak_ratio():
    model = get_model("llama-2-7b")
    plan = dict(dp=8, global_batch=128, seq_len=4096, distributed_optimizer=True)
    core = get_framework("megatron-core")
    b = step_time(model, TrainPlan(**plan, precision=BF16), Cluster(H100, 8), PERF, framework=core).step_s
    f = step_time(model, TrainPlan(**plan, precision=FP8), Cluster(H100, 8), PERF, framework=core).step_s
    c = step_time(model, TrainPlan(**plan, precision="fp8-current"), Cluster(H100, 8), PERF, framework=core).step_s
    assert 1.1 < b / f < 2.0 and c > f


# --- MoE -----------------------------------------------------------------------------------------------------------

def test_moe_ops_route_balanced_tokens_and_permute_them():
    model = get_model("qwen3-30b-a3b")
    ops = moe_ops(model, 4096, 2, 1, 16, True, DType.BF16, 2.0, 2.0, 1.0)
    up = next(o for o in ops if o.name == "mlp_up")
    local = 4096 / 2  # the sequence-parallel shard of tp=2, experts not tensor-parallel (etp=1)
    assert up.count == model.experts / 16 and up.shape[0] == pytest.approx(local * model.top_k * 16 / model.experts)
    assert up.shape[1] == 2 * model.ffn_hidden  # etp = 1: the whole expert
    names = [o.name for o in ops]
    assert names[:3] == ["router", "moe_router_topk", "moe_permute"] and names[-1] == "moe_unpermute"
    serving = moe_ops(model, 4096, 2, 2, 1, False, DType.BF16, 2.0, 2.0, 1.0, dispatcher=False)
    assert "moe_permute" not in [o.name for o in serving]


def test_expert_groups_fold_over_tp_and_dp():
    model = get_model("qwen3-235b-a22b")
    ok = TrainPlan(dp=16, tp=2, pp=8, ep=32, etp=1, sequence_parallel=True, global_batch=512, seq_len=4096,
                   account_for_embedding=True, account_for_loss=True)
    ok.check(model, 256)
    with pytest.raises(SpecError, match="ep x etp"):
        ok.with_(etp=2).check(model, 256)  # 32 x 2 > tp x dp = 32
    lay = Layouts.from_plans(model, [ok])
    assert lay.expert_dp[0] == 1 and lay.etp[0] == 1
    assert Layouts.from_plans(model, [ok.with_(ep=16)]).expert_dp[0] == 2


def test_flex_dispatcher_sends_each_token_once_per_node():
    assert comms.remote_nodes(128, 8, np.array([1]))[0] == 0.0
    assert 0.99 < comms.remote_nodes(128, 8, np.array([2]))[0] < 1.0  # vs 4 copies by all-to-all
    model = get_model("qwen3-30b-a3b")
    lay = Layouts.build(model, dp=16, ep=16, etp=1, global_batch=16, seq_len=4096)
    t = micro_batch_times(model, lay, BF16, PERF)
    core = get_framework("megatron-core")
    a2a = sum(comms.ep_layer_s(PERF, model, lay, BF16, 8, t, core.with_(moe_dispatcher=MoeDispatcher.ALLTOALL)))
    flex = sum(comms.ep_layer_s(PERF, model, lay, BF16, 8, t, core.with_(moe_dispatcher=MoeDispatcher.FLEX)))
    hidden = sum(comms.ep_layer_s(PERF, model, lay, BF16, 8, t, core.with_(overlap_moe_a2a=True)))
    assert flex[0] < 0.6 * a2a[0] and hidden[0] <= sum(comms.ep_layer_s(PERF, model, lay, BF16, 8, t, core))[0]


def test_expert_memory_shards_over_ep_and_expert_dp():
    model = get_model("mixtral-8x7b")
    base = dict(global_batch=64, seq_len=4096, distributed_optimizer=True, precision=BF16)
    one = training_memory(model, TrainPlan(dp=8, ep=1, **base))
    eight = training_memory(model, TrainPlan(dp=8, ep=8, **base))
    assert eight.weights_bytes < one.weights_bytes / 4  # the experts split eight ways
    # the distributed optimizer shards the experts over their replicas: 8 ways at ep=1, none left at ep=8
    assert eight.optimizer_bytes == pytest.approx(one.optimizer_bytes)
    half = training_memory(model, TrainPlan(dp=8, ep=4, **base))
    assert half.optimizer_bytes == pytest.approx(one.optimizer_bytes)


# --- context parallelism -------------------------------------------------------------------------------------------

def test_ring_attention_hides_behind_blocks_and_divides_activations():
    model = get_model("llama-3-8b")
    long = Layouts.build(model, cp=2, dp=1, seq_len=65536, global_batch=1)
    t = micro_batch_times(model, long, BF16, PERF)
    assert sum(comms.cp_layer_s(PERF, model, long, BF16, 8, t, CORE))[0] == 0.0
    short = Layouts.build(model, cp=8, tp=1, dp=1, seq_len=2048, global_batch=1)
    ts = micro_batch_times(model, short, BF16, PERF)
    assert sum(comms.cp_layer_s(PERF, model, short, BF16, 1, ts, CORE))[0] > 0  # one GPU per node: network hops
    one = training_memory(model, Layouts.build(model, seq_len=16384, global_batch=8, dp=8), BF16)
    four = training_memory(model, Layouts.build(model, cp=4, dp=2, seq_len=16384, global_batch=8), BF16)
    assert four.activations_bytes[0] == pytest.approx(one.activations_bytes[0] / 4)


# --- releases ------------------------------------------------------------------------------------------------------

def test_every_release_cites_every_field_and_names_its_family():
    for name, rel in RELEASES.items():
        assert all(rel.cite[k].strip() for k in rel.cite), name
        assert release_for(rel.family.value, rel.software) is rel
    with pytest.raises(SpecError, match="software"):
        release_for("megatron-core", "nemo-99.01")
    with pytest.raises(SpecError, match="flag"):
        get_release("nemo-24.07").configure("--fp8-recipe=tensorwise")  # no such flag in Megatron-Core 0.8


def test_nemo_25_02_runs_what_its_container_can():
    # NeMo 25.02 ships Megatron-Core core_r0.11.0 (74428fda): TEDelayedScaling only, no --fp8-recipe (core 0.12);
    # TE's Float8CurrentScaling arrived in TE v2.2, after this container.
    rel = get_release("nemo-25.02")
    assert "74428fda" in rel.cite["moe_dispatcher"] and "TE v2.2" in rel.cite["fp8_scaling"]
    assert rel.framework.fp8_scaling is Fp8Scaling.DELAYED
    with pytest.raises(SpecError, match="flag"):
        rel.configure("--fp8-recipe=tensorwise")
    # Mixtral's recipe leaves moe_grouped_gemm False: SequentialMLP experts, no TEGroupedMLP FP8 row padding
    assert not rel.framework.moe_fp8_padding
    assert rel.configure("--moe-grouped-gemm")[0].moe_fp8_padding


def test_fsdp2_reshard_policy_follows_the_pipeline():
    titan = get_release(FrameworkName.TORCHTITAN_2026_08).framework
    assert titan.reshard_after_forward is Reshard.NOT_WITH_PP
    assert list(titan.keeps_gathered(np.array([1, 4]))) == [False, True]
    assert get_release(FrameworkName.NEMO_AUTOMODEL_2025_10).framework.keeps_gathered(np.array([1]))[0]


def test_keeping_parameters_gathered_saves_backward_gathers_and_costs_memory():
    model = get_model("llama-3-8b")
    plan = TrainPlan(dp=8, zero_stage=3, micro_batch=1, global_batch=8, seq_len=4096, precision=BF16)
    titan = get_release(FrameworkName.TORCHTITAN_2026_08).framework
    always = titan.with_(reshard_after_forward=Reshard.ALWAYS)
    never = titan.with_(reshard_after_forward=Reshard.NEVER)
    cluster = Cluster(H100, 8)
    a, n = (step_time(model, plan, cluster, PERF, framework=f) for f in (always, never))
    assert n.zero_comm_s <= a.zero_comm_s and n.memory_per_gpu_bytes > a.memory_per_gpu_bytes
    deferred = step_time(model, plan.with_(global_batch=64), cluster, PERF, framework=never.with_(defer_grad_sync=True))
    synced = step_time(model, plan.with_(global_batch=64), cluster, PERF, framework=never)
    assert deferred.zero_comm_s < synced.zero_comm_s


# --- the modern validation file ------------------------------------------------------------------------------------

MODERN = read_csv(None, "training_modern.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0
# (row index, calibration kind) -> why the row misses 15% today.
_B200 = ("B200 (NeMo 25.02): no profile calibration; priced compute is 88-97% of the step (of it GEMMs 73-83%, "
         "attention 8-16%), "
         "the same ~25% compute shortfall as the single-node Llama-3-8B row of training_nemo.csv. Checked, not the "
         "cause: the FP8 recipe (delayed: the only one core_r0.11.0 and the container's TE can run; the 25.02 page "
         "states none), the catalog's dense FP8/BF16 peaks, HBM 7.7 TB/s and NVLink 5 against NVIDIA's HGX B200 "
         "spec; BF16 and per-tensor FP8 GEMM rates fitted to published B200 microbenchmarks (published_gemm: 0.63 "
         "and 0.53 of the peaks; TE #1747 te.Linear FP8 agrees, as published_gemm notes); attention at cuDNN 9.10.2's "
         "published B200 kernel rate by keys per sequence (capsim.calibration.published_attention_cudnn: 0.57 / 0.46 "
         "of the BF16 peak at 8k keys, 0.39 / 0.34 at 2k; it took these rows 0.6-4.0 points down, the CP 2 ones most); "
         "token-drop padding at capacity 1 costs what balanced routing does; CUDA-graphed layers still hook DDP's "
         "grad reduction per layer (core_r0.11.0 cuda_graphs.py L431, L617); delayed scaling has no amax "
         "all-reduce (priced for current scaling and NVFP4) and userbuffers bulk overlaps (4-32 SMs, set_sm_margin "
         "False) are estimated under 2%; NVLink 5 collectives at the published GB200 nccl-tests rates. Unexplained: the compute rate itself; "
         "candidates without a dated measurement: early-2025 cuBLAS/cuDNN on sm100 and sustained-power clocks "
         "(B200 1965 -> ~1580 MHz at 1000 W, flashinfer PR #2899). A B200 operator profile would close it")
_MIXTRAL = ("; Mixtral also: its DP traffic (expert grads reduce-scattered over 8 nodes plus the FP8 parameter "
            "all-gather, 0.26 s + 0.13 s at 40 GB/s per GPU) is 56% of its 0.70 s compute and capsim hides all but "
            "0.04 s behind two micro-batches; priced fully exposed the row would be -7%, so the overlap efficiency of "
            "NCCL beside the GEMMs (unpriced SM contention) spans the measurement")
# The dense H100 FP8 rows, FP8 GEMMs priced by role (capsim.analytic.fp8.SPLIT_ACCUMULATION_ROLES): the forward at TE's
# cuBLASLt ratio (1.90x BF16, timed with fast accumulation), dgrad and wgrad (TE's split accumulation) at DeepGEMM's
# block-scaled H800 rate (1.39x BF16 datasheet, 1.50x profile). With every FP8 GEMM at 1.90x they were +14-40%; rows
# 0, 5, 6, 7 (datasheet) and 0, 1, 5, 8 (profile) are now within 15% and carry no xfail. H100 16-bit rows of
# Megatron-Core 0.8 (the stack of NeMo 24.07) are +4..+14% at 70B-462B (training_megatron_readme.csv), so part of the
# gap is not FP8's. With cuDNN's published H100 attention rates (published_attention_cudnn: causal forward slower,
# causal backward at 8k keys faster than the flat 0.60 / 0.45) row 1 (datasheet) is within 15% and row 8 (profile)
# just outside (+14.9 -> +15.0%).
_H100_FP8 = ("dense FP8 on H100 too fast with forward FP8 GEMMs at 1.90x the BF16 rate, TE's cuBLASLt per-tensor "
             "FP8/BF16 ratio on GH100 with the cast outside the timing (published_gemm.TE_H200_NVL: TE @1609c89, "
             "2026-06, an H200 NVL; NeMo 24.07 ran cuBLAS of mid-2024, no dated Hopper point of that cuBLAS found), "
             "dgrad/wgrad at DeepGEMM's promoted-accumulation rate; unpriced or underpriced: TE's FP8 work around "
             "each GEMM beyond the cast-transposes and amax passes, sustained clocks under FP8 load (no H100 SXM "
             "measurement found)")
MISSES = {
    (9, "datasheet"): "+15.5%: Qwen3-30B-A3B FP8, Megatron-Bridge, EP16 over two nodes with HybridEP: expert "
                      "grouped GEMMs (k = 768 and 2048) priced at the dense FP8 curve by role (forward 1.90x BF16, "
                      "TE's cuBLASLt ratio on GH100, dgrad/wgrad at DeepGEMM's 1.39x; +20.2% / +15.4% with every FP8 "
                      "GEMM at 1.90x / 1.39x, the band's ends); HybridEP priced at its kernel microbenchmarks' rate "
                      "and time per row (capsim.analytic.training.flex)",
    (9, "profile"): "+16.0%: as with the datasheet calibration (+20.0% / +16.2% with every FP8 GEMM at 1.90x / at "
                    "DeepGEMM's 1.50x over the profile's BF16)",
    (11, "datasheet"): "+33.0%: " + _B200 + _MIXTRAL, (11, "profile"): "+33.0%: " + _B200 + _MIXTRAL,
    (12, "datasheet"): "+23.4%: " + _B200, (12, "profile"): "+23.4%: " + _B200,
    (13, "datasheet"): "+23.8%: " + _B200, (13, "profile"): "+23.8%: " + _B200,
    # (1, "datasheet") was +15.6%: +14.6% with cuDNN's H100 attention rates (published_attention_cudnn), within 15%
    (2, "datasheet"): "+19.6%: " + _H100_FP8,
    (2, "profile"): "+17.3%: " + _H100_FP8,
    (3, "datasheet"): "+20.0%: " + _H100_FP8,
    (3, "profile"): "+16.9%: " + _H100_FP8,
    (4, "datasheet"): "+18.9%: " + _H100_FP8,
    (4, "profile"): "+17.0%: " + _H100_FP8,
    (8, "datasheet"): "+16.1%: " + _H100_FP8,
    # +14.9% -> +15.0% with cuDNN's H100 attention rates (its 8k causal backward runs faster than the flat 0.45)
    (8, "profile"): "+15.0%: " + _H100_FP8,
}


@cache
def _modern(priced, kind: str):
    return {i: priced.row(r, kind) for i, r in enumerate(MODERN)}


def _param(i: int, kind: str):
    reason = MISSES.get((i, kind))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(i, kind, marks=marks, id=f"{kind}-{i}-{MODERN[i]['software']}-{MODERN[i]['model']}")


@pytest.mark.parametrize("i, kind", [_param(i, k) for k in ("datasheet", "profile") for i in range(len(MODERN))])
def test_modern_row_within_15_pct(i, kind, priced):
    pred = _modern(priced, kind)[i]
    measured = float(MODERN[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (MODERN[i]["model"], pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| 15.5% (datasheet) / 15.0% (profile): the B200 rows, Qwen3 MoE "
                                       "and the dense H100 FP8 rows, 2-21% too fast with FP8 GEMMs by role (forward "
                                       "at TE's cuBLASLt 1.90x, dgrad/wgrad at DeepGEMM's)")
@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_modern_median_within_8_pct(kind, priced):
    errors = [abs(p.value / float(MODERN[i]["value"]) - 1.0) * 100 for i, p in _modern(priced, kind).items()]
    assert np.median(errors) <= MEDIAN_BOUND_PCT


def test_every_row_of_both_files_is_priced(priced):
    with priced.patched():  # run_suite's own code, the rows priced once in the session (tests/priced.py)
        report = run_suite("training", None, None)
    # training_bridge.csv's rows: test_training_bridge.py; training_fsdp2.csv's (automodel-*): test_training_fsdp2.py
    bridge = {r["source"] for r in read_csv(None, "training_bridge.csv", REQUIRED)}
    # the last five in SHIPPED; their rows: test_training_bridge_blackwell.py, test_training_gptoss.py,
    # test_training_deepspeed.py, test_megatron_readme.py, test_training_nemo.py
    tail = sum(len(read_csv(None, name, REQUIRED)) for name in ("training_bridge_blackwell.csv", "training_gptoss.csv",
                                                                 "training_deepspeed.csv", "training_megatron_readme.csv",
                                                                 "training_nemo.csv"))
    rows = [r for r in report.rows[:-tail] if not r.source.startswith(("torchtitan", "trainy", "automodel-"))
            and r.source not in bridge]
    assert all(r.predicted is not None for r in rows) and len(rows) == 18 + len(MODERN)
    assert {r.metric for r in report.rows} >= {"tokens_per_s_per_gpu", "tflops_per_gpu_hw", "iteration_s"}


def test_modern_columns_are_read_not_dropped():
    qwen = next(r for r in MODERN if r["model"] == "qwen3-235b-a22b")
    pred = predict_row(qwen)
    assert "--expert-tensor-parallel-size=1" in pred.note and pred.value > 0
    wider = dict(qwen, head_dim="256")
    assert predict_row(wider).value < pred.value  # head_dim read: more attention, slower
    fewer = dict(qwen, ep="16")
    assert predict_row(fewer).value != pred.value  # ep read
    fsdp = next(r for r in MODERN if r["fsdp"])
    assert predict_row(dict(fsdp, fsdp="4")).value > 0  # hybrid sharding: 4-way shards, replicated (dp 8)
    with pytest.raises(SpecError, match="fsdp"):
        predict_row(dict(fsdp, fsdp="3"))  # a sharding group must divide dp x cp
    with pytest.raises(SpecError, match="experts"):
        predict_row(dict(qwen, moe_ffn_hidden=""))


def test_an_fp8_row_runs_its_releases_recipe():
    bridge = next(r for r in MODERN if r["software"] == "megatron-bridge-26.04.01" and r["model"] == "llama-3-70b")
    from capsim.validation.training_rows import row_precision
    fw = release_for(bridge["framework"], bridge["software"]).configure(bridge["flags"])[0]
    p = row_precision(bridge, fw)
    assert p.fp8_scaling is Fp8Scaling.CURRENT and p.weights is DType.FP8 and p.gradients is DType.BF16
    nemo = next(r for r in MODERN if r["software"] == "nemo-24.07")
    fw = release_for(nemo["framework"], nemo["software"]).configure(nemo["flags"])[0]
    assert row_precision(nemo, fw).fp8_scaling is Fp8Scaling.DELAYED


def test_train_cli_takes_expert_tp_and_release_flags():
    import json

    from typer.testing import CliRunner

    from capsim.cli import app
    args = ["train", "-m", "qwen3-30b-a3b", "-a", "h100", "-n", "16", "--ep", "16", "--global-batch", "64",
            "--seq-len", "4096", "--precision", "fp8-current", "--framework", "megatron-bridge-26.04.01", "--json"]
    runner = CliRunner()
    plain = runner.invoke(app, args)
    folded = runner.invoke(app, [*args, "--flags", "--moe-token-dispatcher-type=flex"])
    for result in (plain, folded):  # exit 1 where the plan does not fit (the reason on stderr), as every command
        assert result.exit_code == (0 if json.loads(result.stdout)["feasible"] else 1), result.output
    assert json.loads(folded.stdout)["breakdown"]["ep_comm_s"] < json.loads(plain.stdout)["breakdown"]["ep_comm_s"]
    refused = runner.invoke(app, [*args, "--flags", "--sequence-parallel"])
    assert refused.exit_code == 2 and "--flags" in refused.output
    dense = runner.invoke(app, ["train", "-m", "llama-3-8b", "-n", "8", "--etp", "2", "--json"])
    assert dense.exit_code == 2 and "ep" in dense.output  # a dense model has no experts to split
