"""A CPU calibration that measured two formats (fp32, and bf16 where the CPU has units for it) prices each format's
attention and memory-bound kernels at its own measurements (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.analytic.primitives import Op, OpKind
from capsim.calibration.measured import fit_device
from capsim.perf import Perf

pytest.importorskip("torch")
from kernels.attention import attention_cases, attention_cost  # noqa: E402
from kernels.gemm import capsim_shape, gemm_cases  # noqa: E402
from kernels.memory import memory_bytes, memory_cases  # noqa: E402

RATE = {"fp32": 80e9, "bf16": 160e9}  # GEMM FLOP/s
ATTN_SLOW = {"fp32": 1.0, "bf16": 3.0}  # bf16 attention 3x its roofline share slower than fp32's
BW = {"fp32": 20e9, "bf16": 8e9}  # memory-bound bytes/s (bf16 pays conversions)
ESIZE = {"fp32": 4.0, "bf16": 2.0}


def _samples() -> list[dict]:
    out = []
    for c in gemm_cases("quick", ("fp32", "bf16")):
        m, n, k = capsim_shape(c)
        flops = 2.0 * m * n * k
        out.append({**c, "m": m, "n": n, "k": k, "flops": flops, "bytes": ESIZE[c["dtype"]] * (m * k + k * n + m * n),
                    "time_s": 5e-6 + flops / RATE[c["dtype"]]})
    for fmt in ("fp32", "bf16"):
        for c in attention_cases("quick", fmt):
            cost = attention_cost(c, ESIZE[fmt])
            t = 1e-5 + ATTN_SLOW[fmt] * (cost["flops"] / (0.5 * RATE[fmt]) + cost["bytes"] / 20e9)
            out.append({**c, **cost, "time_s": t})
        for c in memory_cases("quick", fmt):
            b = memory_bytes(c, ESIZE[fmt])
            out.append({**c, "bytes": b, "time_s": 2e-6 + b / BW[fmt]})
    return out


@pytest.fixture(scope="module")
def perf() -> Perf:
    params, _ = fit_device(_samples(), "two-formats", "test cpu", memory_bytes=1e10)
    return Perf(params)


def test_both_peaks_are_measured(perf):
    assert perf.peak("fp32") == pytest.approx(RATE["fp32"], rel=0.05)
    assert perf.peak("bf16") == pytest.approx(RATE["bf16"], rel=0.05)


@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
@pytest.mark.parametrize("n", [1 << 19, 1 << 20, 1 << 21])  # the same bytes as the other format's measured sizes
def test_memory_bound_ops_read_their_own_format(perf, fmt, n):
    op = Op("norm", OpKind.NORM, 0.0, n * ESIZE[fmt], n * ESIZE[fmt], (n,), dtype=fmt, impl="rmsnorm")
    expected = 2e-6 + 2 * n * ESIZE[fmt] / BW[fmt]
    assert perf.op_s(op) == pytest.approx(expected, rel=0.15)


def test_attention_reads_its_own_format(perf):
    case = next(c for c in attention_cases("quick", "fp32") if c["pass"] == "fwd" and c["q_len"] > 1)
    times = {}
    for fmt in ("fp32", "bf16"):
        cost = attention_cost(case, ESIZE[fmt])
        times[fmt] = float(perf.attention_s(cost["flops"], cost["bytes"], cost["query_rows"], fmt,
                                            kv_per_seq=cost["kv_per_seq"]))
        truth = 1e-5 + ATTN_SLOW[fmt] * (cost["flops"] / (0.5 * RATE[fmt]) + cost["bytes"] / 20e9)
        assert times[fmt] == pytest.approx(truth, rel=0.2), fmt
    assert np.isfinite(list(times.values())).all()
