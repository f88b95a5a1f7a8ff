"""Transformer model shapes: decoder-only (GPT, Llama), encoder-only (BERT), encoder-decoder (T5), MoE."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum

from capsim.errors import SpecError, divisors, require


class Arch(StrEnum):
    DECODER = "decoder"  # causal LM: GPT, Llama, OPT, Mixtral
    ENCODER = "encoder"  # bidirectional: BERT
    ENCODER_DECODER = "encoder-decoder"  # T5


class Mlp(StrEnum):
    """Feed-forward block; gated variants hold three matrices (gate, up, down)."""

    GELU = "gelu"
    RELU = "relu"
    SWIGLU = "swiglu"
    GEGLU = "geglu"

    @property
    def matrices(self) -> int:
        return 3 if self in (Mlp.SWIGLU, Mlp.GEGLU) else 2


class Norm(StrEnum):
    LAYERNORM = "layernorm"  # gain and bias
    RMSNORM = "rmsnorm"  # gain only (Llama, T5)

    @property
    def params_per_channel(self) -> int:
        return 2 if self is Norm.LAYERNORM else 1


class Position(StrEnum):
    LEARNED = "learned"  # a table of max_seq rows (GPT, BERT, OPT)
    ROPE = "rope"  # rotary, no parameters (Llama, Mistral)
    RELATIVE = "relative"  # T5 bucketed bias: buckets x heads in the first layer of each stack
    NONE = "none"


MAX_SIZE = 2**24  # no width, depth, head or expert count of a real model comes near this (16.7M)
MAX_CONTEXT = 2**31 - 1
POSITIVE = ("hidden", "layers", "heads", "vocab", "max_seq", "experts", "top_k", "kv_heads", "head_dim", "ffn_hidden")


def _check_sizes(spec: ModelSpec) -> None:
    """Every integer field is a true integer (not a bool, string or float) in range; sizes that are divided by or
    multiplied into FLOPs are positive."""
    for f in fields(spec):
        if f.type not in ("int", "int | None"):
            continue
        value = getattr(spec, f.name)
        if value is None and f.type == "int | None":
            continue
        low = 1 if f.name in POSITIVE else 0
        high = MAX_CONTEXT if f.name == "max_seq" else MAX_SIZE
        require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high, f"model.{f.name}",
                f"must be an integer from {low} to {high}, got {value!r}", "fix the model's config")


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a transformer. Sizes are counts, not bytes; every default is the GPT-2/3 choice."""

    name: str
    hidden: int  # model width d_model
    layers: int  # decoder layers (encoder layers for encoder-only models)
    heads: int  # query heads
    vocab: int  # embedding rows (padded vocabulary where the run padded it)
    kv_heads: int | None = None  # key/value heads; fewer than heads is GQA, 1 is MQA; None = heads
    head_dim: int | None = None  # None = hidden // heads
    ffn_hidden: int | None = None  # FFN inner width (per expert for MoE); None = 4 * hidden
    mlp: Mlp = Mlp.GELU
    norm: Norm = Norm.LAYERNORM
    position: Position = Position.LEARNED
    max_seq: int = 2048  # context length the model was trained for (rows of a learned position table)
    tied_embeddings: bool = True  # LM head shares the input embedding
    bias: bool = True  # linear layers carry biases (GPT, BERT, OPT) or not (Llama, T5)
    arch: Arch = Arch.DECODER
    encoder_layers: int = 0  # encoder depth of an encoder-decoder model
    experts: int = 1  # routed experts per MoE layer; 1 = dense
    top_k: int = 1  # experts each token is routed to
    shared_experts: int = 0  # always-on experts (DeepSeek-MoE style), each ffn_hidden wide
    type_vocab: int = 0  # token-type embeddings (BERT segment ids)
    pooler: bool = False  # BERT's tanh pooler over [CLS]
    embedding_norm: bool = False  # a norm after the embeddings (BERT)
    final_norm: bool = True  # a norm after the last layer of each stack
    relative_buckets: int = 0  # T5 relative-attention buckets
    source: str = ""  # where the shape comes from
    aliases: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for name in ("mlp", "norm", "position", "arch"):
            enum = {"mlp": Mlp, "norm": Norm, "position": Position, "arch": Arch}[name]
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise SpecError(f"model.{name}", f"unknown value {value!r}",
                                f"use one of {', '.join(e.value for e in enum)}") from None
        _check_sizes(self)
        kv = self.kv_heads if self.kv_heads is not None else self.heads
        object.__setattr__(self, "kv_heads", kv)
        require(kv > 0 and self.heads % kv == 0, "model.kv_heads",
                f"{kv} does not divide heads={self.heads}", f"use one of {divisors(self.heads)}")
        if self.head_dim is None:
            require(self.hidden % self.heads == 0, "model.head_dim",
                    f"hidden={self.hidden} is not a multiple of heads={self.heads}", "give head_dim explicitly")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.ffn_hidden is None:
            object.__setattr__(self, "ffn_hidden", 4 * self.hidden)
        require(self.ffn_hidden > 0, "model.ffn_hidden", f"must be positive, got {self.ffn_hidden}")
        require(self.top_k <= self.experts, "model.top_k",
                f"top_k={self.top_k} exceeds experts={self.experts}", "route to at most as many experts as exist")
        require(self.shared_experts >= 0, "model.shared_experts", "must be >= 0")
        if self.arch is Arch.ENCODER_DECODER:
            require(self.encoder_layers > 0, "model.encoder_layers", "an encoder-decoder needs encoder layers",
                    "set encoder_layers (T5-base: 12)")
        else:
            require(self.encoder_layers == 0, "model.encoder_layers",
                    f"only encoder-decoder models have a separate encoder (arch={self.arch})", "set it to 0")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def causal(self) -> bool:
        return self.arch is not Arch.ENCODER

    @property
    def total_layers(self) -> int:
        return self.layers + self.encoder_layers

    def with_(self, **changes: object) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in out.items()}
