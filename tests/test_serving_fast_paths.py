"""The serving simulator's inlined fast paths give what the general calls they stand for give, bit for bit:
StepTable.decode_run's two-line case against envelope(decode_lines) summed by pieces_sum/line_sum, DecodeSet.advance's
block count against cum_demand, and run_length's heap peek against steps_until_finish (stale entries included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim import ServePlan, get_accelerator, get_model, load_calibration
from capsim.analytic.line_sums import envelope, line_sum, pieces_sum
from capsim.analytic.step_table import StepTable
from capsim.sim.serving.kv import DecodeSet, ReservedDecodeSet
from capsim.sim.serving.state import Requests
from capsim.specs.engine import get_engine

A100 = get_accelerator("a100")
PERF = load_calibration("a100").perf()
TABLES = {name: StepTable(get_model(model), plan, PERF, get_engine(engine, cuda_graphs=graphs), A100)
          for name, model, plan, engine, graphs in (
              ("vllm", "llama-2-7b", ServePlan(), "vllm", True),
              ("vllm_eager", "llama-2-7b", ServePlan(), "vllm", False),
              ("v0", "opt-13b", ServePlan(dtype="fp16"), "vllm-v0", True),
              ("sglang_tp2", "llama-2-7b", ServePlan(tp=2), "sglang", True))}


def _general(table: StepTable, seqs: int, kv_sum0: float, k: int) -> tuple[list, float]:
    """decode_run as it was before its two-line case was inlined."""
    pieces = envelope(table.decode_lines(seqs, kv_sum0), k)
    if len(pieces) == 1:
        s, e, a, b = pieces[0]
        return pieces, line_sum(s, e, a, b)
    return pieces, pieces_sum(pieces)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(TABLES)), st.integers(1, 256), st.floats(0.0, 4000.0), st.integers(1, 5000))
def test_decode_run_two_line_case_is_the_general_path(name, seqs, mean_context, k):
    table = TABLES[name]
    kv_sum0 = float(round(mean_context * seqs))
    table.decode_lines(seqs, kv_sum0)  # caches the batch size's coefficients, as the first run of a size does
    assert table.decode_run(seqs, kv_sum0, k) == _general(table, seqs, kv_sum0, k)


def test_decode_run_two_line_case_covers_both_pieces_and_crossings():
    """The inlined case is taken (two lines, cached coefficients) and meets runs where the memory line leads, where the
    compute line leads, and where they cross inside the run."""
    table = TABLES["vllm"]
    assert table._two_lines
    shapes = set()
    for seqs in (1, 8, 64, 256):
        co = table._decode_coef(seqs)
        assert co[4] <= 0  # CUDA graphs: no host floor line, so the inlined path runs
        for kv_sum0 in np.geomspace(1.0, 4e6 * seqs, 60).round():
            for k in (2, 50, 4000):
                pieces, total = table.decode_run(seqs, float(kv_sum0), k)
                assert (pieces, total) == _general(table, seqs, float(kv_sum0), k)
                shapes.add((len(pieces), pieces[-1][3] == co[1] * seqs))
    assert shapes == {(1, True), (1, False), (2, True)}


def _decode_set(cls: type, bs: int, joins: list[tuple[int, int, int]]) -> DecodeSet:
    req = Requests(np.array([c for c, _, _ in joins]), np.array([o for _, o, _ in joins]), None)
    kv = cls(req, bs, 10**9)
    for rid, (_, _, gap) in enumerate(joins):
        kv.advance(gap)
        req.gen[rid] = 1
        kv.join(rid)
    return kv  # sequences that finished during the gaps have left


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 2, 3, 16]),
       st.lists(st.tuples(st.integers(1, 100), st.integers(2, 200), st.integers(0, 40)), min_size=1, max_size=8),
       st.integers(1, 120))
def test_advance_allocates_cum_demand(bs, joins, k):
    kv = _decode_set(DecodeSet, bs, joins)
    if not kv.ids or kv.steps_until_finish() < 2:
        return
    k = min(k, kv.steps_until_finish() - 1)  # nobody finishes (leaving would free blocks)
    want = kv.used + kv.cum_demand(k)
    kv.advance(k)
    assert kv.used == want
    reserved = _decode_set(ReservedDecodeSet, bs, joins)
    before = reserved.used
    reserved.advance(k)
    assert reserved.used == before  # no-evict: decode steps take no blocks


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 4, 16]),
       st.lists(st.tuples(st.integers(1, 100), st.integers(2, 60), st.integers(0, 10)), min_size=2, max_size=8),
       st.data())
def test_run_length_peek_is_steps_until_finish(bs, joins, data):
    """run_length reads the heap's earliest entry when it is current, else drops stale ones (steps_until_finish);
    both give the steps to the first finish, also after sequences left and joined again."""
    kv = _decode_set(DecodeSet, bs, joins)
    req = kv.req
    for rid in data.draw(st.lists(st.sampled_from(sorted(kv.ids)), max_size=3, unique=True)):
        kv.leave(rid)  # its heap entry goes stale
        if data.draw(st.booleans()):
            req.todo[rid] = req.prompt[rid] + req.gen[rid]
            kv.join(rid)  # a new entry, a new epoch
    if not kv.ids:
        return
    want = min(req.d_join[r] + req.output[r] - req.g_join[r] for r in kv.ids) - kv.steps  # first finishing step
    assert kv.run_length() == want
    assert kv.steps_until_finish() == want


@pytest.mark.parametrize("name", sorted(TABLES))
def test_fast_and_general_paths_agree_on_a_grid(name):
    table = TABLES[name]
    for seqs in (1, 3, 17, 255):
        for kv_sum0 in (0.0, 100.0 * seqs, 2000.0 * seqs):
            table.decode_lines(seqs, kv_sum0)
            for k in (1, 2, 3, 700):
                assert table.decode_run(seqs, kv_sum0, k) == _general(table, seqs, kv_sum0, k)
