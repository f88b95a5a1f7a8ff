"""Iteration time of one serving engine step: prefill chunks and decode tokens priced from the op list.

A step runs every decoder layer once over its new tokens (GEMMs scale with the tokens, attention with each
sequence's context), the embedding and the LM head (logits only for sequences that emit a token), the sampling
kernels the requests' sampling parameters need, two TP all-reduces per layer and PP sends, all priced by
:class:`capsim.perf.Perf` under one calibration. The engine release (:class:`capsim.specs.engine.EngineProfile`)
adds its host time per step (scheduling, input preparation, sampler, output processing, driving its workers),
exposed or overlapped with the GPU; the host dispatch of kernels outside CUDA graphs; and the padding of a decode
batch to a captured graph size. Every field broadcasts over numpy arrays of step shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from capsim._types import Num
from capsim.analytic.attention import kv_elems_per_token
from capsim.analytic.mixers import SCAN_PREFIX
from capsim.analytic.ops import Op, OpKind, Phase, StepBatch, head_ops
from capsim.analytic.sampling import (
    DEFAULT_SAMPLING,
    PLAIN_SAMPLING,
    Sampling,
    SamplingMode,
    logit_ops,
    sampler_host_s,
    sampler_ops,
)
from capsim.analytic.serving_moe import decode_kv_reads, layer_comm_s, replica_layer_ops
from capsim.perf import Collective, Curve, Perf
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import DecodeKvReads, EngineProfile, GemmPath, get_engine
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
    cpu_dispatch_s: Num  # host time the GPU's work overlaps: kernel dispatch outside CUDA graphs, or the engine's
    #                       overlapped phases, whichever is longer
    overhead_s: Num  # engine host time the GPU waits for
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
    """(perf for every kernel, perf for decode attention) with the engine's efficiency multipliers applied and its
    GEMMs priced on the kernel path it runs them on (``EngineProfile.gemm_path``)."""
    p = perf.params
    g, a, m = p.gemm, p.attention, p.memory

    def scaled(c: Curve, f: float) -> Curve:
        return Curve(c.peak_fraction * f, c.half_sizes)

    path = "" if engine.gemm_path is GemmPath.TORCH else engine.gemm_path.value
    main = replace(p, gemm=replace(g, efficiency=scaled(g.efficiency, engine.gemm_efficiency), path=path),
                   attention=replace(a, forward=scaled(a.forward, engine.attention_efficiency)),
                   memory=replace(m, bandwidth_bytes_per_s=m.bandwidth_bytes_per_s * engine.memory_efficiency))
    dec_bw = m.bandwidth_bytes_per_s * engine.memory_efficiency * engine.decode_attention_efficiency
    cap = decode_kv_read_cap(p.device, engine)
    if cap is not None:  # the kernel's measured plateau, as the "attention" bandwidth it scales
        dec_bw = min(dec_bw, cap / m.kind_scale.get("attention", 1.0))
    decode = replace(main, memory=replace(main.memory, bandwidth_bytes_per_s=dec_bw))
    return Perf(main), Perf(decode)


def decode_kv_read_cap(device: str, engine: EngineProfile) -> float | None:
    """Bytes/s at which the engine release's decode attention kernel reads the KV cache on ``device`` at most: its
    measured fraction of the GPU's peak HBM bandwidth (engines.yaml decode_kv_read_fraction), None where unmeasured."""
    frac = next((f for family, f in engine.decode_kv_read_fraction.items() if device.startswith(family)), None)
    return None if frac is None else frac * get_accelerator(device).memory_bw_bytes_per_s


def comm_tier(plan: ServePlan, accelerator: Accelerator | None) -> str:
    """Link tier of a replica's TP collectives: inside a node while its TP group fits in one (TP alone decides;
    pipeline stages are placed node by node, each stage's TP group inside a node)."""
    if accelerator is None or plan.tp <= accelerator.gpus_per_node:
        return "intra"
    return "inter"


