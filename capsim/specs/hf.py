"""Import a Hugging Face ``config.json`` (a local file or dict, never the network) into a ModelSpec.

Each family reads the keys of its ``transformers`` configuration class (models/<family>/configuration_<family>.py)
that change parameters, FLOPs or the KV cache; a key the file leaves out takes that class's documented default, and
keys without a cost (rope_theta, eps, token ids, routing scale factors) are not read. Values are checked strictly:
a count must be a JSON integer (not a string, float or bool) and positive, or the import stops with one error naming
the key. What a family has that capsim does not model is an error too, never dropped (Qwen's windows that start at
``max_window_layers``, irregular ``layer_types``, OPT-350m's projected embeddings), except what is priced in its
nearest form and named in the spec's source. Hybrid stacks (Mamba-2 in GraniteMoeHybrid and Bamba, Gated DeltaNet in
Qwen3-Next) are read layer by layer (``capsim.specs.hf_hybrid``); a further recurrent kind is refused by the key.
Approximations named in the source: gpt-oss's clamped SwiGLU (``GPT_OSS_APPROX``); Llama 4's chunked attention
(``LLAMA4_APPROX``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from capsim.errors import SpecError
from capsim.inputs import json_object, read_json_object
from capsim.specs.hf_hybrid import _bamba, _granitemoehybrid, _qwen3_next
from capsim.specs.hf_keys import (
    SOURCE,
    _bool,
    _decoder,
    _float,
    _gated,
    _global_every,
    _int,
    _int_list,
    _linear_bias,
    _str,
)
from capsim.specs.hf_moe import _dbrx, _glm4_moe, _granitemoe, _olmoe, _phimoe
from capsim.specs.model import Arch, Mlp, ModelSpec, Norm, Position


def _llama(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # LlamaConfig / MistralConfig / MixtralConfig (attention_bias covers Q, K, V and O; mlp_bias the FFN; Mistral's
    # sliding_window applies to every layer)
    experts = _int(cfg, "num_local_experts", 1)
    bias = _linear_bias(cfg)
    # MinistralConfig (and Mistral configs written by transformers >= 4.53) list layer_types; every layer slides
    # where sliding_window is set and they do not
    window, every = _global_every(cfg, _int(cfg, "num_hidden_layers"), 0)
    return _decoder(cfg, name, tied=False, max_seq=4096, bias=bias, experts=experts,
                    top_k=_int(cfg, "num_experts_per_tok", 2) if experts > 1 else 1,
                    sliding_window=window, global_every=every if window else 0)


def _nemotron(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # NemotronConfig (transformers models/nemotron, Nemotron-4 / Minitron): NemotronMLP is up_proj -> act -> down_proj,
    # not gated, with hidden_act "relu2" (squared ReLU); NemotronLayerNorm1P is a LayerNorm with weight and bias;
    # attention_bias and mlp_bias default to false; the partial rotary factor changes no FLOP count capsim prices
    act = _str(cfg, "hidden_act", "relu2")
    if act != "relu2":
        raise SpecError("config.hidden_act", f"activation {act!r} is not modelled for Nemotron", "use relu2")
    bias = _linear_bias(cfg)
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    return ModelSpec(
        name=name, hidden=hidden, layers=_int(cfg, "num_hidden_layers"), heads=heads,
        kv_heads=_int(cfg, "num_key_value_heads", None), head_dim=_int(cfg, "head_dim", None) or hidden // heads,
        ffn_hidden=_int(cfg, "intermediate_size"), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "max_position_embeddings", 4096), mlp=Mlp.SQUARED_RELU, norm=Norm.LAYERNORM,
        position=Position.ROPE, bias=bias, tied_embeddings=_bool(cfg, "tie_word_embeddings", False), source=SOURCE)


def _no_qwen_window(cfg: Mapping[str, Any]) -> None:
    """Qwen2/Qwen3 slide only from layer max_window_layers on, and only with use_sliding_window (false in every
    released checkpoint); that split is not modelled."""
    if _bool(cfg, "use_sliding_window", False) and _int(cfg, "max_window_layers", 28) < _int(cfg, "num_hidden_layers"):
        raise SpecError("config.use_sliding_window", "sliding windows from layer max_window_layers on are not modelled",
                        "set use_sliding_window false (as the released Qwen checkpoints do)")


def _qwen2(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Qwen2Config: Qwen2Attention builds q/k/v_proj with bias=True and o_proj without (modeling_qwen2.py)
    _no_qwen_window(cfg)
    return _decoder(cfg, name, tied=False, max_seq=32768, qkv_bias=True)


def _no_output_bias(cfg: Mapping[str, Any]) -> None:
    if _bool(cfg, "attention_bias", False):
        raise SpecError("config.attention_bias", "output-projection biases without FFN biases are not modelled",
                        "set attention_bias false (as the released checkpoints do)")


def _qwen3(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Qwen3Config: explicit head_dim (128), q_norm/k_norm RMSNorm(head_dim), attention_bias (default false) gives
    # q/k/v/o_proj biases (Qwen3Attention / Qwen3MoeAttention, bias=config.attention_bias), the MLP none
    _no_qwen_window(cfg)
    bias = _bool(cfg, "attention_bias", False)
    return _decoder(cfg, name, tied=False, max_seq=32768, head_dim=_int(cfg, "head_dim", 128), qk_norm=True,
                    qkv_bias=bias, o_bias=bias or None)


def _qwen3_moe(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Qwen3MoeConfig: layer i routes to experts unless it is in mlp_only_layers or (i + 1) % decoder_sparse_step != 0
    # (Qwen3MoeDecoderLayer); dense layers use intermediate_size, experts moe_intermediate_size. norm_topk_prob
    # only rescales routing weights and costs nothing.
    dense = _qwen3(cfg, name)
    layers, step = dense.layers, _int(cfg, "decoder_sparse_step", 1)
    only = set(_int_list(cfg, "mlp_only_layers"))
    dense_layers = tuple(i for i in range(layers) if i in only or (i + 1) % step != 0)
    return dense.with_(experts=_int(cfg, "num_experts"), top_k=_int(cfg, "num_experts_per_tok"),
                       ffn_hidden=_int(cfg, "moe_intermediate_size"), dense_layers=dense_layers,
                       dense_ffn_hidden=dense.ffn_hidden if dense_layers else None)


def _qwen2_moe(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Qwen2MoeConfig (transformers models/qwen2_moe): Qwen2's attention (q/k/v bias); layer i routes to experts unless
    # it is in mlp_only_layers or (i + 1) % decoder_sparse_step != 0 (Qwen2MoeDecoderLayer), dense layers of
    # intermediate_size; every MoE layer adds one always-on shared expert of shared_expert_intermediate_size
    # (Qwen2MoeSparseMoeBlock.shared_expert) behind a 1-wide sigmoid gate (shared_expert_gate = nn.Linear(hidden, 1)).
    # Qwen2MoeAttention's q/k/v biases follow qkv_bias (default true; Qwen2MoeConfig), o_proj has none
    dense = _qwen2(cfg, name).with_(qkv_bias=_bool(cfg, "qkv_bias", True))
    layers, step = dense.layers, _int(cfg, "decoder_sparse_step", 1)
    only = set(_int_list(cfg, "mlp_only_layers"))
    dense_layers = tuple(i for i in range(layers) if i in only or (i + 1) % step != 0)
    width, shared = _int(cfg, "moe_intermediate_size"), _int(cfg, "shared_expert_intermediate_size", 5632)
    return dense.with_(experts=_int(cfg, "num_experts", 60), top_k=_int(cfg, "num_experts_per_tok", 4),
                       ffn_hidden=width, shared_experts=1, shared_ffn_hidden=shared if shared != width else None,
                       shared_expert_gate=True, dense_layers=dense_layers,
                       dense_ffn_hidden=dense.ffn_hidden if dense_layers else None)


LLAMA4_APPROX = ("chunked local attention (attention_chunk_size) priced as a sliding window of that size, an upper "
                 "bound on its keys; the weightless RMS qk-norm priced on every layer (Llama 4 skips it on NoPE "
                 "layers); attention temperature tuning not counted")


def _llama4(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Llama4TextConfig / Llama4TextMoe (transformers models/llama4): the decoder is text_config (the vision tower is
    # not modelled); layer i is MoE when it is in moe_layers, by default every interleave_moe_layer_step-th layer
    # counting from step - 1 (Scout 1: all, Maverick 2: odd layers), with num_local_experts routed experts and one
    # always-on shared expert, both of intermediate_size; the other layers are dense MLPs of intermediate_size_mlp.
    # RoPE layers use chunked attention, every 4th layer (no_rope_layers default: (i + 1) % 4 == 0) is NoPE and global.
    text = cfg.get("text_config", cfg)
    if not isinstance(text, Mapping):
        raise SpecError("config.text_config", "a llama4 config holds its decoder in text_config",
                        "give the full config.json of the checkpoint")
    layers, step = _int(text, "num_hidden_layers"), _int(text, "interleave_moe_layer_step", 1)
    moe = set(_int_list(text, "moe_layers")) if text.get("moe_layers") is not None else \
        set(range(step - 1, layers, step))
    # layer_types (Llama4TextConfig: chunked_attention except every no_rope_layer_interval-th layer) must be that
    # every-4th pattern; the qk-norm is Llama4TextWeightlessRMSNorm, no weights (qk_norm_gains "none";
    # modeling_llama4.py L334-335 at transformers 5.25.0)
    chunk, every = _global_every(text, layers, 4, window_key="attention_chunk_size", local="chunked_attention")
    if text.get("no_rope_layers") is not None and (every and _int_list(text, "no_rope_layers") !=
                                                    [int((i + 1) % every != 0) for i in range(layers)]):
        raise SpecError("config.no_rope_layers", "NoPE layers that are not the global (full_attention) layers are "
                        "not modelled", "give no_rope_layers 0 exactly on the full-attention layers")
    qk_norm = _bool(text, "use_qk_norm", True)
    bias = _bool(text, "attention_bias", False)  # Llama4TextAttention: q/k/v/o_proj bias=config.attention_bias
    spec = _decoder(text, name, tied=False, max_seq=131072, head_dim=_int(text, "head_dim", 128),
                    qkv_bias=bias, o_bias=bias or None,
                    qk_norm=qk_norm, qk_norm_gains="none" if qk_norm else "head",
                    experts=_int(text, "num_local_experts"),
                    top_k=_int(text, "num_experts_per_tok", 1), shared_experts=1,
                    dense_layers=tuple(i for i in range(layers) if i not in moe),
                    dense_ffn_hidden=_int(text, "intermediate_size_mlp") if len(moe) < layers else None,
                    sliding_window=chunk, global_every=every if chunk else 0,
                    source=SOURCE + " text_config (vision tower not modelled; " + LLAMA4_APPROX + ")")
    return spec


# The configuration classes' defaults where a Gemma config.json leaves a key out (Gemma 3's text_config names only
# what differs): GemmaConfig, Gemma2Config and Gemma3TextConfig.__init__ in transformers (models/gemma*/).
_GEMMA_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256, "max_position_embeddings": 8192},
    2: {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 8192,
        "sliding_window": 4096, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0},
    3: {"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
        "sliding_window": 4096, "sliding_window_pattern": 6},
}


def _gemma(cfg: Mapping[str, Any], name: str, version: int) -> ModelSpec:
    # GemmaConfig / Gemma2Config / Gemma3TextConfig: GeGLU (gelu_pytorch_tanh), tied embeddings scaled by
    # sqrt(hidden); Gemma 2/3 add post-norms on both sub-layers; Gemma 2 soft-caps attention (50) and logits (30)
    # and alternates sliding (4096) and global layers; Gemma 3 has q/k norms and 5 sliding (1024) per global layer.
    cfg = {**_GEMMA_DEFAULTS[version], **cfg}  # a key the file gives, even as null, wins
    layers = _int(cfg, "num_hidden_layers")
    window, every = None, 0
    if version > 1:
        pattern = _int(cfg, "sliding_window_pattern", _int(cfg, "_sliding_window_pattern", 2 if version == 2 else 6))
        window, every = _global_every(cfg, layers, pattern)
    return _decoder(cfg, name, tied=True, max_seq=8192,
                    mlp=_gated(cfg, "hidden_activation", "hidden_act", default="gelu_pytorch_tanh"),
                    embedding_scale=True, sandwich_norm=version > 1, qk_norm=version == 3, sliding_window=window,
                    global_every=every if window else 0, attn_softcap=_float(cfg, "attn_logit_softcapping", None),
                    logit_softcap=_float(cfg, "final_logit_softcapping", None))


def _gemma3(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    """Gemma 3 multimodal configs nest the decoder in text_config (Gemma3Config); the SigLIP vision tower and its
    projector are not modelled: the spec is the text decoder."""
    text = cfg.get("text_config")
    if not isinstance(text, Mapping):
        raise SpecError("config.text_config", "a gemma3 config holds its decoder in text_config",
                        "give the full config.json of the checkpoint")
    spec = _gemma(text, name, 3)
    return spec.with_(source=SOURCE + " text_config (vision tower not modelled)")


def _phi3(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # Phi3Config: fused qkv_proj and gate_up_proj (the same weights as separate ones), no biases, untied; the sliding
    # window (Phi-3-mini-4k: 2047) applies to every layer
    return _decoder(cfg, name, tied=False, max_seq=4096, sliding_window=_int(cfg, "sliding_window", None))


def _deepseek(cfg: Mapping[str, Any], name: str, version: int) -> ModelSpec:
    # DeepseekV2Config / DeepseekV3Config (modeling_deepseek.py): layer i is MoE when i >= first_k_dense_replace and
    # i % moe_layer_freq == 0; shared experts are one MLP of moe_intermediate_size x n_shared_experts; noaux_tc
    # routing (V3) adds a per-expert e_score_correction_bias. V3's multi-token-prediction module
    # (num_nextn_predict_layers) is a training and speculative-decoding add-on outside the 671B main model: not counted.
    _no_output_bias(cfg)
    layers = _int(cfg, "num_hidden_layers")
    first, freq = _int(cfg, "first_k_dense_replace", 0, least=0), _int(cfg, "moe_layer_freq", 1)
    routed = _int(cfg, "n_routed_experts", 1)
    dense = tuple(i for i in range(layers) if not (routed > 1 and i >= first and i % freq == 0))
    nope, rope = _int(cfg, "qk_nope_head_dim", 128), _int(cfg, "qk_rope_head_dim", 64)
    moe = routed > 1
    kw: dict[str, Any] = {}
    if moe:
        kw = dict(experts=routed, top_k=_int(cfg, "num_experts_per_tok"),
                  shared_experts=_int(cfg, "n_shared_experts", 0, least=0), ffn_hidden=_int(cfg, "moe_intermediate_size"),
                  dense_layers=dense, dense_ffn_hidden=_int(cfg, "intermediate_size") if dense else None,
                  router_bias=_str(cfg, "topk_method", "noaux_tc" if version == 3 else "greedy") == "noaux_tc")
    mtp = _int(cfg, "num_nextn_predict_layers", 0, least=0)
    return _decoder(cfg, name, tied=False, max_seq=4096, head_dim=nope + rope, kv_heads=_int(cfg, "num_attention_heads"),
                    kv_lora_rank=_int(cfg, "kv_lora_rank"), q_lora_rank=_int(cfg, "q_lora_rank", None),
                    qk_rope_head_dim=rope, v_head_dim=_int(cfg, "v_head_dim", 128),
                    source=SOURCE + (f" ({mtp} MTP layer(s) not counted, as transformers drops them; training prices "
                                      f"them with --mtp-num-layers={mtp})" if mtp else ""), **kw)


# What capsim prices in its nearest form for gpt-oss (each named in the spec's source): the learned per-head sink
# logits are counted (attn_sinks: 64 parameters a layer), their one more score per query row is not priced; the
# clamped SwiGLU (x * sigmoid(1.702 x) * (up + 1)) priced as SwiGLU, its clamp at swiglu_limit as glu_clamp; YaRN
# RoPE as RoPE with its factor as yarn_factor; the router's bias as router_bias (one per expert).
GPT_OSS_APPROX = ("attention sinks counted as attn_sinks (64 learned logits per layer), their extra softmax column "
                  "not priced; clamped SwiGLU (alpha 1.702, up + 1) priced as SwiGLU, its clamp (swiglu_limit) as "
                  "glu_clamp; YaRN RoPE as RoPE with yarn_factor; router bias counted as router_bias")


def _yarn_factor(cfg: Mapping[str, Any], default: float | None) -> float | None:
    """The YaRN factor of ``rope_scaling`` (``rope_parameters`` in newer transformers), ``default`` where the file
    has neither; None for another rope_type."""
    scaling = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if not scaling:
        return default
    if not isinstance(scaling, Mapping) or scaling.get("rope_type", scaling.get("type")) != "yarn":
        return None
    return _float(scaling, "factor", default or 1.0)


def _gpt_oss(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # GptOssConfig (transformers models/gpt_oss/configuration_gpt_oss.py @828a27fd): defaults are gpt-oss-120b's;
    # attention_bias is forced True and the experts' gate_up/down projections carry biases (modeling_gpt_oss.py), so
    # every linear layer has a bias; every layer is MoE (num_local_experts of intermediate_size); layer_types
    # alternates sliding (sliding_window 128) and full attention, default "sliding" when (i + 1) % 2 != 0.
    cfg = {"num_hidden_layers": 36, "num_local_experts": 128, "vocab_size": 201088, "hidden_size": 2880,
           "intermediate_size": 2880, "head_dim": 64, "num_attention_heads": 64, "num_key_value_heads": 8,
           "sliding_window": 128, "max_position_embeddings": 131072, "num_experts_per_tok": 4, **cfg}
    if _str(cfg, "hidden_act", "silu") != "silu":
        raise SpecError("config.hidden_act", f"{cfg['hidden_act']!r} is not gpt-oss's gated activation", "use silu")
    window, every = _global_every(cfg, _int(cfg, "num_hidden_layers"), 2)
    # GptOssConfig defaults: swiglu_limit 7.0, rope_parameters yarn factor 32 (configuration_gpt_oss.py @02b8f42b)
    return _decoder(cfg, name, tied=False, max_seq=131072, bias=True, router_bias=True, attn_sinks=True,
                    experts=_int(cfg, "num_local_experts"), top_k=_int(cfg, "num_experts_per_tok"),
                    sliding_window=window, global_every=every if window else 0,
                    glu_clamp=_float(cfg, "swiglu_limit", 7.0), yarn_factor=_yarn_factor(cfg, 32.0),
                    source=SOURCE + " (" + GPT_OSS_APPROX + ")")


def _refuse(field: str, what: str, fix: str) -> Callable[[Mapping[str, Any], str], ModelSpec]:
    def family(cfg: Mapping[str, Any], name: str) -> ModelSpec:
        raise SpecError(f"config.{field}", what, fix)
    return family


def _kimi_k25(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    """Kimi-K2.5 (Kimi_K25Config, transformers models/kimi_k25): a DeepSeek-V3 text_config beside a vision tower
    (not modelled), as Gemma 3 nests its decoder."""
    text = cfg.get("text_config")
    if not isinstance(text, Mapping):
        raise SpecError("config.text_config", "a kimi_k25 config holds its decoder in text_config",
                        "give the full config.json of the checkpoint")
    spec = _deepseek(text, name, 3)
    return spec.with_(source=spec.source + " text_config (vision tower not modelled)")


def _gpt2(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    hidden = _int(cfg, "n_embd")
    return ModelSpec(
        name=name, hidden=hidden, layers=_int(cfg, "n_layer"), heads=_int(cfg, "n_head"),
        ffn_hidden=_int(cfg, "n_inner", 4 * hidden), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "n_positions", _int(cfg, "n_ctx", 1024)),
        tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source=SOURCE)


# GPT-J and Falcon run attention and the MLP in parallel from one block input (transformers modeling_gptj.py
# GPTJBlock.forward: hidden = attn_output + feed_forward_hidden_states + residual; modeling_falcon.py FalconDecoderLayer
# with parallel_attn). capsim prices them as the two sub-layers they hold: the same GEMMs, attention and KV cache; the
# block's norms and residual adds differ by one elementwise pass (said in each model's source).
PARALLEL = "; attention and MLP in parallel, priced as sequential sub-layers (same GEMMs and KV cache)"


def _gptj(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    hidden = _int(cfg, "n_embd")
    # modeling_gptj.py: q/k/v/out projections bias=False, fc_in/fc_out and lm_head carry biases (priced without:
    # capsim's bias switch is per model; the MLP's biases are 0.01% of GPT-J-6B's parameters)
    return ModelSpec(
        name=name, hidden=hidden, layers=_int(cfg, "n_layer"), heads=_int(cfg, "n_head"),
        ffn_hidden=_int(cfg, "n_inner", 4 * hidden), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "n_positions", 2048), position=Position.ROPE, bias=False,
        tied_embeddings=_bool(cfg, "tie_word_embeddings", False), source=SOURCE + PARALLEL)


def _falcon(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    if _bool(cfg, "alibi", False):
        raise SpecError("config.alibi", "ALiBi Falcon models are not modelled", "use a rotary Falcon (7B, 40B, 180B)")
    if not _bool(cfg, "parallel_attn", True):
        raise SpecError("config.parallel_attn", "sequential Falcon blocks are not modelled")
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    # modeling_falcon.py FalconAttention: new_decoder_architecture -> num_kv_heads; else multi_query -> 1 KV head
    if _bool(cfg, "new_decoder_architecture", False):
        kv = _int(cfg, "num_kv_heads", heads)
    else:
        kv = 1 if _bool(cfg, "multi_query", True) else heads
    return ModelSpec(
        name=name, hidden=hidden, layers=_int(cfg, "num_hidden_layers"), heads=heads, kv_heads=kv,
        ffn_hidden=_int(cfg, "ffn_hidden_size", 4 * hidden), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "max_position_embeddings", 2048), position=Position.ROPE, bias=_bool(cfg, "bias", False),
        tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source=SOURCE + PARALLEL)


def _opt(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    hidden = _int(cfg, "hidden_size")
    proj = _int(cfg, "word_embed_proj_dim", hidden)
    if proj != hidden:
        raise SpecError("config.word_embed_proj_dim", f"{proj} != hidden_size {hidden}: OPT-350m's projected "
                        "embeddings are not modelled", "use a catalog model or a config without the projection")
    act = _str(cfg, "activation_function", "relu")
    return ModelSpec(
        name=name, hidden=hidden, layers=_int(cfg, "num_hidden_layers"), heads=_int(cfg, "num_attention_heads"),
        ffn_hidden=_int(cfg, "ffn_dim"), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "max_position_embeddings", 2048), mlp=Mlp.GELU if "gelu" in act else Mlp.RELU,
        bias=_bool(cfg, "enable_bias", True), tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source=SOURCE)


def _bert(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    return ModelSpec(
        name=name, hidden=_int(cfg, "hidden_size"), layers=_int(cfg, "num_hidden_layers"),
        heads=_int(cfg, "num_attention_heads"), ffn_hidden=_int(cfg, "intermediate_size"),
        vocab=_int(cfg, "vocab_size"), max_seq=_int(cfg, "max_position_embeddings", 512),
        arch=Arch.ENCODER, type_vocab=_int(cfg, "type_vocab_size", 2), pooler=True, embedding_norm=True,
        final_norm=False, source=SOURCE)


def _t5(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    proj = _str(cfg, "feed_forward_proj", "relu")
    gated = proj.startswith("gated")
    layers = _int(cfg, "num_layers")
    return ModelSpec(
        name=name, hidden=_int(cfg, "d_model"), layers=_int(cfg, "num_decoder_layers", layers),
        encoder_layers=layers, heads=_int(cfg, "num_heads"), head_dim=_int(cfg, "d_kv"),
        ffn_hidden=_int(cfg, "d_ff"), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "n_positions", 512), arch=Arch.ENCODER_DECODER,
        mlp=(Mlp.GEGLU if "gelu" in proj else Mlp.SWIGLU) if gated else (Mlp.GELU if "gelu" in proj else Mlp.RELU),
        norm=Norm.RMSNORM, position=Position.RELATIVE,
        relative_buckets=_int(cfg, "relative_attention_num_buckets", 32), bias=False,
        tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source=SOURCE)


_FAMILIES: dict[str, Callable[[Mapping[str, Any], str], ModelSpec]] = {
    "llama": _llama, "mistral": _llama, "mixtral": _llama, "qwen2": _qwen2, "qwen3": _qwen3,
    "qwen3_moe": _qwen3_moe, "qwen2_moe": _qwen2_moe, "llama4": _llama4, "llama4_text": _llama4, "gemma": lambda c, n: _gemma(c, n, 1), "gemma2": lambda c, n: _gemma(c, n, 2),
    "gemma3_text": lambda c, n: _gemma(c, n, 3), "gemma3": _gemma3, "phi3": _phi3,
    "deepseek_v2": lambda c, n: _deepseek(c, n, 2), "deepseek_v3": lambda c, n: _deepseek(c, n, 3),
    "gpt_oss": _gpt_oss, "nemotron": _nemotron, "gpt2": _gpt2, "gptj": _gptj, "falcon": _falcon, "opt": _opt, "bert": _bert, "t5": _t5,
    # Kimi-K2's config.json says model_type kimi_k2 with DeepSeek-V3's modeling code (transformers'
    # Kimi_K25Config.__post_init__ maps kimi_k2 to deepseek_v3)
    "kimi_k2": lambda c, n: _deepseek(c, n, 3), "kimi_k25": _kimi_k25, "ministral": _llama, "glm4_moe": _glm4_moe,
    "olmoe": _olmoe, "phimoe": _phimoe, "granitemoe": _granitemoe, "granitemoeshared": _granitemoe,
    "granitemoehybrid": _granitemoehybrid, "dbrx": _dbrx, "bamba": _bamba, "qwen3_next": _qwen3_next,
}


def _read(config: str | Path | Mapping[str, Any], name: str | None) -> tuple[dict[str, Any], str | None]:
    """The config as a dict: a mapping, JSON text, or a file (UTF-8 JSON whose top level is an object, without
    NaN or Infinity)."""
    if isinstance(config, Mapping):
        return dict(config), name
    text = str(config)
    if text.lstrip().startswith("{"):
        return json_object(text, "config", "the config text", constants=True), name
    path = Path(config)
    cfg = read_json_object(path, "config", "Hugging Face config.json", constants=True)
    return cfg, name or (path.parent.name if path.name == "config.json" else path.stem)


def from_hf_config(config: str | Path | Mapping[str, Any], name: str | None = None) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face ``config.json`` path, JSON text, or parsed dict."""
    cfg, name = _read(config, name)
    if not isinstance(cfg, dict):
        raise SpecError("config", f"must be a JSON object, got {type(cfg).__name__}", "give a config.json")
    family = cfg.get("model_type")
    if not isinstance(family, str) or family.lower() not in _FAMILIES:
        raise SpecError("config.model_type", f"unsupported family {family!r}",
                        f"supported: {', '.join(sorted(_FAMILIES))}")
    name = name or str(cfg.get("_name_or_path") or family)
    return _FAMILIES[family.lower()](cfg, name)
