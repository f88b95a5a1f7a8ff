"""One serving replica: its queue, the sequences it prefills and decodes, the steps and decode runs it runs.

The replica keeps its own clock. Its SimPy process (:mod:`capsim.sim.serving.drivers`) moves that clock one step
at a time for prompt steps, and a whole run at a time for decode-only steps: the replica advances until its batch
next changes (a sequence finishes, KV blocks run out, or a waiting request can be admitted at the end of the step
in progress) and sums the run's step times in closed form (:mod:`capsim.analytic.step_table`).

A replica knows nothing of the fleet around it: requests it is done with go to a :class:`Handoff` (the fleet
implements it), and what the metrics need is written to its :class:`~capsim.sim.serving.records.ReplicaRecord`.
Which requests a step computes is its scheduler's (:mod:`capsim.sim.serving.scheduler`: one ``_plan_*`` method per
policy and one entry in :data:`~capsim.sim.serving.scheduler.PLANNERS`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

from capsim.analytic.line_sums import reach
from capsim.analytic.step_table import Piece, StepTable
from capsim.sim.serving.kv import DecodeSet, ReservedDecodeSet
from capsim.sim.serving.prefix import PrefixCache
from capsim.sim.serving.records import BLOCK, ReplicaRecord
from capsim.sim.serving.scheduler import DECODE, PLANNERS, ReplicaConfig, Role, Scheduler, Step
from capsim.sim.serving.state import Requests
from capsim.specs.engine import SchedulerKind


class Handoff(Protocol):
    """Where a replica sends the requests it is done with (the fleet routes them on)."""

    def finished(self, rid: int) -> None:
        """``rid`` emitted its last token (its finish time is already recorded)."""

    def transfer(self, rid: int) -> None:
        """A prefill replica computed ``rid``'s prompt: send its KV cache to a decode replica."""

    def reprefill(self, rid: int) -> None:
        """A decode replica preempted ``rid``: recompute its prompt (and tokens so far) on a prefill replica."""


