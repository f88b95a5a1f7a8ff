"""One serving replica: its queue, the sequences it prefills and decodes, and its scheduling policy.

The replica keeps its own clock. Its SimPy process (:mod:`capsim.sim.serving.drivers`) moves that clock one step
at a time for prompt steps, and a whole run at a time for decode-only steps: the replica advances until its batch
next changes (a sequence finishes, KV blocks run out, or a waiting request can be admitted at the end of the step
in progress) and sums the run's step times in closed form (:mod:`capsim.analytic.step_table`).

A replica knows nothing of the fleet around it: requests it is done with go to a :class:`Handoff` (the fleet
implements it), and what the metrics need is written to its :class:`~capsim.sim.serving.records.ReplicaRecord`.
A scheduling policy is one ``_plan_*`` method and one entry in :data:`PLANNERS`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from capsim.analytic.step_table import Piece, StepTable, pieces_sum, steps_to_reach
from capsim.sim.serving.kv import DecodeSet, ReservedDecodeSet
from capsim.sim.serving.prefix import PrefixCache
from capsim.sim.serving.records import BLOCK, ReplicaRecord
from capsim.sim.serving.state import Requests
from capsim.specs.engine import SchedulerKind

Step = tuple[str, list[tuple[int, int]], bool]  # ("prefill", [(request, tokens)], with decodes) or DECODE
DECODE: Step = ("decode", [], True)  # plan(): a decode-only step or run


class Role(StrEnum):
    BOTH = "both"  # prefill and decode on the same replica
    PREFILL = "prefill"  # disaggregated: computes prompts, hands the KV cache to a decode replica
    DECODE = "decode"  # disaggregated: receives prompts' KV caches and decodes


class Handoff(Protocol):
    """Where a replica sends the requests it is done with (the fleet routes them on)."""

    def finished(self, rid: int) -> None:
        """``rid`` emitted its last token (its finish time is already recorded)."""

    def transfer(self, rid: int) -> None:
        """A prefill replica computed ``rid``'s prompt: send its KV cache to a decode replica."""

    def reprefill(self, rid: int) -> None:
        """A decode replica preempted ``rid``: recompute its prompt (and tokens so far) on a prefill replica."""


@dataclass(frozen=True)
class ReplicaConfig:
    policy: SchedulerKind
    max_seqs: int  # vLLM max_num_seqs
    budget: int  # tokens per step (vLLM max_num_batched_tokens; Sarathi's chunk budget)
    block_size: int
    total_blocks: int
    watermark_blocks: int
    fast: bool = True
    role: Role = Role.BOTH
    prefix_caching: bool = False  # the engine release reuses cached prefix blocks (capsim.sim.serving.prefix)
    max_paddings: int = -1  # >= 0: whole-prompt batches padded to their longest prompt (EngineProfile.max_paddings)
    whole_sequence: bool = False  # admission reserves prompt + output blocks, never preempts (kv.ReservedDecodeSet)


