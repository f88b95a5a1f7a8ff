"""Published rates of cuDNN's fused attention (SDPA) on H100, B200 and GB300: what Transformer Engine's
FusedAttention runs there.

Transformer Engine picks FusedAttention (cuDNN) over FlashAttention on compute capability 9.0 and later
("Disabling FlashAttention to give FusedAttention preference on Hopper+ for performance reasons",
NVIDIA/TransformerEngine@bee4649c transformer_engine/pytorch/dot_product_attention/utils.py L901-906, the TE of NeMo
v2.3.0's requirements/manifest.json; the same at TE v2.5, attention/dot_product_attention/utils.py L915), so the
attention core of every Megatron-Core run on Blackwell is a cuDNN SDPA kernel.

Source: NVIDIA/cudnn-frontend@f937055 (2025-06-12, "Benchmark results for sdpa operation on Blackwell (#146)"),
benchmark/sdpa_benchmark_bf16_training/artifacts/sdpa_benchmark_results_NVIDIA_B200.csv, backend ``pyt_cudnn``
(torch SDPA's cuDNN backend): one NVIDIA B200, cuDNN 9.10.2 (README "Software versions"; the run log prints
torch.backends.cudnn.version() = 91002), BF16, batch 1, 128 query heads, 8 KV heads, head dim 128, causal mask,
sequence 512 to 131,072; forward FLOPs 4 * seq^2 * head_dim * heads / 2 (causal), backward 2.5x (benchmark_sdpa.py
``flops``): capsim's conventions (capsim.analytic.attention), so FLOPs over time over the catalog peak is a fraction
of peak. The same run was repeated at cudnn-frontend@9793df5 (2025-07-16, torch nv25.06, cuDNN 91002): its times are
within 3% from 4k tokens on (up to 21% apart at 512, where the host latency below dominates), and fitted the same way
its kernel curves are forward 0.660 x keys / (keys + 1228), backward 0.512 x keys / (keys + 902): within 5% of these
at 2k keys and 1% at 8k.

The harness times one call between CUDA events recorded around the Python call, under
``torch.autograd.profiler.emit_nvtx()``, after a ``time.sleep`` (benchmark_sdpa.py L173-214), so each time holds the
host's dispatch latency of that call as well as the kernel: 0.16 ms for a 512-token forward whose FLOPs take microseconds. The
kernel rate here is fitted with that latency as a constant of each direction (``t = t0 + flops / rate``), since in
training the host issues kernels ahead of the GPU; ``t0`` is not part of the rate (an INTERPRETATION of the harness,
stated). Fitted on 512 to 32,768 tokens (the range of the Hopper table, capsim.calibration.published_attention,
and beyond every training row's sequence); the 64k and 128k points fall 3-10% below the fitted kernel (not used).

GB300 (Blackwell Ultra; B300 is the same die): the same harness's GB300 run, NVIDIA/cudnn-frontend@0b1577c
(2025-10-10, "cudnn frontend v1.15 release notes"), benchmark/sdpa_benchmark_training/artifacts/
sdpa_bf16_benchmark_results_NVIDIA_GB300.csv, pyt_cudnn rows: one NVIDIA GB300, cuDNN 9.13.1 (README "Software
versions"; artifacts/sample_gb300_bf16_run.txt prints torch.backends.cudnn.version() = 91300), torch nv25.09, the same
layer (batch 1, 128 / 8 heads, head dim 128, causal, BF16) and sequences, fitted the same way (``fitted``) as fractions
of GB300's BF16 peak: forward 0.7148 x keys / (keys + 364.5), backward 0.5772 x keys / (keys + 2148.4), host latency
0.14 ms each; residuals <= 7% forward, <= 10% backward. The same commit's B200 run (cuDNN 9.13.1, same harness), fitted
the same way, gives forward 0.6927 x keys / (keys + 2598.5), backward 0.5635 x keys / (keys + 3298.3): GB300's forward
runs a larger fraction of a larger peak (1,796 vs 1,419 TFLOP/s at 32k: 19.6 vs 24.8 ms, 1.27x), its backward 1.19x
(66.7 vs 79.3 ms), against BF16 peaks 2.5 vs 2.25 PFLOP/s (1.11x).
Later GB200/GB300 tables of this folder (cudnn-frontend@b372d39 and on) time the cuDNN frontend (``cudnn_fe``, cuDNN
9.17+) with another harness and are not used.

H100 (GH100; ``hopper_cudnn_kernels``): the cuDNN bars of the FlashAttention-3 paper, Shah et al., arXiv 2407.08608v2
(2024-07-12), Sec. 4.1, Figure 5(c)/(d) "Forward, without / with causal mask, head dim 128" and Figure 6(b)
"Backward, without causal mask, head dim 128", H100 80GB SXM5, FP16, 16 heads, batch sized to 16k tokens, the paper's
FLOP convention (that of capsim.calibration.published_attention, whose FlashAttention-2 bars share these figures).
Read from: Fig. 5 as the authors published it, Dao-AILab/flash-attention@7ef24848 (2024-07-11, "Add FA3 image")
assets/flash3_fp16_fwd.png, the six panels with the paper's captions (a)-(f), its FlashAttention-2 bars equal to
capsim's (read from the PDF's text layer); Fig. 6(b) from two machine transcriptions of the paper's figure image
(subtext.edge.nugit.net, gemini-3-flash and nemotron models), which agree on every bar and whose FlashAttention-2 bars
equal capsim's. The paper names no cuDNN version; its harness as the authors published it a week later
(hopper/benchmark_attn.py @8fa5c393, 2024-07-18) builds cuDNN's SDPA through the cudnn-frontend Python graph API
(``cudnn.pygraph`` sdpa / sdpa_backward, heuristics mode A) and times repeated calls, so the rates are kernel rates.
The paper publishes no causal backward: the causal backward is the non-causal one times cuDNN's forward causal /
non-causal ratio at the same sequence length (an ASSUMPTION, as for FlashAttention-2). Fitted as curves over query
rows and keys (published_attention.fitted_curve): residuals <= 5%. Every GH100 part takes them as fractions of its
own BF16 peak: H200 SXM is the same die at the same catalog peak (989 TFLOP/s), so its fractions are the H100 SXM
rates; the PCIe and NVL parts' lower clocks and power are assumed to cost cuDNN what they cost the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from capsim.calibration.published_attention import fitted_curve
from capsim.perf import Curve

SOURCE = ("NVIDIA/cudnn-frontend@f937055 (2025-06-12) benchmark/sdpa_benchmark_bf16_training/artifacts/"
          "sdpa_benchmark_results_NVIDIA_B200.csv, pyt_cudnn rows: cuDNN 9.10.2 SDPA on one B200, BF16, batch 1, "
          "128 query / 8 KV heads, head dim 128, causal")
DEVICE = "B200"  # the accelerator the table was measured on (its catalog peaks turn rates into fractions)
HEADS, HEAD_DIM = 128, 128
SEQLENS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
# forward_time / backward_time (ms) of the pyt_cudnn rows at SEQLENS, as published.
FORWARD_MS = (0.130, 0.159, 0.262, 0.613, 1.816, 6.475, 24.518)
BACKWARD_MS = (0.494, 0.482, 0.895, 1.938, 5.815, 20.466, 77.677)

GB300_SOURCE = ("NVIDIA/cudnn-frontend@0b1577c (2025-10-10) benchmark/sdpa_benchmark_training/artifacts/"
                "sdpa_bf16_benchmark_results_NVIDIA_GB300.csv, pyt_cudnn rows: cuDNN 9.13.1 SDPA on one GB300, BF16, "
                "batch 1, 128 query / 8 KV heads, head dim 128, causal")
# forward_time / backward_time (ms) of that table's pyt_cudnn rows at SEQLENS, as published.
GB300_FORWARD_MS = (0.156, 0.153, 0.232, 0.480, 1.470, 5.167, 19.592)
GB300_BACKWARD_MS = (0.225, 0.310, 0.705, 1.540, 4.865, 17.345, 66.679)


@dataclass(frozen=True)
class Table:
    """One accelerator's published cuDNN SDPA times (ms) at SEQLENS, and where they are published."""

    source: str
    forward_ms: tuple[float, ...]
    backward_ms: tuple[float, ...]


