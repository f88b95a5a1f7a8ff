"""The decoding set of one replica and its paged KV cache, advanced many steps at a time.

Every decoding sequence gains one token of context per decode step, so a sequence that joined with context
``c0`` at step ``d0`` has context ``c0 + D - d0`` at step ``D``. Keeping ``sum(c0 - d0)`` and the histogram of
``(c0 - d0) mod block_size`` gives, without touching each sequence: the summed context (attention's keys), the
blocks a step needs (a sequence needs a new block when its context is a multiple of the block size, as vLLM's
paged KV cache allocates them, Kwon et al. 2023, Sec. 4.2), and the step at which free blocks run out.
"""

from __future__ import annotations

import bisect
import heapq
import itertools

from capsim.analytic.step_table import StepTable
from capsim.sim.serving.prefix import PrefixCache
from capsim.sim.serving.state import Requests


def blocks_for(tokens: int, block_size: int) -> int:
    """Paged-KV blocks that hold ``tokens`` tokens (integer ceiling division)."""
    return -(-tokens // block_size)


class DecodeSet:
    """Sequences decoding together on one replica, with the replica's block pool."""

    def __init__(self, req: Requests, block_size: int, total_blocks: int) -> None:
        self.req = req
        self.bs = block_size
        self.total = total_blocks
        self.used = 0  # blocks held by decoding and prefilling sequences
        self.steps = 0  # decode steps this replica has run (D)
        self.ids: dict[int, None] = {}
        self.version = 0  # bumped whenever a sequence joins or leaves
        self.grid: tuple[int, float] = (-1, 1.0)  # (version, decode grid factor) kept for that membership
        self.heap: list[tuple[int, int, int]] = []  # (finishing step, request id, epoch)
        self.sum_off = 0
        # The histogram twice over (cnt[r] == cnt[r + block_size]): a wrapping run of residues is one slice.
        self.cnt = [0] * (2 * block_size)
        self.prefix: PrefixCache | None = None  # the replica's prefix cache where the engine keeps one
        self.found: tuple[int, tuple[int, int]] | None = None  # (request, its prefix lookup) need() just made

    def evict(self) -> None:
        """Cached prefix blocks nobody holds count as free; they are evicted, least recently used first, once the
        pool needs them. ``used`` only grows between the moments it shrinks, so evicting for the blocks used now,
        before it shrinks and before the cache is read, evicts what evicting at every allocation would."""
        p = self.prefix
        if p.idle_blocks > self.total - self.used:
            p.trim(self.total - self.used)

    def need(self, rid: int, ahead: bool = False) -> int:
        """Blocks admitting ``rid`` takes from the free pool: its prompt's blocks, less the cached prefix blocks it
        shares, plus evictable group blocks it pins (vLLM V1 get_num_blocks_to_allocate). ``ahead``: a lower bound
        for a later step, when an eviction in between may have dropped the group (then it shares and pins none)."""
        req, p = self.req, self.prefix
        todo = req.todo[rid]
        blocks = -(-todo // self.bs)  # blocks_for(todo, self.bs)
        if p is None:
            return blocks
        group = req.group[rid]
        if group < 0:
            return blocks
        if not ahead and p.idle_blocks:  # a later step's lower bound holds whether or not the group is evicted
            self.evict()  # (nothing to evict without idle blocks: skip the call, the common case)
        found = p.lookup(group, req.prefix[rid], todo)
        n = blocks - found[0] // self.bs + found[1]
        if ahead:
            return n if n < blocks else blocks
        self.found = rid, found  # admit() takes it: nothing changes the cache in between
        return n

    def most(self, rid: int) -> int:
        """The most blocks admitting ``rid`` at a later step takes (``need(rid, ahead=True)`` never exceeds it): its
        prompt's blocks."""
        return -(-self.req.todo[rid] // self.bs)  # blocks_for

    def transferred(self, rid: int) -> int:
        """Blocks a KV cache handed over by a prefill replica takes on a decode replica (its tokens so far)."""
        return blocks_for(self.req.todo[rid], self.bs)

    def admit(self, rid: int, need: int) -> None:
        """Allocate the ``need`` blocks (:meth:`need`, just asked) of an admitted prompt; with prefix caching, its
        cached prefix is not computed again (``req.done`` starts past it)."""
        self.used += need
        req = self.req
        if self.prefix is not None and req.group[rid] >= 0:
            found, self.found = self.found, None
            hit, _ = self.prefix.admit(req.group[rid], req.prefix[rid], req.todo[rid],
                                       found[1] if found is not None and found[0] == rid else None)
            req.done[rid], req.shared[rid], req.held[rid] = hit, hit // self.bs, True

    def cache_prompt(self, rid: int) -> None:
        """A prompt is computed: its full blocks of the group's prefix become the group's (cached for later
        requests)."""
        req = self.req
        prefix, todo = req.prefix[rid], req.todo[rid]
        req.shared[rid] += self.prefix.donate(req.group[rid], prefix if prefix < todo else todo)

    def release(self, rid: int, tokens: int) -> None:
        """Free the blocks of ``rid``'s ``tokens`` tokens: its own, and its reference to its group's (whose blocks
        stay cached, evictable, when it was the last user)."""
        req = self.req
        if self.prefix is not None and self.prefix.idle_blocks:
            self.evict()
        self.used -= -(-tokens // self.bs) - req.shared[rid]  # blocks_for(tokens, self.bs) less the shared ones
        if req.held[rid]:
            self.used -= self.prefix.release(req.group[rid])
            req.shared[rid], req.held[rid] = 0, False

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def free(self) -> int:
        return self.total - self.used

    def context_sum(self) -> int:
        """Sum of the decoding sequences' KV lengths before the next step."""
        return self.sum_off + len(self.ids) * self.steps

    def grid_scale(self, table: StepTable) -> float:
        """The decode launch grid's factor (StepTable.grid_scale) over the keys each sequence reads in the next step,
        in the order the sequences joined (vLLM's FCFS running list), taken at the first step after the batch last
        changed and kept while it holds (its contexts then grow alike, which moves the factor little): a closed-form
        run and the one-step-at-a-time reference price the same steps alike."""
        if self.grid[0] != self.version:
            req, steps = self.req, self.steps + 1
            keys = [req.c_join[r] + steps - req.d_join[r] for r in self.ids]
            self.grid = (self.version, table.grid_scale(keys))
        return self.grid[1]

    def demand(self, ahead: int = 0) -> int:
        """New blocks the decode step ``ahead`` steps from now needs."""
        return self.cnt[(-(self.steps + ahead)) % self.bs]

    def _order(self) -> list[int]:
        """Block demand of the next block_size steps, in step order: residues r0, r0 - 1, ..., r0 + 1."""
        r0, cnt = (-self.steps) % self.bs, self.cnt
        return cnt[r0::-1] + cnt[self.bs - 1:r0:-1]

    def cum_demand(self, k: int) -> int:
        """New blocks the next ``k`` decode steps need (each block_size steps need one block per sequence)."""
        bs = self.bs
        part = k % bs
        if part:  # the first ``part`` residues of _order(): r0 down to r0 - part + 1 (mod bs), r0 + bs in cnt's copy
            end = -self.steps % bs + bs + 1
            return k // bs * len(self.ids) + sum(self.cnt[end - part:end])
        return k // bs * len(self.ids)

    def steps_until_short(self, free: int | None = None) -> int:
        """How many decode steps fit in the free blocks before one step needs more than are left."""
        n = len(self.ids)
        free = self.free if free is None else free
        cycles = free // n
        left = free - cycles * n  # < n: the next cycle of block_size steps runs short within it
        return cycles * self.bs + bisect.bisect_right(list(itertools.accumulate(self._order())), left)

    def run_length(self) -> int:
        """Decode steps until the batch next changes on its own: a sequence finishes or blocks run short."""
        finish, rid, ep = self.heap[0]  # steps_until_finish's common case inline: the earliest entry is current
        k = finish - self.steps if rid in self.ids and ep == self.req.epoch[rid] else self.steps_until_finish()
        if len(self.ids) * (k // self.bs + 1) <= self.total - self.used:
            return k  # enough free blocks for every step until then
        return min(k, self.steps_until_short())

    def steps_until_finish(self) -> int:
        """Decode steps until the first decoding sequence emits its last token (stale heap entries dropped)."""
        heap, ids, epoch = self.heap, self.ids, self.req.epoch
        while True:  # called with sequences decoding: each has a current entry
            finish, rid, ep = heap[0]
            if rid in ids and ep == epoch[rid]:
                return finish - self.steps
            heapq.heappop(heap)

    def join(self, rid: int) -> None:
        """Add a sequence whose prompt is in the cache and whose latest token was just emitted."""
        req, steps, bs, cnt = self.req, self.steps, self.bs, self.cnt
        c, gen = req.todo[rid], req.gen[rid]
        off = c - steps
        req.c_join[rid] = c
        req.d_join[rid] = steps
        req.g_join[rid] = gen
        self.ids[rid] = None
        self.version += 1
        self.sum_off += off
        r = off % bs
        cnt[r] += 1
        cnt[r + bs] += 1
        heapq.heappush(self.heap, (steps + req.output[rid] - gen, rid, req.epoch[rid]))

    def leave(self, rid: int) -> int:
        """Remove a sequence, free its blocks, bring its token count up to date; returns its KV length."""
        req, bs, cnt = self.req, self.bs, self.cnt
        del self.ids[rid]
        self.version += 1
        c0, d0 = req.c_join[rid], req.d_join[rid]
        ran = self.steps - d0
        c = c0 + ran
        req.gen[rid] = req.g_join[rid] + ran
        off = c0 - d0
        self.sum_off -= off
        r = off % bs
        cnt[r] -= 1
        cnt[r + bs] -= 1
        self.release(rid, c)
        req.epoch[rid] += 1
        return c

    def advance(self, k: int, allocate: bool = True) -> list[int]:
        """Run ``k`` decode steps (allocating their blocks unless the caller already did); returns the sequences
        that finished at the last one."""
        steps = self.steps
        if allocate:  # cum_demand(k) inline
            bs = self.bs
            part = k % bs
            if part:
                end = -steps % bs + bs + 1
                self.used += k // bs * len(self.ids) + sum(self.cnt[end - part:end])
            else:
                self.used += k // bs * len(self.ids)
        steps = self.steps = steps + k
        heap = self.heap
        if not heap or heap[0][0] > steps:
            return []  # the common case: nobody finished
        done = []
        ids, epochs = self.ids, self.req.epoch
        while heap and heap[0][0] <= steps:
            _, rid, epoch = heapq.heappop(heap)
            if rid in ids and epoch == epochs[rid]:
                self.leave(rid)
                done.append(rid)
        return done

    def victim(self) -> int:
        """The sequence vLLM preempts first: the latest arrival (FCFS priority, Kwon et al. 2023, Sec. 4.5)."""
        arrival = self.req.arrival
        return max(self.ids, key=lambda r: (arrival[r], r))


class ReservedDecodeSet(DecodeSet):
    """A decoding set whose requests reserved the blocks of their whole sequence when admitted: TensorRT-LLM's
    default GUARANTEED_NO_EVICT capacity scheduler (cpp/tensorrt_llm/batch_manager/capacityScheduler.cpp
    GuaranteedNoEvictScheduler admits a request while its blocks to completion fit in the free blocks less those
    the running requests still need; kvCacheManager.cpp getRemainingBlocksToCompletion = ceil((mPromptLen +
    mMaxNewTokens) / tokensPerBlock) less the blocks it holds). Decode steps then take no new blocks from the pool,
    so a sequence is never short of blocks and nothing is preempted."""

    def _whole(self, rid: int) -> int:
        """Blocks of ``rid``'s whole sequence: its prompt plus the output tokens it asks for."""
        req = self.req
        return blocks_for(req.prompt[rid] + req.output[rid], self.bs)

    def need(self, rid: int, ahead: bool = False) -> int:
        # the prompt's blocks (less a shared cached prefix, DecodeSet.need) plus those of its whole output
        return super().need(rid, ahead) + self._whole(rid) - blocks_for(self.req.todo[rid], self.bs)

    def most(self, rid: int) -> int:
        return self._whole(rid)

    def transferred(self, rid: int) -> int:
        return self._whole(rid)

    def release(self, rid: int, tokens: int) -> None:
        req = self.req
        super().release(rid, req.prompt[rid] + req.output[rid])  # the reservation, whatever the tokens so far

    def demand(self, ahead: int = 0) -> int:
        return 0

    def cum_demand(self, k: int) -> int:
        return 0

    def advance(self, k: int, allocate: bool = True) -> list[int]:
        return super().advance(k, False)  # decode steps take no new blocks (DecodeSet.advance inlines cum_demand)

    def run_length(self) -> int:
        return self.steps_until_finish()


__all__ = ["DecodeSet", "ReservedDecodeSet", "blocks_for"]
