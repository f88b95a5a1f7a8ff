"""The names of memory-bound op categories, shared by the microbenchmarks that measure them (``kernels/memory.py``
stores each timing under ``memory_key``) and the device model that reads them (``Perf.memory_kind``).

A key is ``category``, ``category:variant`` where models differ (``norm:rmsnorm``), and ``.bwd`` for a backward
pass. ``Perf`` prices an op at the most specific key its calibration holds (``candidate_keys``), falling back to
the streaming bandwidth for a category nobody measured; ``tests/test_calibration_keys.py`` checks that every key
the microbenchmarks store is one Perf reads and every category Perf prices is one they measure.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    NORM = "norm"  # layernorm / RMSNorm (op kind "norm")
    SOFTMAX = "softmax"  # row-wise softmax: attention probabilities and the LM loss over the vocabulary
    ACTIVATION = "activation"  # the MLP's GeLU or SiLU * gate
    ROPE = "rope"  # rotary position embedding
    EMBEDDING = "embedding"  # token embedding lookup
    OPTIMIZER = "optimizer"  # the optimizer step over the parameters
    STREAM = "stream"  # plain elementwise: residual adds, dropout, copies


# capsim.analytic.ops op name (before ".bwd") -> category; a norm-kind op is NORM, anything else STREAM.
OP_CATEGORY: dict[str, Category] = {
    "softmax": Category.SOFTMAX, "logits_softmax": Category.SOFTMAX, "mlp_act": Category.ACTIVATION,
    "rope": Category.ROPE, "embedding": Category.EMBEDDING, "adam": Category.OPTIMIZER,
}

# kernels/memory.py benchmark op -> (category, variant) it measures. The variant must be the ``impl`` the op list
# tags the priced op with (ops.tag_variants, optimizer_ops, the KV-cache write), or "" for the plain category.
BENCHED: dict[str, tuple[Category, str]] = {
    "layernorm": (Category.NORM, "layernorm"), "rmsnorm": (Category.NORM, "rmsnorm"),
    "cross_entropy": (Category.SOFTMAX, ""),  # the LM loss (ops' logits_softmax), a row-wise softmax
    "gelu": (Category.ACTIVATION, "gelu"), "swiglu": (Category.ACTIVATION, "swiglu"), "rope": (Category.ROPE, ""),
    "add": (Category.STREAM, ""), "copy": (Category.STREAM, "copy"), "embedding": (Category.EMBEDDING, ""),
    "adam": (Category.OPTIMIZER, "adam"),
}


def memory_key(category: Category | str, variant: str = "", backward: bool = False) -> str:
    """The calibration key of one measurement: ``category[:variant][.bwd]``."""
    return Category(category).value + (f":{variant}" if variant else "") + (".bwd" if backward else "")


def category_of(name: str, kind: str) -> Category:
    """The category that prices an op of capsim.analytic.ops, by its name and kind."""
    if kind == "norm":
        return Category.NORM
    return OP_CATEGORY.get(name.split(".")[0], Category.STREAM)


def candidate_keys(name: str, kind: str, impl: str = "") -> tuple[str, ...]:
    """The keys that may price an op, most specific first: ``category:impl.bwd``, ``category:impl``,
    ``category.bwd``, ``category`` (the ``.bwd`` ones only for a backward op)."""
    base, bwd = category_of(name, kind), name.endswith(".bwd")
    keys = [memory_key(base, impl, True), memory_key(base, impl)] if impl else []
    keys += [memory_key(base, "", True), memory_key(base)]
    return tuple(k for k in dict.fromkeys(keys) if bwd or not k.endswith(".bwd"))


__all__ = ["BENCHED", "OP_CATEGORY", "Category", "candidate_keys", "category_of", "memory_key"]
