"""NeMo AutoModel's FSDP2 releases after October 2025 and every row of training_fsdp2.csv against the 15% bound
(misses and unpriced rows are strict xfails with their measured error or reason)."""

from dataclasses import replace
from functools import cache
from importlib import resources

import pytest

from capsim.analytic.training.framework import FrameworkName, get_release, release_for
from capsim.analytic.training.release import BEHAVIOUR, MoeDispatcher, Reshard
from capsim.errors import SpecError
from capsim.specs.precision import DType
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED, predict_row, training_suite
from capsim.validation.training_rows import row_precision

FSDP2 = read_csv(None, "training_fsdp2.csv", REQUIRED)
ROW_BOUND_PCT = 15.0
_SPLIT = ("not priced: AutoModel splits DeepSeek-V3's 61 layers front-loaded over its 32 virtual stages (29 of 2 "
          "layers, 3 of 1: AM@8d9bfb9 nemo_automodel/components/distributed/pipelining/functional.py L113-126), a "
          "split none of capsim's (Megatron-Core's even, first/last, embedding/loss or layout-string) states")
_LLAMA = ("Llama 3.1 70B, CP 2 x FSDP 64 over 8 nodes, full AC, compiled: priced faster than measured (step {} s "
          "against 18.90 s). Unpriced: torch's ring attention for CP under SDPA (capsim hides the CP exchange "
          "entirely), TE FusedAdam's fp32 moments, host syncs the recipe's patch_is_packed_sequence removes")
_EP16 = ("Qwen3-30B-A3B over 2 nodes (EP16, DeepEP/HybridEP over 400 Gb/s IB): priced slower than measured, the "
         "expert all-to-alls exposed ({} s of a {} s step against 5.91 s (DeepEP) / 5.47 s (HybridEP) measured; the "
         "1-node EP8 rows are within 15%). The report measures the cross-node dispatch at 59-72 GB/s per GPU and "
         "finds the combine hidden in the compute window (its 4.2); capsim prices no overlap of the expert "
         "all-to-alls in FSDP2 (overlap_moe_a2a off) and prices DeepEP and HybridEP alike (flex)")
# (row index, calibration kind) -> why the row misses 15% or is not priced today.
MISSES = {
    (0, "datasheet"): _SPLIT, (0, "profile"): _SPLIT,
    (1, "datasheet"): _SPLIT, (1, "profile"): _SPLIT,
    (2, "datasheet"): "+34.5%: " + _LLAMA.format("14.1"),
    (2, "profile"): "+26.0%: " + _LLAMA.format("15.0"),
    (5, "datasheet"): "-25.9%: " + _EP16.format("3.35", "7.97"), (5, "profile"): "-27.8%: " + _EP16.format("3.27", "8.18"),
    (6, "datasheet"): "-31.3%: " + _EP16.format("3.35", "7.97"), (6, "profile"): "-33.1%: " + _EP16.format("3.27", "8.18"),
}


@cache
def _predict(i: int, kind: str):
    return predict_row(FSDP2[i], None if kind == "datasheet" else "profile")


def _param(i: int, kind: str):
    reason = MISSES.get((i, kind))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(i, kind, marks=marks, id=f"{kind}-{i}-{FSDP2[i]['software']}-{FSDP2[i]['model']}")


def test_the_file_ships_and_names_only_catalog_h100s():
    assert "training_fsdp2.csv" in SHIPPED and len(FSDP2) == 7
    assert {r["gpu"] for r in FSDP2} == {"H100-SXM5-80GB"} and {r["framework"] for r in FSDP2} == {"fsdp2"}


@pytest.mark.parametrize("i, kind", [_param(i, k) for k in ("datasheet", "profile") for i in range(len(FSDP2))])
def test_fsdp2_row_within_15_pct(i, kind):
    pred = _predict(i, kind)
    measured = float(FSDP2[i]["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (FSDP2[i]["model"], pred.value, pred.note)


@pytest.mark.parametrize("kind", ["datasheet", "profile"])
def test_every_row_is_priced_or_says_why_in_one_line(kind):
    report = training_suite(str(resources.files("capsim.data").joinpath("validation", "training_fsdp2.csv")), kind)
    assert len(report.rows) == len(FSDP2)
    failed = [r for r in report.rows if r.predicted is None]
    assert [r.case.split()[0] for r in failed] == ["deepseek-v3", "deepseek-v3"]
    assert all("\n" not in r.note and "splits deepseek-v3's 61 layers" in r.note for r in failed)
    priced = [r for r in report.rows if r.predicted is not None]
    assert len(priced) == 5 and all(r.predicted > 0 for r in priced)


def test_deepseek_rows_fail_on_their_split_not_on_their_columns():
    row = FSDP2[1]
    with pytest.raises(SpecError, match="splits deepseek-v3's 61 layers"):
        predict_row(row)
    # 61 is prime: no other depth divides it. The same run of a 64-layer model is priced: every other column of the
    # row is read and runs (a check of the columns only; 64 layers is not the published model).
    assert predict_row(dict(row, layers="64")).value > 0


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


def test_deepep_and_hybridep_rows_price_alike():
    """capsim prices both as its flex dispatcher (the SMs each reserves are not priced): the measured 5.5% (1 node)
    and 7.9% (2 nodes) HybridEP gains are outside the model, and each pair's predictions are equal."""
    for deepep, hybridep in ((3, 4), (5, 6)):
        assert _predict(deepep, "profile").value == pytest.approx(_predict(hybridep, "profile").value)
        assert float(FSDP2[hybridep]["value"]) > float(FSDP2[deepep]["value"])
