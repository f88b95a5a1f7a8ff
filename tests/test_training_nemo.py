"""The runs of NeMo's own published pretraining tables that training_modern.csv does not hold (training_nemo.csv:
NeMo 24.07 on H100, NeMo 25.02 on B200, NeMo 25.04 and 25.07 on GB200), priced under the release each row names, and
the NeMo container presets of releases_nemo.py (24.09, 24.12, 25.04, 25.07). Misses are strict xfails with the
error measured when they were written down; nothing here is fitted to the rows. (The Megatron-Bridge containers'
tables are training_bridge.csv, test_training_bridge.py.)"""

from functools import cache

import numpy as np
import pytest

from capsim.analytic.training.framework import FrameworkName, get_release, release_for
from capsim.analytic.training.release import BEHAVIOUR, LAYOUT_SETTINGS, LossCopy, MoeDispatcher, Release
from capsim.analytic.training.releases_nemo import NEMO1_TAGS, NEMO2_TAGS
from capsim.errors import SpecError
from capsim.validation import run_suite
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED

NEMO = read_csv(None, "training_nemo.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0
KINDS = ("datasheet", "profile")


def _key(r: dict[str, str]) -> str:
    return f"{r['software']}-{r['model']}-{r['gpu']}-{r['gpus']}"


# Rows capsim cannot price at the documented defaults, and why (none: GPT3-20B's published layout, 80.1 GB/GPU by
# capsim's memory model, fits the 79.11 GiB an H100 reports to CUDA, as the run did: test_gpt3_20b_fits_an_h100).
UNPRICED: dict[str, str] = {}
_B200 = ("B200: no profile calibration (the datasheet one prices both); the same overestimate as the NeMo 25.02 "
         "B200 rows of training_modern.csv (see MISSES there)")
# (row key, calibration kind) -> why the row misses 15% today, with its error when written down.
_GB200 = ("GB200: no profile calibration (the datasheet one prices both), compute {}% of the step at the "
          "datasheet FP8 peak; the Megatron-Bridge GB200 FP8 rows of training_bridge_blackwell.csv are +8 to +17% "
          "on the same calibration, the NeMo 25.02 B200 rows of training_modern.csv +23 to +33%")
_GB200_MISSES = {"nemo-25.04-llama-3.1-405b-GB200-128": "+28.3%: " + _GB200.format(95)
                 + " (the same TP4 PP8 CP2 VP8 layout on B200, NeMo 25.02, is +23.8%)",
                 "nemo-25.04-nemotron-4-15b-GB200-64": "+27.1%: " + _GB200.format(100)
                 + " (squared-ReLU MLP priced as capsim's two-matrix relu)",
                 "nemo-25.04-nemotron-4-340b-GB200-128": "+31.4%: " + _GB200.format(90),
                 "nemo-25.04-mixtral-8x7b-GB200-64": "+19.3%: " + _GB200.format(92)
                 + " (EP 8 all-to-all inside the NVLink domain, 0.05 s of 0.71 s)"}
_H100_FP8 = ("NeMo 24.07 GPT3 FP8 on 64 H100s, too fast with FP8 GEMMs by role: the forward at 1.90x the BF16 rate "
             "(TE's cuBLASLt FP8/BF16 ratio on GH100, published_gemm.TE_H200_NVL), dgrad/wgrad at DeepGEMM's 1.39x "
             "datasheet / 1.50x profile (+38.9/+30.0% with every FP8 GEMM at 1.90x, +12.9/+11.6% at DeepGEMM's, the "
             "band's ends, at the flat 0.60/0.45 attention before cuDNN's H100 rates); see training_modern.csv's "
             "NeMo 24.07 rows")
# The GPT3-20B row (+17.7/+15.1% with every FP8 GEMM at 1.90x) is +6.4/+6.6% priced by role: no xfail. With cuDNN's
# H100 attention rates (published_attention_cudnn) GPT3-5B +20.4/+17.1% -> +18.2/+15.0%, GPT3-20B -> +5.5/+5.7%.
MISSES = {
    ("nemo-24.07-gpt3-5b-H100-SXM5-80GB-64", "datasheet"): "+18.2%: " + _H100_FP8,
    ("nemo-24.07-gpt3-5b-H100-SXM5-80GB-64", "profile"): "+15.0%: " + _H100_FP8,
    ("nemo-25.02-llama-3-8b-B200-8", "datasheet"): "+27.9%: " + _B200,
    ("nemo-25.02-llama-3-8b-B200-8", "profile"): "+27.9%: " + _B200,
    **{(key, kind): why for key, why in _GB200_MISSES.items() for kind in KINDS},
}


@cache
def _predictions(priced, kind: str) -> dict[str, object]:
    return {_key(r): pred for r, pred in zip(NEMO, priced.rows(NEMO, kind), strict=True)}  # prediction or SpecError


def _param(r: dict[str, str], kind: str, reasons: dict) -> object:
    reason = reasons.get((_key(r), kind)) or UNPRICED.get(_key(r))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(_key(r), kind, marks=marks, id=f"{kind}-{_key(r)}")


@pytest.mark.parametrize("key, kind", [_param(r, k, {}) for k in KINDS for r in NEMO])
def test_nemo_row_is_priced(key, kind, priced):
    pred = _predictions(priced, kind)[key]
    assert not isinstance(pred, Exception), str(pred)
    assert pred.value > 0 and pred.memory_bytes <= pred.capacity_bytes


@pytest.mark.parametrize("key, kind", [_param(r, k, MISSES) for k in KINDS for r in NEMO])
def test_nemo_row_within_15_pct(key, kind, priced):
    pred = _predictions(priced, kind)[key]
    assert not isinstance(pred, Exception), str(pred)
    measured = float(next(r for r in NEMO if _key(r) == key)["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (key, pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| over the 11 rows 18.2% (datasheet) / 15.0% (profile): "
                                       "GPT3-5B +18.2/+15.0%, GPT3-20B +5.5/+5.7% (H100 FP8 by role), GPT3-175B "
                                       "on B200 +13.9%, Llama3-8B on B200 +27.9%; NeMo 25.04 on GB200: GPT3-175B +13.9%, Llama3-8B +7.2%, "
                                       "Llama3.1-405B +28.3%, Nemotron-4 15B +27.1%, 340B +31.4%, Mixtral-8x7B "
                                       "+19.3%; NeMo 25.07 Llama3-8B +11.8%")
@pytest.mark.parametrize("kind", KINDS)
def test_nemo_median_within_8_pct(kind, priced):
    errors = [abs(p.value / float(r["value"]) - 1.0) * 100 for r in NEMO
              if not isinstance(p := _predictions(priced, kind)[_key(r)], Exception)]
    assert np.median(errors) <= MEDIAN_BOUND_PCT


@pytest.mark.parametrize("kind", KINDS)
def test_gpt3_20b_fits_an_h100_as_the_run_did(kind, priced):
    # tp 2, mbs 2, no recomputation: 20 GB of bf16 weights and Megatron-Core's 40 GB fp32 gradient buffer leave
    # little for the activations; 80.1 GB/GPU is over the datasheet's 80e9 B but inside the 84.9e9 B CUDA reports.
    pred = _predictions(priced, kind)["nemo-24.07-gpt3-20b-H100-SXM5-80GB-64"]
    assert 80e9 < pred.memory_bytes <= pred.capacity_bytes


def test_shipped_suite_runs_the_nemo_file_and_fails_only_with_a_reason(priced):
    assert SHIPPED[-1] == "training_nemo.csv"
    with priced.patched():  # run_suite's own code, the rows priced once in the session (tests/priced.py)
        rows = run_suite("training", None, None).rows[-len(NEMO):]
    assert [f"{r.source}-{r.case.split()[0]}" for r in rows] == [f"{r['source']}-{r['model']}" for r in NEMO]
    failed = [r for r in rows if r.predicted is None]
    assert len(failed) == len(UNPRICED) and all("does not fit in memory" in r.note for r in failed)


def test_every_nemo_row_names_a_release_capsim_knows_and_states_its_settings():
    for r in NEMO:
        rel = get_release(r["software"])
        assert rel.software == r["software"] and rel.family.value == r["framework"]
        rel.configure(r["flags"])  # every flag is one the release prices
        assert int(r["gpus"]) == int(r["tp"]) * int(r["pp"]) * int(r["cp"]) * int(r["dp"])


def test_userbuffers_configs_of_the_new_rows_are_flags():
    fw, _ = get_release("nemo-24.07").configure("--tp-comm-overlap --tp-comm-overlap-cfg="
                                                "ub_cfg_h100_h6144_tp2_mbs2_seqlen2048")
    assert fw.tp_rs.chunks == 4 and fw.tp_rs.proj_sm_share == pytest.approx(16 / 132)
    assert fw.tp_rs.fc2_sm_share == pytest.approx(24 / 132)
    fw, _ = get_release("nemo-25.02").configure("--tp-comm-overlap-cfg=userbuffers_fp8_b200_h12288_tp4_mbs1_seqlen2048")
    assert fw.tp_rs.chunks == 0  # ring exchange


def test_container_names_in_a_covers_range_stand_for_their_patch_releases():
    """covers_release reads "nemo-24.09" as every 24.09.x: a range ending at a container also covers its patch
    containers (26.02.01 after 26.02), so a container whose patch release ships other code cannot end a range."""
    rel = get_release("nemo-24.07")
    ranged = Release(rel.framework, rel.family, "nemo-24.07", rel.date, rel.code, rel.cite, rel.defaults, rel.flags,
                     covers=("nemo-24.07", "nemo-24.09"))
    assert ranged.covers_release("nemo-24.09") and ranged.covers_release("nemo-24.09.01")
    assert ranged.covers_release("nemo-24.07.01") and not ranged.covers_release("nemo-24.12")
    assert not ranged.covers_release("nemo-automodel-2025-10") and not ranged.covers_release("nemo-2.0")
    exact = Release(rel.framework, rel.family, "nemo-24.07", rel.date, rel.code, rel.cite, rel.defaults, rel.flags,
                    covers=("nemo-24.07", "nemo-24.09.0"))
    assert not exact.covers_release("nemo-24.09") and not exact.covers_release("nemo-24.09.01")


# --- the NeMo container presets (releases_nemo.py) -------------------------------------------------------------------

NEW = ("nemo-24.09", "nemo-24.12", "nemo-25.04", "nemo-25.07")


@pytest.mark.parametrize("software", NEW)
def test_each_new_container_resolves_to_its_own_preset(software):
    rel = release_for("megatron-core", software)
    assert rel is get_release(software) and rel.software == software == FrameworkName(software).value
    assert rel.covers is None and set(rel.cite) == set(BEHAVIOUR) and set(rel.defaults) == set(LAYOUT_SETTINGS)
    tag = (NEMO1_TAGS.get(software) or NEMO2_TAGS[software])
    assert tag.core.split()[0] in rel.cite["moe_dispatcher"]  # the container's own Megatron-Core
    assert rel.framework.moe_dispatcher is MoeDispatcher.ALLGATHER


def test_nemo1_containers_keep_nemo_1_defaults_on_their_own_core():
    for software in ("nemo-24.09", "nemo-24.12"):
        fw, layout = get_release(software).configure()
        assert fw.dropout and not fw.overlap_grad_reduce and not fw.fused_grad_accumulation and not fw.overlap_p2p
        assert layout["micro_batch"] == 4 and layout["distributed_optimizer"] is False
        assert "NeMo@" in get_release(software).cite["dropout"]
    # moe_grouped_gemm defaults to False (SequentialMLP, no per-expert FP8 padding); TEGroupedMLP's Fp8Padding arrived
    # in core_v0.10.0, so only 24.12 (core_r0.10.0) offers --moe-grouped-gemm, 24.09 (core 0.9.0rc0) does not
    assert not get_release("nemo-24.12").framework.moe_fp8_padding and not get_release("nemo-24.09").framework.moe_fp8_padding
    assert get_release("nemo-24.12").configure("--moe-grouped-gemm")[0].moe_fp8_padding
    assert "--moe-grouped-gemm" not in get_release("nemo-24.09").flags
    assert not get_release("nemo-24.09").framework.fp8_params  # NeMo 1.0 reads cfg.get('fp8_params', False)
    assert get_release("nemo-24.09").configure("--fp8-params")[0].fp8_params
    # NFL@24.12 added a ring-exchanged H100 config 24.09 does not have
    fw, _ = get_release("nemo-24.12").configure("--tp-comm-overlap-cfg=ub_cfg_h100_h8192_tp2_mbs1_seqlen4096")
    assert fw.tp_rs.chunks == 0
    with pytest.raises(SpecError, match="unknown value"):
        get_release("nemo-24.09").configure("--tp-comm-overlap-cfg=ub_cfg_h100_h8192_tp2_mbs1_seqlen4096")


def test_nemo2_containers_differ_where_their_core_does():
    old, new = get_release("nemo-25.04").framework, get_release("nemo-25.07").framework
    # core 0.12 merges the router probabilities in the combine; core 0.13 scales the activation instead
    assert old.moe_combine_saves and not new.moe_combine_saves
    assert not old.moe_random_routing and new.moe_random_routing  # forced balancing's RandomSTE: core 0.13
    for fw in (old, new):
        assert fw.overlap_grad_reduce and fw.overlap_param_gather and fw.overlap_p2p and not fw.dropout
        assert fw.fp8_scaling.value == "delayed" and not fw.fp8_params and fw.loss_copy is LossCopy.FP32


def test_the_perf_scripts_settings_are_flags_of_the_run():
    fw, _ = get_release("nemo-25.04").configure("--fp8-recipe=tensorwise --fp8-param-gather --grad-reduce-in-bf16 "
                                                "--cross-entropy-fusion-impl=te")
    assert fw.fp8_scaling.value == "current" and fw.fp8_params and not fw.grads_fp32 and fw.loss_copy is LossCopy.NONE
    fw, _ = get_release("nemo-25.07").configure("--tp-comm-overlap --tp-comm-overlap-cfg=userbuffers_bf16_h100_h8192_"
                                                "tp4_mbs1_seqlen8192")
    assert fw.overlap_tp_comm and fw.tp_rs.chunks == 4 and fw.tp_rs.proj_sm_share == pytest.approx(24 / 132)
    # a config whose proj_fprop pipelines while fc2_fprop ring-exchanges is not one capsim can price: an error
    with pytest.raises(SpecError, match="unknown value"):
        get_release("nemo-25.04").configure("--tp-comm-overlap-cfg=userbuffers_bf16_h100_h12288_tp4_mbs1_seqlen2048")


def test_plain_megatron_core_0_14_runs_with_megatron_lms_own_defaults():
    rel = release_for("megatron-core", "megatron-core-0.14.0")
    assert rel.name == FrameworkName.MEGATRON_CORE_0_14.value
    assert rel.covers == ("megatron-core-0.14.0", "megatron-core-0.16.1")  # the same facts read at 0.15-0.16
    assert set(rel.cite) == set(BEHAVIOUR) and all("ML@core_v0.14.0" in rel.cite[k] for k in
                                                   ("dropout", "overlap_grad_reduce", "fp8_scaling", "moe_dispatcher"))
    fw, layout = rel.configure()
    assert fw.dropout and not fw.overlap_grad_reduce and not fw.overlap_param_gather and not fw.overlap_tp_comm
    assert fw.overlap_p2p and fw.fused_grad_accumulation and fw.uneven_pipeline and not fw.moe_combine_saves
    assert layout["distributed_optimizer"] is False and layout["micro_batch"] == 1
    fw, layout = rel.configure("--use-distributed-optimizer --overlap-grad-reduce --overlap-param-gather "
                               "--overlap-moe-expert-parallel-comm --fp8-recipe=tensorwise")
    assert fw.overlap_grad_reduce and fw.overlap_param_gather and fw.overlap_moe_a2a and layout["distributed_optimizer"]
    with pytest.raises(SpecError, match="unknown megatron-core release"):
        release_for("megatron-core", "megatron-core-0.17.0")  # no preset read at that release: an error, no default
