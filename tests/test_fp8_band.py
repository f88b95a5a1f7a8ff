"""FP8 GEMMs on a part whose FP8 rate is not measured: priced at the kernel the recipe runs (per-tensor scaling:
TE's cuBLASLt ratio on GH100), with the band over both published Hopper FP8/BF16 ratios in validation and the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from capsim.calibration import perf_for
from capsim.calibration.fp8 import DEEPGEMM_LABEL, TE_LABEL, fp8_rates, fp8_scale, with_fp8_scale
from capsim.calibration.published_gemm import FP8_OVER_BF16_GH100
from capsim.cli import app
from capsim.specs.precision import DType
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, predict_row


@pytest.mark.parametrize("calibration", ["profile", "datasheet"])
def test_gh100_point_is_te_cublas_and_the_other_is_deepgemm(calibration):
    perf = perf_for("H100-SXM5-80GB", calibration)
    point, other = fp8_rates(perf)
    peaks = perf.params.peak_flops_per_s
    assert point.label.startswith(TE_LABEL) and other.label.startswith(DEEPGEMM_LABEL)
    assert point.dtype_scale == pytest.approx(perf.params.gemm.dtype_scale["fp8"], abs=1e-3)  # what it prices
    assert point.over_bf16 == FP8_OVER_BF16_GH100
    assert other.dtype_scale == pytest.approx(fp8_scale(perf.params.gemm.efficiency), abs=1e-4)
    assert other.over_bf16 == pytest.approx(other.dtype_scale * peaks["fp8"] / peaks["bf16"], abs=1e-3)
    assert 1.3 < other.over_bf16 < 1.6 < FP8_OVER_BF16_GH100  # DeepGEMM's block-scaled table is the slower


def test_parts_with_published_fp8_points_have_no_band_and_others_assume_deepgemm():
    assert fp8_rates(perf_for("B200")) is None  # its own per-tensor FP8 points
    assert fp8_rates(perf_for("A100-SXM4-80GB")) is None  # no FP8 math
    point, other = fp8_rates(perf_for("MI300X"))
    assert point.label.startswith(DEEPGEMM_LABEL) and "assumed" in point.label and other.label.startswith(TE_LABEL)


def test_with_fp8_scale_changes_fp8_gemms_only():
    perf = perf_for("H100-SXM5-80GB", "profile")
    slow = with_fp8_scale(perf, fp8_rates(perf)[1].dtype_scale)
    m = n = k = 8192
    assert slow.gemm_s(m, n, k, DType.BF16) == perf.gemm_s(m, n, k, DType.BF16)
    ratio = slow.gemm_s(m, n, k, DType.FP8) / perf.gemm_s(m, n, k, DType.FP8)
    assert ratio == pytest.approx(perf.params.gemm.dtype_scale["fp8"] / slow.params.gemm.dtype_scale["fp8"], rel=0.02)


def _row(software: str, precision: str):
    rows = read_csv(None, "training_modern.csv", REQUIRED)
    return next(r for r in rows if r["software"] == software and r["precision"] == precision)


@pytest.mark.parametrize("calibration", ["profile", "datasheet"])
def test_an_h100_fp8_row_band_spans_both_ratios_with_the_point_at_te(calibration):
    row = _row("nemo-24.07", "fp8")
    pred = predict_row(row, calibration)
    low, high = pred.band
    assert "at 1.90x BF16 (TE cuBLASLt per-tensor" in pred.note and "DeepGEMM block-scaled" in pred.note
    at_other = float(pred.note.split("DeepGEMM block-scaled, H800) ")[1].split(",")[0].split(";")[0])
    assert at_other < pred.value  # the slower GEMMs: fewer tokens per second
    assert low <= at_other and high >= pred.value


def test_a_b200_fp8_row_has_no_fp8_band():
    rows = read_csv(None, "training_modern.csv", REQUIRED)
    row = next(r for r in rows if r["gpu"] == "B200" and r["precision"] == "fp8")
    assert "DeepGEMM" not in predict_row(row, "datasheet").note


def test_cli_train_states_the_fp8_rate_and_the_other_step():
    runner = CliRunner()
    args = ["train", "-m", "llama-3-8b", "-a", "H100-SXM5-80GB", "--gpus", "8", "--precision", "fp8",
            "--distributed-optimizer"]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    band = d["fp8_rate"]
    assert band["assumed"]["over_bf16"] == FP8_OVER_BF16_GH100 and band["other"]["label"].startswith(DEEPGEMM_LABEL)
    assert band["step_s_at_other"] > d["step_time_s"]
    text = " ".join(runner.invoke(app, args).stdout.split())  # the console wraps at its width
    assert text.count("FP8 GEMMs at 1.90x BF16 (TE cuBLASLt per-tensor, H200 NVL") == 1
    assert f"at 1.50x (DeepGEMM block-scaled, H800): step {band['step_s_at_other']:.4g} s" in text
    bf16 = json.loads(runner.invoke(app, [*args[:-3], "--distributed-optimizer", "--json"]).stdout)
    assert "fp8_rate" not in bf16
