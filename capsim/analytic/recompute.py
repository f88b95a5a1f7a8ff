"""What selective recomputation replays in the backward, by the release's policy (``SelectiveAc``): the share of
each forward op of a layer that runs again.

- attention core (Megatron's selective recompute, Korthikanti et al. 2022, Sec. 5): QK^T, softmax, dropout and
  attention over V; nothing with a fused (flash) kernel, whose backward recomputes its scores itself;
- ops (torchtitan's ``selective_ac_option = 'op'``, torchtitan@e7c0cae torchtitan/models/llama3/
  parallelize_llama.py L217-267): the block saves the outputs of SDPA, ``max`` and every odd-numbered ``mm``
  (counted per block in forward order) and recomputes every other op: the norms, RoPE, activations, residual
  adds, FP8 casts and every second matmul. torchtitan's blocks issue their matmuls one projection at a time
  (model.py L238, L263, L302: wq, wk, wv, wo, w1, w3, w2), so a fused op of capsim's op list (``qkv``, a gated
  ``mlp_up``) is split into those projections before counting. The amax reductions are saved (``max``) and the
  ``abs`` before them feeds nothing else, so FP8 amax passes are not replayed;
- blocks (torchtitan's ``selective_ac_option = N``, L281-290): every N-th block is fully checkpointed (its whole
  forward replayed), the others keep everything;
- modules (Megatron-Core's ``--recompute-granularity selective --recompute-modules ...``, ML@0d8e0714
  megatron/core/transformer/transformer_config.py L361-374, replacing the default ["core_attn"]): "core_attn" the
  attention core as above; "layernorm" the input and pre-MLP norms (transformer_layer.py L380-401,
  output-discarding checkpoints re-run in the backward); "moe_act" the routed experts' activation function
  (moe/experts.py L828-831, L963-969: ``bias_act_func`` under CheckpointWithoutOutput, re-run in the backward
  with everything it holds: a clamped GLU's eager clamp, capsim.analytic.eager); "mla_up_proj" MLA's latent norms,
  up-projections and RoPE (multi_latent_attention.py); "mlp" a dense MLP, "shared_experts" an MoE layer's shared
  experts. Each only where the module exists in Megatron-Core's TE spec (``_module_ops``: "layernorm" only the
  norms that are not fused into the next linear layer). What each frees is priced (``DISCARDS``, ``discarded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.eager import CLAMP_OPS
from capsim.analytic.fp8 import CastKind
from capsim.analytic.primitives import MATMUL_KINDS, Op, OpKind
from capsim.errors import SpecError
from capsim.specs.model import ModelSpec

# Megatron's selective recompute: the attention core (Korthikanti et al. 2022, Sec. 5).
CORE_OPS = frozenset({"attn_scores", "softmax", "attn_dropout", "attn_context"})
# Megatron-Core's recompute modules capsim prices -> the ops each replays, in the layers where the module exists.
# "moe_act" (MoE layers): the routed experts' activation, with a clamped GLU's eager clamp.
# "mla_up_proj": MLA's qkv_up_proj_and_rope_apply under CheckpointWithoutOutput, re-run in the backward: the q and kv
# latent norms, both up-projections and RoPE (ML@core_v0.14.0 megatron/core/transformer/multi_latent_attention.py
# L654-720, L781-784; a recompute_modules choice since core_v0.12.0 transformer_config.py L240-249).
# "layernorm": only a norm that is its own module (ML@core_v0.14.0 transformer_layer.py L406-418: not an IdentityOp),
# run under CheckpointWithoutOutput and discarded after its consumer (L507-535, L587-642). Megatron-Core's TE spec fuses
# the input norm into linear_qkv and a dense MLP's pre-MLP norm into linear_fc1 (TELayerNormColumnParallelLinear, the
# norm an IdentityOp: ML@0d8e0714 megatron/core/models/gpt/gpt_layer_specs.py L244-256, L360, L454-458); MLA's input
# norm (L336 fuse_input_layernorm False) and an MoE layer's pre-MLP norm (moe_module_specs.py L74) are TENorm modules
# (the same at ML@core_v0.14.0 gpt_layer_specs.py L138, L155, L181).
# "mlp" (dense-MLP layers: transformer_layer.py L425-427, L605-622): the MLP under tensor_parallel.checkpoint, replayed
# whole with the pre-MLP norm fused into its fc1. "shared_experts" (MoE layers: moe/moe_layer.py L123-126, L224-236
# at ML@0d8e0714): the shared experts under a checkpoint.
MODULE_OPS = {"core_attn": CORE_OPS, "layernorm": frozenset({"norm_attn", "norm_mlp"}),
              "moe_act": frozenset({"mlp_act"}) | CLAMP_OPS,
              "mla_up_proj": frozenset({"q_norm", "q_up", "kv_norm", "kv_up", "rope"}),
              "mlp": frozenset({"norm_mlp", "mlp_up", "mlp_act", "mlp_down"}),
              "shared_experts": frozenset({"shared_up", "shared_down"})}
# What a checkpointed module frees of a layer's kept activations: the saves of its own ops past the checkpoint's
# inputs (the function runs without autograd, so nothing inside it is saved; the checkpoint keeps its inputs), and for
# an output-discarding one (ML@core_v0.14.0 megatron/core/tensor_parallel/random.py L521-610 CheckpointWithoutOutput,
# discard_output_and_register_recompute L596) the saves its consumers made of its 16-bit outputs, whose storage is
# released after they ran and rebuilt before their backward. (internal ops, consumer ops). "mla_up_proj": inputs
# q_compressed and kv_compressed (q_norm and kv_norm save them), outputs query/key/value, discarded after the core
# attention (multi_latent_attention.py L313-316); "moe_act": input the expert fc1 output (mlp_act saves it), output
# consumed by the expert fc2 (core_v0.14.0 moe/experts.py L254-300 GroupedMLP, L909-914 TEGroupedMLP: discarded after
# linear_fc2); "layernorm": input the residual stream (the norm saves it), output consumed by MLA's down-projections
# (input norm) or by the router and the shared experts' fc1 (pre-MLP norm), whose saves of it go; "mlp": input the
# residual stream (the fused norm saves it), the rest of the MLP's saves go; "shared_experts": input the pre-MLP norm's
# output (the router's save), the shared fc2's save goes. core_attn frees nothing beyond the attention-core policy.
DISCARDS = {"mla_up_proj": (frozenset({"q_up", "kv_up", "rope"}), frozenset({"attention", "attn_scores"})),
            "moe_act": (frozenset(), frozenset({"mlp_down"})),
            "layernorm": (frozenset(), frozenset({"q_down", "kv_down", "router", "shared_up"})),
            "mlp": (frozenset({"mlp_up", "mlp_act", "mlp_down"}), frozenset()),
            "shared_experts": (frozenset({"shared_down"}), frozenset())}
# Under FP8 the consumers of a discarded norm output save that 16-bit original instead of their FP8 copy
# (set_save_original_input on the shared experts' fc1 or a dense fc1: transformer_layer.py L411-424 at
# ML@core_v0.14.0), so it is freed even from a quantized consumer. (MLA under FP8 has no such hook:
# Attention.set_for_recompute_input_layernorm raises NotImplementedError, ML@0d8e0714 attention.py L949-951.)
_ORIGINAL_INPUT = frozenset({"layernorm"})
_MLA_OPS = frozenset({"q_down", "kv_down"})


def _module_ops(module: str, ops: list[Op]) -> frozenset[str]:
    """The ops of one layer (``ops``) that Megatron-Core's recompute ``module`` covers: none where the module does not
    exist in that layer (``MODULE_OPS``'s comment)."""
    names = {_base(op.name) for op in ops}
    moe_layer, mla_layer = "moe_permute" in names, bool(names & _MLA_OPS)
    if module == "layernorm":
        return frozenset({"norm_attn"} if mla_layer else set()) | frozenset({"norm_mlp"} if moe_layer else set())
    if module in ("moe_act", "shared_experts") and not moe_layer:
        return frozenset()
    if module == "mlp" and moe_layer:
        return frozenset()
    return MODULE_OPS[module]


class SacPolicy(StrEnum):
    """What selective activation checkpointing recomputes in the backward."""

    ATTENTION_CORE = "attention-core"  # Megatron: the attention core only (Korthikanti et al. 2022, Sec. 5)
    # torchtitan 'op': every forward op of a block but those it saves (SDPA, max, and all but every second mm)
    OPS = "ops"
    BLOCKS = "blocks"  # torchtitan '<N>': every N-th transformer block fully checkpointed, the others not at all
    MODULES = "modules"  # Megatron-Core --recompute-modules: the named submodules' forward replayed


@dataclass(frozen=True)
class SelectiveAc:
    """A release's selective activation-checkpointing policy (what ``recompute`` = selective means)."""

    policy: SacPolicy = SacPolicy.ATTENTION_CORE
    every: int = 1  # BLOCKS: the checkpointed blocks are those whose 1-based index is a multiple of this
    modules: tuple[str, ...] = ()  # MODULES: Megatron-Core's recompute_modules (keys of MODULE_OPS)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise SpecError("selective_ac.every", f"{self.every} is not a block period", "use a whole number >= 1")
        unknown = set(self.modules) - set(MODULE_OPS)
        if unknown or (self.policy is SacPolicy.MODULES) != bool(self.modules):
            raise SpecError("selective_ac.modules", f"{sorted(unknown) or list(self.modules)} with policy "
                            f"{self.policy.value}", f"name modules (of {', '.join(MODULE_OPS)}) with policy modules only")

MEGATRON_SAC = SelectiveAc()  # the attention core only: what a call without a release's policy prices

# Weight matmuls (nn.Linear: aten.mm in the eager dispatch torchtitan's policy sees).
LINEAR_OPS = frozenset({"qkv", "attn_out", "mlp_up", "mlp_down", "shared_up", "shared_down", "router",
                        "cross_qkv", "cross_out", "q_proj", "q_down", "q_up", "kv_down", "kv_up"})
_SAVED_KERNELS = frozenset({"attention"})  # the fused SDPA kernel: its output and logsumexp are saved
_GATED_UP = frozenset({"mlp_up", "shared_up"})  # w1 and w3 of a gated FFN, two projections in one op


def _base(name: str) -> str:
    return name.split(".")[0]


def _projections(model: ModelSpec, name: str) -> tuple[float, ...]:
    """The shares of one op of the op list that torchtitan's model runs as separate matmuls, in forward order."""
    if name in ("qkv", "cross_qkv"):
        q, kv = model.heads, model.kv_heads
        return (q / (q + 2 * kv), kv / (q + 2 * kv), kv / (q + 2 * kv))  # wq, wk, wv
    if name in _GATED_UP and model.mlp.matrices == 3:
        return (0.5, 0.5)  # w1, w3
    return (1.0,)


def alternate_mm_shares(model: ModelSpec, ops: list[Op]) -> dict[str, float]:
    """Share of each weight-matmul op that torchtitan's op policy recomputes: the even-numbered matmuls of a
    block in forward order."""
    out: dict[str, float] = {}
    n = 0
    for op in ops:
        name = _base(op.name)
        if op.kind is not OpKind.GEMM or name not in LINEAR_OPS or name in out:
            continue
        share = 0.0
        for part in _projections(model, name):
            n += 1
            share += part if n % 2 == 0 else 0.0
        out[name] = share
    return out


def op_shares(model: ModelSpec, ops: list[Op], sac: SelectiveAc) -> list[float]:
    """The share of each forward op (``ops``, one layer) that selective recomputation replays (BLOCKS: none here;
    its replay is whole blocks, ``block_share``)."""
    if sac.policy is SacPolicy.ATTENTION_CORE:
        return [1.0 if _base(op.name) in CORE_OPS else 0.0 for op in ops]
    if sac.policy is SacPolicy.MODULES:
        names = frozenset().union(*(_module_ops(m, ops) for m in sac.modules))
        return [1.0 if _base(op.name) in names else 0.0 for op in ops]
    if sac.policy is SacPolicy.BLOCKS:
        return [0.0] * len(ops)
    mm = alternate_mm_shares(model, ops)
    shares = []
    for op in ops:
        name = _base(op.name)
        if name in mm:
            shares.append(mm[name])
        elif name in _SAVED_KERNELS or op.name == CastKind.AMAX.value:
            shares.append(0.0)
        else:
            shares.append(1.0)
    return shares


def discarded(ops: list[Op], sac: SelectiveAc, quantized: frozenset[str] = frozenset()) -> list[bool]:
    """Which forward ops' saves (``ops``, one layer) Megatron-Core's output-discarding modules free (``DISCARDS``);
    a consumer in ``quantized`` (names of ops running in an FP8 recipe) keeps its own quantized copy, not the
    discarded 16-bit output, so its save stays. "moe_act" acts only in an MoE layer, as its replay does."""
    if sac.policy is not SacPolicy.MODULES:
        return [False] * len(ops)
    internal, consumers, originals = set(), set(), set()
    for m in sac.modules:
        if m in DISCARDS and _module_ops(m, ops):
            internal |= DISCARDS[m][0]
            (originals if m in _ORIGINAL_INPUT else consumers).update(DISCARDS[m][1])
    return [_base(op.name) in internal or _base(op.name) in originals
            or (_base(op.name) in consumers and op.name not in quantized) for op in ops]


def block_share(model: ModelSpec, sac: SelectiveAc) -> float:
    """Fraction of the blocks fully checkpointed under BLOCKS (torchtitan counts blocks from 1 and checkpoints
    those whose count is a multiple of N); 0 for the op-level policies."""
    if sac.policy is not SacPolicy.BLOCKS:
        return 0.0
    return (model.total_layers // sac.every) / model.total_layers


def replayed_matmul_share(model: ModelSpec, ops: list[Op], sac: SelectiveAc) -> Num:
    """Fraction of a layer's forward matmul FLOPs (GEMMs and attention, ``ops`` one layer) that selective
    recomputation runs again: what hardware FLOPs add to model FLOPs (PaLM, Appendix B, counts recomputation)."""
    shares = op_shares(model, ops, sac)
    mm = [(s, op.flops * op.count * op.share) for s, op in zip(shares, ops, strict=True) if op.kind in MATMUL_KINDS]
    whole = sum((f for _, f in mm), 0.0)
    return sum((s * f for s, f in mm), 0.0) / np.where(whole > 0, whole, 1.0) + block_share(model, sac)


def replay_s(op_s: list[np.ndarray], shares: list[float], layer_fwd_s: np.ndarray, blocks: float) -> np.ndarray:
    """Seconds one layer's selective recomputation replays (the mean layer for BLOCKS)."""
    ops = sum((s * t for s, t in zip(shares, op_s, strict=True) if s), np.zeros_like(layer_fwd_s))
    return ops + blocks * layer_fwd_s


def ops_policy_kept_bytes(model: ModelSpec, ops: list[Op], act_bytes: float, attention_out_bytes: object
                          ) -> np.ndarray:
    """Bytes one block keeps for the backward under torchtitan's op policy besides its input: the outputs of the
    matmuls it saves (the odd-numbered projections, per-GPU [m, n] in the activation format) and of SDPA
    (``attention_out_bytes``: its output and logsumexp); everything else is rebuilt in the backward."""
    shares = op_shares(model, ops, SelectiveAc(SacPolicy.OPS))
    out = np.zeros(())
    for op, rec in zip(ops, shares, strict=True):
        name = _base(op.name)
        if op.kind is OpKind.GEMM and name in LINEAR_OPS:
            m, n, _k = op.shape
            out = out + (1.0 - rec) * np.asarray(m, float) * n * act_bytes * op.count * op.share
        elif name in _SAVED_KERNELS:
            out = out + np.asarray(attention_out_bytes, float) * op.count * op.share
    return out


# Full recomputation's methods (Megatron-Core --recompute-method, with --recompute-granularity full; ML@core_v0.14.0
# megatron/core/transformer/transformer_block.py L429-461 _checkpointed_forward, over the layers of one model chunk,
# num_layers_per_pipeline_rank = len(self.layers), L314): "uniform" checkpoints each run of N layers as one unit
# (every layer replayed once; each unit keeps its input only), "block" checkpoints only the chunk's first N layers,
# one each, and runs the rest without recomputation. MTP layers (multi_token_prediction.py L625-640) are their own
# checkpoint under "uniform" (N must be 1) and not recomputed under "block".
FULL_METHODS = ("uniform", "block")


def full_replay_share(decoder: Num, mtp: Num, v: Num, method: str, n: int) -> Num:
    """Share of a stage's layers (``decoder`` layers over ``v`` chunks plus ``mtp`` MTP layers) that full
    recomputation replays: all of them under "uniform"; under "block" the first ``n`` of each chunk (their mean
    chunk: at most n v of the decoder layers), no MTP layer."""
    if method not in FULL_METHODS:
        raise SpecError("recompute_method", f"unknown method {method!r}", f"use one of {', '.join(FULL_METHODS)}")
    if method == "uniform":
        return np.ones_like(np.asarray(decoder, float))
    d, m = np.asarray(decoder, float), np.asarray(mtp, float)
    return np.minimum(n * np.asarray(v, float), d) / np.maximum(d + m, 1.0)


__all__ = ["CORE_OPS", "FULL_METHODS", "full_replay_share", "LINEAR_OPS", "MEGATRON_SAC", "MODULE_OPS", "SacPolicy", "SelectiveAc", "alternate_mm_shares", "block_share", "discarded", "op_shares",
           "ops_policy_kept_bytes", "replay_s"]
