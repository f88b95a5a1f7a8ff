"""Workloads: when requests arrive and how long their prompts and outputs are (seeded, vectorised).

Arrivals: Poisson, gamma (bursty, with a coefficient of variation), a diurnal rate curve, replay of a trace,
a closed loop of N clients (``vllm bench serve --max-concurrency``), or one batch at t = 0 (vLLM's latency
benchmark). Lengths: fixed, uniform, log-normal, or drawn jointly from a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from capsim.errors import SpecError, require


class ArrivalKind(StrEnum):
    POISSON = "poisson"
    GAMMA = "gamma"
    DIURNAL = "diurnal"
    TRACE = "trace"
    CLOSED = "closed"  # N clients, each sends its next request when the previous one completes
    BATCH = "batch"  # every request at t = 0


class LengthKind(StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"
    EMPIRICAL = "empirical"


@dataclass(frozen=True)
class Lengths:
    """A prompt/output length distribution. ``prompt`` and ``output`` are (a, b): fixed (value, -), uniform
    (low, high), log-normal (mean, coefficient of variation); empirical draws (prompt, output) pairs jointly."""

    kind: LengthKind
    prompt: tuple[float, float] = (0.0, 0.0)
    output: tuple[float, float] = (0.0, 0.0)
    pairs: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LengthKind(self.kind))
        if self.kind is LengthKind.EMPIRICAL:
            require(self.pairs is not None and len(self.pairs[0]) > 0, "lengths", "empirical needs a trace",
                    "use Lengths.empirical(trace)")
            return
        for name in ("prompt", "output"):
            a, b = getattr(self, name)
            require(a >= 1, f"lengths.{name}", f"must be at least 1 token, got {a}")
            if self.kind is LengthKind.UNIFORM:
                require(b >= a, f"lengths.{name}", f"uniform needs high >= low, got ({a}, {b})")
            if self.kind is LengthKind.LOGNORMAL:
                require(b >= 0, f"lengths.{name}", f"coefficient of variation must be >= 0, got {b}")

    @classmethod
    def fixed(cls, prompt: int, output: int) -> Lengths:
        return cls(LengthKind.FIXED, (prompt, 0), (output, 0))

    @classmethod
    def uniform(cls, prompt: tuple[int, int], output: tuple[int, int]) -> Lengths:
        return cls(LengthKind.UNIFORM, prompt, output)

    @classmethod
    def lognormal(cls, prompt_mean: float, prompt_cv: float, output_mean: float, output_cv: float) -> Lengths:
        return cls(LengthKind.LOGNORMAL, (prompt_mean, prompt_cv), (output_mean, output_cv))

    @classmethod
    def empirical(cls, trace: pd.DataFrame) -> Lengths:
        return cls(LengthKind.EMPIRICAL, pairs=(trace["prompt_tokens"].to_numpy(np.int64),
                                                trace["output_tokens"].to_numpy(np.int64)))

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.kind is LengthKind.EMPIRICAL:
            idx = rng.integers(0, len(self.pairs[0]), n)
            return self.pairs[0][idx], self.pairs[1][idx]
        return self._one(self.prompt, n, rng), self._one(self.output, n, rng)

    def _one(self, ab: tuple[float, float], n: int, rng: np.random.Generator) -> np.ndarray:
        a, b = ab
        if self.kind is LengthKind.FIXED:
            return np.full(n, int(a), np.int64)
        if self.kind is LengthKind.UNIFORM:
            return rng.integers(int(a), int(b) + 1, n).astype(np.int64)
        # Log-normal with the given mean and CV: sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2 / 2.
        s2 = np.log1p(b * b)
        x = rng.lognormal(np.log(a) - s2 / 2, np.sqrt(s2), n)
        return np.maximum(np.rint(x), 1).astype(np.int64)

    def mean(self) -> tuple[float, float]:
        if self.kind is LengthKind.EMPIRICAL:
            return float(self.pairs[0].mean()), float(self.pairs[1].mean())
        if self.kind is LengthKind.UNIFORM:
            return (self.prompt[0] + self.prompt[1]) / 2, (self.output[0] + self.output[1]) / 2
        return float(self.prompt[0]), float(self.output[0])


@dataclass(frozen=True)
class Workload:
    """Requests to serve: arrival times (open loop) or a client count (closed loop), and lengths."""

    name: str
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None  # None for a closed loop
    clients: int = 0  # closed loop: concurrent clients
    source: str = ""  # where the numbers come from
    # Prefix caching: each request's prefix group (-1: none; e.g. 0 for a system prompt every request starts with)
    # and how many of its leading prompt tokens are the group's. None: no request shares a prefix.
    prefix_group: np.ndarray | None = None
    prefix_tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.prompt_tokens)
        require((self.prefix_group is None) == (self.prefix_tokens is None), "workload.prefix_tokens",
                "prefix groups and prefix lengths come together", "give both or neither")
        if self.prefix_group is not None:
            require(len(self.prefix_group) == n and len(self.prefix_tokens) == n, "workload.prefix_tokens",
                    "length differs from prompt_tokens")
            require(bool(np.all(self.prefix_tokens >= 0)) and bool(np.all(self.prefix_tokens <= self.prompt_tokens)),
                    "workload.prefix_tokens", "must be between 0 and the request's prompt length")
        require(n > 0, "workload", "has no requests", "give a request count or duration > 0")
        require(len(self.output_tokens) == n, "workload.output_tokens", "length differs from prompt_tokens")
        if self.arrival_s is None:
            require(self.clients >= 1, "workload.clients", "a closed loop needs at least one client")
        else:
            require(len(self.arrival_s) == n, "workload.arrival_s", "length differs from prompt_tokens")
            require(bool(np.all(np.diff(self.arrival_s) >= 0)), "workload.arrival_s", "must be sorted")
        require(int(np.min(self.prompt_tokens)) >= 1 and int(np.min(self.output_tokens)) >= 1, "workload",
                "every request needs at least 1 prompt and 1 output token")

    @property
    def size(self) -> int:
        return len(self.prompt_tokens)

    @property
    def closed(self) -> bool:
        return self.arrival_s is None


def _count(n: int | None, duration_s: float | None, rate: float) -> int:
    if n is None and duration_s is None:
        raise SpecError("workload", "neither a request count nor a duration", "pass --requests N or --duration S")
    if n is not None:
        require(n >= 1, "--requests", f"must be >= 1, got {n}")
        return int(n)
    require(duration_s > 0, "--duration", f"must be > 0, got {duration_s}")
    return max(int(np.ceil(rate * duration_s * 1.2)) + 10, 1)


def _clip(t: np.ndarray, duration_s: float | None, n: int | None) -> np.ndarray:
    return t if duration_s is None or n is not None else t[t < duration_s]


def renewal(rate_rps: float, n: int | None, duration_s: float | None, rng: np.random.Generator,
            cv: float = 1.0) -> np.ndarray:
    """Arrival times of a renewal process with gamma gaps (cv = 1: Poisson; cv > 1: bursty)."""
    require(rate_rps > 0, "--rate", f"must be > 0, got {rate_rps}")
    require(cv > 0, "--cv", f"must be > 0, got {cv}")
    count = _count(n, duration_s, rate_rps)
    shape = 1.0 / (cv * cv)
    t = np.cumsum(rng.gamma(shape, 1.0 / (rate_rps * shape), count))
    t -= t[0]
    if duration_s is not None and n is None:
        while t[-1] < duration_s:  # draw more until the window is covered
            t = np.concatenate([t, t[-1] + np.cumsum(rng.gamma(shape, 1.0 / (rate_rps * shape), count))])
    return _clip(t, duration_s, n)


def diurnal(rates_rps: np.ndarray, period_s: float, n: int | None, duration_s: float | None,
            rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson arrivals whose rate is piecewise constant over equal bins of one ``period_s``
    (repeating): unit-rate Poisson times mapped through the inverse cumulative rate (Cinlar's time change)."""
    rates = np.asarray(rates_rps, float)
    require(rates.ndim == 1 and len(rates) > 0 and bool(np.all(rates >= 0)) and rates.sum() > 0, "--diurnal",
            "needs non-negative rates, not all zero")
    require(period_s > 0, "--period", f"must be > 0, got {period_s}")
    edges = np.linspace(0.0, period_s, len(rates) + 1)
    cum = np.concatenate([[0.0], np.cumsum(rates * np.diff(edges))])  # expected arrivals at each edge
    count = _count(n, duration_s, cum[-1] / period_s)
    u = np.cumsum(rng.exponential(1.0, count))
    cycles, rest = np.divmod(u, cum[-1])
    t = cycles * period_s + np.interp(rest, cum, edges)
    return _clip(np.sort(t - t[0]), duration_s, n)


__all__ = ["ArrivalKind", "LengthKind", "Lengths", "Workload", "diurnal", "renewal"]
