"""Parameter counts, total and active, with the embedding counted apart.

Every count is exact for the shapes in ModelSpec (weights, biases, norm gains); the GPT special case is
12*l*h^2 * (1 + 13/(12h) + (V+s)/(12*l*h)) (Narayanan et al. SC21, Eq. 2) plus the final norm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from capsim.specs.model import Arch, ModelSpec, Position


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of one model. ``embedding`` holds token, position and type tables."""

    embedding: int  # token + learned position + token-type tables
    lm_head: int  # untied output projection (0 when tied)
    per_layer: int  # one decoder (or encoder-only) layer, all experts
    per_layer_active: int  # one such layer with only top_k (+ shared) experts
    encoder_per_layer: int  # one encoder layer of an encoder-decoder (0 otherwise)
    dense_per_layer: int  # the part of a layer every token uses (attention, norms, router, shared experts)
    expert_per_layer: int  # routed experts of one layer (0 for dense models)
    other: int  # final norms, pooler, relative-position tables
    layers: int
    encoder_layers: int

    @property
    def transformer(self) -> int:
        """Everything but the embedding tables and an untied LM head."""
        return self.layers * self.per_layer + self.encoder_layers * self.encoder_per_layer + self.other

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.transformer

    @property
    def active(self) -> int:
        """Parameters one token touches: only its top_k routed experts (Mixtral 8x7B: 12.9B of 46.7B)."""
        idle = self.layers * (self.per_layer - self.per_layer_active)
        return self.total - idle

    @property
    def non_embedding(self) -> int:
        """Kaplan et al. 2020's N: total minus embedding tables (an untied LM head counts)."""
        return self.total - self.embedding

    def to_dict(self) -> dict[str, int]:
        out = asdict(self)
        out.update(total=self.total, active=self.active, transformer=self.transformer,
                   non_embedding=self.non_embedding)
        return out


def attention_params(model: ModelSpec) -> int:
    """Q, K, V and output projections (GQA shrinks K and V to kv_dim), with their biases."""
    h, q, kv = model.hidden, model.q_dim, model.kv_dim
    weights = h * q + 2 * h * kv + q * h
    return weights + ((q + 2 * kv + h) if model.bias else 0)


def expert_params(model: ModelSpec) -> int:
    """One FFN (one expert): gate/up/down matrices and biases."""
    h, f, mats = model.hidden, model.ffn_hidden, model.mlp.matrices
    biases = ((mats - 1) * f + h) if model.bias else 0
    return mats * h * f + biases


def norm_params(model: ModelSpec) -> int:
    return model.hidden * model.norm.params_per_channel


def param_counts(model: ModelSpec) -> ParamCounts:
    """Exact parameter counts of ``model``."""
    h = model.hidden
    router = h * model.experts if model.is_moe else 0
    dense = attention_params(model) + 2 * norm_params(model) + router + model.shared_experts * expert_params(model)
    experts = model.experts * expert_params(model) if model.is_moe else expert_params(model)
    active_experts = model.top_k * expert_params(model) if model.is_moe else expert_params(model)
    encoder_layer = 0
    per_layer = dense + experts
    if model.arch is Arch.ENCODER_DECODER:
        encoder_layer = per_layer  # self-attention + FFN + 2 norms
        per_layer = per_layer + attention_params(model) + norm_params(model)  # + cross-attention and its norm
    embedding = model.vocab * h
    if model.position is Position.LEARNED:
        embedding += model.max_seq * h
    embedding += model.type_vocab * h
    stacks = 2 if model.arch is Arch.ENCODER_DECODER else 1
    other = (stacks * norm_params(model) if model.final_norm else 0)
    other += norm_params(model) if model.embedding_norm else 0
    other += (h * h + h) if model.pooler else 0
    other += stacks * model.relative_buckets * model.heads
    return ParamCounts(
        embedding=embedding, lm_head=0 if model.tied_embeddings else model.vocab * h, per_layer=per_layer,
        per_layer_active=per_layer - experts + active_experts, encoder_per_layer=encoder_layer,
        dense_per_layer=per_layer - (experts if model.is_moe else 0),
        expert_per_layer=experts if model.is_moe else 0, other=other, layers=model.layers,
        encoder_layers=model.encoder_layers)
