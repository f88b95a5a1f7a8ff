"""Where each parallel group sits on the nodes, and collectives priced per link tier (hierarchically).

Ranks are numbered as Megatron-LM's parallel state orders them, tensor-parallel fastest, then context, then data
(with expert groups carved out of data), then pipeline ("tp-cp-ep-dp-pp", megatron/core/parallel_state.py). A group
of ``size`` ranks spaced ``stride`` apart therefore has ``gpus_per_node // stride`` members in one node (at least 1,
at most all of them) and spans the rest of the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim._types import Num
from capsim.perf import Perf


@dataclass(frozen=True)
class Placement:
    """How a communication group lies on the nodes (arrays broadcast over layouts)."""

    size: np.ndarray  # ranks in the group
    per_node: np.ndarray  # of them in one node (they talk over the intra-node link)
    nodes: np.ndarray  # nodes the group spans (their traffic crosses the network)


def placement(size: Num, stride: Num, gpus_per_node: int) -> Placement:
    """A group of ``size`` ranks, ``stride`` apart in rank order, on nodes of ``gpus_per_node``."""
    size = np.asarray(size, dtype=np.int64)
    stride = np.asarray(stride, dtype=np.int64)
    per_node = np.clip(gpus_per_node // np.maximum(stride, 1), 1, size)
    nodes = -(-size // per_node)  # ceil
    return Placement(size, per_node, nodes)


def tier_s(perf: Perf, collective: str, nbytes: Num, group: Num, tier: str) -> Num:
    """``Perf.collective_s`` over arrays, one call per distinct group size (a sweep has a handful)."""
    size, group = np.broadcast_arrays(np.asarray(nbytes, float), np.asarray(group, np.int64))
    out = np.zeros(size.shape)
    flat = group.reshape(-1)
    for g in np.flatnonzero(np.bincount(flat)) if flat.size else ():
        if g > 1:
            mask = group == g
            out[mask] = perf.collective_s(collective, size[mask], int(g), tier)
    return out if out.shape else float(out)


def collective_s(perf: Perf, collective: str, nbytes: Num, where: Placement) -> Num:
    """One collective on a buffer of ``nbytes`` (nccl-tests' size convention) over a placed group.

    Inside one node it is the calibrated intra-node collective. Across nodes with several members per node it is
    hierarchical: reduce-scatter inside the node, the inter-node collective on 1/per_node of the buffer (each GPU on
    its own NIC), all-gather inside the node (Jia et al. 2018, "Highly scalable deep learning training system with
    mixed-precision", Sec. 3.3; NCCL's CollNet/tree split). An all-to-all sends (k-1)/k of its buffer across the
    network and the node's share over the intra-node link.
    """
    a, k = where.per_node, where.nodes
    s = np.asarray(nbytes, float)
    one_node = tier_s(perf, collective, s, np.where(k > 1, 1, where.size), "intra")
    if not np.any(k > 1):
        return one_node
    inter_k = np.where(k > 1, k, 1)
    intra_a = np.where(k > 1, a, 1)
    if collective == "all_reduce":
        spread = (tier_s(perf, "reduce_scatter", s, intra_a, "intra")
                  + tier_s(perf, "all_reduce", s / intra_a, inter_k, "inter")
                  + tier_s(perf, "all_gather", s, intra_a, "intra"))
    elif collective == "reduce_scatter":
        spread = (tier_s(perf, "reduce_scatter", s, intra_a, "intra")
                  + tier_s(perf, "reduce_scatter", s / intra_a, inter_k, "inter"))
    elif collective == "all_gather":
        spread = (tier_s(perf, "all_gather", s / intra_a, inter_k, "inter")
                  + tier_s(perf, "all_gather", s, intra_a, "intra"))
    elif collective == "all_to_all":
        spread = (tier_s(perf, "all_to_all", s, inter_k, "inter")
                  + tier_s(perf, "all_to_all", s / inter_k, intra_a, "intra"))
    else:
        raise ValueError(f"no hierarchical form for {collective!r}")
    return np.where(k > 1, spread, one_node)


def send_s(perf: Perf, nbytes: Num, inter: Num) -> Num:
    """One point-to-point transfer of ``nbytes`` between two GPUs, inside a node or across the network."""
    s = np.asarray(nbytes, float)
    inter = np.asarray(inter, bool)
    inside = tier_s(perf, "send_recv", s, np.where(inter, 1, 2), "intra")
    if not np.any(inter):
        return inside
    return np.where(inter, tier_s(perf, "send_recv", s, np.where(inter, 2, 1), "inter"), inside)


__all__ = ["Placement", "collective_s", "placement", "send_s", "tier_s"]
