"""gpt-oss-120b and gpt-oss-20b training against the published rows of training_gptoss.csv (Megatron-Bridge 25.11 to
26.06.01 on DGX-H100, B200, B300, GB200 and GB300; NeMo AutoModel 2025-10 on DGX-H100): every row priced or a strict
xfail saying why not, and within 15% of the published tokens/s/GPU (misses are strict xfails with their measured
error; nothing is fitted to these rows)."""


import numpy as np
import pytest

from capsim.errors import SpecError
from capsim.specs.catalog import get_model
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED, predict_row, row_model

GPTOSS = read_csv(None, "training_gptoss.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0

_WHY = ("capsim too fast: GEMMs and attention at the calibration's rates (the releases run the sinks and windows in "
        "cuDNN's fused attention, TE >= 2.8 with cuDNN >= 9.13.1; priced: the eager GLU clamp and the unfused YaRN "
        "RoPE of Megatron-Core, capsim.analytic.eager, and the eager fc2 bias); not priced: the sink kernel's own rate "
        "and head_dim 64's (no published figure)")
_WHY_2606_01 = _WHY + "; the page footnotes this container's GPT-OSS regression (cudnn-frontend issue 256)"
_WHY_AM = ("capsim too fast: FlexAttention priced as the release's TE attention, DeepEP at its H100 kernel "
           "microbenchmarks' costs (capsim.analytic.training.flex); priced: the experts' eager fc1 and fc2 biases "
           "and the eager RoPE; not priced: the sinks in FlexAttention, the q/k/v transposes' contiguous copies")
_RC = ("; the recipe's layernorm/moe_act recomputation priced (--recompute-modules): the pre-MLP norm (the input "
       "norm is fused into linear_qkv) and the experts' activation replayed, the activation memory they free")
MISSES = {
    (0, "datasheet"): "+37.1%: step 6.51 s (compute 5.61, ep_comm 0.89) vs 8.93 s published; " + _WHY,
    (1, "datasheet"): "+52.0%: step 6.79 s (compute 5.57, ep_comm 0.96) vs 10.32 s published; " + _WHY + _RC,
    (2, "datasheet"): (
        "+88.5%: step 2.12 s (compute 1.16, ep_comm 0.16) vs 3.99 s published (25.11 table: ep 8, micro-batch"
        " 4); "
        + _WHY + _RC),
    (3, "datasheet"): (
        "+41.6%: step 4.11 s (compute 3.22, ep_comm 0.32) vs 5.82 s published at the release's micro-batch 1 "
        "(the table's MBS 4 and GA 2 contradict its GBS 512 at dp 16: left blank; band over micro-batches 1 "
        "and 2, the feasible ones: +41.6 to +46.5%); "
        + _WHY + _RC),
    (4, "datasheet"): "+34.1%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.22 s published; " + _WHY,
    (5, "datasheet"): "+64.2%: step 3.16 s (compute 2.59, ep_comm 0.45) vs 5.19 s published; " + _WHY + _RC,
    (6, "datasheet"): "+61.9%: step 6.05 s (compute 2.93, ep_comm 3.12) vs 9.80 s published; " + _WHY,
    (8, "datasheet"): "+41.7%: step 9.65 s (compute 8.04, ep_comm 0.79) vs 13.67 s published; " + _WHY + _RC,
    (9, "datasheet"): "+34.5%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.23 s published; " + _WHY,
    (10, "datasheet"): "+64.6%: step 3.16 s (compute 2.59, ep_comm 0.45) vs 5.20 s published; " + _WHY + _RC,
    (11, "datasheet"): "+52.4%: step 3.58 s (compute 3.02, ep_comm 0.40) vs 5.45 s published; " + _WHY,
    (12, "datasheet"): "+43.1%: step 4.17 s (compute 2.90, ep_comm 0.40) vs 5.97 s published; " + _WHY + _RC,
    (13, "datasheet"): "+41.9%: step 9.65 s (compute 8.04, ep_comm 0.79) vs 13.69 s published; " + _WHY + _RC,
    (14, "datasheet"): "+35.1%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.25 s published; " + _WHY,
    (15, "datasheet"): "+82.8%: step 2.81 s (compute 2.58, ep_comm 0.10) vs 5.14 s published; " + _WHY + _RC,
    (16, "datasheet"): "+50.8%: step 3.59 s (compute 3.02, ep_comm 0.42) vs 5.42 s published; " + _WHY,
    (17, "datasheet"): "+50.0%: step 4.19 s (compute 2.90, ep_comm 0.42) vs 6.28 s published; " + _WHY + _RC,
    (18, "datasheet"): "+46.2%: step 9.65 s (compute 8.04, ep_comm 0.79) vs 14.10 s published; " + _WHY + _RC,
    (19, "datasheet"): "+35.6%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.27 s published; " + _WHY,
    (20, "datasheet"): "+75.6%: step 2.80 s (compute 2.58, ep_comm 0.09) vs 4.92 s published; " + _WHY + _RC,
    (21, "datasheet"): "+49.7%: step 3.59 s (compute 3.02, ep_comm 0.42) vs 5.38 s published; " + _WHY,
    (22, "datasheet"): "+44.8%: step 4.17 s (compute 2.90, ep_comm 0.40) vs 6.04 s published; " + _WHY + _RC,
    (23, "datasheet"): "+45.8%: step 9.65 s (compute 8.04, ep_comm 0.79) vs 14.07 s published; " + _WHY + _RC,
    (25, "datasheet"): "+26.5%: step 2.15 s (compute 2.05, ep_comm 0.10) vs 2.83 s published; " + _WHY,
    (26, "datasheet"): "+49.1%: step 2.96 s (compute 2.52, ep_comm 0.42) vs 4.42 s published; " + _WHY,
    (27, "datasheet"): "+84.4%: step 2.19 s (compute 2.09, ep_comm 0.09) vs 4.04 s published; " + _WHY_2606_01,
    (28, "datasheet"): "+100.0%: step 2.15 s (compute 2.05, ep_comm 0.10) vs 4.48 s published; " + _WHY_2606_01,
    # (29, "datasheet") was +16.0% (step 8.65 s, compute 6.11): +13.9% with cuDNN's H100 attention rates
    # (published_attention_cudnn), now within 15%
    (30, "datasheet"): (
        "+34.4%: step 3.20 s (compute 2.27, ep_comm 0.42) vs 4.30 s published at the table's PP 1 and the "
        "recipe's ep 16 (82.3 GB/GPU of the H100's 84.9 GB); "
        + _WHY_AM),
    (0, "profile"): "+37.1%: step 6.51 s (compute 5.61, ep_comm 0.89) vs 8.93 s published; " + _WHY,
    (1, "profile"): "+52.0%: step 6.79 s (compute 5.57, ep_comm 0.96) vs 10.32 s published; " + _WHY + _RC,
    (2, "profile"): (
        "+88.5%: step 2.12 s (compute 1.16, ep_comm 0.16) vs 3.99 s published (25.11 table: ep 8, micro-batch"
        " 4); "
        + _WHY + _RC),
    (3, "profile"): (
        "+38.7%: step 4.20 s (compute 3.29, ep_comm 0.33) vs 5.82 s published at the release's micro-batch 1 "
        "(the table's MBS 4 and GA 2 contradict its GBS 512 at dp 16: left blank; band over micro-batches 1 "
        "and 2, the feasible ones: +38.7 to +43.4%); "
        + _WHY + _RC),
    (4, "profile"): "+34.1%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.22 s published; " + _WHY,
    (5, "profile"): "+64.2%: step 3.16 s (compute 2.59, ep_comm 0.45) vs 5.19 s published; " + _WHY + _RC,
    (6, "profile"): "+61.9%: step 6.05 s (compute 2.93, ep_comm 3.12) vs 9.80 s published; " + _WHY,
    (8, "profile"): "+38.7%: step 9.86 s (compute 8.22, ep_comm 0.81) vs 13.67 s published; " + _WHY + _RC,
    (9, "profile"): "+34.5%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.23 s published; " + _WHY,
    (10, "profile"): "+64.6%: step 3.16 s (compute 2.59, ep_comm 0.45) vs 5.20 s published; " + _WHY + _RC,
    (11, "profile"): "+52.4%: step 3.58 s (compute 3.02, ep_comm 0.40) vs 5.45 s published; " + _WHY,
    (12, "profile"): "+43.1%: step 4.17 s (compute 2.90, ep_comm 0.40) vs 5.97 s published; " + _WHY + _RC,
    (13, "profile"): "+38.9%: step 9.86 s (compute 8.22, ep_comm 0.81) vs 13.69 s published; " + _WHY + _RC,
    (14, "profile"): "+35.1%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.25 s published; " + _WHY,
    (15, "profile"): "+82.8%: step 2.81 s (compute 2.58, ep_comm 0.10) vs 5.14 s published; " + _WHY + _RC,
    (16, "profile"): "+50.8%: step 3.59 s (compute 3.02, ep_comm 0.42) vs 5.42 s published; " + _WHY,
    (17, "profile"): "+50.0%: step 4.19 s (compute 2.90, ep_comm 0.42) vs 6.28 s published; " + _WHY + _RC,
    (18, "profile"): "+43.0%: step 9.86 s (compute 8.22, ep_comm 0.81) vs 14.10 s published; " + _WHY + _RC,
    (19, "profile"): "+35.6%: step 3.15 s (compute 2.69, ep_comm 0.45) vs 4.27 s published; " + _WHY,
    (20, "profile"): "+75.6%: step 2.80 s (compute 2.58, ep_comm 0.09) vs 4.92 s published; " + _WHY + _RC,
    (21, "profile"): "+49.7%: step 3.59 s (compute 3.02, ep_comm 0.42) vs 5.38 s published; " + _WHY,
    (22, "profile"): "+44.8%: step 4.17 s (compute 2.90, ep_comm 0.40) vs 6.04 s published; " + _WHY + _RC,
    (23, "profile"): "+42.7%: step 9.86 s (compute 8.22, ep_comm 0.81) vs 14.07 s published; " + _WHY + _RC,
    (25, "profile"): "+26.5%: step 2.15 s (compute 2.05, ep_comm 0.10) vs 2.83 s published; " + _WHY,
    (26, "profile"): "+49.1%: step 2.96 s (compute 2.52, ep_comm 0.42) vs 4.42 s published; " + _WHY,
    (27, "profile"): "+84.4%: step 2.19 s (compute 2.09, ep_comm 0.09) vs 4.04 s published; " + _WHY_2606_01,
    (28, "profile"): "+100.0%: step 2.15 s (compute 2.05, ep_comm 0.10) vs 4.48 s published; " + _WHY_2606_01,
    (30, "profile"): (
        "+32.2%: step 3.25 s (compute 2.33, ep_comm 0.42) vs 4.30 s published at the table's PP 1 and the "
        "recipe's ep 16 (82.3 GB/GPU of the H100's 84.9 GB); "
        + _WHY_AM),
}


def _predict(priced, i: int, kind: str):
    return priced.row(GPTOSS[i], kind)


def _param(i: int, kind: str, reasons: dict):
    reason = reasons.get((i, kind)) or reasons.get(i)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(i, kind, marks=marks, id=f"{kind}-{i}-{GPTOSS[i]['software']}-{GPTOSS[i]['gpu']}")


def test_the_file_holds_the_published_gpt_oss_rows_and_ships():
    assert len(GPTOSS) == 31 and "training_gptoss.csv" in SHIPPED
    bridge = [r for r in GPTOSS if r["framework"] == "megatron-core"]
    assert len(bridge) == 29 and {r["model"] for r in bridge} == {"gpt-oss-120b"}
    assert {r["gpu"] for r in bridge} == {"H100-SXM5-80GB", "B200", "B300", "GB200", "GB300"}
    assert {r["precision"] for r in bridge} == {"bf16", "mxfp8"}
    automodel = [r for r in GPTOSS if r["framework"] == "fsdp2"]
    assert [r["model"] for r in automodel] == ["gpt-oss-20b", "gpt-oss-120b"]
    assert {r["software"] for r in automodel} == {"nemo-automodel-2025-10"}


@pytest.mark.parametrize("i", range(31))
def test_each_row_is_the_catalog_architecture(i):
    # the CSV's shape columns over the catalog entry: windows, biases and the all-MoE stack come from the catalog
    model, entry = row_model(GPTOSS[i]), get_model(GPTOSS[i]["model"])
    assert (model.sliding_window, model.global_every, model.bias, model.router_bias) == (128, 2, True, True)
    assert (model.layers, model.experts, model.top_k, model.ffn_hidden) == \
        (entry.layers, entry.experts, entry.top_k, entry.ffn_hidden)


@pytest.mark.parametrize("i, kind", [(i, k) for k in ("datasheet", "profile") for i in range(len(GPTOSS))])
def test_gptoss_row_is_priced(i, kind, priced):
    assert _predict(priced, i, kind).value > 0


@pytest.mark.parametrize("i, kind", [_param(i, k, MISSES) for k in ("datasheet", "profile")
                                     for i in range(len(GPTOSS))])
def test_gptoss_row_within_15_pct(i, kind, priced):
    pred = _predict(priced, i, kind)
    measured = float(GPTOSS[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (GPTOSS[i]["gpu"], pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| over the 31 rows 47.8% (datasheet) / 44.8% (profile): "
                                       "every row too fast, +12% (26.02 B200, EP 64) to +100% (26.06.01 GB200); was "
                                       "71.3% / 69.5% before the eager clamp, unfused YaRN RoPE and recompute modules, "
                                       "49.1% / 45.7% while 'layernorm' also replayed the fused input norm, 49.3% / 46.1% "
                                       "before the non-interleaved pipeline's blocking sends")
@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_gptoss_median_within_8_pct(kind, priced):
    errors = [abs(_predict(priced, i, kind).value / float(GPTOSS[i]["value"]) - 1.0) * 100 for i in range(len(GPTOSS))]
    assert len(errors) == 31 and np.median(errors) <= MEDIAN_BOUND_PCT


def test_the_25_11_h100_row_leaves_the_micro_batch_its_table_contradicts_to_the_release(priced):
    # The 25.11 DGX-H100 table: GBS 512, PP 4 (dp 16), MBS 4, GA 4 x 2 = 8 micro-batch-rows per replica, not the 32 that
    # GBS 512 needs: the micro-batch is left blank, so the release's default (1, the v0.2.0 config's too) is priced
    # and the band spans the plausible micro-batches that fit.
    i = next(i for i, r in enumerate(GPTOSS) if r["software"] == "megatron-bridge-25.11" and r["gpu"] == "H100-SXM5-80GB")
    r = GPTOSS[i]
    assert int(r["global_batch"]) == 512 and int(r["dp"]) == 16 and r["micro_batch"] == ""
    pred = _predict(priced, i, "datasheet")
    assert pred.settings["micro_batch"] == 1 and pred.memory_bytes <= pred.capacity_bytes
    assert pred.band is not None and pred.band[0] <= pred.value <= pred.band[1] and "micro_batch in" in pred.note
    with pytest.raises(SpecError, match="does not fit in memory"):  # the table's micro-batch 4
        predict_row(dict(r, micro_batch="4"), "datasheet")
