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


def gpipe_order(stage: int, stages: int, micro_batches: int) -> list[Block]:
    """All forwards, then all backwards (Huang et al. 2019, GPipe)."""
    del stage, stages
    return [("F", i, 0) for i in range(micro_batches)] + [("B", i, 0) for i in range(micro_batches)]


def one_f_one_b_order(stage: int, stages: int, micro_batches: int) -> list[Block]:
    """PipeDream-flush: p-s-1 warm-up forwards, then alternate one forward and one backward, then drain
    (Narayanan et al. 2021; Megatron-LM forward_backward_pipelining_without_interleaving)."""
    warmup = min(stages - stage - 1, micro_batches)
    order: list[Block] = [("F", i, 0) for i in range(warmup)]
    for i in range(micro_batches - warmup):
        order += [("F", warmup + i, 0), ("B", i, 0)]
    return order + [("B", i, 0) for i in range(micro_batches - warmup, micro_batches)]


def interleaved_order(stage: int, stages: int, micro_batches: int, chunks: int) -> list[Block]:
    """Interleaved 1F1B with ``chunks`` model chunks per stage, in Megatron-LM's order
    (forward_backward_pipelining_with_interleaving): virtual micro-batch k runs chunk (k mod pv) // p
    (reversed for backwards) of micro-batch (k // pv) p + k mod p; warm-up 2(p-s-1) + (v-1)p forwards."""
    p, v, m = stages, chunks, micro_batches
    total = m * v
    warmup = total if m == p else min(2 * (p - stage - 1) + (v - 1) * p, total)

    def block(kind: str, k: int) -> Block:
        chunk = (k % (p * v)) // p
        return kind, (k // (p * v)) * p + k % p, (chunk if kind == "F" else v - 1 - chunk)

    order = [block("F", k) for k in range(warmup)]
    for k in range(total - warmup):
        order += [block("F", k + warmup), block("B", k)]
    return order + [block("B", k) for k in range(total - warmup, total)]


ORDERS = {Schedule.GPIPE: lambda s, p, m, v: gpipe_order(s, p, m),
          Schedule.ONE_F_ONE_B: lambda s, p, m, v: one_f_one_b_order(s, p, m),
          Schedule.INTERLEAVED: interleaved_order}


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
    p, v = fwd.shape
    reduce = np.broadcast_to(np.asarray(reduce_s, float), (p,)).tolist()
    env = simpy.Environment()
    last, n_virtual = p * v - 1, p * v
    hop = float(p2p_s)
    # Each message (kind, micro-batch, virtual stage) has one sender and one receiver: None = not sent yet, a
    # float = its arrival time, an Event = the receiver is already waiting. Only a waiting receiver costs an event.
    mailbox: list[object] = [None] * (2 * micro_batches * n_virtual)
    latency = 0.0 if blocking_p2p else hop  # a blocking sender has already spent the link time
    rows: list[tuple[int, int, int, str, float, float]] = []
    reduced = np.zeros(p)
    backward_base = micro_batches * n_virtual

    def steps(s: int) -> list[tuple[int, float, float, int, str, int, int]]:
        """Each block of stage s: (input to wait for, compute, compute + blocking send, output, kind, mb, chunk)."""
        out = []
        f_s, b_s = fwd[s].tolist(), bwd[s].tolist()
        for kind, mb, chunk in ORDERS[schedule](s, p, micro_batches, v):
            vs = chunk * p + s  # virtual stage
            if kind == "F":
                base = mb * n_virtual + vs
                wait, dur, target = (base if vs > 0 else -1), f_s[chunk], (base + 1 if vs < last else -1)
            else:
                base = backward_base + mb * n_virtual + vs
                wait, dur, target = (base if vs < last else -1), b_s[chunk], (base - 1 if vs > 0 else -1)
            busy = dur + (hop if target >= 0 and blocking_p2p else 0.0)
            out.append((wait, dur, busy, target, kind, mb, chunk))
        return out

    def post(k: int) -> None:
        waiting = mailbox[k]
        if waiting is None:
            mailbox[k] = env.now + latency
        elif latency == 0.0:
            waiting.succeed()
        else:  # the transfer lands after the link time while the sender goes on
            env.timeout(latency).callbacks.append(lambda _ev: waiting.succeed())

    def stage(s: int, plan: list[tuple[int, float, float, int, str, int, int]]):  # noqa: ANN202 - SimPy process
        for wait, dur, busy, target, kind, mb, chunk in plan:
            if wait >= 0:
                arrival = mailbox[wait]
                if arrival is None:
                    ev = mailbox[wait] = env.event()
                    yield ev
                elif arrival > env.now:
                    yield env.timeout(arrival - env.now)
            start = env.now
            yield env.timeout(busy)
            rows.append((s, mb, chunk, kind, start, start + dur))
            if target >= 0:
                post(target)
        yield env.timeout(reduce[s])
        reduced[s] = env.now

    for s in range(p):
        env.process(stage(s, steps(s)))
    env.run()
    timeline = pd.DataFrame(rows, columns=["stage", "micro_batch", "chunk", "kind", "start_s", "end_s"])
    if len(timeline) != 2 * p * v * micro_batches:
        raise RuntimeError(f"pipeline deadlocked after {len(timeline)} of {2 * p * v * micro_batches} blocks")
    timeline = timeline.sort_values(["stage", "start_s"], kind="stable").reset_index(drop=True)
    timeline["duration_s"] = timeline["end_s"] - timeline["start_s"]
    ideal = micro_batches * float(np.max(fwd.sum(axis=1) + bwd.sum(axis=1)))
    pipeline_end = float(timeline["end_s"].max())
    return PipelineResult(float(reduced.max()) + float(tail_s), pipeline_end, float(reduced.max()), ideal, timeline)


__all__ = ["ORDERS", "PipelineResult", "gpipe_order", "interleaved_order", "one_f_one_b_order",
           "simulate_pipeline"]
