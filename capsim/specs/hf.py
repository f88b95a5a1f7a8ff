"""Import a Hugging Face ``config.json`` (a local file or dict, never the network) into a ModelSpec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from capsim.errors import SpecError
from capsim.inputs import integer, json_object, read_json_object
from capsim.specs.model import Arch, Mlp, ModelSpec, Norm, Position


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = SpecError) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    if default is SpecError:
        raise SpecError(f"config.{keys[0]}", "missing from config.json", "is this a complete Hugging Face config?")
    return default


def _str(cfg: Mapping[str, Any], key: str, default: str) -> str:
    value = _get(cfg, key, default=default)
    if not isinstance(value, str):
        raise SpecError(f"config.{key}", f"must be a string, got {value!r}", f"e.g. {default!r}")
    return value


def _bool(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    value = _get(cfg, key, default=default)
    if not isinstance(value, bool):
        raise SpecError(f"config.{key}", f"must be true or false, got {value!r}", "write a JSON boolean")
    return value


def _llama(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    # LlamaConfig / MistralConfig / MixtralConfig field names (transformers, models/llama/configuration_llama.py)
    experts = integer(_get(cfg, "num_local_experts", default=1), "config.num_local_experts")
    act = _str(cfg, "hidden_act", "silu")
    return ModelSpec(
        name=name, hidden=_get(cfg, "hidden_size"), layers=_get(cfg, "num_hidden_layers"),
        heads=_get(cfg, "num_attention_heads"), kv_heads=_get(cfg, "num_key_value_heads", default=None),
        head_dim=_get(cfg, "head_dim", default=None), ffn_hidden=_get(cfg, "intermediate_size"),
        vocab=_get(cfg, "vocab_size"), max_seq=_get(cfg, "max_position_embeddings", default=4096),
        mlp=Mlp.GEGLU if "gelu" in act else Mlp.SWIGLU, norm=Norm.RMSNORM, position=Position.ROPE,
        bias=_bool(cfg, "attention_bias", False), tied_embeddings=_bool(cfg, "tie_word_embeddings", False),
        experts=experts,
        top_k=integer(_get(cfg, "num_experts_per_tok", default=1), "config.num_experts_per_tok") if experts > 1 else 1,
        source="Hugging Face config.json")


def _gpt2(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    hidden = _get(cfg, "n_embd")
    return ModelSpec(
        name=name, hidden=hidden, layers=_get(cfg, "n_layer"), heads=_get(cfg, "n_head"),
        ffn_hidden=_get(cfg, "n_inner", default=None), vocab=_get(cfg, "vocab_size"),
        max_seq=_get(cfg, "n_positions", "n_ctx", default=1024),
        tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source="Hugging Face config.json")


def _opt(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    hidden = _get(cfg, "hidden_size")
    proj = _get(cfg, "word_embed_proj_dim", default=hidden)
    if proj != hidden:
        raise SpecError("config.word_embed_proj_dim", f"{proj} != hidden_size {hidden}: OPT-350m's projected "
                        "embeddings are not modelled", "use a catalog model or a config without the projection")
    act = _str(cfg, "activation_function", "relu")
    return ModelSpec(
        name=name, hidden=hidden, layers=_get(cfg, "num_hidden_layers"), heads=_get(cfg, "num_attention_heads"),
        ffn_hidden=_get(cfg, "ffn_dim"), vocab=_get(cfg, "vocab_size"),
        max_seq=_get(cfg, "max_position_embeddings", default=2048), mlp=Mlp.GELU if "gelu" in act else Mlp.RELU,
        bias=_bool(cfg, "enable_bias", True),
        tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source="Hugging Face config.json")


def _bert(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    return ModelSpec(
        name=name, hidden=_get(cfg, "hidden_size"), layers=_get(cfg, "num_hidden_layers"),
        heads=_get(cfg, "num_attention_heads"), ffn_hidden=_get(cfg, "intermediate_size"),
        vocab=_get(cfg, "vocab_size"), max_seq=_get(cfg, "max_position_embeddings", default=512),
        arch=Arch.ENCODER, type_vocab=_get(cfg, "type_vocab_size", default=2), pooler=True, embedding_norm=True,
        final_norm=False, source="Hugging Face config.json")


def _t5(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    proj = _str(cfg, "feed_forward_proj", "relu")
    gated = proj.startswith("gated")
    layers = _get(cfg, "num_layers")
    return ModelSpec(
        name=name, hidden=_get(cfg, "d_model"), layers=_get(cfg, "num_decoder_layers", default=layers),
        encoder_layers=layers, heads=_get(cfg, "num_heads"), head_dim=_get(cfg, "d_kv"),
        ffn_hidden=_get(cfg, "d_ff"), vocab=_get(cfg, "vocab_size"),
        max_seq=_get(cfg, "n_positions", default=512), arch=Arch.ENCODER_DECODER,
        mlp=(Mlp.GEGLU if "gelu" in proj else Mlp.SWIGLU) if gated else (Mlp.GELU if "gelu" in proj else Mlp.RELU),
        norm=Norm.RMSNORM, position=Position.RELATIVE,
        relative_buckets=_get(cfg, "relative_attention_num_buckets", default=32), bias=False,
        tied_embeddings=_bool(cfg, "tie_word_embeddings", True), source="Hugging Face config.json")


_FAMILIES: dict[str, Callable[[Mapping[str, Any], str], ModelSpec]] = {
    "llama": _llama, "mistral": _llama, "mixtral": _llama, "gpt2": _gpt2, "opt": _opt, "bert": _bert, "t5": _t5,
}


def from_hf_config(config: str | Path | Mapping[str, Any], name: str | None = None) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face ``config.json`` path, JSON text, or parsed dict."""
    if isinstance(config, Mapping):
        cfg = dict(config)
    else:
        text = str(config)
        if text.lstrip().startswith("{"):
            cfg = json_object(text, "config", "the config text")
        else:
            path = Path(config)
            cfg = read_json_object(path, "config", "Hugging Face config.json")
            name = name or (path.parent.name if path.name == "config.json" else path.stem)
    family = cfg.get("model_type", "")
    if not isinstance(family, str):
        raise SpecError("config.model_type", f"must be a string, got {family!r}", "e.g. \"llama\"")
    family = family.lower()
    if family not in _FAMILIES:
        raise SpecError("config.model_type", f"unsupported family {family!r}",
                        f"supported: {', '.join(sorted(_FAMILIES))}")
    name = name or str(cfg.get("_name_or_path") or family)
    return _FAMILIES[family](cfg, name)
