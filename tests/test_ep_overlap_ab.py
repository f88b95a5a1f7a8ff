"""Megatron-Core's EP A2A overlap (--overlap-moe-expert-parallel-comm) against NVIDIA's own published A/B runs of it:
the same run with and without the flag, none of them a row of the shipped validation files (issue 12).

Both A/Bs price the run without the overlap within the validation files' 15% row bound, and both show capsim crediting
the overlap with far more than NVIDIA measured, which is what the overlap rows of training_bridge.csv and
training_bridge_blackwell.csv miss by (+108% to +206%):
- Megatron-Bridge skills/nemo-mbridge-perf-moe-comm-overlap/card.yaml ``measured_result`` (NVIDIA-NeMo/Megatron-Bridge
  @067f987d, a 2026-07-25 run, PR #5094): Qwen3-30B-A3B on 16 H100, BF16, seq 4096, TP 1 PP 1 EP 16, micro-batch 1,
  global batch 1024, forced balance, HybridEP: 24.7138 s without, 20.9920 s with the overlap (-15.1%); its profile:
  36.55% of the communication time hidden by compute with the overlap;
- Megatron-Bridge PR #1760 (merged as a6e92de5, 2026-01-09; description 2025-12-17): Qwen3-235B-A22B on 64 B200,
  PP 8, EP 8, global batch 1024: BF16 at VP 4 17.2 s with the overlap, 16.0 s without; MXFP8 20.1 s with the overlap
  at VP 4, 16.9 s with neither ("Disable moe_a2a_overlap due to CPU overhead for BF16 and MXFP8. Disable VP for
  mxfp8"; the diff: scripts/performance/configs/qwen/qwen3_workload_base_configs.py B200 BF16 and FP8_CS configs).
"""

from functools import cache

import pytest

from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, predict_row

ROW_BOUND_PCT = 15.0  # the validation files' per-row bound (test_training_bridge.py)
_OVERLAP = " --overlap-moe-expert-parallel-comm"


def _row(file: str, **cells: str) -> dict[str, str]:
    """A row of ``file`` matching ``cells`` on software, model and gpu, as the template of a published A/B run."""
    keys = ("software", "model", "gpu")
    found = [r for r in read_csv(None, file, REQUIRED) if all(r[k] == cells[k] for k in keys)]
    return {**found[0], **cells, "source": cells["software"]}


def _flags(row: dict[str, str], overlap: bool) -> str:
    base = row["flags"].replace(_OVERLAP, "")
    return base + _OVERLAP if overlap else base


# Qwen3-30B-A3B on 16 H100 (the skill's run on "current main" in 2026-07: the newest preset, 26.06 = v0.5.0), the
# layout of the 26.06 row in training_bridge.csv (TP 1 PP 1 EP 16, flex + HybridEP), in BF16.
_EP16 = dict(software="megatron-bridge-26.06", model="qwen3-30b-a3b", gpu="H100-SXM5-80GB", precision="bf16",
             gpus="16", tp="1", pp="1", pp_interleave="", ep="16", dp="16", global_batch="1024", micro_batch="1",
             seq="4096")
# Qwen3-235B-A22B on 64 B200 (PR #1760 ran between 25.11 and 26.02; v0.3.0 = 26.02 ships its configs), PP 8 EP 8,
# global batch 1024, the alltoall dispatcher of the 25.11 B200 row in training_bridge_blackwell.csv.
_B200 = dict(software="megatron-bridge-26.02", model="qwen3-235b-a22b", gpu="B200", gpus="64", tp="1", pp="8", ep="8",
             dp="8", global_batch="1024", micro_batch="1", seq="4096")


@cache
def _ep16_step_s(overlap: bool) -> float:
    row = _row("training_bridge.csv", **{k: v for k, v in _EP16.items() if k in ("software", "model", "gpu")})
    row.update(_EP16)
    row["flags"] = _flags(row, overlap)
    return predict_row(row, "profile").step_s


