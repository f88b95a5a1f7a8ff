"""Compute time of one micro-batch: each layer's forward, backward and recomputation, and the embedding and LM
head on the end stages, priced op by op from the op list (``capsim.analytic.ops``) under one calibration.

Layouts that share a layer shape (tp, cp, ep, micro-batch, sequence, SP) share these times, so they are computed
once per distinct shape and spread back over the layouts (a sweep of 10^5 layouts holds a few hundred shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from capsim.analytic import fp8, recompute
from capsim.analytic.cp_memory import CpRotate
from capsim.analytic.eager import EXPERT_OPS, FUSED, PREFIX, Eager, extra_ops
from capsim.analytic.eager import apply as apply_eager
from capsim.analytic.layouts import Layouts
from capsim.analytic.loss import FUSED_LOSS, LOSS_OP, LossKernel, loss_ops
from capsim.analytic.moe import busiest_rank, moe_tokens
from capsim.analytic.ops import (
    AttentionImpl,
    LayerShape,
    Op,
    OpKind,
    backward_ops,
    forward_layer_ops,
    head_ops,
    layer_shape,
)
from capsim.analytic.recompute import SelectiveAc
from capsim.analytic.training import host
from capsim.perf import Perf
from capsim.specs.model import Arch, ModelSpec
from capsim.specs.precision import DType, Precision

# Attention's core: what Megatron's selective recomputation replays (Korthikanti et al. 2022, Sec. 5: QK^T,
# softmax, dropout and attention over V), and what ring attention runs once per context-parallel block.
CORE_OPS = recompute.CORE_OPS
MEGATRON_SAC = recompute.MEGATRON_SAC
ATTENTION_OPS = CORE_OPS | {"attention"}
# An MoE layer's "mlp" schedule node: post-dispatch sort, the experts, the combine's pre-sort and the shared experts
# (submodule_moe_forward, megatron/core/models/gpt/fine_grained_callables.py L382-411, NVIDIA/Megatron-LM@0d8e0714);
# the rest of the layer is its "attn" and "post_attn" nodes (norm, router, permute) and the combine's unpermute.
EXPERT_NODE_OPS = frozenset({"moe_sort", "mlp_up", "mlp_act", "mlp_down", "moe_bias_scale", "moe_bias_add",
                             "moe_bias_cat", "shared_up", "shared_down"}) | EXPERT_OPS
# Ops outside the tensor-parallel region: with sequence parallelism they run on s/t tokens (Korthikanti Sec. 4.2.2).
_SEQUENCE = ("norm_attn", "residual_attn", "norm_mlp", "residual_mlp", "norm_cross", "residual_cross", "final_norm",
             "norm_attn_post", "norm_mlp_post")
SEQUENCE_OPS = frozenset(_SEQUENCE + tuple(PREFIX + n for n in _SEQUENCE))  # with a norm's eager kernels (capsim.analytic.eager)
GEMM_OPS = frozenset({"qkv", "attn_out", "mlp_up", "mlp_down", "shared_up", "shared_down", "router",
                      "cross_qkv", "cross_out", "q_proj", "q_down", "q_up", "kv_down", "kv_up"})  # last 5: MLA
SHAPE_KEYS = ("tp", "cp", "ep", "etp", "micro_batch", "seq_len", "sp")


@dataclass(frozen=True)
class MicroBatchTimes:
    """Seconds of one micro-batch on one GPU (arrays over layouts)."""

    layer_fwd_s: np.ndarray  # one layer's forward
    layer_bwd_s: np.ndarray  # one layer's backward (data and weight gradients)
    layer_core_s: np.ndarray  # the attention core's forward
    layer_selective_s: np.ndarray  # what selective recomputation replays, by the release's policy (recompute.py)
    layer_gemm_fwd_s: np.ndarray  # the layer's weight GEMMs in the forward (what TP comm could hide behind)
    layer_attn_fwd_s: np.ndarray  # attention core forward (what ring-attention KV passing hides behind)
    layer_attn_bwd_s: np.ndarray  # attention core backward
    qkv_dgrad_s: np.ndarray  # the column-parallel GEMMs' backward halves (what async TP comm hides behind)
    qkv_wgrad_s: np.ndarray
    up_dgrad_s: np.ndarray
    up_wgrad_s: np.ndarray
    # What torch's async TP adds to the GEMMs it decomposes into tp chunks of M/tp rows (``chunked_extra_s``): the
    # forward's four weight GEMMs and the backward's attention-output and fc2 data gradients
    chunk_fwd_s: np.ndarray
    chunk_bwd_s: np.ndarray
    proj_fwd_s: np.ndarray  # the row-parallel forward GEMMs a userbuffers reduce-scatter overlaps: attention output
    fc2_fwd_s: np.ndarray  # and the dense MLP's fc2 (0 in an MoE layer: its experts run outside the TP overlap)
    experts_fwd_s: np.ndarray  # an MoE layer's "mlp" node (sort, experts, shared experts): what EP a2a overlap pairs
    experts_bwd_s: np.ndarray  # its backward (data and weight gradients); 0 in a dense layer
    host_fwd_s: np.ndarray  # host time to issue the layer's forward kernels (capsim.analytic.training.host)
    host_bwd_s: np.ndarray  # and its backward's
    # an MoE layer's forward runs between its host wait's collectives (host.moe_runs; zeros in a dense layer):
    # the permute before the dispatch, the experts between dispatch and combine, and the rest up to the next wait
    pre_span_s: np.ndarray
    pre_host_s: np.ndarray
    pre_gpu_s: np.ndarray
    experts_span_s: np.ndarray
    experts_host_s: np.ndarray
    experts_gpu_s: np.ndarray
    post_span_s: np.ndarray
    post_host_s: np.ndarray
    post_gpu_s: np.ndarray
    embed_fwd_s: np.ndarray  # embedding lookup (first stage)
    embed_bwd_s: np.ndarray
    head_fwd_s: np.ndarray  # final norm, LM head and loss (last stage)
    head_bwd_s: np.ndarray

    def runs(self) -> tuple[host.Issue, host.Issue, host.Issue]:
        """The MoE forward's (pre, experts, post) runs (``host.moe_runs``)."""
        pre, experts, post = (host.Issue(getattr(self, f"{r}_span_s"), getattr(self, f"{r}_host_s"),
                                         getattr(self, f"{r}_gpu_s")) for r in ("pre", "experts", "post"))
        return pre, experts, post

    def take(self, index: np.ndarray) -> MicroBatchTimes:
        return MicroBatchTimes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def mix(self, other: MicroBatchTimes, weight: np.ndarray) -> MicroBatchTimes:
        """``(1 - weight) self + weight other``, field by field: the mean of a stack of two kinds of layer."""
        return MicroBatchTimes(**{f.name: (1.0 - weight) * getattr(self, f.name) + weight * getattr(other, f.name)
                                  for f in fields(self)})


