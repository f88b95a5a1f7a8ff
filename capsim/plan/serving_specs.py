"""What a serving plan is asked for: the traffic a fleet must carry (:class:`Traffic`) and its latency targets
(:class:`Slo`). Re-exported by :mod:`capsim.plan.serving`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from capsim.analytic.serving import DEFAULT_SAMPLING, Sampling
from capsim.errors import require
from capsim.sim.serving.presets import WorkloadSpec, build_workload
from capsim.sim.serving.workload import ArrivalKind, Lengths

TRACE_SAMPLE = 20000  # requests drawn to estimate a trace's mean lengths


@dataclass(frozen=True)
class Slo:
    """Latency targets. p99 targets bound the fleet's percentiles; ``goodput_min`` instead asks that at least that
    fraction of requests meet both per-request targets (TTFT and TPOT), as ``vllm bench serve --goodput``."""

    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    goodput_min: float | None = None

    def __post_init__(self) -> None:
        require(any(v is not None for v in (self.ttft_p99_s, self.tpot_p99_s)), "slo",
                "no latency target given", "give a p99 TTFT and/or TPOT target")
        for name in ("ttft_p99_s", "tpot_p99_s"):
            value = getattr(self, name)
            require(value is None or (math.isfinite(value) and value > 0), f"slo.{name}",
                    f"must be a finite number of seconds > 0, got {value}")
        require(self.goodput_min is None or 0 < self.goodput_min <= 1, "slo.goodput_min", "must be in (0, 1]")

    def met(self, summary: dict[str, Any]) -> bool:
        if self.goodput_min is not None:
            return summary["goodput"] >= self.goodput_min
        ok = True
        if self.ttft_p99_s is not None:
            ok &= summary["ttft_p99_s"] <= self.ttft_p99_s
        if self.tpot_p99_s is not None:
            ok &= summary["tpot_p99_s"] <= self.tpot_p99_s
        return bool(ok)


@dataclass(frozen=True)
class Traffic:
    """What the fleet must carry: a peak rate (Poisson) with request lengths, or a trace's lengths at that rate,
    and the sampling the requests ask for (greedy, random, top-k, top-p, +penalties; a name or a
    :class:`~capsim.analytic.serving.Sampling`), which prices the sampler in the bound and the simulations."""

    rate_rps: float
    lengths: Lengths | None = None
    trace: str | None = None  # a shipped trace name or CSV: lengths sampled from it
    diurnal_rates_rps: tuple[float, ...] = ()  # a daily curve: the fleet is sized for its peak
    requests: int | None = None  # requests per confirming simulation (None: as many as ConfirmRule asks)
    sampling: Sampling | str = DEFAULT_SAMPLING  # vLLM SamplingParams' default (random) unless the user names one

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampling", Sampling.parse(self.sampling, "traffic.sampling"))
        require(math.isfinite(self.rate_rps) and self.rate_rps > 0, "traffic.rate_rps",
                f"must be a finite number > 0, got {self.rate_rps}")
        require(all(math.isfinite(r) and r >= 0 for r in self.diurnal_rates_rps), "traffic.diurnal_rates_rps",
                "rates must be finite and >= 0")
        require(self.requests is None or self.requests >= 1, "traffic.requests",
                f"must be >= 1, got {self.requests}", "or leave it out for the adaptive length")
        require(self.lengths is not None or self.trace is not None, "traffic", "no request lengths",
                "give lengths (e.g. a preset's) or a trace")

    def mean_lengths(self) -> tuple[float, float]:
        """Mean prompt and output tokens: the distribution's, or a large sample of the trace's."""
        if self.lengths is not None:
            return self.lengths.mean()
        w = build_workload(self.workload(1.0, requests=TRACE_SAMPLE))
        return float(np.mean(w.prompt_tokens)), float(np.mean(w.output_tokens))

    @property
    def peak_rps(self) -> float:
        return max(self.rate_rps, *self.diurnal_rates_rps) if self.diurnal_rates_rps else self.rate_rps

    def workload(self, rate: float, seed: int = 0, requests: int = 2000) -> WorkloadSpec:
        """Poisson arrivals at ``rate`` with these lengths (``requests`` of them)."""
        return WorkloadSpec(ArrivalKind.POISSON, lengths=self.lengths, trace=self.trace, rate_rps=rate,
                            requests=requests, seed=seed, name="plan")


__all__ = ["TRACE_SAMPLE", "Slo", "Traffic"]
