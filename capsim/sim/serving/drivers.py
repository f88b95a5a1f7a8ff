"""The SimPy processes that move a replica's clock.

- ``run_events``: one event per engine step, or per decode run (fast mode), with runs that a request submitted
  while they run can cut at the end of the step in progress. Used when replicas interact (a router that reads
  their state, a closed loop, disaggregated pools), and with ``fast=False`` as the one-event-per-step reference.
- ``run_ahead``: pre-routed arrivals and nothing else reaches the replica (replicas are independent), so it
  advances on its own clock through steps and decode runs to its last step, and SimPy's clock then catches up
  (one event per replica).
- ``run_static``: static batching, one event per batch (per step in the reference).
Both continuous-batching drivers make the same scheduling decisions at the same simulated times.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from capsim.sim.serving.replica import Replica
from capsim.sim.serving.static import static_batch
from capsim.specs.engine import SchedulerKind


def _stuck(rep: Replica) -> None:
    if not (rep.prefilling or rep.kv.ids):  # a queue that nothing running will ever drain
        raise RuntimeError(f"replica {rep.idx} cannot admit request {rep.waiting[0]} into an empty engine")


def start(rep: Replica) -> None:
    """Start ``rep``'s SimPy process (once the fleet has said whether requests are pushed to it)."""
    rep.env.process(driver(rep))


def driver(rep: Replica) -> Generator[Any, Any, None]:
    """The process that moves ``rep``'s clock: by policy, and by whether anything reaches it while it runs."""
    if rep.cfg.policy is SchedulerKind.STATIC:
        return run_static(rep)
    if rep.cfg.fast and not rep.pushed:
        return run_ahead(rep)
    return run_events(rep)


def run_events(rep: Replica) -> Generator[Any, Any, None]:
    env, kv = rep.env, rep.kv
    while True:
        rep.clock = env.now
        if rep.incoming:
            rep.absorb()
        if not (rep.waiting or rep.prefilling or kv.ids):
            yield rep.idle_event()
            rep.idle = False
            continue
        step = rep.plan()
        if step is None:
            _stuck(rep)
            continue
        if step[0] != "decode":
            dt, b = rep.begin_step(step[1], step[2])
            yield env.timeout(dt)
            rep.clock = env.now
            after = rep.end_step(step[1], b, dt)
        elif rep.cfg.fast:
            after = yield from interruptible_run(rep)
        else:  # the reference: one decode step, priced on its own
            t0, b = env.now, len(kv.ids)
            rep.timeline += (t0, b, len(rep.prefilling), len(rep.waiting), kv.used)
            grid = kv.grid_scale(rep.table) if rep.table.grid else 1.0
            dur = rep.table.step_s(decode_seqs=b, decode_kv_tokens=float(kv.context_sum() + b), grid=grid)
            yield env.timeout(dur)
            rep.clock = env.now
            after = rep.close_run(t0, 1, b, [(0, 1, dur, 0.0)], dur)
        if after:  # the engine's host work after a step that finished requests
            yield env.timeout(after)


def interruptible_run(rep: Replica) -> Generator[Any, Any, float]:
    """A decode run that a request submitted while it runs can cut at the end of the step in progress; returns
    the host seconds after it (Replica.close_run)."""
    env = rep.env
    t0 = env.now
    k, b, pieces, dur = rep.plan_run(t0)
    if k > 1:
        rep.seg, rep.cut = (t0, pieces, k), k
        wake = rep.wake = env.event()
        env.timeout(dur).callbacks.append(lambda _e, w=wake: w.triggered or w.succeed())
        yield wake
        rep.seg, k = None, rep.cut
        dur = env.now - t0
    else:
        yield env.timeout(dur)
    rep.clock = env.now
    return rep.close_run(t0, k, b, pieces, dur)


def run_ahead(rep: Replica) -> Generator[Any, Any, None]:
    """A replica that nothing but its pre-routed arrivals reaches runs alone to its last step; SimPy's clock then
    catches up with it (one event per replica)."""
    run_alone(rep)
    yield rep.env.timeout(rep.clock - rep.env.now)


def run_alone(rep: Replica) -> None:
    """Advance ``rep`` through its steps and decode runs on its own clock until its last request finishes."""
    kv, incoming, arrival = rep.kv, rep.incoming, rep.req.arrival
    waiting, prefilling, ids = rep.waiting, rep.prefilling, kv.ids
    plan, begin_step, end_step, plan_run, close_run = rep.plan, rep.begin_step, rep.end_step, rep.plan_run, \
        rep.close_run
    n_in = len(incoming)
    rep.clock = rep.env.now
    while True:
        if rep.inext < n_in and arrival[incoming[rep.inext]] <= rep.clock:
            rep.absorb()
        if not (waiting or prefilling or ids):
            if rep.inext >= n_in:
                return  # nothing more will arrive
            rep.clock = arrival[incoming[rep.inext]]
            continue
        step = plan()
        if step is None:
            _stuck(rep)
            continue
        if step[0] != "decode":
            dt, b = begin_step(step[1], step[2])
            rep.clock += dt
            rep.clock += end_step(step[1], b, dt)
        else:
            t0 = rep.clock
            k, b, pieces, dur = plan_run(t0)
            rep.clock = t0 + dur
            rep.clock += close_run(t0, k, b, pieces, dur)


def run_static(rep: Replica) -> Generator[Any, Any, None]:
    """FasterTransformer-style static batching: up to max_seqs waiting requests, padded to the longest prompt
    and output, run to completion before the next batch starts."""
    env = rep.env
    while True:
        rep.clock = env.now
        if rep.incoming:
            rep.absorb()
        if not rep.waiting:
            yield rep.idle_event()
            rep.idle = False
            continue
        yield from static_batch(rep)


__all__ = ["driver", "run_ahead", "run_alone", "run_events", "run_static", "start"]
