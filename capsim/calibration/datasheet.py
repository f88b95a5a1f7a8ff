"""Datasheet calibrations: catalog peaks and link rates times stated, generic efficiencies.

Nothing here is fitted to any end-to-end result. The efficiencies are assumptions stated with their sources;
a measured or profile calibration replaces them with numbers from real kernels.
"""

from __future__ import annotations

from datetime import date

from capsim.calibration.fp8 import SOURCE as FP8_SOURCE
from capsim.calibration.fp8 import fp8_scale
from capsim.calibration.published_attention import SOURCE as ATTENTION_SOURCE
from capsim.calibration.published_attention import sdpa_flash_kernels
from capsim.calibration.published_attention_cudnn import H100_SOURCE as CUDNN_H100_SOURCE
from capsim.calibration.published_attention_cudnn import TABLES as CUDNN_TABLES
from capsim.calibration.published_attention_cudnn import cudnn_curves, hopper_cudnn_kernels
from capsim.calibration.published_comm import fitted_links
from capsim.calibration.published_comm import points_for as comm_points_for
from capsim.calibration.published_gemm import (
    BLOCK_SCALED_REFERENCE,
    FP8_OVER_BF16_GH100,
    GH100_PARTS,
    MXFP8_OVER_FP8,
    SAME_DIE,
    TE_H200_NVL,
    GemmPoints,
    fitted_peak_fraction,
    gh100_fp8_scale,
    points_for,
    published,
    scale_to_points,
)
from capsim.calibration.schema import Calibration, calibrations_dir, write_calibration
from capsim.perf import AttentionParams, CommParams, Curve, DeviceParams, GemmParams, Link, MemoryParams
from capsim.specs.catalog import accelerators
from capsim.specs.hardware import Accelerator
from capsim.specs.precision import DType

# Stated assumptions (fractions of datasheet peaks), one place, each with its source.
ASSUMPTIONS = {
    # Large tensor-core GEMMs: cuBLAS tiles of 128-256 per side; a dimension of one tile edge (128) runs at about
    # half efficiency (tile and wave quantization, NVIDIA "Matrix Multiplication Background" guide, Sec. 3).
    "gemm_peak_fraction": 0.80,
    "gemm_half_size": 128.0,
    # FlashAttention-2 forward reaches 50-73% of A100 peak (Dao 2023, abstract); backward taken lower.
    "attention_forward_fraction": 0.60,
    "attention_backward_fraction": 0.45,
    # Query rows (tokens x heads) at which the kernel fills half the chip: ~100 SMs x 128-row tiles / 3.
    "attention_half_rows": 4096.0,
    # STREAM-like copies reach 85-90% of HBM peak on data-centre GPUs.
    "memory_fraction": 0.85,
    "memory_half_bytes": 2.0e6,  # kernels moving a few MB or less are latency bound
    "kernel_launch_s": 4.0e-6,  # CUDA kernel launch and tail (a few microseconds)
    # nccl-tests all-reduce busbw ~200-230 GB/s on 300 GB/s-per-direction A100 NVSwitch (nccl-tests #149, #100).
    "intra_link_fraction": 0.75,
    "intra_alpha_s": 15e-6,
    # Scale-out NICs reach ~75-90% of line rate in NCCL (NVIDIA/nccl #495).
    "inter_link_fraction": 0.80,
    "inter_alpha_s": 30e-6,
}


