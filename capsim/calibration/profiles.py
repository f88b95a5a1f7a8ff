"""The GPU-profile calibrations: fitted from real A100 and H100 operator and collective timings.

Source: the Vidur project's profiles (MIT licence), shipped in capsim/data/gpu-profiles/. Each ``mlp_<model>.csv``
row times one Llama layer's token-level ops at a (num_tokens, tensor-parallel width); TP is emulated by shrinking
each GEMM. ``network/<node>/all_reduce.csv`` and ``send_recv.csv`` time NCCL collectives by message size.
"""

from __future__ import annotations

import gzip
from datetime import date
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from capsim.calibration.datasheet import datasheet_params, fp8_dtype_scale
from capsim.calibration.fit import fit_alpha_beta, fit_gemm, fit_memory
from capsim.calibration.fp8 import SOURCE as FP8_SOURCE
from capsim.calibration.schema import Calibration, calibrations_dir, write_calibration
from capsim.perf.categories import Category
from capsim.perf.params import AttentionParams, CommParams, DeviceParams, GemmParams, MemoryParams
from capsim.specs.catalog import get_accelerator

FP16_BYTES = 2.0
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
# Vidur's memory-bound ops and the capsim.perf op category each one measures.
MEMORY_OPS = {"input_layernorm": Category.NORM.value, "post_attention_layernorm": Category.NORM.value,
              "add": Category.STREAM.value, "mlp_act": Category.ACTIVATION.value, "attn_rope": Category.ROPE.value,
              "emb": Category.EMBEDDING.value}
# Which profiles describe each device: (gpu folder, NVSwitch node folder, models used for fitting, held-out models).
DEVICES = {
    "A100-SXM4-80GB": ("a100", "a100_dgx", ("Llama-2-7b-hf", "Llama-2-70b-hf"), ("Meta-Llama-3-8B",)),
    "H100-SXM5-80GB": ("h100", "h100_dgx", ("Llama-2-7b-hf", "Llama-2-70b-hf"), ()),
}


