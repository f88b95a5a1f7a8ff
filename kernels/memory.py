"""Memory-bound microbenchmarks, to fit achieved bandwidth per op category of capsim.perf (``Perf.category``):
layernorm/RMSNorm (norm), the LM loss's softmax (softmax), GeLU and SiLU*gate (activation), rotary embedding (rope),
residual add and cache copy (stream), Adam over a flat buffer (optimizer), and embedding lookup (embedding); the
keys are capsim.perf.categories'.

``bytes`` follows capsim.analytic.ops: an op over N elements of b bytes reads and writes whole tensors (a norm
2Nb, an add 3Nb, SiLU*gate 3Nb, Adam 28 bytes per fp32 parameter: ``optimizer_ops``); a backward pass reads what
the forward read and wrote and writes what it read (``backward_ops``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from capsim.perf.categories import BENCHED, memory_key
from kernels.harness import time_fn
from kernels.ops import DTYPES, adam_step, gelu, layer_norm, rms_norm, rope, rope_tables, split_heads, swiglu

# From a decode step's few thousand elements (per-call overhead) to a training step's tens of millions.
ELEMENTS = {"quick": (2**9, 2**11, 2**13, 2**15, 2**18, 2**20, 2**22),
            "full": (2**9, 2**10, 2**11, 2**12, 2**13, 2**14, 2**16, 2**18, 2**20, 2**21, 2**22, 2**23, 2**24, 2**25)}
ROPE_HEADS = (8, 2)  # query and KV heads of the fused projection rope is timed on (a GQA layer)
WIDTH = 1024  # row width of the row-wise ops
VOCAB = 8192
# op -> (capsim.perf memory key, (reads, writes) in tensors of N elements, has a backward pass in training).
# Keys come from capsim.perf.categories (BENCHED, memory_key), the one table Perf reads them by; backward adds ``.bwd``.
_TRAFFIC: dict[str, tuple[tuple[float, float], bool]] = {
    "layernorm": ((1, 1), True), "rmsnorm": ((1, 1), True), "cross_entropy": ((1, 1), True),
    "gelu": ((1, 1), True), "swiglu": ((2, 1), True), "rope": ((1, 1), True), "add": ((2, 1), True),
    "copy": ((1, 1), False), "embedding": ((1, 1), False),
    "adam": ((16 / 4, 12 / 4), False),  # optimizer_ops, fp32: 16 B read, 12 B written per parameter
}
OPS: dict[str, tuple[str, tuple[float, float], bool]] = {
    op: (memory_key(*BENCHED[op]), rw, bwd) for op, (rw, bwd) in _TRAFFIC.items()}


def memory_cases(mode: str = "quick", dtype: str = "fp32", training: bool = True) -> list[dict]:
    """Sizes are powers of two from 1024 elements, so every row-wise op covers exactly N elements."""
    cases = []
    for op, (category, _rw, has_bwd) in OPS.items():
        for n in ELEMENTS[mode]:
            for p in ("fwd", "bwd") if training and has_bwd else ("fwd",):
                key = category + (".bwd" if p == "bwd" else "")
                cases.append({"bench": "memory", "op": op, "pass": p, "category": key, "elements": n,
                              "dtype": dtype})
    return cases


def _inputs(op: str, n: int, dt: torch.dtype, device: str, grad: bool) -> tuple[Callable[[], Any], list]:
    """(forward function, tensors needing gradients) of ``op`` over ``n`` elements."""
    def t(*shape: int, rg: bool = grad) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=dt).requires_grad_(rg)

    cols = min(WIDTH, n)
    rows = n // cols
    if op in ("layernorm", "rmsnorm"):
        x, w, b = t(rows, cols), t(cols), t(cols)
        return ((lambda: layer_norm(x, w, b)) if op == "layernorm" else (lambda: rms_norm(x, w))), [x, w]
    if op == "cross_entropy":  # the LM loss over vocabulary-wide logits (capsim's logits_softmax)
        logits = t(max(n // VOCAB, 1), min(n, VOCAB))
        target = torch.randint(0, logits.shape[1], (logits.shape[0],), device=device)
        return (lambda: torch.nn.functional.cross_entropy(logits, target)), [logits]
    if op == "gelu":
        x = t(n)
        return (lambda: gelu(x)), [x]
    if op == "swiglu":
        x = t(rows, 2 * cols)
        return (lambda: swiglu(x)), [x]
    if op == "rope":  # as a layer runs it: on q and on k, split from a fused QKV projection
        h, kv = ROPE_HEADS
        tokens = max(n // ((h + kv) * 64), 1)
        qkv = t(1, tokens, (h + 2 * kv) * 64)
        cos, sin = rope_tables(tokens, 64, dt, device)

        def fwd() -> tuple[torch.Tensor, torch.Tensor]:
            q, k, _v = split_heads(qkv, h, kv, 64)
            return rope(q, cos, sin), rope(k, cos, sin)

        return fwd, [qkv]
    if op == "add":
        x, y = t(n), t(n)
        return (lambda: x + y), [x]
    if op == "copy":  # a KV-cache write: into a strided slice of a larger buffer
        src, dst = t(n // 64, 64, rg=False), t(n // 64, 128, rg=False)
        return (lambda: dst[:, :64].copy_(src)), []
    if op == "embedding":
        table = t(VOCAB, cols)
        ids = torch.randint(0, VOCAB, (rows,), device=device)
        return (lambda: torch.nn.functional.embedding(ids, table)), [table]
    if op == "adam":  # optimizer state is fp32 whatever the model's format (optimizer_ops prices it so)
        p, g, m, v = (torch.randn(n, device=device, dtype=torch.float32) for _ in range(4))
        steps = [torch.ones((), device=device)]
        return (lambda: adam_step([p], [g], [m], [v], steps)), []
    raise KeyError(op)


def elements(case: dict) -> int:
    """Elements the op really touches (rope: whole tokens of the q and k heads)."""
    n = case["elements"]
    if case["op"] == "rope":
        h, kv = ROPE_HEADS
        return max(n // ((h + kv) * 64), 1) * (h + kv) * 64
    return n


def memory_bytes(case: dict, element_bytes: float) -> float:
    _category, (reads, writes), _bwd = OPS[case["op"]]
    if case["op"] == "adam":
        element_bytes = 4.0  # optimizer state is fp32 whatever the model's format
    if case["pass"] == "bwd":
        reads, writes = reads + writes, reads
    return (reads + writes) * elements(case) * element_bytes


def run_memory(case: dict, device: str = "cpu", repeats: int = 5, min_repeat_s: float = 0.005) -> dict[str, Any]:
    dt = DTYPES[case["dtype"]]
    grad = case["pass"] == "bwd"
    fwd, needs_grad = _inputs(case["op"], case["elements"], dt, device, grad)
    if grad and case["op"] == "add":  # a residual's backward: autograd sums the two branches' gradients
        g1, g2 = (torch.rand(case["elements"], device=device, dtype=dt) for _ in range(2))
        fn = lambda: g1 + g2  # noqa: E731
    elif grad:
        out = fwd()
        out = out if isinstance(out, tuple) else (out,)
        g = tuple(torch.randn_like(o) for o in out)
        fn = lambda: torch.autograd.grad(out, needs_grad, g, retain_graph=True)  # noqa: E731
    else:
        fn = fwd
    timing = time_fn(fn, device, repeats=repeats, min_repeat_s=min_repeat_s)
    return {**case, "bytes": memory_bytes(case, torch.finfo(dt).bits / 8), "time_s": timing.median_s,
            "timing": timing.to_dict()}
