"""Transformer model shapes: decoder-only (GPT, Llama), encoder-only (BERT), encoder-decoder (T5), MoE."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
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
    SQUARED_RELU = "squared-relu"  # relu(x)^2 (Primer; Nemotron-4), two matrices like gelu
    SWIGLU = "swiglu"
    GEGLU = "geglu"

    @property
    def matrices(self) -> int:
        return 3 if self in (Mlp.SWIGLU, Mlp.GEGLU) else 2

    @property
    def act_passes(self) -> int:
        """Memory passes of the activation over the FFN's width: squared ReLU runs relu, then pow, as two eager
        kernels (Megatron-LM ParallelMLP with --squared-relu: torch.pow(F.relu(x), 2); no bias-activation fusion
        covers it); the others one (fused, or one torch op)."""
        return 2 if self is Mlp.SQUARED_RELU else 1


class Norm(StrEnum):
    LAYERNORM = "layernorm"  # gain and bias
    RMSNORM = "rmsnorm"  # gain only (Llama, T5)

    @property
    def params_per_channel(self) -> int:
        return 2 if self is Norm.LAYERNORM else 1


class Mixer(StrEnum):
    """A layer's token mixer: softmax attention, or a recurrent layer that keeps a fixed-size state per sequence."""

    ATTENTION = "attention"  # softmax attention (full or sliding window): a KV cache that grows with the context
    MAMBA2 = "mamba2"  # Mamba-2 SSD (Dao & Gu 2024, arXiv 2405.21060): conv state + SSM state per sequence
    GATED_DELTANET = "gated-deltanet"  # Gated DeltaNet (Yang et al. 2024, arXiv 2412.06464; Qwen3-Next)


