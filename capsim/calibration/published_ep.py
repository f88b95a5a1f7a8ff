"""Published expert-parallel dispatch/combine kernel microbenchmarks (DeepEP V1 normal kernels, HybridEP): what
``capsim.analytic.training.flex.KERNEL_COSTS`` is fit to, and the points held out to check it.

Every point is one kernel's "logical" bandwidth as its benchmark prints it (deepseek-ai/DeepEP tests/
test_intranode.py, test_internode.py, test_hybrid_ep.py): the bytes of every (token, destination rank) row in one
node, or of every (token, destination node) row across nodes, the token's own rank or node included, over the
kernel's time; 4096 tokens per rank, top-8 routing drawn at random (mock routing). Only numbers read in the cited text
are recorded; end-to-end training rows are never used here.

The fit: per backend, direction and tier, the measured time T of the ``fit`` points is regressed on
(the calibration's all-to-all link time of the tier's bytes, the tier's rows) from ``flex.flex_legs``, on the H100
datasheet calibration (the microbenchmarks' GPU and NIC), giving T = link_s / rate_over_link + rows * row_s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np

from capsim.analytic.training.collectives import placement
from capsim.analytic.training.flex import DIRECTIONS, TIERS, KernelCost, flex_legs, flex_s, holders
from capsim.analytic.training.release import FlexBackend, Framework, MoeDispatcher
from capsim.perf import Perf
from capsim.perf.params import CommParams, Link

TOKENS, TOP_K = 4096, 8
BF16_BYTES, FP8_BYTES = 2.0, 1.0 + 4.0 / 128.0  # FP8 rows carry one fp32 scale per 128 values (test_internode.py)
_AM = ("NVIDIA-NeMo/Automodel@4e1e3d6cd docs/deepep_vs_hybridep_benchmark.md (2026-07-22; H100 80GB SXM, one CX7 "
       "400 Gb/s NIC per GPU; deep_ep 1.2.1+17cfb81; DeepEP V1 at 24 SMs, HybridEP at 8)")
_DE = ("deepseek-ai/DeepEP@dd758ca docs/legacy.md \"Normal kernels with NVLink and RDMA forwarding\" (H800, ~160 GB/s "
       "NVLink, CX7 400 Gb/s; hidden 7168, 256 experts, top-4 groups, top-8 experts)")


@dataclass(frozen=True)
class EpPoint:
    """One published kernel bandwidth: ``use`` "fit" or "holdout"."""

    backend: FlexBackend
    direction: str
    gpu: str  # "H100" or "H800"
    ep: int
    hidden: int
    experts: int
    row_bytes: float  # bytes per value: BF16 2, FP8 with its scales 1 + 4/128
    gb_per_s: float
    use: str
    source: str

    @property
    def tier(self) -> str:
        return "intra" if self.ep <= 8 else "inter"


def _am(backend: FlexBackend, direction: str, ep: int, hidden: int, dtype: str, rate: float, use: str,
        where: str) -> EpPoint:
    experts = 8 * ep if hidden == 7168 else 128  # "8 experts/rank" (DSv3 dims) or "128 experts total" (Qwen3 dims)
    return EpPoint(backend, direction, "H100", ep, hidden, experts, BF16_BYTES if dtype == "bf16" else FP8_BYTES,
                   rate, use, f"{_AM} {where}")


_D, _H = FlexBackend.DEEPEP, FlexBackend.HYBRIDEP
POINTS: tuple[EpPoint, ...] = (
    # fit: BF16 rows (what training sends), both hidden sizes
    _am(_D, "dispatch", 8, 7168, "bf16", 335.0, "fit", "3.1 (24 SMs)"),
    _am(_D, "combine", 8, 7168, "bf16", 326.0, "fit", "3.1 (24 SMs)"),
    _am(_D, "dispatch", 8, 2048, "bf16", 302.0, "fit", "3.3 intranode (24 SMs)"),
    _am(_D, "combine", 8, 2048, "bf16", 287.0, "fit", "3.3 intranode (24 SMs)"),
    _am(_D, "dispatch", 16, 7168, "bf16", 84.9, "fit", "3.2"),
    _am(_D, "combine", 16, 7168, "bf16", 68.2, "fit", "3.2"),
    _am(_D, "dispatch", 16, 2048, "bf16", 58.9, "fit", "3.3 internode"),
    _am(_D, "combine", 16, 2048, "bf16", 59.1, "fit", "3.3 internode"),
    _am(_H, "dispatch", 8, 7168, "bf16", 360.0, "fit", "3.1 (8 SMs)"),
    _am(_H, "combine", 8, 7168, "bf16", 344.0, "fit", "3.1 (8 SMs)"),
    _am(_H, "dispatch", 8, 2048, "bf16", 304.0, "fit", "3.3 intranode (8 SMs)"),
    _am(_H, "combine", 8, 2048, "bf16", 188.0, "fit", "3.3 intranode (8 SMs)"),
    _am(_H, "dispatch", 16, 7168, "bf16", 85.7, "fit", "3.2"),
    _am(_H, "combine", 16, 7168, "bf16", 76.5, "fit", "3.2"),
    _am(_H, "dispatch", 16, 2048, "bf16", 65.3, "fit", "3.3 internode (8 SMs)"),
    _am(_H, "combine", 16, 2048, "bf16", 33.5, "fit", "3.3 internode (8 SMs)"),
    # held out: FP8 dispatch on the same H100s
    _am(_D, "dispatch", 8, 7168, "fp8", 323.0, "holdout", "3.1 (24 SMs)"),
    _am(_D, "dispatch", 8, 2048, "fp8", 210.0, "holdout", "3.3 intranode (24 SMs)"),
    _am(_D, "dispatch", 16, 7168, "fp8", 79.5, "holdout", "3.2"),
    _am(_D, "dispatch", 16, 2048, "fp8", 36.2, "holdout", "3.3 internode"),
    _am(_H, "dispatch", 8, 7168, "fp8", 352.0, "holdout", "3.1 (8 SMs)"),
    _am(_H, "dispatch", 8, 2048, "fp8", 205.0, "holdout", "3.3 intranode (8 SMs)"),
    _am(_H, "dispatch", 16, 7168, "fp8", 81.6, "holdout", "3.2"),
    _am(_H, "dispatch", 16, 2048, "fp8", 42.0, "holdout", "3.3 internode (8 SMs)"),
    # held out: DeepEP's own H800 table (FP8 dispatch, BF16 combine); EP 64 routes to at most 4 of its 8 nodes (top-4
    # groups), a router capsim does not model, so it is left out
    *(EpPoint(_D, d, "H800", ep, 7168, 256, FP8_BYTES if d == "dispatch" else BF16_BYTES, rate, "holdout", _DE)
      for ep, rates in ((8, (153.0, 158.0)), (16, (43.0, 43.0)), (32, (58.0, 57.0)))
      for d, rate in zip(DIRECTIONS, rates, strict=True)),
)


def bench_perf(gpu: str, h100: Perf) -> Perf:
    """The microbenchmark's machine on ``h100``'s calibration: the H100 itself, or for H800 every NVLink link at the
    H800's 400 GB/s over the H100's 900 GB/s (NVIDIA H800 SXM5 and H100 SXM5 datasheets; same NIC, same GPU)."""
    if gpu == "H100":
        return h100

    def scaled(link: Link | tuple[Link, ...]) -> Link | tuple[Link, ...]:
        if isinstance(link, tuple):
            return tuple(replace(one, bus_bw_bytes_per_s=one.bus_bw_bytes_per_s * 400.0 / 900.0) for one in link)
        return replace(link, bus_bw_bytes_per_s=link.bus_bw_bytes_per_s * 400.0 / 900.0)

    links = dict(h100.params.comm.links)
    links["intra"] = {c: {g: scaled(v) for g, v in by.items()} for c, by in links["intra"].items()}
    return Perf(replace(h100.params, comm=CommParams(links)))


def _setup(p: EpPoint, backend: FlexBackend):  # noqa: ANN202
    fw = Framework("kernel microbenchmark", moe_dispatcher=MoeDispatcher.FLEX, moe_flex_backend=backend)
    where = placement(np.array([p.ep]), np.array([1]), 8)
    nbytes = np.array([TOKENS * TOP_K * p.hidden * p.row_bytes])
    return SimpleNamespace(experts=p.experts, top_k=TOP_K), fw, where, nbytes


def measured_s(p: EpPoint) -> float:
    """The point's kernel time: its logical bytes (every row, the token's own rank or node included) over its rate."""
    nodes = max(p.ep // 8, 1)
    reached = holders(p.experts, TOP_K, np.array([p.ep if nodes == 1 else nodes]))[0]
    return TOKENS * reached * p.hidden * p.row_bytes / (p.gb_per_s * 1e9)


def predicted_gb_per_s(p: EpPoint, h100: Perf) -> float:
    """The logical bandwidth capsim prices for the point's kernel (``flex.flex_s`` with ``KERNEL_COSTS``)."""
    model, fw, where, nbytes = _setup(p, p.backend)
    t = flex_s(bench_perf(p.gpu, h100), model, nbytes, np.array([float(TOKENS)]), where, fw, p.direction)[0]
    return p.gb_per_s * measured_s(p) / t


def fit_kernel_costs(h100: Perf) -> dict[tuple[FlexBackend, str, str], KernelCost]:
    """(row_s, rate_over_link) per backend, direction and tier, least squares over the ``fit`` points."""
    out = {}
    for backend in FlexBackend:
        for direction in DIRECTIONS:
            for tier in TIERS:
                pts = [p for p in POINTS if p.use == "fit" and (p.backend, p.direction, p.tier) == (backend,
                                                                                                    direction, tier)]
                rows = []
                for p in pts:
                    model, fw, where, nbytes = _setup(p, backend)
                    link_s, n_rows = flex_legs(bench_perf(p.gpu, h100), model, nbytes, np.array([float(TOKENS)]),
                                               where, fw)[tier]
                    rows.append((float(link_s[0]), float(n_rows[0]), measured_s(p)))
                a = np.array(rows)
                (inv_rate, row_s), *_ = np.linalg.lstsq(a[:, :2], a[:, 2], rcond=None)
                out[(backend, direction, tier)] = KernelCost(float(row_s), float(1.0 / inv_rate))
    return out


__all__ = ["POINTS", "EpPoint", "bench_perf", "fit_kernel_costs", "measured_s", "predicted_gb_per_s"]
