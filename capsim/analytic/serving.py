"""Iteration time of one serving engine step: prefill chunks and decode tokens priced from the op list.

A step runs every decoder layer once over its new tokens (GEMMs scale with the tokens, attention with each
sequence's context), the embedding and the LM head (logits only for sequences that emit a token), two TP
all-reduces per layer and PP sends, all priced by :class:`capsim.perf.Perf` under one calibration. The engine
(:class:`capsim.specs.engine.EngineProfile`) adds its per-step CPU overhead, the CPU dispatch of kernels outside
CUDA graphs, and multipliers on kernel efficiencies. Every field broadcasts over numpy arrays of step shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from capsim._types import Num
from capsim.analytic.attention import kv_elems_per_token
from capsim.analytic.ops import Op, OpKind, Phase, StepBatch, head_ops, serving_layer_ops
from capsim.perf import Collective, Curve, Perf
from capsim.specs.engine import EngineProfile, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan


@dataclass(frozen=True)
class StepShape:
    """What one engine step computes (all fields broadcast over arrays of steps).

    Prefill chunks and decode tokens are attended by separate kernels (a varlen prefill kernel and a paged
    decode kernel, as vLLM and TensorRT-LLM run them), so they are kept apart here.
    """

    prefill_tokens: Num = 0.0  # new tokens of the prefill chunks in the step
    prefill_seqs: Num = 0.0  # sequences those chunks belong to
    prefill_pairs: Num = 0.0  # causal (query, key) pairs the chunks visit
    prefill_kv_tokens: Num = 0.0  # keys the chunks read (cached + new), summed over their sequences
    decode_seqs: Num = 0.0  # sequences generating one token each
    decode_kv_tokens: Num = 0.0  # sum over decoding sequences of (context + 1)
    logits: Num | None = None  # positions that need logits; default: decode_seqs + prefill_seqs

    @classmethod
    def prefill(cls, batch: Num, prompt_tokens: Num, cached_tokens: Num = 0) -> StepShape:
        """``batch`` prompts of ``prompt_tokens`` each (after ``cached_tokens`` already in the cache)."""
        batch = np.asarray(batch, float)
        b = StepBatch.prefill(batch, prompt_tokens, cached_tokens)
        return cls(b.new_tokens, batch, b.attention_pairs, b.kv_tokens)

    @classmethod
    def decode(cls, batch: Num, context_tokens: Num) -> StepShape:
        """``batch`` sequences each generating one token after ``context_tokens`` (prompt + generated)."""
        batch = np.asarray(batch, float)
        b = StepBatch.decode(batch, context_tokens)
        return cls(decode_seqs=batch, decode_kv_tokens=b.kv_tokens)

    @property
    def new_tokens(self) -> Num:
        return np.asarray(self.prefill_tokens, float) + self.decode_seqs

    @property
    def sequences(self) -> Num:
        return np.asarray(self.prefill_seqs, float) + self.decode_seqs

    @property
    def logit_rows(self) -> Num:
        return self.sequences if self.logits is None else np.asarray(self.logits, float)


@dataclass(frozen=True)
class IterationTime:
    """Seconds of one engine step, broken down; arrays when the step shape holds arrays."""

    layers_s: Num  # GEMMs, norms and elementwise kernels of every decoder layer (attention apart)
    attention_s: Num  # prefill and decode attention kernels of every layer
    head_s: Num  # embedding, final norm, LM head and logits softmax
    tp_comm_s: Num  # all-reduces (2 per layer + embedding) and the logits gather over the TP group
    pp_comm_s: Num  # activations sent between pipeline stages
    cpu_dispatch_s: Num  # CPU time to dispatch kernels outside CUDA graphs (overlaps the GPU)
    overhead_s: Num  # engine CPU overhead the GPU waits for
    calibration: str
    engine: str

    @property
    def gpu_s(self) -> Num:
        return self.layers_s + self.attention_s + self.head_s + self.tp_comm_s + self.pp_comm_s

    @property
    def total_s(self) -> Num:
        return np.maximum(self.gpu_s, self.cpu_dispatch_s) + self.overhead_s

    def to_dict(self) -> dict[str, object]:
        keys = ("layers_s", "attention_s", "head_s", "tp_comm_s", "pp_comm_s", "cpu_dispatch_s", "overhead_s",
                "gpu_s", "total_s")
        out: dict[str, object] = {}
        for k in keys:
            v = np.asarray(getattr(self, k), float)
            out[k] = v.item() if v.size == 1 else v.tolist()
        out.update(calibration=self.calibration, engine=self.engine)
        return out


def engine_perf(perf: Perf, engine: EngineProfile) -> tuple[Perf, Perf]:
    """(perf for every kernel, perf for decode attention) with the engine's efficiency multipliers applied."""
    p = perf.params
    g, a, m = p.gemm, p.attention, p.memory

    def scaled(c: Curve, f: float) -> Curve:
        return Curve(c.peak_fraction * f, c.half_sizes)

    main = replace(p, gemm=replace(g, efficiency=scaled(g.efficiency, engine.gemm_efficiency)),
                   attention=replace(a, forward=scaled(a.forward, engine.attention_efficiency)),
                   memory=replace(m, bandwidth_bytes_per_s=m.bandwidth_bytes_per_s * engine.memory_efficiency))
    decode = replace(main, memory=replace(main.memory, bandwidth_bytes_per_s=m.bandwidth_bytes_per_s
                                          * engine.memory_efficiency * engine.decode_attention_efficiency))
    return Perf(main), Perf(decode)