# torch scaled_dot_product_attention's flash backend runs FlashAttention-2's kernels (PyTorch 2.2 release notes),
# written for Ampere: on Hopper they use none of its asynchronous tensor-core (wgmma) or TMA paths. Their rates are
# the FlashAttention-3 paper's own FlashAttention-2 measurements on an H100 SXM5 (capsim.calibration.
# published_attention: forward with and without the causal mask and the non-causal backward as published, the causal
# backward converted by the forward's causal/non-causal ratio, an ASSUMPTION), each a curve over query rows and keys
# per sequence; the same fractions of peak on every Hopper part. The main curves (ASSUMPTIONS) stand for
# FlashAttention-2 on Ampere; on Hopper they are cuDNN's rates in the same paper's figures (the kernel of Transformer
# Engine's FusedAttention: capsim.calibration.published_attention_cudnn), without the causal mask, and with it under
# the kernels' "@causal" key; on B200 and GB200 they are cuDNN's published B200 rates, on GB300 and B300 its
# published GB300 rates (``attention_curves``).
HOPPER = ("H100-SXM5-80GB", "H100-PCIe-80GB", "H100-NVL-94GB", "H100-96GB-HBM2e-500W", "H200-SXM-141GB")
_SDPA_FLASH_SOURCE = (" Attention through torch SDPA's flash backend (FlashAttention-2 kernels), a Hopper part: the "
                      f"kernels' published rates ({ATTENTION_SOURCE}): forward without/with causal mask and the "
                      "non-causal backward as published, the causal backward the non-causal one times the forward's "
                      "causal/non-causal ratio at each sequence length (an assumption), each fitted as a curve over "
                      "query rows and keys per sequence (capsim.calibration.published_attention).")


def attention_kernels(acc: Accelerator) -> dict[str, dict[str, Curve]] | None:
    """The attention kernels this part runs at another rate than the main curves (``AttentionParams.kernels``)."""
    if acc.name not in HOPPER:
        return None
    return {**sdpa_flash_kernels(ASSUMPTIONS["attention_half_rows"]),
            "@causal": hopper_cudnn_kernels(ASSUMPTIONS["attention_half_rows"])["@causal"]}


def cudnn_device(acc: Accelerator) -> str | None:
    """Whose published cuDNN SDPA table prices this part: its own, else its die's (``SAME_DIE``, either way round:
    GB200 takes B200's, B300 GB300's), else None."""
    dies = {**SAME_DIE, **{other: name for name, other in SAME_DIE.items()}}
    for name in (acc.name, dies.get(acc.name)):
        if name in CUDNN_TABLES:
            return name
    return None


def attention_curves(acc: Accelerator) -> tuple[Curve, Curve]:
    """The main (forward, backward) attention curves: on a part with a published cuDNN SDPA table, or whose die has
    one (``cudnn_device``), that table's rates as fractions of its device's BF16 peak
    (capsim.calibration.published_attention_cudnn: the kernel Transformer Engine's FusedAttention runs on Hopper and
    later); on a GH100 part the FlashAttention-3 paper's cuDNN rates without the causal mask (with it:
    ``attention_kernels``' "@causal"); else the stated assumptions."""
    a = ASSUMPTIONS
    if acc.name in HOPPER:
        main = hopper_cudnn_kernels(a["attention_half_rows"])[""]
        return main["forward"], main["backward"]
    device = cudnn_device(acc)
    if device is not None:
        return cudnn_curves(_peak_of(device, DType.BF16), a["attention_half_rows"], device)
    return (Curve(a["attention_forward_fraction"], (a["attention_half_rows"],)),
            Curve(a["attention_backward_fraction"], (a["attention_half_rows"],)))


def _attention_provenance(acc: Accelerator) -> str:
    if acc.name in HOPPER:
        return _hopper_attention_provenance(acc)
    device = cudnn_device(acc)
    if device is None:
        return ""
    fwd, bwd = attention_curves(acc)
    whose = "its own" if acc.name == device else f"{device}'s, the same GPU die, as fractions of the peaks"
    return (f" Attention (the main curves, instead of attention_forward_fraction / attention_backward_fraction): cuDNN "
            f"SDPA fitted to published kernel times ({whose}; capsim.calibration.published_attention_cudnn, the host "
            f"dispatch latency each timed call holds fitted apart): forward {fwd.peak_fraction} x keys / (keys + "
            f"{fwd.half_sizes[1]:g}), backward {bwd.peak_fraction} x keys / (keys + {bwd.half_sizes[1]:g}) of the BF16 "
            f"peak, keys per sequence; {CUDNN_TABLES[device].source}.")


