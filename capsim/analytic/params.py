"""Parameter counts, total and active, with the embedding counted apart.

Every count is exact for the shapes in ModelSpec (weights, biases, norm gains); the GPT special case is
12*l*h^2 * (1 + 13/(12h) + (V+s)/(12*l*h)) (Narayanan et al. SC21, Eq. 2) plus the final norm. Layers may differ
(DeepSeek's first dense layers among MoE ones), so the layer fields are sums over the stack; the ``per_layer``
properties are their averages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from capsim._types import Num
from capsim.specs.model import Arch, Mixer, ModelSpec, Position


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of one model. ``embedding`` holds token, position and type tables."""

    embedding: int  # token + learned position + token-type tables
    lm_head: int  # untied output projection (0 when tied)
    decoder: int  # all decoder (or encoder-only) layers, all experts
    decoder_active: int  # those layers with only top_k routed (+ shared) experts
    experts: int  # routed expert weights of those layers (0 for dense models)
    encoder: int  # all encoder layers of an encoder-decoder (0 otherwise)
    other: int  # final norms, pooler, relative-position tables
    layers: int
    encoder_layers: int

    @property
    def per_layer(self) -> float:
        """One decoder layer, all experts (the average where layers differ)."""
        return self.decoder / self.layers

    @property
    def per_layer_active(self) -> float:
        return self.decoder_active / self.layers

    @property
    def expert_per_layer(self) -> float:
        """Routed experts of one layer (the average over the stack; 0 for dense models)."""
        return self.experts / self.layers

    @property
    def dense_per_layer(self) -> float:
        """The part of a layer every token uses (attention, norms, router, shared experts, dense FFNs)."""
        return (self.decoder - self.experts) / self.layers

    @property
    def encoder_per_layer(self) -> float:
        return self.encoder / self.encoder_layers if self.encoder_layers else 0.0

    @property
    def transformer(self) -> int:
        """Everything but the embedding tables and an untied LM head (Qwen's and Gemma's 'non-embedding')."""
        return self.decoder + self.encoder + self.other

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.transformer

    @property
    def active(self) -> int:
        """Parameters one token touches: only its top_k routed experts (Mixtral 8x7B: 12.9B of 46.7B)."""
        return self.total - (self.decoder - self.decoder_active)

    @property
    def active_non_embedding(self) -> int:
        """Active parameters without the input embedding table (DeepSeek's 'activated': V3 37B of 671B)."""
        return self.active - self.embedding

    @property
    def non_embedding(self) -> int:
        """Kaplan et al. 2020's N: total minus embedding tables (an untied LM head counts)."""
        return self.total - self.embedding

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = dict(asdict(self))
        for key in ("per_layer", "per_layer_active", "expert_per_layer", "dense_per_layer", "encoder_per_layer",
                    "transformer", "total", "active", "active_non_embedding", "non_embedding"):
            out[key] = getattr(self, key)
        return out


def norm_params(model: ModelSpec, width: int | None = None) -> int:
    per = model.norm.params_per_channel if model.norm_bias else 1  # DBRX's LayerNorm(bias=False): gains only
    return (model.hidden if width is None else width) * per


def attention_params(model: ModelSpec) -> int:
    """Q, K, V and output projections (GQA shrinks K and V to kv_dim), their biases, q/k norms and sink logits; or the
    latent projections of MLA (DeepSeek-V2, Sec. 2.1: W^DQ, W^UQ, W^DKV + W^KR, W^UK + W^UV, W^O, two norms)."""
    h, heads, d, v = model.hidden, model.heads, model.head_dim, model.v_dim
    if model.is_mla:
        q = h * heads * d if model.q_lora_rank is None else \
            h * model.q_lora_rank + norm_params(model, model.q_lora_rank) + model.q_lora_rank * heads * d
        nope = d - model.qk_rope_head_dim
        kv = h * (model.kv_lora_rank + model.qk_rope_head_dim) + norm_params(model, model.kv_lora_rank) \
            + model.kv_lora_rank * heads * (nope + v)
        return q + kv + heads * v * h
    qk, vd = model.kv_heads * d, model.kv_heads * v
    weights = h * heads * d + h * qk + h * vd + heads * v * h
    biases = (heads * d + qk + vd if model.qkv_bias else 0) + (h if model.out_bias else 0)
    # Qwen3-Next's output gate: q_proj emits 2 q_dim columns (modeling_qwen3_next.py L241-243, bias as q/k/v)
    gate = (h * heads * d + (heads * d if model.qkv_bias else 0)) if model.attn_output_gate else 0
    # gpt-oss: one learned sink logit per head (modeling_gpt_oss.py GptOssAttention.sinks, shape (heads,))
    return weights + biases + gate + model.qk_norm_params + (heads if model.attn_sinks else 0)


def in_proj_cols(kind: Mixer, heads: Num, values: Num, keys: Num) -> Num:
    """Output columns of a recurrent mixer's in_proj for ``heads`` value heads of ``values`` value dims and ``keys``
    key dims in all (:func:`recurrent_params`): Mamba-2 z, xBC (the conv channels, values + 2 keys) and dt; Gated
    DeltaNet q, k, v, z, beta and a."""
    if Mixer(kind) is Mixer.MAMBA2:
        return values + (values + 2 * keys) + heads
    return 2 * keys + 2 * values + 2 * heads