def comm_tier(plan: ServePlan, accelerator: Accelerator | None) -> str:
    """Link tier of a replica's collectives: inside a node while tp x pp GPUs fit in one."""
    if accelerator is None or plan.gpus_per_replica <= accelerator.gpus_per_node:
        return "intra"
    return "inter"


# MLA's GEMMs that follow the context rather than the new tokens (capsim.analytic.attention.serving_kernels).
CONTEXT_GEMMS = frozenset({"kv_up", "q_absorb", "out_absorb"})


def _split(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """(ops that scale with the step's new tokens, the attention kernels and the GEMMs that follow the context)."""
    ctx = [o for o in ops if o.kind is OpKind.ATTENTION or o.name in CONTEXT_GEMMS]
    return [o for o in ops if not (o.kind is OpKind.ATTENTION or o.name in CONTEXT_GEMMS)], ctx


def layer_token_ops(model: ModelSpec, plan: ServePlan, new_tokens: Num, sequences: Num) -> list[Op]:
    """The kernels of one layer whose cost depends only on the step's token count (attention left out)."""
    ops = serving_layer_ops(model, StepBatch(sequences, new_tokens, 0.0, 0.0), plan.tp, plan.dtype,
                            plan.weight_dtype, plan.kv_cache_dtype, plan.compute_dtype)
    return _split(ops)[0]


def attention_ops(model: ModelSpec, plan: ServePlan, batch: StepBatch, phase: Phase = Phase.PREFILL) -> list[Op]:
    """The attention kernels of one layer for ``batch`` (prefill chunks, or decode tokens), one per kind of
    attention layer (global, sliding window), with MLA's context GEMMs."""
    return _split(serving_layer_ops(model, batch, plan.tp, plan.dtype, plan.weight_dtype, plan.kv_cache_dtype,
                                    plan.compute_dtype, phase))[1]


def kv_reads_per_token(model: ModelSpec, plan: ServePlan, engine: EngineProfile) -> float:
    """How many times a decode step's attention reads each cached key/value: once per KV head, or once per query
    head of its GQA group when the engine's decode kernel runs one thread block per query head (engines.yaml
    decode_kv_per_query_head; heads per rank over KV heads per rank, as ops.layer_shape splits them). MLA's latent
    kernels (FlashMLA, vLLM's Triton MLA) share each latent across all heads, so it is read once."""
    if not engine.decode_kv_per_query_head or model.is_mla:
        return 1.0
    return float((model.heads / plan.tp) / max(model.kv_heads / plan.tp, 1.0))


def decode_attention_ops(model: ModelSpec, plan: ServePlan, batch: StepBatch, engine: EngineProfile) -> list[Op]:
    """The decode attention of one layer: the op list's decode kernels, their KV reads repeated per query head
    when the engine's kernel does not share them across a GQA group."""
    repeat = kv_reads_per_token(model, plan, engine) - 1.0
    kv_read = kv_elems_per_token(model, plan.tp) * plan.kv_cache_dtype.bytes  # bytes per key (serving_kernels)
    return [replace(o, bytes_read=o.bytes_read + repeat * np.asarray(o.shape[3], float) * kv_read)
            if o.kind is OpKind.ATTENTION else o
            for o in attention_ops(model, plan, batch, Phase.DECODE)]


def kernels_per_step(model: ModelSpec, plan: ServePlan, prefill: Num, decode: Num) -> Num:
    """Kernels one step launches: each layer's token kernels, its attention kernels and its all-reduces (an op
    only some layers run counts its share)."""
    per_layer = sum(o.share for o in layer_token_ops(model, plan, 1.0, 1.0)) + (2 if plan.tp > 1 else 0)
    pre = sum(o.share for o in attention_ops(model, plan, StepBatch(1.0, 1.0, 1.0, 1.0)))
    dec = sum(o.share for o in attention_ops(model, plan, StepBatch(1.0, 1.0, 1.0, 1.0), Phase.DECODE))
    attn = (np.asarray(prefill) > 0) * pre + (np.asarray(decode) > 0) * dec
    return model.layers * (per_layer + attn) + len(head_ops(model, 1.0)) + (plan.pp - 1)


def tp_comm_s(perf: Perf, model: ModelSpec, plan: ServePlan, new_tokens: Num, logits: Num, tier: str) -> Num:
    """Megatron TP: all-reduce after attention and after the MLP of every layer, one after the vocab-parallel
    embedding (Shoeybi et al. 2019, Sec. 3), and a gather of the vocab-parallel logits (vLLM LogitsProcessor)."""
    act = plan.dtype.bytes
    ar = perf.collective_s(Collective.ALL_REDUCE, np.asarray(new_tokens, float) * model.hidden * act, plan.tp, tier)
    gather = perf.collective_s(Collective.ALL_GATHER, np.asarray(logits, float) * model.vocab * act, plan.tp, tier)
    on = np.asarray(new_tokens) > 0
    return np.where(on, (2 * model.layers + 1) * ar, 0.0) + np.where(np.asarray(logits) > 0, gather, 0.0)


def pp_comm_s(perf: Perf, model: ModelSpec, plan: ServePlan, new_tokens: Num, tier: str) -> Num:
    """One point-to-point send of the step's activations between consecutive pipeline stages."""
    if plan.pp == 1:
        return 0.0 * np.asarray(new_tokens, float)
    nbytes = np.asarray(new_tokens, float) * model.hidden * plan.dtype.bytes
    return (plan.pp - 1) * perf.collective_s(Collective.SEND_RECV, nbytes, 2, tier)


def overhead_s(engine: EngineProfile, sequences: Num) -> Num:
    """Engine CPU time per step that the GPU waits for (engines.yaml: step and per-sequence overhead)."""
    return engine.step_overhead_s + engine.sequence_overhead_s * np.asarray(sequences, float)


def graphed(engine: EngineProfile, prefill_tokens: Num, decode_seqs: Num) -> Num:
    """Whether a step replays a CUDA graph: decode-only steps up to the captured batch size."""
    return engine.cuda_graphs & (np.asarray(prefill_tokens) == 0) & (np.asarray(decode_seqs)
                                                                      <= engine.cuda_graph_max_batch)


def iteration_time(model: ModelSpec, plan: ServePlan, perf: Perf, shape: StepShape,
                   engine: EngineProfile | str = "vllm", accelerator: Accelerator | None = None) -> IterationTime:
    """Time of one engine step of ``shape`` on one replica of ``plan`` (vectorised over ``shape``'s arrays)."""
    engine = get_engine(engine)
    main, dec = engine_perf(perf, engine)
    tier = comm_tier(plan, accelerator)
    n, seqs, logits = shape.new_tokens, shape.sequences, shape.logit_rows
    layers = model.layers * main.ops_s(layer_token_ops(model, plan, n, seqs))
    pre = StepBatch(shape.prefill_seqs, shape.prefill_tokens, shape.prefill_pairs, shape.prefill_kv_tokens)
    d = np.asarray(shape.decode_seqs, float)
    dec_batch = StepBatch(d, d, shape.decode_kv_tokens, shape.decode_kv_tokens)
    dec_ops = decode_attention_ops(model, plan, dec_batch, engine)  # kernels at the decode rate, GEMMs as others
    dec_s = dec.ops_s([o for o in dec_ops if o.kind is OpKind.ATTENTION]) \
        + main.ops_s([o for o in dec_ops if o.kind is not OpKind.ATTENTION])
    attn = model.layers * (np.where(np.asarray(shape.prefill_tokens) > 0,
                                    main.ops_s(attention_ops(model, plan, pre)), 0.0) + np.where(d > 0, dec_s, 0.0))
    head = main.ops_s(head_ops(model, n, plan.tp, plan.dtype, logits_tokens=logits, weight_dtype=plan.weight_dtype))
    tp = tp_comm_s(main, model, plan, n, logits, tier)
    pp = pp_comm_s(main, model, plan, n, tier)
    kernels = kernels_per_step(model, plan, shape.prefill_tokens, d)
    cpu = np.where(graphed(engine, shape.prefill_tokens, d), 0.0, kernels * engine.kernel_dispatch_s)
    return IterationTime(layers, attn, head, tp, pp, cpu, overhead_s(engine, seqs), perf.name, engine.name)


__all__ = ["IterationTime", "StepShape", "engine_perf", "iteration_time"]