def _base(name: str) -> str:
    base = name.split(".")[0]
    return base[len("cross_"):] if base.startswith("cross_") else base


def _op_s(perf: Perf, op: Op, lay: Layouts, precision: Precision) -> np.ndarray:
    """One op's time on this layout: SP shrinks the ops outside the TP region, CP repeats attention per block."""
    base = _base(op.name)
    if base in SEQUENCE_OPS or op.name.split(".")[0] in SEQUENCE_OPS:
        shard = np.where(lay.sp, lay.tp, 1)
        op = replace(op, bytes_read=op.bytes_read / shard, bytes_written=op.bytes_written / shard,
                     flops=op.flops / shard)
    accumulation = ""
    if op.kind is OpKind.GEMM and base not in CORE_OPS:
        op = replace(op, dtype=fp8.gemm_format(op.name, precision))  # FP8 recipes: only TE's weight GEMMs
        accumulation = fp8.accumulation(op.name, precision)  # dgrad, wgrad: FP32-promoted (split) accumulation
    t = perf.op_s(op, accumulation)
    if base in ATTENTION_OPS:
        # Ring attention: each rank's s/cp queries meet all s keys in cp steps (Liu et al. 2023, "Ring Attention",
        # Sec. 3), the first the causal local block, each later one a block of the same FLOPs (``_later_step_s``)
        later = np.maximum(np.asarray(lay.cp, float) - 1.0, 0.0)
        t = t + later * (_later_step_s(perf, op) if op.kind is OpKind.ATTENTION else t)
    return np.asarray(t, float)


