"""Bounded work: the events and memory a serving simulation implies, estimated before anything is built.

A typo (``--requests 100000000``, ``--replicas 100000000``, a planner rate of 1e12 req/s) must be refused with the
estimate and the option that lowers it, not run until memory runs out. The estimate counts what the simulator
does per request and per replica (requests x replicas x steps):

- each request arrives, is computed in prompt steps of at most the step's token budget, and joins and leaves a
  decode run (fast mode); the step-by-step reference adds one event per decode step, at most one per output
  token (a bound: batching shares a step among sequences);
- each replica runs a SimPy process and keeps its own tables.

Memory per request, per event and per replica was measured on this simulator (peak RSS over the interpreter's,
benchmarks/serving_sim_memory.py): 1,000,000 Poisson requests on 16 replicas took 1.41 GB with 4.0 estimated events
(3.0 scheduling decisions) per request; 100,000 overloaded requests with 82,409 preemptions took 0.2 GB. The limit
bounds both: at most ``max_events`` events, and at most ``max_events x BYTES_PER_LIMIT_EVENT`` bytes (3.5 GB at the
default), so a fleet of millions of replicas is refused as well as millions of requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from capsim.errors import SpecError, require

DEFAULT_MAX_EVENTS = 1e7  # ~2.5M requests: minutes on one core, ~3.5 GB; a float, as --max-events parses it
EVENTS_PER_REQUEST = 3  # arrival, joining a decode run, leaving it (prompt steps are counted apart)
EVENTS_PER_REPLICA = 2  # its process start and its last wake-up
BYTES_PER_REQUEST = 1000.0  # per-request state, its result row, its share of the workload arrays
BYTES_PER_EVENT = 100.0  # time-series row, inter-token gaps and decode-run records, in float64 blocks
BYTES_PER_REPLICA = 20_000.0  # Replica, KV bookkeeping, record columns, SimPy process
BYTES_PER_LIMIT_EVENT = 350.0  # memory allowed per event of the limit (the 1M-request run's bytes per event)


@dataclass(frozen=True)
class WorkEstimate:
    """What one simulation would cost: events processed and memory held (estimates, not bounds)."""

    requests: int
    replicas: int
    events: float
    memory_bytes: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def limit_needed(self) -> float:
        """The least ``max_events`` that allows this run: its events, or the events its memory counts as."""
        return max(self.events, self.memory_bytes / BYTES_PER_LIMIT_EVENT)

    def over(self, max_events: float) -> bool:
        """Whether this run is over the limit: more than ``max_events`` events, or more memory than that many
        events allow."""
        return self.limit_needed > max_events

    def describe(self) -> str:
        return (f"about {self.events:.3g} events and {self.memory_bytes / 1e9:.3g} GB for {self.requests:,} "
                f"request{'s' * (self.requests != 1)} on {self.replicas:,} replica{'s' * (self.replicas != 1)}")


def estimate_work(requests: float, replicas: int, prompt_tokens_mean: float = 1.0, output_tokens_mean: float = 1.0,
                  step_tokens: int = 1, fast: bool = True) -> WorkEstimate:
    """The events and memory of simulating ``requests`` on ``replicas`` replicas whose steps take at most
    ``step_tokens`` prompt tokens (vLLM max_num_batched_tokens), with the given mean lengths."""
    require(math.isfinite(requests) and requests >= 0, "requests", f"must be a finite count, got {requests}")
    chunks = max(math.ceil(prompt_tokens_mean / max(step_tokens, 1)), 1)
    per_request = EVENTS_PER_REQUEST + chunks + (0.0 if fast else max(output_tokens_mean - 1.0, 0.0))
    events = requests * per_request + replicas * EVENTS_PER_REPLICA
    memory = requests * BYTES_PER_REQUEST + events * BYTES_PER_EVENT + replicas * BYTES_PER_REPLICA
    return WorkEstimate(int(requests), int(replicas), float(events), float(memory))


def check_limit(max_events: float) -> None:
    """A limit is a finite number of events > 0."""
    require(math.isfinite(max_events) and max_events > 0, "--max-events", f"must be a finite number > 0, got "
            f"{max_events}")


def check_work(estimate: WorkEstimate, max_events: float, lower: str = "simulate fewer requests or replicas") -> None:
    """Refuse a simulation whose estimate is over ``max_events`` events (or the memory that many events allow),
    naming the estimate and what lowers it."""
    check_limit(max_events)
    memory_limit = max_events * BYTES_PER_LIMIT_EVENT
    if estimate.over(max_events):
        raise SpecError("--max-events", f"the simulation would take {estimate.describe()}, over the limit of "
                        f"{max_events:.3g} events and {memory_limit / 1e9:.3g} GB", f"{lower}, or raise "
                        f"--max-events to {estimate.limit_needed:.3g} if the machine has the time and memory")


__all__ = ["BYTES_PER_EVENT", "BYTES_PER_LIMIT_EVENT", "BYTES_PER_REPLICA", "BYTES_PER_REQUEST", "DEFAULT_MAX_EVENTS", "EVENTS_PER_REPLICA",
           "EVENTS_PER_REQUEST", "WorkEstimate", "check_limit", "check_work", "estimate_work"]
