"""Fits that turn timing samples into the parameters capsim.perf reads.

Each fit minimises the squared error of log(time) (so short and long kernels weigh alike) with
scipy.optimize.least_squares, over the same functional forms capsim.perf evaluates:
- GEMM: ``launch + max(2mnk / (peak * e * prod x/(x+half)), bytes / bw)``;
- memory-bound kernels: ``launch + bytes / (bw * bytes / (bytes + half_bytes))``;
- collectives: ``alpha + bus_factor(n) * bytes / busbw`` per collective and group size (Hockney).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from capsim.perf.params import Collective, Curve, Link


@dataclass(frozen=True)
class GemmFit:
    curve: Curve
    launch_s: float
    bandwidth_bytes_per_s: float  # achieved while streaming operands (weights at small m)
    rms_log_error: float


def _gemm_time(p: np.ndarray, m, n, k, nbytes, peak: float):  # noqa: ANN001, ANN202
    eff, hm, hn, hk, launch, bw = p
    e = eff * m / (m + hm) * n / (n + hn) * k / (k + hk)
    return launch + np.maximum(2.0 * m * n * k / (peak * e), nbytes / bw)


def fit_gemm(m: np.ndarray, n: np.ndarray, k: np.ndarray, nbytes: np.ndarray, time_s: np.ndarray,
             peak_flops_per_s: float, bandwidth_guess: float) -> GemmFit:
    """Fit peak fraction, half sizes for m, n, k, launch time and streaming bandwidth."""
    m, n, k, nbytes, t = (np.asarray(x, float) for x in (m, n, k, nbytes, time_s))
    # Fit in log-parameters: every parameter is positive and they span 12 orders of magnitude. The roofline's
    # max() has kinks, so start from a few streaming bandwidths and keep the best.
    lo = np.log([0.05, 1e-3, 1e-3, 1e-3, 1e-9, bandwidth_guess * 0.05])
    hi = np.log([1.0, 1e5, 1e5, 1e5, 1e-3, bandwidth_guess])  # never above the datasheet peak

    def residual(q: np.ndarray) -> np.ndarray:
        return np.log(_gemm_time(np.exp(q), m, n, k, nbytes, peak_flops_per_s)) - np.log(t)

    starts = [np.log([0.75, 64.0, 64.0, 64.0, 5e-6, bandwidth_guess * f]) for f in (0.3, 0.5, 0.7, 0.9)]
    sol = min((least_squares(residual, x0, bounds=(lo, hi)) for x0 in starts), key=lambda r: r.cost)
    eff, hm, hn, hk, launch, bw = np.exp(sol.x)
    return GemmFit(Curve(float(eff), (float(hm), float(hn), float(hk))), float(launch), float(bw),
                   float(np.sqrt(np.mean(sol.fun**2))))


@dataclass(frozen=True)
class MemoryFit:
    bandwidth_bytes_per_s: dict[str, float]  # achieved bandwidth per op category
    launch_s: float
    half_bytes: float
    rms_log_error: float


def fit_memory(nbytes: np.ndarray, time_s: np.ndarray, category: np.ndarray, bandwidth_guess: float) -> MemoryFit:
    """Fit one achieved bandwidth per op category, a shared launch time, and the size at which bandwidth halves."""
    b, t = np.asarray(nbytes, float), np.asarray(time_s, float)
    cats, idx = np.unique(np.asarray(category), return_inverse=True)

    def model(p: np.ndarray) -> np.ndarray:
        launch, half, bws = p[0], p[1], p[2:]
        return launch + (b + half) / bws[idx]  # = launch + b / (bw * b / (b + half))

    def residual(q: np.ndarray) -> np.ndarray:
        return np.log(model(np.exp(q))) - np.log(t)

    x0 = np.log([3e-6, 1e5, *([bandwidth_guess * 0.6] * len(cats))])
    lo = np.log([1e-9, 1.0, *([bandwidth_guess * 0.01] * len(cats))])
    hi = np.log([1e-3, 1e9, *([bandwidth_guess] * len(cats))])  # never above the datasheet peak
    sol = least_squares(residual, x0, bounds=(lo, hi))
    launch, half, *bws = np.exp(sol.x)
    return MemoryFit({str(c): float(v) for c, v in zip(cats, bws, strict=True)}, float(launch), float(half),
                     float(np.sqrt(np.mean(sol.fun**2))))


def fit_alpha_beta(collective: Collective | str, nbytes: Sequence[float], group: int,
                   time_s: Sequence[float], protocols: int = 2, loss: str = "linear") -> tuple[tuple[Link, ...], float]:
    """Fit ``min_p(alpha_p + bus_factor * bytes / busbw_p)`` to one collective at one group size.

    ``loss="soft_l1"`` makes the fit robust to a few samples a busy machine delayed (scipy least_squares).

    NCCL chooses, per message size, the fastest of its protocols (LL, LL128, Simple: low latency and low
    bandwidth, to high latency and full bandwidth; NCCL docs, "NCCL_PROTO"); two alpha-beta lines and their
    lower envelope capture that switch. Returns (links, rms log error).
    """
    coll = Collective(collective)
    b = np.asarray(nbytes, float) * coll.bus_factor(float(group))
    t = np.asarray(time_s, float)

    def model(p: np.ndarray) -> np.ndarray:
        lines = [p[2 * i] + b * p[2 * i + 1] for i in range(protocols)]
        return np.min(lines, axis=0)

    def residual(p: np.ndarray) -> np.ndarray:
        return np.log(model(p)) - np.log(t)

    order = np.argsort(b)
    bs, ts = b[order], t[order]

    def line(lo: int, hi: int) -> tuple[float, float]:  # relative-error least squares of t = alpha + b * inv
        w = 1.0 / ts[lo:hi]
        inv, alpha = np.polyfit(bs[lo:hi], ts[lo:hi], 1, w=w)
        return max(alpha, 1e-7), max(inv, 1e-16)

    # Start from the best split of the sorted sizes into `protocols` contiguous runs, then refine jointly.
    cuts = [len(bs) * (i + 1) // protocols for i in range(protocols - 1)]
    best = None
    for cut in range(4, len(bs) - 4) if protocols == 2 else [cuts[0]] if cuts else []:
        p = np.array([*line(0, cut), *line(cut, len(bs))])
        with np.errstate(invalid="ignore"):
            err = float(np.sum(residual(p) ** 2))
        if np.isfinite(err) and (best is None or err < best[0]):
            best = (err, p)
    x0 = best[1] if best is not None else np.array([*line(0, len(bs))])
    lo = np.array([0.0, 1e-16] * protocols)
    hi = np.array([1.0, 1e-3] * protocols)
    x0 = np.clip(x0, lo, hi)
    sol = least_squares(residual, x0, bounds=(lo, hi), x_scale=np.maximum(x0, 1e-16), loss=loss, f_scale=0.2,
                        xtol=1e-12, ftol=1e-12, gtol=1e-12)
    x = sol.x if np.sum(sol.fun**2) <= np.sum(residual(x0) ** 2) else x0  # the envelope is not smooth: keep the better
    links = tuple(sorted((Link(float(x[2 * i]), float(1.0 / x[2 * i + 1])) for i in range(protocols)),
                         key=lambda link: link.alpha_s))
    return links, float(np.sqrt(np.mean(residual(x) ** 2)))


@dataclass(frozen=True)
class AttentionFit:
    curve: Curve  # fraction of peak over (query rows, keys per sequence)
    launch_s: float
    bandwidth_bytes_per_s: float  # achieved while reading Q, K and V (decode is bound by it)
    rms_log_error: float


def _attention_time(p: np.ndarray, flops, nbytes, rows, keys, peak: float):  # noqa: ANN001, ANN202
    eff, h_rows, h_keys, launch, bw = p
    e = eff * rows / (rows + h_rows) * keys / (keys + h_keys)
    return launch + np.maximum(flops / (peak * e), nbytes / bw)


def fit_attention(flops: np.ndarray, nbytes: np.ndarray, query_rows: np.ndarray, kv_per_seq: np.ndarray,
                  time_s: np.ndarray, peak_flops_per_s: float, bandwidth_guess: float,
                  launch_s: float | None = None, bandwidth: float | None = None) -> AttentionFit:
    """Fit ``launch + max(flops / (peak * e * R/(R+hR) * K/(K+hK)), bytes / bw)`` (the form capsim.perf
    evaluates) over query rows R and keys per sequence K; ``launch_s``/``bandwidth`` given are held fixed."""
    f, b, r, kk, t = (np.asarray(x, float) for x in (flops, nbytes, query_rows, kv_per_seq, time_s))
    fixed = {3: launch_s, 4: bandwidth}
    lo = np.log([0.01, 1e-3, 1e-3, 1e-9, bandwidth_guess * 1e-3])
    hi = np.log([1.0, 1e6, 1e6, 1e-2, bandwidth_guess])

    def full(q: np.ndarray) -> np.ndarray:
        p = np.exp(q)
        return np.array([fixed[i] if fixed.get(i) is not None else p[i] for i in range(5)])

    def residual(q: np.ndarray) -> np.ndarray:
        return np.log(_attention_time(full(q), f, b, r, kk, peak_flops_per_s)) - np.log(t)

    starts = [np.log([0.6, hr, hk, 5e-6, bandwidth_guess * 0.3]) for hr in (1.0, 1e3) for hk in (10.0, 300.0)]
    sol = min((least_squares(residual, np.clip(x0, lo, hi), bounds=(lo, hi)) for x0 in starts),
              key=lambda s: s.cost)
    eff, h_rows, h_keys, launch, bw = full(sol.x)
    return AttentionFit(Curve(float(eff), (float(h_rows), float(h_keys))), float(launch), float(bw),
                        float(np.sqrt(np.mean(sol.fun**2))))


def residual_grid(coords: tuple[np.ndarray, ...], names: tuple[str, ...], factor: np.ndarray,
                  neighbours: int = 4, step: float = 1e-4) -> dict[str, list]:
    """A measured residual grid (capsim.perf reads it as ``{name: axis, ..., "log_factor": values}``): the axes are
    the samples' own log2 sizes; each node holds log(factor) of the nearest samples by inverse squared distance
    (in log2 units), so the grid is exact at every sample and linear in log space between them. Axes are
    rounded to ``step`` (log2 units) to keep the grid small."""
    pts = np.log2(np.stack([np.asarray(x, float) for x in coords], axis=1))
    logf = np.log(np.asarray(factor, float))
    axes = []
    for i in range(pts.shape[1]):
        a = np.unique(np.round(pts[:, i] / step) * step)
        axes.append(a if len(a) > 1 else np.array([a[0], a[0] + 1.0]))  # the interpolator needs two points
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    d2 = ((grid[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    kq = min(neighbours, len(pts))
    idx = np.argpartition(d2, kq - 1, axis=1)[:, :kq]
    w = 1.0 / (np.take_along_axis(d2, idx, axis=1) + 1e-9)
    values = (w * logf[idx]).sum(1) / w.sum(1)
    out: dict[str, list] = {n: [round(float(x), 4) for x in a] for n, a in zip(names, axes, strict=True)}
    out["log_factor"] = np.round(values.reshape(tuple(len(a) for a in axes)), 4).tolist()
    return out


def residual_table(m: np.ndarray, n: np.ndarray, k: np.ndarray, factor: np.ndarray) -> dict[str, list]:
    """``GemmParams.table`` for one format: a residual grid over log2 m, n and k."""
    return residual_grid((m, n, k), ("log2_m", "log2_n", "log2_k"), factor)


def residual_curve(nbytes: np.ndarray, factor: np.ndarray) -> dict[str, list]:
    """``MemoryParams.table`` for one kind: the mean log factor at each measured size (log2 bytes)."""
    x = np.round(np.log2(np.asarray(nbytes, float)), 4)
    logf = np.log(np.asarray(factor, float))
    axis = np.unique(x)
    values = [float(np.mean(logf[x == v])) for v in axis]
    if len(axis) == 1:
        axis, values = np.array([axis[0], axis[0] + 1.0]), values * 2
    return {"log2_bytes": [round(float(v), 4) for v in axis], "log_factor": [round(v, 4) for v in values]}