def _later_step_s(perf: Perf, op: Op) -> np.ndarray:
    """One later ring step of a fused attention kernel under causal load balancing (rank r holds chunks r and
    2cp-1-r of 2cp): a non-causal kernel of all the rank's s/cp queries against half the keys (the step's source
    rank precedes r) or of its later half of the queries against all the keys (it follows r), each s/cp x s/2cp
    pairs, the causal local block's FLOPs (Transformer Engine ``AttnFuncWithCP``, TE v1.8 transformer_engine/pytorch/
    attention.py L518-1055; torch/distributed/tensor/experimental/_attention.py ``_templated_ring_attention``,
    pytorch@0123248 'i <= rank' / 'else' branches, the same in its backward). Rank r runs r of the first kind and
    cp-1-r of the second, so the slowest rank runs cp - 1 of the slower one; each is priced at its own shape on the
    calibration's curve (query rows, keys per sequence) for a kernel without the causal mask, its bytes those of the
    local block."""
    seqs, heads, q, kv, d = op.shape
    half_kv = perf.op_s(replace(op, shape=(seqs, heads, q, np.asarray(kv, float) / 2.0, d), causal=False))
    half_q = perf.op_s(replace(op, shape=(seqs, heads, np.asarray(q, float) / 2.0, kv, d), causal=False))
    return np.maximum(half_kv, half_q)


def _sum(perf: Perf, ops: list[Op], lay: Layouts, precision: Precision, names: frozenset[str] | None = None
         ) -> np.ndarray:
    out = np.zeros(len(lay))
    for op in ops:
        if names is None or _base(op.name) in names:
            out = out + _op_s(perf, op, lay, precision)
    return out


def ring_attention_ops(model: ModelSpec, shape: LayerShape, cp: np.ndarray, dtype: DType,
                       torch_cp: bool | CpRotate = False, repeat_kv: bool = False) -> tuple[Op, Op]:
    """The memory-bound passes ring attention adds around its per-step attention kernels, per layer and
    micro-batch on one GPU: (forward, backward); zero bytes without context parallelism.

    Transformer Engine's ``AttnFuncWithCP`` (transformer_engine/pytorch/attention.py, TE v2.2; the same passes in
    v1.8 L518-1055 and L1142-1580), bshd/sbhd layout, causal with 2cp load-balanced chunks. Forward: K and V are
    concatenated into the send buffer (``torch.cat``, L796-798: read and write K, V); the first step's output is
    rescaled into ``out`` (``flash_attn_fwd_out_correction_init``: read, write O) and each of the cp - 1 later
    steps' output is merged into it (``flash_attn_fwd_out_correction``: read the step's output and ``out``, write
    ``out``: 3 O), a later step covering all of a rank's queries against half the keys or half its queries
    against all keys (mean size 3/4 over the ranks; the halves are copied out ``contiguous``: K, V or Q once).
    Backward (L2200-2370): K and V copied into the first buffer; each step's dQ added into ``dq`` (3 Q; the
    first a copy, 2 Q) and its dK, dV concatenated (``torch.cat``, 2 KV) and added into the travelling ``dkv``
    (3 KV); the halves of Q, O, dO or K, V copied out ``contiguous``. Q, O are the rank's local queries and
    outputs (its s/cp tokens x heads x dims); K, V its keys and values (MLA: every head's, K of head_dim, V of
    v_dim dims; ``repeat_kv``: every query head's, as the model expanded them, ``Framework.repeat_kv``). ``torch_cp``:
    torch's experimental context parallelism instead (:func:`_torch_cp_bytes`); or the ``Framework.cp_rotate`` itself,
    where ``CpRotate.GATHER_KV`` (Llama 3's all-gather CP) runs one attention over the gathered K, V: no merge passes."""
    rotate = CpRotate(torch_cp) if isinstance(torch_cp, str) else (CpRotate.ALLGATHER if torch_cp else CpRotate.P2P)
    heads = shape.heads
    kv_heads = shape.heads if model.is_mla or repeat_kv else shape.kv_heads
    tok = shape.tokens
    q, o = tok * heads * model.head_dim, tok * heads * model.v_dim
    kv = tok * kv_heads * (model.head_dim + model.v_dim)
    later = np.maximum(np.asarray(cp, float) - 1.0, 0.0)  # steps after the first
    on = later > 0
    b = dtype.bytes
    if rotate is CpRotate.GATHER_KV:
        fwd_bytes, bwd_bytes = 0.0 * later, 0.0 * later
    elif rotate is not CpRotate.P2P:
        fwd_bytes, bwd_bytes = _torch_cp_bytes(q, o, kv, later, b)
    else:
        fwd_bytes = b * (2.0 * kv + 2.0 * o + later * (0.75 * 3.0 * o + 0.5 * kv + 0.5 * q))
        bwd_bytes = b * (2.0 * kv + (2.0 * q + 4.0 * kv)
                         + later * (0.75 * (3.0 * q + 5.0 * kv) + 0.5 * kv + 0.5 * (q + 2 * o)))
    # share 0 without context parallelism: no kernel, no launch
    return tuple(Op(name, OpKind.ELEMENTWISE, nbytes / b, nbytes / 2, nbytes / 2, (nbytes / b,), dtype,
                    share=on.astype(float))
                 for name, nbytes in (("cp_merge", fwd_bytes), ("cp_merge.bwd", bwd_bytes)))


