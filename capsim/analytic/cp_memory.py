"""The transient buffers of context parallelism's ring attention: what one GPU holds, beyond the layer's saved
activations, while one layer's attention runs its ring (forward, or backward after any recompute).

Every buffer named here is a local of the ring's forward or backward function, freed when it returns; what it saves
for the backward is the rank's own Q, one K/V chunk, the output and its logsumexp, the sizes a layer without
context parallelism saves (``capsim.analytic.ops``). So the transient is a peak of one layer at a time, never a sum
over layers. Sizes are per micro-batch on one GPU, in elements of the rank's s/cp local tokens: Q, O its queries and
outputs, KV its keys plus values (the kernel's KV heads: the model's own under grouped-query attention, every query
head's where the model expands them, ``repeat_kv``; MLA: every head's). Tensors held by a name or a container at the
peak are counted; the merge's expression temporaries (two fp32 O-sized in eager torch) are not, as a compiled graph
fuses them.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.layouts import Layouts
from capsim.analytic.ops import layer_shape
from capsim.specs.model import ModelSpec

_F32 = 4.0  # bytes of the fp32 accumulators and logsumexps


class CpRotate(StrEnum):
    """How context parallelism moves each rank's keys and values between its attention steps."""

    # Transformer Engine's ring (AttnFuncWithCP, cp_comm_type "p2p"): step i's K, V go on to the next rank while
    # step i computes; the backward passes K, V and the accumulated dK, dV the same way
    P2P = "p2p"
    # torch.distributed.tensor.experimental context_parallel with _AllGatherRotater: every rank's K, V gathered once
    # per pass, started before the first step and awaited by the second; dK, dV travel the ring in fp32
    ALLGATHER = "allgather"
    # the same API with _AllToAllRotater: K, V passed to the next rank each step (permute_tensor); dK, dV as above
    ALLTOALL = "alltoall"
    # Llama 3's all-gather CP (Dubey et al. 2024, arXiv 2407.21783 v3, Sec. 3.3.2 p. 11-12): every rank's K, V
    # all-gathered first, then one attention of the rank's local queries over them (no per-step merge), the gather
    # "exposed in the critical path"; its backward is the gather's adjoint, dK, dV reduce-scattered
    # (the backward is not stated in the paper). Its attention is priced as the ring's steps (the same FLOPs and
    # shapes, compute._later_step_s), its memory as the gathered K, V held while the layer runs: autograd may also
    # save the gathered K, V for the backward, which is not priced
    GATHER_KV = "gather-kv"


def _sizes(model: ModelSpec, lay: Layouts, repeat_kv: bool) -> tuple[np.ndarray, ...]:
    """(Q, O, KV, logsumexp) elements of one layer's attention on one GPU for one micro-batch."""
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    s = layer_shape(model, tokens, lay.micro_batch, lay.tp, lay.ep, lay.sp, lay.etp)
    kv_heads = s.heads if model.is_mla or repeat_kv else s.kv_heads
    q, o = tokens * s.heads * model.head_dim, tokens * s.heads * model.v_dim
    kv = tokens * kv_heads * (model.head_dim + model.v_dim)
    return (np.asarray(x, float) for x in (q, o, kv, tokens * s.heads))