@cache
def _read(*parts: str, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    with gzip.open(resources.files("capsim.data").joinpath("gpu-profiles", *parts).open("rb"), "rt") as fh:
        return pd.read_csv(fh, usecols=list(columns) if columns else None)


def op_samples(gpu_dir: str, model: str) -> pd.DataFrame:
    """One row per (op, tokens, tp) with the op's GEMM shape or bytes moved and its median time in seconds."""
    shape = ("n_embd", "n_head", "n_kv_head", "n_expanded_embd", "use_gated_mlp", "num_tokens",
             "num_tensor_parallel_workers")
    d = _read(gpu_dir, f"mlp_{model}.csv.gz",
              columns=shape + tuple(f"time_stats.{op}.median" for op in (*GEMM_OPS, *MEMORY_OPS)))
    h, a, kv = d["n_embd"], d["n_head"], d["n_kv_head"]
    hd, ffn, tp, m = h // a, d["n_expanded_embd"], d["num_tensor_parallel_workers"], d["num_tokens"]
    up = np.where(d["use_gated_mlp"], 2, 1) * ffn / tp
    shapes = {  # (n, k) of C[m, n] = A[m, k] B[k, n]
        "attn_pre_proj": ((a + 2 * kv) * hd / tp, h), "attn_post_proj": (h, a * hd / tp),
        "mlp_up_proj": (up, h), "mlp_down_proj": (h, ffn / tp)}
    moved = {  # bytes read + written by the memory-bound ops
        "input_layernorm": 2 * m * h, "post_attention_layernorm": 2 * m * h, "add": 3 * m * h,
        "mlp_act": m * (up + ffn / tp), "attn_rope": 2 * m * (a + kv) * hd / tp, "emb": 2 * m * h}
    frames = []
    for op in (*GEMM_OPS, *MEMORY_OPS):
        f = pd.DataFrame({"op": op, "model": model, "tokens": m, "tp": tp,
                          "time_s": d[f"time_stats.{op}.median"] * 1e-3})
        if op in shapes:
            n, k = shapes[op]
            f["m"], f["n"], f["k"] = m, n, k
            f["bytes"] = (m * k + k * n + m * n) * FP16_BYTES
        else:
            f["bytes"] = moved[op] * FP16_BYTES
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def comm_samples(node_dir: str) -> pd.DataFrame:
    """Collective timings: collective, bytes, group, devices per node, median seconds."""
    frames = []
    for coll in ("all_reduce", "send_recv"):
        d = _read("network", node_dir, f"{coll}.csv.gz")
        frames.append(pd.DataFrame({"collective": coll, "bytes": d["size"], "group": d["num_workers"],
                                    "devices_per_node": d["devices_per_node"],
                                    "time_s": d[f"time_stats.{coll}.median"] * 1e-3}))
    out = pd.concat(frames, ignore_index=True)
    out["tier"] = np.where(out["devices_per_node"] >= out["group"], "intra", "inter")
    return out


def profile_params(device: str) -> tuple[DeviceParams, dict[str, list[dict]], dict[str, float]]:
    """Fit one device's profile calibration; returns (params, raw samples, fit quality)."""
    gpu_dir, node_dir, fit_models, _held_out = DEVICES[device]
    acc = get_accelerator(device)
    sheet = datasheet_params(acc)
    ops = pd.concat([op_samples(gpu_dir, m) for m in fit_models], ignore_index=True)
    g = ops[ops["op"].isin(GEMM_OPS)]
    gemm = fit_gemm(g["m"], g["n"], g["k"], g["bytes"], g["time_s"], acc.peaks.bf16, acc.memory_bw_bytes_per_s)
    mem_rows = ops[ops["op"].isin(list(MEMORY_OPS))]
    mem = fit_memory(mem_rows["bytes"], mem_rows["time_s"], mem_rows["op"].map(MEMORY_OPS),
                     acc.memory_bw_bytes_per_s)
    stream = mem.bandwidth_bytes_per_s["stream"]
    comm = comm_samples(node_dir)
    links: dict[str, dict[str, dict]] = {"intra": {}}
    quality = {"gemm_rms_log_error": gemm.rms_log_error, "memory_rms_log_error": mem.rms_log_error}
    for (coll, group), rows in comm[comm["tier"] == "intra"].groupby(["collective", "group"]):
        protocols, err = fit_alpha_beta(coll, rows["bytes"], int(group), rows["time_s"])
        links["intra"].setdefault(coll, {})[str(int(group))] = protocols
        quality[f"{coll}_{group}_rms_log_error"] = err
    # The profiled cluster's inter-node network is not a DGX fabric: keep the datasheet inter-node tier.
    links["inter"] = sheet.comm.links.get("inter", {})
    params = DeviceParams(
        name=f"{device}-profile", kind="profile", device=device, peak_flops_per_s=sheet.peak_flops_per_s,
        gemm=GemmParams(gemm.curve, gemm.launch_s, fp8_dtype_scale(gemm.curve, sheet.peak_flops_per_s, acc.name)),
        attention=AttentionParams(sheet.attention.forward, sheet.attention.backward, sheet.attention.launch_s,
                                  kernels=sheet.attention.kernels),
        memory=MemoryParams(stream, mem.launch_s, mem.half_bytes,
                            {"gemm": gemm.bandwidth_bytes_per_s / stream,
                             **{c: bw / stream for c, bw in mem.bandwidth_bytes_per_s.items() if c != "stream"}}),
        comm=CommParams(links), memory_bytes=acc.memory_bytes)
    samples = {"ops": ops.to_dict("records"), "comm": comm.to_dict("records")}
    return params, samples, quality


def profile_calibration(device: str, with_samples: bool = False) -> Calibration:
    params, samples, quality = profile_params(device)
    gpu_dir, node_dir, fit_models, held_out = DEVICES[device]
    provenance = (
        f"Fitted by capsim.calibration.profiles from the Vidur project's real {device} profiles (MIT licence; "
        f"capsim/data/gpu-profiles/{gpu_dir}/mlp_*.csv, network/{node_dir}/): GEMM efficiency curve, launch and "
        f"streaming bandwidth from {', '.join(fit_models)} (held out for checking: {', '.join(held_out) or 'none'}); "
        "memory-bound bandwidth from the same files' norm/add/activation/rope/embedding ops; intra-node NCCL "
        f"all-reduce and send/recv alpha-beta per group size from {node_dir} rows inside one node. Not in the "
        "profiles, so taken from the datasheet calibration: attention efficiency (each kernel's), peaks, and the inter-node tier "
        "(the profiled cluster's inter-node rows, kept in samples, measure its own ~6 GB/s-per-GPU network, not a "
        f"DGX fabric). The profiles time BF16 GEMMs only: FP8 GEMMs are priced at the FP8 peak times the fitted BF16 "
        f"efficiency times fp8 dtype_scale, from the device's published FP8 GEMM rates where "
        f"capsim.calibration.published_gemm has them, else from {FP8_SOURCE} (capsim.calibration.fp8). "
        f"Fit quality (rms of log time error): "
        + ", ".join(f"{k}={v:.3f}" for k, v in quality.items()))
    return Calibration(name=params.name, kind="profile", device={"name": device, "profiles": f"vidur/{gpu_dir}"},
                       fitted=params, provenance=provenance, created=str(date.today()),
                       samples={"comm": samples["comm"]} if with_samples else {})


def write_profile_calibrations() -> list[str]:
    root = calibrations_dir() / "profile"
    return [str(write_calibration(profile_calibration(dev), root / f"{dev}-profile.json")) for dev in DEVICES]
