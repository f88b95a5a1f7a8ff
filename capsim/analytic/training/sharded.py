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

ZeRO-2 keeps the parameters (no gathers) but still reduce-scatters every micro-batch (its gradients are sharded).
Without prefetching every gather is exposed; without gradient-reduce overlap every reduce-scatter is.
"""

from __future__ import annotations

import numpy as np

from capsim.analytic.layouts import Layouts
from capsim.analytic.training.compute import MicroBatchTimes
from capsim.analytic.training.framework import Framework


def _pos(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def sharded_exposed_s(lay: Layouts, fw: Framework, t: MicroBatchTimes, n: np.ndarray, emb: np.ndarray,
                      head: np.ndarray, unit: dict[str, np.ndarray]) -> np.ndarray:
    """Exposed ZeRO-2/3 seconds of one micro-batch on a stage of ``n`` blocks holding the embedding (``emb``) and/or
    the LM head (``head``). ``unit`` holds one all-gather and one reduce-scatter of each unit:
    ``layer_gather``, ``layer_reduce``, ``emb_gather``, ``emb_reduce``, ``head_gather``, ``head_reduce``."""
    z3, z2 = lay.zero_stage >= 3, lay.zero_stage >= 2
    if not np.any(z2):
        return np.zeros(len(lay))
    a = np.where(z3, unit["layer_gather"], 0.0)
    ag_e, ag_h = np.where(z3 & emb, unit["emb_gather"], 0.0), np.where(z3 & head, unit["head_gather"], 0.0)
    r = np.where(z2, unit["layer_reduce"], 0.0)
    rs_e, rs_h = np.where(z2 & emb, unit["emb_reduce"], 0.0), np.where(z2 & head, unit["head_reduce"], 0.0)
    exposed = np.zeros(len(lay))
    if not fw.zero3_prefetch:  # each gather waits for its unit: forward n + ends, backward n + the embedding
        exposed = exposed + 2.0 * n * a + 2.0 * ag_e + ag_h
        a, ag_e, ag_h = 0.0 * a, 0.0 * ag_e, 0.0 * ag_h
    if not fw.overlap_grad_reduce:  # each reduce-scatter runs after its backward, on the critical path
        exposed = exposed + n * r + rs_e + rs_h
        r, rs_e, rs_h = 0.0 * r, 0.0 * rs_e, 0.0 * rs_h
    f = t.layer_fwd_s
    b = t.layer_bwd_s + np.select([lay.recompute == 2, lay.recompute == 1], [t.layer_fwd_s, t.layer_core_s], 0.0)
    inner = np.maximum(n - 1.0, 0.0)  # block-to-block windows
    forward = (np.where(emb, ag_e + _pos(a - t.embed_fwd_s), a)  # the pass's first gather(s)
               + inner * _pos(a - f) + _pos(ag_h - f))  # the head's gather behind the last block
    backward = (np.where(head, _pos(a - t.head_bwd_s), a)  # the head stayed gathered; the last block's did not
                + inner * _pos(a + r - b)  # next gather + previous reduce-scatter behind each block's backward
                + _pos(rs_h - _pos(b - a - r))  # the head's reduce-scatter in the last block's spare time
                + _pos(r + ag_e - b)  # block 0: the embedding's gather and block 1's reduce-scatter
                + np.where(emb, _pos(r - t.embed_bwd_s) + rs_e, r))  # the last reduce-scatter(s)
    ends_only = ag_e + ag_h + ag_e + rs_e + rs_h  # a stage with no blocks: its ends' traffic, exposed
    return exposed + np.where(n > 0, forward + backward, ends_only)


__all__ = ["sharded_exposed_s"]
