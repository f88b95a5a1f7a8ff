"""gpt-oss-120b and gpt-oss-20b training against the published rows of training_gptoss.csv (Megatron-Bridge 25.11 to
26.06.01 on DGX-H100, B200, B300, GB200 and GB300; NeMo AutoModel 2025-10 on DGX-H100): every row priced or a strict
xfail saying why not, and within 15% of the published tokens/s/GPU (misses are strict xfails with their measured
error; nothing is fitted to these rows)."""

from functools import cache

import numpy as np
import pytest

from capsim.errors import SpecError
from capsim.specs.catalog import get_model
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED, predict_row, row_model

GPTOSS = read_csv(None, "training_gptoss.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0

_WHY = ("capsim too fast: GEMMs and attention at the calibration's rates (the releases run the sinks and windows in "
        "cuDNN's fused attention, TE >= 2.8 with cuDNN >= 9.13.1, and the clamped GLU as one fused kernel; the eager "
        "fc2 bias is priced); not priced: the sink kernel's own rate, the layernorm/moe_act recomputation")
_WHY_2606_01 = _WHY + "; the page footnotes this container's GPT-OSS regression (cudnn-frontend issue 256)"
_WHY_AM = ("capsim too fast: FlexAttention priced as the release's TE attention, DeepEP at its H100 kernel "
           "microbenchmarks' costs (capsim.analytic.training.flex); the eager rotate-half RoPE is priced "
           "(capsim.analytic.training.eager; the 20B/120B profile misses were +22.7/+36.7% without it)")
MISSES = {
    (0, "datasheet"): "+53.4%: step 5.82 s (compute 4.92, ep_comm 0.89) vs 8.93 s published; " + _WHY,
    (1, "datasheet"): "+77.3%: step 5.82 s (compute 4.85, ep_comm 0.96) vs 10.32 s published; " + _WHY,
    (4, "datasheet"): "+52.3%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.22 s published; " + _WHY,
    (5, "datasheet"): "+93.2%: step 2.69 s (compute 2.23, ep_comm 0.45) vs 5.19 s published; " + _WHY,
    (6, "datasheet"): "+73.2%: step 5.66 s (compute 2.53, ep_comm 3.12) vs 9.80 s published; " + _WHY,
    (7, "datasheet"): "+18.9%: step 8.56 s (compute 2.44, ep_comm 6.12) vs 10.18 s published; " + _WHY,
    (8, "datasheet"): "+73.7%: step 7.87 s (compute 6.71, ep_comm 0.79) vs 13.67 s published; " + _WHY,
    (9, "datasheet"): "+52.6%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.23 s published; " + _WHY,
    (10, "datasheet"): "+93.6%: step 2.69 s (compute 2.23, ep_comm 0.45) vs 5.20 s published; " + _WHY,
    (11, "datasheet"): "+73.4%: step 3.14 s (compute 2.56, ep_comm 0.40) vs 5.45 s published; " + _WHY,
    (13, "datasheet"): "+74.0%: step 7.87 s (compute 6.71, ep_comm 0.79) vs 13.69 s published; " + _WHY,
    (14, "datasheet"): "+53.4%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.25 s published; " + _WHY,
    (15, "datasheet"): "+119.9%: step 2.34 s (compute 2.23, ep_comm 0.10) vs 5.14 s published; " + _WHY,
    (16, "datasheet"): "+71.3%: step 3.17 s (compute 2.56, ep_comm 0.42) vs 5.42 s published; " + _WHY,
    (18, "datasheet"): "+79.2%: step 7.87 s (compute 6.71, ep_comm 0.79) vs 14.10 s published; " + _WHY,
    (19, "datasheet"): "+54.0%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.27 s published; " + _WHY,
    (20, "datasheet"): "+111.3%: step 2.33 s (compute 2.23, ep_comm 0.09) vs 4.92 s published; " + _WHY,
    (21, "datasheet"): "+69.9%: step 3.17 s (compute 2.56, ep_comm 0.42) vs 5.38 s published; " + _WHY,
    (23, "datasheet"): "+78.8%: step 7.87 s (compute 6.71, ep_comm 0.79) vs 14.07 s published; " + _WHY,
    (24, "datasheet"): "+24.1%: step 1.99 s (compute 1.89, ep_comm 0.09) vs 2.47 s published; " + _WHY,
    (25, "datasheet"): "+36.7%: step 2.07 s (compute 1.96, ep_comm 0.10) vs 2.83 s published; " + _WHY,
    (26, "datasheet"): "+71.3%: step 2.58 s (compute 2.05, ep_comm 0.42) vs 4.42 s published; " + _WHY,
    (27, "datasheet"): "+102.8%: step 1.99 s (compute 1.89, ep_comm 0.09) vs 4.04 s published; " + _WHY_2606_01,
    (28, "datasheet"): "+116.2%: step 2.07 s (compute 1.96, ep_comm 0.10) vs 4.48 s published; " + _WHY_2606_01,
    (29, "datasheet"): "+25.3%: step 8.01 s (compute 5.70, ep_comm 0.37) vs 10.04 s published; " + _WHY_AM,
    (0, "profile"): "+53.4%: step 5.82 s (compute 4.92, ep_comm 0.89) vs 8.93 s published; " + _WHY,
    (1, "profile"): "+77.3%: step 5.82 s (compute 4.85, ep_comm 0.96) vs 10.32 s published; " + _WHY,
    (4, "profile"): "+52.3%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.22 s published; " + _WHY,
    (5, "profile"): "+93.2%: step 2.69 s (compute 2.23, ep_comm 0.45) vs 5.19 s published; " + _WHY,
    (6, "profile"): "+73.2%: step 5.66 s (compute 2.53, ep_comm 3.12) vs 9.80 s published; " + _WHY,
    (7, "profile"): "+18.9%: step 8.56 s (compute 2.44, ep_comm 6.12) vs 10.18 s published; " + _WHY,
    (8, "profile"): "+65.5%: step 8.26 s (compute 7.07, ep_comm 0.81) vs 13.67 s published; " + _WHY,
    (9, "profile"): "+52.6%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.23 s published; " + _WHY,
    (10, "profile"): "+93.6%: step 2.69 s (compute 2.23, ep_comm 0.45) vs 5.20 s published; " + _WHY,
    (11, "profile"): "+73.4%: step 3.14 s (compute 2.56, ep_comm 0.40) vs 5.45 s published; " + _WHY,
    (13, "profile"): "+65.8%: step 8.26 s (compute 7.07, ep_comm 0.81) vs 13.69 s published; " + _WHY,
    (14, "profile"): "+53.4%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.25 s published; " + _WHY,
    (15, "profile"): "+119.9%: step 2.34 s (compute 2.23, ep_comm 0.10) vs 5.14 s published; " + _WHY,
    (16, "profile"): "+71.3%: step 3.17 s (compute 2.56, ep_comm 0.42) vs 5.42 s published; " + _WHY,
    (18, "profile"): "+70.7%: step 8.26 s (compute 7.07, ep_comm 0.81) vs 14.10 s published; " + _WHY,
    (19, "profile"): "+54.0%: step 2.77 s (compute 2.32, ep_comm 0.45) vs 4.27 s published; " + _WHY,
    (20, "profile"): "+111.3%: step 2.33 s (compute 2.23, ep_comm 0.09) vs 4.92 s published; " + _WHY,
    (21, "profile"): "+69.9%: step 3.17 s (compute 2.56, ep_comm 0.42) vs 5.38 s published; " + _WHY,
    (23, "profile"): "+70.3%: step 8.26 s (compute 7.07, ep_comm 0.81) vs 14.07 s published; " + _WHY,
    (24, "profile"): "+24.1%: step 1.99 s (compute 1.89, ep_comm 0.09) vs 2.47 s published; " + _WHY,
    (25, "profile"): "+36.7%: step 2.07 s (compute 1.96, ep_comm 0.10) vs 2.83 s published; " + _WHY,
    (26, "profile"): "+71.3%: step 2.58 s (compute 2.05, ep_comm 0.42) vs 4.42 s published; " + _WHY,
    (27, "profile"): "+102.8%: step 1.99 s (compute 1.89, ep_comm 0.09) vs 4.04 s published; " + _WHY_2606_01,
    (28, "profile"): "+116.2%: step 2.07 s (compute 1.96, ep_comm 0.10) vs 4.48 s published; " + _WHY_2606_01,
    (29, "profile"): "+20.0%: step 8.36 s (compute 5.99, ep_comm 0.40) vs 10.04 s published; " + _WHY_AM,
}
_NO_RC = "; priced without the recipe's layernorm/moe_act recomputation (recompute_modules, which the recompute column "\
         "cannot state): its extra forward work not priced, nor the memory it frees (173.2 GB/GPU of the B200's 191.5 GB)"
for _k in ("datasheet", "profile"):
    MISSES.update({
        (2, _k): "+102.9%: step 1.97 s (compute 0.98, ep_comm 0.16) vs 3.99 s published (25.11 table: ep 8, "
                 "micro-batch 4); " + _WHY + _NO_RC,
        (12, _k): "+62.1%: step 3.68 s (compute 2.46, ep_comm 0.40) vs 5.97 s published; " + _WHY + _NO_RC,
        (17, _k): "+69.5%: step 3.70 s (compute 2.46, ep_comm 0.42) vs 6.28 s published; " + _WHY + _NO_RC,
        (22, _k): "+63.9%: step 3.68 s (compute 2.46, ep_comm 0.40) vs 6.04 s published; " + _WHY + _NO_RC})
MISSES[(30, "datasheet")] = ("+39.0%: step 3.09 s (compute 2.06, ep_comm 0.42) vs 4.30 s published at the table's PP 1 "
                             "and the recipe's ep 16 (82.3 GB/GPU of the H100's 84.9 GB); " + _WHY_AM)
MISSES[(30, "profile")] = ("+35.7%: step 3.17 s (compute 2.17, ep_comm 0.42) vs 4.30 s published at the table's PP 1 "
                           "and the recipe's ep 16 (82.3 GB/GPU of the H100's 84.9 GB); " + _WHY_AM)
MISSES[(3, "datasheet")] = ("+72.7%: step 3.37 s (compute 2.68, ep_comm 0.32) vs 5.82 s published at the release's "
                            "micro-batch 1 (the table's MBS 4 and GA 2 contradict its GBS 512 at dp 16: left blank; "
                            "band over micro-batches 1 and 2, the feasible ones: +71.7 to +72.7%); " + _WHY + _NO_RC)
MISSES[(3, "profile")] = ("+65.0%: step 3.53 s (compute 2.83, ep_comm 0.33) vs 5.82 s published at the release's "
                          "micro-batch 1 (the table's MBS 4 and GA 2 contradict its GBS 512 at dp 16: left blank; band "
                          "over micro-batches 1 and 2, the feasible ones: +65.0 to +65.0%); " + _WHY + _NO_RC)


@cache
def _predict(i: int, kind: str):
    return predict_row(GPTOSS[i], kind)


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
def test_gptoss_row_is_priced(i, kind):
    assert _predict(i, kind).value > 0


@pytest.mark.parametrize("i, kind", [_param(i, k, MISSES) for k in ("datasheet", "profile")
                                     for i in range(len(GPTOSS))])
def test_gptoss_row_within_15_pct(i, kind):
    pred = _predict(i, kind)
    measured = float(GPTOSS[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (GPTOSS[i]["gpu"], pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| over the 31 rows 71.3% (datasheet) / 69.5% (profile): "
                                       "every priced row too fast, +19% (26.02 H100) to +120% (26.04 GB200)")
@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_gptoss_median_within_8_pct(kind):
    errors = [abs(_predict(i, kind).value / float(GPTOSS[i]["value"]) - 1.0) * 100 for i in range(len(GPTOSS))]
    assert len(errors) == 31 and np.median(errors) <= MEDIAN_BOUND_PCT


def test_the_25_11_h100_row_leaves_the_micro_batch_its_table_contradicts_to_the_release():
    # The 25.11 DGX-H100 table: GBS 512, PP 4 (dp 16), MBS 4, GA 4 x 2 = 8 micro-batch-rows per replica, not the 32 that
    # GBS 512 needs: the micro-batch is left blank, so the release's default (1, the v0.2.0 config's too) is priced
    # and the band spans the plausible micro-batches that fit.
    i = next(i for i, r in enumerate(GPTOSS) if r["software"] == "megatron-bridge-25.11" and r["gpu"] == "H100-SXM5-80GB")
    r = GPTOSS[i]
    assert int(r["global_batch"]) == 512 and int(r["dp"]) == 16 and r["micro_batch"] == ""
    pred = _predict(i, "datasheet")
    assert pred.settings["micro_batch"] == 1 and pred.memory_bytes <= pred.capacity_bytes
    assert pred.band is not None and pred.band[0] <= pred.value <= pred.band[1] and "micro_batch in" in pred.note
    with pytest.raises(SpecError, match="does not fit in memory"):  # the table's micro-batch 4
        predict_row(dict(r, micro_batch="4"), "datasheet")
