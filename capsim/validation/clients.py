"""How the benchmark clients that produced closed-loop measurements start their clients and what they count.

``vllm-bench``: ``vllm bench serve --max-concurrency C`` with its default ``--request-rate inf`` creates every
request at once and a semaphore lets C run at a time (vllm/benchmarks/serve.py ``benchmark``: ``limited_request_func``
under ``asyncio.Semaphore(max_concurrency)``); every request counts. AIPerf's concurrency mode without ramping or
warm-up starts the same way (AIPerf docs, "Gradual Ramping": without ramping "concurrency jumps immediately").

``genai-perf``: GenAI-Perf drives Perf Analyzer (triton-inference-server/perf_analyzer, read at 263c5f6e, 2025-12-15,
and at 4145774f, 2025-02-03, genai-perf 0.0.11dev). Its start-up is a burst too, and it is measured:
- Start: ``ConcurrencyManager::ReconfigThreads`` splits C over the worker threads and wakes them together
  (src/concurrency_manager.cc L104-158, L197), and each ``ConcurrencyWorker`` sends requests while a context is free
  (src/concurrency_worker.cc L167): all C first requests go out at once, with no warm-up unless
  ``--warmup-request-count`` is given (genai-perf's default is 0).
- Time windows (genai-perf's default up to 4145774f: ``--measurement-interval 10000``, ``--stability-percentage 999``,
  genai_perf/parser.py L957, L976; request count 0): each window starts where the previous one ended, the first at
  the concurrency change (src/inference_profiler.cc L1202), and lasts 1.2 x the interval (L1230); a request counts in
  the window its last response falls in (L1357). Windows repeat until the last 3 (L522) have non-zero throughput and
  max/min of throughput and latency within 1 + 9.99, at most 10 (--max-trials, src/command_line_parser.h L66). The
  export keeps every window's requests (``CollectData`` per window, L1302; profile_data_collector.cc ``AddData``), and
  GenAI-Perf computes its metrics over every exported request, throughput over first send to last response
  (genai_perf/profile_data_parser/llm_profile_data_parser.py L233 at 263c5f6e). So the start-up counts; only the
  requests still in flight at the last window's end are left out.
- Request count (genai-perf's default from 00d6a467, 2025-03-21; max(10, 2 x C) requests from fd603396,
  genai_perf/config/generate/perf_analyzer_config.py L386 at 263c5f6e): exactly that many requests, one clamped window,
  every one measured (src/inference_profiler.cc L799).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from capsim.errors import SpecError

# perf_analyzer's time-window loop as genai-perf up to 4145774f drives it (module docstring)
WINDOW_S = 10.0 * 1.2  # --measurement-interval 10000 ms, slept 1.2x (inference_profiler.cc L1230)
STABLE_WINDOWS = 3  # load_parameters_.stability_window (inference_profiler.cc L522)
MAX_TRIALS = 10  # --max-trials default (command_line_parser.h L66)
STABILITY = 9.99  # genai-perf's --stability-percentage 999 (genai_perf/parser.py L976 at 4145774f)


class Client(StrEnum):
    VLLM_BENCH = "vllm-bench"
    GENAI_PERF = "genai-perf"
    # AIPerf (NVIDIA's successor to GenAI-Perf; the NIM benchmarking docs' client) in concurrency mode without
    # ramping or warm-up: measured as vllm-bench is (module docstring)
    AIPERF = "aiperf"

    @property
    def counts_every_request(self) -> bool:
        """Whether the client reports every request it sends (vllm bench serve, AIPerf); GenAI-Perf reports those
        that ended inside perf_analyzer's windows (the start-up included)."""
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


def _measured(chosen: pd.DataFrame, note: str) -> Measured:
    """GenAI-Perf's figures over the requests it kept: mean TTFT, mean per-request (E2E - TTFT) / (output - 1)
    (its inter_token_latency), output tokens over first send to last response."""
    span = float(chosen["finish_s"].max() - chosen["arrival_s"].min())
    return Measured(float(chosen["ttft_s"].mean()), float(chosen["tpot_s"].mean()),
                    float(chosen["output_tokens"].sum()) / span, len(chosen), note)


def genai_perf_windows(requests: pd.DataFrame) -> Measured:
    """A closed loop started at once, measured in perf_analyzer's time windows from the start (module docstring):
    every request whose last response falls before the end of the first three consecutive stable windows."""
    t0 = float(requests["arrival_s"].min())
    finish = requests["finish_s"].to_numpy() - t0
    latency = finish - (requests["arrival_s"].to_numpy() - t0)
    ips, lat = [], []
    for k in range(MAX_TRIALS):
        inside = (finish >= k * WINDOW_S) & (finish < (k + 1) * WINDOW_S)
        ips.append(inside.sum() / WINDOW_S)
        lat.append(float(latency[inside].mean()) if inside.any() else np.inf)
        last_i, last_l = ips[-STABLE_WINDOWS:], lat[-STABLE_WINDOWS:]
        if len(last_i) == STABLE_WINDOWS and min(last_i) > 0 and max(last_i) / min(last_i) <= 1 + STABILITY \
                and max(last_l) / min(last_l) <= 1 + STABILITY:
            break
    else:
        raise SpecError("client", f"perf_analyzer would find no 3 stable windows in {MAX_TRIALS} of {WINDOW_S:g} s "
                        "(it reports the run as unstable)", "name another client")
    end = (k + 1) * WINDOW_S
    if finish.max() < end:
        raise SpecError("client", "the simulated run ends before perf_analyzer's last window", "simulate more requests")
    chosen = requests[finish < end]
    return _measured(chosen, f"genai-perf time windows: {k + 1} windows of {WINDOW_S:g} s from the start-up burst, "
                             f"{len(chosen)} requests")


def genai_perf_count(requests: pd.DataFrame) -> Measured:
    """Every request of a request-count run (max(10, 2 x C) requests, the start-up burst included)."""
    return _measured(requests, f"genai-perf request count: all {len(requests)} requests from the start-up burst")


def all_requests(requests: pd.DataFrame, summary: dict[str, float]) -> Measured:
    """Every request of the run, as vllm bench serve counts them (its duration: first issue to last finish)."""
    return Measured(float(summary["ttft_mean_s"]), float(summary["itl_mean_s"]),
                    float(summary["output_tokens_per_s"]), len(requests), "vllm-bench: every request")


__all__ = ["Client", "Measured", "all_requests", "client", "genai_perf_count", "genai_perf_windows"]
