"""ZeRO-2/3 and FSDP traffic of one micro-batch on one pipeline stage: which of it hides behind which compute.

Each transformer block is its own sharding unit (FSDP2 ``fully_shard`` per block, torchtitan
torchtitan/distributed/fsdp.py ``apply_fsdp_to_decoder``, pytorch/torchtitan@b5bcd76); the embedding is one more,
and the final norm with the LM head one more that stays gathered from its forward to its backward
(``reshard_after_forward=False`` on [norm, lm_head], same file). Per micro-batch:

- forward: a block's all-gather is issued on its own stream while the previous unit computes, so it hides behind
  that unit's forward; the pass's first all-gather overlaps nothing (PyTorch "FSDP Notes: FSDP Prefetch Nuances",
  implicit forward prefetching, https://docs.pytorch.org/docs/stable/notes/fsdp.html);
- backward: while block i computes its backward (and its recomputation: the checkpointed block is inside the unit,
  so the recomputed forward reuses the gathered parameters), the link carries block i-1's prefetched all-gather
  and block i+1's gradient reduce-scatter. Both ride the same link (FSDP1 issues them on one NCCL process group,
  Zhao et al. 2023, "PyTorch FSDP", VLDB 16(12), Sec. 3.3.2 backward prefetching; FSDP2's separate streams still
  share the NICs and NVLink), so the window exposes max(AG + RS - compute, 0), the overlap budget counted once.
  The last reduce-scatter (the embedding's, or the first block's) has nothing left to hide behind.

Under hybrid sharding (HSDP) the gathers and reduce-scatters run over the sharding group (``Layouts.shard``); a release
that all-reduces each gradient shard over the replicas every micro-batch (FSDP2) adds that all-reduce to the unit's
reduce-scatter here, one that does it once per step (Megatron-FSDP) in the step's tail (``stages.step_tail``).

ZeRO-2 keeps the parameters (no gathers) but still reduce-scatters every micro-batch (its gradients are sharded).
Without prefetching every gather is exposed; without gradient-reduce overlap every reduce-scatter is. With
``reshard_after_forward`` off (the framework's ``Reshard`` policy: NeMo AutoModel's MoE models never reshard,
torchtitan not with pipeline parallelism) the backward gathers nothing. With deferred gradient sync (FSDP2
``set_requires_gradient_sync(False)`` over the accumulation, NeMo AutoModel's ``enable_fsdp_optimizations``) a step
gathers once and reduce-scatters once, whatever its micro-batch count. Under torch.distributed.pipelining's stage
deferral (``Framework.pp_defer_grad_sync``, pp > 1) no micro-batch reduce-scatters, the parameters kept after the
forward are gathered once a step, and the stage's one reduction is priced in the step's tail
(``stages.deferred_stage_reduce_s``).
"""

from __future__ import annotations

import numpy as np

from capsim.analytic.layouts import Layouts
from capsim.analytic.training.compute import MicroBatchTimes
from capsim.analytic.training.release import Framework


