"""The NeMo containers' published pretraining runs not in training_modern.csv (training_nemo.csv), priced under the
release each row names, and the presets of the Megatron-Bridge 25.11 and 26.02 containers (releases_nemo.py).
Misses are strict xfails with the error measured when they were written down; nothing here is fitted to the rows."""

from functools import cache

import numpy as np
import pytest

from capsim.analytic.training.framework import RELEASES, FrameworkName, get_release, release_for
from capsim.analytic.training.release import Release
from capsim.errors import SpecError
from capsim.validation import run_suite
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, SHIPPED, predict_row

NEMO = read_csv(None, "training_nemo.csv", REQUIRED)
ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 15.0, 8.0
KINDS = ("datasheet", "profile")


def _key(r: dict[str, str]) -> str:
    return f"{r['software']}-{r['model']}-{r['gpu']}-{r['gpus']}"


# Rows capsim cannot price at the documented defaults: the one-line reason it gives, and why.
_OOM = ("capsim's memory model says the published layout does not fit in 80 GB at any recompute setting; the run "
        "did. {}")
UNPRICED = {
    "nemo-24.07-gpt3-20b-H100-SXM5-80GB-64": _OOM.format(
        "20B parameters at tp 2: bf16 weights (20 GB) and the fp32 gradient buffer (40 GB) of Megatron-Core's "
        "distributed optimizer leave too little for the activations of mbs 2; NeMo 1.0's optim is Apex's "
        "distributed_fused_adam (NFL 24.07 gpt3/20b.yaml L171), whose gradient buckets capsim does not model"),
    "megatron-bridge-25.11-qwen3-30b-a3b-H100-SXM5-80GB-16": _OOM.format(
        "mbs 2 with pp 2 x vp 24 (one layer per model chunk) and no recomputation: 1F1B keeps pp micro-batches of "
        "activations in flight on the first stage; capsim's MoE activation memory (router, permuted tokens, "
        "expert inputs) at mbs 2 is over the device"),
}
_B200 = ("B200: no profile calibration (the datasheet one prices both); the same overestimate as the NeMo 25.02 "
         "B200 rows of training_modern.csv (see MISSES there)")
_QWEN_H100 = ("Qwen3-235B-A22B FP8, EP32 over four nodes: capsim's step (25.11, datasheet) is 17.2 s, compute 9.5, "
              "exposed EP all-to-all 6.9, TP 0.6, against 20.8 s measured. Not resolved; candidates: the expert "
              "grouped GEMMs (k = 1536) priced at the dense FP8 curve, and the MoE overlap "
              "(--overlap-moe-expert-parallel-comm with delay_wgrad_compute) as capsim prices it")
# (row key, calibration kind) -> why the row misses 15% today, with its error when written down.
MISSES = {
    ("nemo-25.02-llama-3-8b-B200-8", "datasheet"): "+27.5%: " + _B200,
    ("nemo-25.02-llama-3-8b-B200-8", "profile"): "+27.5%: " + _B200,
    ("megatron-bridge-25.11-llama-3.1-405b-B200-128", "datasheet"): "+16.5%: " + _B200,
    ("megatron-bridge-25.11-llama-3.1-405b-B200-128", "profile"): "+16.5%: " + _B200,
    ("megatron-bridge-25.11-llama-3.1-405b-H100-SXM5-80GB-1024", "profile"): (
        "+16.8% (datasheet +14.8%): 126 layers over 64 virtual stages at gbs 512 (64 micro-batches per replica); "
        "the profile calibration's FP8 GEMM rates are a little above the datasheet's"),
    ("megatron-bridge-25.11-qwen3-235b-a22b-H100-SXM5-80GB-256", "datasheet"): "+21.1%: " + _QWEN_H100,
    ("megatron-bridge-25.11-qwen3-235b-a22b-H100-SXM5-80GB-256", "profile"): "+19.2%: " + _QWEN_H100,
    ("megatron-bridge-26.02-qwen3-235b-a22b-H100-SXM5-80GB-256", "datasheet"): "+18.0%: " + _QWEN_H100,
    ("megatron-bridge-26.02-qwen3-235b-a22b-H100-SXM5-80GB-256", "profile"): "+16.2%: " + _QWEN_H100,
    ("megatron-bridge-26.02-qwen3-30b-a3b-H100-SXM5-80GB-16", "datasheet"): (
        "+231%: capsim prices 16.9k tokens/s/GPU, the page 5113. Not a small-k GEMM question alone: the 26.02.01 "
        "container's row of the same page, same layout (pp 2, vp 12, EP8 in a node, DeepEP, gbs 1024), reads 9058, "
        "and 26.04.01's (EP16, no pp) 8960. capsim prices the in-node DeepEP all-to-all as hidden by the MoE overlap "
        "(ep_comm 0) and the expert GEMMs at the dense FP8 curve"),
    ("megatron-bridge-26.02-qwen3-30b-a3b-H100-SXM5-80GB-16", "profile"): "+232%: as with the datasheet calibration",
    ("megatron-bridge-26.02.01-qwen3-30b-a3b-H100-SXM5-80GB-16", "datasheet"): (
        "+56.1%: the 26.02 row's layout (pp 2, vp 12, EP8 in a node), here with the recipe's HybridEP and no MoE "
        "overlap (so capsim's step has the dispatch exposed); the recipe at v0.3.1 states EP16 and no pipeline for "
        "this run, the page pp 2, vp 12, EP8: capsim prices the page's layout"),
    ("megatron-bridge-26.02.01-qwen3-30b-a3b-H100-SXM5-80GB-16", "profile"): "+56.2%: as with the datasheet one",
    ("megatron-bridge-26.02.01-qwen3-235b-a22b-H100-SXM5-80GB-256", "datasheet"): "+19.7%: " + _QWEN_H100,
    ("megatron-bridge-26.02.01-qwen3-235b-a22b-H100-SXM5-80GB-256", "profile"): "+17.8%: " + _QWEN_H100,
    ("megatron-bridge-26.04-qwen3-30b-a3b-H100-SXM5-80GB-16", "datasheet"): (
        "+23.9%: the layout of training_modern.csv's 26.04.01 row (EP16 over two nodes, DeepEP/HybridEP), which "
        "misses alike (+23.0%): expert grouped GEMMs (k = 768 and 2048) priced at the dense FP8 curve, the flex "
        "dispatcher at NCCL bandwidths"),
    ("megatron-bridge-26.04-qwen3-30b-a3b-H100-SXM5-80GB-16", "profile"): "+24.5%: as with the datasheet calibration",
}