def _torch_bytes(cp: np.ndarray, q: np.ndarray, o: np.ndarray, kv: np.ndarray, lse: np.ndarray, b: float,
                 rotate: CpRotate) -> np.ndarray:
    """Peak of torch's experimental context parallelism (torch 2.13.0 torch/distributed/tensor/experimental/
    _context_parallel/_attention.py; the same code in _attention.py at pytorch@0123248, as torchtitan 9dec370 runs
    it), the larger of its forward's and its backward's at their first and later steps; max over ranks."""
    gather = rotate is CpRotate.ALLGATHER
    # K, V at a later step: all-gather, every rank's K, V concatenated (cp KV) and held to the return (L285-300
    # _aggregated_buffer; the step's torch.cat L438 is dropped at once, exchange_buffers returns None); all-to-all,
    # the chunk in use, its concatenated send copy and the one arriving (L261-265 permute_tensor)
    later_kv = np.where(gather, cp, 3.0) * kv * b
    # at the first step also K, V made contiguous (L418-419, L517-518) and their concatenated copy (L438, L533), which
    # the all-to-all sends as its copy
    first_kv = np.where(gather, cp + 2.0, 3.0) * kv * b
    # forward: the first step's output and its fp32 copy (_SDPAMerger.step L209-217, convert_to_f32 default True L75);
    # a later step's merge (_merge_one L151-207): the running fp32 out, the step's output and its fp32 copy, the merged
    # out assigned over the running one; the same for the fp32 logsumexp
    fwd = np.maximum(first_kv + o * (b + _F32) + 2.0 * lse * _F32, later_kv + o * (b + 3.0 * _F32) + 3.0 * lse * _F32)
    # backward (_templated_ring_attention_backward L488-654): fp32 dQ (L513); dK, dV in fp32 three times: the
    # accumulator (zeros L514-515, then the received buffer or its _partial_update copy L595-620), its concatenated
    # send copy (L625) and the buffer the all-to-all ring delivers next (dkv_rotater ALL_TO_ALL L520, L627); the
    # step's kernel gradients in the activations' format (L573-582); on ranks whose later steps cover half the queries,
    # dQ's _partial_update makes a whole fp32 copy (L632, torch.cat L136)
    # The backward keeps its step's K, V concatenation bound (next_kv, L533-534) to the next one: all-gather cp + 1 KV
    bwd_later_kv = np.where(gather, cp + 1.0, 3.0) * kv * b
    grads = 3.0 * kv * _F32 + (q + kv) * b
    bwd = np.maximum(first_kv + q * _F32, bwd_later_kv + 2.0 * q * _F32) + grads
    return np.where(cp > 1, np.maximum(fwd, bwd), 0.0)


def _te_p2p_bytes(cp: np.ndarray, q: np.ndarray, o: np.ndarray, kv: np.ndarray, lse: np.ndarray, b: float
                  ) -> np.ndarray:
    """Peak of Transformer Engine's p2p ring (AttnFuncWithCP, TE v1.8 transformer_engine/pytorch/attention.py
    L535-1650; AttnFuncWithCPAndKVP2P, TE v2.8 transformer_engine/pytorch/attention/dot_product_attention/
    context_parallel.py L1056-2527; the same buffers at every release from v1.8 to v2.18), bf16/fp16 attention
    (no FP8 DPA), the larger of its forward's and its backward's; max over ranks."""
    # forward: p2p_comm_buffers holds all cp K/V chunks, the first a concatenated copy, until the return (v1.8
    # L627-650, v2.8 L1345-1375: list entries never released; only the last, L1722, is saved); out_per_step
    # keeps every step's output (rank cp - 1: all whole) for the corrections after the loop (v1.8 L617, L1009-1057;
    # v2.8 L1335, L1614-1665), the merged out (v1.8 L981; v2.8 L1618) and every step's fp32 logsumexp plus the
    # merged one (v1.8 L982 double: counted at 4 bytes)
    forward = cp * kv * b + (cp + 1.0) * o * b + (cp + 1.0) * lse * _F32
    # backward: dq (v1.8 L1142, v2.8 L2002) and two [kv, dkv] buffers in the activations' format (v1.8 L1144-1148,
    # v2.8 L2003-2007: no fp32 accumulators outside FP8), the step's dq_, dk_, dv_ (v1.8 L1201, v2.8 fused_attn_bwd);
    # TE v1.8-v1.13 also concatenate dk_, dv_ each step (v1.8 L1559, one more KV), not priced (no TE release field)
    backward = q * b + 4.0 * kv * b + (q + kv) * b
    return np.where(cp > 1, np.maximum(forward, backward), 0.0)


def cp_transient_bytes(model: ModelSpec, lay: Layouts, act_bytes: float, rotate: CpRotate | str = CpRotate.P2P,
                       repeat_kv: bool = False) -> Num:
    """Bytes one GPU holds beyond its saved activations while one layer's ring attention runs, for every layout
    (zero where cp = 1): Transformer Engine's p2p ring or torch's context_parallel (all-gather or all-to-all
    rotater), ``rotate`` as ``Framework.cp_rotate``; ``act_bytes`` per activation element (bf16: 2)."""
    q, o, kv, lse = _sizes(model, lay, repeat_kv)
    cp = np.asarray(lay.cp, float)
    rotate = CpRotate(rotate)
    if rotate is CpRotate.P2P:
        return _te_p2p_bytes(cp, q, o, kv, lse, act_bytes)
    if rotate is CpRotate.GATHER_KV:  # the gathered K, V; the backward also their gradients and dQ
        return np.where(cp > 1, np.maximum(cp * kv, 2.0 * cp * kv + q) * act_bytes, 0.0)
    return _torch_bytes(cp, q, o, kv, lse, act_bytes, rotate)


__all__ = ["CpRotate", "cp_transient_bytes"]