def _torch_cp_bytes(q: object, o: object, kv: object, later: np.ndarray, b: float) -> tuple[object, object]:
    """Bytes the memory-bound passes of torch's experimental context parallelism move per layer on one rank:
    (forward, backward), ``b`` bytes per activation, fp32 (4 bytes) where ``_cp_options.convert_to_f32``.

    torch/distributed/tensor/experimental/_attention.py ``_templated_ring_attention`` (as torchtitan 9dec370 and
    e7c0cae run it): K and V made contiguous (torchtitan passes them transposed) and concatenated for the exchange
    before each of the cp - 1 later steps (2 KV each); ``_SDPAMerger`` casts each step's output to fp32 (read b,
    write 4 per element), merges a later step into ``out`` (out - sigmoid(lse diff) * (out - block): 8 fp32 passes)
    over all of it or, for the half of the steps that cover half the queries, half of it (mean 3/4), and those half
    steps ``torch.cat`` their half back into the whole fp32 ``out`` (_partial_update: read and write O); the result
    is cast back (read 4, write b). ``_templated_ring_attention_backward``: fp32 zeros for dQ, dK, dV; K, V made
    contiguous and concatenated per later step as above; each step adds its dQ, dK, dV into the fp32 accumulators
    (read 4 + b, write 4), a half step's through ``_partial_update`` (half the add, then a cat of the whole: 11.5
    bytes per element on average), concatenates dK, dV for the ring (read and write 4 per element, every step) and
    casts dQ, dK, dV back at the end. Q, O, KV in elements of the rank's local tokens."""
    f = 4.0
    fwd = 2.0 * b * kv * (1.0 + later) + (b + f) * o + later * o * (0.75 * (b + f) + 0.75 * 8.0 * f + 0.5 * 2.0 * f) \
        + (f + b) * o
    add = 2.0 * f + b  # x += y: read fp32 and the step's bf16, write fp32
    half = 0.5 * (0.5 * add + 2.0 * f) + 0.5 * add  # mean of a half-step partial update and a plain add
    bwd = f * (q + kv) + 2.0 * b * kv * (1.0 + later) + add * (q + kv) + later * half * (q + kv) \
        + 2.0 * f * kv * (1.0 + later) + (f + b) * (q + kv)
    return fwd, bwd


def repeat_kv_ops(model: ModelSpec, shape: LayerShape, dtype: DType) -> tuple[list[Op], list[Op]]:
    """(forward, backward) of a model that expands K and V to every query head before attention
    (``Framework.repeat_kv``; torchtitan's Llama ``repeat_kv``: ``x[:, :, :, None, :].expand(...).reshape(...)``, a
    copy): read the rank's K, V, write them once per query head; its backward sums the copies back (read the
    expanded gradient, write the KV-head one). None where every query head has its own K, V (n_rep 1 returns x)."""
    if model.is_mla or model.kv_heads >= model.heads:
        return [], []
    tok, d = shape.tokens, model.head_dim + model.v_dim
    own, every = tok * shape.kv_heads * d, tok * shape.heads * d
    b = dtype.bytes
    return ([Op("repeat_kv", OpKind.ELEMENTWISE, 0.0, own * b, every * b, (every,), dtype)],
            [Op("repeat_kv.bwd", OpKind.ELEMENTWISE, every, every * b, own * b, (every,), dtype)])


