"""Published training runs capsim had not seen, round 4, priced through the public CLI exactly as a new user would
(issue 12): ``capsim validate training --file tests/data/unseen_4/training.csv --json`` with the profile and the
datasheet calibrations. The rows: Megatron-Bridge 25.09 / 25.11 runs the shipped suites left out (Megatron-FSDP on
8 H100s, Qwen3 MoE on GB200 with EP 8 and EP 64, the MXFP8 numbers, DeepSeek-V3 with an uneven 61-layer layout), the
Megatron-Core MoE README's Mixtral 8x7B on 64 H100s, and NeMo 25.04 / 25.07's Megatron-FSDP Llama3 70B on 64 GB200s. Sources, defaults and left-out runs are in the file's header.

The checks are tests/unseen_rows.py's: every row priced, each row's error pinned to 1 point of the figure
measured when it was added, within 15% or a strict xfail whose reason carries that figure.
Nothing in capsim was tuned to these rows."""

import dataclasses

import pytest
from unseen_rows import DATA, RULES, assert_all_priced, assert_pinned, assert_within, cases, report

FILE = DATA / "unseen_4" / "training.csv"


def _report(rule: str) -> dict:
    return report(FILE, rule)


# (row index, what the row is, error % when added with the profile and the datasheet calibrations; positive =
# capsim predicts faster). H100 has a profile calibration; the Blackwell parts only their datasheets (both rules
# give the datasheet there).
ROWS = [
    (0, "25.09 H100 Llama3 8B Megatron-FSDP 8 FP8", 5.7, 9.2),
    (1, "25.11 H100 Llama3 8B Megatron-FSDP 8 FP8-CS", 0.7, 3.5),
    (2, "25.09 GB200 Qwen3-30B-A3B EP8 FP8-CS", 19.9, 19.9),
    (3, "25.09 GB200 Qwen3-30B-A3B EP8 MXFP8", 19.6, 19.6),
    (4, "25.09 GB200 Qwen3-235B-A22B TP2 EP64 FP8-CS", 27.3, 27.3),
    (5, "25.09 GB200 Qwen3-235B-A22B TP2 EP64 MXFP8", 33.3, 33.3),
    (6, "25.09 B200 Qwen3-235B-A22B PP8 VP2 EP8 MXFP8", 11.5, 11.5),
    (7, "25.09 GB200 Llama3 8B MXFP8", 19.5, 19.5),
    (8, "25.09 B200 Llama3 8B MXFP8", 10.7, 10.7),
    (9, "25.09 GB200 Llama3.1 405B TP4 PP8 CP2 VP8 MXFP8", 47.4, 47.4),
    (10, "25.09 B200 Llama3.1 405B TP4 PP8 CP2 VP8 MXFP8", 21.5, 21.5),
    (11, "25.11 GB300 Llama3 8B FP8-MX", 5.6, 5.6),
    (12, "25.11 GB200 Llama3 8B FP8-MX", 20.1, 20.1),
    (13, "25.11 B200 Llama3 8B FP8-MX", 10.2, 10.2),
    (14, "MCore v0.8 Mixtral 8x7B 64 H100 TP1 EP8 PP4 VP8 BF16", 24.7, 33.3),
    # was 'does not fit in memory (194.3 GB/GPU of 186.0 GB)' until what mla_up_proj frees was priced (152.3 GB)
    (15, "25.11 GB200 DeepSeek-V3 w/o MTP PP4 VP4 EP64 BF16 (61 layers: E+4|4x14|1+L)", 23.0, 23.0),
    (16, "NeMo 25.04 GB200 Llama3 70B Megatron-FSDP 64 FP8-CS", 20.2, 20.2),
    (17, "NeMo 25.07 GB200 Llama3 70B Megatron-FSDP 64 FP8-CS", 19.3, 19.3),
    # was refused ('nemo-25.07 has no flag --cpu-offloading-num-layers') until the NeMo 2 presets took it
    (18, "NeMo 25.07 GB200 Llama3.1 405B Megatron-FSDP 32x2 TP2 95 layers offloaded FP8-CS", 34.6, 34.6),
]
WHY = {  # what the miss is, where it has been looked at
    2: "GB200 runs capsim prices faster than measured across models (the 8B rows 7 and 12 too); not investigated",
    3: "as row 2", 4: "as row 2, with TP 2 and EP 64 over the NVLink domain", 5: "as row 4",
    7: "GB200 8B MXFP8, one GPU's compute (tp 1, dp 8): the B200 row 8 is within 15%; not investigated",
    9: "the GB200 405B MXFP8 run measures 578 against B200's 622 on the same layout; capsim gives GB200 +13% over "
       "B200 (its datasheet), the run -7%",
    10: "B200 405B MXFP8 (TP4 PP8 CP2 VP8, GA 32); not investigated",
    12: "as row 7",
    16: "Megatron-FSDP (ZeRO-3 over 64 GB200s, tp 1) priced faster than measured; the Megatron-Bridge 25.09/25.11 "
        "GB200/GB300 Megatron-FSDP rows of training_bridge_blackwell.csv carry CPU offloading, these none; not investigated",
    17: "as row 16", 18: "as row 16, with hybrid sharding and CPU activation offloading",
    15: "DeepSeek-V3 on GB200 (EP 64 with HybridEP in the 72-GPU NVLink domain); not investigated",
    14: "priced with core 0.8.0's defaults and the stated all-to-all dispatcher (the README states no other flag: "
        "grouped GEMM, overlaps and recompute are the release's defaults, recompute with a band); not investigated",
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


def test_megatron_core_0_8_takes_the_moe_dispatcher_flag_it_has():
    # Was: 'megatron-core-0.8.0 has no flag --moe-token-dispatcher-type capsim prices: it exists from Megatron-Core
    # 0.8' (the 0.8.0 preset listed six flags by hand instead of the table of flags core_v0.8.0 has)
    from capsim.analytic.training.framework import get_release
    from capsim.analytic.training.release import MoeDispatcher

    release = get_release("megatron-core-0.8.0")
    assert release.configure("--moe-token-dispatcher-type=alltoall")[0].moe_dispatcher is MoeDispatcher.ALLTOALL
    with pytest.raises(ValueError, match="flex"):
        release.configure("--moe-token-dispatcher-type=flex")  # the DeepEP/HybridEP dispatcher arrived in 0.12
    for later in ("--fp8-param-gather", "--recompute-modules=core_attn"):
        with pytest.raises(ValueError):
            release.configure(later)


def test_mla_up_proj_recompute_replays_the_mla_up_projections_only():
    # Was: '--recompute-modules=mla_up_proj' (Megatron-Bridge 25.11's DeepSeek-V3 configs) was an unknown value
    from capsim import get_model
    from capsim.analytic.ops import training_layer_ops
    from capsim.analytic.recompute import SacPolicy, SelectiveAc, op_shares
    from capsim.analytic.training.framework import get_release

    fw = get_release("megatron-bridge-25.11").configure("--recompute-modules=mla_up_proj")[0]
    assert fw.selective_ac == SelectiveAc(SacPolicy.MODULES, modules=("mla_up_proj",))
    model = get_model("deepseek-v3")
    ops = training_layer_ops(model, 1, 4096)
    shares = dict(zip((o.name for o in ops), op_shares(model, ops, fw.selective_ac), strict=True))
    assert shares["q_up"] == shares["kv_up"] == shares["rope"] == 1.0
    assert shares["q_down"] == shares["kv_down"] == 0.0 and shares.get("attn_context", 0.0) == 0.0


def test_model_tflops_are_megatrons_count_for_moe_and_gqa_models():
    # Was: tflops_per_gpu_model was SC21's GPT formula for every model, so an MoE row (Mixtral 8x7B, top-2 of 8
    # SwiGLU experts, GQA) was scored against about half the FLOPs Megatron logs (-31% -> +25% on the README row)
    from capsim import get_model
    from capsim.analytic.flops import megatron_core_model_flops, megatron_iteration_flops

    gpt = get_model("gpt-175b")
    assert megatron_core_model_flops(gpt, 8, 2048) == pytest.approx(megatron_iteration_flops(gpt, 8, 2048), 1e-12)
    m = get_model("mixtral-8x7b")
    b, s, h, l = 256, 4096, 4096, 32
    # ML@core_v0.8.0 training.py L73-108 by hand: q/h = 1, g/a = 8/32, f/h = 14336/4096, k = 2, m = 3/2
    by_hand = 12 * b * s * l * h * h * ((1 + 8 / 32 + s / h) + 14336 / h * 2 * 1.5 + 32000 / (2 * l * h))
    assert megatron_core_model_flops(m, b, s) == pytest.approx(by_hand, 1e-12)


def test_output_discarding_recompute_frees_what_its_consumers_kept():
    # Was: the DeepSeek-V3 row 'does not fit in memory (194.3 GB/GPU of 186.0 GB)': Megatron-Core's mla_up_proj
    # discards Q, K and V after the core attention, which capsim kept
    from capsim import get_model
    from capsim.analytic.memory import training_memory
    from capsim.analytic.recompute import SacPolicy, SelectiveAc
    from capsim.specs.plans import TrainPlan
    from capsim.specs.precision import Precision

    model = get_model("deepseek-v3")
    plan = TrainPlan(tp=1, pp=16, dp=16, ep=8, global_batch=256, micro_batch=1, seq_len=4096, recompute="selective")
    bf16 = Precision.preset("bf16")
    core, mla, act = (training_memory(model, plan, bf16, sac=sac).activations_bytes for sac in (
        SelectiveAc(), SelectiveAc(SacPolicy.MODULES, modules=("mla_up_proj",)),
        SelectiveAc(SacPolicy.MODULES, modules=("moe_act",))))
    assert mla < act < core
    # Q, K and V of the 128 heads (192 + 192 + 128 dims) are most of what mla_up_proj frees per layer
    assert core - mla > 0.5 * 4096 * 128 * (192 + 192 + 128) * 2 * 61 / 16
    none = training_memory(model, dataclasses.replace(plan, recompute="none"), bf16,
                           sac=SelectiveAc(SacPolicy.MODULES, modules=("mla_up_proj",))).activations_bytes
    assert none > mla  # frees only under recompute = selective


def test_an_fp8_consumer_keeps_its_own_copy_of_a_discarded_output():
    from capsim import get_model
    from capsim.analytic.ops import forward_layer_ops, layer_shape
    from capsim.analytic.recompute import SacPolicy, SelectiveAc, discarded

    ops = forward_layer_ops(get_model("qwen3-30b-a3b"), layer_shape(get_model("qwen3-30b-a3b"), 4096, 1, 1, 8, False, 1))
    sac = SelectiveAc(SacPolicy.MODULES, modules=("moe_act",))
    names = [o.name for o, d in zip(ops, discarded(ops, sac), strict=True) if d]
    assert names == ["mlp_down"]  # the experts' fc2 input, in an MoE layer
    assert not any(discarded(ops, sac, quantized=frozenset({"mlp_down"})))


def test_nemo_2_containers_take_the_activation_offloading_their_perf_scripts_set():
    # Was: 'nemo-25.07 has no flag --cpu-offloading-num-layers' (NeMo v2.4.0 model_configs_gb200.csv offloads 95
    # layers of Llama 3.1 405B): NeMo sets the TransformerConfig fields, not an argparse flag
    from capsim.analytic.training.framework import get_release

    for name in ("nemo-25.04", "nemo-25.07"):
        fw = get_release(name).configure("--cpu-offloading-num-layers=95")[0]
        assert fw.offload_layers == 95
    with pytest.raises(ValueError, match="cpu-offloading-num-layers"):
        get_release("nemo-25.02").configure("--cpu-offloading-num-layers=95")  # v2.2.0's scripts have no offload