def pp_sends(plan: ServePlan, accelerator: Accelerator | None) -> tuple[int, int]:
    """(sends inside a node, sends across nodes) between consecutive pipeline stages: stages of ``tp`` GPUs are
    packed node by node, so a send crosses a node only at a node's last stage (every send, when one stage spans
    nodes)."""
    sends = plan.pp - 1
    if accelerator is None or plan.tp * plan.pp <= accelerator.gpus_per_node:
        return sends, 0
    per_node = accelerator.gpus_per_node // plan.tp
    inter = sends if per_node == 0 else -(-plan.pp // per_node) - 1
    return sends - inter, inter


# MLA's GEMMs that follow the context rather than the new tokens (capsim.analytic.attention.serving_kernels).
CONTEXT_GEMMS = frozenset({"kv_up", "q_absorb", "out_absorb"})


def _context(op: Op) -> bool:
    """Attention kernels, MLA's context GEMMs and a hybrid's chunked scans (their chunks and states follow the
    step's sequences, capsim.analytic.mixers)."""
    return op.kind is OpKind.ATTENTION or op.name in CONTEXT_GEMMS or op.name.startswith(SCAN_PREFIX)


def _split(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """(ops that scale with the step's new tokens, the attention kernels and the ops that follow the context or
    the sequences)."""
    return [o for o in ops if not _context(o)], [o for o in ops if _context(o)]


def layer_token_ops(model: ModelSpec, plan: ServePlan, new_tokens: Num, sequences: Num) -> list[Op]:
    """The kernels of one layer whose cost depends only on the step's token count (attention left out)."""
    return _split(replica_layer_ops(model, plan, StepBatch(sequences, new_tokens, 0.0, 0.0)))[0]


def kv_write_s(engine: EngineProfile, model: ModelSpec, plan: ServePlan, new_tokens: Num) -> Num | None:
    """Seconds of one layer's KV-cache write of the step's ``new_tokens`` where the engine's own kernel was timed
    (engines.yaml ``kv_write_s``: per call + per byte of keys and values written on one rank; 0 for no tokens),
    else None (the generic ``kv_cache_write`` copy prices it)."""
    if not engine.kv_write_s:
        return None
    per_call, per_byte = engine.kv_write_s
    n = np.asarray(new_tokens, float)
    nbytes = n * kv_elems_per_token(model, plan.tp) * plan.kv_cache_dtype.bytes
    share = model.attention_layers / model.layers  # a hybrid's recurrent layers write no KV
    return np.where(n > 0, share * (per_call + per_byte * nbytes), 0.0)


def decode_attention_line(engine: EngineProfile, plan: ServePlan) -> tuple[float, float] | None:
    """(per call s, per byte s) of the engine's own decode attention kernel for the plan's KV-cache dtype where an
    operator profile timed it (EngineProfile.decode_attention_s), else None (the calibration's attention price)."""
    return engine.decode_attention_s.get(plan.kv_cache_dtype.value)


def decode_attention_s(perf: Perf, engine: EngineProfile, plan: ServePlan, ops: list[Op]) -> Num:
    """One layer's decode attention kernels ``ops`` at the decode rate ``perf``, or on the engine's measured line
    (:func:`decode_attention_line`: the calibration's launch, then per call less that launch plus per byte moved)."""
    line = decode_attention_line(engine, plan)
    if line is None:
        return perf.ops_s(ops)
    per_call, per_byte = line
    launch = perf.params.attention.launch_s
    return sum(o.share * (launch + np.maximum(per_call - launch + per_byte * o.bytes * o.count, 0.0)) for o in ops)


def layer_token_s(perf: Perf, model: ModelSpec, plan: ServePlan, new_tokens: Num, sequences: Num,
                  engine: EngineProfile) -> Num:
    """Seconds of one layer's token kernels (:func:`layer_token_ops`), the KV-cache write on the engine's own
    measured kernel where its profile timed one (:func:`kv_write_s`)."""
    ops = layer_token_ops(model, plan, new_tokens, sequences)
    measured = kv_write_s(engine, model, plan, new_tokens)
    if measured is None:
        return perf.ops_s(ops)
    return perf.ops_s([o for o in ops if o.name != "kv_cache_write"]) + measured


def attention_ops(model: ModelSpec, plan: ServePlan, batch: StepBatch, phase: Phase = Phase.PREFILL,
                  kv_reads: DecodeKvReads = DecodeKvReads.PER_KV_HEAD) -> list[Op]:
    """The attention kernels of one layer on one GPU for ``batch`` (prefill chunks, or decode tokens), one per kind
    of attention layer (global, sliding window), with MLA's context GEMMs. The decode kernel reads each KV head's
    cache once, or once per query head where the engine release's kernel does (engines.yaml decode_kv_reads)."""
    return _split(replica_layer_ops(model, plan, batch, phase, kv_reads))[1]


def kernels_per_step(model: ModelSpec, plan: ServePlan, prefill: Num, decode: Num) -> Num:
    """Kernels one step launches: each layer's token kernels, its attention kernels and its all-reduces (an op
    only some layers run counts its share)."""
    per_layer = sum(o.share for o in layer_token_ops(model, plan, 1.0, 1.0)) + (2 if plan.tp > 1 else 0)
    pre = sum(o.share for o in attention_ops(model, plan, StepBatch(1.0, 1.0, 1.0, 1.0)))
    dec = sum(o.share for o in attention_ops(model, plan, StepBatch(1.0, 1.0, 1.0, 1.0), Phase.DECODE))
    attn = (np.asarray(prefill) > 0) * pre + (np.asarray(decode) > 0) * dec
    return model.layers * (per_layer + attn) + len(head_ops(model, 1.0)) + (plan.pp - 1)


def tp_comm_s(perf: Perf, model: ModelSpec, plan: ServePlan, new_tokens: Num, logits: Num, tier: str) -> Num:
    """Every layer's collectives (serving_moe.layer_comm_s: Megatron TP's two all-reduces, or the MoE token
    exchange under attention data parallelism), the all-reduce after the vocab-parallel embedding (Shoeybi et al.
    2019, Sec. 3) and the gather of the vocab-parallel logits (vLLM LogitsProcessor)."""
    act = plan.dtype.bytes
    n = np.asarray(new_tokens, float)
    embed = perf.collective_s(Collective.ALL_REDUCE, n * model.hidden * act, plan.tp, tier)
    gather = perf.collective_s(Collective.ALL_GATHER, np.asarray(logits, float) * model.vocab * act, plan.tp, tier)
    on = n > 0
    return (np.where(on, model.layers * layer_comm_s(perf, model, plan, n, tier) + embed, 0.0)
            + np.where(np.asarray(logits) > 0, gather, 0.0))


def pp_comm_s(perf: Perf, model: ModelSpec, plan: ServePlan, new_tokens: Num, sends: tuple[int, int]) -> Num:
    """Point-to-point sends of the step's activations between consecutive pipeline stages, ``sends`` =
    (inside a node, across nodes) as :func:`pp_sends` counts them."""
    if plan.pp == 1:
        return 0.0 * np.asarray(new_tokens, float)
    nbytes = np.asarray(new_tokens, float) * model.hidden * plan.dtype.bytes
    # a tier no send crosses is not priced (a calibration may lack the inter-node figures a one-node pipeline
    # never uses)
    return sum(n * perf.collective_s(Collective.SEND_RECV, nbytes, 2, tier)
               for n, tier in zip(sends, ("intra", "inter"), strict=True) if n) + 0.0 * nbytes


# The captured batch of every decode batch size, by the fields EngineProfile.graph_batch reads (built once: a
# capacity bound prices hundreds of batch sizes per candidate, the planner thousands of candidates).
_GRAPH_TABLES: dict[tuple[bool, tuple[int, ...], bool], np.ndarray] = {}


def _graph_table(engine: EngineProfile) -> np.ndarray:
    key = (bool(engine.cuda_graphs), tuple(engine.cuda_graph_sizes), bool(engine.cuda_graph_padding))
    table = _GRAPH_TABLES.get(key)
    if table is None:
        table = np.array([engine.graph_batch(b) for b in range(engine.cuda_graph_max_batch + 1)], float)
        table.flags.writeable = False
        _GRAPH_TABLES[key] = table
    return table


def graph_batches(engine: EngineProfile, prefill_tokens: Num, decode_seqs: Num) -> np.ndarray:
    """The captured batch each step replays (decode-only steps, padded as the engine pads), 0 where it runs
    eagerly."""
    d = np.asarray(decode_seqs, float)
    table = _graph_table(engine)
    idx = np.clip(d, 0, len(table) - 1).astype(int)
    return np.where((np.asarray(prefill_tokens) == 0) & (d > 0) & (d < len(table)), table[idx], 0.0)


def iteration_time(model: ModelSpec, plan: ServePlan, perf: Perf, shape: StepShape,
                   engine: EngineProfile | str = "vllm", accelerator: Accelerator | None = None,
                   sampling: Sampling = DEFAULT_SAMPLING) -> IterationTime:
    """Time of one engine step of ``shape`` on one replica of ``plan`` (vectorised over ``shape``'s arrays).

    A decode-only step that replays a CUDA graph runs the token kernels and the LM head at the captured (padded)
    batch; its padded rows hold no context, so attention is unchanged.
    """
    engine = get_engine(engine)
    main, dec = engine_perf(perf, engine)
    tier = comm_tier(plan, accelerator)
    graph = graph_batches(engine, shape.prefill_tokens, shape.decode_seqs)
    padded = graph > 0
    n = np.where(padded, graph, shape.new_tokens)
    seqs = shape.sequences
    logits = np.where(padded, graph, shape.logit_rows)
    layers = model.layers * layer_token_s(main, model, plan, n, seqs, engine)
    pre = StepBatch(shape.prefill_seqs, shape.prefill_tokens, shape.prefill_pairs, shape.prefill_kv_tokens)
    d = np.asarray(shape.decode_seqs, float)
    dec_batch = StepBatch(d, d, shape.decode_kv_tokens, shape.decode_kv_tokens)
    reads = decode_kv_reads(model, plan, engine)
    dec_ops = attention_ops(model, plan, dec_batch, Phase.DECODE, reads)  # kernels at the decode rate, GEMMs as others
    dec_s = decode_attention_s(dec, engine, plan, [o for o in dec_ops if o.kind is OpKind.ATTENTION]) \
        + main.ops_s([o for o in dec_ops if o.kind is not OpKind.ATTENTION])
    attn = model.layers * (np.where(np.asarray(shape.prefill_tokens) > 0,
                                    main.ops_s(attention_ops(model, plan, pre)), 0.0) + np.where(d > 0, dec_s, 0.0))
    logit, measured = logit_ops(model, plan, logits, engine, sampling)  # + the engine's own sampler, if profiled
    head = main.ops_s([o for o in head_ops(model, n, plan.tp, plan.dtype, logits_tokens=0.0,
                                           weight_dtype=plan.weight_dtype) if o.name in ("embedding", "final_norm")]
                      + logit) + measured
    tp = tp_comm_s(main, model, plan, n, logits, tier)
    pp = pp_comm_s(main, model, plan, n, pp_sends(plan, accelerator))
    kernels = kernels_per_step(model, plan, shape.prefill_tokens, d)
    host = engine.host_cost(plan.tp)
    cpu = np.maximum(np.where(padded, 0.0, kernels * engine.kernel_dispatch_s), host.overlapped_s(seqs))
    prompt = np.asarray(shape.prefill_tokens, float)
    cpu = np.maximum(cpu, host.overlapped_s(seqs, prompt))
    exposed = host.exposed_s(np.asarray(seqs, float), prompt, np.asarray(shape.prefill_seqs, float))
    return IterationTime(layers, attn, head, tp, pp, cpu, exposed, perf.name, engine.name)


__all__ = ["DEFAULT_SAMPLING", "PLAIN_SAMPLING", "IterationTime", "Sampling", "SamplingMode", "logit_ops",
           "sampler_host_s", "StepShape", "comm_tier", "decode_attention_line", "decode_attention_s", "engine_perf", "graph_batches", "pp_sends", "iteration_time", "sampler_ops",
           "kv_write_s", "layer_token_s"]
