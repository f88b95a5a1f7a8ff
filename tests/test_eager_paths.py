"""The eager passes a release runs for a clamped GLU and a YaRN RoPE (capsim.analytic.eager): which ops, how many
bytes forward and backward, which releases run them, and that nothing else moves."""

import numpy as np
import pytest

from capsim import Layouts, Precision, get_model
from capsim.analytic import eager
from capsim.analytic.eager import Eager
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.primitives import Op, OpKind, backward_ops
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import RELEASES, FrameworkName, release_for
from capsim.calibration import load_calibration
from capsim.errors import SpecError
from capsim.specs.hf import from_hf_config
from capsim.specs.model import ModelSpec

OSS, QWEN = get_model("gpt-oss-120b"), get_model("qwen3-30b-a3b")
PERF = load_calibration("H100-SXM5-80GB").perf()
BF16 = Precision.preset("bf16")
TOKENS, SEQ, EP = 4096, 4096, 8


MEGATRON, HALVES, FUSED = eager.YarnRope.MEGATRON, eager.YarnRope.HALVES, eager.YarnRope.FUSED


def _layer(model: ModelSpec, clamp: bool, rope: bool | eager.YarnRope) -> list[Op]:
    s = layer_shape(model, TOKENS, 1, 1, EP, False, 1)
    form = rope if isinstance(rope, eager.YarnRope) else (MEGATRON if rope else FUSED)
    return eager.apply(forward_layer_ops(model, s), model, SEQ, s.heads, s.kv_heads, clamp, form)


def _bytes(ops: list[Op], names: frozenset[str]) -> float:
    return float(sum(o.bytes for o in ops if o.name.split(".")[0] in names))


def test_the_clamp_is_two_half_passes_and_a_concatenation_over_fc1s_output():
    fused, clamped = _layer(OSS, False, False), _layer(OSS, True, False)
    names = [o.name for o in clamped]
    up = names.index("mlp_up")
    assert names[up + 1:up + 4] == ["glu_clamp_gate", "glu_clamp_up", "glu_clamp_cat"]  # before the activation
    assert names[up + 4] == "mlp_act"
    whole = TOKENS * OSS.top_k * 2 * OSS.ffn_hidden * 2  # fc1's output in bf16, every local expert's rows
    assert _bytes(clamped, eager.CLAMP_OPS) == pytest.approx(2 * whole + 2 * whole)  # halves read+write, cat r+w
    back = backward_ops(clamped)
    # each clamp's backward reads the gradient and its saved input; the chunk's backward concatenates the halves
    assert _bytes(back, eager.CLAMP_OPS) == pytest.approx(3 * whole / 2 * 2 + 2 * whole)
    assert [o for o in clamped if o.name not in eager.CLAMP_OPS] == fused


def test_the_unfused_rope_replaces_the_fused_kernel_with_six_passes_per_tensor():
    fused, unfused = _layer(OSS, False, False), _layer(OSS, False, True)
    assert "rope" in {o.name for o in fused} and "rope" not in {o.name for o in unfused}
    qk = TOKENS * (OSS.heads + OSS.kv_heads) * OSS.head_dim * 2.0  # Q and K in bf16
    passes = [o for o in unfused if o.name in eager.ROPE_OPS and o.name != "rope_tables"]
    assert len(passes) == 12  # six kernels for the queries, six for the keys
    # forward: t*cos (2), -x2 (1), cat (2), *sin (2), add (3), cat (2) tensor passes
    assert _bytes(passes, eager.ROPE_OPS) == pytest.approx(12 * qk)
    back = [o for o in backward_ops(unfused) if o.name.split(".")[0] in eager.ROPE_OPS]
    assert {o.name for o in back} == {"rope_cos.bwd", "rope_neg.bwd", "rope_rotate.bwd", "rope_sin.bwd"}
    assert _bytes(back, eager.ROPE_OPS) == pytest.approx(10 * qk)  # the add and the last cat pass views back


def test_automodels_rope_rotates_both_halves_with_four_products():
    unfused = _layer(OSS, False, HALVES)
    qk = TOKENS * (OSS.heads + OSS.kv_heads) * OSS.head_dim * 2.0
    passes = [o for o in unfused if o.name.startswith("rope_half")]
    assert len(passes) == 14  # four products, a difference, a sum and a cat, for the queries and for the keys
    assert _bytes(passes, eager.ROPE_OPS) == pytest.approx(9 * qk)  # 4 x (0.5 + 0.5), 1.5, 1.5, 2
    back = [o for o in backward_ops(unfused) if o.name.startswith("rope_half")]
    assert _bytes(back, eager.ROPE_OPS) == pytest.approx(10 * qk)
    assert RELEASES[FrameworkName("nemo-automodel-2025-10")].framework.yarn_rope is HALVES


