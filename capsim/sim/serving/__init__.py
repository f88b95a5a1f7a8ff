"""The serving fleet simulator (SimPy): workloads, routers, replicas with batching schedulers, metrics.

Modules, bottom up; each imports only those above it, at module level (tests/test_layering.py checks it):

- ``workload``, ``presets``: requests to serve (arrivals, lengths; presets and traces).
- ``budget``: the events and memory a run implies, refused over ``ServeConfig.max_events`` before anything is built.
- ``state``: ``Requests``, every request's lengths and progress in plain lists (the hot path's scalar reads).
- ``prefix``: ``PrefixCache``, one replica's cached prefix blocks by prefix group (held, evictable, LRU).
- ``kv``: ``DecodeSet``, one replica's decoding sequences and paged-KV blocks, advanced many steps at a time (with
  its prefix cache where the engine release keeps one).
- ``records``: ``ReplicaRecord``, what a replica leaves for the metrics (busy time, preemptions, time series,
  inter-token gaps with decode runs as progressions), in memory that grows with runs, not steps.
- ``scheduler``: the scheduling policies (one ``_plan_*`` method per policy in ``PLANNERS``: admission, prompt
  chunks, preemption), a mixin of ``Replica``, with ``ReplicaConfig`` and ``Role``.
- ``replica``: ``Replica``, a queue, its steps and decode runs; requests it is done with go to a ``Handoff``
  (finished / transfer / reprefill) that the fleet implements.
- ``static``, ``drivers``: the SimPy processes that move a replica's clock (per step, per decode run, per static
  batch); the fast mode and the one-event-per-step reference make the same decisions at the same times.
- ``router``: which replica of a pool gets a request (over the ``Routable`` protocol).
- ``gaps``, ``metrics``: exact ITL percentiles of the recorded gaps; ``build_result`` from ``Requests``, the
  records and a ``RunInfo`` (it never sees the fleet).
- ``fleet``: ``Fleet`` wires replicas, routers and arrivals in one SimPy environment; ``simulate`` runs it.

Step times come from ``capsim.analytic.step_table.StepTable`` (each term of a step written once). The device model
is a ``capsim.perf.Perf`` the caller passes in (``capsim.calibration.perf_for``); nothing here reads a file but
the trace loader of ``presets``.
"""

from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS, WorkEstimate, check_work, estimate_work
from capsim.sim.serving.fleet import Fleet, ServeConfig, engine_plan, kv_blocks, simulate
from capsim.sim.serving.metrics import ServingResult
from capsim.sim.serving.replica import Role
from capsim.sim.serving.router import RouterKind
from capsim.sim.serving.workload import ArrivalKind, LengthKind, Lengths, Workload, diurnal, renewal

__all__ = ["DEFAULT_MAX_EVENTS", "ArrivalKind", "Fleet", "LengthKind", "Lengths", "Role", "RouterKind", "ServeConfig",
           "ServingResult", "WorkEstimate", "Workload", "check_work", "diurnal", "engine_plan", "estimate_work",
           "kv_blocks", "renewal", "simulate"]
