"""How the benchmark clients that produced closed-loop measurements start their clients and what they count.

``vllm-bench``: ``vllm bench serve --max-concurrency C`` with its default ``--request-rate inf`` creates every
request at once and a semaphore lets C run at a time (vllm/benchmarks/serve.py ``benchmark``: ``limited_request_func``
under ``asyncio.Semaphore(max_concurrency)``); every request counts. AIPerf's concurrency mode without ramping or
warm-up starts the same way (AIPerf docs, "Gradual Ramping": without ramping "concurrency jumps immediately").

``genai-perf``: GenAI-Perf drives Perf Analyzer, whose time-window measurement (``--measurement-interval``, 10 s in
GenAI-Perf's LLM recipes) repeats windows until three consecutive ones agree within ``--stability-percentage``
(default 10%) in throughput and latency, and reports those stable windows (perf_analyzer docs,
measurements_metrics.md and cli.md): the start-up burst of C simultaneous first requests is not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from capsim.errors import SpecError


class Client(StrEnum):
    VLLM_BENCH = "vllm-bench"
    GENAI_PERF = "genai-perf"
    # AIPerf (NVIDIA's successor to GenAI-Perf; the NIM benchmarking docs' client) in concurrency mode without
    # ramping or warm-up: measured as vllm-bench is (module docstring)
    AIPERF = "aiperf"

    @property
    def counts_every_request(self) -> bool:
        """Whether the client reports every request of the run (start-up included), as vllm bench serve does."""
        return self is not Client.GENAI_PERF


def client(name: str) -> Client:
    try:
        return Client(name.strip().lower())
    except ValueError:
        raise SpecError("flags", f"client={name!r}", f"use one of {', '.join(c.value for c in Client)}") from None


@dataclass(frozen=True)
class Measured:
    """What a client reports from a closed-loop run."""

    ttft_mean_s: float
    itl_mean_s: float
    output_tokens_per_s: float
    requests: int
    note: str


def genai_perf_steady(requests: pd.DataFrame, clients: int) -> Measured:
    """The run after its start-up, as Perf Analyzer's stable windows measure it: every request but the C first
    ones issued together at t = 0; throughput over the measured requests' span (issue of the first to finish of
    the last). A jitter-free simulated closed loop repeats with a period, so whole periods (a run of 40 x C
    requests) stand in for the windows a real, jittered run stabilises in."""
    order = requests.sort_values("arrival_s")
    chosen = order.iloc[clients:]
    if chosen.empty:
        raise SpecError("client", "no request after the start-up", "run more requests than clients")
    span = float(chosen["finish_s"].max() - chosen["arrival_s"].min())
    return Measured(float(chosen["ttft_s"].mean()), float(chosen["tpot_s"].mean()),
                    float(chosen["output_tokens"].sum()) / span, len(chosen),
                    "genai-perf: steady state after the start-up burst")


def all_requests(requests: pd.DataFrame, summary: dict[str, float]) -> Measured:
    """Every request of the run, as vllm bench serve counts them (its duration: first issue to last finish)."""
    return Measured(float(summary["ttft_mean_s"]), float(summary["itl_mean_s"]),
                    float(summary["output_tokens_per_s"]), len(requests), "vllm-bench: every request")


__all__ = ["Client", "Measured", "all_requests", "client", "genai_perf_steady"]
