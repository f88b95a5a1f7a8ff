"""FP8 GEMMs on a part whose FP8 rate is not measured: priced by role at the kernels the recipe runs (GH100, per-tensor
scaling: the forward at TE's cuBLASLt ratio, timed with fast accumulation; dgrad and wgrad, which TE and torchao
accumulate in FP32, at DeepGEMM's promoted-accumulation ratio), with the band over every FP8 GEMM at each published
Hopper FP8/BF16 ratio in validation and the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from capsim.analytic import fp8
from capsim.calibration import perf_for
from capsim.calibration.fp8 import (
    DEEPGEMM_LABEL,
    TE_LABEL,
    fp8_rates,
    fp8_scale,
    split_by_role,
    with_fp8_scale,
)
from capsim.calibration.published_gemm import FP8_OVER_BF16_GH100
from capsim.cli import app
from capsim.specs.precision import DType, Precision
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
    assert not split_by_role(slow)  # a band end: every role at the one rate
    assert slow.gemm_s(m, n, k, DType.FP8, accumulation="split") == slow.gemm_s(m, n, k, DType.FP8)


@pytest.mark.parametrize("calibration", ["profile", "datasheet"])
def test_gh100_prices_dgrad_and_wgrad_at_deepgemm_and_the_forward_at_te(calibration):
    perf = perf_for("H100-SXM5-80GB", calibration)
    te, deepgemm = fp8_rates(perf)
    assert split_by_role(perf)
    assert perf.params.gemm.dtype_scale["fp8.split"] == pytest.approx(deepgemm.dtype_scale, abs=1e-4)
    m, n, k = 16384, 4096, 4096
    fast, split = perf.gemm_s(m, n, k, DType.FP8), perf.gemm_s(m, n, k, DType.FP8, accumulation="split")
    assert split > fast  # the promoted accumulation is the slower
    assert split == pytest.approx(with_fp8_scale(perf, deepgemm.dtype_scale).gemm_s(m, n, k, DType.FP8), rel=1e-9)
    assert fast == pytest.approx(with_fp8_scale(perf, te.dtype_scale).gemm_s(m, n, k, DType.FP8), rel=1e-9)


def test_only_fp8_weight_gemms_in_backward_roles_take_split_accumulation():
    p8, bf16 = Precision(compute=DType.FP8), Precision()
    assert {"dgrad", "wgrad"} == fp8.SPLIT_ACCUMULATION_ROLES  # TE _2X_ACC_DGRAD/WGRAD; torchao grad gemm configs
    assert [fp8.accumulation(n, p8) for n in ("qkv", "qkv.dgrad", "qkv.wgrad", "mlp_down.wgrad")] == \
        ["", "split", "split", "split"]
    assert fp8.accumulation("qkv.dgrad", bf16) == ""  # 16-bit GEMMs: one rate
    assert fp8.accumulation("attn_qk.dgrad", p8) == ""  # not one of TE's FP8 weight GEMMs


def test_blackwell_and_other_parts_have_no_role_split():
    assert not split_by_role(perf_for("B200"))  # its own published per-tensor FP8 points
    assert not split_by_role(perf_for("MI300X"))  # DeepGEMM's rate for every role already


def _row(software: str, precision: str):
    rows = read_csv(None, "training_modern.csv", REQUIRED)
    return next(r for r in rows if r["software"] == software and r["precision"] == precision)


@pytest.mark.parametrize("calibration", ["profile", "datasheet"])
def test_an_h100_fp8_row_point_is_the_role_mix_inside_the_all_at_one_rate_band(calibration):
    row = _row("nemo-24.07", "fp8")
    pred = predict_row(row, calibration)
    low, high = pred.band
    assert "forward at 1.90x BF16 (TE cuBLASLt per-tensor" in pred.note
    assert "dgrad and wgrad at" in pred.note and "DeepGEMM block-scaled" in pred.note
    at_te = float(pred.note.split("; all at 1.90x ")[1].split(",")[0].split(";")[0])
    at_deepgemm = float(pred.note.split("; all at 1.90x ")[1].split("; all at ")[1].split(" ")[1].split(",")[0])
    assert at_deepgemm < pred.value < at_te  # tokens/s: the point between both ends, neither of them
    assert low <= at_deepgemm * (1 + 1e-4) and high >= at_te * (1 - 1e-4)  # the note rounds to 5 digits


def test_a_b200_fp8_row_has_no_fp8_band():
    rows = read_csv(None, "training_modern.csv", REQUIRED)
    row = next(r for r in rows if r["gpu"] == "B200" and r["precision"] == "fp8")
    assert "DeepGEMM" not in predict_row(row, "datasheet").note


def test_cli_train_states_the_fp8_rates_by_role_and_both_ends():
    runner = CliRunner()
    args = ["train", "-m", "llama-3-8b", "-a", "H100-SXM5-80GB", "--gpus", "8", "--precision", "fp8",
            "--distributed-optimizer"]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    band = d["fp8_rate"]
    assert band["assumed"]["over_bf16"] == FP8_OVER_BF16_GH100 and band["other"]["label"].startswith(DEEPGEMM_LABEL)
    assert band["by_role"] and [e["rate"]["label"] for e in band["ends"]] == [band["assumed"]["label"],
                                                                            band["other"]["label"]]
    fast_end, slow_end = (e["step_s"] for e in band["ends"])
    assert fast_end < d["step_time_s"] < slow_end == band["step_s_at_other"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "dgrad and wgrad at" in text.output and "all at 1.90x" in text.output