class Position(StrEnum):
    LEARNED = "learned"  # a table of max_seq rows (GPT, BERT, OPT)
    ROPE = "rope"  # rotary, no parameters (Llama, Mistral)
    RELATIVE = "relative"  # T5 bucketed bias: buckets x heads in the first layer of each stack
    NONE = "none"


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a transformer. Sizes are counts, not bytes; every default is the GPT-2/3 choice."""

    name: str
    hidden: int  # model width d_model
    layers: int  # decoder layers (encoder layers for encoder-only models)
    heads: int  # query heads
    vocab: int  # embedding rows (padded vocabulary where the run padded it)
    kv_heads: int | None = None  # key/value heads; fewer than heads is GQA, 1 is MQA; None = heads
    head_dim: int | None = None  # query/key dims per head (MLA: nope + rope dims); None = hidden // heads
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
    shared_experts: int = 0  # always-on experts (DeepSeek-MoE style), each shared_ffn_hidden wide
    shared_ffn_hidden: int | None = None  # width of each shared expert (Granite-MoE-shared: 1024 beside routed 512);
    #                                       None = ffn_hidden
    shared_expert_gate: bool = False  # a sigmoid gate of hidden weights scales the shared experts' output (Qwen2-MoE)
    type_vocab: int = 0  # token-type embeddings (BERT segment ids)
    pooler: bool = False  # BERT's tanh pooler over [CLS]
    embedding_norm: bool = False  # a norm after the embeddings (BERT)
    final_norm: bool = True  # a norm after the last layer of each stack
    relative_buckets: int = 0  # T5 relative-attention buckets
    # --- attention variants of today's families (each changes parameters, FLOPs or the KV cache) ---
    qkv_bias: bool | None = None  # Q, K and V (not the output) carry biases where `bias` is off (Qwen2/2.5); None = bias
    qk_norm: bool = False  # a norm over the queries and keys of each layer (Qwen3, Gemma 3, OLMoE, Llama 4)
    qk_norm_gains: str = "head"  # with qk_norm, its learned gains: "head" = head_dim each for queries and keys, shared
    #                              by the heads (Qwen3, Gemma 3); "full" = one per query and key channel, q_dim + kv_dim
    #                              (OLMoE: RMSNorm(hidden) and RMSNorm(kv_dim)); "none" = a weightless RMSNorm (Llama 4)
    attn_sinks: bool = False  # a learned sink logit per query head in every softmax: heads parameters a layer (gpt-oss)
    o_bias: bool | None = None  # the attention output projection carries a bias (Phi-3.5-MoE without FFN biases); None
    #                             = bias
    lm_head_bias: bool = False  # an untied LM head with a bias of vocab values (Phi-3.5-MoE's lm_head_bias)
    norm_bias: bool = True  # a LayerNorm's bias (DBRX: LayerNorm(bias=False)); RMSNorm has none
    sandwich_norm: bool = False  # a second norm on each sub-layer's output: 4 norms per layer (Gemma 2/3)
    sliding_window: int | None = None  # keys a sliding-window layer attends to and caches (Mistral 4096, Gemma 3 1024)
    global_every: int = 0  # with sliding_window: layer i attends globally when (i+1) % global_every == 0 (Gemma 2: 2,
    #                        Gemma 3: 6, as their HF modeling code); 0 = every layer slides (Mistral-7B-v0.1, Phi-3)
    attn_softcap: float | None = None  # tanh soft-capping of attention scores, fused into the kernel (Gemma 2: 50)
    logit_softcap: float | None = None  # tanh soft-capping of the final logits, one pass over them (Gemma 2: 30)
    embedding_scale: bool = False  # embeddings multiplied by sqrt(hidden), one pass over them (Gemma)
    # --- multi-head latent attention (DeepSeek-V2/V3): K and V are rebuilt from a cached low-rank latent ---
    kv_lora_rank: int = 0  # width of the compressed KV latent each layer caches (512); 0 = standard attention
    q_lora_rank: int | None = None  # rank of the query down-projection (1536); None = a full-rank query projection
    qk_rope_head_dim: int = 0  # decoupled RoPE dims per head (64); its key is shared by all heads and cached
    v_head_dim: int | None = None  # value dims per head (MLA: 128); None = head_dim
    # --- mixture-of-experts layout (DeepSeek, Qwen-MoE) ---
    dense_layers: tuple[int, ...] = ()  # layers of an MoE model whose FFN is dense (DeepSeek's first_k_dense_replace,
    #                                     Qwen-MoE's mlp_only_layers); the others route to experts
    dense_ffn_hidden: int | None = None  # FFN width of those dense layers (DeepSeek-V3: 18432); None = ffn_hidden
    router_bias: bool = False  # a learned per-expert routing bias (DeepSeek-V3's e_score_correction_bias)
    # --- activation and position variants that change which kernels a framework runs (not FLOPs or parameters) ---
    glu_clamp: float | None = None  # a gated MLP's inputs clamped before its activation: gate <= c, up in [-c, c]
    #                                 (gpt-oss: 7.0, HF config swiglu_limit); None = unclamped
    yarn_factor: float | None = None  # YaRN RoPE context-extension factor s (gpt-oss: 32, HF rope_scaling factor);
    #                                   its attention factor 0.1 ln(s) + 1 scales cos and sin (Peng et al. 2023,
    #                                   YaRN, Sec. 3.4); None = plain RoPE
    # --- hybrid stacks: recurrent token mixers beside attention (GraniteMoeHybrid / Bamba: Mamba-2; Qwen3-Next: Gated
    #     DeltaNet). One shape serves both: a Mamba-2 layer is linear attention with queries C, keys B (ssm_groups groups
    #     of ssm_state dims) and values x (ssm_heads heads of ssm_head_dim); Gated DeltaNet has ssm_groups key heads of
    #     ssm_state dims and ssm_heads value heads of ssm_head_dim (Yang et al. 2024, Sec. 2) ---
    mixers: tuple[str, ...] = ()  # each decoder layer's token mixer (Mixer values); () = every layer attention
    ssm_heads: int = 0  # value heads (Mamba-2 mamba_n_heads; GDN linear_num_value_heads)
    ssm_head_dim: int = 0  # dims per value head (mamba_d_head; linear_value_head_dim)
    ssm_groups: int = 0  # key (B/C) groups (mamba_n_groups; linear_num_key_heads)
    ssm_state: int = 0  # dims per key group (mamba_d_state; linear_key_head_dim)
    ssm_conv: int = 4  # causal depthwise conv kernel (mamba_d_conv; linear_conv_kernel_dim)
    ssm_conv_bias: bool = False  # the conv carries a bias (mamba_conv_bias; GDN: none)
    ssm_proj_bias: bool = False  # in_proj and out_proj carry biases (mamba_proj_bias; GDN: none)
    ssm_chunk: int = 256  # chunk length of the chunked scan (mamba_chunk_size 256; GDN's chunk_gated_delta_rule 64)
    attn_output_gate: bool = False  # q_proj also emits a sigmoid gate per query channel on the attention output
    #                                 (Qwen3-Next: q_proj is hidden -> 2 q_dim, modeling_qwen3_next.py L241-243)
    source: str = ""  # where the shape comes from
    aliases: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for name, enum in (("mlp", Mlp), ("norm", Norm), ("position", Position), ("arch", Arch)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise SpecError(f"model.{name}", f"unknown value {value!r}",
                                f"use one of {', '.join(e.value for e in enum)}") from None
        self._check_types()
        kv = self.kv_heads if self.kv_heads is not None else self.heads
        object.__setattr__(self, "kv_heads", kv)
        require(self.heads % kv == 0, "model.kv_heads",
                f"{kv} does not divide heads={self.heads}", f"use one of {divisors(self.heads)}")
        if self.head_dim is None:
            require(self.hidden % self.heads == 0, "model.head_dim",
                    f"hidden={self.hidden} is not a multiple of heads={self.heads}", "give head_dim explicitly")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.ffn_hidden is None:
            object.__setattr__(self, "ffn_hidden", 4 * self.hidden)
        if self.qkv_bias is None:
            object.__setattr__(self, "qkv_bias", self.bias)
        require(self.o_bias is None or self.bias <= self.o_bias, "model.o_bias", "bias=True already gives the output projection a bias",
                "leave o_bias unset or true")
        require(self.qk_norm_gains in QK_NORM_GAINS, "model.qk_norm_gains",
                f"must be one of {', '.join(QK_NORM_GAINS)}, got {self.qk_norm_gains!r}")
        require(self.qk_norm or self.qk_norm_gains == "head", "model.qk_norm_gains", "describes qk_norm, which is off",
                "set qk_norm true or leave qk_norm_gains unset")
        require(self.norm_bias or self.norm is Norm.LAYERNORM, "model.norm_bias", "only a LayerNorm has a bias",
                "leave norm_bias true with norm rmsnorm")
        require(not self.lm_head_bias or not self.tied_embeddings, "model.lm_head_bias",
                "a tied LM head is the embedding table and has no bias", "set tied_embeddings false or unset it")
        require(self.bias <= self.qkv_bias, "model.qkv_bias", "bias=True already gives Q, K and V biases",
                "leave qkv_bias unset or true")
        require(self.glu_clamp is None or self.mlp.matrices == 3, "model.glu_clamp",
                f"clamps a gated MLP's inputs, but mlp={self.mlp.value} is not gated", "leave it unset")
        require(self.yarn_factor is None or self.position is Position.ROPE, "model.yarn_factor",
                f"scales RoPE, but position={self.position.value}", "leave it unset or use position rope")
        self._check_moe()
        self._check_mla()
        self._check_window()
        self._check_mixers()
        if self.arch is Arch.ENCODER_DECODER:
            require(self.encoder_layers > 0, "model.encoder_layers", "an encoder-decoder needs encoder layers",
                    "set encoder_layers (T5-base: 12)")
        else:
            require(self.encoder_layers == 0, "model.encoder_layers",
                    f"only encoder-decoder models have a separate encoder (arch={self.arch})", "set it to 0")

    def _check_mixers(self) -> None:
        kinds = tuple(self.mixers) if isinstance(self.mixers, list | tuple) else self.mixers
        require(isinstance(kinds, tuple), "model.mixers", f"must be a list of layer mixers, got {self.mixers!r}")
        try:
            kinds = tuple(Mixer(k) for k in kinds)
        except ValueError:
            raise SpecError("model.mixers", f"unknown mixer in {list(map(str, kinds))}",
                            f"use {', '.join(m.value for m in Mixer)}") from None
        object.__setattr__(self, "mixers", kinds)
        for name in ("ssm_conv", "ssm_chunk"):
            _integer(name, getattr(self, name), 1)
        for name in ("ssm_conv_bias", "ssm_proj_bias", "attn_output_gate"):
            require(isinstance(getattr(self, name), bool), f"model.{name}",
                    f"must be true or false, got {getattr(self, name)!r}")
        if not kinds:
            return
        require(len(kinds) == self.layers, "model.mixers", f"lists {len(kinds)} layers, the model has {self.layers}",
                "give one mixer per decoder layer")
        if not self.is_hybrid:
            return
        require(self.arch is Arch.DECODER, "model.mixers", "recurrent layers are modelled for decoders only")
        require(self.sliding_window is None and not self.is_mla, "model.mixers",
                "recurrent layers beside sliding-window or latent attention are not modelled",
                "leave sliding_window and kv_lora_rank unset")
        for name in ("ssm_heads", "ssm_head_dim", "ssm_groups", "ssm_state"):
            require(getattr(self, name) > 0, f"model.{name}", "a model with recurrent layers needs their shape",
                    "GraniteMoeHybrid: ssm_heads 128, ssm_head_dim 64, ssm_groups 1, ssm_state 256")
        require(self.ssm_heads % self.ssm_groups == 0, "model.ssm_groups",
                f"{self.ssm_groups} does not divide ssm_heads={self.ssm_heads}", f"use one of {divisors(self.ssm_heads)}")

    def _check_types(self) -> None:
        """Every count a positive (or non-negative) integer, every flag a bool: one error naming the field."""
        for name in ("hidden", "layers", "heads", "vocab", "max_seq", "experts", "top_k"):
            _integer(name, getattr(self, name), 1)
        for name in ("kv_heads", "head_dim", "ffn_hidden", "q_lora_rank", "v_head_dim", "sliding_window",
                     "dense_ffn_hidden", "shared_ffn_hidden"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1)
        for name in ("encoder_layers", "shared_experts", "type_vocab", "relative_buckets", "kv_lora_rank",
                     "qk_rope_head_dim", "global_every", "ssm_heads", "ssm_head_dim", "ssm_groups", "ssm_state"):
            _integer(name, getattr(self, name), 0)
        for name in ("tied_embeddings", "bias", "pooler", "embedding_norm", "final_norm", "qk_norm",
                     "sandwich_norm", "embedding_scale", "router_bias", "attn_sinks", "lm_head_bias", "norm_bias",
                     "shared_expert_gate"):
            require(isinstance(getattr(self, name), bool), f"model.{name}",
                    f"must be true or false, got {getattr(self, name)!r}")
        for name in ("qkv_bias", "o_bias"):
            require(getattr(self, name) is None or isinstance(getattr(self, name), bool), f"model.{name}",
                    f"must be true, false or unset, got {getattr(self, name)!r}")
        for name in ("attn_softcap", "logit_softcap", "glu_clamp", "yarn_factor"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value > 0),
                    f"model.{name}", f"must be a positive number or unset, got {value!r}")

    def _check_moe(self) -> None:
        require(self.top_k <= self.experts, "model.top_k",
                f"top_k={self.top_k} exceeds experts={self.experts}", "route to at most as many experts as exist")
        layers = tuple(self.dense_layers) if isinstance(self.dense_layers, list | tuple) else self.dense_layers
        require(isinstance(layers, tuple), "model.dense_layers",
                f"must be a list of layer indices, got {self.dense_layers!r}")
        for i in layers:
            _integer("dense_layers", i, 0)
        object.__setattr__(self, "dense_layers", layers)
        if not self.is_moe:
            for name, value in (("dense_layers", layers), ("shared_experts", self.shared_experts),
                                ("router_bias", self.router_bias), ("dense_ffn_hidden", self.dense_ffn_hidden),
                                ("shared_ffn_hidden", self.shared_ffn_hidden),
                                ("shared_expert_gate", self.shared_expert_gate)):
                require(not value, f"model.{name}", f"{self.name} is dense (experts=1): it has no MoE layers",
                        "leave it unset, or set experts > 1")
            return
        require(len(set(layers)) == len(layers) and all(i < self.layers for i in layers), "model.dense_layers",
                f"{list(layers)} must be distinct layer indices below layers={self.layers}")
        require(len(layers) < self.layers, "model.dense_layers", "every layer is dense",
                "an MoE model needs at least one MoE layer; use experts=1 for a dense model")
        for name in ("shared_ffn_hidden", "shared_expert_gate"):
            require(not getattr(self, name) or self.shared_experts > 0, f"model.{name}",
                    "describes the shared experts, but shared_experts is 0", "set shared_experts or leave it unset")
        require(self.dense_ffn_hidden is None or bool(layers), "model.dense_ffn_hidden",
                "is the width of dense layers, but dense_layers is empty", "list the dense layers or unset it")

    def _check_mla(self) -> None:
        if not self.is_mla:
            for name in ("q_lora_rank", "qk_rope_head_dim", "v_head_dim"):
                require(not getattr(self, name), f"model.{name}", "belongs to multi-head latent attention",
                        "set kv_lora_rank (DeepSeek-V2/V3: 512) or leave it unset")
            return
        require(self.arch is Arch.DECODER, "model.kv_lora_rank", "latent attention is modelled for decoders only")
        require(0 < self.qk_rope_head_dim < self.head_dim, "model.qk_rope_head_dim",
                f"must be between 0 and head_dim={self.head_dim} (nope + rope dims), got {self.qk_rope_head_dim}",
                "DeepSeek-V3: head_dim 192 = 128 + 64")
        require(not self.bias and not self.qkv_bias, "model.bias", "latent attention with biases is not modelled",
                "set bias false (DeepSeek's attention_bias is false)")
        require(self.kv_heads == self.heads, "model.kv_heads",
                "latent attention rebuilds K and V for every query head", f"set kv_heads={self.heads}")

    def _check_window(self) -> None:
        if self.sliding_window is None:
            require(self.global_every == 0, "model.global_every", "a pattern of global layers needs a sliding window",
                    "set sliding_window or leave global_every 0")
            return
        require(self.arch is Arch.DECODER, "model.sliding_window",
                "sliding-window attention is modelled for decoder-only models", "leave it unset")
        require(self.global_every <= self.layers, "model.global_every",
                f"{self.global_every} exceeds layers={self.layers}", "0 = every layer slides")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def v_dim(self) -> int:
        """Value (and attention output) dims per head."""
        return self.v_head_dim or self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Decoder layers that route to experts (0 for a dense model)."""
        return self.layers - len(self.dense_layers) if self.is_moe else 0

    @property
    def sliding_layers(self) -> int:
        """Decoder layers with sliding-window attention (global layers are every global_every-th one)."""
        if self.sliding_window is None:
            return 0
        return self.layers - (self.layers // self.global_every if self.global_every else 0)

    @property
    def is_hybrid(self) -> bool:
        """Some layers mix tokens with a recurrent layer (Mamba-2, Gated DeltaNet) instead of attention."""
        return any(k is not Mixer.ATTENTION for k in self.mixers)

    def mixer_layers(self, kind: Mixer | str) -> int:
        """Decoder layers whose token mixer is ``kind`` (every layer is attention when ``mixers`` is empty)."""
        if not self.mixers:
            return self.layers if Mixer(kind) is Mixer.ATTENTION else 0
        return sum(1 for k in self.mixers if k is Mixer(kind))

    @property
    def attention_layers(self) -> int:
        """Decoder layers with (softmax) attention: the only ones that keep a KV cache."""
        return self.mixer_layers(Mixer.ATTENTION)

    @property
    def dense_ffn(self) -> int:
        """FFN width of the dense layers of an MoE model (of every layer of a dense one)."""
        return self.dense_ffn_hidden or self.ffn_hidden

    @property
    def out_bias(self) -> bool:
        """The attention output projection's bias: o_bias where given, else bias."""
        return self.bias if self.o_bias is None else self.o_bias

    @property
    def shared_ffn(self) -> int:
        """Width of each shared expert (the routed experts' width unless the model says otherwise)."""
        return self.shared_ffn_hidden or self.ffn_hidden

    @property
    def qk_norm_params(self) -> int:
        """Learned gains of one layer's query and key norms."""
        if not self.qk_norm or self.qk_norm_gains == "none":
            return 0
        return 2 * self.head_dim if self.qk_norm_gains == "head" else self.q_dim + self.kv_dim

    @property
    def tp_widths(self) -> dict[str, int]:
        """The FFN widths tensor parallelism splits, by the field that sets them: every layer's FFN of a dense
        model; of an MoE model the dense layers' FFN (``dense_ffn_hidden``) and the shared experts (each
        ``shared_ffn`` wide, split like an MLP). The routed experts (``ffn_hidden`` each) split by the expert
        tensor-parallel width (etp) instead."""
        if not self.is_moe:
            return {"ffn_hidden": self.ffn_hidden}
        out = {"dense_ffn_hidden": self.dense_ffn} if self.dense_layers else {}
        if self.shared_experts:
            out["shared_ffn_hidden" if self.shared_ffn_hidden else "ffn_hidden"] = self.shared_ffn
        return out

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
        out["dense_layers"] = list(self.dense_layers)
        out["mixers"] = [m.value for m in self.mixers]
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in out.items()}


QK_NORM_GAINS = ("head", "full", "none")
MAX_SIZE = 2**24  # no width, depth, head or expert count of a real model comes near this (16.7M)
MAX_CONTEXT = 2**31 - 1


def _integer(name: str, value: object, least: int) -> None:
    """An int (not a bool, float or string) of at least ``least`` and at most :data:`MAX_SIZE` (a context length:
    :data:`MAX_CONTEXT`), or one SpecError naming ``model.<name>``."""
    most = MAX_CONTEXT if name == "max_seq" else MAX_SIZE
    ok = isinstance(value, int) and not isinstance(value, bool) and least <= value <= most
    require(ok, f"model.{name}", f"must be {'a positive' if least else 'a non-negative'} integer of at most {most}, "
            f"got {value!r}")