def _hopper_attention_provenance(acc: Accelerator) -> str:
    k = hopper_cudnn_kernels(ASSUMPTIONS["attention_half_rows"])
    curves = "; ".join(f"{mask}: " + ", ".join(f"{way} {c.peak_fraction} x keys / (keys + {c.half_sizes[1]:g})"
                                               for way, c in k[key].items())
                       for key, mask in (("", "without the mask"), ("@causal", "with it")))
    whose = "" if acc.name == "H100-SXM5-80GB" else \
        ", taken as fractions of this part's own peak (the same GPU die, GH100)"
    return (f" Attention (the main curves, instead of attention_forward_fraction / attention_backward_fraction, and "
            f"under the causal mask the kernels' \"@causal\" curves): cuDNN SDPA, the kernel of Transformer Engine's "
            f"FusedAttention, at its published H100 SXM5 rates{whose} ({CUDNN_H100_SOURCE}): forward without/with "
            f"causal mask and the non-causal backward as published, the causal backward the non-causal one times the "
            f"forward's causal/non-causal ratio (an assumption; capsim.calibration.published_attention_cudnn): "
            f"{curves} of the BF16 peak, times the query rows' fill, keys per sequence.")


def fp8_dtype_scale(curve: Curve, peaks: dict[str, float], accelerator: str) -> dict[str, float]:
    """``GemmParams.dtype_scale`` for the quantized GEMM formats the device has: FP8 where it has an FP8 peak (the
    published FP8 GEMM rates of it or its die relative to ``curve``'s BF16 efficiency; on a GH100 part without them,
    TE's cuBLASLt FP8/BF16 rate ratio on that die, and ``fp8.split`` (GEMMs with FP32-promoted accumulation: training's
    dgrad and wgrad) at DeepGEMM's H800 rates; else DeepGEMM's H800 rates: capsim.calibration.fp8), and MXFP8 /
    NVFP4 where it has an FP4 peak (Blackwell; the published cuBLAS points of it or its die, MXFP8 else at the FP8
    rate times TE's cuBLAS MXFP8/FP8 ratio, NVFP4 else B200's: capsim.calibration.published_gemm)."""
    out: dict[str, float] = {}
    if peaks.get("fp8"):
        found = points_for(accelerator, "fp8")
        if found is not None:
            out["fp8"] = round(scale_to_points(found[1], _peak_of(found[0], DType.FP8), curve), 4)
        else:
            out["fp8"] = round(gh100_fp8_scale(peaks) if accelerator in GH100_PARTS else fp8_scale(curve), 4)
            if accelerator in GH100_PARTS:  # TE's table times fast accumulation; dgrad/wgrad promote to FP32, as
                out["fp8.split"] = round(fp8_scale(curve), 4)  # DeepGEMM's kernel does (capsim.calibration.fp8)
    if peaks.get("fp4"):
        for fmt in (DType.MXFP8, DType.NVFP4):
            found = _block_scaled_points(accelerator, fmt)
            if found is None:  # MXFP8 on a part with per-tensor FP8 points only: TE's cuBLAS ratio
                out[fmt.value] = round(out["fp8"] * MXFP8_OVER_FP8, 4)
                continue
            out[fmt.value] = round(scale_to_points(found[1], _peak_of(found[0], fmt), curve), 4)
    return out


def _block_scaled_points(accelerator: str, fmt: DType) -> tuple[str, GemmPoints] | None:
    """(whose points, the points) pricing ``fmt`` on ``accelerator``: its own or its die's; for NVFP4 else the
    reference Blackwell's; None for MXFP8 without points (priced from its FP8 rate)."""
    found = points_for(accelerator, fmt.value)
    if found is not None or fmt is DType.MXFP8:
        return found
    ref = published(BLOCK_SCALED_REFERENCE, fmt.value)
    assert ref is not None, f"published_gemm has no {BLOCK_SCALED_REFERENCE} {fmt.value} points"
    return BLOCK_SCALED_REFERENCE, ref


