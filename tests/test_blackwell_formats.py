"""Issue 12: Blackwell's block-scaled training formats (MXFP8, NVFP4) as Transformer Engine runs them, and the
B300 / GB300 catalog entries."""

import json
from functools import cache

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import Precision, TrainPlan, get_accelerator, get_model
from capsim.analytic import fp8
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.primitives import Saved
from capsim.analytic.training import get_framework, step_time
from capsim.calibration import load_calibration
from capsim.calibration.datasheet import datasheet_calibration
from capsim.calibration.published_gemm import MXFP8_OVER_FP8, SAME_DIE, published
from capsim.calibration.schema import calibrations_dir
from capsim.cli import app
from capsim.errors import SpecError
from capsim.specs.hardware import Cluster
from capsim.specs.precision import PRESET_NAMES, DType
from capsim.validation.training_rows import row_precision

MX, NV, FP8 = Precision.preset("mxfp8"), Precision.preset("nvfp4"), Precision.preset("fp8")
BLACKWELL = ("B200", "GB200", "B300", "GB300")


@cache
def _perf(name):
    return load_calibration(name).perf()


def _ops(model, precision, tokens=4096, ep=1):
    s = layer_shape(model, tokens, 1, 1, ep, False, None)
    return fp8.forward(forward_layer_ops(model, s, precision.activations), precision)


# --- the presets ---------------------------------------------------------------------------------------------------

def test_presets_parse_with_block_scaled_formats_and_16_bit_weights():
    assert {"mxfp8", "nvfp4"} <= set(PRESET_NAMES)
    assert MX.compute is DType.MXFP8 and NV.compute is DType.NVFP4
    assert MX.weights is NV.weights is DType.BF16 and MX.fp8_scaling is NV.fp8_scaling is None
    assert MX.optimizer_bytes_per_param == NV.optimizer_bytes_per_param == FP8.optimizer_bytes_per_param
    # one E8M0 byte per 32 values; one E4M3 byte per 16 FP4 values
    assert DType.MXFP8.bytes == 1 + 1 / 32 and DType.NVFP4.bytes == 0.5 + 1 / 16
    assert DType.MXFP8.peak_key == "fp8" and DType.NVFP4.peak_key == "fp4"
    assert Precision.preset("NVFP4") is NV


@pytest.mark.parametrize("name", ["mxfp8", "nvfp4"])
def test_a_validation_row_naming_a_block_scaled_preset_parses(name):
    p = row_precision({"precision": name}, get_framework("megatron-core"))
    assert p.compute is DType(name) and p.weights is DType.BF16
    # Megatron-Bridge's mxfp8/nvfp4 recipes gather the parameters in the format (fp8/fp4_param_gather)
    mb = row_precision({"precision": name}, get_framework("megatron-bridge-26.04.01"))
    assert mb.compute is mb.weights is DType(name)
    assert fp8.weight_cast_bytes(np.array([1e9]), mb)[0] == 0


# --- which GEMMs run in the low format -----------------------------------------------------------------------------

@pytest.mark.parametrize("precision", [MX, NV], ids=["mxfp8", "nvfp4"])
def test_te_weight_gemms_run_in_the_format_and_attention_head_router_stay_bf16(precision):
    ops = _ops(get_model("qwen3-30b-a3b"), precision, ep=8)
    gemms = {o.name: o.dtype for o in ops if o.kind.value == "gemm"}
    for name in ("qkv", "attn_out", "mlp_up", "mlp_down"):
        assert gemms[name] is precision.compute, name
    assert gemms["router"] is DType.BF16
    assert all(o.dtype is DType.BF16 for o in ops if o.kind.value == "attention")
    assert fp8.gemm_format("lm_head", precision) is DType.BF16
    assert fp8.gemm_format("mlp_up", precision) is precision.compute


def test_mxfp8_quantizes_each_input_once_into_two_copies_without_an_amax_pass():
    ops = _ops(get_model("llama-3-8b"), MX)
    quantized = [o for o in ops if fp8.is_fp8(o, MX)]
    casts = [o for o in ops if o.name == fp8.CastKind.INPUT.value]
    assert len(casts) == len(quantized) == 4
    assert not [o for o in ops if o.name == fp8.CastKind.AMAX.value]
    for cast in casts:  # read 2 bytes per value, write a rowwise and a columnwise copy of 1 + 1/32 bytes
        assert cast.bytes_written == pytest.approx(2 * (1 + 1 / 32) * cast.bytes_read / 2)


