"""Multi-token prediction (``--mtp-num-layers``, capsim.analytic.mtp) and full recomputation's methods
(``--recompute-method uniform|block --recompute-num-layers N``, capsim.analytic.recompute.full_replay_share), as
Megatron-Core runs them (ML@core_v0.14.0 multi_token_prediction.py, transformer_block.py _checkpointed_forward)."""

from __future__ import annotations

import pytest

import capsim
from capsim.analytic import mtp
from capsim.analytic.layouts import Layouts
from capsim.analytic.training import get_release, step_time
from capsim.analytic.training.stages import StageLayers, stage_params
from capsim.calibration import perf_for
from capsim.errors import SpecError
from capsim.specs.pipeline_layout import layout_mtp_layers, parse_layout

CORE = "megatron-core-0.14.0"
LLAMA = capsim.get_model("llama-3-8b")  # h 4096, 32 heads, 8 KV heads of 128, FFN 14336 (SwiGLU), vocab 128256
PLAN = dict(dp=2, tp=2, pp=2, global_batch=64, seq_len=4096, distributed_optimizer=True, precision="bf16")


def _run(flags: str = "", **plan: object) -> capsim.StepTime:
    fw, _ = get_release(CORE).configure(flags)
    cluster = capsim.Cluster(capsim.get_accelerator("H100-SXM5-80GB"), 8)
    return step_time(LLAMA, capsim.TrainPlan(**{**PLAN, **plan}), cluster, perf_for(cluster.accelerator), framework=fw)


# --- MTP -----------------------------------------------------------------------------------------------------------

def test_one_mtp_layer_flops_match_a_hand_count_from_the_code():
    h, f, kv, d, s, vocab = 4096, 14336, 8 * 128, 128, 4096, 128256
    # forward matmul weights one token meets: q, k, v, o; SwiGLU's three matrices; eh_proj (2h -> h)
    weights = h * h + 2 * h * kv + h * h + 3 * h * f + 2 * h * h
    attention = 2 * 32 * (d + d) * s  # QK^T and PV over the full square, as Megatron counts it
    head = 2 * h * vocab  # the shared output layer, once more per MTP layer (gpt_model.py L477)
    assert mtp.flops_per_token(LLAMA, s) == pytest.approx(3 * (2 * weights + attention) + 3 * head)
    # full recomputation (method uniform) replays the layer's forward once more, not the head
    assert mtp.flops_per_token(LLAMA, s, 1.0) - mtp.flops_per_token(LLAMA, s) == pytest.approx(2 * weights + attention)


def test_one_mtp_layer_params_are_a_decoder_layer_plus_three_norms_and_the_projection():
    h = 4096
    layer = 2 * h * h + 2 * h * 1024 + 3 * h * 14336 + 2 * h  # attention, SwiGLU, two RMSNorm gains
    assert mtp.layer_params(LLAMA) == (layer + 3 * h + 2 * h * h, 0)


def test_mtp_sits_on_the_last_stage_with_the_embedding_copy():
    lay = Layouts.from_plans(LLAMA, [capsim.TrainPlan(dp=2, tp=2, pp=2, global_batch=2)])
    base, with_mtp = (stage_params(LLAMA, lay, StageLayers.of(LLAMA, lay, n)) for n in (0, 1))
    assert with_mtp["first"][0][0] == base["first"][0][0]  # nothing on the first stage
    extra = with_mtp["last"][0][0] - base["last"][0][0]
    assert extra == pytest.approx((mtp.layer_params(LLAMA)[0] + 128256 * 4096) / 2)  # untied: the embedding too


def test_mtp_costs_time_flops_and_last_stage_memory():
    base, one = _run(), _run("--mtp-num-layers=1")
    assert one.step_s > base.step_s and one.model_flops > base.model_flops
    assert one.model_flops - base.model_flops == pytest.approx(64 * 4096 * mtp.flops_per_token(LLAMA, 4096))
    assert one.memory.stage == 1  # the last stage: one more layer, a second logits tensor, the embedding copy
    assert one.tp_comm_s > base.tp_comm_s  # eh_proj's gathers and the MTP layer's own TP traffic (tp 2)
    assert one.embedding_sync_s > 0 == base.embedding_sync_s  # untied: the embedding copy's gradient all-reduce


