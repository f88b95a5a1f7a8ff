"""FLOP counts: per token (6N + attention), per Megatron iteration, and per serving step, from the op list."""

from __future__ import annotations

import numpy as np

from capsim._types import Num
from capsim.analytic.ops import (
    MATMUL_KINDS,
    AttentionImpl,
    Phase,
    StepBatch,
    head_ops,
    serving_layer_ops,
    total,
    training_layer_ops,
)
from capsim.specs.model import ModelSpec


def matmul_params(model: ModelSpec) -> float:
    """N of '6N': weights one token multiplies through (active experts and the LM head; no lookups or norms)."""
    h, q, kv = model.hidden, model.q_dim, model.kv_dim
    ffn = model.mlp.matrices * h * model.ffn_hidden
    per_layer = 2 * h * q + 2 * h * kv + (model.top_k + model.shared_experts) * ffn
    per_layer += h * model.experts if model.is_moe else 0
    cross = model.layers * (2 * h * q + 2 * h * kv) if model.encoder_layers else 0
    return float(model.total_layers * per_layer + cross + model.vocab * h)


def training_flops_per_token(model: ModelSpec, seq_len: Num, recompute_full: bool = False) -> Num:
    """6N + 12 l s q (forward + backward, full attention square as Megatron counts it); with full
    recomputation the layers run forward twice: 8N_layers + 6N_head + 16 l s q (Narayanan et al. SC21, Eq. 3)."""
    n_head = model.vocab * model.hidden
    n_layers = matmul_params(model) - n_head
    attn = 4.0 * model.total_layers * np.asarray(seq_len, float) * model.q_dim  # forward QK^T + PV per token
    passes = 4.0 if recompute_full else 3.0
    return passes * (2.0 * n_layers + attn) + 3.0 * 2.0 * n_head


def megatron_iteration_flops(model: ModelSpec, global_batch: Num, seq_len: Num, recompute_full: bool = False) -> Num:
    """72 B s l h^2 (1 + s/6h + V/12lh), or 96 B s l h^2 (1 + s/6h + V/16lh) with full recomputation
    (Narayanan et al. SC21, Eq. 3 and Sec. 5.1), for GPT-shaped models."""
    b, s = np.asarray(global_batch, float), np.asarray(seq_len, float)
    h, l, v = model.hidden, model.layers, model.vocab
    if recompute_full:
        return 96.0 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))
    return 72.0 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * l * h))


def oplist_training_flops(model: ModelSpec, micro_batch: Num, seq_len: Num, recompute_full: bool = False,
                          attention: AttentionImpl = AttentionImpl.UNFUSED) -> Num:
    """Matmul FLOPs of one training micro-batch summed over the op list (forward, backward, recompute, head)."""
    fwd = total(training_layer_ops(model, micro_batch, seq_len, attention=attention), kinds=MATMUL_KINDS)
    bwd = total(training_layer_ops(model, micro_batch, seq_len, attention=attention, phase=Phase.BACKWARD),
                kinds=MATMUL_KINDS)
    layers = (fwd * (2 if recompute_full else 1) + bwd) * model.total_layers
    tokens = np.asarray(micro_batch, float) * np.asarray(seq_len, float)
    head = total([o for o in head_ops(model, tokens) if o.name == "lm_head"], kinds=MATMUL_KINDS)
    return layers + 3 * head


def serving_step_flops(model: ModelSpec, batch: StepBatch, tp: Num = 1) -> Num:
    """Matmul FLOPs of one engine step on one GPU of a TP group (layers plus LM head for each sequence)."""
    layer = total(serving_layer_ops(model, batch, tp), kinds=MATMUL_KINDS)
    head = 2.0 * batch.sequences * model.hidden * model.vocab / np.asarray(tp, float)
    return model.layers * layer + head
