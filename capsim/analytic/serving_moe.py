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
from capsim.analytic.ops import LayerShape, Op, StepBatch, _mlp_ops, active_experts, serving_layer_ops
from capsim.perf import Collective, Perf
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


def replica_layer_ops(model: ModelSpec, plan: ServePlan, batch: StepBatch) -> list[Op]:
    """The kernels of one layer on one GPU of ``plan``'s TP group for one engine step of ``batch``."""
    dtypes = (plan.dtype, plan.weight_dtype, plan.kv_cache_dtype, plan.compute_dtype)
    if not plan.dp_attention and plan.ep == 1:
        return serving_layer_ops(model, batch, plan.tp, *dtypes)
    tp_attn = 1 if plan.dp_attention else plan.tp
    ops = [o for o in serving_layer_ops(model, local_batch(batch, plan), tp_attn, *dtypes)
           if o.name not in EXPERT_OPS]
    # Routed experts see the step's tokens from the whole group: E/ep experts per GPU, each split over tp/ep.
    n = np.asarray(batch.new_tokens, float)
    shape = LayerShape(n / plan.ep, batch.sequences, plan.tp / plan.ep, 1, False)
    cdt = plan.compute_dtype
    experts = _mlp_ops(model, shape, cdt, plan.dtype.bytes, plan.weight_dtype.bytes,
                       active_experts(model, n) / plan.ep)
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


def kv_heads_per_gpu(model: ModelSpec, plan: ServePlan) -> float:
    """KV heads whose cache one GPU reads per token of the step, averaged over the group: heads split by TP (one
    replicated head when TP exceeds them), or every head for 1/tp of the sequences (attention data parallel)."""
    if plan.dp_attention:
        return model.kv_heads / plan.tp
    return max(model.kv_heads / plan.tp, 1.0)


__all__ = ["EXPERT_OPS", "kv_heads_per_gpu", "layer_comm_s", "local_batch", "replica_layer_ops"]
