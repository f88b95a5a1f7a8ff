"""MoE families of 2024-25 in the Hugging Face import (capsim.specs.hf): GLM-4.5, OLMoE, Phi-3.5-MoE, Granite-MoE
(shared and hybrid) and DBRX, each reading the keys of its transformers 5.25.0 configuration class that change
parameters, FLOPs or the KV cache (models/<family>/configuration_<family>.py and modeling_<family>.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capsim.errors import SpecError
from capsim.specs.hf_keys import SOURCE, _bool, _decoder, _int
from capsim.specs.model import Mlp, ModelSpec, Norm, Position


def _glm4_moe(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Glm4MoeConfig / modeling_glm4_moe.py (transformers 5.25.0): GQA attention whose attention_bias gives q/k/v_proj
    # biases and o_proj none; use_qk_norm: RMSNorm(head_dim) on queries and keys; layer i is MoE when
    # i >= first_k_dense_replace (Glm4MoeDecoderLayer), with n_routed_experts of moe_intermediate_size, n_shared_experts
    # of the same width and a per-expert e_score_correction_bias; the other layers are dense MLPs of
    # intermediate_size. partial_rotary_factor rotates part of each head (no parameters); the MTP layer
    # (num_nextn_predict_layers) is not built by Glm4MoeForCausalLM: not counted, as for DeepSeek-V3.
    cfg = {"vocab_size": 151552, "hidden_size": 4096, "intermediate_size": 10944, "num_hidden_layers": 46,
           "num_attention_heads": 96, "num_key_value_heads": 8, "max_position_embeddings": 131072, **cfg}
    layers, first = _int(cfg, "num_hidden_layers"), _int(cfg, "first_k_dense_replace", 1, least=0)
    dense = tuple(range(min(first, layers)))
    mtp = _int(cfg, "num_nextn_predict_layers", 1, least=0)
    return _decoder(cfg, name, tied=False, max_seq=131072, qkv_bias=_bool(cfg, "attention_bias", False),
                    qk_norm=_bool(cfg, "use_qk_norm", False), experts=_int(cfg, "n_routed_experts", 128),
                    top_k=_int(cfg, "num_experts_per_tok", 8), shared_experts=_int(cfg, "n_shared_experts", 1, least=0),
                    ffn_hidden=_int(cfg, "moe_intermediate_size", 1408), dense_layers=dense,
                    dense_ffn_hidden=_int(cfg, "intermediate_size") if dense else None, router_bias=True,
                    source=SOURCE + (f" ({mtp} MTP layer(s) not counted, as transformers drops them; training prices "
                                      f"them with --mtp-num-layers={mtp})" if mtp else ""))


def _olmoe(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # OlmoeConfig / modeling_olmoe.py (transformers 5.25.0; its defaults where a key is absent): every layer routes to
    # num_experts of intermediate_size; q_norm = RMSNorm(hidden) and k_norm = RMSNorm(kv_dim) over the whole
    # projections (qk_norm_gains "full"); attention_bias gives q/k/v/o biases, the experts none; clip_qkv clamps
    # q/k/v (an elementwise pass, no parameters).
    cfg = {"vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 2048, "num_hidden_layers": 16,
           "num_attention_heads": 16, **cfg}
    bias = _bool(cfg, "attention_bias", False)
    return _decoder(cfg, name, tied=False, max_seq=4096, qk_norm=True, qk_norm_gains="full", qkv_bias=bias,
                    o_bias=bias or None, experts=_int(cfg, "num_experts", 64), top_k=_int(cfg, "num_experts_per_tok", 8))


def _phimoe(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # PhimoeConfig / modeling_phimoe.py (transformers 5.25.0; its defaults where a key is absent):
    # nn.LayerNorm (gain and bias) everywhere, attention_bias gives q/k/v/o biases, lm_head_bias a bias on the LM
    # head, the experts (num_local_experts of intermediate_size) and router none; sliding_window, where set, masks
    # every layer.
    cfg = {"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 6400, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, **cfg}
    bias = _bool(cfg, "attention_bias", False)
    return _decoder(cfg, name, tied=False, max_seq=131072, norm=Norm.LAYERNORM, qkv_bias=bias, o_bias=bias or None,
                    lm_head_bias=_bool(cfg, "lm_head_bias", False), experts=_int(cfg, "num_local_experts", 16),
                    top_k=_int(cfg, "num_experts_per_tok", 2), sliding_window=_int(cfg, "sliding_window", None))


def _granitemoe(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # GraniteMoeConfig / GraniteMoeSharedConfig (transformers 5.25.0): Llama attention whose attention_bias gives
    # q/k/v/o biases; every layer routes to num_local_experts of intermediate_size (no biases); GraniteMoeShared
    # adds one always-on gated MLP of shared_intermediate_size (0: none; GraniteMoeSharedConfig's default 0,
    # GraniteMoeHybridConfig's 1024). embedding_multiplier, residual_multiplier,
    # attention_multiplier and logits_scaling are scalar multiplies (no parameters, one elementwise pass each).
    # GraniteMoeHybrid (Mamba-2 layers beside these) is read by capsim.specs.hf_hybrid.
    bias = _bool(cfg, "attention_bias", False)
    shared = _int(cfg, "shared_intermediate_size", 0, least=0)
    return _decoder(cfg, name, tied=False, max_seq=2048, qkv_bias=bias, o_bias=bias or None,
                    experts=_int(cfg, "num_local_experts", 8), top_k=_int(cfg, "num_experts_per_tok", 2),
                    shared_experts=1 if shared else 0, shared_ffn_hidden=shared or None)


def _dbrx(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # DbrxConfig / modeling_dbrx.py (transformers 5.25.0): its own keys (d_model, n_heads, n_layers, max_seq_len)
    # with attention in attn_config (kv_n_heads, default 1; clip_qkv clamps, no parameters) and the experts in
    # ffn_config (moe_num_experts of ffn_hidden_size, moe_top_k, a gated ffn_act_fn); fused Wqkv and the experts
    # without biases; nn.LayerNorm(bias=False) (gains only); the LM head is never tied (DbrxConfig refuses it).
    attn, ffn = cfg.get("attn_config") or {}, cfg.get("ffn_config") or {}
    for key, sub in (("attn_config", attn), ("ffn_config", ffn)):
        if not isinstance(sub, Mapping):
            raise SpecError(f"config.{key}", f"must be an object, got {sub!r}", "fix the value in config.json")
    act = ffn.get("ffn_act_fn") or {"name": "silu"}
    if not isinstance(act, Mapping) or act.get("name", "silu") not in ("silu", "swish"):
        raise SpecError("config.ffn_config.ffn_act_fn", f"{act!r} is not modelled", 'use {"name": "silu"}')
    experts = _int(ffn, "moe_num_experts", 4)
    return ModelSpec(
        name=name, hidden=_int(cfg, "d_model", 2048), layers=_int(cfg, "n_layers", 24), heads=_int(cfg, "n_heads", 16),
        kv_heads=_int(attn, "kv_n_heads", 1), ffn_hidden=_int(ffn, "ffn_hidden_size", 3584),
        vocab=_int(cfg, "vocab_size", 32000), max_seq=_int(cfg, "max_seq_len", 2048), mlp=Mlp.SWIGLU,
        norm=Norm.LAYERNORM, norm_bias=False, position=Position.ROPE, bias=False, tied_embeddings=False,
        experts=experts, top_k=_int(ffn, "moe_top_k", 1) if experts > 1 else 1, source=SOURCE)