def test_models_without_the_features_and_releases_without_the_paths_keep_the_fused_forms():
    assert _layer(QWEN, True, True) == _layer(QWEN, False, False)  # no clamp, plain RoPE
    assert _layer(OSS, False, False) == forward_layer_ops(OSS, layer_shape(OSS, TOKENS, 1, 1, EP, False, 1))


def test_an_op_that_states_its_backward_gets_exactly_that_and_views_get_none():
    op = Op("x", OpKind.ELEMENTWISE, 0.0, 10.0, 10.0, (5,), grad=(3.0, 4.0))
    view = Op("v", OpKind.ELEMENTWISE, 0.0, 10.0, 10.0, (5,), grad=(0.0, 0.0))
    plain = Op("p", OpKind.ELEMENTWISE, 0.0, 10.0, 6.0, (5,))
    out = backward_ops([plain, view, op])
    assert [(o.name, o.bytes_read, o.bytes_written) for o in out] == [("x.bwd", 3.0, 4.0), ("p.bwd", 16.0, 10.0)]


def test_the_bridge_releases_with_gpt_oss_run_both_eagerly_and_the_op_fuser_fuses_the_clamp():
    on = {n for n, r in RELEASES.items() if r.framework.glu_clamp_eager}
    assert on == {FrameworkName(f"megatron-bridge-{v}") for v in
                  ("25.11", "26.02", "26.02.01", "26.04", "26.04.01", "26.06", "26.06.01")}
    assert on == {n for n, r in RELEASES.items() if r.framework.yarn_rope is MEGATRON}
    for name in on:
        cite = RELEASES[name].cite
        assert "fused_bias_geglu.py L424-432" in cite["glu_clamp_eager"]
        assert "rope_utils.py L279-284" in cite["yarn_rope"]
    rel = release_for("megatron-core", "megatron-bridge-26.06")
    assert not rel.configure("--use-transformer-engine-op-fuser")[0].glu_clamp_eager
    assert rel.configure("--use-transformer-engine-op-fuser")[0].yarn_rope is MEGATRON
    with pytest.raises(SpecError):  # a TransformerConfig field from core 0.18 (d0b3b775) on
        release_for("megatron-core", "megatron-bridge-26.04").configure("--use-transformer-engine-op-fuser")
    for fw in ("nemo-automodel-2025-10", "torchtitan-2025-06", "megatron-bridge-25.09"):
        assert not RELEASES[FrameworkName(fw)].framework.glu_clamp_eager


def test_the_eager_passes_lengthen_a_gpt_oss_layer_and_nothing_else():
    def fwd_bwd(model: ModelSpec, on: bool) -> float:
        lay = Layouts.build(model, dp=8, ep=EP, etp=1, global_batch=8, seq_len=SEQ)
        t = micro_batch_times(model, lay, BF16, PERF,
                              eager=Eager(clamp=on, yarn_rope=MEGATRON if on else FUSED))
        return float(t.layer_fwd_s[0] + t.layer_bwd_s[0]), float(t.experts_fwd_s[0])

    (off, off_x), (on, on_x) = fwd_bwd(OSS, False), fwd_bwd(OSS, True)
    assert 1.03 < on / off < 1.25 and on_x > off_x  # the clamp is part of the experts' node
    assert fwd_bwd(QWEN, True) == fwd_bwd(QWEN, False)


