"""Every row of training_bridge_blackwell.csv (the Megatron-Bridge containers' Llama and Qwen3 rows on GB200, GB300,
B300 and B200 in FP8, MXFP8, NVFP4 and BF16) against its bound: priced, and within 15% of the published tokens/s/GPU (misses are strict
xfails with their measured error); the two flags the file needed (--fp4-param-gather, --overlap-param-gather=false)."""


import numpy as np
import pytest

from capsim.analytic.training.framework import release_for
from capsim.analytic.training.releases_bridge import TAGS
from capsim.errors import SpecError
from capsim.specs.precision import DType
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED, predict_row
from capsim.validation.training_rows import row_precision

ROWS = read_csv(None, "training_bridge_blackwell.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0

_B200_DIE = ("GB200 (B200's GPU die) too fast at every layout, TP 1 included (Llama3 8B FP8: +13.1%, +16.7%), while the "
             "GB300 rows priced from TE's own B300 GEMM table are within -11 to +4%: B200's GEMM points are other "
             "harnesses' (pytorch/ao, vLLM CUTLASS), taken as the same fraction of GB200's 11% higher peaks")
_FP4_GB200 = ("NVFP4 Llama3 70B at TP 2 on GB200 (no TP overlap for nvfp4: its TP communication exposed) too fast; "
              + _B200_DIE)
MISSES = {
    0: ("+16.7%: Llama3 8B FP8 (delayed scaling) on 8 GB200 (the run's CUDA graph priced, --enable-cuda-graph: no "
        "change, its layers' GPU time covers the host's issue); " + _B200_DIE),
    5: "+20.0%: 25.11 Llama3.1 405B MXFP8 on 128 B200 (the table's parenthesised FP8-MX figure, 624 against 661 "
       "for FP8-CS on the same layout, whose training_bridge.csv row is +14.9%): MXFP8 now at B200's FP8 rate times TE's "
       "cuBLAS MXFP8/FP8 ratio; B200 FP8 rows of 25.09-25.11 are themselves 16-18% too fast at TP 4 CP 2",
    7: "+37.0%: " + _FP4_GB200, 17: "+34.0%: " + _FP4_GB200, 27: "+24.7%: " + _FP4_GB200,
    39: "+25.7%: " + _FP4_GB200,
    9: "+21.8%: 26.02 Llama3 70B MXFP8 at TP 2 on GB200; " + _B200_DIE,
    29: "+15.0%: 26.04 Llama3 70B MXFP8 at TP 2 on GB200; " + _B200_DIE,
    38: "+18.6%: 26.04.01 Llama3 70B MXFP8 at TP 2 on GB200; " + _B200_DIE,
    11: "+23.2%: 26.02 Llama3.1 405B NVFP4 on GB200, PP 16 VP 8 (no TP overlap for nvfp4; 26.04.01: +12.0%); "
        + _B200_DIE,
    21: "+21.9%: 26.02.01 Llama3.1 405B NVFP4 on GB200, PP 16 VP 4 (no TP overlap for nvfp4); " + _B200_DIE,
    31: "+16.7%: 26.04 Llama3.1 405B NVFP4 on GB200, PP 16 VP 8 (no TP overlap for nvfp4); " + _B200_DIE,
    13: "+17.6%: 26.02 Llama3.1 405B MXFP8 on GB200, PP 16 VP 8; " + _B200_DIE,
    23: "+19.2%: 26.02.01 Llama3.1 405B MXFP8 on GB200, PP 16 VP 8; " + _B200_DIE,
    33: "+16.5%: 26.04 Llama3.1 405B MXFP8 on GB200, PP 16 VP 8; " + _B200_DIE,
    44: "+15.5%: 26.04.01 Llama3.1 405B MXFP8 on GB200, PP 16 VP 8; " + _B200_DIE,
    50: "+18.0%: 26.06 Llama3.1 405B MXFP8 on GB200, PP 16 VP 8; " + _B200_DIE,
    15: "+17.0%: 26.02 Llama3.1 405B FP8-CS on GB200 (later containers +7.7 to +13.6%); " + _B200_DIE,
}
_MOE = ("Qwen3 MoE too fast: 128-expert grouped GEMMs (k = 768 / 1536) priced at the dense GEMM curve of their "
        "format, the flex dispatch at DeepEP's H100 kernel costs (the rows carry no --moe-flex-dispatcher-backend, so "
        "Megatron-Core's default deepep, where several recipes name hybridep) and the all-to-all at NCCL bandwidths, "
        "CUDA graphs not priced (as the Qwen3 rows of "
        "training_bridge.csv, -17% to +206%; the recipes graph moe_router and moe_preprocess, GB200 attn too: "
        "pricing those ops' host time at zero moves these rows by at most +0.8 points); the host's kernel issue "
        "time at the cited launch costs (capsim.analytic.training.host: a forward expert GEMM at the profiled 68.4 "
        "us per local expert, the backward's and every other GEMM at the cuBLAS call's 13.7 us, one quantize per "
        "local expert, the forward from one dispatcher host wait to the next issued onto an empty GPU queue) took "
        "the 16-local-expert rows 9-85 points down (the GB200 30B rows of 26.02-26.04.01 from +21-23% to +11-13%); "
        "the misses grow with the local experts per GPU (16 at EP 8: about 1-10 ms per layer and micro-batch; "
        "4 at EP 32: 0-1.6 ms)")
_MBS1 = ("at the table's micro-batch 1 on 8 B200 the page's figure is 2.8x lower than its micro-batch-4 rows: about "
         "9.2 ms per layer and micro-batch against capsim's 5.2 ms (GPU 2.2, all-to-all 0.9, host wait 2.1: the "
         "experts' per-expert launches exposed after the dispatcher's host wait took these rows from +182/+171% to "
         "+158/+148%, the forward experts at the profiled 68.4 us per local expert GEMM to +73/+66%); the rest "
         "would be host work the profile's forward range does not cover (the backward's per-expert Python in TE's "
         "GroupedLinear, the MXFP8 quantizers; priced at the cuBLAS call and one kernel each); ")
_B300_235B = ("the page's 26.02 / 26.02.01 B300 figures at micro-batch 1, PP 8 VP 4 (2691, 2644) are 45% below 26.04's "
              "micro-batch-2 row (4865); Megatron-Bridge issue #3399 (2026-05-12, rhmukundan): 'On B300 ... "
              "moe_a2a_overlap and VP degraded perf, so we didn't enable it' (v0.3.1's B300 config has neither, the "
              "table's 26.02.01 row states VP 4); ")
MISSES.update({
    54: "+21.5%: " + _MOE,
    79: "+15.2%: " + _MOE,
    56: "+71.3%: " + _MBS1 + _MOE, 61: "+64.4%: " + _MBS1 + _MOE,
    57: "+108.2%: Qwen3-235B on 64 B200, alltoall with the a2a overlap (ep_comm 0.13 s of a 9.3 s step; the host floor per "
        "overlapped layer pair does not bind); the page's 3269 tokens/s/GPU is the 20.1 s MXFP8 step of "
        "Megatron-Bridge PR #1760, whose 16.9 s without the overlap and VP capsim prices at 14.33 s and whose BF16 "
        "A/B (17.2 s with the overlap, 16.0 s without) capsim prices the other way (10.43 s, 13.95 s): "
        "tests/test_ep_overlap_ab.py; " + _MOE,
    65: "+22.8%: Qwen3-235B on 256 B200, alltoall; " + _MOE, 87: "+23.7%: Qwen3-235B on 256 B200, alltoall; " + _MOE,
    64: "+169.8%: " + _B300_235B + "the a2a overlapped (ep_comm 0.19 s of an 18.1 s step); " + _MOE,
    72: "+86.9%: " + _B300_235B + _MOE,
})
_MFSDP = ("Megatron-FSDP (ZeRO-3 over the 64 GPUs of one NVLink domain, gathers one layer ahead: 0.02 s exposed) with "
          "CPU activation offloading (its copies priced hidden behind the layers' compute over NVLink-C2C): the step "
          "is the layers' compute, priced too fast on GB200 as every GB200 row; the GB300 rows of 26.02-26.04.01 are "
          "within +2.0 to +7.0%. ")
MISSES.update({
    88: "+23.6%: 25.09 Llama3 70B on GB200, micro-batch 2, one micro-batch per step; " + _MFSDP + _B200_DIE,
    89: "+32.9%: 25.09 Llama3.1 405B on 128 GB200, TP 2 with 95 of 126 layers offloaded; " + _MFSDP + _B200_DIE,
    90: "+18.5%: 25.11 Llama3 70B on GB300 (5307 priced for every container; the page: 4520 for 25.11, 5003-5248 "
        "after); " + _MFSDP,
    93: "+22.0%: 26.02 Llama3 70B on GB200; " + _MFSDP + _B200_DIE,
    97: "+19.0%: 26.04 Llama3 70B on GB200; " + _MFSDP + _B200_DIE,
    99: "+16.7%: 26.04.01 Llama3 70B on GB200; " + _MFSDP + _B200_DIE,
})


def _predict(priced, i: int, kind: str):
    return priced.row(ROWS[i], kind)


def _param(i: int, kind: str, reasons: dict[int, str]):
    marks = [pytest.mark.xfail(strict=True, reason=reasons[i])] if i in reasons else []
    return pytest.param(i, kind, marks=marks, id=f"{kind}-{i}-{ROWS[i]['software']}-{ROWS[i]['model']}-"
                                                 f"{ROWS[i]['gpu']}-{ROWS[i]['precision']}")


def test_the_file_holds_blackwell_rows_with_megatron_fsdp():
    assert len(ROWS) == 100 and "training_bridge_blackwell.csv" in SHIPPED
    assert {r["gpu"] for r in ROWS} == {"GB200", "GB300", "B300", "B200"}
    assert {r["precision"] for r in ROWS} == {"bf16", "fp8", "mxfp8", "nvfp4"}
    assert {r["model"] for r in ROWS} == {"llama-3-8b", "llama-3-70b", "llama-3.1-405b", "qwen3-30b-a3b",
                                          "qwen3-235b-a22b"}
    assert {r["software"] for r in ROWS} <= set(TAGS) | {"megatron-bridge-26.04.01"}
    # FSDP > 0 rows: Megatron-FSDP over the whole data-parallel group, the 12 Llama ones
    fsdp = [r for r in ROWS if r["fsdp"]]
    assert len(fsdp) == 12 and all("--use-megatron-fsdp" in r["flags"] and int(r["fsdp"]) == int(r["dp"]) * int(r["cp"])
                                   for r in fsdp)
    for r in ROWS:  # dp is what the GPUs leave after tp x pp x cp
        assert int(r["dp"]) * int(r["tp"]) * int(r["pp"]) * int(r["cp"]) == int(r["gpus"])
    # no Qwen3 row of 26.06 / 26.06.01: their MXFP8 configs run FP8 attention (fp8_dot_product_attention)
    assert not any(r["model"].startswith("qwen3") and r["software"] >= "megatron-bridge-26.06" for r in ROWS)


@pytest.mark.parametrize("software, gpu, dispatcher", [
    ("megatron-bridge-25.11", "GB200", "flex"), ("megatron-bridge-25.11", "B200", "alltoall"),
    ("megatron-bridge-26.02", "B300", "alltoall"), ("megatron-bridge-26.02.01", "B300", "flex")])
def test_qwen3_30b_dispatcher_is_the_tags(software, gpu, dispatcher):
    # v0.2.0 / v0.3.0: the recipe's apply_flex_dispatcher_backend turns hybridep into flex only on GB200/GB300;
    # from v0.3.1 qwen3_30b_a3b_pretrain_config_<gpu> sets "flex" itself
    row = next(r for r in ROWS if r["software"] == software and r["gpu"] == gpu and r["model"] == "qwen3-30b-a3b")
    fw, _ = release_for("megatron-core", software).configure(row["flags"])
    assert fw.moe_dispatcher.value == dispatcher


@pytest.mark.parametrize("software, gathered", [("megatron-bridge-26.02", False), ("megatron-bridge-26.04", False),
                                                ("megatron-bridge-26.04.01", True), ("megatron-bridge-26.06", True)])
def test_nvfp4_weights_are_kept_in_fp4_only_where_the_tag_gathers_them(software, gathered):
    # bf16_with_nvfp4_mixed: fp8_param_gather False and no fp4_param_gather before v0.4.2, fp4_param_gather True after
    rows = [r for r in ROWS if r["software"] == software and r["precision"] == "nvfp4"]
    assert rows and all(("--fp4-param-gather=false" in r["flags"]) is not gathered for r in rows)
    release = release_for("megatron-core", software)
    fw, _ = release.configure(rows[0]["flags"])
    assert fw.fp8_params is gathered and "bf16_with_nvfp4_mixed" in release.flags["--fp4-param-gather"].source
    weights = row_precision(rows[0], fw).weights
    assert weights is (DType.NVFP4 if gathered else DType.BF16)


def test_the_param_gather_overlap_flag_turns_it_off():
    fw, _ = release_for("megatron-core", "megatron-bridge-26.06").configure("--overlap-param-gather=false")
    assert fw.overlap_param_gather is False
    on, _ = release_for("megatron-core", "megatron-bridge-26.06").configure("--overlap-param-gather")
    assert on.overlap_param_gather is True


def test_without_fp4_gather_the_nvfp4_row_needs_more_memory(priced):
    i = next(i for i, r in enumerate(ROWS) if "--fp4-param-gather=false" in r["flags"])
    gathered = dict(ROWS[i], flags=ROWS[i]["flags"].replace("--fp4-param-gather=false", ""))
    assert _predict(priced, i, "datasheet").memory_bytes > predict_row(gathered, "datasheet").memory_bytes


@pytest.mark.parametrize("i, kind", [(i, k) for k in ("datasheet", "profile") for i in range(len(ROWS))])
def test_blackwell_row_is_priced(i, kind, priced):
    assert _predict(priced, i, kind).value > 0


@pytest.mark.parametrize("i", range(len(ROWS)))
def test_no_blackwell_profile_so_both_rules_give_the_datasheet(i, priced):
    assert _predict(priced, i, "profile").value == _predict(priced, i, "datasheet").value


@pytest.mark.parametrize("i, kind", [_param(i, k, MISSES) for k in ("datasheet", "profile")
                                     for i in range(len(ROWS))])
def test_blackwell_row_within_15_pct(i, kind, priced):
    pred = _predict(priced, i, kind)
    measured = float(ROWS[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (ROWS[i]["model"], pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| over the 100 rows 8.3% (both rules): the Qwen3 MoE rows "
                                       "are -6.0 to +170% and the GB200 Llama rows 7.4-37.0%; the GB300 Llama rows "
                                       "are within -10.7 to +18.5%")
@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_blackwell_median_within_8_pct(kind, priced):
    errors = [abs(_predict(priced, i, kind).value / float(ROWS[i]["value"]) - 1.0) * 100 for i in range(len(ROWS))]
    assert np.median(errors) <= MEDIAN_BOUND_PCT


def test_the_26_02_01_gb300_70b_rows_run_the_tags_config_because_the_tables_layout_cannot_hold_them(priced):
    # The 26.02.01 table's GB300 NVFP4 (TP 1 PP 1 MBS 2) and MXFP8 (PP 4 without VP, MBS 2) layouts with FSDP 0 match
    # no config of any tag; the rows take MB@v0.3.1's LLAMA3_70B_PRETRAIN_CONFIG_GB300_{NVFP4,FP8_MX}_V2 (PP 4 VP 5,
    # MBS 1), as the file's header says. The published layouts do not fit: NVFP4's bf16 weights and gradients alone
    # are 2 x 2 B x 70.6e9 = 282 GB of the GB300's 279 GB.
    rows = {r["precision"]: (i, r) for i, r in enumerate(ROWS)
            if r["software"] == "megatron-bridge-26.02.01" and r["model"] == "llama-3-70b" and r["gpu"] == "GB300"
            and not r["fsdp"]}
    assert set(rows) == {"nvfp4", "mxfp8"}
    for i, r in rows.values():
        assert (r["tp"], r["pp"], r["pp_interleave"], r["dp"], r["micro_batch"]) == ("1", "4", "5", "16", "1")
        assert _predict(priced, i, "datasheet").memory_bytes <= _predict(priced, i, "datasheet").capacity_bytes
    i, nvfp4 = rows["nvfp4"]
    table = dict(nvfp4, pp="1", pp_interleave="", dp="64", micro_batch="2")
    with pytest.raises(SpecError, match="does not fit in memory"):
        predict_row(table, "datasheet")
    states = 70.6e9 * 2 * 2  # bf16 weights (no fp4_param_gather before v0.4.2) + bf16 main gradients
    assert states > _predict(priced, i, "datasheet").capacity_bytes
    i, mxfp8 = rows["mxfp8"]
    with pytest.raises(SpecError, match="does not fit in memory"):
        predict_row(dict(mxfp8, pp_interleave="", micro_batch="2"), "datasheet")