@cache
def _b200_step_s(precision: str, vp: str, overlap: bool) -> float:
    template = dict(software="megatron-bridge-25.11", model="qwen3-235b-a22b", gpu="B200")
    row = _row("training_bridge_blackwell.csv", **template)
    row.update(_B200, source=_B200["software"], precision=precision, pp_interleave=vp)
    row["flags"] = _flags(row, overlap)
    return predict_row(row, "datasheet").step_s


def _err_pct(predicted_s: float, measured_s: float) -> float:
    """Signed error of the throughput (positive: predicted faster), as the validation files report it."""
    return 100.0 * (measured_s / predicted_s - 1.0)


def test_the_ep16_h100_run_without_the_overlap_is_priced():
    assert abs(_err_pct(_ep16_step_s(False), 24.7138)) <= ROW_BOUND_PCT  # 24.70 s priced


@pytest.mark.xfail(strict=True, reason=(
    "+35.3%: capsim hides 9.2 s of the 24.7 s step behind the paired compute (15.51 s priced against the published "
    "20.99 s); NVIDIA's profile of the run has 36.55% of the communication hidden, and the step falls by 3.7 s "
    "(GPU-active union 22.82 -> 21.22 s). A two-stream replay of TransformerLayerSchedulePlan.run's issue order "
    "(Megatron-LM@0d8e0714 L176-239) at capsim's per-op GPU and host times (benchmarks/ep_overlap_replay.py, the "
    "26.04 EP 16 row's layout: 4.5 ms per layer pair against 7.8 ms without the overlap) hides as much as "
    "comms._paired_exposed_s: the miss is in what a paired phase costs, not in the order of the phases"))
def test_the_ep16_h100_run_with_the_overlap_is_priced():
    assert abs(_err_pct(_ep16_step_s(True), 20.9920)) <= ROW_BOUND_PCT


def test_pr1760_bf16_run_without_the_overlap_is_priced():
    assert abs(_err_pct(_b200_step_s("bf16", "4", False), 16.0)) <= ROW_BOUND_PCT  # 13.95 s priced


@pytest.mark.xfail(strict=True, reason=(
    "PR #1760: with the overlap the BF16 step is 7.5% longer (17.2 s against 16.0 s); capsim prices it 25% shorter "
    "(10.43 s against 13.95 s: the all-to-alls at EP 8 over NVLink hidden and the dispatcher's per-layer host wait "
    "covered by the other micro-batch's expert backward). The PR names the overlap's CPU overhead; no published "
    "figure of the combined schedule's own host work (its per-node stream switches, events, detaches and one "
    "autograd call per node backward) was found to price it"))
def test_pr1760_the_overlap_does_not_shorten_the_bf16_step():
    assert _b200_step_s("bf16", "4", True) >= _b200_step_s("bf16", "4", False)


@pytest.mark.xfail(strict=True, reason=(
    "+18.0%: MXFP8 with neither the overlap nor VP, 14.33 s priced against the PR's 16.9 s (the non-interleaved "
    "pipeline's blocking sends included); B200 has no profile calibration (datasheet GEMM fit) and the 16 local "
    "experts' host issue at micro-batch 1 binds (as the training_bridge_blackwell.csv B200 alltoall rows)"))
def test_pr1760_mxfp8_run_without_the_overlap_is_priced():
    assert abs(_err_pct(_b200_step_s("mxfp8", "", False), 16.9)) <= ROW_BOUND_PCT


@pytest.mark.xfail(strict=True, reason=(
    "+111.3%: MXFP8 at VP 4 with the overlap, 9.51 s priced against the PR's 20.1 s (the table's 25.11 B200 row, "
    "3269 tokens/s/GPU, is this step: 1024 x 4096 / 64 / 3269 = 20.0 s)"))
def test_pr1760_mxfp8_run_with_the_overlap_is_priced():
    assert abs(_err_pct(_b200_step_s("mxfp8", "4", True), 20.1)) <= ROW_BOUND_PCT