# The accelerators with a published table, by catalog name (their catalog BF16 peaks turn rates into fractions).
TABLES = {DEVICE: Table(SOURCE, FORWARD_MS, BACKWARD_MS), "GB300": Table(GB300_SOURCE, GB300_FORWARD_MS,
                                                                           GB300_BACKWARD_MS)}


def forward_flops(seqlen: float) -> float:
    """The benchmark's forward FLOPs of one sequence (causal: half of 4 s^2 d h)."""
    return 4.0 * seqlen**2 * HEAD_DIM * HEADS / 2.0


def fitted(times_ms: tuple[float, ...], flops_scale: float, peak_flops_per_s: float, half_rows: float
           ) -> tuple[Curve, float]:
    """(``Curve(f, (half_rows, half_keys))``, host latency s) through the published times: each time is
    ``t0 + flops / (peak * f * rows / (rows + half_rows) * keys / (keys + half_keys))`` (capsim.perf.model.curve_value
    for the rate; rows = seq x 128 heads, keys = seq). Least squares on the relative time error."""
    seq = np.asarray(SEQLENS, float)
    flops = np.array([forward_flops(s) for s in SEQLENS]) * flops_scale
    rows = seq * HEADS
    rows_factor = rows / (rows + half_rows)

    def model(i: np.ndarray, t0: float, f: float, half: float) -> np.ndarray:
        i = i.astype(int)
        return t0 + flops[i] / (peak_flops_per_s * f * rows_factor[i] * seq[i] / (seq[i] + half))

    times = np.asarray(times_ms, float) * 1e-3
    (t0, f, half), _ = curve_fit(model, np.arange(len(seq), dtype=float), times, p0=(1e-4, 0.6, 1000.0),
                                 sigma=times, bounds=((0.0, 0.0, 0.0), (1e-2, 1.0, 1e5)))
    return Curve(round(float(f), 4), (half_rows, round(float(half), 1))), float(t0)