def test_nvfp4_inputs_take_an_amax_pass_and_separate_rowwise_and_rht_columnwise_quantizes():
    model = get_model("llama-3-8b")
    ops = _ops(model, NV)
    by = {k: [o for o in ops if o.name == k.value] for k in fp8.CastKind}
    assert len(by[fp8.CastKind.AMAX]) == len(by[fp8.CastKind.INPUT]) == len(by[fp8.CastKind.INPUT_COL]) == 4
    for row, col in zip(by[fp8.CastKind.INPUT], by[fp8.CastKind.INPUT_COL], strict=True):
        assert row.bytes_read == col.bytes_read and row.bytes_written == col.bytes_written
        assert row.bytes_written == pytest.approx((0.5 + 1 / 16) * row.bytes_read / 2)
    grads = fp8.backward_casts(forward_layer_ops(model, layer_shape(model, 4096, 1, 1, 1, False, None),
                                                 DType.BF16), NV)
    assert sorted({o.name for o in grads}) == ["fp8_amax", "fp8_cast.grad", "fp8_cast.grad_col"]
    # 16-bit bytes read per value quantized: FP8 delayed 1, MXFP8 1, NVFP4 3 (amax, rowwise, RHT columnwise)
    reads = {p.compute: sum(o.bytes_read for o in _ops(model, p) if o.kind.value == "elementwise"
                            and o.name.startswith("fp8_")) for p in (FP8, MX, NV)}
    assert reads[DType.NVFP4] == pytest.approx(3 * reads[DType.FP8]) and reads[DType.MXFP8] == reads[DType.FP8]


def test_saved_gemm_inputs_are_one_copy_in_the_format():
    model = get_model("llama-3-8b")
    bf16 = {o.name: o.saved for o in _ops(model, Precision.preset("bf16")) if o.kind.value == "gemm"}
    for p in (MX, NV):
        for o in _ops(model, p):
            if fp8.is_fp8(o, p):
                quantized = o.saved[:len(bf16[o.name])]
                for (kind, size), (kind0, size0) in zip(quantized, bf16[o.name], strict=True):
                    assert kind == kind0 and size == pytest.approx(size0 * p.compute.bytes / 2)
                # the attention output projection's input is also the attention core's own 16-bit output, kept by
                # the core for its backward (CORE: dropped when selective recompute checkpoints the core)
                kept = o.saved[len(bf16[o.name]):]
                assert kept == (tuple((Saved.CORE, s) for _k, s in bf16[o.name]) if o.name == "attn_out" else ())


def test_weights_are_quantized_once_per_step_nvfp4_after_an_amax_pass():
    params = np.array([1e9])
    assert fp8.weight_cast_bytes(params, MX)[0] == pytest.approx(1e9 * (2 + 2 * (1 + 1 / 32)))
    assert fp8.weight_cast_bytes(params, NV)[0] == pytest.approx(1e9 * (2 * 2 + 2 * (0.5 + 1 / 16)))
    assert fp8.weight_cast_bytes(params, NV.with_(weights=DType.NVFP4))[0] == 0


# --- the GEMM rate and the step ------------------------------------------------------------------------------------

def _median_ratio(name, fmt, points):
    perf = _perf(name)
    launch_s = perf.params.gemm.launch_s  # priced on top of the math, as for every GEMM; the points exclude it
    return float(np.median([2 * m * n * k / (perf.gemm_s(m, n, k, fmt) - launch_s) / (tflops * 1e12)
                            for m, n, k, tflops in points]))


@pytest.mark.parametrize(("name", "fmt"), [("B200", "nvfp4"), ("B300", "mxfp8"), ("B300", "nvfp4"), ("B300", "fp8")])
def test_gemm_rate_goes_through_the_median_published_point(name, fmt):
    assert _median_ratio(name, fmt, published(name, fmt).points) == pytest.approx(1.0, rel=0.02)


def test_b200_mxfp8_is_its_fp8_rate_times_te_cublas_ratio_not_a_cutlass_kernel():
    """TE runs MXFP8 through cuBLAS, which on B300 runs it slower than per-tensor FP8 (TE gemm_profiling table);
    B200 has no cuBLAS MXFP8 points, so MXFP8 is its FP8 rate times that ratio: below FP8, not 1.2x above it."""
    perf = _perf("B200")
    m, n, k = 8192, 28672, 8192
    fp8_s, mx_s = perf.gemm_s(m, n, k, "fp8"), perf.gemm_s(m, n, k, "mxfp8")
    assert published("B200", "mxfp8") is None
    assert fp8_s / mx_s == pytest.approx(MXFP8_OVER_FP8, rel=1e-3) and 0.9 < MXFP8_OVER_FP8 < 1.0


