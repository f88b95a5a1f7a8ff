"""Hybrid families in the Hugging Face import (capsim.specs.hf): decoders whose layers mix tokens with Mamba-2
(GraniteMoeHybrid, Bamba) or Gated DeltaNet (Qwen3-Next) beside softmax attention, each reading the keys of its
transformers 5.25.0 configuration class (models/<family>/configuration_<family>.py and modeling_<family>.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capsim.errors import SpecError
from capsim.specs.hf_keys import _bool, _decoder, _int, _int_list, _linear_bias
from capsim.specs.model import Mixer, ModelSpec, Position

# transformers 5.25.0 configuration_utils.py L94-97 _LEGACY_LAYER_TYPE_REMAP: "mamba" -> "linear_attention",
# "attention" -> "full_attention" (Granite 4.0-H checkpoints still write the old names)
_LEGACY = {"mamba": "linear_attention", "attention": "full_attention"}


def _mixers(types: Any, layers: int, linear: Mixer) -> tuple[Mixer, ...]:
    """Each layer's mixer from ``layer_types`` (``types``): full_attention is attention, linear_attention the
    family's recurrent layer (``linear``); anything else is refused naming the key."""
    if not isinstance(types, list) or len(types) != layers or \
            any(_LEGACY.get(t, t) not in ("full_attention", "linear_attention") for t in types):
        shown = sorted(set(map(str, types))) if isinstance(types, list) else types
        raise SpecError("config.layer_types", f"must list full_attention/linear_attention for each of {layers} layers, "
                        f"got {shown!r}", "capsim models attention and one recurrent layer kind per family")
    return tuple(Mixer.ATTENTION if _LEGACY.get(t, t) == "full_attention" else linear for t in types)


def _mamba2(cfg: Mapping[str, Any], hidden: int) -> dict[str, Any]:
    """The Mamba-2 keys of GraniteMoeHybridConfig / BambaConfig (their defaults: 128 heads, 1 group, state 256,
    conv 4, expand 2, chunk 256, conv bias on, projection bias off; mamba_d_head "auto" = expand x hidden / heads)."""
    heads, expand = _int(cfg, "mamba_n_heads", 128), _int(cfg, "mamba_expand", 2)
    head = cfg.get("mamba_d_head", "auto")
    head = expand * hidden // heads if head in ("auto", None) else _int(cfg, "mamba_d_head")
    if head * heads != expand * hidden:
        raise SpecError("config.mamba_d_head", f"{head} x mamba_n_heads {heads} != mamba_expand x hidden_size "
                        f"{expand * hidden}", "transformers refuses this config too (validate_architecture)")
    return dict(ssm_heads=heads, ssm_head_dim=head, ssm_groups=_int(cfg, "mamba_n_groups", 1),
                ssm_state=_int(cfg, "mamba_d_state", 256), ssm_conv=_int(cfg, "mamba_d_conv", 4),
                ssm_conv_bias=_bool(cfg, "mamba_conv_bias", True), ssm_proj_bias=_bool(cfg, "mamba_proj_bias", False),
                ssm_chunk=_int(cfg, "mamba_chunk_size", 256))


def _granitemoehybrid(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # GraniteMoeHybridConfig / modeling_granitemoehybrid.py (transformers 5.25.0): layer i is a Mamba-2 layer where
    # layer_types says linear_attention (the default for every layer, configuration L116-117), else Llama attention
    # whose attention_bias gives q/k/v/o biases (GraniteMoeHybridDecoderLayer L1069-1072); every layer has the
    # always-on shared_mlp of shared_intermediate_size and, with num_local_experts > 0, the routed experts of
    # intermediate_size (L1064-1066). RoPE only where position_embedding_type is "rope" (L1167).
    layers, hidden = _int(cfg, "num_hidden_layers", 32), _int(cfg, "hidden_size", 4096)
    cfg = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "max_position_embeddings": 2048, **cfg}
    types = cfg.get("layer_types", cfg.get("layers_block_type"))
    mixers = _mixers(types if types is not None else ["linear_attention"] * layers, layers, Mixer.MAMBA2)
    bias = _bool(cfg, "attention_bias", False)
    shared = _int(cfg, "shared_intermediate_size", 1024, least=0)
    experts = _int(cfg, "num_local_experts", 8, least=0)
    moe: dict[str, Any] = dict(experts=experts, top_k=_int(cfg, "num_experts_per_tok", 2),
                               shared_experts=1 if shared else 0, shared_ffn_hidden=shared or None) if experts > 0 \
        else dict(ffn_hidden=shared)  # no experts: the shared MLP is the layer's only FFN (granite-4.0-h-micro)
    if experts == 0 and not shared:
        raise SpecError("config.shared_intermediate_size", "a layer with neither experts nor a shared MLP",
                        "give num_local_experts or shared_intermediate_size")
    rope = cfg.get("position_embedding_type") == "rope"
    return _decoder(cfg, name, tied=False, max_seq=2048, qkv_bias=bias, o_bias=bias or None,
                    position=Position.ROPE if rope else Position.NONE, mixers=mixers if any(
                        m is not Mixer.ATTENTION for m in mixers) else (), **moe, **_mamba2(cfg, hidden))


