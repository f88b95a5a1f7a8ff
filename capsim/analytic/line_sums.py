"""Sums of a maximum of lines over integer steps, in closed form.

A decode step of ``B`` sequences whose contexts sum to ``S`` costs a maximum of lines in ``S``
(:class:`capsim.analytic.step_table.StepTable`); across a run of steps in which the batch does not change, ``S``
grows by ``B`` per step, so the run's total time is a sum of a maximum of lines over an integer range. This module
cuts such a maximum into pieces of one line each (:func:`envelope`), sums them (:func:`pieces_sum`,
:func:`sum_max_lines`) and finds the step at which a running sum reaches a time (:func:`steps_to_reach`, :func:`reach`).
"""

from __future__ import annotations

import math

Lines = tuple[tuple[float, float], ...]  # (intercept, slope) pairs: value(j) = max(a + b j)
Piece = tuple[int, int, float, float]  # steps [start, end) on which line (a, b) is the maximum


def line_sum(s: int, e: int, a: float, b: float) -> float:
    """Sum of a + b j over integers j in [s, e): (e - s) a + b (s + e - 1)(e - s) / 2."""
    return (e - s) * a + b * (s + e - 1) * (e - s) / 2.0


def _crossing(num: float, den: float, k: int) -> int:
    """ceil(num / den) clamped to [-1, k]: where two lines cross, as a step; a crossing beyond the range (or a
    quotient that overflows, e.g. a subnormal slope difference) is the range's edge, which means the same."""
    return math.ceil(min(max(num / den, -1.0), float(k)))


def envelope(lines: Lines, k: int) -> list[Piece]:
    """The upper envelope of ``lines`` over the integer steps [0, k), as pieces of one line each."""
    n = len(lines)
    if n == 1 or k <= 1:
        a, b = max(lines)  # (a, b) pairs compare by a, then b
        return [(0, k, a, b)]
    if n == 2:  # the common case (CUDA graphs): at most one crossing
        (a1, b1), (a2, b2) = lines if lines[0] >= lines[1] else lines[::-1]  # line 1 is the maximum at step 0
        if b2 > b1:
            x = _crossing(a1 - a2, b2 - b1, k)
            if 0 < x < k:
                return [(0, x, a1, b1), (x, k, a2, b2)]
            if x <= 0:
                return [(0, k, a2, b2)]
        return [(0, k, a1, b1)]
    cuts = {0, k}
    for i, (a1, b1) in enumerate(lines):
        for a2, b2 in lines[i + 1:]:
            if b1 != b2:
                x = _crossing(a2 - a1, b1 - b2, k)
                if 0 < x < k:
                    cuts.add(x)
    edges = sorted(cuts)
    pieces: list[Piece] = []
    for s, e in zip(edges, edges[1:], strict=False):
        mid = 0.5 * (s + e - 1)
        a, b = max(lines, key=lambda ln: ln[0] + ln[1] * mid)
        pieces.append((s, e, a, b))
    return pieces


def pieces_sum(pieces: list[Piece], m: int | None = None) -> float:
    """Summed time of the first ``m`` steps (all when None)."""
    total = 0.0
    for s, e, a, b in pieces:
        if m is not None:
            if m <= s:
                break
            e = m if m < e else e
        total += line_sum(s, e, a, b)
    return total


def sum_max_lines(lines: Lines, lo: int, hi: int) -> float:
    """Sum over integers j in [lo, hi) of max_i (a_i + b_i j)."""
    if hi <= lo:
        return 0.0
    pieces = envelope(lines, hi)
    return pieces_sum(pieces) - (pieces_sum(pieces, lo) if lo else 0.0)


def max_lines(lines: Lines, j: float) -> float:
    return max(a + b * j for a, b in lines)


def steps_to_reach(pieces: list[Piece], target: float) -> int:
    """The fewest steps m >= 1 whose summed time reaches ``target`` (the step in progress at ``target`` ends
    after m steps), or the run's length when it ends first."""
    return reach(pieces, target)[0]


def reach(pieces: list[Piece], target: float) -> tuple[int, float]:
    """:func:`steps_to_reach` and the summed time of those steps (``pieces_sum(pieces, m)``, bit for bit: the same
    sums in the same order). Solves the quadratic of each piece's partial sum."""
    done = 0.0
    for s, e, a, b in pieces:  # line_sum inline below: (e - s) a + b (s + e - 1)(e - s) / 2
        whole = (e - s) * a + b * (s + e - 1) * (e - s) / 2.0
        if done + whole < target:
            done += whole
            continue
        left, a0 = target - done, a + b * s  # time still to cover; this piece's first step
        n = e - s
        if b > 0:  # m a0 + b m (m - 1) / 2 >= left
            h = a0 - b / 2.0
            q = (-h + math.sqrt(h * h + 2.0 * b * left)) / b
        else:
            q = left / a0 if a0 > 0 else math.inf
        # in [1, n], clamped before rounding: a subnormal slope's quotient overflows to inf (min/max without calls)
        q = 1.0 if q < 1.0 else q
        m = math.ceil(float(n) if q > n else q)
        # Guard the rounding of the root: the first m steps of the piece reach ``left``, the first m - 1 do not.
        part = m * a + b * (s + s + m - 1) * m / 2.0  # line_sum(s, s + m, a, b)
        while m > 1:
            fewer = (m - 1) * a + b * (s + s + m - 2) * (m - 1) / 2.0  # line_sum(s, s + m - 1, a, b)
            if fewer < left:
                break
            m, part = m - 1, fewer
        while part < left and m < n:
            m += 1
            part = line_sum(s, s + m, a, b)
        return s + m, done + part  # m >= 1
    return (pieces[-1][1] if pieces else 1), done


__all__ = ["Lines", "Piece", "envelope", "line_sum", "max_lines", "pieces_sum", "reach", "steps_to_reach", "sum_max_lines"]