def test_the_gpt_oss_config_carries_its_clamp_and_yarn_factor():
    cfg = {"model_type": "gpt_oss", "swiglu_limit": 7.0,
           "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0}}
    spec = from_hf_config(cfg, name="x")
    assert (spec.glu_clamp, spec.yarn_factor) == (7.0, 32.0) == (OSS.glu_clamp, OSS.yarn_factor)
    with pytest.raises(SpecError, match="glu_clamp"):
        OSS.with_(mlp="gelu")
    assert np.isclose(0.1 * np.log(OSS.yarn_factor) + 1.0, 1.3466, atol=1e-4)  # Megatron-Core's mscale, not 1


# --- Megatron-Core's recompute modules (layernorm, moe_act) ----------------------------------------------------------
def test_recompute_modules_replay_the_norms_and_the_experts_activation_with_its_clamp():
    from capsim.analytic.recompute import MEGATRON_SAC, SacPolicy, SelectiveAc, op_shares

    sac = SelectiveAc(SacPolicy.MODULES, modules=("layernorm", "moe_act"))
    ops = _layer(OSS, True, True)
    replayed = {o.name for o, s in zip(ops, op_shares(OSS, ops, sac), strict=True) if s}
    # Megatron-Core's TE spec fuses the input norm into linear_qkv (an IdentityOp "layernorm" skips): only the MoE
    # layer's pre-MLP TENorm is replayed (was: both norms)
    assert replayed == {"norm_mlp", "mlp_act"} | eager.CLAMP_OPS
    dense = forward_layer_ops(get_model("llama-3-8b"), layer_shape(get_model("llama-3-8b"), TOKENS, 1, 1, 1, False))
    assert not any(op_shares(OSS, dense, sac))  # a dense layer's norms are both fused (was: both replayed)
    assert not any(op_shares(OSS, ops, MEGATRON_SAC))  # fused attention: the default replays nothing
    with pytest.raises(SpecError):
        SelectiveAc(SacPolicy.MODULES, modules=("moe",))  # not priced: refused, not ignored
    with pytest.raises(SpecError):
        SelectiveAc(SacPolicy.MODULES)


def test_the_flag_sets_the_modules_and_the_step_pays_their_forward_again():
    rel = release_for("megatron-core", "megatron-bridge-26.02")
    fw, _ = rel.configure("--recompute-modules=layernorm,moe_act")
    assert fw.selective_ac.modules == ("layernorm", "moe_act") and "L1568" in rel.flags["--recompute-modules"].source
    lay = Layouts.build(OSS, dp=8, ep=EP, etp=1, global_batch=8, seq_len=SEQ, recompute=1)
    t = micro_batch_times(OSS, lay, BF16, PERF, sac=fw.selective_ac, eager=Eager(clamp=True, yarn_rope=MEGATRON))
    s = layer_shape(OSS, TOKENS, 1, 1, EP, False, 1)
    ops = eager.apply(forward_layer_ops(OSS, s), OSS, SEQ, s.heads, s.kv_heads, True, MEGATRON)
    names = {"norm_mlp", "mlp_act"} | eager.CLAMP_OPS
    assert 0 < t.layer_selective_s[0] < 0.2 * t.layer_fwd_s[0]
    assert t.layer_selective_s[0] > float(sum(PERF.op_s(o) for o in ops if o.name in names)) * 0.99


# --- NeMo AutoModel's eager fc1 bias ----------------------------------------------------------------------------------
def test_automodel_adds_fc1s_bias_per_expert_outside_the_grouped_gemm():
    s = layer_shape(OSS, TOKENS, 1, 1, EP, False, 1)
    ops = eager.apply(forward_layer_ops(OSS, s), OSS, SEQ, s.heads, s.kv_heads, False, FUSED, True)
    names = [o.name for o in ops]
    up = names.index("mlp_up")
    assert names[up + 1:up + 3] == ["moe_fc1_bias_add", "moe_fc1_bias_cat"] and names[up + 3] == "mlp_act"
    add = ops[up + 1]
    whole = TOKENS * OSS.top_k * 2 * OSS.ffn_hidden * 2.0
    assert add.count == OSS.experts / EP and add.bytes * add.count == pytest.approx(2 * whole)
    back = {o.name: o for o in backward_ops(ops)}
    assert back["moe_fc1_bias_add.bwd"].bytes * add.count == pytest.approx(whole)  # the bias gradient's sum
    assert back["moe_fc1_bias_cat.bwd"].bytes == pytest.approx(2 * whole)  # the split's backward concatenation
    from capsim.analytic.training.host import launches
    assert launches(add, BF16) == OSS.experts / EP  # one add per local expert
    assert eager.apply(forward_layer_ops(QWEN, layer_shape(QWEN, TOKENS, 1, 1, EP, False, 1)), QWEN, SEQ, 1, 1,
                       False, FUSED, True) == forward_layer_ops(QWEN, layer_shape(QWEN, TOKENS, 1, 1, EP, False, 1))
    assert RELEASES[FrameworkName("nemo-automodel-2025-10")].framework.moe_fc1_bias_eager
    assert "L486-487" in RELEASES[FrameworkName("nemo-automodel-2025-10")].cite["moe_fc1_bias_eager"]
    assert not RELEASES[FrameworkName("megatron-bridge-26.04")].framework.moe_fc1_bias_eager  # TE GroupedLinear's