def _pos(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def sharded_exposed_s(lay: Layouts, fw: Framework, t: MicroBatchTimes, n: np.ndarray, emb: np.ndarray,
                      head: np.ndarray, unit: dict[str, np.ndarray]) -> np.ndarray:
    """Exposed ZeRO-2/3 seconds of one micro-batch on a stage of ``n`` blocks holding the embedding (``emb``) and/or
    the LM head (``head``). ``unit`` holds one all-gather and one reduce-scatter of each unit:
    ``layer_gather``, ``layer_reduce``, ``emb_gather``, ``emb_reduce``, ``head_gather``, ``head_reduce``.
    Priced only on the layouts that shard gradients (ZeRO >= 2); the others expose nothing here."""
    out = np.zeros(len(lay))
    idx = np.flatnonzero(lay.zero_stage >= 2)
    if idx.size == 0:
        return out

    def sub(x: object) -> np.ndarray:
        return np.broadcast_to(np.asarray(x), (len(lay),))[idx]

    rec = np.select([lay.recompute == 2, lay.recompute == 1], [t.layer_fwd_s, t.layer_selective_s], 0.0)
    times = {"f": sub(t.layer_fwd_s), "b": sub(t.layer_bwd_s + rec), "emb_f": sub(t.embed_fwd_s),
             "emb_b": sub(t.embed_bwd_s), "head_b": sub(t.head_bwd_s)}
    z3 = sub(lay.zero_stage >= 3)
    traffic = {k: sub(unit[k]) for k in ("layer_gather", "layer_reduce", "emb_gather", "emb_reduce", "head_gather",
                                         "head_reduce")}
    # The pipeline stage's deferral: every backward runs with set_requires_gradient_sync(False) (torch 2.13.0
    # torch/distributed/pipelining/stage.py L844-847), so FSDP2's post_backward only accumulates (_fsdp_param_group.py
    # L607-612): no micro-batch reduce-scatters; the stage's one reduction is priced in the step's tail
    # (stages.deferred_stage_reduce_s)
    stage = sub(fw.stage_defers(lay.pp))
    for k in ("layer_reduce", "emb_reduce", "head_reduce"):
        traffic[k] = np.where(stage, 0.0, traffic[k])
    keep, blocks = sub(fw.keeps_gathered(lay.pp)), sub(n).astype(float)
    kept, bucket = (_kept_and_bucket(fw, blocks, sub(unit["layer_numel"]), sub(unit["head_numel"]))
                    if fw.zero3_reuse_elements > 0 or fw.grad_bucket_elements > 0 else (0.0, 1.0))
    exposed = _exposed(fw, times, traffic, z3, blocks, sub(emb), sub(head), np.where(keep, blocks, kept), keep, bucket)
    # Deferred sync: one gather pass (the step's first forward) and one reduce-scatter pass (its last backward)
    # per step, the parameters kept gathered in between: their exposure spread over the step's micro-batches.
    # The pipeline stage's deferral with the parameters kept after the forward (keep) gathers once a step too: the
    # stage also sets set_reshard_after_backward(False) (stage.py L846), so no forward or backward frees them, and
    # FSDP2's unshard returns at once on an unsharded group (_fsdp_param_group.py L375-376).
    once = fw.defer_grad_sync | (stage & keep)
    out[idx] = np.where(once, exposed / sub(lay.micro_batches), exposed)
    return out


def _kept_and_bucket(fw: Framework, n: np.ndarray, layer_numel: np.ndarray, head_numel: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(blocks whose parameters stay gathered from forward to backward, blocks per gradient-reduce bucket) of a
    stage of ``n`` blocks. DeepSpeed ZeRO-3 keeps a module's parameters if they are used again within
    ``zero3_reuse_elements`` parameter elements of the trace (partitioned_param_coordinator.py __params_to_release):
    the m-th block from the end comes back after 2m blocks, the head's forward and backward and about its own
    size, so the last k = ceil((R - 2 head - P) / 2P) blocks stay. Its reduce bucket (``grad_bucket_elements``)
    holds ceil(B / P) blocks' gradients. Zero fields: none kept, one block per bucket (FSDP's units)."""
    p = np.maximum(layer_numel, 1.0)
    kept: np.ndarray | float = 0.0
    if fw.zero3_reuse_elements > 0:
        kept = np.clip(np.ceil((fw.zero3_reuse_elements - 2.0 * head_numel - p) / (2.0 * p)), 0.0, n)
    bucket: np.ndarray | float = 1.0
    if fw.grad_bucket_elements > 0:
        bucket = np.clip(np.ceil(fw.grad_bucket_elements / p), 1.0, np.maximum(n, 1.0))
    return kept, bucket  # type: ignore[return-value]


def _span(lo: object, hi: object) -> np.ndarray:
    """How many whole numbers lie in [lo, hi]."""
    return np.maximum(np.asarray(hi, float) - np.asarray(lo, float) + 1.0, 0.0)


def _exposed(fw: Framework, tm: dict[str, np.ndarray], u: dict[str, np.ndarray], z3: np.ndarray, n: np.ndarray,
             emb: np.ndarray, head: np.ndarray, kept: np.ndarray | float = 0.0, emb_kept: np.ndarray | bool = False,
             bucket: np.ndarray | float = 1.0) -> np.ndarray:
    """The windows of one micro-batch (arrays over the ZeRO >= 2 layouts). ``kept``: the last blocks whose
    parameters stay gathered from the forward to the backward (all ``n`` with reshard_after_forward=False), so their
    backward gathers nothing; ``emb_kept``: the embedding's too; ``bucket``: blocks whose gradients are reduced
    together (the last bucket's reduce has nothing left to hide behind)."""
    k, kb = np.minimum(np.asarray(kept, float), n), np.asarray(bucket, float)
    a = np.where(z3, u["layer_gather"], 0.0)
    a_b = a  # a block's backward gather, for the blocks not kept
    ag_e, ag_h = np.where(z3 & emb, u["emb_gather"], 0.0), np.where(z3 & head, u["head_gather"], 0.0)
    ag_eb = np.where(z3 & emb & ~np.asarray(emb_kept, bool), u["emb_gather"], 0.0)
    r = u["layer_reduce"]
    rs_e, rs_h = np.where(emb, u["emb_reduce"], 0.0), np.where(head, u["head_reduce"], 0.0)
    exposed = np.zeros(len(n))
    if not fw.zero3_prefetch:  # each gather waits for its unit: forward n + ends, backward the blocks not kept
        exposed = exposed + n * a + (n - k) * a_b + ag_e + ag_eb + ag_h
        a, a_b, ag_e, ag_eb, ag_h = 0.0 * a, 0.0 * a_b, 0.0 * ag_e, 0.0 * ag_eb, 0.0 * ag_h
    # Without gradient-reduce overlap (at this layout's ZeRO stage) each reduce-scatter runs after its backward,
    # on the critical path.
    blocking = ~np.asarray(fw.overlaps_grad_reduce(np.where(z3, 3, 2)), bool)
    if np.any(blocking):
        exposed = exposed + np.where(blocking, n * r + rs_e + rs_h, 0.0)
        r, rs_e, rs_h = (np.where(blocking, 0.0, x) for x in (r, rs_e, rs_h))
    f, b = tm["f"], tm["b"]
    # Forward, unit order [embedding], block 0 .. n-1, [head]: each gather behind the unit before it.
    forward = (np.where(emb, ag_e + _pos(a - tm["emb_f"]), a)  # the pass's first gather(s)
               + np.maximum(n - 1.0, 0.0) * _pos(a - f) + _pos(ag_h - f))  # block to block; the head's
    # Backward, unit order [head], block n-1 .. 0, [embedding]: while block i computes, the link carries block
    # i-1's gather (unless kept: i-1 >= n-k) and the reduce of the bucket before (blocks i+1.. when i >= kb-1).
    first = np.where(k >= 1, 0.0, np.where(head, _pos(a_b - tm["head_b"]), a_b))  # block n-1's gather
    top = _pos(np.where(k >= 2, 0.0, a_b) + rs_h - b)  # block n-1: block n-2's gather + the head's reduce
    middle = np.maximum(n - 2.0, 0.0) * _pos(a_b + r - b)  # blocks n-2 .. 1, each carrying a gather and a reduce
    if np.any(k > 0) or np.any(kb > 1):  # some carry only one of them (or neither: 0 s)
        hi_g, lo_r = np.minimum(n - 2.0, n - k), np.maximum(1.0, kb - 1.0)
        both, gather = _span(lo_r, hi_g), _span(1.0, np.minimum(hi_g, kb - 2.0))
        reduce = _span(np.maximum(lo_r, n - k + 1.0), n - 2.0)
        middle = both * _pos(a_b + r - b) + gather * _pos(a_b - b) + reduce * _pos(r - b)
    bottom = _pos(ag_eb + np.where(kb <= 1, r, 0.0) - b)  # block 0: the embedding's gather (+ block 1's reduce)
    windows = np.where(n >= 2, top + middle + bottom, _pos(ag_eb + rs_h - b))
    # the last bucket: blocks kb-1 .. 0 (block 0 alone unbucketed)
    tail = np.minimum(kb, np.maximum(n, 1.0)) * r if np.any(kb > 1) else r
    last = np.where(emb, _pos(tail - tm["emb_b"]) + rs_e, tail)  # behind the embedding's backward
    backward = first + windows + last
    ends_only = ag_e + ag_eb + ag_h + rs_e + rs_h  # a stage with no blocks: its ends' traffic, exposed
    return exposed + np.where(n > 0, forward + backward, ends_only)


__all__ = ["sharded_exposed_s"]
