"""Attention microbenchmarks: causal SDPA prefill over sequence lengths, its backward pass, and decode (one query
per sequence against KV caches of many lengths and batch sizes).

Each sample records FLOPs and bytes in capsim.analytic.ops' convention (flash kernel: 4 * causal pairs * heads *
head_dim FLOPs; backward 2.5x, FlashAttention-2 Sec. 3.1.2), the query rows (query tokens x heads) and the keys
per sequence that capsim.perf's attention efficiency reads.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.harness import rotating, time_fn
from kernels.ops import DTYPES, causal_attention, decode_attention, merge_heads, split_heads

HEAD_DIM = 64
PREFILL = {  # (sequences, heads, kv_heads, sequence length)
    "quick": [(b, h, kv, s) for s, batches in ((64, (1, 8)), (128, (1, 4)), (256, (1, 2, 4)), (512, (1, 2)),
                                                (1024, (1,)))
              for b in batches for h, kv in ((4, 4), (8, 2), (16, 16))],
    "full": [(b, h, kv, s) for s, batches in ((32, (1, 16)), (64, (1, 8)), (128, (1, 4, 16)), (256, (1, 2, 4, 8)),
                                               (512, (1, 2, 4)), (1024, (1, 2)), (2048, (1,)))
             for b in batches for h, kv in ((4, 4), (8, 8), (16, 16), (8, 2), (16, 4), (32, 8))],
}
DECODE = {  # (sequences, heads, kv_heads, cached keys)
    "quick": [(b, h, kv, t) for b in (1, 4, 16) for t in (64, 256, 1024) for h, kv in ((4, 4), (8, 2), (16, 16))],
    "full": [(b, h, kv, t) for b in (1, 2, 4, 8, 16, 32) for t in (32, 128, 512, 2048)
             for h, kv in ((4, 4), (8, 8), (16, 16), (8, 2), (16, 4), (32, 8))],
}


def attention_cases(mode: str = "quick", dtype: str = "fp32", training: bool = True) -> list[dict]:
    cases = []
    for b, h, kv, s in PREFILL[mode]:
        for p in ("fwd", "bwd") if training else ("fwd",):
            cases.append({"bench": "attention", "pass": p, "sequences": b, "heads": h, "kv_heads": kv, "q_len": s,
                          "kv_len": s, "head_dim": HEAD_DIM, "dtype": dtype})
    for b, h, kv, t in DECODE[mode]:
        cases.append({"bench": "attention", "pass": "decode", "sequences": b, "heads": h, "kv_heads": kv,
                      "q_len": 1, "kv_len": t, "head_dim": HEAD_DIM, "dtype": dtype})
    return cases


def attention_cost(case: dict, element_bytes: float) -> dict[str, float]:
    """FLOPs, bytes, query rows and keys per sequence of a case, as capsim.analytic.ops prices it."""
    b, h, kv, q, t, d = (case[k] for k in ("sequences", "heads", "kv_heads", "q_len", "kv_len", "head_dim"))
    q_bytes = b * q * h * d * element_bytes
    kv_bytes = 2 * b * t * kv * d * element_bytes
    if case["pass"] == "decode":  # serving_layer_ops: every cached key is visited once
        flops, read, written = 4.0 * b * t * h * d, q_bytes + kv_bytes, q_bytes
    else:  # attention_ops (flash): causal pairs
        flops, read, written = 4.0 * b * q * (q + 1) / 2 * h * d, q_bytes + kv_bytes, q_bytes
        if case["pass"] == "bwd":  # backward_ops
            flops, read, written = 2.5 * flops, read + 2 * written, read
    return {"flops": flops, "bytes": read + written, "query_rows": float(b * q * h), "kv_per_seq": float(t)}


def run_attention(case: dict, device: str = "cpu", repeats: int = 5, min_repeat_s: float = 0.005) -> dict[str, Any]:
    """Time attention as a layer runs it: heads split from a fused QKV projection, the kernel, heads merged for the
    output projection. Decode reads KV caches that rotate through enough copies to be cold (harness.rotating)."""
    b, h, kv, q, t, d = (case[k] for k in ("sequences", "heads", "kv_heads", "q_len", "kv_len", "head_dim"))
    dt = DTYPES[case["dtype"]]
    esize = torch.finfo(dt).bits / 8
    qkv = torch.randn(b, q, (h + 2 * kv) * d, device=device, dtype=dt, requires_grad=case["pass"] == "bwd")
    if case["pass"] == "decode":
        def caches() -> tuple[torch.Tensor, torch.Tensor]:  # room for one more token, read up to t
            k_cache, v_cache = (torch.randn(b, kv, t + 1, d, device=device, dtype=dt) for _ in range(2))
            return k_cache[:, :, :t], v_cache[:, :, :t]

        nxt = rotating(caches, 2 * b * kv * t * d * esize, device)

        def fn() -> torch.Tensor:
            query = split_heads(qkv, h, kv, d)[0]
            return merge_heads(decode_attention(query, *nxt()))
    else:
        def fwd() -> torch.Tensor:
            return merge_heads(causal_attention(*split_heads(qkv, h, kv, d)))

        fn = fwd
        if case["pass"] == "bwd":
            out = fwd()
            g = torch.randn_like(out)
            fn = lambda: torch.autograd.grad(out, qkv, g, retain_graph=True)  # noqa: E731
    timing = time_fn(fn, device, repeats=repeats, min_repeat_s=min_repeat_s)
    return {**case, **attention_cost(case, esize), "time_s": timing.median_s, "timing": timing.to_dict()}