def test_mtp_is_refused_by_releases_without_it():
    for old in ("megatron-core-0.11.0", "megatron-core-0.8.0"):
        with pytest.raises(SpecError, match=r"--mtp-num-layers.*Megatron-Core 0\.12"):
            get_release(old).configure("--mtp-num-layers=1")
    fw, _ = get_release("megatron-core-0.12.0").configure("--mtp-num-layers=2 --mtp-loss-scaling-factor=0.3")
    assert fw.mtp_layers == 2 and fw.mtp_loss_scale == 0.3


def test_layout_places_mtp_only_at_the_end_and_must_match_the_flag():
    assert parse_layout("Et|(tt|)*2,tmL", 4).total == 6 and layout_mtp_layers("Et|(tt|)*2,tmL") == 1
    with pytest.raises(SpecError, match="MTP"):
        parse_layout("Et|tm|ttL", 3)  # not in the last stage
    with pytest.raises(SpecError, match="MTP"):
        parse_layout("Et|tt|mtL", 3)  # a decoder layer after it
    with pytest.raises(SpecError, match="mtp-num-layers"):
        _run(pp=2, pipeline_layout="Ettttttttttttttttt|tttttttttttttttmL")
    assert _run("--mtp-num-layers=1", pipeline_layout="Ettttttttttttttttt|tttttttttttttttmL").step_s > 0


# --- full recomputation: uniform and block -------------------------------------------------------------------------

def test_block_recompute_lies_between_none_and_full():
    none, full = _run(recompute="none"), _run(recompute="full")
    blocks = [_run(f"--recompute-method=block --recompute-num-layers={n}", recompute="full") for n in (1, 4, 8)]
    acts = [b.memory.activations_bytes for b in blocks]
    assert none.memory.activations_bytes > acts[0] > acts[1] > acts[2] > full.memory.activations_bytes
    # 16 layers a stage: the first N of them replayed
    for n, b in zip((1, 4, 8), blocks, strict=True):
        assert b.recompute_s == pytest.approx(full.recompute_s * n / 16)
    every = _run("--recompute-method=block --recompute-num-layers=16", recompute="full")
    assert every.memory.activations_bytes == pytest.approx(full.memory.activations_bytes)
    assert every.recompute_s == pytest.approx(full.recompute_s) and every.hw_flops == pytest.approx(full.hw_flops)
    assert none.hw_flops < blocks[0].hw_flops < full.hw_flops


def test_uniform_groups_keep_one_input_per_group_and_rebuild_the_group():
    one = _run("--recompute-method=uniform --recompute-num-layers=1", recompute="full")
    assert one.step_s == _run(recompute="full").step_s  # capsim's full recomputation is uniform, 1 layer each
    two = _run("--recompute-method=uniform --recompute-num-layers=2", recompute="full")
    assert two.recompute_s == pytest.approx(one.recompute_s)  # every layer still replayed once
    assert two.memory.activations_bytes == pytest.approx(one.memory.activations_bytes / 2)
    assert two.memory.temporary_bytes > one.memory.temporary_bytes  # two layers rebuilt at once


def test_recompute_method_flags_exist_from_core_0_8():
    fw, _ = get_release("megatron-core-0.8.0").configure("--recompute-method=block --recompute-num-layers=3")
    assert (fw.recompute_method, fw.recompute_layers) == ("block", 3)


# --- selective recompute modules: what each checkpoint replays and frees ----------------------------------------------

def _module_effects(model_name: str, modules: tuple[str, ...], moe_share: float | None = None):
    from capsim.analytic.ops import forward_layer_ops, layer_shape
    from capsim.analytic.recompute import SacPolicy, SelectiveAc, discarded, op_shares

    model = capsim.get_model(model_name)
    ops = forward_layer_ops(model, layer_shape(model, 4096, 1, 1, 1, False), moe_share=moe_share)
    sac = SelectiveAc(SacPolicy.MODULES, modules=modules)
    return ({o.name for o, s in zip(ops, op_shares(model, ops, sac), strict=True) if s},
            {o.name for o, d in zip(ops, discarded(ops, sac), strict=True) if d})