def layer_op_lists(model: ModelSpec, lay: Layouts, precision: Precision, attention: AttentionImpl,
                   dropout: bool, cross: bool = False, moe_share: float | None = None, pad: bool = False,
                   random_routing: bool = False, local_casts: bool = False, torch_cp: bool | CpRotate = False,
                   norm: fp8.NormQuantize = fp8.NormQuantize.NONE, repeat_kv: bool = False, eager: Eager = FUSED
                   ) -> tuple[list[Op], list[Op], list[Op]]:
    """(plain forward ops, forward pass, backward pass) of one layer as ``micro_batch_times`` prices them."""
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    shape = layer_shape(model, tokens, lay.micro_batch, lay.tp, lay.ep, lay.sp, lay.etp)
    if random_routing and model.is_moe:  # the busiest EP rank's copies under random forced balancing
        shape = replace(shape, busiest=busiest_rank(model, moe_tokens(tokens, lay.tp, lay.etp, lay.sp)[0], lay.ep))
    plain = forward_layer_ops(model, shape, precision.activations, attention, dropout, cross, model.causal,
                              moe_share)
    # the release's eager passes for the model's clamped GLU, YaRN RoPE and expert fc1 bias (capsim.analytic.eager)
    plain = apply_eager(plain, model, lay.seq_len / lay.cp, shape.heads, shape.kv_heads, eager.clamp,
                        eager.yarn_rope, eager.fc1_bias)
    ring_f, ring_b = ring_attention_ops(model, shape, lay.cp, precision.activations, torch_cp, repeat_kv)
    rep_f, rep_b = repeat_kv_ops(model, shape, precision.activations) if repeat_kv else ([], [])
    eager_f, eager_b = extra_ops(plain, eager)  # the norms', RoPE's and SwiGLU's eager kernels (capsim.analytic.eager)
    pad_f, pad_b = fp8.grouped_padding(plain, precision) if pad else ([], [])
    # SP with TE (``local_casts``): the casts before an all-gather cover the rank's rows (fp8._SP_GATHERED_*)
    gathered = np.where(lay.sp & local_casts, lay.tp, 1)
    # FP8 recipes: the input casts before TE's GEMMs (``norm``: those LayerNormLinear's norm kernel does)
    fwd = fp8.forward(plain, precision, gathered, norm) + pad_f + rep_f + eager_f + [ring_f]
    bwd = backward_ops(plain) + fp8.backward_casts(plain, precision, gathered, norm) + pad_b + rep_b + eager_b + [ring_b]
    return plain, fwd, bwd


def _layer(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, attention: AttentionImpl,
           dropout: bool, cross: bool, moe_share: float | None = None, sac: SelectiveAc = MEGATRON_SAC,
           pad: bool = False, random_routing: bool = False, local_casts: bool = False,
           torch_cp: bool | CpRotate = False, norm: fp8.NormQuantize = fp8.NormQuantize.NONE,
           repeat_kv: bool = False, eager: Eager = FUSED, graph: str = "") -> dict[str, np.ndarray]:
    plain, fwd, bwd = layer_op_lists(model, lay, precision, attention, dropout, cross, moe_share, pad,
                                     random_routing, local_casts, torch_cp, norm, repeat_kv, eager)
    fwd_s = [_op_s(perf, op, lay, precision) for op in fwd]
    layer_fwd_s = sum(fwd_s, np.zeros(len(lay)))
    replay = recompute.replay_s(fwd_s, recompute.op_shares(model, fwd, sac), layer_fwd_s,
                                recompute.block_share(model, sac))
    experts_f, experts_b = _experts_node_s(model, plain, lay, precision, perf, moe_share, pad, norm)
    zero = np.zeros(len(lay))
    graphed = host.graphed_ops(graph, fwd)  # the ops a CUDA graph issues (Framework.cuda_graph_scopes)
    runs = host.moe_runs(fwd, fwd_s, precision, graphed) or (host.EMPTY,) * 3
    dense = ("mlp_up", "mlp_down", "mlp_down.dgrad") if not model.is_moe or moe_share == 0.0 else ()
    synced = {f"{name}_{part}_s": zero + getattr(run, f"{part}_s")
              for name, run in zip(("pre", "experts", "post"), runs, strict=True) for part in ("span", "host", "gpu")}
    return {**synced, "layer_fwd_s": layer_fwd_s, "layer_bwd_s": _sum(perf, bwd, lay, precision),
            "host_fwd_s": zero + host.host_s(fwd, precision, graphed),
            "host_bwd_s": zero + host.host_s(bwd, precision, graphed),
            "experts_fwd_s": experts_f, "experts_bwd_s": experts_b,
            "layer_core_s": _sum(perf, fwd, lay, precision, CORE_OPS), "layer_selective_s": replay,
            "layer_gemm_fwd_s": _sum(perf, fwd, lay, precision, GEMM_OPS),
            "layer_attn_fwd_s": _sum(perf, fwd, lay, precision, ATTENTION_OPS),
            "layer_attn_bwd_s": _sum(perf, bwd, lay, precision, ATTENTION_OPS),
            **{f"{short}_{half}_s": _named(perf, bwd, lay, precision, f"{name}.{half}")
               for short, name in (("qkv", "qkv"), ("up", "mlp_up")) for half in ("dgrad", "wgrad")},
            "chunk_fwd_s": chunked_extra_s(perf, fwd, lay, precision, ("qkv", "attn_out") + dense[:2]),
            "chunk_bwd_s": chunked_extra_s(perf, bwd, lay, precision, ("attn_out.dgrad",) + dense[2:]),
            "proj_fwd_s": _named(perf, fwd, lay, precision, "attn_out"),
            "fc2_fwd_s": (_named(perf, fwd, lay, precision, "mlp_down") if not model.is_moe or moe_share == 0.0
                          else np.zeros(len(lay)))}


