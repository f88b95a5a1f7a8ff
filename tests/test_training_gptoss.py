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

_WHY = ("capsim too fast: GEMMs and attention at the calibration's rates; not priced: the learnable-softmax (sink) "
        "attention kernel, the bias and clamped-SwiGLU kernels, the layernorm/moe_act recomputation")
_WHY_2606_01 = _WHY + "; the page footnotes this container's GPT-OSS regression (cudnn-frontend issue 256)"
_WHY_AM = ("capsim too fast: FlexAttention priced as the release's TE attention, DeepEP at its H100 kernel "
           "microbenchmarks' costs (capsim.analytic.training.flex)")
MISSES = {
    (0, "datasheet"): "+63.8%: step 5.45 s (compute 4.60, ep_comm 0.84) vs 8.93 s published; " + _WHY,
    (1, "datasheet"): "+90.8%: step 5.41 s (compute 4.52, ep_comm 0.88) vs 10.32 s published; " + _WHY,
    (4, "datasheet"): "+63.2%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.22 s published; " + _WHY,
    (5, "datasheet"): "+107.5%: step 2.50 s (compute 2.07, ep_comm 0.42) vs 5.19 s published; " + _WHY,
    (6, "datasheet"): "+78.9%: step 5.48 s (compute 2.37, ep_comm 3.10) vs 9.80 s published; " + _WHY,
    (7, "datasheet"): "+21.4%: step 8.38 s (compute 2.27, ep_comm 6.10) vs 10.18 s published; " + _WHY,
    (8, "datasheet"): "+83.0%: step 7.47 s (compute 6.32, ep_comm 0.79) vs 13.67 s published; " + _WHY,
    (9, "datasheet"): "+63.6%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.23 s published; " + _WHY,
    (10, "datasheet"): "+107.9%: step 2.50 s (compute 2.07, ep_comm 0.42) vs 5.20 s published; " + _WHY,
    (11, "datasheet"): "+83.7%: step 2.97 s (compute 2.40, ep_comm 0.37) vs 5.45 s published; " + _WHY,
    (13, "datasheet"): "+83.3%: step 7.47 s (compute 6.32, ep_comm 0.79) vs 13.69 s published; " + _WHY,
    (14, "datasheet"): "+64.3%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.25 s published; " + _WHY,
    (15, "datasheet"): "+135.6%: step 2.18 s (compute 2.07, ep_comm 0.10) vs 5.14 s published; " + _WHY,
    (16, "datasheet"): "+79.8%: step 3.02 s (compute 2.40, ep_comm 0.42) vs 5.42 s published; " + _WHY,
    (18, "datasheet"): "+88.8%: step 7.47 s (compute 6.32, ep_comm 0.79) vs 14.10 s published; " + _WHY,
    (19, "datasheet"): "+65.0%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.27 s published; " + _WHY,
    (20, "datasheet"): "+127.0%: step 2.17 s (compute 2.07, ep_comm 0.09) vs 4.92 s published; " + _WHY,
    (21, "datasheet"): "+78.4%: step 3.02 s (compute 2.40, ep_comm 0.42) vs 5.38 s published; " + _WHY,
    (23, "datasheet"): "+88.3%: step 7.47 s (compute 6.32, ep_comm 0.79) vs 14.07 s published; " + _WHY,
    (24, "datasheet"): "+34.6%: step 1.83 s (compute 1.73, ep_comm 0.09) vs 2.47 s published; " + _WHY,
    (25, "datasheet"): "+47.9%: step 1.91 s (compute 1.81, ep_comm 0.10) vs 2.83 s published; " + _WHY,
    (26, "datasheet"): "+80.4%: step 2.45 s (compute 1.89, ep_comm 0.42) vs 4.42 s published; " + _WHY,
    (27, "datasheet"): "+120.0%: step 1.83 s (compute 1.73, ep_comm 0.09) vs 4.04 s published; " + _WHY_2606_01,
    (28, "datasheet"): "+133.8%: step 1.91 s (compute 1.81, ep_comm 0.10) vs 4.48 s published; " + _WHY_2606_01,
    (29, "datasheet"): "+38.7%: step 7.24 s (compute 5.16, ep_comm 0.37) vs 10.04 s published; " + _WHY_AM,
    (0, "profile"): "+63.8%: step 5.45 s (compute 4.60, ep_comm 0.84) vs 8.93 s published; " + _WHY,
    (1, "profile"): "+90.8%: step 5.41 s (compute 4.52, ep_comm 0.88) vs 10.32 s published; " + _WHY,
    (4, "profile"): "+63.2%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.22 s published; " + _WHY,
    (5, "profile"): "+107.5%: step 2.50 s (compute 2.07, ep_comm 0.42) vs 5.19 s published; " + _WHY,
    (6, "profile"): "+78.9%: step 5.48 s (compute 2.37, ep_comm 3.10) vs 9.80 s published; " + _WHY,
    (7, "profile"): "+21.4%: step 8.38 s (compute 2.27, ep_comm 6.10) vs 10.18 s published; " + _WHY,
    (8, "profile"): "+72.4%: step 7.93 s (compute 6.75, ep_comm 0.81) vs 13.67 s published; " + _WHY,
    (9, "profile"): "+63.6%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.23 s published; " + _WHY,
    (10, "profile"): "+107.9%: step 2.50 s (compute 2.07, ep_comm 0.42) vs 5.20 s published; " + _WHY,
    (11, "profile"): "+83.7%: step 2.97 s (compute 2.40, ep_comm 0.37) vs 5.45 s published; " + _WHY,
    (13, "profile"): "+72.6%: step 7.93 s (compute 6.75, ep_comm 0.81) vs 13.69 s published; " + _WHY,
    (14, "profile"): "+64.3%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.25 s published; " + _WHY,
    (15, "profile"): "+135.6%: step 2.18 s (compute 2.07, ep_comm 0.10) vs 5.14 s published; " + _WHY,
    (16, "profile"): "+79.8%: step 3.02 s (compute 2.40, ep_comm 0.42) vs 5.42 s published; " + _WHY,
    (18, "profile"): "+77.8%: step 7.93 s (compute 6.75, ep_comm 0.81) vs 14.10 s published; " + _WHY,
    (19, "profile"): "+65.0%: step 2.59 s (compute 2.16, ep_comm 0.42) vs 4.27 s published; " + _WHY,
    (20, "profile"): "+127.0%: step 2.17 s (compute 2.07, ep_comm 0.09) vs 4.92 s published; " + _WHY,
    (21, "profile"): "+78.4%: step 3.02 s (compute 2.40, ep_comm 0.42) vs 5.38 s published; " + _WHY,
    (23, "profile"): "+77.4%: step 7.93 s (compute 6.75, ep_comm 0.81) vs 14.07 s published; " + _WHY,
    (24, "profile"): "+34.6%: step 1.83 s (compute 1.73, ep_comm 0.09) vs 2.47 s published; " + _WHY,
    (25, "profile"): "+47.9%: step 1.91 s (compute 1.81, ep_comm 0.10) vs 2.83 s published; " + _WHY,
    (26, "profile"): "+80.4%: step 2.45 s (compute 1.89, ep_comm 0.42) vs 4.42 s published; " + _WHY,
    (27, "profile"): "+120.0%: step 1.83 s (compute 1.73, ep_comm 0.09) vs 4.04 s published; " + _WHY_2606_01,
    (28, "profile"): "+133.8%: step 1.91 s (compute 1.81, ep_comm 0.10) vs 4.48 s published; " + _WHY_2606_01,
    (29, "profile"): "+30.0%: step 7.72 s (compute 5.54, ep_comm 0.40) vs 10.04 s published; " + _WHY_AM,
}
_NO_RC = "; priced without the recipe's layernorm/moe_act recomputation (recompute_modules, which the recompute column "\
         "cannot state): its extra forward work not priced, nor the memory it frees (173.2 GB/GPU of the B200's 191.5 GB)"