def _peak_of(accelerator: str, fmt: DType) -> float:
    value = accelerators()[accelerator].peaks.of(fmt)
    assert value, f"catalog {accelerator} has no {fmt.peak_key} peak"
    return value


def gemm_peak_fraction(acc: Accelerator) -> float:
    """The BF16 GEMM curve's peak fraction: fitted to the accelerator's published GEMM microbenchmarks
    (capsim.calibration.published_gemm) where it has them, else the stated assumption."""
    found = points_for(acc.name, "bf16")
    if found is None or not acc.peaks.bf16:
        return ASSUMPTIONS["gemm_peak_fraction"]
    half = ASSUMPTIONS["gemm_half_size"]
    return round(fitted_peak_fraction(found[1], _peak_of(found[0], DType.BF16), (half, half, half)), 4)


def _intra_link(acc: Accelerator) -> Link | tuple[Link, ...]:
    """The intra-node link: fitted to the published NCCL table of the part or its NVLink peer
    (capsim.calibration.published_comm), else the stated assumption on the datasheet rate."""
    found = comm_points_for(acc.name)
    if found is not None:
        return fitted_links(found[1])
    a = ASSUMPTIONS
    return Link(a["intra_alpha_s"], acc.intra_node_bw_bytes_per_s * a["intra_link_fraction"])


def _comm_provenance(acc: Accelerator) -> str:
    found = comm_points_for(acc.name)
    if found is None or not acc.intra_node_bw_bytes_per_s:
        return ""
    whose = "its own" if found[0] == acc.name else f"{found[0]}'s, the same NVLink generation and per-GPU rate"
    small, large = fitted_links(found[1])
    return (f" Intra-node collectives: two alpha-beta links ({small.alpha_s * 1e6:.1f} us + bytes / "
            f"{small.bus_bw_bytes_per_s / 1e9:.0f} GB/s up to 4 MiB, {large.alpha_s * 1e6:.1f} us + bytes / "
            f"{large.bus_bw_bytes_per_s / 1e9:.0f} GB/s from 8 MiB; the faster applies) fitted to a published NCCL "
            f"table ({whose}; capsim.calibration.published_comm) instead of intra_link_fraction and intra_alpha_s: "
            f"{found[1].source}.")


def datasheet_params(acc: Accelerator) -> DeviceParams:
    a = ASSUMPTIONS
    half = a["gemm_half_size"]
    peaks = {k: v for k, v in vars(acc.peaks).items() if v}
    curve = Curve(gemm_peak_fraction(acc), (half, half, half))
    links: dict[str, dict[str, dict[str, Link]]] = {}
    if acc.intra_node_bw_bytes_per_s:
        links["intra"] = {"*": {"*": _intra_link(acc)}}
    if acc.inter_node_bw_bytes_per_s:
        links["inter"] = {"*": {"*": Link(a["inter_alpha_s"], acc.inter_node_bw_bytes_per_s * a["inter_link_fraction"])}}
    return DeviceParams(
        name=f"{acc.name}", kind="datasheet", device=acc.name, peak_flops_per_s=peaks,
        gemm=GemmParams(curve, a["kernel_launch_s"], fp8_dtype_scale(curve, peaks, acc.name)),
        attention=AttentionParams(*attention_curves(acc), a["kernel_launch_s"], kernels=attention_kernels(acc)),
        memory=MemoryParams(acc.memory_bw_bytes_per_s * a["memory_fraction"], a["kernel_launch_s"],
                            a["memory_half_bytes"]),
        comm=CommParams(links), memory_bytes=acc.memory_bytes)


def _whose(acc: Accelerator, source: str) -> str:
    return "its own" if source == acc.name else f"{source}'s, the same GPU die, as fractions of the peaks"


