"""The Megatron-Bridge containers other than 26.04.01 (releases_bridge.py) and every row of training_bridge.csv against
its bound: priced, and within 15% of the published tokens/s/GPU (misses are strict xfails with their measured error)."""

import numpy as np
import pytest

from capsim.analytic.training.framework import RELEASES, FrameworkName, release_for
from capsim.analytic.training.release import BEHAVIOUR, LAYOUT_SETTINGS, Release, _version
from capsim.analytic.training.releases_bridge import TAGS
from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED

BRIDGE = read_csv(None, "training_bridge.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0

# --- the presets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("software", sorted(TAGS))
def test_each_container_has_its_own_preset_read_at_its_tag(software):
    release = release_for("megatron-core", software)
    tag = TAGS[software].tag
    assert release.software == software and release.covers is None
    assert set(release.cite) == set(BEHAVIOUR) and set(release.defaults) == set(LAYOUT_SETTINGS)
    assert f"MB@{tag}" in release.cite["overlap_grad_reduce"] and f"MB@{tag}" in release.cite["fp8_params"]
    assert TAGS[software].core.split()[0] in release.cite["moe_dispatcher"]  # the tag's own Megatron-Core
    fw, layout = release.configure("--tp-comm-overlap --tp-comm-overlap-cfg=userbuffers_fp8_h100_h8192_tp4_mbs1_"
                                   "seqlen8192 --grad-reduce-in-bf16")
    assert fw.overlap_tp_comm and not fw.grads_fp32 and fw.tp_rs.chunks == 0  # the FP8 config ring-exchanges
    # the perf scripts' FP8: per-tensor current scaling from v0.2.0, delayed (--fp8_recipe ds) in v0.1.0rc3
    assert fw.fp8_params and fw.fp8_scaling.value == ("delayed" if tag == "v0.1.0rc3" else "current")


def test_the_containers_differ_where_their_code_does():
    mbs = {s: release_for("megatron-core", s).defaults["micro_batch"].value for s in TAGS}
    # v0.2.0 / v0.3.0: the Llama recipe's micro_batch_size: int = 1; recipes/common.py from v0.3.1: 2
    assert mbs["megatron-bridge-25.09"] == mbs["megatron-bridge-25.11"] == mbs["megatron-bridge-26.02"] == 1
    assert mbs["megatron-bridge-26.02.01"] == mbs["megatron-bridge-26.06"] == 2
    cores = {TAGS[s].core for s in TAGS}
    assert len(cores) == len(TAGS)  # each container pins a different Megatron-Core commit: no preset covers another


def test_container_names_compare_as_versions():
    assert _version("megatron-bridge-26.02.01") == ("megatron-bridge-", (26, 2, 1))
    base = RELEASES[FrameworkName.MEGATRON_BRIDGE_26_06]
    ranged = Release(base.framework, base.family, "megatron-bridge-26.06", base.date, base.code, base.cite,
                     base.defaults, base.flags, covers=("megatron-bridge-26.06", "megatron-bridge-26.06.01"))
    assert ranged.covers_release("megatron-bridge-26.06") and ranged.covers_release("megatron-bridge-26.06.01")
    assert not ranged.covers_release("megatron-bridge-26.06.02") and not ranged.covers_release("megatron-bridge-26.04")
    assert not ranged.covers_release("megatron-core-26.06.01")  # another name's numbers are not this release
    # A shorter name stands for every release that starts with it: "25.09"..."26.02.01" does not cover all of 26.02
    # (26.02.02 would lie outside), only its own software name is matched exactly.
    wide = Release(base.framework, base.family, "megatron-bridge-25.09", base.date, base.code, base.cite,
                   base.defaults, base.flags, covers=("megatron-bridge-25.09", "megatron-bridge-26.02.01"))
    assert wide.covers_release("megatron-bridge-25.11") and wide.covers_release("megatron-bridge-26.02.01")
    assert not wide.covers_release("megatron-bridge-26.02") and not wide.covers_release("megatron-bridge-26.04")


def test_an_unknown_container_is_an_error():
    with pytest.raises(SpecError, match="megatron-bridge-26.08"):
        release_for("megatron-core", "megatron-bridge-26.08")  # no preset read at v0.6.0 (no H100/B200 rows)


# --- the validation file -------------------------------------------------------------------------------------------

_MOE_GEMM = ("expert grouped GEMMs (k = 768 and 2048) priced at the dense FP8 curve (as the 26.04.01 row of "
             "training_modern.csv); the flex dispatch at HybridEP's kernel costs (capsim.analytic.training.flex) took "
             "the EP 16 rows from +37-41% to +17-19% at DeepGEMM's FP8 rate, +22.6-23.9% at TE's cuBLASLt 1.90x, "
             "+18.5-20.5% priced by GEMM role")
# What --overlap-moe-expert-parallel-comm does, read at NVIDIA/Megatron-LM@0d8e0714 (25.11) and @b0cc2706 (26.02) and
# Megatron-Bridge v0.2.0 / v0.3.0: the combined 1F1B schedule (each layer's forward of one micro-batch with its backward
# of another on a compute and a comm stream, megatron/core/models/common/model_chunk_schedule_plan.py L176-239 at
# 0d8e0714), one extra warmup forward (pipeline_parallel/schedules.py L730-734), the dispatcher's host wait once per
# pair; the perf scripts force delay_wgrad_compute on and shared-expert overlap off with it (scripts/performance/utils/
# helpers.py L182-186 at v0.2.0). capsim prices the paired phases and the host floor per pair
# (stages.host_waits_s); with the forward experts' host issue at the profiled 68.4 us per local expert GEMM
# (capsim.analytic.training.host.FWD_GROUPED_LAUNCH_S) the pair floor binds barely (host 4.9 ms against 4.5-4.8 ms of
# GPU at micro-batch 1). Megatron-Bridge PR #1760 (2025-12-17, Qwen3-235B-A22B on B200) turned moe_a2a_overlap off
# "due to CPU overhead for BF16 and MXFP8" (MXFP8 step 20.1 s -> 16.9 s, VP off too): NVIDIA's own reading is that the
# overlap path costs host time; no published figure of the combined schedule's own host work (its per-node autograd
# calls, stream switches and events) was found to price it.
_A2A_SLOW = ("the page's figures with --overlap-moe-expert-parallel-comm (25.11 5275, 26.02 5113) are 44-50% below "
             "the same pp 2 / ep 8 layout without it (25.09 10494, 26.02.01 9058): ~4.0 us per token per layer pair "
             "at the table's micro-batch 2 and at 1 alike, against ~2 us without (the table's micro-batch 2 for "
             "25.11 is not v0.2.0's workload config, which leaves WorkloadBaseConfig's micro_batch_size 1, "
             "scripts/performance/utils/utils.py L45: at micro-batch 1 a per-pair host cost would fit both rows). "
             "capsim hides each all-to-all in its phase of the combined 1F1B layer schedule (ep_comm 0.02-0.2 s) "
             "and floors each pair by both passes' host issue (4.9 ms against 4.5-4.8 ms of GPU at micro-batch 1; "
             "+215.0% before the profiled per-expert forward host cost); nothing found in Megatron-Core "
             "0d8e0714/b0cc2706 or the v0.2.0/v0.3.0 perf scripts (delay_wgrad_compute, one extra warmup micro-batch, "
             "a host wait per pair, per-node stream events) doubles the step; a two-stream replay of "
             "TransformerLayerSchedulePlan.run's issue order at capsim's per-op GPU and host times "
             "(benchmarks/ep_overlap_replay.py: 5.6 ms per layer pair against 7.7 ms without the overlap at row 16's "
             "layout) hides what capsim's pair pricing hides, and no host scale makes the overlap slower there. "
             "NVIDIA's own A/Bs of the flag price right without it and show capsim over-crediting it "
             "(tests/test_ep_overlap_ab.py: Qwen3-30B on 16 H100 at EP 16, 20.99 s measured with it, 15.51 priced; "
             "Megatron-Bridge PR #1760, B200, 'CPU overhead': 7.5% slower with it, 25% faster priced); "
             "docs/training/communication-overlap.md at 067f987d: 'Small-EP alltoall MoE runs can get slower "
             "because scheduling overhead is larger than the communication being hidden', unmeasured: unexplained")
_A2A_HIDDEN = _A2A_SLOW
_A2A_HIDDEN_25_11 = (_A2A_SLOW + "; the table states pp 2, vp 24 and micro-batch 2 while the v0.2.0 workload config "
                     "states VP 12 and no micro-batch")
_HOST_EXPERTS = ("; the forward experts' host issue at the Megatron-MoE-ModelZoo profile's 68.4 us per local "
                 "expert GEMM (capsim.analytic.training.host.FWD_GROUPED_LAUNCH_S) took this row from +24.9% "
                 "(26.02.01's, at the table's layout, from +34.9% to +7.9%)")
_235B = ("Qwen3-235B-A22B on 256 H100s: too fast, the dense FP8 curve for 128-expert grouped GEMMs at "
         "k = 1536 / 4096, EP 32 all-to-all across four nodes priced at NCCL bandwidths")
# H100 FP8 rows priced by GEMM role: the forward at TE's cuBLASLt per-tensor FP8/BF16 ratio on GH100 (1.90x BF16,
# timed with fast accumulation), dgrad and wgrad (split accumulation in TE) at DeepGEMM's 1.39x / 1.50x. The Llama-3-70B
# rows (4, 10, 14, 18, 21) went from +16-26% (all at 1.90x) to +5.5-10.6%; at every GEMM at DeepGEMM's rate, the
# band's low end, the 405B layouts are within 8-19%.
_H100_FP8 = ("H100 FP8 too fast: forward FP8 GEMMs at 1.90x the BF16 rate (TE's cuBLASLt FP8/BF16 ratio on GH100, "
             "published_gemm.TE_H200_NVL, a 2026 TE/cuBLAS on an H200 NVL), dgrad/wgrad at DeepGEMM's; unpriced or "
             "underpriced: TE's FP8 work around each GEMM beyond the cast-transposes, older cuBLAS in the container")
_405B = "Llama-3.1-405B FP8 too fast: 126 layers over 64 virtual stages; " + _H100_FP8
# What TE does at TP 8 under SP (capsim.analytic.fp8.sp_gather_bytes): the all-gathers move FP8 and the casts cover
# the local eighth of the rows; priced, they move these rows 3-4 points faster.
_TP8_QUANTIZED = ("; TP 8 with SP: TE gathers the FP8 copies and casts 1/8 of the rows before each gather (capsim "
                  "prices both; the QKV and fc1 casts in the norm kernel, their wgrad transposes over all the "
                  "gathered rows: capsim.analytic.fp8.NormQuantize), so the GEMMs carry the step")
_B200 = ("on B200 (no B200 profile calibration: the datasheet GEMM fit of capsim.calibration.published_gemm; "
         "CUDA graphs and token-drop padding not priced)")
_B200_MOE = "25.09 Qwen3 token-drop rows " + _B200 + "; " + _MOE_GEMM
MISSES = {
    (1, "datasheet"): "+16.5%: Llama-3.1-405B on 128 B200 " + _B200,
    (1, "profile"): "+16.5%: as with the datasheet calibration (B200 has no profile)",
    (2, "datasheet"): "-17.6%: " + _B200_MOE + "; the host's kernel issue time binds here, priced eager: the "
                      "run's CUDA graphs (its YAML's cuda_graphs true, static shapes under token drop) are not "
                      "(+40.8% before capsim.analytic.training.host.synced_pass_s, +20.4% before the forward "
                      "experts' profiled 68.4 us per local expert GEMM, FWD_GROUPED_LAUNCH_S)",
    (2, "profile"): "-17.6%: as with the datasheet",
    (5, "datasheet"): "+25.0%: " + _405B + _TP8_QUANTIZED,
    (5, "profile"): "+24.1%: " + _405B + _TP8_QUANTIZED,
    (11, "datasheet"): "+26.9%: " + _405B + _TP8_QUANTIZED,
    (11, "profile"): "+25.8%: " + _405B + _TP8_QUANTIZED,
    (16, "datasheet"): "+206.2%: " + _A2A_HIDDEN, (16, "profile"): "+205.5%: " + _A2A_HIDDEN,
    (20, "datasheet"): "+16.3%: " + _235B,
    (22, "datasheet"): "+16.2%: " + _MOE_GEMM, (22, "profile"): "+16.8%: " + _MOE_GEMM,
    (25, "datasheet"): "+17.2%: " + _MOE_GEMM, (25, "profile"): "+17.7%: " + _MOE_GEMM,
    # (6, "profile") was +15.4%: +14.3% with cuDNN's H100 attention rates (published_attention_cudnn), within 15%
    (12, "datasheet"): "+202.1%: " + _A2A_HIDDEN_25_11, (12, "profile"): "+202.1%: " + _A2A_HIDDEN_25_11,
    # (13, "datasheet") was +15.0% (just over 15): +14.96% with cuDNN's H100 attention rates, within 15%
    (15, "datasheet"): "+22.4%: " + _405B,
    (15, "profile"): "+21.3%: " + _405B,
    (24, "datasheet"): "+16.8%: " + _405B,
    (24, "profile"): "+15.7%: " + _405B,
}


def _predict(priced, i: int, kind: str):
    return priced.row(BRIDGE[i], kind)


def _param(i: int, kind: str, reasons: dict[tuple[int, str], str]):
    reason = reasons.get((i, kind))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(i, kind, marks=marks, id=f"{kind}-{i}-{BRIDGE[i]['software']}-{BRIDGE[i]['model']}")


def test_the_file_holds_h100_and_b200_rows_of_every_container():
    assert len(BRIDGE) == 26
    assert {r["gpu"] for r in BRIDGE} == {"H100-SXM5-80GB", "B200"}
    assert {r["software"] for r in BRIDGE} == set(TAGS) - {"megatron-bridge-26.06.01"}  # 26.06.01: GB systems only
    assert {r["precision"] for r in BRIDGE} == {"fp8"}


@pytest.mark.parametrize("i, kind", [(i, k) for k in ("datasheet", "profile") for i in range(len(BRIDGE))])
def test_bridge_row_is_priced(i, kind, priced):
    assert _predict(priced, i, kind).value > 0


@pytest.mark.parametrize("i", [6, 12])
def test_qwen3_30b_at_micro_batch_2_fits_an_h100_as_the_run_did(i, priced):
    # 25.09/25.11 Qwen3-30B-A3B, pp 2, vp 24, ep 8, micro-batch 2 on 16 H100s ran: with the MoE combine keeping
    # nothing (Megatron-Core >= 0.13) and TE's in-place fused loss, capsim needs 69.0 GB/GPU (83.5 GB before both;
    # the attention core's 16-bit output, kept beside the FP8 copy of the output projection's input, included).
    pred = _predict(priced, i, "profile")
    assert 60e9 < pred.memory_bytes <= pred.capacity_bytes == get_accelerator("H100-SXM5-80GB").memory_bytes


@pytest.mark.parametrize("i, kind", [_param(i, k, MISSES) for k in ("datasheet", "profile")
                                     for i in range(len(BRIDGE))])
def test_bridge_row_within_15_pct(i, kind, priced):
    pred = _predict(priced, i, kind)
    measured = float(BRIDGE[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (BRIDGE[i]["model"], pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| over the 26 rows 14.8% (datasheet) / 13.9% (profile): "
                                       "the Qwen3 MoE rows -18% to +206%; the dense Llama rows 5-26% too "
                                       "fast (H100 FP8 GEMMs by role: forward at TE's cuBLASLt 1.90x BF16, "
                                       "dgrad/wgrad at DeepGEMM's)")
@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_bridge_median_within_8_pct(kind, priced):
    errors = []
    for i in range(len(BRIDGE)):
        errors.append(abs(_predict(priced, i, kind).value / float(BRIDGE[i]["value"]) - 1.0) * 100)
    assert np.median(errors) <= MEDIAN_BOUND_PCT
