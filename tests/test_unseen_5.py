"""Published training runs capsim had not seen, round 5, priced through the public CLI exactly as a new user would
(issue 12): ``capsim validate training --file tests/data/unseen_5/training.csv --json`` with the profile and the
datasheet calibrations. The rows: the Llama 3 paper's Table 4 (Llama 3 405B on 8,192 and 16,384 H100s, TP 8, CP 1 or
16, PP 16, 8K and 128K sequences), priced with the meta-4d-2024 preset (Meta's stack as the paper's Sec. 3.3
describes it, capsim.analytic.training.releases_meta); MegaScale's (NSDI 2024) Megatron-LM baseline for the 175B model
on 256 to 12,288 A100s (Table 2), priced with megatron-lm-2023.01.11 (Megatron-LM at the commit the paper names, 285068c8,
capsim.analytic.training.releases_megatron_lm). Sources, defaults and left-out runs are in the file's header.

The checks are tests/unseen_rows.py's: every row priced, each row's error pinned to 1 point of the figure
measured when it was added, within 15% or a strict xfail whose reason carries that figure.
Nothing in capsim was tuned to these rows."""


import numpy as np
import pytest
from unseen_rows import DATA, RULES, assert_all_priced, assert_pinned, assert_within, cases, report

FILE = DATA / "unseen_5" / "training.csv"


def _report(rule: str) -> dict:
    return report(FILE, rule)


# (row index, what the row is, error % when added with the profile and the datasheet calibrations; positive =
# capsim predicts larger: faster for TFLOP/s, slower for iteration_s).
ROWS = [
    (0, "Llama 3 405B 8192 H100 TP8 PP16 V8 DP64 8K", -30.7, -30.8),
    (1, "Llama 3 405B 16384 H100 TP8 PP16 V8 DP128 8K", -30.0, -30.0),
    # 36.2, 37.9 -> 42.7, 44.6: the ring's 15 unmasked steps at cuDNN's published non-causal H100 rates (FA3 paper Fig.
    # 5(c), 6(b); backward 0.52 of peak at 8k keys for the flat 0.45), published_attention_cudnn
    (2, "Llama 3 405B 16384 H100 TP8 CP16 PP16 V8 DP8 128K", 42.7, 44.6),
    (3, "MegaScale baseline Megatron-LM 175B 256 A100 gb768 iteration_s", 29.4, 27.2),
    (4, "MegaScale baseline Megatron-LM 175B 512 A100 gb768 iteration_s", 26.6, 24.2),
    # rows 3-10 moved (30.2, 28.4 ... 21.1, 16.9 when added): with no flags stated, whether the run sharded its
    # optimizer is open in the band (--use-distributed-optimizer), and the band's median feasible layout moved
    (5, "MegaScale baseline Megatron-LM 175B 768 A100 gb768 iteration_s", 22.9, 19.4),
    (6, "MegaScale baseline Megatron-LM 175B 1024 A100 gb768 iteration_s", 18.1, 15.5),
    (7, "MegaScale baseline Megatron-LM 175B 3072 A100 gb6144 iteration_s", 22.4, 21.0),
    (8, "MegaScale baseline Megatron-LM 175B 6144 A100 gb6144 iteration_s", 27.0, 23.4),
    (9, "MegaScale baseline Megatron-LM 175B 8192 A100 gb6144 iteration_s", 15.2, 12.6),
    (10, "MegaScale baseline Megatron-LM 175B 12288 A100 gb6144 iteration_s", 19.1, 16.1),
]
_MEGASCALE = ("priced slower than measured: the paper states none of the baseline's flags, and at the commit's defaults "
              "(unfused attention, micro-batch 4, no recompute, no SP) the 175B does not fit (306-343 GB/GPU), so the row "
              "runs at the band's median feasible layout (full recompute with SP; the distributed optimizer, unstated, "
              "open in the band); with --use-flash-attn and --use-distributed-optimizer (the commit has both, the "
              "paper states neither) the rows lie at -14.9% to +11.6% (profile); the band is not a fit and no value was chosen from it; not investigated further")