@cache
def _predictions(kind: str) -> dict[str, object]:
    out = {}
    for r in NEMO:
        try:
            out[_key(r)] = predict_row(r, kind)
        except SpecError as err:
            out[_key(r)] = err
    return out


def _param(r: dict[str, str], kind: str, reasons: dict) -> object:
    reason = reasons.get((_key(r), kind)) or UNPRICED.get(_key(r))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(_key(r), kind, marks=marks, id=f"{kind}-{_key(r)}")


@pytest.mark.parametrize("key, kind", [_param(r, k, {}) for k in KINDS for r in NEMO])
def test_nemo_row_is_priced(key, kind):
    pred = _predictions(kind)[key]
    assert not isinstance(pred, Exception), str(pred)
    assert pred.value > 0 and pred.memory_bytes <= pred.capacity_bytes


@pytest.mark.parametrize("key, kind", [_param(r, k, MISSES) for k in KINDS for r in NEMO])
def test_nemo_row_within_15_pct(key, kind):
    pred = _predictions(kind)[key]
    assert not isinstance(pred, Exception), str(pred)
    measured = float(next(r for r in NEMO if _key(r) == key)["value"])
    assert abs(pred.value / measured - 1.0) * 100 <= ROW_BOUND_PCT, (key, pred.value, pred.note)


@pytest.mark.xfail(strict=True, reason="median |error| over the 18 priced rows 14.6% (datasheet) / 15.0% (profile): "
                                       "the B200 rows, Qwen3 MoE on H100, the 405B rows; the four Llama3-70B H100 "
                                       "rows are within 1.1%")
@pytest.mark.parametrize("kind", KINDS)
def test_nemo_median_within_8_pct(kind):
    errors = [abs(p.value / float(r["value"]) - 1.0) * 100 for r in NEMO
              if not isinstance(p := _predictions(kind)[_key(r)], Exception)]
    assert np.median(errors) <= MEDIAN_BOUND_PCT


def test_shipped_suite_runs_the_nemo_file_and_fails_only_with_a_reason():
    assert "training_nemo.csv" in SHIPPED
    rows = [r for r in run_suite("training", None, None).rows if r.source.startswith(("nemo-", "megatron-bridge-"))]
    keys = {f"{r.source}-{r.case.split()[0]}" for r in rows}
    assert {f"{r['source']}-{r['model']}" for r in NEMO} <= keys
    failed = [r for r in rows if r.predicted is None]
    assert len(failed) == len(UNPRICED) and all("does not fit in memory" in r.note for r in failed)


def test_every_nemo_row_names_a_release_capsim_knows_and_states_its_settings():
    for r in NEMO:
        rel = release_for(r["framework"], r["software"])
        assert rel.software == r["software"]
        rel.configure(r["flags"])  # every flag is one the release prices
        assert int(r["gpus"]) == int(r["tp"]) * int(r["pp"]) * int(r["cp"]) * int(r["dp"])