def test_layernorm_recomputes_and_frees_only_the_norms_that_are_their_own_modules():
    # gpt-oss (TE spec, no MLA): the input norm is fused into linear_qkv; the MoE pre-MLP TENorm's output, kept by the
    # router, is discarded
    assert _module_effects("gpt-oss-120b", ("layernorm",)) == ({"norm_mlp"}, {"router"})
    # DeepSeek-V3: MLA's input norm is a TENorm too (its output kept by the down-projections)
    replay, freed = _module_effects("deepseek-v3", ("layernorm",), 1.0)
    assert replay == {"norm_attn", "norm_mlp"} and {"q_down", "router"} <= freed
    assert _module_effects("deepseek-v3", ("layernorm",), 0.0) == ({"norm_attn"}, {"q_down", "kv_down"})
    assert _module_effects("llama-3-8b", ("layernorm",)) == (set(), set())  # both fused: nothing to recompute


def test_mlp_and_shared_experts_checkpoints_keep_only_their_inputs():
    replay, freed = _module_effects("llama-3-8b", ("mlp",))
    assert replay == {"norm_mlp", "mlp_up", "mlp_act", "mlp_down"} and freed == {"mlp_up", "mlp_act", "mlp_down"}
    assert _module_effects("deepseek-v3", ("mlp",), 1.0) == (set(), set())  # an MoE layer has no "mlp" module
    assert _module_effects("deepseek-v3", ("shared_experts",), 1.0) == ({"shared_up", "shared_down"}, {"shared_down"})


def test_freed_module_memory_lies_between_attention_core_and_full():
    from capsim.analytic.memory import training_memory
    from capsim.analytic.recompute import SacPolicy, SelectiveAc
    from capsim.specs.precision import Precision

    oss = capsim.get_model("gpt-oss-120b")
    plan = capsim.TrainPlan(dp=8, ep=8, global_batch=64, seq_len=4096, recompute="selective")
    bf16 = Precision.preset("bf16")
    core, norm, both = (training_memory(oss, plan, bf16, sac=sac).activations_bytes for sac in (
        SelectiveAc(), SelectiveAc(SacPolicy.MODULES, modules=("layernorm",)),
        SelectiveAc(SacPolicy.MODULES, modules=("layernorm", "moe_act"))))
    # the router's bf16 copy of the normed hidden states, 2 h bytes a token, in each of the 36 layers
    assert core - norm == pytest.approx(2 * 2880 * 4096 * 36)
    assert both < norm
    full = training_memory(oss, plan.with_(recompute="full"), bf16).activations_bytes
    assert full < both


def test_recompute_modules_values_arrive_with_their_core():
    from capsim.analytic.training.core_flags import megatron_core_flags

    old, new = (megatron_core_flags(m)["--recompute-modules"].values for m in (12, 14))
    assert "layernorm,mlp" in old and "shared_experts" not in old and "mla_up_proj,shared_experts" in new
    assert "moe" not in new  # its replay re-runs the all-to-alls: not priced, refused


def test_eh_proj_backward_runs_at_the_split_accumulation_rate_under_fp8():
    # Was: 3 x the forward GEMM for any format, so under FP8 the data and weight gradients ran at the forward's
    # fast-accumulation rate, unlike every other weight GEMM (capsim.analytic.fp8.SPLIT_ACCUMULATION_ROLES)
    from capsim.analytic.fp8 import SPLIT
    from capsim.specs.precision import DType

    perf = perf_for("H100-SXM5-80GB")
    scale = perf.params.gemm.dtype_scale
    assert scale["fp8.split"] != scale["fp8"]  # the H100 calibrations price the two accumulations apart
    tokens, h = 8192, LLAMA.hidden
    fwd = perf.gemm_s(tokens, h / 2, 2 * h, DType.FP8)
    bwd = perf.gemm_s(tokens, h / 2, 2 * h, DType.FP8, accumulation=SPLIT)
    assert bwd > fwd
    assert mtp.proj_gemm_s(perf, LLAMA, tokens, 2, DType.FP8) == pytest.approx(fwd + 2 * bwd, rel=1e-12)
    bf16 = perf.gemm_s(tokens, h / 2, 2 * h, DType.BF16)
    assert mtp.proj_gemm_s(perf, LLAMA, tokens, 2, DType.BF16) == pytest.approx(3 * bf16, rel=1e-12)