def _bamba(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # BambaConfig / modeling_bamba.py (transformers 5.25.0): layer i is attention when it is in attn_layer_indices,
    # else a BambaMixer (Mamba-2, L772-832; layers_block_type, configuration L105-109); every layer has a SwiGLU MLP
    # of intermediate_size whose biases follow mlp_bias (BambaMLP L922-924), the attention's attention_bias;
    # partial RoPE (no parameters).
    cfg = {"vocab_size": 128000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 262144, **cfg}
    layers, hidden = _int(cfg, "num_hidden_layers"), _int(cfg, "hidden_size")
    attn = set(_int_list(cfg, "attn_layer_indices")) if cfg.get("attn_layer_indices") is not None else set()
    bias = _linear_bias(cfg)
    mixers = tuple(Mixer.ATTENTION if i in attn else Mixer.MAMBA2 for i in range(layers))
    return _decoder(cfg, name, tied=False, max_seq=262144, bias=bias, mixers=mixers, **_mamba2(cfg, hidden))


def _qwen3_next(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Qwen3NextConfig / modeling_qwen3_next.py (transformers 5.25.0): layer i is a Gated DeltaNet
    # (Qwen3NextGatedDeltaNet, L645-685) where layer_types says linear_attention, else gated attention
    # (Qwen3NextAttention L241-256: q_proj emits queries and an output gate, q_norm/k_norm RMSNorm(head_dim),
    # attention_bias on q/k/v/o). FFN: Qwen2-MoE's (routed experts of moe_intermediate_size, one shared expert of
    # shared_expert_intermediate_size behind a 1-wide sigmoid gate, Qwen3NextSparseMoeBlock L936-942); dense where
    # i is in mlp_only_layers or (i + 1) % decoder_sparse_step != 0 (Qwen3NextDecoderLayer L970-975). The GDN chunk
    # is 64 (torch_chunk_gated_delta_rule's chunk_size, L431; Megatron-LM@d98e8a64 megatron/core/ssm/
    # gated_delta_net/gdn.py L73 chunk_size = 64). RMSNorm(1 + weight) counts the same parameters.
    cfg = {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 48,
           "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 32768, **cfg}
    layers = _int(cfg, "num_hidden_layers")
    if cfg.get("layer_types") is None:  # Qwen3NextConfig: every 4th layer full attention (interval 4)
        cfg = {**cfg, "layer_types": ["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(layers)]}
    mixers = _mixers(cfg["layer_types"], layers, Mixer.GATED_DELTANET)
    bias = _bool(cfg, "attention_bias", False)
    step, only = _int(cfg, "decoder_sparse_step", 1), set(_int_list(cfg, "mlp_only_layers"))
    experts = _int(cfg, "num_experts", 512, least=0)
    dense_layers = tuple(i for i in range(layers) if i in only or experts == 0 or (i + 1) % step != 0)
    dense = _decoder(cfg, name, tied=False, max_seq=32768, head_dim=_int(cfg, "head_dim", 256), qk_norm=True,
                     qkv_bias=bias, o_bias=bias or None, attn_output_gate=True, mixers=mixers,
                     ssm_heads=_int(cfg, "linear_num_value_heads", 32), ssm_head_dim=_int(cfg, "linear_value_head_dim", 128),
                     ssm_groups=_int(cfg, "linear_num_key_heads", 16), ssm_state=_int(cfg, "linear_key_head_dim", 128),
                     ssm_conv=_int(cfg, "linear_conv_kernel_dim", 4), ssm_chunk=64)
    if experts == 0 or len(dense_layers) == layers:
        return dense
    width, shared = _int(cfg, "moe_intermediate_size", 512), _int(cfg, "shared_expert_intermediate_size", 512, least=0)
    return dense.with_(experts=experts, top_k=_int(cfg, "num_experts_per_tok", 10), ffn_hidden=width,
                       shared_experts=1 if shared else 0, shared_ffn_hidden=shared if shared and shared != width else None,
                       shared_expert_gate=bool(shared), dense_layers=dense_layers,
                       dense_ffn_hidden=dense.ffn_hidden if dense_layers else None)
