"""A discrete-event model of one pipeline-parallel training step (SimPy).

Each stage is a process that runs its micro-batch order for GPipe, 1F1B or interleaved 1F1B (Megatron-LM's
schedules.py order). A forward waits for its input activation and a backward for its output gradient. A send takes
the link time, and with blocking p2p the sender waits for it too (Megatron-LM 2021-22's batched isend/irecv). When
its last backward is done, a stage reduces its gradients over data parallelism; the step ends when every stage has
reduced, and then the optimizer and anything else after the flush runs. The result is the step time and a timeline
with one row per F/B block, ready for a plotly Gantt chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy

from capsim.errors import SpecError, require
from capsim.specs.plans import Schedule

Block = tuple[str, int, int]  # (kind "F"/"B", micro-batch, model chunk)


def _merge(forward: np.ndarray, backward: np.ndarray, warmup: int) -> np.ndarray:
    """Warm-up forwards, then one forward and one backward alternately, then the remaining backwards.
    ``forward``/``backward`` are (n, 2) arrays of (micro-batch, chunk); the result is (2n, 3) with kind 0=F, 1=B."""
    n = len(forward)
    out = np.empty((2 * n, 3), np.int64)
    f = np.column_stack([np.zeros(n, np.int64), forward])
    b = np.column_stack([np.ones(n, np.int64), backward])
    steady = n - warmup
    out[:warmup] = f[:warmup]
    out[warmup:warmup + 2 * steady:2] = f[warmup:]
    out[warmup + 1:warmup + 2 * steady:2] = b[:steady]
    out[warmup + 2 * steady:] = b[steady:]
    return out


def order_array(schedule: Schedule | str, stage: int, stages: int, micro_batches: int, chunks: int = 1
                ) -> np.ndarray:
    """A stage's blocks in execution order as an (2 m v, 3) array of (kind 0=F/1=B, micro-batch, chunk).

    GPipe: all forwards, then all backwards (Huang et al. 2019). 1F1B (PipeDream-flush, Narayanan et al. 2021):
    p-s-1 warm-up forwards, then alternate. Interleaved 1F1B in Megatron-LM's order
    (schedules.py, forward_backward_pipelining_with_interleaving): virtual micro-batch k runs chunk (k mod pv) // p
    (reversed for backwards) of micro-batch (k // pv) p + k mod p, after 2(p-s-1) + (v-1)p warm-up forwards
    (all of them when m = p)."""
    p, v, m = stages, chunks, micro_batches
    schedule = Schedule(schedule)
    if schedule is not Schedule.INTERLEAVED:
        mbs = np.column_stack([np.arange(m), np.zeros(m, np.int64)])
        warmup = m if schedule is Schedule.GPIPE else min(p - stage - 1, m)
        return _merge(mbs, mbs, warmup)
    total = m * v
    k = np.arange(total)
    chunk = (k % (p * v)) // p
    mb = (k // (p * v)) * p + k % p
    warmup = total if m == p else min(2 * (p - stage - 1) + (v - 1) * p, total)
    return _merge(np.column_stack([mb, chunk]), np.column_stack([mb, v - 1 - chunk]), warmup)


def _as_blocks(order: np.ndarray) -> list[Block]:
    return [("FB"[kind], mb, chunk) for kind, mb, chunk in order.tolist()]


def gpipe_order(stage: int, stages: int, micro_batches: int) -> list[Block]:
    """All forwards, then all backwards (Huang et al. 2019, GPipe)."""
    return _as_blocks(order_array(Schedule.GPIPE, stage, stages, micro_batches))


def one_f_one_b_order(stage: int, stages: int, micro_batches: int) -> list[Block]:
    """PipeDream-flush: p-s-1 warm-up forwards, then alternate one forward and one backward, then drain."""
    return _as_blocks(order_array(Schedule.ONE_F_ONE_B, stage, stages, micro_batches))


def interleaved_order(stage: int, stages: int, micro_batches: int, chunks: int) -> list[Block]:
    """Interleaved 1F1B with ``chunks`` model chunks per stage, in Megatron-LM's order."""
    return _as_blocks(order_array(Schedule.INTERLEAVED, stage, stages, micro_batches, chunks))


@dataclass(frozen=True)
class PipelineResult:
    """One simulated step."""

    step_s: float  # until the optimizer and everything after the flush is done
    pipeline_s: float  # until the last backward of any stage
    reduced_s: float  # until every stage has finished its gradient reduction
    ideal_s: float  # m x the busiest stage's compute per micro-batch (no fill, drain or waiting)
    timeline: pd.DataFrame  # stage, micro_batch, chunk, kind, start_s, end_s, duration_s

    @property
    def bubble_s(self) -> float:
        return self.pipeline_s - self.ideal_s

    @property
    def bubble_fraction(self) -> float:
        """Bubble over the ideal time; (p-1)/(v m) for uniform stages and free sends."""
        return self.bubble_s / self.ideal_s

    def to_dict(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "pipeline_s": self.pipeline_s, "reduced_s": self.reduced_s,
                "ideal_s": self.ideal_s, "bubble_s": self.bubble_s, "bubble_fraction": self.bubble_fraction,
                "blocks": len(self.timeline)}


def _check(forward_s: np.ndarray, backward_s: np.ndarray, micro_batches: int, schedule: Schedule) -> None:
    require(forward_s.ndim == 2 and forward_s.shape == backward_s.shape, "forward_s",
            f"forward {forward_s.shape} and backward {backward_s.shape} must both be (stages, chunks)")
    require(bool(np.all(forward_s >= 0) and np.all(backward_s >= 0)), "forward_s", "times must be >= 0")
    require(isinstance(micro_batches, int) and micro_batches > 0, "micro_batches",
            f"must be a positive integer, got {micro_batches!r}")
    p, v = forward_s.shape
    if schedule is Schedule.INTERLEAVED:
        require(p > 1 and v > 1, "schedule", "interleaving needs several stages and chunks per stage")
        require(micro_batches % p == 0, "micro_batches", f"{micro_batches} is not a multiple of {p} stages",
                "use a multiple of the stage count")
    else:
        require(v == 1, "schedule", f"{schedule.value} runs one chunk per stage, got {v}", "use 'interleaved'")


def simulate_pipeline(forward_s: np.ndarray, backward_s: np.ndarray, micro_batches: int,
                      schedule: Schedule | str = Schedule.ONE_F_ONE_B, p2p_s: float = 0.0,
                      blocking_p2p: bool = True, reduce_s: np.ndarray | float = 0.0, tail_s: float = 0.0
                      ) -> PipelineResult:
    """Run one step. ``forward_s``/``backward_s`` are (stages, chunks) seconds of one micro-batch per model chunk
    (backward including recomputation); ``p2p_s`` one hop's transfer; ``reduce_s`` each stage's gradient
    reduction after its last backward; ``tail_s`` what follows the last reduction (optimizer, parameter gather)."""
    try:
        schedule = Schedule(schedule)
    except ValueError:
        raise SpecError("schedule", f"unknown schedule {schedule!r}", "use gpipe, 1f1b or interleaved") from None
    fwd, bwd = np.asarray(forward_s, float), np.asarray(backward_s, float)
    _check(fwd, bwd, micro_batches, schedule)
    sim = _Pipeline(fwd, bwd, micro_batches, schedule, float(p2p_s), blocking_p2p, reduce_s)
    sim.env.run()
    timeline = _timeline(sim.orders, sim.starts, fwd, bwd)
    ideal = micro_batches * float(np.max(fwd.sum(axis=1) + bwd.sum(axis=1)))
    reduced = float(sim.reduced.max())
    return PipelineResult(reduced + float(tail_s), float(timeline["end_s"].max()), reduced, ideal, timeline)


class _Pipeline:
    """The stages of one step as SimPy processes exchanging activations and gradients.

    Each message (kind, micro-batch, virtual stage) has one sender and one receiver. Its mailbox slot holds None
    (not sent), its arrival time, or the Event of a receiver already waiting; only a waiting receiver costs an
    event, so a steady pipeline runs on one timeout per block."""

    def __init__(self, fwd: np.ndarray, bwd: np.ndarray, micro_batches: int, schedule: Schedule, hop: float,
                 blocking: bool, reduce_s: np.ndarray | float) -> None:
        p, v = fwd.shape
        self.env = simpy.Environment()
        self.fwd, self.bwd, self.m, self.p, self.v = fwd, bwd, micro_batches, p, v
        self.hop = hop
        self.latency = 0.0 if blocking else hop  # a blocking sender has already spent the link time
        self.mailbox: list[object] = [None] * (2 * micro_batches * p * v)
        self.orders = [order_array(schedule, s, p, micro_batches, v) for s in range(p)]
        self.starts: list[list[float]] = [[] for _ in range(p)]
        self.reduced = np.zeros(p)
        reduce = np.broadcast_to(np.asarray(reduce_s, float), (p,)).tolist()
        for s in range(p):
            self.env.process(self.stage(s, self.steps(s), reduce[s]))

    def steps(self, s: int) -> zip:
        """Stage s's blocks as (input to wait for, compute + blocking send, output to post); -1 = none."""
        p, n_virtual = self.p, self.p * self.v
        kind, mb, chunk = self.orders[s].T
        vs = chunk * p + s  # virtual stage
        backward, last = kind == 1, n_virtual - 1
        base = (kind * self.m + mb) * n_virtual + vs
        wait = np.where(backward, np.where(vs < last, base, -1), np.where(vs > 0, base, -1))
        target = np.where(backward, np.where(vs > 0, base - 1, -1), np.where(vs < last, base + 1, -1))
        busy = np.where(backward, self.bwd[s, chunk], self.fwd[s, chunk])
        busy = busy + np.where(target >= 0, self.hop - self.latency, 0.0)
        return zip(wait.tolist(), busy.tolist(), target.tolist(), strict=True)

    def post(self, k: int) -> None:
        waiting = self.mailbox[k]
        if waiting is None:
            self.mailbox[k] = self.env.now + self.latency
        elif self.latency == 0.0:
            waiting.succeed()
        else:  # the transfer lands after the link time while the sender goes on
            self.env.timeout(self.latency).callbacks.append(lambda _ev: waiting.succeed())

    def stage(self, s: int, plan: zip, reduce_s: float):  # noqa: ANN201 - a SimPy process
        env, mailbox, record = self.env, self.mailbox, self.starts[s].append
        for wait, busy, target in plan:
            if wait >= 0:
                arrival = mailbox[wait]
                if arrival is None:
                    ev = mailbox[wait] = env.event()
                    yield ev
                elif arrival > env.now:
                    yield env.timeout(arrival - env.now)
            record(env.now)
            yield env.timeout(busy)
            if target >= 0:
                self.post(target)
        yield env.timeout(reduce_s)
        self.reduced[s] = env.now


def _timeline(orders: list[np.ndarray], starts: list[list[float]], fwd: np.ndarray, bwd: np.ndarray
              ) -> pd.DataFrame:
    """One row per F/B block: stage, micro-batch, chunk, kind, start, end (the compute; a blocking send follows)."""
    done = sum(len(x) for x in starts)
    expected = sum(len(o) for o in orders)
    if done != expected:
        raise RuntimeError(f"pipeline deadlocked after {done} of {expected} blocks")
    stage = np.concatenate([np.full(len(o), s) for s, o in enumerate(orders)])
    kind, mb, chunk = np.concatenate(orders).T
    start = np.concatenate([np.asarray(x, float) for x in starts])
    duration = np.where(kind == 1, bwd[stage, chunk], fwd[stage, chunk])
    return pd.DataFrame({"stage": stage, "micro_batch": mb, "chunk": chunk,
                         "kind": pd.Categorical.from_codes(kind, ["F", "B"]), "start_s": start,
                         "end_s": start + duration, "duration_s": duration})


__all__ = ["PipelineResult", "gpipe_order", "interleaved_order", "one_f_one_b_order", "order_array",
           "simulate_pipeline"]
