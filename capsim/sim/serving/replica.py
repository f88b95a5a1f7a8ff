"""One serving replica: its queue, the sequences it prefills and decodes, and its scheduling policy.

The replica keeps its own clock. Its SimPy process (:mod:`capsim.sim.serving.drivers`) moves that clock one step
at a time for prompt steps, and a whole run at a time for decode-only steps: the replica advances until its batch
next changes (a sequence finishes, KV blocks run out, or an arriving request can be admitted at the end of the step
in progress) and sums the run's step times in closed form (:mod:`capsim.analytic.step_table`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from capsim.analytic.step_table import StepTable, pieces_sum, steps_to_reach
from capsim.sim.serving.kv import DecodeSet
from capsim.specs.engine import SchedulerKind

if TYPE_CHECKING:
    from capsim.sim.serving.fleet import Fleet


DECODE: tuple[str, list[tuple[int, int]], bool] = ("decode", [], True)  # plan(): a decode-only step or run


class Role(StrEnum):
    BOTH = "both"  # prefill and decode on the same replica
    PREFILL = "prefill"  # disaggregated: computes prompts, hands the KV cache to a decode replica
    DECODE = "decode"  # disaggregated: receives prompts' KV caches and decodes


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


class Replica:
    """A replica of the engine: a waiting queue, sequences being prefilled, and a decoding set."""

    def __init__(self, idx: int, fleet: Fleet, table: StepTable, cfg: ReplicaConfig) -> None:
        self.idx, self.fleet, self.table, self.cfg = idx, fleet, table, cfg
        self.env, self.req = fleet.env, fleet.req
        self.kv = DecodeSet(fleet.req, cfg.block_size, cfg.total_blocks)
        self.waiting: deque[int] = deque()
        self.prefilling: list[int] = []
        self.wake: Any = None
        self.idle = False
        self.seg: tuple[float, Any, int] | None = None  # (start, envelope pieces, steps) of an interruptible decode run
        self.cut = 0
        self.busy_s = 0.0
        self.preemptions = 0
        # Flat lists (one numpy conversion at the end instead of one tuple per entry):
        self.timeline: list[float] = []  # (t, decoding, prefilling, waiting, blocks) per scheduling decision
        # Decode runs of k > 1 steps, by their number of lines: (k - 1, sequences) and the lines' (a, b) pairs,
        # from which metrics.itl_samples expands the gaps of steps 1..k-1.
        self.itl_kb: dict[int, list[int]] = {2: [], 3: []}
        self.itl_ab: dict[int, list[float]] = {2: [], 3: []}
        self.itl_gap: list[float] = []  # first gaps of decode runs ...
        self.itl_weight: list[float] = []  # ... and how many sequences saw each
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
        self.whole_prompts = cfg.policy is SchedulerKind.VLLM
        self.decode_only = cfg.role is Role.DECODE
        self.prefill_only = cfg.role is Role.PREFILL

    def start(self) -> None:
        """Start the replica's SimPy process (after the fleet has said whether requests are pushed to it)."""
        from capsim.sim.serving.drivers import driver

        self.env.process(driver(self))

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
        elif self.seg is not None and len(self.waiting) == 1:
            self._maybe_cut()

    def _maybe_cut(self) -> None:
        """Cut the decode run at the end of the step in progress if the new head of the queue can start then."""
        t0, pieces, k = self.seg
        if self.cut < k:
            return
        m = self._cut_at(pieces, k, self.env.now - t0, self.waiting[0])
        if m < k:
            self.cut = m  # wake the replica at the end of step m, not now: one resume instead of two
            wake = self.wake
            self.env.timeout(t0 + pieces_sum(pieces, m) - self.env.now).callbacks.append(
                lambda _e: wake.triggered or wake.succeed())

    def _cut_at(self, pieces: Any, k: int, elapsed: float, rid: int) -> int:
        """The step after which a run must stop so that ``rid``, arriving ``elapsed`` into it as the head of the
        queue, starts at the end of the step in progress; ``k`` when it cannot start before the run ends."""
        m = steps_to_reach(pieces, elapsed)
        if m >= k:
            return k
        kv = self.kv
        free = kv.total - kv.used - kv.cum_demand(m)
        if self.sarathi:
            free -= kv.cnt[(-(kv.steps + m)) % kv.bs]  # kv.demand(m)
        return m if self._admissible(free, rid) else k

    def absorb(self) -> None:
        """Move the pre-routed requests that have arrived by the replica's clock into the queue."""
        inc, i, now, arrival = self.incoming, self.inext, self.clock, self.req.arrival
        while i < len(inc) and arrival[inc[i]] <= now:
            self.waiting.append(inc[i])
            i += 1
        self.inext = i

    def _admissible(self, free: int, rid: int | None = None) -> bool:
        """Whether the head of the queue (or ``rid`` as its head) can be admitted with ``free`` blocks (vLLM V0
        can_allocate)."""
        cfg, req = self.cfg, self.req
        rid = self.waiting[0] if rid is None else rid
        if len(self.kv.ids) + len(self.prefilling) >= cfg.max_seqs:
            return False
        if self.sarathi and not self.decode_only and len(self.kv.ids) >= cfg.budget:
            return False
        return -(-req.todo[rid] // cfg.block_size) <= free - cfg.watermark_blocks  # blocks: integer ceil

    # --- the engine loop ---------------------------------------------------------------------------
    def idle_event(self) -> Any:
        """An event that fires when work arrives: a pushed request, or the next pre-routed arrival."""
        self.idle, self.wake = True, self.env.event()
        if self.inext < len(self.incoming):
            wake = self.wake
            self.env.timeout(self.req.arrival[self.incoming[self.inext]] - self.env.now).callbacks.append(
                lambda _e: wake.triggered or wake.succeed())
        return self.wake

    def plan_run(self, t0: float) -> tuple[int, int, Any, float, float]:
        """(steps, sequences, lines, seconds, step 0's seconds) of the decode run starting at t0, cut where the
        next pre-routed arrival can start."""
        kv = self.kv
        b, k = len(kv.ids), kv.run_length()
        self.timeline += (t0, b, len(self.prefilling), len(self.waiting), kv.used)
        lines, pieces, dur = self.table.decode_run(b, kv.sum_off + b * kv.steps, k)  # kv.context_sum()
        if k > 1 and self.waiting:  # a head that a preemption made admissible starts after the first step
            m = self._cut_at(pieces, k, 0.0, self.waiting[0])
            if m < k:
                return m, b, lines, pieces_sum(pieces, m), pieces[0][2]
        elif k > 1 and self.inext < len(self.incoming):
            rid = self.incoming[self.inext]  # the next arrival becomes the head of the queue
            arrive = self.req.arrival[rid]
            if arrive < t0 + dur:
                m = self._cut_at(pieces, k, arrive - t0, rid)
                if m < k:
                    return m, b, lines, pieces_sum(pieces, m), pieces[0][2]
        return k, b, lines, dur, pieces[0][2]

    def book_itl_run(self, k: int, b: int, lines: Any) -> None:
        """Keep a run of ``k`` > 1 decode steps of ``b`` sequences for the inter-token gaps of its steps 1..k-1."""
        kb, ab = self.itl_kb[len(lines)], self.itl_ab[len(lines)]
        kb += (k - 1, b)
        for line in lines:
            ab += line

    def close_run(self, t0: float, k: int, b: int, lines: Any, dur: float, first: float) -> None:
        """Book a decode run of k steps that started at t0 (the first taking ``first`` seconds): inter-token gaps,
        busy time, finishes, blocks."""
        if k > 1:
            self.itl_kb[len(lines)] += (k - 1, b)  # book_itl_run, inlined
            ab = self.itl_ab[len(lines)]
            for line in lines:
                ab += line
        self.busy_s += dur
        if self.fresh:
            self._decode_emitted(t0 + first, b)
        else:  # every sequence decoded in the previous decode step too
            self.itl_gap.append(t0 + first - self.last_decode_end)
            self.itl_weight.append(b)
        end = t0 + dur
        done = self.kv.advance(k)
        if done:
            self.finish_all(done, end)
        self.last_decode_end = end

    def plan(self) -> tuple[str, list[tuple[int, int]], bool] | None:
        """The next step: ("prefill", chunks, with decodes) or ("decode", [], True); None to look again."""
        cfg, kv = self.cfg, self.kv
        if self.decode_only:
            while self.waiting and self._admissible(kv.free):
                rid = self.waiting.popleft()
                kv.used += -(-self.req.todo[rid] // cfg.block_size)
                self._join(rid)
        elif self.sarathi:
            b = len(kv.ids)
            need = kv.cnt[(-kv.steps) % kv.bs] if b else 0  # kv.demand(0): the decodes' new blocks
            if need > kv.total - kv.used:
                self._preempt_if_short()
                b = len(kv.ids)
                need = kv.cnt[(-kv.steps) % kv.bs] if b else 0
            if self.prefilling or self.waiting:
                chunks = self._chunks(cfg.budget - b, kv.total - kv.used - need)
                if chunks:
                    return "prefill", chunks, b > 0
            return DECODE if b else None
        elif self.prefilling or (self.waiting and self._admissible(kv.free)):
            return "prefill", self._chunks(cfg.budget, kv.free), False
        if not kv.ids:
            return None
        self._preempt_if_short()
        return DECODE if kv.ids else None

    def _chunks(self, budget: int, free: int) -> list[tuple[int, int]]:
        """Prompt chunks of one step: sequences already being prefilled first, then admissions in FCFS order."""
        cfg, req = self.cfg, self.req
        chunks: list[tuple[int, int]] = []
        for rid in self.prefilling:
            if budget <= 0:
                break
            q = min(req.todo[rid] - req.done[rid], budget)
            chunks.append((rid, q))
            budget -= q
        seats = cfg.max_seqs - len(self.kv.ids) - len(self.prefilling)
        while self.waiting and budget > 0 and seats > 0:
            rid = self.waiting[0]
            need = -(-req.todo[rid] // cfg.block_size)
            if need > free - cfg.watermark_blocks:
                break
            if self.whole_prompts and req.todo[rid] > budget and chunks:
                break  # whole prompts only, unless a prompt longer than the budget starts alone
            self.waiting.popleft()
            self.kv.used += need
            free -= need
            self.prefilling.append(rid)
            if req.start_s[rid] != req.start_s[rid]:  # NaN: first time scheduled
                req.start_s[rid] = self.clock
            seats -= 1
            q = min(req.todo[rid], budget)
            chunks.append((rid, q))
            budget -= q
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
            self.preemptions += 1
            if rid in self.fresh:
                self.fresh.remove(rid)
            if self.decode_only:
                self.fleet.reprefill(rid)
            else:
                self.waiting.appendleft(rid)

    # --- steps -------------------------------------------------------------------------------------
    def begin_step(self, chunks: list[tuple[int, int]], with_decode: bool) -> tuple[float, int]:
        """Start a step computing prompt chunks (and, under Sarathi, one token of every decoding sequence):
        (its seconds, the decoding sequences in it)."""
        req, kv = self.req, self.kv
        tokens = pairs = kv_read = completing = 0
        for rid, q in chunks:
            c = req.done[rid]
            tokens += q
            pairs += q * c + q * (q + 1) // 2
            kv_read += c + q
            completing += c + q == req.todo[rid]
        b = len(kv.ids) if with_decode else 0
        dkv = kv.sum_off + b * kv.steps + b if b else 0  # kv.context_sum() + b
        dt = self.table.step_s(tokens, len(chunks), float(pairs), float(kv_read), b, float(dkv), b + completing)
        if b:
            kv.used += kv.demand(0)
        self.timeline += (self.clock, len(kv.ids), len(self.prefilling), len(self.waiting), kv.used)
        return dt, b

    def end_step(self, chunks: list[tuple[int, int]], b: int, dt: float) -> None:
        """Book a step that ends at the replica's clock: decode tokens, finishes, completed prompts."""
        req, kv = self.req, self.kv
        self.busy_s += dt
        if b:
            if self.fresh:
                self._decode_emitted(self.clock, b)
            else:  # _decode_emitted's common case, inlined
                self.itl_gap.append(self.clock - self.last_decode_end)
                self.itl_weight.append(b)
            done = kv.advance(1, allocate=False)
            if done:
                self.finish_all(done, self.clock)
            self.last_decode_end = self.clock
        for rid, q in chunks:
            req.done[rid] += q
            if req.done[rid] == req.todo[rid]:
                self.prefilling.remove(rid)
                self._prompt_done(rid)

    def _prompt_done(self, rid: int) -> None:
        """A prompt is in the cache: its next token is emitted; it decodes here, moves, or is finished."""
        req, now = self.req, self.clock
        req.gen[rid] += 1
        req.last_emit_s[rid] = now
        if req.first_s[rid] != req.first_s[rid]:
            req.first_s[rid] = now
        if req.gen[rid] >= req.output[rid] or self.prefill_only:
            self.kv.used -= -(-req.todo[rid] // self.cfg.block_size)
            if req.gen[rid] >= req.output[rid]:
                self.finish_all([rid], now)
            else:
                self.fleet.transfer(rid)
            return
        self.kv.join(rid)  # _join, inlined
        self.fresh.append(rid)

    def _join(self, rid: int) -> None:
        self.kv.join(rid)
        self.fresh.append(rid)

    def finish_all(self, rids: list[int], now: float) -> None:
        req = self.req
        for rid in rids:
            req.finish_s[rid] = now
            self.fleet.finished(rid)

    def _decode_emitted(self, end: float, b: int) -> None:
        """Inter-token gaps of a decode step ending at ``end``: since each fresh sequence's last token, and
        since the previous decode step for the others."""
        if not self.fresh:
            self.itl_gap.append(end - self.last_decode_end)
            self.itl_weight.append(b)
            return
        fresh = [r for r in self.fresh if r in self.kv.ids]
        last = self.req.last_emit_s
        for rid in fresh:
            self.itl_gap.append(end - last[rid])
            self.itl_weight.append(1.0)
        if b > len(fresh):
            self.itl_gap.append(end - self.last_decode_end)
            self.itl_weight.append(b - len(fresh))
        self.fresh.clear()
