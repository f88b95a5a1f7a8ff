"""GEMM microbenchmarks shaped as a decoder layer's linear ops, over token counts and widths.

Operands rotate through enough copies to evict the last-level cache (harness.rotating): in a model the weights
come from memory, not from a cache the previous repeat warmed.

Shapes follow capsim.analytic.ops: a linear op is C[m, n] = A[m, k] @ B[k, n] with m tokens. Training's backward
products are timed as autograd runs them (grad_input = grad_out @ W, grad_W = grad_out^T @ x) and recorded in
capsim's convention: data gradient (m, k, n), weight gradient (k, n, m).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from kernels.harness import rotating, time_fn
from kernels.ops import DTYPES

WIDTHS = {"quick": (256, 512, 1024), "full": (128, 256, 512, 768, 1024, 1536, 2048)}
# Full mode stops at 2048 tokens: on a 2-core CPU the 4096-token products alone took about 8 of the full run's
# CPU-minutes (a 1-in-7 sample of the grid), and ran at 0.99x the rate of the same shapes at 2048 tokens (median
# over 110 shapes, p10-p90 0.88-1.17): past 1024 tokens a CPU GEMM is on its plateau.
TOKENS = {"quick": (1, 4, 16, 64, 128, 256, 512, 1024), "full": (1, 4, 16, 64, 128, 256, 512, 1024, 2048)}
VOCAB = 8192  # LM-head width of the grid (a small vocabulary; n is interpolated in log2 for others)
HEAD_DIM = 64
BACKWARD_MIN_TOKENS = 64  # training runs the backward products only on whole micro-batches
# The prepacked path is an inference engine's: forward only, and the decode batch sizes in between the grid's
# (a decode step of B running sequences is an [B, k] @ [k, n] product); past 512 tokens it is compute bound and
# runs at the plain path's rate (1.0-1.1x on this project's 2-core EPYC at 64 tokens, measured 2026-12-06).
# The same token counts in both modes (the modes differ in the widths they time).
PACKED_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# An engine's weights have run before a step meets a new token count (its warm-up, its earlier steps), so the cost
# it pays then is a new row count's alone. Each packed case first runs its weight at this row count, which no case
# times, so that its timed first call is that and not the weight shape's first use (which costs more at few rows:
# benchmarks/vllm_cpu_first_call_ops.py, vLLM's onednn_mm and this path side by side).
WARM_ROWS = 3


def layer_linears(hidden: int, gated: bool) -> dict[str, tuple[int, int]]:
    """(n, k) of each linear op of a GPT-style (MHA, 4h GeLU MLP) or Llama-style (GQA 4:1, SwiGLU) layer."""
    if gated:  # Llama: ffn = 8h/3 rounded to 64 (Touvron et al. 2023, Sec. 2.2), kv heads = heads / 4
        ffn, kv_dim = 64 * round(8 * hidden / 3 / 64), hidden // 4
        return {"qkv": (hidden + 2 * kv_dim, hidden), "attn_out": (hidden, hidden), "mlp_up": (2 * ffn, hidden),
                "mlp_down": (hidden, ffn), "lm_head": (VOCAB, hidden)}
    return {"qkv": (3 * hidden, hidden), "attn_out": (hidden, hidden), "mlp_up": (4 * hidden, hidden),
            "mlp_down": (hidden, 4 * hidden), "lm_head": (VOCAB, hidden)}


def gemm_cases(mode: str = "quick", dtypes: tuple[str, ...] = ("fp32",), training: bool = True) -> list[dict]:
    """Every (pass, M, N, K, dtype) to time, deduplicated; M, N, K are the forward product's sizes."""
    seen, cases = set(), []
    for dtype in dtypes:
        lowp = dtype != dtypes[0]
        widths = WIDTHS[mode][::2] if lowp else WIDTHS[mode]  # other formats: a sparser grid
        tokens = TOKENS[mode][::2] if lowp else TOKENS[mode]
        for hidden in widths:
            for gated in (False, True):
                for op, (n, k) in layer_linears(hidden, gated).items():
                    for m in tokens:
                        if dtype == "fp8" and m % 16:  # torch._scaled_mm needs every size a multiple of 16
                            continue
                        backward = training and m >= BACKWARD_MIN_TOKENS and dtype != "fp8"  # fp8: forward only
                        passes = ("fwd", "dgrad", "wgrad") if backward else ("fwd",)
                        for p in passes:
                            key = (p, m, n, k, dtype)
                            if key not in seen:
                                seen.add(key)
                                cases.append({"bench": "gemm", "op": op, "pass": p, "M": m, "N": n, "K": k,
                                              "dtype": dtype})
    return cases


