"""The key readers and the shared decoder shape of the Hugging Face import (capsim.specs.hf): each reads one key of a
``config.json`` strictly (a count must be a JSON integer, a flag a JSON bool) or takes the configuration class's
documented default, and stops with one SpecError naming the key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from capsim.errors import SpecError
from capsim.specs.model import Mlp, ModelSpec, Norm, Position

_REQUIRED = object()
SOURCE = "Hugging Face config.json"


def _value(cfg: Mapping[str, Any], key: str, default: Any) -> tuple[Any, bool]:
    """(value, given): the file's value, or ``default`` where the key is absent or null."""
    value = cfg.get(key)
    if value is None:
        if default is _REQUIRED:
            raise SpecError(f"config.{key}", "missing from config.json", "is this a complete Hugging Face config?")
        return default, False
    return value, True


def _int(cfg: Mapping[str, Any], key: str, default: Any = _REQUIRED, least: int = 1) -> Any:
    """A JSON integer of at least ``least`` (a string, float or bool is an error naming the key)."""
    value, given = _value(cfg, key, default)
    if given and (isinstance(value, bool) or not isinstance(value, int) or value < least):
        kind = "a positive integer" if least else "a non-negative integer"
        raise SpecError(f"config.{key}", f"must be {kind}, got {value!r}", "fix the value in config.json")
    return value


def _bool(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    value, _ = _value(cfg, key, default)
    if not isinstance(value, bool):
        raise SpecError(f"config.{key}", f"must be true or false, got {value!r}", "fix the value in config.json")
    return value


def _linear_bias(cfg: Mapping[str, Any]) -> bool:
    """Whether every linear layer has a bias: attention_bias (Q, K, V and O) and mlp_bias (the FFN), both false by
    default, must agree (capsim's ``bias`` covers every linear layer)."""
    bias = _bool(cfg, "attention_bias", False)
    if _bool(cfg, "mlp_bias", False) != bias:
        raise SpecError("config.mlp_bias", "biases on only the attention or only the FFN are not modelled",
                        "capsim's bias covers every linear layer")
    return bias


def _float(cfg: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value, _ = _value(cfg, key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise SpecError(f"config.{key}", f"must be a positive number or null, got {value!r}",
                        "fix the value in config.json")
    return float(value)


def _str(cfg: Mapping[str, Any], key: str, default: str) -> str:
    value, _ = _value(cfg, key, default)
    if not isinstance(value, str):
        raise SpecError(f"config.{key}", f"must be a string, got {value!r}", "fix the value in config.json")
    return value


def _int_list(cfg: Mapping[str, Any], key: str) -> list[int]:
    value, _ = _value(cfg, key, [])
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
        raise SpecError(f"config.{key}", f"must be a list of layer indices, got {value!r}",
                        "fix the value in config.json")
    return value


def _gated(cfg: Mapping[str, Any], *keys: str, default: str = "silu") -> Mlp:
    """A gated FFN from the activation's name: SiLU/swish is SwiGLU, any GELU is GeGLU."""
    act = next((_str(cfg, k, default) for k in keys if cfg.get(k) is not None), default)
    if act in ("silu", "swish"):
        return Mlp.SWIGLU
    if act.startswith("gelu"):
        return Mlp.GEGLU
    raise SpecError(f"config.{keys[0]}", f"activation {act!r} is not modelled", "use silu or a gelu variant")


def _decoder(cfg: Mapping[str, Any], name: str, tied: bool, max_seq: int, **spec: Any) -> ModelSpec:
    """The shape keys every Llama-like config shares (RMSNorm, RoPE, gated FFN, no biases unless stated)."""
    hidden, heads = _int(cfg, "hidden_size"), _int(cfg, "num_attention_heads")
    kw: dict[str, Any] = dict(
        name=name, hidden=hidden, layers=_int(cfg, "num_hidden_layers"),
        heads=heads, kv_heads=_int(cfg, "num_key_value_heads", None),
        # transformers' attention classes: head_dim = getattr(config, "head_dim", None) or hidden // heads (floor)
        head_dim=_int(cfg, "head_dim", None) or hidden // heads, ffn_hidden=_int(cfg, "intermediate_size"), vocab=_int(cfg, "vocab_size"),
        max_seq=_int(cfg, "max_position_embeddings", max_seq), mlp=_gated(cfg, "hidden_act"), norm=Norm.RMSNORM,
        position=Position.ROPE, bias=False, tied_embeddings=_bool(cfg, "tie_word_embeddings", tied), source=SOURCE)
    kw.update(spec)
    return ModelSpec(**kw)


def _global_every(cfg: Mapping[str, Any], layers: int, pattern: int, window_key: str = "sliding_window",
                  local: str = "sliding_attention") -> tuple[int | None, int]:
    """(sliding window, global_every) from ``layer_types`` where the file lists them, else ``pattern`` (0 = every
    layer slides): layer i is global when (i + 1) % global_every == 0, as Gemma 2/3 build their layer types.
    ``local`` names the windowed layers (Llama 4: chunked_attention, its window ``attention_chunk_size``)."""
    window = _int(cfg, window_key, None)
    types = cfg.get("layer_types")
    if types is None:
        return window, pattern
    if not isinstance(types, list) or len(types) != layers or any(t not in (local, "full_attention") for t in types):
        raise SpecError("config.layer_types", f"must list {local}/full_attention for each of {layers} layers, got "
                        f"{sorted(set(map(str, types))) if isinstance(types, list) else types!r}",
                        "capsim models softmax attention layers, full or windowed")
    types = ["sliding_attention" if t == local else t for t in types]
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    if len(full) == layers:
        return None, 0
    every = full[0] + 1 if full else 0
    if every and any((t == "full_attention") != ((i + 1) % every == 0) for i, t in enumerate(types)):
        raise SpecError("config.layer_types", "global layers that are not every n-th layer are not modelled",
                        "capsim models a global layer every global_every layers (Gemma 2: 2, Gemma 3: 6)")
    if window is None:
        raise SpecError(f"config.{window_key}", "layer_types lists windowed layers but no window size")
    return window, every
