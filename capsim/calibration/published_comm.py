"""Published NCCL microbenchmarks of a GPU's intra-node (NVLink) fabric: what the datasheet calibration prices
collectives with where an accelerator (or one on the same NVLink generation) has them, instead of the generic
``intra_link_fraction`` of ``capsim.calibration.datasheet`` (read from A100 nccl-tests).

Each entry is one nccl-tests table (bus bandwidth against message size, in nccl-tests' size and busbw convention,
nccl-tests doc/PERFORMANCE.md) with its source. Only numbers read in the cited text are recorded; end-to-end training
or serving rows are never used here. The table becomes two alpha-beta links, one fitted by least squares on relative
time to the sizes up to 4 MiB and one to the sizes from 8 MiB (the small-message and the bandwidth regime); a
collective takes the faster of the two (``Perf.collective_s``), as NCCL picks its fastest protocol per size.
nccl-tests' ring all-reduce moves each byte at the same bus bandwidth as its ring reduce-scatter and all-gather
(PERFORMANCE.md, "Bus bandwidth"), so one table prices all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from capsim.perf import Link

_SMALL_MAX_BYTES = 4 * 2**20  # the last size of the small-message fit
_LARGE_MIN_BYTES = 8 * 2**20  # the first size of the bandwidth fit


@dataclass(frozen=True)
class CommPoints:
    """A published nccl-tests table: (bytes, bus bandwidth in GB/s) points of one collective over ``group`` GPUs."""

    collective: str
    group: int
    points: tuple[tuple[int, float], ...]
    source: str


_K, _M = 2**10, 2**20
# Azure ND GB200 v6 (4 GB200 per host on one NVLink 5 domain, NCCL 2.25.1, CUDA 12.8, driver 570.133.20): "NCCL
# AllReduce (Ring algorithm) tests in-place operations", busbw GB/s, 1K to 8G (the page's 33M/67M/134M... are the
# powers of two nccl-tests steps through).
_GB200_AZURE = CommPoints("all_reduce", 4, (
    (1 * _K, 0.10), (2 * _K, 0.19), (4 * _K, 0.38), (8 * _K, 0.76), (16 * _K, 1.46), (32 * _K, 2.88),
    (64 * _K, 5.71), (128 * _K, 11.29), (256 * _K, 22.41), (512 * _K, 44.07), (1 * _M, 80.48), (2 * _M, 110.43),
    (4 * _M, 146.27), (8 * _M, 253.46), (16 * _M, 331.09), (32 * _M, 422.62), (64 * _M, 550.73), (128 * _M, 574.19),
    (256 * _M, 593.53), (512 * _M, 618.74), (1024 * _M, 646.87), (2048 * _M, 666.63), (4096 * _M, 673.06),
    (8192 * _M, 679.61)),
    "nccl-tests all_reduce_perf, ring algorithm, in-place, on 4 GB200 of an Azure ND GB200 v6 host (NCCL 2.25.1): "
    "Azure/AI-benchmarking-guide Azure_Results/ND_GB200_v6_results.md @2a370be, 'NCCL Bandwidth' (busbw 0.10 GB/s "
    "at 1 KiB, 146.3 at 4 MiB, 253.5 at 8 MiB, 422.6 at 32 MiB, 574.2 at 128 MiB, 679.6 at 8 GiB)")

PUBLISHED: dict[str, CommPoints] = {"GB200": _GB200_AZURE}
# Parts on the same NVLink generation at the same per-GPU rate (NVLink 5, 18 links, 1.8 TB/s per GPU both
# directions: NVIDIA HGX B200 / B300 and GB200 / GB300 NVL72 specs), which take GB200's table where they have none.
# A ring's bus bandwidth is bounded by the per-GPU link rate, not by how many GPUs the NVLink domain holds; NVLink
# SHARP all-reduce on 8 B200 reaches more (830+ GB/s busbw, NVIDIA/nccl issue #1807, 2025-08), ring all-gather and
# reduce-scatter do not use it, so the ring table prices all three.
SAME_LINK = {"B200": "GB200", "B300": "GB200", "GB300": "GB200"}


def points_for(accelerator: str) -> tuple[str, CommPoints] | None:
    """(whose table, the table) pricing ``accelerator``'s intra-node collectives: its own, else its NVLink peer's."""
    for name in (accelerator, SAME_LINK.get(accelerator)):
        if name and name in PUBLISHED:
            return name, PUBLISHED[name]
    return None


def _bus_factor(collective: str, group: int) -> float:
    # nccl-tests doc/PERFORMANCE.md: busbw = algbw x 2(n-1)/n for all-reduce, (n-1)/n for all-gather/reduce-scatter
    return (2.0 if collective == "all_reduce" else 1.0) * (group - 1) / group


def fitted_links(entry: CommPoints) -> tuple[Link, Link]:
    """(small-message link, bandwidth link): alpha-beta pairs through ``entry``'s times, each fitted by least squares
    on the relative time error to its range of sizes."""
    size = np.array([p[0] for p in entry.points], float)
    bus_bw = np.array([p[1] for p in entry.points], float) * 1e9
    bus_bytes = size * _bus_factor(entry.collective, entry.group)
    time_s = bus_bytes / bus_bw
    out = []
    for mask in (size <= _SMALL_MAX_BYTES, size >= _LARGE_MIN_BYTES):
        x, t = bus_bytes[mask], time_s[mask]

        def rel(p: np.ndarray, x: np.ndarray = x, t: np.ndarray = t) -> np.ndarray:
            return (p[0] * 1e-6 + x / (p[1] * 1e9)) / t - 1.0

        fit = least_squares(rel, [10.0, float(bus_bw[mask].max()) / 1e9], bounds=([0.0, 1e-3], [1e4, 1e5]))
        out.append(Link(round(float(fit.x[0]) * 1e-6, 9), round(float(fit.x[1]) * 1e9, -6)))
    return out[0], out[1]


__all__ = ["PUBLISHED", "SAME_LINK", "CommPoints", "fitted_links", "points_for"]