def recurrent_params(model: ModelSpec, kind: Mixer) -> int:
    """One recurrent token mixer's parameters (transformers 5.25.0 modeling code).

    Mamba-2 (GraniteMoeHybridMambaLayer, modeling_granitemoehybrid.py L705-753; BambaMixer the same):
    in_proj hidden -> (I + conv_dim + heads) with I = heads x head_dim and conv_dim = I + 2 groups x state, a
    depthwise conv1d of conv_dim x kernel (+ conv_dim bias), dt_bias, A_log and D (heads each), a gated RMSNorm of I,
    out_proj I -> hidden (biases by mamba_proj_bias).
    Gated DeltaNet (Qwen3NextGatedDeltaNet, modeling_qwen3_next.py L645-685): in_proj_qkvz hidden -> 2 key_dim +
    2 value_dim and in_proj_ba hidden -> 2 heads, conv1d over 2 key_dim + value_dim without bias, dt_bias and A_log
    (heads each), a gated RMSNorm of head_dim shared by the heads, out_proj value_dim -> hidden, no biases."""
    h, heads = model.hidden, model.ssm_heads
    keys, values = model.ssm_groups * model.ssm_state, heads * model.ssm_head_dim
    conv_dim = values + 2 * keys
    conv = conv_dim * model.ssm_conv + (conv_dim if model.ssm_conv_bias else 0)
    cols = int(in_proj_cols(kind, heads, values, keys))
    proj = h * cols + values * h + ((cols + h) if model.ssm_proj_bias else 0)
    if Mixer(kind) is Mixer.MAMBA2:
        return proj + conv + 3 * heads + values
    return proj + conv + 2 * heads + model.ssm_head_dim


def mixer_params(model: ModelSpec) -> int:
    """The token mixers of the whole decoder stack: attention layers' projections and each recurrent layer's."""
    out = model.attention_layers * attention_params(model)
    for kind in (Mixer.MAMBA2, Mixer.GATED_DELTANET):
        n = model.mixer_layers(kind)
        out += n * recurrent_params(model, kind) if n else 0
    return out


def expert_params(model: ModelSpec, width: int | None = None) -> int:
    """One FFN (one expert, or a dense FFN of ``width``): gate/up/down matrices and biases."""
    h, f, mats = model.hidden, model.ffn_hidden if width is None else width, model.mlp.matrices
    biases = ((mats - 1) * f + h) if model.bias else 0
    return mats * h * f + biases


def _layer_stack(model: ModelSpec) -> tuple[int, int, int]:
    """(all parameters, active parameters, routed-expert parameters) of the decoder stack: each layer's FFN part by
    its kind, plus every layer's own token mixer (:func:`mixer_params`)."""
    kinds = layer_params_by_kind(model, mixer=False)
    mixers = mixer_params(model)
    if not model.is_moe:
        per = int(kinds["dense"][0])
        return model.layers * per + mixers, model.layers * per + mixers, 0
    (moe_common, routed_one), dense = kinds["moe"], len(model.dense_layers) * int(kinds["dense"][0])
    routed = model.moe_layers * int(routed_one)
    active = model.moe_layers * model.top_k * expert_params(model)
    common = dense + model.moe_layers * int(moe_common) + mixers
    return common + routed, common + active, routed


def layer_params_by_kind(model: ModelSpec, mixer: bool = True) -> dict[str, tuple[float, float]]:
    """(parameters every token uses, routed-expert parameters) of one MoE layer and of one dense-FFN layer of an
    MoE model (DeepSeek's first_k_dense_replace layers); a dense model's layers are all "dense". A hybrid stack's
    token mixers differ by layer: each kind carries their mean (``mixer=False``: none)."""
    norms = (4 if model.sandwich_norm else 2) * norm_params(model)
    if not model.is_hybrid:
        common: float = (attention_params(model) if mixer else 0) + norms
    else:
        common = (mixer_params(model) / model.layers if mixer else 0) + norms
    dense = (common + expert_params(model, model.dense_ffn), 0)
    if not model.is_moe:
        return {"moe": dense, "dense": dense}
    router = model.hidden * model.experts + (model.experts if model.router_bias else 0)
    # Qwen2-MoE: shared_expert_gate = nn.Linear(hidden, 1, bias=False) (modeling_qwen2_moe.py Qwen2MoeSparseMoeBlock)
    router += model.hidden if model.shared_expert_gate else 0
    shared = model.shared_experts * expert_params(model, model.shared_ffn)
    moe = (common + router + shared, model.experts * expert_params(model))
    return {"moe": moe, "dense": dense}


def param_counts(model: ModelSpec) -> ParamCounts:
    """Exact parameter counts of ``model``."""
    h = model.hidden
    decoder, active, routed = _layer_stack(model)
    encoder = 0
    if model.arch is Arch.ENCODER_DECODER:
        encoder = model.encoder_layers * (decoder // model.layers)  # self-attention + FFN + 2 norms
        cross = model.layers * (attention_params(model) + norm_params(model))  # cross-attention and its norm
        decoder, active = decoder + cross, active + cross
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
        embedding=embedding, lm_head=0 if model.tied_embeddings else model.vocab * (h + model.lm_head_bias),
        decoder=decoder,
        decoder_active=active, experts=routed, encoder=encoder, other=other, layers=model.layers,
        encoder_layers=model.encoder_layers)