class Replica:
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
        self.timeline, self.gaps = self.rec.timeline.items, self.rec.gaps.items  # appended to on every step
        self.wake: Any = None
        self.idle = False
        self.seg: tuple[float, list[Piece], int] | None = None  # (start, pieces, steps) of an interruptible run
        self.cut = 0
        self.fresh: list[int] = []  # joined the decoding set since the last decode step
        self.last_decode_end = math.nan
        # Arrivals routed ahead of time (routers that ignore state): absorbed into the queue when the replica
        # looks at it, and a decode run is cut where the first of them can start (no event per arrival).
        self.incoming: list[int] = []
        self.inext = 0
        self.pushed = True  # whether requests may also be submitted while it runs (then runs are interruptible)
        self.clock = 0.0  # the replica's time: SimPy's, or ahead of it while the replica runs on its own
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
        m = self._cut_at(pieces, k, self.env.now - t0, self.waiting[0])
        if m < self.cut:
            self.cut = m  # wake the replica at the end of step m, not now: one resume instead of two
            wake = self.wake
            self.env.timeout(t0 + pieces_sum(pieces, m) - self.env.now).callbacks.append(
                lambda _e: wake.triggered or wake.succeed())

    def _cut_at(self, pieces: list[Piece], k: int, elapsed: float, rid: int) -> int:
        """The step after which a run must stop so that ``rid``, the head of the queue ``elapsed`` into the run,
        starts at the end of the step in progress; ``k`` when it cannot start before the run ends (blocks only
        get scarcer during a run: nothing finishes before its end)."""
        m = steps_to_reach(pieces, elapsed)
        if m >= k:
            return k
        kv = self.kv
        free = kv.total - kv.used - kv.cum_demand(m)
        if self.sarathi:
            free -= kv.demand(m)  # a Sarathi step allocates its decodes' blocks before it admits
        return m if self._admissible(free, rid, ahead=True) else k

    def absorb(self) -> None:
        """Move the pre-routed requests that have arrived by the replica's clock into the queue."""
        inc, i, now, arrival = self.incoming, self.inext, self.clock, self.req.arrival
        while i < len(inc) and arrival[inc[i]] <= now:
            self.waiting.append(inc[i])
            i += 1
        self.inext = i

    def _admissible(self, free: int, rid: int | None = None, ahead: bool = False) -> bool:
        """Whether the head of the queue (or ``rid`` as its head) can be admitted with ``free`` blocks (vLLM V0
        can_allocate); ``ahead``: at a later step of a run (a lower bound on the blocks it needs, DecodeSet.need)."""
        cfg, kv = self.cfg, self.kv
        n = len(kv.ids)
        if n + len(self.prefilling) >= cfg.max_seqs:
            return False
        if self.sarathi and not self.decode_only and n >= cfg.budget:
            return False
        return kv.need(self.waiting[0] if rid is None else rid, ahead) <= free - cfg.watermark_blocks

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
        kv, waiting = self.kv, self.waiting
        b, k = len(kv.ids), kv.run_length()
        self.timeline += (t0, b, len(self.prefilling), len(waiting), kv.used)
        pieces, dur = self.table.decode_run(b, kv.context_sum(), k)
        if k > 1:
            m = k
            if waiting:  # e.g. blocks a preemption just freed let it start after the next step
                m = self._cut_at(pieces, k, 0.0, waiting[0])
            elif self.inext < len(self.incoming):
                rid = self.incoming[self.inext]
                arrival = self.req.arrival[rid]
                if arrival < t0 + dur:
                    m = self._cut_at(pieces, k, arrival - t0, rid)
            if m < k:
                return m, b, pieces, pieces_sum(pieces, m)
        return k, b, pieces, dur

    def close_run(self, t0: float, k: int, b: int, pieces: list[Piece], dur: float) -> None:
        """Book a decode run of k steps of b sequences that started at t0: inter-token gaps, busy time, finishes,
        blocks."""
        rec = self.rec
        rec.run_gaps(pieces, k, b)
        rec.busy_s += dur
        self._decode_emitted(t0 + pieces[0][2], b)  # step 0 takes the first piece's a (+ b x 0)
        end = t0 + dur
        done = self.kv.advance(k)
        if done:
            self.finish_all(done, end)
        self.last_decode_end = end

    # --- scheduling policies: the next step, ("prefill", chunks, with decodes) or DECODE; None to look again
    def _plan_prefill_first(self) -> Step | None:
        """vLLM V0 / SGLang: a step prefills whole prompts while any can be admitted, else decodes."""
        kv = self.kv
        if self.prefilling or (self.waiting and self._admissible(kv.free)):
            return "prefill", self._chunks(self.cfg.budget, kv.free, True), False
        if not kv.ids:
            return None
        self._preempt_if_short()
        return DECODE if kv.ids else None

    def _plan_sarathi(self) -> Step | None:
        """Sarathi-Serve / vLLM V1: every decode plus prompt chunks up to the token budget in one step."""
        kv = self.kv
        b = len(kv.ids)
        need = kv.demand(0) if b else 0  # the decodes' new blocks
        if need > kv.total - kv.used:
            self._preempt_if_short()
            b = len(kv.ids)
            need = kv.demand(0) if b else 0
        if self.prefilling or self.waiting:
            chunks = self._chunks(self.cfg.budget - b, kv.total - kv.used - need, False)
            if chunks:
                return "prefill", chunks, b > 0
        return DECODE if b else None

    def _plan_decode_only(self) -> Step | None:
        """A disaggregated decode replica: admit transferred KV caches, preempt if short, decode."""
        kv = self.kv
        while self.waiting and self._admissible(kv.free):
            rid = self.waiting.popleft()
            kv.used += kv.transferred(rid)
            self._join(rid)
        if not kv.ids:
            return None
        self._preempt_if_short()
        return DECODE if kv.ids else None

    def _chunks(self, budget: int, free: int, whole: bool) -> list[tuple[int, int]]:
        """Prompt chunks of one step: sequences already being prefilled first, then admissions in FCFS order
        (``whole``: whole prompts only, unless a prompt longer than the budget starts alone)."""
        req, kv, waiting, prefilling = self.req, self.kv, self.waiting, self.prefilling
        todo, done = req.todo, req.done
        chunks: list[tuple[int, int]] = []
        for rid in prefilling:
            if budget <= 0:
                break
            q = min(todo[rid] - done[rid], budget)
            chunks.append((rid, q))
            budget -= q
        if not waiting:
            return chunks
        if whole and self.cfg.max_paddings >= 0:
            return self._padded_admissions(chunks, free)
        cfg = self.cfg
        seats = cfg.max_seqs - len(kv.ids) - len(prefilling)
        room = free - cfg.watermark_blocks  # blocks admissions may take
        while waiting and budget > 0 and seats > 0:
            rid = waiting[0]
            need = kv.need(rid)
            if need > room or (whole and todo[rid] > budget and chunks):
                break
            room -= need
            seats -= 1
            q = min(self._admit(rid, need), budget)
            chunks.append((rid, q))
            budget -= q
        return chunks

    def _admit(self, rid: int, need: int) -> int:
        """Take the head of the queue into prefill with its ``need`` KV blocks; the prompt tokens it has left (with
        prefix caching, req.done starts past the cached prefix)."""
        self.waiting.popleft()
        self.kv.admit(rid, need)
        self.prefilling.append(rid)
        start = self.req.start_s
        if start[rid] != start[rid]:  # NaN: first time scheduled
            start[rid] = self.clock
        return self.req.todo[rid] - self.req.done[rid]

    def _padded_admissions(self, chunks: list[tuple[int, int]], free: int) -> list[tuple[int, int]]:
        """Whole prompts in FCFS order while the batch padded to its longest prompt stays within the token budget
        and its padding within max_paddings (vLLM 0.2.3 vllm/core/scheduler.py Scheduler._schedule L170-186: a
        candidate stops admission when len(seqs) * max(lens) > max_num_batched_tokens or the paddings exceed
        max_paddings)."""
        req, kv, waiting, cfg = self.req, self.kv, self.waiting, self.cfg
        todo, done = req.todo, req.done
        n, longest, real = len(chunks), max((q for _, q in chunks), default=0), sum(q for _, q in chunks)
        seats = cfg.max_seqs - len(kv.ids) - len(self.prefilling)
        room = free - cfg.watermark_blocks
        while waiting and seats > 0:
            rid = waiting[0]
            need = kv.need(rid)
            q = todo[rid] - done[rid]
            padded = (n + 1) * max(longest, q)
            # the first prompt starts alone even past the budget, as in _chunks
            if need > room or (n and (padded > cfg.budget or padded - real - q > cfg.max_paddings)):
                break
            room -= need
            seats -= 1
            q = self._admit(rid, need)
            chunks.append((rid, q))
            n, longest, real = n + 1, max(longest, q), real + q
        return chunks

    def _preempt_if_short(self) -> None:
        """Preempt by recompute, latest arrival first, until the next decode step's new blocks fit (vLLM)."""
        kv, req = self.kv, self.req
        while len(kv.ids) and kv.demand(0) > kv.free:
            rid = kv.victim()
            kv.leave(rid)
            req.todo[rid] = req.prompt[rid] + req.gen[rid]
            req.done[rid] = 0
            req.preemptions[rid] += 1
            self.rec.preemptions += 1
            if rid in self.fresh:
                self.fresh.remove(rid)
            if self.decode_only:
                self.handoff.reprefill(rid)
            else:
                self.waiting.appendleft(rid)

    # --- steps -------------------------------------------------------------------------------------
    def begin_step(self, chunks: list[tuple[int, int]], with_decode: bool) -> tuple[float, int]:
        """Start a step computing prompt chunks (and, under Sarathi, one token of every decoding sequence):
        (its seconds, the decoding sequences in it)."""
        kv, done, todo = self.kv, self.req.done, self.req.todo
        tokens = pairs = kv_read = completing = 0
        # Padded whole-prompt batches run every prompt at the batch's longest (vLLM 0.2.3 model_runner.py
        # _prepare_prompt L94-106, _make_tensor_with_pad; attention.py: xformers BlockDiagonalCausalMask over
        # [seq_len] * batch_size): GEMMs and causal attention over the padded rows.
        pad = max(q for _, q in chunks) if not with_decode and chunks and self.cfg.max_paddings >= 0 else 0
        for rid, q in chunks:
            c = done[rid]
            completing += c + q == todo[rid]
            q = q if q >= pad else pad  # max(q, pad) without a call
            tokens += q
            pairs += q * c + q * (q + 1) // 2
            kv_read += c + q
        b = len(kv.ids) if with_decode else 0
        dkv = kv.context_sum() + b if b else 0
        dt = self.table.step_s(tokens, len(chunks), float(pairs), float(kv_read), b, float(dkv), b + completing)
        if b:
            kv.used += kv.demand(0)
        self.timeline += (self.clock, len(kv.ids), len(self.prefilling), len(self.waiting), kv.used)
        if self.prefill_only and len(self.timeline) > BLOCK:  # a prefill replica joins no request
            self.rec.spill()
        return dt, b

    def end_step(self, chunks: list[tuple[int, int]], b: int, dt: float) -> None:
        """Book a step that ends at the replica's clock: decode tokens, finishes, completed prompts."""
        self.rec.busy_s += dt
        if b:
            self._decode_emitted(self.clock, b)
            finished = self.kv.advance(1, False)
            if finished:
                self.finish_all(finished, self.clock)
            self.last_decode_end = self.clock
        done, todo = self.req.done, self.req.todo
        for rid, q in chunks:
            done[rid] += q
            if done[rid] == todo[rid]:
                self.prefilling.remove(rid)
                self._prompt_done(rid)

    def _prompt_done(self, rid: int) -> None:
        """A prompt is in the cache: its next token is emitted; it decodes here, moves, or is finished."""
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
            else:
                self.handoff.transfer(rid)
            return
        self._join(rid)

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


# Scheduling policy (or, for a disaggregated decode replica, its role) -> the Replica method that plans a step.
# Static batching has no per-step plan: its driver runs whole batches (capsim.sim.serving.static).
PLANNERS: dict[SchedulerKind | Role, str] = {SchedulerKind.VLLM: "_plan_prefill_first",
                                             SchedulerKind.SARATHI: "_plan_sarathi", Role.DECODE: "_plan_decode_only"}

__all__ = ["DECODE", "PLANNERS", "Handoff", "Replica", "ReplicaConfig", "Role", "Step"]
