"""The transient buffers of context parallelism's ring attention in the memory model (capsim.analytic.cp_memory):
torch's all-gather rotater holds every rank's K/V, its all-to-all rotater and Transformer Engine's backward a fixed
number of chunks, TE's forward every step's chunk and output; one layer at a time, never a sum over layers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from capsim.analytic.cp_memory import CpRotate, cp_transient_bytes
from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import training_memory
from capsim.specs.catalog import get_model
from capsim.specs.model import ModelSpec
from capsim.specs.precision import Precision
from capsim.validation.harness import read_csv
from capsim.validation.training import predict_row

LLAMA = get_model("llama-3-8b")
LOCAL = 32768  # tokens per GPU, as in torchtitan's Grand Teton CP table (32k x cp)


def _lay(cps: tuple[int, ...], model: ModelSpec = LLAMA) -> Layouts:
    """One layout per cp, each GPU holding ``LOCAL`` tokens of one sequence."""
    cp = np.array(cps)
    return Layouts.build(model, cp=cp, dp=1, seq_len=LOCAL * cp, global_batch=1, micro_batch=1)


def _elems(repeat_kv: bool) -> tuple[float, float]:
    """(Q, KV) elements of one layer on one GPU at ``LOCAL`` tokens."""
    kv_heads = LLAMA.heads if repeat_kv else LLAMA.kv_heads
    return LOCAL * LLAMA.heads * LLAMA.head_dim, LOCAL * kv_heads * (LLAMA.head_dim + LLAMA.v_dim)


def test_no_context_parallelism_no_transient() -> None:
    for rotate in CpRotate:
        assert float(cp_transient_bytes(LLAMA, _lay((1,)), 2.0, rotate)[0]) == 0.0


def test_allgather_transient_grows_by_each_gathered_chunk() -> None:
    # torch's _AllGatherRotater keeps every rank's K, V (cp chunks) from the first step to the return: at a fixed
    # local length each doubling of cp adds the gathered chunks, in bf16, of the expanded heads (repeat_kv)
    t = cp_transient_bytes(LLAMA, _lay((2, 4, 8)), 2.0, CpRotate.ALLGATHER, repeat_kv=True)
    _, kv = _elems(True)
    assert np.all(np.diff(t) > 0)
    assert t[2] - t[1] == pytest.approx(4 * kv * 2.0)
    # the backward's fp32 dK, dV (three copies in flight) dominate: above the gathered K, V alone
    assert t[0] > 3 * kv * 4.0 + 2 * kv * 2.0
    # grouped-query heads as the kernel receives them: expanded heads hold heads/kv_heads times more
    assert t[2] > cp_transient_bytes(LLAMA, _lay((8,)), 2.0, CpRotate.ALLGATHER, repeat_kv=False)[0]


def test_ring_rotaters_hold_a_fixed_number_of_chunks() -> None:
    # torch's all-to-all rotater: the chunk in use, its send copy and the arriving one, whatever cp
    t = cp_transient_bytes(LLAMA, _lay((2, 4, 8)), 2.0, CpRotate.ALLTOALL, repeat_kv=True)
    assert t[0] == pytest.approx(t[1]) and t[1] == pytest.approx(t[2])
    # Transformer Engine's p2p backward: two [kv, dkv] buffers, dq and the step's gradients, bf16, the model's own
    # KV heads (no fp32 accumulators); at cp 2 it is the peak, 2 Q + 5 KV
    te = cp_transient_bytes(LLAMA, _lay((2,)), 2.0, CpRotate.P2P)
    q, kv = _elems(False)
    assert te[0] == pytest.approx((2 * q + 5 * kv) * 2.0)
    # its forward keeps every step's K/V chunk and output in lists until it returns: at a large cp that grows
    big = cp_transient_bytes(LLAMA, _lay((16, 32)), 2.0, CpRotate.P2P)
    lse = LOCAL * LLAMA.heads * 4.0
    assert big[1] - big[0] == pytest.approx(16 * ((kv + q) * 2.0 + lse))


@pytest.mark.parametrize("rotate", list(CpRotate))
def test_transient_is_one_layers_peak_not_a_sum_over_layers(rotate: CpRotate) -> None:
    # the ring's buffers are locals of its forward / backward, freed when it returns (what they save is the size a
    # layer without context parallelism saves): at the same tokens per GPU, cp 4 adds one layer's transient to the
    # temporary bytes, the same for 16 and 32 layers, and leaves the saved activations as they are
    prec = Precision.preset("bf16")
    for layers in (16, 32):
        model = replace(LLAMA, layers=layers)
        lay = _lay((1, 4), model)
        mem = training_memory(model, lay, prec, cp_rotate=rotate, repeat_kv=True)
        ring = float(cp_transient_bytes(model, lay, 2.0, rotate, repeat_kv=True)[1])
        assert ring > 0
        assert mem.activations_bytes[1] == pytest.approx(mem.activations_bytes[0])
        assert mem.temporary_bytes[1] - mem.temporary_bytes[0] == pytest.approx(ring)


def test_torchtitan_grand_teton_cp_rows_memory_grows_with_cp() -> None:
    # torchtitan 9dec370's Grand Teton CP table (FSDP x CP = 8, 32k tokens per GPU, full AC, FP8): without the
    # ring's buffers capsim priced every cp at the same bytes; the all-gather rotater's grow with cp
    rows = [r for r in read_csv(None, "training_torchtitan.csv", ("source",)) if r["source"].endswith("table 2")]
    mem = {int(r["cp"]): predict_row(r, "datasheet").memory_bytes for r in rows}
    assert sorted(mem) == [1, 2, 4, 8]
    assert mem[1] < mem[2] < mem[4] < mem[8]
    model = get_model("llama-3.1-8b")
    gathered = 4 * LOCAL * model.heads * (model.head_dim + model.v_dim) * 2.0  # 4 more bf16 chunks, expanded heads
    assert mem[8] - mem[4] == pytest.approx(gathered, rel=1e-6)