def cudnn_curves(peak_flops_per_s: float, half_rows: float, device: str = DEVICE) -> tuple[Curve, Curve]:
    """(forward, backward) curves of cuDNN SDPA on ``device`` (a key of TABLES), fractions of ``peak_flops_per_s``
    (that device's BF16 peak)."""
    table = TABLES[device]
    return (fitted(table.forward_ms, 1.0, peak_flops_per_s, half_rows)[0],
            fitted(table.backward_ms, 2.5, peak_flops_per_s, half_rows)[0])


H100_SOURCE = ("arXiv 2407.08608v2 (FlashAttention-3), Sec. 4.1, Fig. 5(c)/(d) and Fig. 6(b): cuDNN SDPA, H100 80GB "
               "SXM5, FP16, head dim 128, 16 heads, 16k tokens per batch (Fig. 5 read from Dao-AILab/flash-attention@"
               "7ef24848 assets/flash3_fp16_fwd.png, Fig. 6(b) from two machine transcriptions of the paper's figure "
               "that agree, their FlashAttention-2 bars equal to the PDF's)")
# TFLOP/s printed on the cuDNN bars at published_attention.SEQLENS (512 to 16k).
H100_FORWARD_TFLOPS = (497.0, 574.0, 617.0, 609.0, 600.0, 595.0)  # Fig. 5(c), without causal mask
H100_FORWARD_CAUSAL_TFLOPS = (315.0, 410.0, 484.0, 518.0, 529.0, 539.0)  # Fig. 5(d), with causal mask
H100_BACKWARD_TFLOPS = (305.0, 408.0, 465.0, 499.0, 518.0, 516.0)  # Fig. 6(b), without causal mask


def h100_backward_causal_tflops() -> tuple[float, ...]:
    """cuDNN's causal backward on H100: the non-causal backward times its forward's causal/non-causal ratio
    (ASSUMPTION; the paper publishes no causal backward)."""
    return tuple(b * c / f for b, c, f in zip(H100_BACKWARD_TFLOPS, H100_FORWARD_CAUSAL_TFLOPS, H100_FORWARD_TFLOPS,
                                              strict=True))


def hopper_cudnn_kernels(half_rows: float) -> dict[str, dict[str, Curve]]:
    """cuDNN SDPA on a GH100 part, fractions of its BF16 peak: "" the non-causal (forward, backward) curves (the
    calibration's main ones), "@causal" the causal ones (``AttentionParams.kernels``: the main kernel's rate under
    the causal mask)."""
    return {"": {"forward": fitted_curve(H100_FORWARD_TFLOPS, half_rows),
                 "backward": fitted_curve(H100_BACKWARD_TFLOPS, half_rows)},
            "@causal": {"forward": fitted_curve(H100_FORWARD_CAUSAL_TFLOPS, half_rows),
                        "backward": fitted_curve(h100_backward_causal_tflops(), half_rows)}}


__all__ = ["BACKWARD_MS", "DEVICE", "FORWARD_MS", "GB300_BACKWARD_MS", "GB300_FORWARD_MS", "GB300_SOURCE", "H100_BACKWARD_TFLOPS",
           "H100_FORWARD_CAUSAL_TFLOPS", "H100_FORWARD_TFLOPS", "H100_SOURCE", "HEADS", "HEAD_DIM", "SEQLENS", "SOURCE",
           "TABLES", "Table", "cudnn_curves", "fitted", "forward_flops", "h100_backward_causal_tflops",
           "hopper_cudnn_kernels"]
