"""Issue 12 item 3: the collectives Megatron-Core's all-to-all dispatcher issues besides the tokens' all-to-all:
the per-dispatch all-gather of the routing counts over the expert TP x EP group (forward passes only) and, from core
0.13 (the probabilities scale the experts' activation), the probabilities' own all-to-all (forward and backward)."""

import numpy as np
import pytest

from capsim import Layouts, Precision, get_model
from capsim.analytic.moe import moe_tokens
from capsim.analytic.training import comms, get_framework
from capsim.analytic.training.collectives import collective_s, placement
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import release_for
from capsim.analytic.training.release import MoeDispatcher
from capsim.calibration import load_calibration

PERF = load_calibration("H100-SXM5-80GB").perf()
BF16 = Precision.preset("bf16")
QWEN = get_model("qwen3-30b-a3b")
GPN = 8
# exact balance, probabilities sent with the tokens (core >= 0.13)
CORE = get_framework("megatron-core").with_(moe_dispatcher=MoeDispatcher.ALLTOALL, moe_random_routing=False,
                                            moe_combine_saves=False)


def _lay(**kw) -> Layouts:
    return Layouts.build(QWEN, **{"dp": 16, "ep": 16, "etp": 1, "global_batch": 64, "seq_len": 4096, **kw})


def _ep(lay: Layouts, fw) -> tuple[float, float]:
    fwd, bwd = comms.ep_layer_s(PERF, QWEN, lay, BF16, GPN, micro_batch_times(QWEN, lay, BF16, PERF), fw)
    return float(fwd[0]), float(bwd[0])


def _without_extras(monkeypatch, lay: Layouts, fw) -> tuple[float, float]:
    with monkeypatch.context() as m:
        m.setattr(comms, "_alltoall_extras_s", lambda *a: (np.zeros(len(lay)), np.zeros(len(lay))))
        return _ep(lay, fw)


def test_routing_counts_gather_and_probs_all_to_all_by_hand():
    lay = _lay()  # EP 16 over two nodes of 8
    local = moe_tokens(lay.micro_batch * lay.seq_len, lay.tp, lay.etp, lay.sp)[0]
    meta, probs = comms._alltoall_extras_s(PERF, QWEN, lay, BF16, GPN, CORE, local, 1.0)
    counts = collective_s(PERF, "all_gather", QWEN.experts * 8.0 * 16, placement(np.array([16]), 1, GPN))
    copies = collective_s(PERF, "all_to_all", local * QWEN.top_k * 2.0, placement(np.array([16]), 1, GPN))
    assert meta[0] == pytest.approx(float(np.ravel(counts)[0])) and meta[0] > 0
    assert probs[0] == pytest.approx(float(np.ravel(copies)[0])) and probs[0] > 0


def test_extras_enter_forward_once_and_backward_as_probs_gradient(monkeypatch):
    lay = _lay()
    local = moe_tokens(lay.micro_batch * lay.seq_len, lay.tp, lay.etp, lay.sp)[0]
    meta, probs = (float(x[0]) for x in comms._alltoall_extras_s(PERF, QWEN, lay, BF16, GPN, CORE, local, 1.0))
    (f, b), (f0, b0) = _ep(lay, CORE), _without_extras(monkeypatch, lay, CORE)
    assert f - f0 == pytest.approx(meta + probs)
    assert b - b0 == pytest.approx(probs)  # the counts are not differentiated
    full = _lay(recompute=2)  # full recomputation replays the forward's gather and probabilities once more
    (f, b), (f0, b0) = _ep(full, CORE), _without_extras(monkeypatch, full, CORE)
    assert b - b0 == pytest.approx(2 * probs + meta)


def test_probs_all_to_all_only_where_probs_travel_with_the_tokens():
    lay = _lay()
    local = moe_tokens(lay.micro_batch * lay.seq_len, lay.tp, lay.etp, lay.sp)[0]
    meta, probs = comms._alltoall_extras_s(PERF, QWEN, lay, BF16, GPN, CORE.with_(moe_combine_saves=True), local, 1.0)
    assert meta[0] > 0 and probs[0] == 0.0  # core <= 0.12: the combine applies the probabilities locally
    assert release_for("megatron-core", "megatron-bridge-26.04").configure("")[0].moe_combine_saves is False


@pytest.mark.parametrize("dispatcher", [MoeDispatcher.FLEX, MoeDispatcher.ALLGATHER])
def test_other_dispatchers_and_no_expert_parallelism_issue_none(dispatcher):
    lay = _lay()
    local = moe_tokens(lay.micro_batch * lay.seq_len, lay.tp, lay.etp, lay.sp)[0]
    other = comms._alltoall_extras_s(PERF, QWEN, lay, BF16, GPN, CORE.with_(moe_dispatcher=dispatcher), local, 1.0)
    assert not np.any(other[0]) and not np.any(other[1])
    alone = Layouts.build(QWEN, dp=1, ep=1, etp=1, global_batch=1, seq_len=4096)
    none = comms._alltoall_extras_s(PERF, QWEN, alone, BF16, GPN, CORE, np.array([4096.0]), 1.0)
    assert not np.any(none[0]) and not np.any(none[1])


def test_counts_gather_stays_exposed_under_a2a_overlap(monkeypatch):
    lay = _lay(global_batch=256)  # 16 micro-batches: most forwards paired with a backward
    overlap = CORE.with_(overlap_moe_a2a=True)
    local = moe_tokens(lay.micro_batch * lay.seq_len, lay.tp, lay.etp, lay.sp)[0]
    meta = float(comms._alltoall_extras_s(PERF, QWEN, lay, BF16, GPN, overlap, local, 1.0)[0][0])
    f, _ = _ep(lay, overlap)
    f0, _ = _without_extras(monkeypatch, lay, overlap)
    assert f - f0 >= meta  # on the compute stream: no phase hides it