for _k in ("datasheet", "profile"):
    MISSES.update({
        (2, _k): "+107.5%: step 1.92 s (compute 0.92, ep_comm 0.15) vs 3.99 s published (25.11 table: ep 8, "
                 "micro-batch 4); " + _WHY + _NO_RC,
        (12, _k): "+69.3%: step 3.53 s (compute 2.30, ep_comm 0.37) vs 5.97 s published; " + _WHY + _NO_RC,
        (17, _k): "+75.7%: step 3.58 s (compute 2.30, ep_comm 0.42) vs 6.28 s published; " + _WHY + _NO_RC,
        (22, _k): "+71.2%: step 3.53 s (compute 2.30, ep_comm 0.37) vs 6.04 s published; " + _WHY + _NO_RC})
MISSES[(30, "datasheet")] = ("+44.0%: step 2.98 s (compute 1.86, ep_comm 0.42) vs 4.30 s published at the table's PP 1 "
                             "and the recipe's ep 16 (82.3 GB/GPU of the H100's 84.9 GB); " + _WHY_AM)
MISSES[(30, "profile")] = ("+40.0%: step 3.07 s (compute 2.01, ep_comm 0.42) vs 4.30 s published at the table's PP 1 "
                           "and the recipe's ep 16 (82.3 GB/GPU of the H100's 84.9 GB); " + _WHY_AM)
MISSES[(3, "datasheet")] = ("+81.7%: step 3.20 s (compute 2.53, ep_comm 0.32) vs 5.82 s published at the release's "
                            "micro-batch 1 (the table's MBS 4 and GA 2 contradict its GBS 512 at dp 16: left blank; "
                            "band over micro-batches 1 and 2, the feasible ones: +80.7 to +81.7%); " + _WHY + _NO_RC)
MISSES[(3, "profile")] = ("+71.6%: step 3.39 s (compute 2.70, ep_comm 0.33) vs 5.82 s published at the release's "
                          "micro-batch 1 (the table's MBS 4 and GA 2 contradict its GBS 512 at dp 16: left blank; band "
                          "over micro-batches 1 and 2, the feasible ones: +71.6 to +71.9%); " + _WHY + _NO_RC)


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


@pytest.mark.xfail(strict=True, reason="median |error| over the 31 rows 79.8% (datasheet) / 75.7% (profile): "
                                       "every priced row too fast, +21% (26.02 H100) to +136% (26.04 GB200)")
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
