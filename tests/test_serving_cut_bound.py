"""A decode run is cut where the head of the queue can start (Replica._cut_at). Its shortcut admits without counting
blocks exactly when the request's most blocks fit beside m // bs + 1 blocks per decoding sequence; these tests check
that bound against the exact count it stands for (each sequence's new blocks step by step, DecodeSet.need), so the
shortcut never admits what the exact check would not and the cut is the exact path's."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim.sim.serving.replica import Replica
from capsim.sim.serving.scheduler import ReplicaConfig, Role
from capsim.sim.serving.state import Requests
from capsim.specs.engine import SchedulerKind


class _Table:
    finish_s = 0.0
    grid = False


@st.composite
def cut_states(draw):
    """A replica part-way through a decode run, and the request at the head of its queue."""
    bs = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16]))
    whole = draw(st.booleans())  # TensorRT-LLM's no-evict reservation, else vLLM's per-step blocks
    caching = draw(st.booleans())
    sarathi = draw(st.booleans())
    role = draw(st.sampled_from([Role.BOTH, Role.DECODE]))
    # decoding sequences: (context when it joined, decode steps the replica ran before it joined)
    seqs = draw(st.lists(st.tuples(st.integers(1, 5 * bs), st.integers(0, 2 * bs)), max_size=6))
    prompt = draw(st.integers(1, 8 * bs))
    output = draw(st.integers(1, 6 * bs))
    regen = 0 if whole else draw(st.integers(0, output - 1))  # tokens a preemption made it compute again
    group = draw(st.integers(-1, 0)) if caching else -1
    prefix_tokens = draw(st.integers(0, prompt))
    cached_blocks = draw(st.integers(0, 6))  # the group's cached blocks
    held = draw(st.booleans())  # another running request uses them (else they are idle, evictable)
    since = draw(st.integers(0, 2 * bs))  # decode steps since the last one joined
    m = draw(st.integers(1, 4 * bs))
    n = len(seqs)
    wm = draw(st.integers(0, 3))
    used = draw(st.integers(0, 40))
    max_seqs = draw(st.integers(1, n + 3))
    budget = draw(st.integers(max(n, 1), n + 4))
    return dict(bs=bs, whole=whole, caching=caching, sarathi=sarathi, role=role, seqs=seqs, prompt=prompt,
                output=output, regen=regen, group=group, prefix_tokens=prefix_tokens, cached_blocks=cached_blocks,
                held=held, since=since, m=m, wm=wm, used=used, max_seqs=max_seqs, budget=budget)


def _replica(s: dict) -> tuple[Replica, int]:
    n = len(s["seqs"])
    rid = n  # the candidate; the decoding sequences are 0 .. n - 1
    prompts = [c for c, _ in s["seqs"]] + [s["prompt"]]
    outputs = [10**6] * n + [s["output"]]
    req = Requests(np.array(prompts), np.array(outputs), None, np.array([-1] * n + [s["group"]]),
                   np.array([0] * n + [s["prefix_tokens"]]))
    req.todo[rid] = s["prompt"] + s["regen"]
    cfg = ReplicaConfig(policy=SchedulerKind.SARATHI if s["sarathi"] else SchedulerKind.VLLM, max_seqs=s["max_seqs"],
                        budget=s["budget"], block_size=s["bs"], total_blocks=s["used"],
                        watermark_blocks=s["wm"], role=s["role"], prefix_caching=s["caching"],
                        whole_sequence=s["whole"])
    rep = Replica(0, None, req, _Table(), cfg, None)
    kv = rep.kv
    for i, (_, before) in enumerate(s["seqs"]):
        kv.steps += before
        req.gen[i] = 1
        kv.join(i)
    kv.steps += s["since"]
    kv.used = s["used"]
    if kv.prefix is not None and s["cached_blocks"]:
        p, blocks = kv.prefix, s["cached_blocks"]
        p.tokens[0] = blocks * s["bs"]
        if s["held"]:
            p.refs[0] = 1
        else:
            p.idle[0] = None
            p.idle_blocks = blocks
    return rep, rid


def _new_blocks(rep: Replica, steps: int) -> int:
    """Blocks the decoding sequences take in the next ``steps`` decode steps, one sequence and one step at a time:
    a step appending a sequence's token at a context that is a multiple of the block size takes a new block."""
    kv, req = rep.kv, rep.req
    if rep.cfg.whole_sequence:
        return 0  # reserved at admission
    total = 0
    for r in kv.ids:
        context = req.c_join[r] + kv.steps - req.d_join[r]
        total += sum((context + j) % kv.bs == 0 for j in range(steps))
    return total


@settings(max_examples=1000, deadline=None)
@given(cut_states(), st.sampled_from(["shortcut", "exact"]), st.integers(-3, 3))
def test_the_cut_shortcut_admits_only_what_the_exact_count_admits(s, near, slack):
    rep, rid = _replica(s)
    kv, m, bs, n = rep.kv, s["m"], s["bs"], len(s["seqs"])
    # The exact count: the blocks the m steps before it starts take (and, Sarathi, the decodes of the step that
    # admits it), and the blocks the request takes at a later step (a lower bound under prefix caching).
    steps = m + 1 if rep.sarathi else m
    exact = _new_blocks(rep, steps)
    assert exact == kv.cum_demand(m) + (kv.demand(m) if rep.sarathi else 0)  # the closed form counts them alike
    need = kv.need(rid, ahead=True)
    # The shortcut's bound is never below it: m + 1 steps take at most m // bs + 1 blocks per sequence, and the
    # request at most its most blocks.
    assert exact <= n * (m // bs + 1)
    assert need <= kv.most(rid)
    # The free blocks: a few either side of where the shortcut starts to admit, or the exact check.
    edge = kv.most(rid) + n * (m // bs + 1) if near == "shortcut" else need + exact
    kv.total = kv.used + max(0, edge + s["wm"] + slack)
    # So the cut is the exact path's: the step m when the request fits then, else none.
    k = m + 1 + s["since"]
    pieces = [(0, k, 1.0, 0.0)]  # one second a step: m - 0.5 s into the run, step m is in progress
    fits = rep._has_seat() and need <= kv.total - kv.used - exact - s["wm"]
    assert rep._cut_at(pieces, k, m - 0.5, rid) == ((m, float(m)) if fits else None)
    assert rep._cut_at(pieces, m, m - 0.5, rid) is None  # the run ends at step m: nothing to cut