def _experts_node_s(model: ModelSpec, plain: list[Op], lay: Layouts, precision: Precision, perf: Perf,
                    moe_share: float | None, pad: bool, norm: fp8.NormQuantize = fp8.NormQuantize.NONE
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) seconds of an MoE layer's expert node (``EXPERT_NODE_OPS`` with their FP8 casts and
    padding); zeros in a dense layer."""
    if not model.is_moe or moe_share == 0.0:
        return np.zeros(len(lay)), np.zeros(len(lay))
    node = [op for op in plain if _base(op.name) in EXPERT_NODE_OPS]
    pad_f, pad_b = fp8.grouped_padding(node, precision) if pad else ([], [])
    fwd = fp8.forward(node, precision, norm=norm) + pad_f
    bwd = backward_ops(node) + fp8.backward_casts(node, precision, norm=norm) + pad_b
    return _sum(perf, fwd, lay, precision), _sum(perf, bwd, lay, precision)


def chunked_extra_s(perf: Perf, ops: list[Op], lay: Layouts, precision: Precision, names: tuple[str, ...]
                    ) -> np.ndarray:
    """What the GEMMs named cost more as torch's async TP runs them: tp matmuls of M/tp rows each, one per shard
    (torch/distributed/_symmetric_memory/__init__.py ``_fused_all_gather_matmul_impl``: ``shard_consumer`` runs
    the matmul on each gathered shard; ``_fused_matmul_reduce_scatter_impl``: ``chunk_producer`` one destination's
    rows), each priced at its own shape by the calibration's GEMM curve; each chunk reads the whole weight."""
    tp = np.asarray(lay.tp, float)
    out = np.zeros(len(lay))
    for op in ops:
        if op.name not in names or op.kind is not OpKind.GEMM:
            continue
        m, n, k = op.shape
        rows = m * k * op.bytes_written / np.maximum(m * n, 1e-30)  # the left operand's bytes
        chunk = replace(op, shape=(m / tp, n, k), flops=op.flops / tp, bytes_written=op.bytes_written / tp,
                        bytes_read=op.bytes_read - rows + rows / tp)
        out = out + tp * _op_s(perf, chunk, lay, precision) - _op_s(perf, op, lay, precision)
    return out


def _named(perf: Perf, ops: list[Op], lay: Layouts, precision: Precision, name: str) -> np.ndarray:
    return sum((_op_s(perf, op, lay, precision) for op in ops if op.name == name), np.zeros(len(lay)))