# --- the presets ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, tag, fp8_lines", [(FrameworkName.MEGATRON_BRIDGE_26_04, "v0.4.0", "L277-295"),
                                                    (FrameworkName.MEGATRON_BRIDGE_26_02_01, "v0.3.1", "L272-289")])
def test_bridge_26_04_and_26_02_01_are_26_04_01_read_at_their_tags(name, tag, fp8_lines):
    rel, ref = get_release(name), get_release(FrameworkName.MEGATRON_BRIDGE_26_04_01)
    assert rel.framework.with_(name=ref.name) == ref.framework and rel.software == name.value
    assert {k: s.value for k, s in rel.defaults.items()} == {k: s.value for k, s in ref.defaults.items()}
    assert rel.flags.keys() == ref.flags.keys()
    texts = [*rel.cite.values(), *(s.source for s in rel.defaults.values()), *(f.source for f in rel.flags.values())]
    assert not [t for t in texts if "v0.4.2" in t or "2edffadb" in t]  # every citation read again at the tag
    assert f"MB@{tag}" in rel.cite["overlap_p2p"] and fp8_lines in rel.cite["fp8_scaling"]


def test_bridge_25_11_and_26_02_are_26_04_01_but_for_the_micro_batch_default():
    """The Megatron-Bridge containers run the same comm-overlap, FP8 and optimizer defaults (read at v0.2.0,
    v0.3.0 and v0.4.2); 25.11 and 26.02's Llama recipes default to micro-batch 1, 26.04.01's common base to 2."""
    new = [get_release(FrameworkName.MEGATRON_BRIDGE_25_11), get_release(FrameworkName.MEGATRON_BRIDGE_26_02)]
    ref = get_release(FrameworkName.MEGATRON_BRIDGE_26_04_01)
    for rel in new:
        assert rel.framework.with_(name=ref.name) == ref.framework
        assert rel.defaults["micro_batch"].value == 1 and ref.defaults["micro_batch"].value == 2
        assert {k: s.value for k, s in rel.defaults.items() if k != "micro_batch"} == \
            {k: s.value for k, s in ref.defaults.items() if k != "micro_batch"}
        assert "MB@" + ("v0.2.0" if rel.software.endswith("25.11") else "v0.3.0") in rel.cite["overlap_p2p"]
    assert new[0].flags["--tp-comm-overlap-cfg"].values == ref.flags["--tp-comm-overlap-cfg"].values


def test_userbuffers_configs_of_the_new_rows_are_flags():
    fw, _ = get_release("nemo-24.07").configure("--tp-comm-overlap --tp-comm-overlap-cfg="
                                                "ub_cfg_h100_h6144_tp2_mbs2_seqlen2048")
    assert fw.tp_rs.chunks == 4 and fw.tp_rs.proj_sm_share == pytest.approx(16 / 132)
    assert fw.tp_rs.fc2_sm_share == pytest.approx(24 / 132)
    fw, _ = get_release("nemo-25.02").configure("--tp-comm-overlap-cfg=userbuffers_fp8_b200_h12288_tp4_mbs1_seqlen2048")
    assert fw.tp_rs.chunks == 0  # ring exchange


def test_container_names_in_a_covers_range_stand_for_their_patch_releases():
    """covers_release reads "nemo-24.09" as every 24.09.x: a range ending at a container also covers its patch
    containers, which is why 26.02 (Bridge v0.3.0) is its own preset rather than the end of 25.11's range (26.02.01
    ships v0.3.1, whose Llama recipes differ)."""
    rel = get_release("nemo-24.07")
    ranged = Release(rel.framework, rel.family, "nemo-24.07", rel.date, rel.code, rel.cite, rel.defaults, rel.flags,
                     covers=("nemo-24.07", "nemo-24.09"))
    assert ranged.covers_release("nemo-24.09") and ranged.covers_release("nemo-24.09.01")
    assert ranged.covers_release("nemo-24.07.01") and not ranged.covers_release("nemo-24.12")
    assert not ranged.covers_release("nemo-automodel-2025-10") and not ranged.covers_release("nemo-2.0")
    assert release_for("megatron-core", "megatron-bridge-26.02") is RELEASES[FrameworkName.MEGATRON_BRIDGE_26_02]
    patch = release_for("megatron-core", "megatron-bridge-26.02.01")
    assert patch is RELEASES[FrameworkName.MEGATRON_BRIDGE_26_02_01] and patch.defaults["micro_batch"].value == 2
    with pytest.raises(SpecError, match="software"):
        release_for("megatron-core", "megatron-bridge-26.02.02")