_SYNC = ("the paper does not say when FSDP reduce-scatters: priced at FSDP's documented default, every micro-batch "
         "(zero_comm 8.5 s of an 18.0 s step at DP 64: each block's fp32 reduce-scatter over 64 ranks across nodes "
         "outlasts its backward); reduced once a step (defer_grad_sync) the row would be +34.6% (profile) "
         "but the unsharded fp32 gradients do not fit (94.8 GB/GPU of 84.9 GB), while the paper trains 8K sequences "
         "without activation checkpointing: the unstated setting's band spans the measurement")
WHY = {  # what the miss is, where it has been looked at
    0: _SYNC,
    1: _SYNC.replace("zero_comm 8.5 s of an 18.0 s step at DP 64", "zero_comm 4.3 s of a 9.6 s step at DP 128")
            .replace("64 ranks", "128 ranks").replace("94.8 GB", "87.6 GB").replace("+34.6%", "+32.7%"),
    2: "priced faster than measured at 128K (compute 7.35 s of a 10.7 s step, profile; cp_comm 0.41 s with the "
       "all-gather exposed as the paper says); the metric counts PaLM's full (non-causal) attention term as the "
       "paper's MFU does (megatron_core_model_flops equals 6N + 12LHQT, N without the input embedding), so the "
       "definition explains nothing; the document mask (Sec. 3.2) is not priced (document lengths not given); "
       "not investigated further",
    **{i: _MEGASCALE for i in range(3, 11)},
}


@pytest.mark.parametrize("rule", RULES)
def test_every_unseen_row_is_priced(rule):
    assert_all_priced(FILE, ROWS, rule)


@pytest.mark.parametrize("rule", RULES)
def test_an_unseen_row_stays_where_it_was_added(rule):
    assert_pinned(FILE, ROWS, rule)


@pytest.mark.parametrize(("index", "rule"), cases(ROWS, WHY))
def test_an_unseen_row_is_within_tolerance(index, rule):
    assert_within(FILE, index, rule)


def test_the_llama_3_preset_states_what_the_paper_states():
    from capsim.analytic.training.framework import release_for
    from capsim.analytic.training.release import CpRotate, Reshard

    release = release_for("meta-4d", "meta-4d-2024")
    fw, layout = release.configure()
    assert fw.reshard_after_forward is Reshard.NEVER and fw.zero and not fw.distributed_optimizer  # p. 10
    assert fw.grads_fp32 and fw.overlap_grad_reduce and fw.overlap_param_gather and fw.zero3_prefetch  # p. 12
    assert fw.overlap_p2p and fw.cp_rotate is CpRotate.GATHER_KV and not fw.repeat_kv  # pp. 11-12
    assert not fw.fp8_training  # BF16 (Table 4)
    assert layout["account_for_embedding"] and layout["account_for_loss"] and layout["recompute"] == "none"  # p. 11
    assert "Sec. 3.3.2 p. 10" in release.cite["reshard_after_forward"]
    with pytest.raises(ValueError, match="unknown meta-4d release"):
        release_for("meta-4d", "meta-4d-2025")


def test_one_fewer_layer_on_the_first_and_last_stage_makes_one_layer_chunks():
    # L3 p. 11: "the first model chunk on the first stage has only the embedding, and the last model chunk on the
    # last stage has only output projection and loss calculation": 126 layers + 2 over 16 stages x 8 chunks
    from capsim.specs.pipeline_layout import megatron

    split = megatron(126, 16, 8, embedding=True, loss=True)
    chunks = np.array(split.chunks)
    assert chunks.shape == (16, 8) and chunks.sum() == 126
    assert chunks[0, 0] == 0 and chunks[-1, -1] == 0
    assert (chunks.flatten()[1:-1] == 1).all()


