"""A replica's scheduler: which requests each engine step computes, one policy per scheduling kind.

Each policy is one ``_plan_*`` method of :class:`Scheduler` and one entry in :data:`PLANNERS`; it returns the next
step, ``("prefill", [(request, prompt tokens)], with decodes)`` or :data:`DECODE`, or None to look again. Admission
follows vLLM's block manager (a prompt is admitted while its KV blocks fit above the watermark, ``can_allocate``) and
preemption is by recompute, latest arrival first. :class:`~capsim.sim.serving.replica.Replica` runs the steps a
policy plans (and the decode runs between them); the policies read and change its queue, its prefilling list and
its decoding set, and nothing else of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from capsim.sim.serving.kv import DecodeSet
from capsim.sim.serving.records import ReplicaRecord
from capsim.sim.serving.state import Requests
from capsim.specs.engine import SchedulerKind

Step = tuple[str, list[tuple[int, int]], bool]  # ("prefill", [(request, tokens)], with decodes) or DECODE
DECODE: Step = ("decode", [], True)  # plan(): a decode-only step or run


class Role(StrEnum):
    BOTH = "both"  # prefill and decode on the same replica
    PREFILL = "prefill"  # disaggregated: computes prompts, hands the KV cache to a decode replica
    DECODE = "decode"  # disaggregated: receives prompts' KV caches and decodes


@dataclass(frozen=True)
class ReplicaConfig:
    """One replica's scheduling limits, KV pool and role (the fleet builds it from the plan and engine profile)."""

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


class Scheduler:
    """The scheduling policies of a :class:`~capsim.sim.serving.replica.Replica` (a mixin: the replica holds the
    state they read and change)."""

    cfg: ReplicaConfig
    req: Requests
    kv: DecodeSet
    rec: ReplicaRecord
    handoff: Any  # the replica's Handoff
    waiting: deque[int]
    prefilling: list[int]
    fresh: list[int]
    clock: float
    sarathi: bool
    decode_only: bool
    _join: Callable[[int], None]  # the replica's: a computed (or transferred) prompt joins the decoding set

    def _admissible(self, free: int, rid: int | None = None, ahead: bool = False) -> bool:
        """Whether the head of the queue (or ``rid`` as its head) can be admitted with ``free`` blocks (vLLM V0
        can_allocate); ``ahead``: at a later step of a run (a lower bound on the blocks it needs, DecodeSet.need)."""
        return self._has_seat() and (self.kv.need(self.waiting[0] if rid is None else rid, ahead)
                                     <= free - self.cfg.watermark_blocks)

    def _has_seat(self) -> bool:
        """Whether one more request may run: a sequence slot free, and (Sarathi) a token of the budget left after
        one per decoding sequence."""
        cfg, n = self.cfg, len(self.kv.ids)
        if n + len(self.prefilling) >= cfg.max_seqs:
            return False
        return not (self.sarathi and not self.decode_only and n >= cfg.budget)

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
            q = todo[rid] - done[rid]
            q = q if q < budget else budget
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
            q = self._admit(rid, need)
            q = q if q < budget else budget
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


# Scheduling policy (or, for a disaggregated decode replica, its role) -> the Replica method that plans a step.
# Static batching has no per-step plan: its driver runs whole batches (capsim.sim.serving.static).
PLANNERS: dict[SchedulerKind | Role, str] = {SchedulerKind.VLLM: "_plan_prefill_first",
                                             SchedulerKind.SARATHI: "_plan_sarathi", Role.DECODE: "_plan_decode_only"}

__all__ = ["DECODE", "PLANNERS", "ReplicaConfig", "Role", "Scheduler", "Step"]
