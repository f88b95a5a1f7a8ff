"""Prefix caching bookkeeping: full blocks only, the last prompt token recomputed, held vs evictable, LRU."""

from __future__ import annotations

import pytest

from capsim.sim.serving.prefix import PrefixCache


def test_system_prompt_is_computed_once_then_served_in_full_blocks():
    cache = PrefixCache(16)
    hit, pinned = cache.admit(0, 500, 900)  # first request: nothing cached yet
    assert (hit, pinned) == (0, 0)
    assert cache.donate(0, 500) == 31  # its 31 full blocks (496 tokens) of the 500-token prompt become the group's
    hit, pinned = cache.admit(0, 500, 700)
    assert (hit, pinned) == (496, 0)  # already held by the first request
    assert cache.donate(0, 500) == 0
    assert cache.release(0) == 0 and cache.release(0) == 31  # the last user leaves: 31 evictable blocks
    assert cache.idle_blocks == 31
    hit, pinned = cache.admit(0, 500, 480)  # a prompt shorter than the prefix recomputes its last token
    assert (hit, pinned) == (464, 31) and cache.idle_blocks == 0
    assert cache.hit_rate == pytest.approx((496 + 464) / (900 + 700 + 480))


def test_conversation_history_grows_and_idle_groups_are_evicted_lru():
    cache = PrefixCache(16)
    for conv in (1, 2, 3):
        cache.admit(conv, 0, 100)
        assert cache.donate(conv, 100 + 60) == 10  # prompt and output of the first turn, 160 tokens
        assert cache.release(conv) == 10
    cache.admit(1, 160, 260)  # conversation 1 again: touched, held
    assert cache.trim(15) == 10  # 20 idle blocks in 15 free: the least recent idle group (2) goes
    assert 2 not in cache.tokens and set(cache.idle) == {3}
    assert cache.admit(2, 160, 260) == (0, 0)  # evicted: computed again
    assert cache.trim(0) == 10 and not cache.idle and cache.idle_blocks == 0