def test_gathered_kv_is_exposed_whole_and_merges_nothing():
    # L3 p. 12: "we first all-gather the key (K) and value (V) tensors ... the all-gather communication latency is
    # exposed in the critical path"; torch's all-gather rotater (CpRotate.ALLGATHER) hides it behind step 0
    from capsim.analytic.layouts import Layouts
    from capsim.analytic.ops import layer_shape
    from capsim.analytic.training import comms
    from capsim.analytic.training.collectives import collective_s, placement
    from capsim.analytic.training.compute import micro_batch_times, ring_attention_ops
    from capsim.analytic.training.framework import get_framework
    from capsim.analytic.training.release import CpRotate
    from capsim.calibration import perf_for
    from capsim.specs.catalog import get_model
    from capsim.specs.precision import Precision

    model, bf16 = get_model("llama-3.1-405b"), Precision.preset("bf16")
    perf = perf_for("H100-SXM5-80GB", "datasheet")
    lay = Layouts.build(model, tp=8, cp=16, dp=1, seq_len=131072, global_batch=1, micro_batch=1, sp=True)
    meta = get_framework("meta-4d-2024")
    t = micro_batch_times(model, lay, bf16, perf, meta.attention, torch_cp=meta.cp_rotate)
    kv_bytes = 131072 / 16 * (8 / 8) * (2 * model.head_dim) * 2  # local tokens x KV heads per TP rank x K, V x bf16
    where = placement(lay.cp, lay.tp, 8)
    fwd, bwd = comms.cp_layer_s(perf, model, lay, bf16, 8, t, meta)
    assert float(fwd[0]) == pytest.approx(float(collective_s(perf, "all_gather", lay.cp * kv_bytes, where)[0]))
    assert float(bwd[0]) == pytest.approx(float(collective_s(perf, "reduce_scatter", lay.cp * kv_bytes, where)[0]))
    torch_fwd, _ = comms.cp_layer_s(perf, model, lay, bf16, 8, t, meta.with_(cp_rotate=CpRotate.ALLGATHER))
    assert float(torch_fwd[0]) < float(fwd[0])
    shape = layer_shape(model, 131072 / 16, 1, 8, 1, True)
    merge_f, merge_b = ring_attention_ops(model, shape, np.array([16]), bf16.activations, CpRotate.GATHER_KV)
    te_f, _ = ring_attention_ops(model, shape, np.array([16]), bf16.activations, CpRotate.P2P)
    assert float(np.sum(merge_f.bytes_read)) == 0.0 and float(np.sum(merge_b.bytes_read)) == 0.0
    assert float(np.sum(te_f.bytes_read)) > 0.0


def test_megascales_baseline_commit_has_its_own_preset():
    # Was: 'unknown megatron-lm release' (megatron-lm-2022 covers 2022.05.20-2022.06.07; MegaScale Sec. 6.1 ran
    # Megatron-LM 285068c8, 2023-01-11)
    from capsim.analytic.ops import AttentionImpl
    from capsim.analytic.training.framework import release_for

    release = release_for("megatron-lm", "megatron-lm-2023.01.11")
    assert release.name == "megatron-lm-2023.01.11" and "ML@285068c8" in release.code
    fw, layout = release.configure()
    assert fw.attention is AttentionImpl.UNFUSED and fw.dropout and not fw.overlap_grad_reduce
    assert fw.distributed_optimizer and not layout["distributed_optimizer"]  # offered, off by default
    assert release.configure("--use-flash-attn")[0].attention is AttentionImpl.FLASH
    assert release.configure("--use-distributed-optimizer")[1]["distributed_optimizer"]
    for outside in ("megatron-lm-2022.12.21", "megatron-lm-2023.02.01"):
        with pytest.raises(ValueError, match="unknown megatron-lm release"):
            release_for("megatron-lm", outside)