def _times(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, attention: AttentionImpl,
           dropout: bool, moe_share: float | None = None, sac: SelectiveAc = MEGATRON_SAC,
           pad: bool = False, random_routing: bool = False, local_casts: bool = False,
           torch_cp: bool | CpRotate = False, norm: fp8.NormQuantize = fp8.NormQuantize.NONE,
           repeat_kv: bool = False, eager: Eager = FUSED, loss: LossKernel = FUSED_LOSS,
           graph: str = "") -> MicroBatchTimes:
    out = _layer(model, lay, precision, perf, attention, dropout, cross=False, moe_share=moe_share, sac=sac, pad=pad,
                 random_routing=random_routing, local_casts=local_casts, torch_cp=torch_cp, norm=norm,
                 repeat_kv=repeat_kv, eager=eager, graph=graph)
    if model.arch is Arch.ENCODER_DECODER:  # decoder layers add cross-attention; average over the stack
        dec = _layer(model, lay, precision, perf, attention, dropout, cross=True, sac=sac, pad=pad,
                     random_routing=random_routing, local_casts=local_casts, torch_cp=torch_cp, norm=norm,
                     repeat_kv=repeat_kv, eager=eager, graph=graph)
        out = {k: (out[k] * model.encoder_layers + dec[k] * model.layers) / model.total_layers for k in out}
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    head = head_ops(model, tokens, lay.tp, precision.activations)
    embed, rest = [o for o in head if o.name == "embedding"], [o for o in head if o.name != "embedding"]
    final_f, final_b = extra_ops(rest, eager, final=True)  # the final norm's eager kernels (outside the blocks)
    rest_f, loss_b = loss_ops(rest, loss, precision.activations)  # the loss's passes as the release runs them
    rest_b = backward_ops(rest) if loss_b is None else backward_ops([o for o in rest if o.name != LOSS_OP]) + loss_b
    out.update(embed_fwd_s=_sum(perf, embed, lay, precision), embed_bwd_s=_sum(perf, backward_ops(embed), lay,
                                                                                 precision),
               head_fwd_s=_sum(perf, rest_f + final_f, lay, precision),
               head_bwd_s=_sum(perf, rest_b + final_b, lay, precision))
    return MicroBatchTimes(**out)


def distinct(lay: Layouts, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(first index of each distinct combination of ``keys``, the combination index of every layout)."""
    code = np.zeros(len(lay), np.int64)
    for k in keys:  # one mixed-radix code per combination (each column has few distinct values)
        values, column = np.unique(np.asarray(getattr(lay, k), np.int64), return_inverse=True)
        code = code * len(values) + column.reshape(-1)
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return first, np.asarray(inverse).reshape(-1)


def micro_batch_times(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf,
                      attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False,
                      moe_share: float | None = None, sac: SelectiveAc = MEGATRON_SAC,
                      fp8_padding: bool = False, random_routing: bool = False,
                      local_casts: bool = False, torch_cp: bool | CpRotate = False,
                      norm_quantize: fp8.NormQuantize = fp8.NormQuantize.NONE,
                      repeat_kv: bool = False, eager: Eager = FUSED, loss: LossKernel = FUSED_LOSS,
                      graph: str = "") -> MicroBatchTimes:
    """Per-micro-batch compute times of every layout, computed once per distinct layer shape: of the stack's mean
    layer, or for an MoE model with dense layers of an MoE layer (``moe_share`` 1) or a dense one (0); ``sac``
    is the release's selective-recompute policy; ``fp8_padding``: the release pads the grouped experts' FP8 rows
    (``Framework.moe_fp8_padding``); ``random_routing``: its forced balancing is random per token
    (``Framework.moe_random_routing``); ``local_casts``: under SP the casts before a TP all-gather cover the rank's
    own rows (``Framework.tp_gather_quantized``); ``torch_cp``: its context parallelism is torch's experimental one
    (``Framework.cp_rotate`` not P2P), whose merge passes differ from Transformer Engine's; ``norm_quantize``: what
    LayerNormLinear's norm kernel does of the QKV and dense fc1 input quantize (``Framework.norm_quantize``);
    ``repeat_kv``: the model expands K, V to every query head before attention (``Framework.repeat_kv``);
    ``eager``: which pointwise ops run as torch eager's separate kernels (``capsim.analytic.eager``); ``loss``:
    the passes the release's loss runs over the logits (``Framework.loss_kernel``, ``capsim.analytic.loss``);
    ``graph``: the CUDA-graph scopes the run captures (``Framework.cuda_graph_scopes``, ``host.graphed_ops``)."""
    first, inverse = distinct(lay, SHAPE_KEYS)
    return _times(model, lay.take(first), precision, perf, attention, dropout, moe_share, sac,
                  fp8_padding, random_routing, local_casts, torch_cp, norm_quantize, repeat_kv, eager,
                  loss, graph).take(inverse)


__all__ = ["CORE_OPS", "MicroBatchTimes", "distinct", "layer_op_lists", "micro_batch_times", "repeat_kv_ops", "ring_attention_ops"]
