"""One layer's kernels and collectives on one GPU of a serving replica, with the MoE layouts engines offer.

A replica's TP group of ``tp`` GPUs runs attention split by heads (tensor parallel) or, with attention data
parallelism, each GPU attends its own 1/tp of the sequences with every head (SGLang ``--enable-dp-attention``,
TensorRT-LLM ``enable_attention_dp``). Routed experts are split by TP, or over ``ep`` GPUs of the group with each
expert whole (vLLM ``--enable-expert-parallel``, SGLang ``--ep-size``). With attention data parallelism the step's
tokens meet their experts through an all-to-all dispatch and combine (expert parallel) or an all-gather and a
reduce-scatter (experts split by TP); with attention split by TP every GPU already holds every token and the
experts' outputs are summed by the all-reduce a TP MLP ends with.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from capsim._types import Num
from capsim.analytic.attention import KernelDims, kernel_dims
from capsim.analytic.ops import Op, Phase, StepBatch, _mlp_ops, active_experts, layer_shape, serving_layer_ops
from capsim.perf import Collective, Perf
from capsim.specs.engine import DecodeKvReads, EngineProfile
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan

EXPERT_OPS = ("mlp_up", "mlp_act", "mlp_down")


def local_batch(batch: StepBatch, plan: ServePlan) -> StepBatch:
    """One GPU's share of a step under attention data parallelism (1/tp of its sequences and tokens), else the
    step itself."""
    if not plan.dp_attention:
        return batch
    f = 1.0 / plan.tp
    return StepBatch(np.asarray(batch.sequences, float) * f, np.asarray(batch.new_tokens, float) * f,
                     np.asarray(batch.attention_pairs, float) * f, np.asarray(batch.kv_tokens, float) * f)


def replica_layer_ops(model: ModelSpec, plan: ServePlan, batch: StepBatch, phase: Phase = Phase.PREFILL,
                      kv_reads: DecodeKvReads = DecodeKvReads.PER_KV_HEAD) -> list[Op]:
    """The kernels of one layer on one GPU of ``plan``'s TP group for one engine step of ``batch`` (``phase``
    picks the prefill or the decode attention kernels, ``kv_reads`` how the decode kernel reads the cache)."""
    dtypes = (plan.dtype, plan.weight_dtype, plan.kv_cache_dtype, plan.compute_dtype)
    if not plan.dp_attention and plan.ep == 1:
        return serving_layer_ops(model, batch, plan.tp, *dtypes, phase, kv_reads)
    tp_attn = 1 if plan.dp_attention else plan.tp
    ops = [o for o in serving_layer_ops(model, local_batch(batch, plan), tp_attn, *dtypes, phase, kv_reads)
           if o.name not in EXPERT_OPS]
    # Routed experts see the step's tokens from the whole group: E/ep experts per GPU, each split over tp/ep. The
    # group holds each token once, so each EP rank contributes 1/ep of the step's tokens to the exchange.
    n = np.asarray(batch.new_tokens, float)
    shape = layer_shape(model, n / plan.ep, batch.sequences, plan.tp, plan.ep, False, plan.tp / plan.ep)
    experts = _mlp_ops(model, shape, plan.compute_dtype, plan.dtype.bytes, plan.weight_dtype.bytes,
                       touched=active_experts(model, n) / plan.ep)
    return ops + [replace(o, saved=()) for o in experts if o.name in EXPERT_OPS]


def layer_comm_s(perf: Perf, model: ModelSpec, plan: ServePlan, new_tokens: Num, tier: str) -> Num:
    """Collectives of one layer: two TP all-reduces (after attention and after the MLP; Shoeybi et al. 2019,
    Sec. 3), or under attention data parallelism the MoE layer's token exchange: all-to-all dispatch and
    combine of each GPU's tokens x top_k hidden vectors (expert parallel; DeepSeek-V3 report Sec. 3.4), else
    an all-gather and a reduce-scatter of the step's hidden states."""
    n = np.asarray(new_tokens, float)
    act = plan.dtype.bytes
    if not plan.dp_attention:
        return 2.0 * perf.collective_s(Collective.ALL_REDUCE, n * model.hidden * act, plan.tp, tier)
    if plan.ep > 1:
        a2a = perf.collective_s(Collective.ALL_TO_ALL, n / plan.tp * model.top_k * model.hidden * act, plan.tp, tier)
        return 2.0 * a2a
    return (perf.collective_s(Collective.ALL_GATHER, n * model.hidden * act, plan.tp, tier)
            + perf.collective_s(Collective.REDUCE_SCATTER, n * model.hidden * act, plan.tp, tier))


def gpu_kernel_dims(model: ModelSpec, plan: ServePlan, phase: Phase,
                    kv_reads: DecodeKvReads = DecodeKvReads.PER_KV_HEAD) -> KernelDims:
    """The attention kernel of one GPU, per query token and key of the whole step: heads split by TP, or, with
    attention data parallelism, every head over 1/tp of the sequences (the same per-step work, without the KV
    heads TP replicates past their number, and with MLA's latent cached once per sequence instead of per rank)."""
    if not plan.dp_attention:
        return kernel_dims(model, plan.tp, phase, kv_reads)
    k = kernel_dims(model, 1, phase, kv_reads)
    return replace(k, heads=k.heads / plan.tp, kv_elems=k.kv_elems / plan.tp)


def decode_kv_reads(model: ModelSpec, plan: ServePlan, engine: EngineProfile) -> DecodeKvReads:
    """How the engine's decode kernel reads one GPU's KV cache: its profile's pattern where the kernel covers the
    rank's GQA group (query heads per cached KV head, KV heads replicated past their number), else per query head."""
    tp = 1 if plan.dp_attention else plan.tp
    group = (model.heads / tp) / max(model.kv_heads / tp, 1.0)
    return engine.decode_reads_for(group)


__all__ = ["EXPERT_OPS", "decode_kv_reads", "gpu_kernel_dims", "layer_comm_s", "local_batch", "replica_layer_ops"]
