"""Static batching (the FasterTransformer-style baseline): a whole batch is prefilled, then decoded until its
longest output is done, padded to its longest prompt and output; the next batch waits for it."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from capsim.analytic.step_table import Piece, envelope, pieces_sum
from capsim.sim.serving.kv import blocks_for
from capsim.sim.serving.replica import Replica


def take_batch(rep: Replica) -> tuple[list[int], int, int]:
    """Up to max_seqs waiting requests in FCFS order whose padded KV cache fits the replica's blocks."""
    req, cfg = rep.req, rep.cfg
    batch: list[int] = []
    maxp = maxo = 0
    while rep.waiting and len(batch) < cfg.max_seqs:
        rid = rep.waiting[0]
        p, o = max(maxp, req.prompt[rid]), max(maxo, req.output[rid])
        if batch and (len(batch) + 1) * blocks_for(p + o, cfg.block_size) > cfg.total_blocks:
            break
        batch.append(rep.waiting.popleft())
        maxp, maxo = p, o
    return batch, maxp, maxo


def static_batch(rep: Replica) -> Generator[Any, Any, None]:
    """Run one static batch on ``rep``."""
    req, env, table = rep.req, rep.env, rep.table
    batch, maxp, maxo = take_batch(rep)
    b = len(batch)
    t0 = env.now
    for rid in batch:
        req.start_s[rid] = t0
    rep.kv.used = b * blocks_for(maxp + maxo, rep.cfg.block_size)
    rep.timeline += (t0, 0, b, len(rep.waiting), rep.kv.used)
    yield env.timeout(table.step_s(b * maxp, b, float(b * maxp * (maxp + 1) // 2), float(b * maxp), logits=b))
    t1 = env.now
    for rid in batch:
        req.first_s[rid] = req.last_emit_s[rid] = t1
        req.gen[rid] = 1
    rep.finish_all([r for r in batch if req.output[r] == 1], t1)
    steps = maxo - 1
    if steps > 0:
        pieces = envelope(table.decode_lines(b, b * maxp), steps)  # every sequence padded to the longest prompt
        rep.timeline += (t1, b, 0, len(rep.waiting), rep.kv.used)
        if rep.cfg.fast:
            yield from _decode_fast(rep, batch, pieces, steps)
        else:
            yield from _decode_steps(rep, batch, maxp, steps)
        rep.gaps += (pieces_sum(pieces, 1), b)  # step 0's gap, since the first token
        rep.rec.run_gaps(pieces, steps, b)
    rep.rec.busy_s += env.now - t0
    rep.kv.used = 0
    rep.rec.spill()


def _finish_at(rep: Replica, rids: list[int]) -> None:
    for rid in rids:
        rep.req.gen[rid] = rep.req.output[rid]
    rep.finish_all(rids, rep.env.now)


def _decode_fast(rep: Replica, batch: list[int], pieces: list[Piece], steps: int) -> Generator[Any, Any, None]:
    """All decode steps as one event; each request finishes at its own step, summed in closed form."""
    env, req = rep.env, rep.req
    by_steps: dict[int, list[int]] = {}
    for rid in batch:
        if req.output[rid] > 1:
            by_steps.setdefault(req.output[rid] - 1, []).append(rid)
    for k, rids in sorted(by_steps.items()):
        if k < steps:
            env.timeout(pieces_sum(pieces, k)).callbacks.append(lambda _e, r=rids: _finish_at(rep, r))
    yield env.timeout(pieces_sum(pieces))
    _finish_at(rep, by_steps.get(steps, []))


def _decode_steps(rep: Replica, batch: list[int], maxp: int, steps: int) -> Generator[Any, Any, None]:
    """Reference: one event per decode step."""
    env, req, table = rep.env, rep.req, rep.table
    b = len(batch)
    for j in range(steps):
        yield env.timeout(table.step_s(decode_seqs=b, decode_kv_tokens=float(b * (maxp + j + 1))))
        _finish_at(rep, [r for r in batch if req.output[r] - 1 == j + 1])


__all__ = ["static_batch", "take_batch"]
