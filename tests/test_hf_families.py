"""Hugging Face import of today's MoE and attention families, checked against transformers' own parameter counts.

The *-defaults fixtures (and their named variants) are transformers 5.25.0's configuration classes written out
with to_dict() (each file's _source); tests/data/transformers_param_counts.json holds the total and active counts
transformers' modeling code gives them (tests/data/hf_configs/count_with_transformers.py, meta device).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim import SpecError, from_hf_config, param_counts
from capsim.analytic.flops import matmul_params
from capsim.analytic.ops import OpKind, total, training_layer_ops
from capsim.cli import app
from capsim.specs.model import ModelSpec

FIXTURES = Path(__file__).parent / "data" / "hf_configs"
REFERENCE = json.loads((FIXTURES.parent / "transformers_param_counts.json").read_text())
# configs capsim refuses, with the config key the refusal names (fixtures with one key changed): a recurrent layer
# kind a family does not have
REFUSED = {"qwen3-next-defaults": ("layer_types", ["sliding_attention"] * 48),
           "granitemoehybrid-defaults": ("layer_types", ["mamba1"] * 32)}
PRICED = sorted(REFERENCE["counts"])
NEW = sorted(p.stem for p in FIXTURES.glob("*.json") if "transformers 5.25.0" in p.read_text()[:200])


def load(name: str) -> ModelSpec:
    return from_hf_config(FIXTURES / f"{name}.json")


def cfg(name: str, **changes: object) -> dict:
    out = json.loads((FIXTURES / f"{name}.json").read_text())
    out.update(changes)
    return out


def test_every_new_fixture_is_counted_and_either_priced_or_refused():
    assert len(NEW) == 24 and set(NEW) <= set(REFERENCE["counts"]) and set(REFUSED) <= set(NEW)


@pytest.mark.parametrize("name", PRICED)
def test_total_and_active_counts_equal_transformers(name):
    """Every parameter transformers builds is counted (shared experts and their gate, dense-first layers, sinks,
    q/k norms of each width, LayerNorm biases, the LM head's bias), and a token's active share of the experts."""
    counts = param_counts(load(name))
    assert (counts.total, counts.active) == (REFERENCE["counts"][name], REFERENCE["active"][name])


@pytest.mark.parametrize(("name", "change"), sorted(REFUSED.items()))
def test_architectures_capsim_cannot_express_are_refused_by_the_key(name, change):
    key, value = change
    with pytest.raises(SpecError, match=f"config.{key}"):
        from_hf_config(cfg(name, **{key: value}))


def test_each_familys_architecture_keys_are_read():
    llama4, inter = load("llama4-scout-defaults"), load("llama4-interleaved")
    assert llama4.moe_layers == 48 and llama4.shared_experts == 1 and (llama4.qk_norm, llama4.qk_norm_gains) == (
        True, "none")  # Llama4TextWeightlessRMSNorm
    assert (llama4.sliding_window, llama4.global_every) == (8192, 4)  # chunked_attention, every 4th full (NoPE)
    assert inter.dense_layers == tuple(range(0, 48, 2)) and inter.dense_ffn_hidden == 16384
    glm, glm_qk = load("glm4-moe-defaults"), load("glm4-moe-qknorm")
    assert glm.dense_layers == (0,) and glm.shared_experts == 1 and glm.router_bias and glm.head_dim == 4096 // 96
    assert glm_qk.qkv_bias and not glm_qk.out_bias and glm_qk.qk_norm and glm_qk.head_dim == 128
    qwen = load("qwen2-moe-defaults")
    assert (qwen.shared_experts, qwen.shared_ffn, qwen.shared_expert_gate, qwen.ffn_hidden) == (1, 5632, True, 1408)
    assert load("qwen2-moe-sparse-step").dense_layers == tuple(sorted({*range(0, 24, 2), 1}))
    assert not load("qwen2-moe-no-qkv-bias").qkv_bias and load("qwen3-8b-attention-bias").out_bias
    assert load("llama4-attention-bias").qkv_bias and load("llama4-attention-bias").out_bias
    assert load("gpt-oss-defaults").attn_sinks
    olmoe = load("olmoe-defaults")
    assert olmoe.qk_norm_gains == "full" and olmoe.qk_norm_params == 2048 + 2048 and olmoe.top_k == 8
    phi = load("phimoe-biases")
    assert phi.norm.value == "layernorm" and phi.qkv_bias and phi.out_bias and not phi.bias and phi.lm_head_bias
    granite = load("granitemoeshared-1024")
    assert (granite.shared_experts, granite.shared_ffn, granite.ffn_hidden) == (1, 1024, 11008)
    assert load("granitemoeshared-defaults").shared_experts == 0  # shared_intermediate_size 0 builds none
    assert load("granitemoehybrid-attention").shared_ffn == 1024  # GraniteMoeHybridConfig's default
    dbrx = load("dbrx-defaults")
    assert (dbrx.norm.value, dbrx.norm_bias, dbrx.kv_heads, dbrx.experts, dbrx.top_k) == ("layernorm", False, 1, 4, 1)
    ministral = load("ministral-defaults")
    assert (ministral.sliding_window, ministral.global_every) == (4096, 0)  # layer_types: every layer slides


def test_mistral_layer_types_set_the_global_layers():
    """A Mistral/Ministral config's layer_types are read, not dropped: every 4th layer full -> global_every 4."""
    types = ["full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(32)]
    spec = from_hf_config(cfg("ministral-defaults", layer_types=types))
    assert (spec.global_every, spec.sliding_layers) == (4, 24)
    with pytest.raises(SpecError, match="config.layer_types"):
        from_hf_config(cfg("ministral-defaults", layer_types=["full_attention", *["sliding_attention"] * 31]))


@pytest.mark.parametrize(("changes", "key"), [
    ({"layer_types": ["chunked_attention"] * 47 + ["linear_attention"]}, "layer_types"),
    ({"layer_types": ["full_attention"] + ["chunked_attention"] * 47}, "layer_types"),
    ({"no_rope_layers": [0] * 48}, "no_rope_layers"),
])
def test_llama4_attention_layouts_it_cannot_price_are_refused(changes, key):
    base = cfg("llama4-scout-defaults")
    base["text_config"] = {**base["text_config"], **changes}
    with pytest.raises(SpecError, match=f"config.{key}"):
        from_hf_config(base)


def test_kimi_k2_reads_as_deepseek_v3():
    """Kimi-K2's config.json names model_type kimi_k2 with DeepSeek-V3's modeling code."""
    v3 = from_hf_config(FIXTURES / "deepseek-v3.json")
    kimi = from_hf_config(cfg("deepseek-v3", model_type="kimi_k2"), name=v3.name)
    assert kimi == v3
    nested = from_hf_config({"model_type": "kimi_k25", "text_config": cfg("deepseek-v3")}, name=v3.name)
    assert nested.with_(source=v3.source) == v3


def test_non_finite_numbers_are_read_but_never_priced():
    """transformers writes Infinity (Mamba's time_step_limit): a key capsim ignores may hold it, one it prices not."""
    assert from_hf_config(cfg("mistral-7b", time_step_limit=[0.0, float("inf")]), name="mistral-7b") == load("mistral-7b")
    with pytest.raises(SpecError, match="config.final_logit_softcapping"):
        from_hf_config(cfg("gemma-2-9b", final_logit_softcapping=float("inf")))
    with pytest.raises(SpecError, match="config.factor"):
        from_hf_config(cfg("gpt-oss-defaults", rope_parameters={"rope_type": "yarn", "factor": float("nan")}))


@pytest.mark.parametrize("name", ["glm4-moe-qknorm", "granitemoeshared-1024", "qwen2-moe-defaults", "olmoe-defaults",
                                  "phimoe-biases", "llama4-interleaved", "dbrx-defaults"])
def test_active_weights_are_what_the_op_list_multiplies(name):
    """matmul_params (shared experts of their own width, the shared-expert gate) agrees with the GEMMs of the op
    list over every layer, dense and MoE by their share."""
    model = load(name)
    s = 512
    gemm = total(training_layer_ops(model, 1, s), kinds=[OpKind.GEMM]) / s * model.layers
    assert gemm == pytest.approx(2 * (matmul_params(model) - model.vocab * model.hidden), rel=1e-12)


@pytest.mark.parametrize(("changes", "field"), [
    ({"qk_norm_gains": "full"}, "model.qk_norm_gains"), ({"qk_norm": True, "qk_norm_gains": "per-head"},
                                                          "model.qk_norm_gains"),
    ({"norm_bias": False}, "model.norm_bias"), ({"lm_head_bias": True, "tied_embeddings": True}, "model.lm_head_bias"),
    ({"o_bias": False, "bias": True}, "model.o_bias"), ({"attn_sinks": 1}, "model.attn_sinks"),
])
def test_new_model_fields_are_checked(changes, field):
    with pytest.raises(SpecError, match=field):
        load("mistral-7b").with_(**changes)


def test_shared_expert_fields_need_shared_experts():
    mixtral = load("mixtral-8x7b")
    for changes in ({"shared_ffn_hidden": 1024}, {"shared_expert_gate": True}):
        with pytest.raises(SpecError, match="model.shared"):
            mixtral.with_(**changes)


RUN = CliRunner()


@pytest.mark.parametrize("command", [["train", "-a", "h100", "-n", "64", "--ep", "4"],
                                     ["memory", "serve", "-a", "h100", "--tp", "8"]])
@pytest.mark.parametrize("name", ["glm4-moe-qknorm", "qwen2-moe-defaults", "granitemoeshared-1024"])
def test_the_cli_prices_new_families(command, name):
    result = RUN.invoke(app, [*command, "--hf-config", str(FIXTURES / f"{name}.json")])
    assert result.exit_code in (0, 1) and "error:" not in result.output, result.output  # 1: priced, infeasible


def test_the_cli_refuses_in_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(cfg("qwen3-next-defaults", layer_types=["sliding_attention"] * 48)))
    result = RUN.invoke(app, ["train", "-a", "h100", "-n", "8", "--hf-config", str(bad)])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "config.layer_types" in lines[0], result.output


def test_nemotron_imports_with_its_squared_relu_ffn():
    # its count against transformers' (15,628,775,424, Nemotron-4 15B's shape) is test_models' reference check
    model = load("nemotron-defaults")
    assert model.mlp.value == "squared-relu" and model.norm.value == "layernorm" and not model.tied_embeddings
    with pytest.raises(SpecError, match="hidden_act"):
        from_hf_config(cfg("nemotron-defaults", hidden_act="silu"))