def _gemm_provenance(acc: Accelerator) -> str:
    bf16, fp8 = points_for(acc.name, "bf16"), points_for(acc.name, "fp8")
    out = (f" BF16 GEMMs: the curve's peak fraction ({gemm_peak_fraction(acc)}) fitted to published microbenchmarks "
           f"(capsim.calibration.published_gemm; {_whose(acc, bf16[0])}): {bf16[1].source}."
           if bf16 and acc.peaks.bf16 else "")
    out += _block_scaled_provenance(acc)
    if not acc.peaks.fp8:
        return out
    if fp8:
        return out + (" FP8 GEMMs: the FP8 peak times the BF16 efficiency times the fp8 dtype_scale fitted to "
                      f"published microbenchmarks (capsim.calibration.published_gemm; {_whose(acc, fp8[0])}): "
                      f"{fp8[1].source}")
    if acc.name in GH100_PARTS:
        return out + " FP8 GEMMs: " + GH100_FP8_PROVENANCE
    return out + (f" FP8 GEMMs: the FP8 peak times the BF16 efficiency times the fp8 dtype_scale from {FP8_SOURCE} "
                  "(capsim.calibration.fp8), assumed for an accelerator with no published FP8 GEMM rates")


GH100_FP8_PROVENANCE = (
    f"{FP8_OVER_BF16_GH100} times the BF16 rate at the same shape (fp8 dtype_scale = that x BF16 peak / FP8 peak): "
    "the median per-tensor FP8 over BF16 rate of Transformer Engine's cuBLASLt GEMMs on the same GPU die (GH100), "
    "both pre-quantized on one harness (capsim.calibration.published_gemm.TE_H200_NVL): "
    f"{TE_H200_NVL['fp8'].source}; BF16 column: {TE_H200_NVL['bf16'].source.rsplit('table, ', 1)[1]}")


def _block_scaled_provenance(acc: Accelerator) -> str:
    if not acc.peaks.fp4:
        return ""
    parts = []
    for fmt in (DType.MXFP8, DType.NVFP4):
        found = _block_scaled_points(acc.name, fmt)
        if found is None:
            parts.append(f" MXFP8 GEMMs: the FP8 rate times {MXFP8_OVER_FP8}, Transformer Engine's cuBLAS MXFP8 over "
                         "per-tensor FP8 rate at the same shapes, both pre-quantized (B300 table of "
                         "capsim.calibration.published_gemm; no published cuBLAS MXFP8 GEMM rates of this part).")
            continue
        source, points = found
        whose = _whose(acc, source) if source in (acc.name, SAME_DIE.get(acc.name)) else \
            f"{source}'s, assumed for this Blackwell part"
        parts.append(f" {fmt.value.upper()} GEMMs: the {fmt.peak_key.upper()} peak times the BF16 efficiency times "
                     f"the {fmt.value} dtype_scale fitted to published microbenchmarks ({whose}): {points.source}.")
    return "".join(parts)


def datasheet_calibration(acc: Accelerator) -> Calibration:
    return Calibration(
        name=acc.name, kind="datasheet", device={"name": acc.name, "source": acc.source,
                                                  "unconfirmed": list(acc.unconfirmed),
                                                  "memory_source": acc.memory_source},
        fitted=datasheet_params(acc), created=str(date.today()),
        provenance=f"Derived from datasheets: {acc.source} peaks and links (capsim/specs/catalog/accelerators.yaml) "
                   "times the stated efficiencies of capsim.calibration.datasheet.ASSUMPTIONS: "
                   + "; ".join(f"{k}={v}" for k, v in ASSUMPTIONS.items()) + "."
                   + _joined(_joined(_gemm_provenance(acc), _comm_provenance(acc)),
                             _SDPA_FLASH_SOURCE if acc.name in HOPPER else "") + _attention_provenance(acc))


def _joined(gemm: str, comm: str) -> str:
    """The GEMM and collective provenance, the first closed by a full stop where the second follows it."""
    return gemm + ("." if comm and gemm and not gemm.endswith(".") else "") + comm


def write_datasheet_calibrations(folder: str | None = None) -> list[str]:
    """(Re)write capsim/calibrations/datasheet/<accelerator>.json for every catalog accelerator."""
    root = calibrations_dir() / "datasheet" if folder is None else folder
    return [str(write_calibration(datasheet_calibration(acc), f"{root}/{acc.name}.json"))
            for acc in accelerators().values()]
