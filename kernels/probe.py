"""Short GEMM probes: the machine fingerprint's one-second fp32 rate, and whether a low-precision format runs
natively here.

A measured calibration records the fingerprint probe's rate beside the CPU model, flags and core count, and
`capsim validate local` runs it again: two machines with the same CPU name can still differ (a throttled or
oversubscribed VM, a different memory system), and the probe says so. On a CPU the probes run with one torch thread
timed by that thread's CPU clock (as the microbenchmarks are, kernels/harness.py), so other processes on a shared
machine barely move them.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.harness import CLOCKS, synchronize
from kernels.ops import DTYPES

SIZE = {"cpu": 512, "cuda": 4096}  # square: 2 n^3 FLOPs per product, well inside the GEMM fit's range


def gemm_rate(device: str = "cpu", dtype: str = "fp32", seconds: float = 1.0) -> float:
    """FLOP/s of back-to-back square GEMMs in ``dtype`` for about ``seconds`` (at least three products)."""
    gpu = str(device).startswith("cuda")
    n = SIZE["cuda" if gpu else "cpu"]
    before = torch.get_num_threads()
    if not gpu:
        torch.set_num_threads(1)
    try:
        a, b = (torch.randn(n, n, device=device).to(DTYPES[dtype]) for _ in range(2))
        read = CLOCKS["wall" if gpu else "thread"]
        torch.mm(a, b)  # warm-up: allocator, kernel selection
        synchronize(device)
        calls, t0 = 0, read()
        while (elapsed := read() - t0) < seconds or calls < 3:
            torch.mm(a, b)
            if gpu:
                synchronize(device)
            calls += 1
    finally:
        torch.set_num_threads(before)
    return 2.0 * n**3 * calls / elapsed


def gemm_probe(device: str = "cpu", seconds: float = 1.0) -> dict[str, Any]:
    """The fingerprint's probe: fp32 on one CPU thread (thread clock), bf16 on a GPU (wall clock)."""
    gpu = str(device).startswith("cuda")
    dtype = "bf16" if gpu else "fp32"
    return {"gemm_probe_flops_per_s": gemm_rate(device, dtype, seconds), "gemm_probe_shape": SIZE["cuda" if gpu
            else "cpu"], "gemm_probe_dtype": dtype, "gemm_probe_threads": None if gpu else 1,
            "gemm_probe_clock": "wall" if gpu else "thread"}


def native_formats(candidates: tuple[str, ...], seconds: float = 0.2) -> dict[str, float]:
    """Each CPU format's GEMM rate as a fraction of fp32's, one thread. Far below 1 (bf16 on an AVX2 CPU: under
    2%), torch emulates the format here, and timing its full grid would take hours (capsim.calibration.runner
    leaves such formats out of a full run)."""
    fp32 = gemm_rate("cpu", "fp32", seconds)
    return {d: gemm_rate("cpu", d, seconds) / fp32 for d in candidates}
