"""torchtitan as its code runs: the selective activation-checkpointing policies (op and every-N-block) priced in
the recompute path, torchao's FP8 facts on the releases, and torchtitan's published runs in validation."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from capsim.analytic import recompute
from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import training_memory
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import get_framework, get_release
from capsim.analytic.training.release import SacPolicy, SelectiveAc
from capsim.analytic.training.step import step_time
from capsim.calibration import perf_for
from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.hardware import Cluster
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import Fp8Scaling, Precision
from capsim.validation.harness import read_csv
from capsim.validation.training import predict_row

LLAMA8 = get_model("llama-3-8b")
FP8 = Precision.preset("fp8").with_(fp8_scaling="current")
H200 = get_accelerator("H200-SXM-141GB")
TITAN = "--training.compile --activation_checkpoint.mode=selective --activation_checkpoint.selective_ac_option=op"


def _times(sac: SelectiveAc):
    lay = Layouts.build(LLAMA8, dp=64, global_batch=128, seq_len=8192, micro_batch=2, recompute=1, zero_stage=3)
    return micro_batch_times(LLAMA8, lay, FP8, perf_for(H200), sac=sac)


def test_op_policy_recomputes_every_second_projection() -> None:
    # torchtitan's Llama block: wq, wk, wv, wo, w1, w3, w2; the 2nd, 4th and 6th (wk, wo, w3) run again.
    shape = layer_shape(LLAMA8, 16384, 2, 1, 1, False, 1)
    shares = recompute.alternate_mm_shares(LLAMA8, forward_layer_ops(LLAMA8, shape, FP8.activations))
    kv = LLAMA8.kv_heads / (LLAMA8.heads + 2 * LLAMA8.kv_heads)
    assert shares == pytest.approx({"qkv": kv, "attn_out": 1.0, "mlp_up": 0.5, "mlp_down": 0.0})


def test_op_policy_costs_more_than_megatron_selective_and_less_than_full() -> None:
    core, ops = _times(SelectiveAc()), _times(SelectiveAc(SacPolicy.OPS))
    # With flash attention Megatron's selective recompute replays nothing; torchtitan's op policy replays the
    # norms, RoPE, SwiGLU, residuals, FP8 casts and three of seven projections.
    assert np.all(core.layer_selective_s == core.layer_core_s)
    assert np.all(ops.layer_selective_s > 0.1 * ops.layer_fwd_s)
    assert np.all(ops.layer_selective_s < 0.6 * ops.layer_fwd_s)
    assert np.all(ops.layer_fwd_s == core.layer_fwd_s)


@pytest.mark.parametrize(("every", "blocks"), [(1, 32), (2, 16), (3, 10), (5, 6)])
def test_block_policy_replays_every_nth_block(every: int, blocks: int) -> None:
    t = _times(SelectiveAc(SacPolicy.BLOCKS, every))
    assert t.layer_selective_s == pytest.approx(blocks / 32 * t.layer_fwd_s)


def _hw_over_model(framework: str, recompute_mode: str) -> float:
    plan = TrainPlan(dp=64, global_batch=128, seq_len=8192, micro_batch=2, recompute=recompute_mode, zero_stage=3, precision=FP8)
    r = step_time(LLAMA8, plan, Cluster(H200, 64), perf_for(H200), framework=framework)
    return r.hw_flops / r.model_flops


def test_hfu_counts_what_the_selective_policy_replays() -> None:
    # Full recompute adds one forward of the layers (8N + 16 l s q against 6N + 12 l s q, SC21 Eq. 3); torchtitan's
    # op policy adds wk, wo and w3 (share = their FLOPs in a layer's forward matmuls); Megatron's selective
    # recompute under flash attention adds nothing.
    full = _hw_over_model("torchtitan-2026-08", "full") - 1.0
    op = _hw_over_model("torchtitan-2026-08", "selective") - 1.0
    shape = layer_shape(LLAMA8, 16384, 2, 1, 1, False, 1)
    ops = forward_layer_ops(LLAMA8, shape)
    share = recompute.replayed_matmul_share(LLAMA8, ops, get_framework("torchtitan-2026-08").selective_ac)
    assert 0.1 < share < 0.5
    assert op == pytest.approx(share * full, rel=1e-9)
    assert _hw_over_model("megatron-core", "selective") == pytest.approx(1.0)


@pytest.mark.parametrize("every", [1, 2, 5])
def test_hfu_of_the_block_policy_is_its_share_of_full_recompute(every: int) -> None:
    share = recompute.replayed_matmul_share(LLAMA8, forward_layer_ops(LLAMA8, layer_shape(LLAMA8, 8192, 1, 1, 1,
                                                                                          False, 1)),
                                            SelectiveAc(SacPolicy.BLOCKS, every))
    assert share == pytest.approx((32 // every) / 32)


def _activations(sac: SelectiveAc, recompute_code: int = 1) -> float:
    lay = Layouts.build(LLAMA8, dp=64, global_batch=128, seq_len=8192, micro_batch=2, recompute=recompute_code,
                        zero_stage=3)
    return float(training_memory(LLAMA8, lay, FP8, H200, sac=sac).activations_bytes[0])


def test_op_policy_keeps_less_than_megatron_selective_and_more_than_full() -> None:
    none, full = _activations(SelectiveAc(), 0), _activations(SelectiveAc(), 2)
    megatron, ops = _activations(SelectiveAc()), _activations(SelectiveAc(SacPolicy.OPS))
    # flash attention: nothing of s^2 size to drop, only the attention core's 16-bit output that FP8 keeps beside the
    # output projection's FP8 copy (32 layers x 16384 tokens x 4096 values x 2 B)
    assert none - megatron == pytest.approx(32 * 2 * 8192 * LLAMA8.heads * LLAMA8.head_dim * 2)
    assert full < ops < 0.7 * none
    # every block checkpointed = full recomputation's memory; every second block: halfway
    assert _activations(SelectiveAc(SacPolicy.BLOCKS, 1)) == pytest.approx(full)
    assert _activations(SelectiveAc(SacPolicy.BLOCKS, 2)) == pytest.approx((full + none) / 2)


def test_torchtitan_releases_state_torchao_fp8_and_their_ac_policy() -> None:
    for name in ("torchtitan-2024-04", "torchtitan-2024-12", "torchtitan-2025-06", "torchtitan-2026-08"):
        rel = get_release(name)
        assert rel.framework.fp8_scaling is Fp8Scaling.CURRENT, name  # torchao dynamic scaling, not TE's delayed
        assert "torchao" in rel.cite["fp8_scaling"] and "Transformer Engine" not in rel.cite["fp8_scaling"]
    assert get_release("torchtitan-2025-06").framework.selective_ac == SelectiveAc(SacPolicy.BLOCKS, 2)
    fw, layout = get_release("torchtitan-2025-06").configure(TITAN + " --float8.enable_fsdp_float8_all_gather")
    assert fw.selective_ac.policy is SacPolicy.OPS and fw.torch_compile and fw.fp8_params
    assert layout["recompute"] == "selective"
    assert get_release("megatron-bridge-26.04.01").framework.selective_ac.policy is SacPolicy.ATTENTION_CORE


def test_unknown_selective_option_is_an_error() -> None:
    with pytest.raises(SpecError, match="selective_ac_option"):
        get_release("torchtitan-2025-06").configure("--activation_checkpoint.selective_ac_option=sometimes")


@pytest.fixture(scope="module")
def titan_rows(priced):
    return [r for r in _titan_suite(priced, "datasheet").rows if r.source.startswith(("trainy", "torchtitan"))]


def _titan_suite(priced, calibration: str):
    """The shipped file that holds torchtitan's and Trainy's rows, priced as the whole suite prices it: rows are
    priced one by one, so these are the rows `training_suite(calibration=...)` gives for them (checked equal, at a
    tenth of the work; the whole suite: tests/test_train_cli.py), each row priced once in the session
    (tests/priced.py)."""
    return priced.suite(str(resources.files("capsim.data").joinpath("validation", "training_torchtitan.csv")),
                        calibration=calibration)


def test_grand_teton_part_is_its_source_and_its_peaks_a_range() -> None:
    teton, nvl, sxm = (get_accelerator(n) for n in ("grand-teton-h100", "H100-NVL-94GB", "H100-SXM5-80GB"))
    assert teton.name == "H100-96GB-HBM2e-500W" and teton.tdp_w == 500.0
    assert teton.memory_bw_bytes_per_s == 2.4e12 and teton.memory_bytes == 96e9 and "mem_gb" in teton.unconfirmed
    assert teton.inter_node_bw_bytes_per_s == 400e9 / 8  # 400 Gb/s per GPU
    assert teton.peaks == nvl.peaks and teton.peaks_high == sxm.peaks  # "between SXM and NVL"
    assert nvl.peaks_high is None and sxm.peaks_high is None


def _teton(rows):
    return [r for r in rows if r.source.startswith("torchtitan-h100")]


def _figure(note: str, after: str) -> float:
    """The first figure of ``note`` after ``after`` (up to the next ',' or ';')."""
    return float(note.split(after)[1].split(";")[0].split(",")[0])


def _at_deepgemm(note: str) -> float:
    """The figure with every FP8 GEMM at DeepGEMM's rate: the note's last end ("; all at 1.47x 9158, ...")."""
    return float(note.split("; all at ")[-1].split("x ", 1)[1].split(";")[0].split(",")[0])


def test_grand_teton_rows_are_priced_with_the_peak_range_as_band(titan_rows) -> None:
    teton = _teton(titan_rows)
    assert len(teton) == 12 and all(r.predicted is not None for r in teton)
    for r in teton:  # priced at the range's lower end (NVL), the band reaching the upper end (SXM)
        high = _figure(r.note, "(peaks_high, bf16 989 TFLOP/s) ")  # no blanks: the upper end's one figure
        assert r.predicted < r.band_high == pytest.approx(high, rel=1e-3)
        assert 1.05 < r.band_high / r.predicted < 989 / 835 + 1e-9  # faster peaks, never beyond their ratio
        if r.case.endswith("fp8") or "FP8 GEMMs" in r.note:  # FP8 not measured on the part: both published ratios
            assert r.band_low == pytest.approx(_at_deepgemm(r.note), rel=1e-4) and r.band_low < r.predicted
        else:
            assert r.band_low == r.predicted


def test_grand_teton_band_spans_the_blanks_at_both_ends_of_the_peak_range(priced) -> None:
    row = next(r for r in read_csv(None, "training_torchtitan.csv", ("source",))
               if r["source"].endswith("table 1") and r["precision"] == "fp8")
    pinned, low = priced.row(row, "datasheet"), predict_row({**row, "micro_batch": "", "recompute": ""}, "datasheet")
    assert low.value == pinned.value and low.settings == {"micro_batch": 2, "recompute": 1}  # the recipe's defaults
    high_point = _figure(pinned.note, "TFLOP/s) ")
    peaks_part = low.note.split("(peaks_high")[1].split("; FP8 GEMMs")[0]
    blanks_high = [float(x) for x in peaks_part.split("over the blanks ")[1].split(" to ")]
    fp8_part = low.note.split("; FP8 GEMMs")[1]
    blanks_deepgemm = [float(x) for x in fp8_part.split("over the blanks ")[-1].split(" to ")]  # the last end's
    # the band's bottom is the slower FP8 ratio's worst blank value, its top the upper peaks' best one
    assert low.band[0] == pytest.approx(min(blanks_deepgemm), rel=1e-4) and low.band[0] < blanks_high[0]
    assert low.band[1] == pytest.approx(blanks_high[1], rel=1e-4)
    assert pinned.band[1] == pytest.approx(high_point, rel=1e-4)
    assert pinned.band[0] == pytest.approx(_at_deepgemm(pinned.note), rel=1e-4)
    assert low.band[0] < pinned.band[0] < pinned.value < pinned.band[1] < low.band[1]


def test_grand_teton_70b_fsdp_tp_row_within_15_pct_across_the_range(titan_rows) -> None:
    row = next(r for r in _teton(titan_rows) if "70b" in r.case and "async" not in r.note)
    assert abs(row.error_pct) <= 15.0 and abs(row.band_high / row.measured - 1) <= 0.15  # -6.5% (SXM end +2.4%; every FP8 GEMM at TE's 1.90x -1.3%, at DeepGEMM's -11.1%)


@pytest.mark.xfail(strict=True, reason="datasheet (no profile of this part ships), priced at the NVL end / SXM end of "
                   "the peak range, SDPA as FlashAttention-2 at its published H100 rates (arXiv 2407.08608v2 Fig. "
                   "5(c)/(d), 6(b); capsim.calibration.published_attention): Table 1 8B on 8 GPUs +15.5/+30.1% "
                   "(eager), +21.4/+40.6% (compile), +11.8/+27.0% (compile+FP8); Table 3 on 128 GPUs +19.2/+34.3%, "
                   "+24.8/+44.6%, +14.5/+30.0%; Table 2 FP8 + full AC + CP at 32k-256k tokens +15.7/+34.4%, "
                   "+3.2/+19.2%, +37.7/+59.4%, +43.6/+66.4% (+5.3/+22.1%, +42.7/+66.1%, +50.1/+75.1% before "
                   "torch's ring, traced into the fullgraph-compiled blocks, waited on each collective at once: "
                   "Framework.cp_in_graph); Table 4 70B -6.5/+2.4%, with async TP +0.5/+9.3% (+22.0/+38.6% with "
                   "torch's async TP priced as TE userbuffers; Inductor's micro-pipeline: comms._torch_async_tp_s) "
                   "(FP8 GEMMs by role: the forward at 1.90x BF16, TE's cuBLASLt ratio on GH100, dgrad/wgrad at "
                   "DeepGEMM's 1.47x; with every FP8 GEMM at 1.90x / 1.47x, the FP8 band's ends, the NVL-end FP8 "
                   "figures are +19.6/+7.1, +22.5/+9.6, +19.3/+12.3, +5.1/+1.4, +39.1/+36.4, +44.4/+42.9, "
                   "-1.4/-11.1 and +31.4/+13.9% (the last measured before the micro-pipeline pricing)). "
                   "The published FA2 backward (and the ring's later steps at the published non-causal rate) made "
                   "every Hopper row faster than the 0.2625-of-peak assumption did (Table 2 was +4.8/-7.0/+23.3/"
                   "+28.0%). The eager rows pay torchtitan's eager RMSNorm, RoPE and SwiGLU kernels "
                   "(capsim.analytic.eager; they were +40.8% and +45.3% at the compiled rows' price). "
                   "Left: every compiled row is still fast (the compiled bf16 rows +21-25%: the eager-compile gap is "
                   "now priced, the compiled step is not); cp 4 and 8 miss where cp 1 and 2 do not, and no step cost "
                   "read from torch's _attention.py grows faster than cp (the measured step grows 8.4 -> 12.9 -> "
                   "30.6 -> 59.8 s, capsim 7.3 -> 12.5 -> 22.2 -> 41.6 s). Every row holds 32k tokens per GPU, so "
                   "each later ring step runs the same work at every cp (a 32k x 16k or 16k x 32k non-causal FA2 "
                   "call forward, again in the recompute and backward, one slice of the K/V all-gather, one fp32 "
                   "dK/dV permute, one fp32 merge; torch's load-balanced loop reads the same in its late-2024 form, "
                   "_RotateMethod.PRE_ALL_GATHER still present, and at pytorch@0123248): the measured step adds "
                   "4.48 s per later step from cp 1 to 2 but 7.39 and 7.34 s from cp 1 to 4 and 8 (capsim 5.22, "
                   "4.98, 4.91 s), a threshold between cp 2 and 4 that no per-step cost of the code makes (titancp2 checked the rotate method, the load balancer and causal "
                   "split, the dK/dV ring, the merge and the SDPA backend); no operator profile of this part exists "
                   "to check the GEMM and attention rates at 500 W")
def test_grand_teton_rows_within_15_pct(titan_rows) -> None:
    assert all(abs(r.error_pct) <= 15.0 for r in _teton(titan_rows))


def _note_value(note: str, before: str, after: str) -> float:
    return float(note.split(before)[1].split(after)[0])


def test_h200_rows_price_torchtitan_recompute(titan_rows) -> None:
    h200 = [r for r in titan_rows if r.source.startswith("trainy")]
    assert len(h200) == 2 and all(r.predicted is not None for r in h200)
    for r in h200:
        assert _note_value(r.note, "recompute ", ",") > 0.05  # absent when selective meant the attention core


def test_h200_memory_matches_the_published_peak(titan_rows) -> None:
    # The page's Memory(GiB): 47.96 (32 GPUs) and 46.97 (64 GPUs); capsim's memory under the op policy.
    published = {32: 47.96 * 2**30, 64: 46.97 * 2**30}
    for r in titan_rows:
        if r.source.startswith("trainy"):
            gpus = 32 if "dp32" in r.case else 64
            assert _note_value(r.note, "; ", " GB/GPU") * 1e9 == pytest.approx(published[gpus], rel=0.1)


def test_a100_rows_are_all_priced(titan_rows) -> None:
    a100 = [r for r in titan_rows if r.source.startswith("torchtitan-a100")]
    assert len(a100) == 8 and all(r.predicted is not None for r in a100)  # Llama 2 70B op-SAC fits (lb 1)


@pytest.mark.xfail(strict=True, reason="64 A100 (profile calibration), FSDP2 bf16 eager, with torchtitan's eager "
                   "RoPE and SwiGLU kernels and, in the 70B recipes (norm_type 'rmsnorm'), its eager RMSNorm "
                   "(capsim.analytic.eager): +4% to +15% for the 8B/13B and full-AC 70B rows (+9% to +18% "
                   "before), +19.6% for Llama 2 70B with op SAC at local batch 1 (+26.6% before); the no-AC Llama 2 "
                   "13B row is +14.7% (no recompute at all). Unpriced: per-op launch/host overhead of eager torch, "
                   "FSDP2's copy-in/copy-out around each all-gather and reduce-scatter, the exposed first gather of "
                   "each pass")
def test_a100_rows_within_15_pct(priced) -> None:
    rows = [r for r in _titan_suite(priced, "profile").rows if r.source.startswith("torchtitan-a100")]
    assert all(abs(r.error_pct) <= 15.0 for r in rows)


@pytest.mark.xfail(strict=True, reason="+14.5% (32 H200) / +16.5% (64 H200): torchao tensorwise FP8 GEMMs "
                   "(torch._scaled_mm on cuBLASLt) by role: the forward (use_fast_accum=True) at 1.90x the BF16 "
                   "rate, TE's cuBLASLt per-tensor FP8/BF16 ratio on GH100 (published_gemm.TE_H200_NVL, 2026 "
                   "cuBLAS), grad_input/grad_weight (use_fast_accum=False) at DeepGEMM's 1.47x over H200's BF16; "
                   "+23.4/+25.5% with every FP8 GEMM at 1.90x, +9.1/+11.0% at 1.47x (the band's ends)")
def test_h200_rows_within_15_pct(titan_rows) -> None:
    assert all(abs(r.error_pct) <= 15.0 for r in titan_rows if r.source.startswith("trainy"))