def packed_gemm_cases(mode: str = "quick", dtypes: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Every forward (M, N, K, dtype) to time on the prepacked oneDNN path (:func:`run_packed_gemm`): the layer
    shapes of :func:`gemm_cases` at :data:`PACKED_TOKENS`; a CPU path, so fp8 is never among them."""
    seen, cases = set(), []
    for dtype in (d for d in dtypes if d != "fp8"):
        widths = WIDTHS[mode][::2] if dtype != dtypes[0] else WIDTHS[mode]
        for hidden in widths:
            for gated in (False, True):
                for op, (n, k) in layer_linears(hidden, gated).items():
                    for m in PACKED_TOKENS:
                        if (m, n, k, dtype) not in seen:
                            seen.add((m, n, k, dtype))
                            cases.append({"bench": "gemm_packed", "path": "onednn_packed", "op": op, "pass": "fwd",
                                          "M": m, "N": n, "K": k, "dtype": dtype})
    return cases


def run_packed_gemm(case: dict, device: str = "cpu", repeats: int = 5, min_repeat_s: float = 0.005) -> dict[str, Any]:
    """Time one forward linear on weights prepacked once into oneDNN's blocked layout, as vLLM's CPU backend runs
    its dense projections and LM head (vllm/model_executor/layers/utils.py dispatch_cpu_unquantized_gemm, 0.32.0:
    ``ops.create_onednn_mm`` reorders the weight once, ``ops.onednn_mm`` runs a oneDNN matmul per call). torch's
    own oneDNN linear does the same: ``mkldnn._reorder_linear_weight`` (the weight reorder inductor's freezing
    pass uses) and ``mkldnn._linear_pointwise`` (a oneDNN inner product on the packed weight)."""
    if str(device).startswith("cuda"):
        raise RuntimeError("the prepacked oneDNN path is a CPU path; time it with --device cpu")
    m, n, k = case["M"], case["N"], case["K"]
    dt = DTYPES[case["dtype"]]

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(m, k, dtype=dt) - 0.5
        return x, torch.ops.mkldnn._reorder_linear_weight(torch.rand(n, k, dtype=dt) - 0.5, None)

    esize = torch.finfo(dt).bits // 8
    operands = rotating(make, esize * (m * k + n * k), device)
    linear = torch.ops.mkldnn._linear_pointwise
    # The first call of a row count this weight has not run: oneDNN creates (JIT-compiles) the primitive for it and
    # keeps it in its primitive cache, so an engine pays this once per new token count (capsim: GemmParams.first_call)
    linear(torch.rand(WARM_ROWS, k, dtype=dt) - 0.5, operands()[1], None, "none", [], "")
    start = time.thread_time()
    linear(*operands(), None, "none", [], "")
    first_s = time.thread_time() - start
    timing = time_fn(lambda: linear(*operands(), None, "none", [], ""), device, repeats=repeats,
                     min_repeat_s=min_repeat_s)
    return {**case, "m": m, "n": n, "k": k, "flops": 2.0 * m * n * k, "bytes": float((m * k + k * n + m * n) * esize),
            "time_s": timing.median_s, "first_call_s": first_s, "timing": timing.to_dict()}


def capsim_shape(case: dict) -> tuple[int, int, int]:
    """(m, n, k) of the product a pass performs, in capsim.analytic.ops.backward_ops' convention."""
    m, n, k = case["M"], case["N"], case["K"]
    return {"fwd": (m, n, k), "dgrad": (m, k, n), "wgrad": (k, n, m)}[case["pass"]]


def _fp8_call(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """fp8 e4m3 GEMM through torch._scaled_mm (Hopper/Ada; B must be column-major). Operands are converted
    once per copy, outside the timed call, by :func:`run_gemm`'s rotation."""
    one = torch.ones((), device=x.device)
    return torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def fp8_available(device: str) -> bool:
    return str(device).startswith("cuda") and torch.cuda.get_device_capability(device) >= (8, 9)


def run_gemm(case: dict, device: str = "cpu", repeats: int = 5, min_repeat_s: float = 0.005) -> dict[str, Any]:
    """Time one case; returns the sample (capsim shape, bytes moved, timing)."""
    m, n, k, p = case["M"], case["N"], case["K"], case["pass"]
    fp8 = case["dtype"] == "fp8"
    dt = torch.bfloat16 if fp8 else DTYPES[case["dtype"]]

    def rand(*shape: int) -> torch.Tensor:
        x = torch.rand(*shape, device=device, dtype=dt) - 0.5
        return x.to(torch.float8_e4m3fn) if fp8 else x

    shapes = {"fwd": ((m, k), (n, k)), "dgrad": ((m, n), (n, k)), "wgrad": ((m, n), (m, k))}[p]
    esize = 1 if fp8 else torch.finfo(dt).bits / 8
    operands = rotating(lambda: tuple(rand(*sh) for sh in shapes), esize * sum(a * b for a, b in shapes), device)
    if fp8:
        fn = lambda: _fp8_call(*operands())  # noqa: E731
    else:
        call = {"fwd": F.linear, "dgrad": lambda g, w: g @ w, "wgrad": lambda g, x: g.t() @ x}[p]
        fn = lambda: call(*operands())  # noqa: E731
    timing = time_fn(fn, device, repeats=repeats, min_repeat_s=min_repeat_s)
    cm, cn, ck = capsim_shape(case)
    nbytes = (cm * ck + ck * cn + cm * cn) * (1 if fp8 else torch.finfo(dt).bits // 8)
    return {**case, "m": cm, "n": cn, "k": ck, "flops": 2.0 * m * n * k, "bytes": float(nbytes),
            "time_s": timing.median_s, "timing": timing.to_dict()}
