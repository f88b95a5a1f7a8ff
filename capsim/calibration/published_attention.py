"""Published rates of FlashAttention-2's kernels on Hopper: what torch SDPA's flash backend runs there.

Source: Shah et al., "FlashAttention-3: Fast and Accurate Attention with Asynchrony and Low-precision",
arXiv 2407.08608v2 (2024-07-12), Sec. 4.1, Figure 5(c)/(d) "Forward, without / with causal mask, head dim 128" and
Figure 6(b) "Backward, without causal mask, head dim 128", the FlashAttention-2 bars (values printed on the bars,
read from the PDF's text layer). Settings (Sec. 4.1): H100 80GB SXM5, FP16 inputs, head dimension 128, hidden 2048
(16 heads), batch sized so every point holds 16k tokens; forward FLOPs 4 * seqlen^2 * head_dim * heads, halved with
the causal mask, backward 2.5x the forward: the FLOP conventions of capsim.analytic.attention and
capsim.analytic.primitives.backward_ops, so a published TFLOP/s over the catalog peak is directly a fraction of peak.

The paper publishes no causal backward: its causal rates here are the non-causal backward times the forward's own
causal / non-causal ratio at the same sequence length (an ASSUMPTION: the mask costs the backward what it costs the
forward).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit

from capsim.perf import Curve

SOURCE = ("arXiv 2407.08608v2 (FlashAttention-3), Sec. 4.1, Fig. 5(c)/(d) and Fig. 6(b): FlashAttention-2, H100 "
          "80GB SXM5, FP16, head dim 128, 16 heads, 16k tokens per batch")
PEAK_FLOPS_PER_S = 989e12  # H100 SXM5 dense FP16/BF16 tensor peak (capsim catalog H100-SXM5-80GB bf16)
SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
HEADS, TOKENS = 16, 16384  # every point: 16 heads x 16k tokens of queries
# TFLOP/s printed on the FlashAttention-2 bars, at SEQLENS.
FORWARD_TFLOPS = (309.0, 350.0, 362.0, 368.0, 370.0, 370.0)  # Fig. 5(c), without causal mask
FORWARD_CAUSAL_TFLOPS = (191.0, 260.0, 298.0, 319.0, 333.0, 335.0)  # Fig. 5(d), with causal mask
BACKWARD_TFLOPS = (214.0, 260.0, 291.0, 310.0, 318.0, 322.0)  # Fig. 6(b), without causal mask


def backward_causal_tflops() -> tuple[float, ...]:
    """The causal backward: the non-causal backward times the forward's causal/non-causal ratio (ASSUMPTION)."""
    return tuple(b * c / f for b, c, f in zip(BACKWARD_TFLOPS, FORWARD_CAUSAL_TFLOPS, FORWARD_TFLOPS, strict=True))


def fitted_curve(tflops: tuple[float, ...], half_rows: float) -> Curve:
    """``Curve(f, (half_rows, half_keys))`` through the published points: capsim's attention efficiency is
    ``f * rows / (rows + half_rows) * keys / (keys + half_keys)`` (capsim.perf.model.curve_value); every point has
    the same query rows (16k tokens x 16 heads), so the sequence length sets the keys per sequence alone. Least
    squares on the relative error."""
    rows_factor = HEADS * TOKENS / (HEADS * TOKENS + half_rows)
    keys = np.asarray(SEQLENS, float)
    frac = np.asarray(tflops, float) * 1e12 / PEAK_FLOPS_PER_S

    def model(x: np.ndarray, f: float, half: float) -> np.ndarray:
        return f * rows_factor * x / (x + half)

    (f, half), _ = curve_fit(model, keys, frac, p0=(frac[-1], 256.0), sigma=frac, bounds=((0.0, 0.0), (1.0, 1e5)))
    return Curve(round(float(f), 4), (half_rows, round(float(half), 1)))


def sdpa_flash_kernels(half_rows: float) -> dict[str, dict[str, Curve]]:
    """``AttentionParams.kernels`` for torch SDPA's flash backend on Hopper: "sdpa-flash" its non-causal rates,
    "sdpa-flash@causal" its causal ones."""
    return {"sdpa-flash": {"forward": fitted_curve(FORWARD_TFLOPS, half_rows),
                           "backward": fitted_curve(BACKWARD_TFLOPS, half_rows)},
            "sdpa-flash@causal": {"forward": fitted_curve(FORWARD_CAUSAL_TFLOPS, half_rows),
                                  "backward": fitted_curve(backward_causal_tflops(), half_rows)}}
