"""Prefix caching in a replica's paged KV cache: blocks of a shared prompt prefix computed once and reused.

Requests share a prefix through a group (a system prompt every request starts with; a conversation whose next turn
resends its history). The cache holds, per group, its leading tokens in full blocks: vLLM hashes whole blocks
(Automatic Prefix Caching docs; V1 KVCacheManager), so a partial block is never shared, and at least the prompt's
last token is computed again (its logits are needed). Blocks a running request uses are held; blocks nobody uses
stay cached but count as free, and are evicted least recently used first when an allocation needs them (V1's free
block queue is ordered by eviction priority, LRU). SGLang's radix cache keeps token runs of a tree with the same LRU
eviction; TensorRT-LLM's block reuse likewise works on full blocks.

The bookkeeping is per group and in blocks: the replica's ``used`` count includes held group blocks, evictable
ones are kept apart (``idle_blocks``) and trimmed when held plus evictable blocks exceed the pool.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    """Cached prefix blocks of one replica, by prefix group."""

    def __init__(self, block_size: int) -> None:
        if block_size <= 0:
            raise ValueError('"block_size" must be > 0.')
        self.bs = block_size
        self.tokens: dict[int, int] = {}  # group -> cached leading tokens (a multiple of the block size)
        self.refs: dict[int, int] = {}  # group -> running requests using its blocks
        self.idle: OrderedDict[int, None] = OrderedDict()  # groups nobody uses, least recently used first
        self.idle_blocks = 0  # blocks of the idle groups: cached, evictable, counted free
        self.hit_tokens = 0  # prompt tokens served from the cache
        self.looked_up_tokens = 0  # prompt tokens of requests that looked
        self.evicted_blocks = 0

    def lookup(self, group: int, prefix_tokens: int, prompt_tokens: int) -> tuple[int, int]:
        """What :meth:`admit` would return now, changing nothing."""
        cached = self.tokens.get(group, 0)
        if not cached:
            return 0, 0
        m = prefix_tokens if prefix_tokens < prompt_tokens else prompt_tokens - 1  # the last token is computed
        hit = m - m % self.bs
        return (hit if hit < cached else cached), (0 if group in self.refs else cached // self.bs)

    def admit(self, group: int, prefix_tokens: int, prompt_tokens: int,
              found: tuple[int, int] | None = None) -> tuple[int, int]:
        """A request of ``group`` whose first ``prefix_tokens`` prompt tokens are the group's: (tokens it finds
        cached, group blocks it pins that were evictable; the caller adds them to its used blocks). ``found``: what
        :meth:`lookup` returned for it, when nothing changed the cache since."""
        hit, pinned = found if found is not None else self.lookup(group, prefix_tokens, prompt_tokens)
        refs = self.refs.get(group, 0)
        if pinned:
            del self.idle[group]
            self.idle_blocks -= pinned
        self.refs[group] = refs + 1
        self.hit_tokens += hit
        self.looked_up_tokens += prompt_tokens
        return hit, pinned

    def donate(self, group: int, tokens: int) -> int:
        """A request of ``group`` holds the group's first ``tokens`` tokens: the full blocks past what the group had
        cached become the group's; returns how many of the request's blocks changed hands."""
        full = (tokens // self.bs) * self.bs
        cached = self.tokens.get(group, 0)
        if full <= cached:
            return 0
        self.tokens[group] = full
        return (full - cached) // self.bs

    def release(self, group: int) -> int:
        """A request stops using ``group``; returns the group blocks that become evictable (the caller takes
        them off its used blocks) when it was the last user."""
        refs = self.refs[group] - 1
        if refs:
            self.refs[group] = refs
            return 0
        del self.refs[group]
        if not self.tokens.get(group):
            return 0
        self.idle[group] = None
        blocks = self.tokens[group] // self.bs
        self.idle_blocks += blocks
        return blocks

    def trim(self, free_blocks: int) -> int:
        """Evict least recently used idle groups until the evictable blocks fit in ``free_blocks`` (the pool's
        blocks not held); returns the blocks evicted."""
        evicted = 0
        while self.idle_blocks > free_blocks and self.idle:
            group, _ = self.idle.popitem(last=False)
            blocks = self.tokens.pop(group) // self.bs
            self.idle_blocks -= blocks
            evicted += blocks
        self.evicted_blocks += evicted
        return evicted

    @property
    def hit_rate(self) -> float:
        """Prompt tokens served from the cache over prompt tokens looked up."""
        return self.hit_tokens / self.looked_up_tokens if self.looked_up_tokens else 0.0


__all__ = ["PrefixCache"]
