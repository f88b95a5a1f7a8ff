"""Inter-token gaps (ITL) summarised without one sample per decode step, and their exact percentiles.

The gaps are a weighted multiset: values stored one by one (``values``, ``weights``), plus arithmetic progressions
``a + b j`` for integer ``j`` in ``[first, end)``, each element seen by ``weight`` sequences (the later steps of a
decode run, see :mod:`capsim.sim.serving.records`). Its percentiles are numpy's ``inverted_cdf`` percentiles of
the multiset written out (vLLM's ``vllm bench serve`` lists every gap), computed exactly without writing it out:
the weight at or below any value is counted in closed form per progression, a bracket (lo, hi] that holds the
percentile and at most :data:`EXPAND_MAX` elements is found by bisection, and ``np.percentile(weights=...,
method="inverted_cdf")`` runs on that bracket's elements plus two lumps standing for everything below and above it
(the lumps carry exactly the weight outside the bracket, so every cumulative weight inside it is the full
multiset's). Memory grows with the decode runs, not with the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

EXPAND_MAX = 1 << 20  # most elements written out to select one percentile


@dataclass(frozen=True)
class GapSummary:
    """A weighted multiset of gaps: stored values and arithmetic progressions (all weights are integers)."""

    values: np.ndarray
    weights: np.ndarray
    a: np.ndarray  # progression: a + b j for j in [first, end)
    b: np.ndarray
    first: np.ndarray
    end: np.ndarray
    weight: np.ndarray
    below: float = 0.0  # weight of the elements under all of these (when this is a part of a larger multiset)

    @classmethod
    def build(cls, values: np.ndarray, weights: np.ndarray, runs: np.ndarray) -> GapSummary:
        """From stored (value, weight) pairs and progression rows (a, b, first, end, weight); a progression of
        one value (b == 0) is stored as that value with its whole weight."""
        r = runs[runs[:, 3] > runs[:, 2]] if len(runs) else np.zeros((0, 5))
        flat = r[:, 1] == 0
        values = np.concatenate([values, r[flat, 0]])
        weights = np.concatenate([weights, r[flat, 4] * (r[flat, 3] - r[flat, 2])])
        keep, r = weights > 0, r[~flat]
        return cls(values[keep], weights[keep], r[:, 0], r[:, 1], r[:, 2].astype(np.int64), r[:, 3].astype(np.int64),
                   r[:, 4])

    @property
    def total_weight(self) -> float:
        return float(self.weights.sum() + np.dot(self.weight, self.end - self.first))

    def mean(self) -> float:
        """Weighted mean: sum of a + b j over [first, end) is m a + b (first + end - 1) m / 2, m = end - first."""
        total = self.total_weight
        if total <= 0:
            return math.nan
        m = (self.end - self.first).astype(float)
        runs = self.weight * (m * self.a + self.b * (self.first + self.end - 1) * m / 2.0)
        return float((np.dot(self.values, self.weights) + runs.sum()) / total)

    def _last_at_or_below(self, x: float) -> np.ndarray:
        """Per progression, the last j in [first - 1, end - 1] with a + b j <= x (first - 1: none), in the same
        floating-point arithmetic as the elements themselves."""
        a, b, last = self.a, self.b, self.end - 1
        j = np.floor((x - a) / b)
        np.minimum(j, last, out=j)  # x = +inf lands on the last element
        np.maximum(j, self.first - 1, out=j)  # x = -inf before the first
        j = j.astype(np.int64)
        j += (j < last) & (a + b * (j + 1) <= x)  # the division's rounding: one step to the exact boundary
        j -= (j >= self.first) & (a + b * j > x)
        return j

    def _elements(self, lo: _Cut, hi: _Cut) -> tuple[np.ndarray, np.ndarray]:
        """The elements in (lo, hi] with their weights."""
        inside = hi.mask & ~lo.mask
        count = hi.j - lo.j
        sel = np.flatnonzero(count > 0)
        c = count[sel]
        idx = np.repeat(sel, c)
        j = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c) + np.repeat(lo.j[sel] + 1, c)
        return (np.concatenate([self.values[inside], self.a[idx] + self.b[idx] * j]),
                np.concatenate([self.weights[inside], self.weight[idx]]))

    def _count_inside(self, lo: _Cut, hi: _Cut) -> int:
        return int(np.sum(hi.mask & ~lo.mask) + np.sum(hi.j - lo.j))

    def _cut(self, x: float) -> _Cut:
        mask = self.values <= x
        j = self._last_at_or_below(x)
        weight = self.below + float(self.weights[mask].sum() + np.dot(self.weight, j - self.first + 1))
        return _Cut(x, weight, mask, j)

    def _ends(self, lo: float, hi: float) -> tuple[_Cut, _Cut]:
        """The cuts at lo and hi of a part made by :meth:`_between` (all of it lies in (lo, hi])."""
        below = self.below + self.total_weight
        return (_Cut(lo, self.below, np.zeros(len(self.values), bool), self.first - 1),
                _Cut(hi, below, np.ones(len(self.values), bool), self.end - 1))

    def _between(self, lo: _Cut, hi: _Cut) -> GapSummary:
        """The part of the multiset in (lo, hi], knowing the weight below it."""
        inside = hi.mask & ~lo.mask
        keep = hi.j > lo.j
        return GapSummary(self.values[inside], self.weights[inside], self.a[keep], self.b[keep], lo.j[keep] + 1,
                          hi.j[keep] + 1, self.weight[keep], lo.weight)

    def _start(self, q: float, total: float) -> tuple[_Cut, _Cut]:
        """Cuts lo < hi with weight(<= lo) / total < q <= weight(<= hi) / total (numpy's comparison), placed
        from a sample of the multiset and widened until they hold the quantile."""
        k = max((len(self.values) + 4 * len(self.a)) // 65536, 1)  # a sample of about 65536 points:
        a, b, first, m = self.a[::k], self.b[::k], self.first[::k], (self.end - self.first)[::k].astype(float)
        vals = np.concatenate([self.values[::k], *[a + b * (first + (m - 1) * f) for f in (0.125, 0.375, 0.625, 0.875)]])
        wts = np.concatenate([self.weights[::k], *[self.weight[::k] * m / 4.0] * 4])  # four points a progression
        delta = 0.005
        while True:
            lo_q, hi_q = q - delta, q + delta
            x_lo, x_hi = np.percentile(vals, [100.0 * max(lo_q, 0.0), 100.0 * min(hi_q, 1.0)], weights=wts,
                                       method="inverted_cdf")
            lo = self._cut(-np.inf if lo_q <= 0 else float(x_lo))
            hi = self._cut(np.inf if hi_q >= 1 else float(x_hi))
            if lo.weight / total < q <= hi.weight / total:
                return lo, hi
            delta *= 4

    def _narrow(self, lo: _Cut, hi: _Cut, q: float, total: float) -> tuple[_Cut, _Cut]:
        """Bisect (lo, hi] (keeping the quantile inside) until at most EXPAND_MAX elements lie between."""
        while self._count_inside(lo, hi) > EXPAND_MAX:
            low = lo.x if np.isfinite(lo.x) else self._extreme(min)
            high = hi.x if np.isfinite(hi.x) else self._extreme(max)
            x = low + (high - low) / 2.0
            if x in (lo.x, hi.x):
                break  # lo and hi are adjacent floats: every element left equals hi
            mid = self._cut(x)
            if mid.weight / total >= q:
                hi = mid
            else:
                lo = mid
        return lo, hi

    def _extreme(self, pick: Callable[[float, float], float]) -> float:
        """The smallest (``min``) or largest (``max``) element."""
        ends = [self.a + self.b * self.first, self.a + self.b * (self.end - 1)]
        return float(pick(arr.min() if pick is min else arr.max() for arr in (self.values, *ends) if len(arr)))

    def percentiles(self, ps: tuple[float, ...]) -> list[float]:
        """numpy's inverted-CDF weighted percentiles of the multiset written out, for each p in ``ps`` (> 0)."""
        total = self.total_weight
        if total <= 0:
            return [math.nan] * len(ps)
        out = []
        for p in ps:
            q = float(np.true_divide(p, 100))
            if q <= 0:
                raise ValueError(f"percentile {p}: give p > 0")
            lo, hi = self._start(q, total)
            part = self._between(lo, hi)  # the search goes on over the elements between the cuts only
            lo, hi = part._narrow(*part._ends(lo.x, hi.x), q, total)
            vals, wts = part._elements(lo, hi)
            above = total - lo.weight - float(wts.sum())
            # Two lumps stand for everything below lo and above hi: every cumulative weight in (lo, hi] is the
            # whole multiset's, so numpy picks the same element it would from the multiset written out.
            vals = np.concatenate([[lo.x], vals, [np.nextafter(hi.x, np.inf)]])
            wts = np.concatenate([[lo.weight], wts, [above]])
            out.append(float(np.percentile(vals, p, weights=wts, method="inverted_cdf")))
        return out


@dataclass(frozen=True)
class _Cut:
    """A value x, the weight of the elements <= x, and where x falls among the stored values and progressions."""

    x: float
    weight: float
    mask: np.ndarray  # stored values <= x
    j: np.ndarray  # per progression: the last j with a + b j <= x (first - 1: none)


__all__ = ["EXPAND_MAX", "GapSummary"]