@pytest.mark.parametrize(("part", "die"), sorted(SAME_DIE.items()))
def test_a_grace_part_takes_its_dies_fractions_of_peak(part, die):
    own, ref = _perf(part).params, _perf(die).params
    assert own.gemm.efficiency == ref.gemm.efficiency and own.gemm.dtype_scale == ref.gemm.dtype_scale
    assert own.peak_flops_per_s["fp8"] >= ref.peak_flops_per_s["fp8"]  # the higher power limit's peaks stay its own


def test_nvfp4_step_beats_fp8_on_b200_but_not_by_the_peak_ratio():
    model, acc = get_model("llama-3-8b"), get_accelerator("B200")
    plan = dict(dp=8, global_batch=64, seq_len=8192, distributed_optimizer=True)
    core = get_framework("megatron-core")
    t = {p: step_time(model, TrainPlan(**plan, precision=p), Cluster(acc, 8), _perf("B200"), framework=core).step_s
         for p in ("bf16", "fp8", "mxfp8", "nvfp4")}
    peak_ratio = acc.peaks.fp4 / acc.peaks.fp8
    assert t["bf16"] > t["fp8"] > t["nvfp4"] and t["mxfp8"] > t["nvfp4"]
    assert 1.1 < t["fp8"] / t["nvfp4"] < peak_ratio


@pytest.mark.parametrize("name", ["mxfp8", "nvfp4"])
def test_block_scaled_formats_on_hopper_are_a_clear_error(name):
    model, h100 = get_model("llama-3-8b"), get_accelerator("H100-SXM5-80GB")
    plan = TrainPlan(dp=8, global_batch=64, seq_len=4096, precision=name)
    with pytest.raises(SpecError, match="Blackwell") as err:
        step_time(model, plan, Cluster(h100, 8), _perf("H100-SXM5-80GB"))
    assert err.value.field == "precision.compute" and "fp4 peak" in err.value.problem
    with pytest.raises(SpecError, match="Blackwell"):
        h100.peak_flops_per_s(name)
    assert get_accelerator("B200").peak_flops_per_s(name) > 0


def test_the_cli_refuses_nvfp4_on_h100_in_one_line_as_infeasible():
    # a valid plan the accelerator cannot run: infeasible with its reason, exit 1 (was an input error, exit 2)
    out = CliRunner().invoke(app, ["train", "-m", "llama-3-8b", "-a", "H100-SXM5-80GB", "-n", "8",
                                   "--precision", "nvfp4", "--seq-len", "4096"])
    assert out.exit_code == 1 and "precision.compute" in out.output and "Blackwell" in out.output


# --- catalog and calibrations --------------------------------------------------------------------------------------

def test_blackwell_entries_have_fp4_peaks_and_others_none():
    for name in BLACKWELL:
        p = get_accelerator(name).peaks
        assert p.fp4 >= 2 * p.fp8 > 0, name  # dense FP4 at least twice dense FP8 on every Blackwell datasheet
    assert get_accelerator("H100-SXM5-80GB").peaks.fp4 is None
    assert get_accelerator("GB300").gpus_per_node == 72 and get_accelerator("B300").gpus_per_node == 8


@pytest.mark.parametrize("name", BLACKWELL)
def test_blackwell_calibrations_exist_are_regenerated_and_price_the_block_scaled_formats(name):
    on_disk = json.loads((calibrations_dir() / "datasheet" / f"{name}.json").read_text())
    fresh = json.loads(json.dumps(datasheet_calibration(get_accelerator(name)).to_dict()))
    on_disk.pop("created"), fresh.pop("created")
    assert fresh == on_disk, f"regenerate {name}: capsim.calibration.datasheet.write_datasheet_calibrations()"
    scale = on_disk["fitted"]["gemm"]["dtype_scale"]
    assert 0.5 < scale["mxfp8"] < 1.2 and 0.5 < scale["nvfp4"] < 1.2
    assert on_disk["fitted"]["peak_flops_per_s"]["fp4"] > 0 and "NVFP4 GEMMs" in on_disk["provenance"]


def test_hopper_calibration_has_no_block_scaled_rates():
    scale = json.loads((calibrations_dir() / "datasheet" / "H100-SXM5-80GB.json").read_text())
    assert "mxfp8" not in scale["fitted"]["gemm"]["dtype_scale"] and "fp4" not in scale["fitted"]["peak_flops_per_s"]
