"""FLOP counts: per token (6N + attention), per Megatron iteration, and per serving step, from the op list."""

from __future__ import annotations

import numpy as np

from capsim._types import Num
from capsim.analytic.mixers import recurrent_shares, scan_flops_per_token
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
from capsim.analytic.params import in_proj_cols
from capsim.specs.model import Mixer, ModelSpec


def attention_weights(model: ModelSpec) -> float:
    """Weights of one layer's attention projections (MLA: its down- and up-projections, as training runs them)."""
    h, heads, d, v = model.hidden, model.heads, model.head_dim, model.v_dim
    if model.is_mla:
        q = h * heads * d if model.q_lora_rank is None else model.q_lora_rank * (h + heads * d)
        rope, kvr = model.qk_rope_head_dim, model.kv_lora_rank
        return float(q + h * (kvr + rope) + kvr * heads * (d - rope + v) + heads * v * h)
    gate = h * heads * d if model.attn_output_gate else 0  # Qwen3-Next: q_proj also emits the output gate
    return float(h * heads * d + h * model.kv_heads * (d + v) + heads * v * h + gate)


def recurrent_weights(model: ModelSpec, kind: Mixer) -> float:
    """Weights of one recurrent mixer's in_proj and out_proj (capsim.analytic.params.recurrent_params, less its
    conv, norms and per-head vectors)."""
    h, heads = model.hidden, model.ssm_heads
    keys, values = model.ssm_groups * model.ssm_state, heads * model.ssm_head_dim
    return float(h * in_proj_cols(kind, heads, values, keys) + values * h)


def mlp_weights(model: ModelSpec, moe: bool) -> int:
    """Weights one token multiplies through in one decoder layer's FFN: a dense-FFN layer's MLP, or an MoE layer's
    active and shared experts and its router."""
    h, ffn = model.hidden, model.mlp.matrices * model.hidden
    if not moe:
        return ffn * model.dense_ffn
    gate = h if model.shared_expert_gate else 0  # Qwen2-MoE's shared-expert gate: one more router column
    return ffn * (model.top_k * model.ffn_hidden + model.shared_experts * model.shared_ffn) + h * model.experts + gate


def matmul_params(model: ModelSpec) -> float:
    """N of '6N': weights one token multiplies through (active experts and the LM head; no lookups or norms)."""
    h = model.hidden
    moe = model.moe_layers
    mlp = (model.layers - moe) * mlp_weights(model, False)  # dense layers (every layer of a dense model)
    mlp += moe * mlp_weights(model, True)
    mlp += model.encoder_layers * model.mlp.matrices * h * model.ffn_hidden
    attn = (model.attention_layers + model.encoder_layers) * attention_weights(model)
    attn += sum(model.mixer_layers(k) * recurrent_weights(model, k) for k, _ in recurrent_shares(model))
    cross = model.layers * attention_weights(model) if model.encoder_layers else 0.0
    return float(attn + mlp + cross + model.vocab * h)


def attention_span(model: ModelSpec, seq_len: Num, windows: bool = True) -> Num:
    """Keys each query meets, summed over the layers, in the full-square convention of Megatron and PaLM (every
    query against the whole sequence): s per global layer, min(s, W) per sliding-window layer. ``windows=False``
    counts every layer whole (an unfused kernel computes the full square and masks it)."""
    s = np.asarray(seq_len, float)
    sliding = model.sliding_layers if windows else 0
    span = (model.attention_layers + model.encoder_layers - sliding) * s  # a hybrid's recurrent layers have none
    return span + sliding * np.minimum(s, model.sliding_window or 0)


def attention_flops_per_token(model: ModelSpec, seq_len: Num, windows: bool = True) -> Num:
    """Forward QK^T and PV FLOPs per token: 2 heads (d_qk + d_v) per key met (4 l s q for GPT)."""
    return 2.0 * model.heads * (model.head_dim + model.v_dim) * attention_span(model, seq_len, windows)


def training_flops_per_token(model: ModelSpec, seq_len: Num, recompute_full: bool = False) -> Num:
    """6N + 12 l s q (forward + backward, full attention square as Megatron counts it); with full
    recomputation the layers run forward twice: 8N_layers + 6N_head + 16 l s q (Narayanan et al. SC21, Eq. 3).
    Sliding-window layers count min(s, W) keys per query, MLA its query-key and value dims apart; a hybrid's
    recurrent layers their chunked scans (capsim.analytic.mixers) in place of attention."""
    n_head = model.vocab * model.hidden
    n_layers = matmul_params(model) - n_head
    attn = attention_flops_per_token(model, seq_len) + (scan_flops_per_token(model, seq_len) if model.is_hybrid else 0)
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


def megatron_core_model_flops(model: ModelSpec, global_batch: Num, seq_len: Num) -> Num:
    """Megatron-Core's logged model FLOPs of one iteration (its "throughput per GPU (TFLOP/s/GPU)" numerator):
    ML@core_v0.8.0 megatron/training/training.py L73-108 num_floating_point_operations,
    12 B s l h^2 ((1 + g/a + s/h) q/h + f/h k m + V/2lh), with q = heads x head_dim, g the KV groups, f the FFN
    (per expert) width, k the experts a token is routed to (1 for a dense model), m = 3/2 for a gated MLP. For a
    GPT-shaped model (MHA, f = 4h, no gating) it is SC21's 72 B s l h^2 (1 + s/6h + V/12lh) exactly."""
    b, s = np.asarray(global_batch, float), np.asarray(seq_len, float)
    h, l = model.hidden, model.layers
    attention = (1 + model.kv_heads / model.heads + s / h) * model.q_dim / h
    mlp = model.ffn_hidden / h * (model.top_k if model.is_moe else 1) * model.mlp.matrices / 2
    return 12.0 * b * s * l * h * h * (attention + mlp + model.vocab / (2 * l * h))


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


def serving_step_flops(model: ModelSpec, batch: StepBatch, tp: Num = 1, phase: Phase = Phase.PREFILL) -> Num:
    """Matmul FLOPs of one engine step on one GPU of a TP group (layers plus LM head for each sequence); ``phase``
    picks MLA's form (decode attends over the latent with absorbed projections)."""
    layer = total(serving_layer_ops(model, batch, tp, phase=phase), kinds=MATMUL_KINDS)
    head = 2.0 * batch.sequences * model.hidden * model.vocab / np.asarray(tp, float)
    return model.layers * layer + head
