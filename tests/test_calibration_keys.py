"""One table of memory-bound op categories (capsim.perf.categories): every key the microbenchmarks store is one the
device model reads, and every category the device model prices is one the microbenchmarks measure (issue 11)."""

import pytest

from capsim.analytic.ops import (
    AttentionImpl,
    OpKind,
    Phase,
    StepBatch,
    backward_ops,
    head_ops,
    optimizer_ops,
    serving_layer_ops,
    training_layer_ops,
)
from capsim.perf.categories import BENCHED, Category, candidate_keys, memory_key
from capsim.specs.catalog import get_model
from capsim.specs.precision import Precision

pytest.importorskip("torch")
from kernels.memory import OPS, memory_cases  # noqa: E402  (needs torch)

MODELS = ("gpt3-175b", "llama-3-8b", "mixtral-8x7b", "bert-base")  # gelu/layernorm, swiglu/rmsnorm/rope, MoE, encoder


def _priced_ops() -> list:
    """Every memory-bound op capsim prices: training forward and backward (both attention kernels, with dropout),
    the embedding and loss, the optimizer, and serving prefill and decode."""
    ops = []
    for name in MODELS:
        model = get_model(name)
        for attention in AttentionImpl:
            for phase in Phase:
                ops += training_layer_ops(model, 1, 512, attention=attention, dropout=True, phase=phase)
        head = head_ops(model, 512)
        ops += head + backward_ops(head)
        for batch in (StepBatch.prefill(2, 128), StepBatch.decode(8, 512)):
            ops += serving_layer_ops(model, batch)
    ops += optimizer_ops(1e6, Precision.preset("bf16"))
    return [o for o in ops if o.kind not in (OpKind.GEMM, OpKind.ATTENTION)]


def _measured() -> set[str]:
    return {c["category"] for c in memory_cases("full", training=True)}


def test_every_priced_category_is_measured_and_every_measurement_is_read():
    measured, read, unmeasured = _measured(), set(), set()
    for op in _priced_ops():
        keys = candidate_keys(op.name, op.kind.value, op.impl)
        hit = next((k for k in keys if k in measured), None)
        if hit is None:
            unmeasured.add(f"{op.name} ({', '.join(keys)})")
        read.add(hit)
    assert not unmeasured, f"priced but never measured: {sorted(unmeasured)}"
    assert measured <= read, f"measured but never read: {sorted(measured - read)}"


def test_the_benchmarks_store_the_table_keys():
    assert set(OPS) == set(BENCHED)
    for op, (key, _rw, _bwd) in OPS.items():
        assert key == memory_key(*BENCHED[op])
    # the two mismatches of issue 11: Adam was stored as stream:adam, the loss softmax as norm
    assert OPS["adam"][0] == "optimizer:adam" and OPS["cross_entropy"][0] == Category.SOFTMAX


def test_adam_and_the_loss_read_their_own_measurements():
    adam = optimizer_ops(27.7e6, Precision.preset("fp32"))[0]
    loss = next(o for o in head_ops(get_model("gpt2-124m"), 1024) if o.name == "logits_softmax")
    measured = _measured()
    assert next(k for k in candidate_keys(adam.name, adam.kind.value, adam.impl) if k in measured) == "optimizer:adam"
    assert next(k for k in candidate_keys(loss.name, loss.kind.value, loss.impl) if k in measured) == "softmax"
