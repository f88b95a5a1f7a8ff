"""The flex MoE dispatcher (DeepEP / HybridEP): the ranks and nodes a token reaches, and one dispatch or combine
priced per link tier as the link's bytes at the kernel's rate plus a time per row (token copy) the kernel moves.

Per tier (``intra``: NVLink in a node; ``inter``: RDMA to the other nodes), one dispatch or combine takes
``link_s / rate_over_link + rows * row_s``: ``link_s`` the calibration's all-to-all time for the tier's bytes
(``tier_s``), ``rows`` the (token, destination rank) rows over NVLink or (token, remote node) rows over RDMA.
``KERNEL_COSTS`` holds (row_s, rate_over_link) per backend, direction and tier, fit by
``capsim.calibration.published_ep.fit_kernel_costs`` to the published kernel microbenchmarks recorded there (never to
training rows); tests/test_deepep.py refits them and checks this table, and scores the held-out points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from capsim.analytic.moe import consecutive_holders
from capsim.analytic.training.collectives import Placement, tier_s
from capsim.analytic.training.release import FlexBackend, Framework
from capsim.perf import Perf
from capsim.specs.model import ModelSpec

DIRECTIONS = ("dispatch", "combine")
TIERS = ("intra", "inter")


@dataclass(frozen=True)
class KernelCost:
    """One kernel family's cost on one tier: ``row_s`` per row moved, and its byte rate as a multiple of the
    calibration's all-to-all link rate for the tier."""

    row_s: float
    rate_over_link: float

    def to_dict(self) -> dict[str, float]:
        return {"row_s": self.row_s, "rate_over_link": self.rate_over_link}


# fit_kernel_costs() on the H100 BF16 points of NVIDIA-NeMo/Automodel@4e1e3d6cd docs/deepep_vs_hybridep_benchmark.md
# sections 3.1-3.3 (hidden 7168 and 2048; DeepEP V1 at 24 SMs, HybridEP at its default 8), against the H100 datasheet
# calibration's links; capsim.calibration.published_ep records the points and their sources.
# DeepEP's and HybridEP's RDMA dispatch reach ~1.25x the datasheet calibration's inter link (0.8 of the CX7's 50
# GB/s, NCCL's share): 51-52 GB/s, the NIC's line rate. HybridEP's combine at 8 SMs runs faster than the NIC at
# hidden 7168 (rate_over_link ~2: it pre-reduces in the node before the RDMA hop, section 5.3) yet slow per row at
# hidden 2048 (33.5 GB/s): an interpolant between the two sizes, not a physical rate.
KERNEL_COSTS: dict[tuple[FlexBackend, str, str], KernelCost] = {
    (FlexBackend.DEEPEP, "dispatch", "intra"): KernelCost(1.205e-09, 1.038),
    (FlexBackend.DEEPEP, "dispatch", "inter"): KernelCost(5.393e-08, 1.289),
    (FlexBackend.DEEPEP, "combine", "intra"): KernelCost(1.714e-09, 1.021),
    (FlexBackend.DEEPEP, "combine", "inter"): KernelCost(1.781e-08, 0.9085),
    (FlexBackend.HYBRIDEP, "dispatch", "intra"): KernelCost(2.334e-09, 1.151),
    (FlexBackend.HYBRIDEP, "dispatch", "inter"): KernelCost(3.581e-08, 1.224),
    (FlexBackend.HYBRIDEP, "combine", "intra"): KernelCost(1.338e-08, 1.525),
    (FlexBackend.HYBRIDEP, "combine", "inter"): KernelCost(1.887e-07, 1.965),
}


def holders(experts: int, top_k: int, groups: np.ndarray) -> np.ndarray:
    """Expected number of ``groups`` (ranks or nodes, each holding an equal share of the experts) that hold at least
    one of a token's ``top_k`` distinct experts, chosen uniformly (balanced routing): G (1 - C(E - E/G, k) / C(E, k))."""
    g = np.maximum(np.asarray(groups, float), 1.0)
    rest = experts - experts / g
    log_none = (gammaln(rest + 1) - gammaln(rest - top_k + 1)) - (gammaln(experts + 1) - gammaln(experts - top_k + 1))
    none = np.where(rest >= top_k, np.exp(log_none), 0.0)
    return g * (1.0 - none)


def flex_legs(perf: Perf, model: ModelSpec, nbytes: np.ndarray, tokens: np.ndarray, where: Placement,
              fw: Framework) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tier -> (the calibration's all-to-all time for the tier's bytes, rows the tier carries) of one flex dispatch
    (or combine) of ``nbytes`` of token copies (one per chosen expert) from ``tokens`` tokens; ``inter`` only where
    the group spans nodes (zeros elsewhere)."""
    k, n = model.top_k, where.nodes.astype(float)
    reach = consecutive_holders if fw.moe_consecutive_experts else holders
    token_bytes = nbytes / k
    # NVLink: one row per (token, destination rank), the token's own rank included: DeepEP moves those rows through
    # the same buffers, its intranode kernels reaching 153-158 GB/s counting them on H800's ~160 GB/s NVLink
    # (deepseek-ai/DeepEP@dd758ca docs/legacy.md "Performance"), so g/(g-1) undoes the all-to-all's bus factor.
    g = np.where(n > 1, where.per_node, where.size)
    ranks = reach(model.experts, k, where.size)
    intra = tier_s(perf, "all_to_all", token_bytes * ranks * g / np.maximum(g - 1.0, 1.0), g, "intra")
    legs = {"intra": (np.asarray(intra, float), tokens * ranks)}
    if np.any(n > 1):
        # rows leaving the node, deduplicated: the nodes reached, less the token's own (each node equally likely)
        remote = reach(model.experts, k, where.nodes) * (n - 1.0) / np.maximum(n, 1.0)
        inter = tier_s(perf, "all_to_all", token_bytes * remote * n / np.maximum(n - 1.0, 1.0),
                       np.where(n > 1, n, 1), "inter")
        legs["inter"] = (np.where(n > 1, inter, 0.0), np.where(n > 1, tokens * remote, 0.0))
    return legs


def flex_s(perf: Perf, model: ModelSpec, nbytes: np.ndarray, tokens: np.ndarray, where: Placement, fw: Framework,
           direction: str) -> np.ndarray:
    """One flex dispatch or combine (``direction``): the slower of its tiers, which one kernel runs at once (RDMA
    sends, NVLink forwarding and receiving warps pass chunks along: DeepEP@17cfb81 csrc/kernels/internode.cu
    L357-400 roles kRDMASender, kRDMAAndNVLForwarder, kNVLReceivers; L1372 combine), each priced by
    ``KERNEL_COSTS`` for ``fw.moe_flex_backend``."""
    out = np.zeros(np.shape(nbytes))
    for tier, (link_s, rows) in flex_legs(perf, model, nbytes, tokens, where, fw).items():
        cost = KERNEL_COSTS[(fw.moe_flex_backend, direction, tier)]
        out = np.maximum(out, np.where(link_s > 0, link_s / cost.rate_over_link + rows * cost.row_s, 0.0))
    return out


__all__ = ["DIRECTIONS", "KERNEL_COSTS", "TIERS", "KernelCost", "flex_legs", "flex_s", "holders"]