class Replica(Scheduler):
    """A replica of the engine: a waiting queue, sequences being prefilled, and a decoding set."""

    def __init__(self, idx: int, env: Any, req: Requests, table: StepTable, cfg: ReplicaConfig,
                 handoff: Handoff) -> None:
        self.idx, self.env, self.req, self.table, self.cfg, self.handoff = idx, env, req, table, cfg, handoff
        self.kv = (ReservedDecodeSet if cfg.whole_sequence else DecodeSet)(req, cfg.block_size, cfg.total_blocks)
        if cfg.prefix_caching:
            self.kv.prefix = PrefixCache(cfg.block_size)
        self.waiting: deque[int] = deque()
        self.prefilling: list[int] = []
        self.rec = ReplicaRecord(idx, cfg.role.value)
        # appended to on every step
        self.timeline, self.gaps, self.runs = self.rec.timeline.items, self.rec.gaps.items, self.rec.runs.items
        self.wake: Any = None
        self.idle = False
        self.seg: tuple[float, list[Piece], int] | None = None  # (start, pieces, steps) of an interruptible run
        self.cut = 0
        self.fresh: list[int] = []  # joined the decoding set since the last decode step
        self.last_decode_end = math.nan
        # Step token counts and logit row counts this replica has run (first calls of new GEMM shapes are priced
        # once, where the calibration measured them: StepTable.first_call_s)
        self.seen_tokens: set[int] = set()
        self.seen_rows: set[int] = set()
        # Arrivals routed ahead of time (routers that ignore state): absorbed into the queue when the replica
        # looks at it, and a decode run is cut where the first of them can start (no event per arrival).
        self.incoming: list[int] = []
        self.inext = 0
        self.pushed = True  # whether requests may also be submitted while it runs (then runs are interruptible)
        self.clock = 0.0  # the replica's time: SimPy's, or ahead of it while the replica runs on its own
        # Exposed host seconds after a step in which requests finished (the server's call that tells the engine;
        # engines.yaml server_calls): the drivers advance the clock by what close_run / end_step return.
        self.finish_s = table.finish_s
        # The policy and role as booleans: read on every step, where an Enum attribute lookup costs more.
        self.sarathi = cfg.policy is SchedulerKind.SARATHI
        self.decode_only = cfg.role is Role.DECODE
        self.prefill_only = cfg.role is Role.PREFILL
        planner = PLANNERS.get(Role.DECODE if self.decode_only else cfg.policy)  # static batches: drivers
        self.plan = getattr(self, planner) if planner else None

    def close(self) -> None:
        """At the end of the run: the prefix cache's counts go to the record."""
        if self.kv.prefix is not None:
            self.rec.prefix_hit_tokens = self.kv.prefix.hit_tokens
            self.rec.prefix_lookup_tokens = self.kv.prefix.looked_up_tokens

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.kv.ids)

    # --- arrivals ----------------------------------------------------------------------------------
    def submit(self, rid: int, front: bool = False) -> None:
        if front:
            self.waiting.appendleft(rid)
        else:
            self.waiting.append(rid)
        if self.idle:
            if not self.wake.triggered:
                self.wake.succeed()
        elif self.seg is not None and (front or len(self.waiting) == 1):
            self._maybe_cut()

    def _maybe_cut(self) -> None:
        """Cut the decode run at the end of the step in progress if the new head of the queue can start then."""
        t0, pieces, k = self.seg
        cut = self._cut_at(pieces, k, self.env.now - t0, self.waiting[0])
        if cut is not None and cut[0] < self.cut:
            self.cut = cut[0]  # wake the replica at the end of step m, not now: one resume instead of two
            wake = self.wake
            self.env.timeout(t0 + cut[1] - self.env.now).callbacks.append(lambda _e: wake.triggered or wake.succeed())

    def _cut_at(self, pieces: list[Piece], k: int, elapsed: float, rid: int) -> tuple[int, float] | None:
        """The step m after which a run must stop so that ``rid``, the head of the queue ``elapsed`` into the run,
        starts at the end of the step in progress, with the seconds of those m steps; None when it cannot start
        before the run ends (blocks only get scarcer during a run: nothing finishes before its end)."""
        m, seconds = reach(pieces, elapsed)
        if m >= k or not self._has_seat():
            return None
        kv, wm = self.kv, self.cfg.watermark_blocks
        # In m + 1 consecutive steps a sequence takes at most m // bs + 1 blocks: when the request's most blocks
        # fit beside that many per decoding sequence, it is admitted without counting them exactly.
        if kv.most(rid) <= kv.total - kv.used - len(kv.ids) * (m // kv.bs + 1) - wm:
            return m, seconds
        free = kv.total - kv.used - kv.cum_demand(m)
        if self.sarathi:
            free -= kv.demand(m)  # a Sarathi step allocates its decodes' blocks before it admits
        return (m, seconds) if kv.need(rid, ahead=True) <= free - wm else None

    def absorb(self) -> None:
        """Move the pre-routed requests that have arrived by the replica's clock into the queue."""
        inc, i, now, arrival = self.incoming, self.inext, self.clock, self.req.arrival
        while i < len(inc) and arrival[inc[i]] <= now:
            self.waiting.append(inc[i])
            i += 1
        self.inext = i

    # --- the engine loop ---------------------------------------------------------------------------
    def idle_event(self) -> Any:
        """An event that fires when work arrives: a pushed request, or the next pre-routed arrival."""
        self.idle, self.wake = True, self.env.event()
        if self.inext < len(self.incoming):
            wake = self.wake
            self.env.timeout(self.req.arrival[self.incoming[self.inext]] - self.env.now).callbacks.append(
                lambda _e: wake.triggered or wake.succeed())
        return self.wake

    def plan_run(self, t0: float) -> tuple[int, int, list[Piece], float]:
        """(steps, sequences, step-time pieces, seconds) of the decode run starting at t0: to the next change
        of the batch on its own (kv.run_length), or the first step after which the head of the queue (or, with
        none, the next pre-routed arrival) can start, as the one-step-at-a-time reference would admit it."""
        kv, waiting, table = self.kv, self.waiting, self.table
        b, k = len(kv.ids), kv.run_length()
        self.timeline += (t0, b, len(self.prefilling), len(waiting), kv.used)
        grid = kv.grid_scale(table) if table.grid else 1.0
        pieces, dur = table.decode_run(b, kv.sum_off + b * kv.steps, k, grid)  # context_sum() inline
        if k > 1:
            if waiting:  # e.g. blocks a preemption just freed let it start after the next step
                cut = self._cut_at(pieces, k, 0.0, waiting[0])
            elif self.inext < len(self.incoming):
                rid = self.incoming[self.inext]
                arrival = self.req.arrival[rid]
                if arrival >= t0 + dur:
                    return k, b, pieces, dur
                cut = self._cut_at(pieces, k, arrival - t0, rid)
            else:
                return k, b, pieces, dur
            if cut is not None:
                return cut[0], b, pieces, cut[1]
        return k, b, pieces, dur

    def close_run(self, t0: float, k: int, b: int, pieces: list[Piece], dur: float) -> float:
        """Book a decode run of k steps of b sequences that started at t0: inter-token gaps, busy time, finishes,
        blocks. Returns the host seconds the engine spends after the run before its next step (finish_s when a
        request finished, else 0)."""
        rec = self.rec
        if len(pieces) == 1:  # rec.run_gaps for the common one-piece run, without the call
            if k > 1:
                self.runs += (pieces[0][2], pieces[0][3], 1, k, b)
        else:
            rec.run_gaps(pieces, k, b)
        rec.busy_s += dur
        self._decode_emitted(t0 + pieces[0][2], b)  # step 0 takes the first piece's a (+ b x 0)
        end = t0 + dur
        done = self.kv.advance(k)
        self.last_decode_end = end
        if done:
            self.finish_all(done, end)
            return self._after_finish()
        return 0.0

    # --- steps -------------------------------------------------------------------------------------
    def begin_step(self, chunks: list[tuple[int, int]], with_decode: bool) -> tuple[float, int]:
        """Start a step computing prompt chunks (and, under Sarathi, one token of every decoding sequence):
        (its seconds, the decoding sequences in it)."""
        kv, done, todo = self.kv, self.req.done, self.req.todo
        tokens = real = pairs = kv_read = completing = admitted = 0
        # Padded whole-prompt batches run every prompt at the batch's longest (vLLM 0.2.3 model_runner.py
        # _prepare_prompt L94-106, _make_tensor_with_pad; attention.py: xformers BlockDiagonalCausalMask over
        # [seq_len] * batch_size): GEMMs and causal attention over the padded rows.
        pad = max(q for _, q in chunks) if not with_decode and chunks and self.cfg.max_paddings >= 0 else 0
        for rid, q in chunks:
            c = done[rid]
            completing += c + q == todo[rid]
            admitted += c == 0  # its first chunk: the server handed it to the engine before this step
            real += q
            q = q if q >= pad else pad  # max(q, pad) without a call
            tokens += q
            pairs += q * c + q * (q + 1) // 2
            kv_read += c + q
        b = len(kv.ids) if with_decode else 0
        dkv = kv.context_sum() + b if b else 0
        dt = self.table.step_s(tokens, len(chunks), float(pairs), float(kv_read), b, float(dkv), b + completing,
                               admitted, prompt_tokens=real)
        if self.table.first_calls:  # shapes this replica's kernels have not run yet (StepTable.first_call_s)
            dt += self.table.first_call_s(tokens + b, b + completing, self.seen_tokens, self.seen_rows)
        if b:
            kv.used += kv.demand(0)
        self.timeline += (self.clock, len(kv.ids), len(self.prefilling), len(self.waiting), kv.used)
        if self.prefill_only and len(self.timeline) > BLOCK:  # a prefill replica joins no request
            self.rec.spill()
        return dt, b

    def end_step(self, chunks: list[tuple[int, int]], b: int, dt: float) -> float:
        """Book a step that ends at the replica's clock: decode tokens, finishes, completed prompts. Returns the
        host seconds the engine spends after it before its next step (as close_run)."""
        self.rec.busy_s += dt
        ended = False
        if b:
            self._decode_emitted(self.clock, b)
            finished = self.kv.advance(1, False)
            if finished:
                self.finish_all(finished, self.clock)
                ended = True
            self.last_decode_end = self.clock
        done, todo = self.req.done, self.req.todo
        for rid, q in chunks:
            done[rid] += q
            if done[rid] == todo[rid]:
                self.prefilling.remove(rid)
                ended = self._prompt_done(rid) or ended
        return self._after_finish() if ended else 0.0

    def _after_finish(self) -> float:
        """The engine's host seconds after a step that finished requests (booked busy), or 0."""
        self.rec.busy_s += self.finish_s
        return self.finish_s

    def _prompt_done(self, rid: int) -> bool:
        """A prompt is in the cache: its next token is emitted; it decodes here, moves, or is finished (True)."""
        req, now = self.req, self.clock
        req.gen[rid] += 1
        req.last_emit_s[rid] = now
        if req.first_s[rid] != req.first_s[rid]:
            req.first_s[rid] = now
        if req.held[rid]:
            self.kv.cache_prompt(rid)
        if req.gen[rid] >= req.output[rid] or self.prefill_only:
            self.kv.release(rid, req.todo[rid])
            if req.gen[rid] >= req.output[rid]:
                self.finish_all([rid], now)
                return True
            self.handoff.transfer(rid)
            return False
        self._join(rid)
        return False

    def _join(self, rid: int) -> None:
        self.kv.join(rid)
        self.fresh.append(rid)
        if len(self.timeline) > BLOCK:  # once per request here (and per prompt step): columns grow by a few values
            self.rec.spill()  # per request at most

    def finish_all(self, rids: list[int], now: float) -> None:
        req = self.req
        for rid in rids:
            req.finish_s[rid] = now
            self.handoff.finished(rid)

    def _decode_emitted(self, end: float, b: int) -> None:
        """Inter-token gaps of a decode step ending at ``end``: since each fresh sequence's last token, and
        since the previous decode step for the others."""
        gaps = self.gaps
        if not self.fresh:  # every sequence decoded in the previous decode step too
            gaps += (end - self.last_decode_end, b)
            return
        ids, last, n = self.kv.ids, self.req.last_emit_s, 0
        for rid in self.fresh:
            if rid in ids:  # still decoding
                gaps += (end - last[rid], 1)
                n += 1
        if b > n:
            gaps += (end - self.last_decode_end, b - n)
        self.fresh.clear()


__all__ = ["DECODE", "PLANNERS", "Handoff", "Replica", "ReplicaConfig", "Role", "Step"]
