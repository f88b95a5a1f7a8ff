"""The measured calibration: `capsim calibrate`'s microbenchmark samples turned into what capsim.perf reads.

Only microbenchmarks (kernels/) feed these fits, never an end-to-end run (validate local compares against those):
- GEMM: the efficiency curve, launch and streaming bandwidth of :func:`fit_gemm`, then a measured residual table
  over (m, n, k) per format (:func:`residual_table`), exact at every timed shape; each other kernel path timed
  (``gemm_packed``: linears on oneDNN-prepacked weights) gets its own table against the same curve
  (``format@path``), and its own bandwidth bound (memory kind ``gemm@path``);
- attention: :func:`fit_attention` over query rows and keys per sequence, forward (prefill and decode) and
  backward (launch and bandwidth shared);
- memory-bound ops: :func:`fit_memory`, one achieved bandwidth per op category (``Perf.category``);
- collectives: :func:`fit_alpha_beta` per collective, group size and tier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from capsim.calibration.fit import (
    fit_alpha_beta,
    fit_attention,
    fit_gemm,
    fit_memory,
    residual_curve,
    residual_grid,
    residual_table,
)
from capsim.errors import SpecError
from capsim.perf.model import curve_value
from capsim.perf.params import (
    AttentionParams,
    CommParams,
    Curve,
    DeviceParams,
    GemmParams,
    Link,
    MemoryParams,
)
from capsim.specs.precision import DType

# Used only where a bench was not run (recorded in the provenance): generic fractions of the measured GEMM peak.
UNMEASURED = {"attention_fraction": 0.3, "launch_s": 1e-5, "memory_bytes_per_s": 1e10}


def _frame(samples: list[dict], bench: str, threads: int | None = None) -> pd.DataFrame:
    rows = [s for s in samples if s.get("bench") == bench and (threads is None or s.get("threads") == threads)]
    return pd.DataFrame(rows)


def main_format(df: pd.DataFrame) -> str:
    """The format a bench's curves are fitted in where it measured several (a CPU's fp32 and bf16): fp32 where
    measured, else the first; the others get residuals of their own (``key@format``)."""
    if df.empty or "dtype" not in df:
        return ""
    formats = list(dict.fromkeys(df["dtype"].astype(str)))
    return "fp32" if "fp32" in formats else formats[0]


def peaks_of(gemm: pd.DataFrame) -> dict[str, float]:
    """Peak FLOP/s per format key: the best rate any timed GEMM of that format reached (a measured device has no
    datasheet peak; efficiencies are fractions of this)."""
    peaks: dict[str, float] = {}
    for d, rows in gemm.groupby("dtype"):
        key = DType(d).peak_key
        peaks[key] = max(peaks.get(key, 0.0), float((rows["flops"] / rows["time_s"]).max()))
    return peaks


def _memory(df: pd.DataFrame, quality: dict[str, float]) -> MemoryParams:
    """Bandwidth per memory key (stream is the base, the rest scale it) and a residual table per key."""
    if df.empty:
        return MemoryParams(UNMEASURED["memory_bytes_per_s"], UNMEASURED["launch_s"])
    b, t, key = df["bytes"].to_numpy(float), df["time_s"].to_numpy(float), df["category"].to_numpy(object)
    if "dtype" in df:  # a format besides the main one keeps its own keys (Perf.memory_kind reads key@format)
        main = main_format(df)
        fmt = df["dtype"].astype(str).to_numpy(object)
        key = np.where(fmt == main, key, key + "@" + fmt)
    fit = fit_memory(b, t, key, float((b / t).max()) * 2)
    quality["memory_curve_rms_log_error"] = fit.rms_log_error
    bws = fit.bandwidth_bytes_per_s
    stream = bws.get("stream", float(np.median(list(bws.values()))))
    launch = min(fit.launch_s, 0.5 * float(t.min()))
    table = {}
    for k in bws:
        rows = key == k
        body = (b[rows] + fit.half_bytes) / bws[k]
        table[k] = residual_curve(b[rows], np.maximum(t[rows] - launch, 1e-12) / body)
    return MemoryParams(stream, launch, fit.half_bytes, {k: v / stream for k, v in bws.items() if k != "stream"},
                        table)


def _gemm(df: pd.DataFrame, half_bytes: float, quality: dict[str, float],
          paths: pd.DataFrame | None = None) -> tuple[GemmParams, dict, dict[str, float]]:
    """(GEMM params, peaks, bandwidth the GEMM memory term needs to stay below every measured time, per memory
    kind: ``gemm``, and ``gemm@path`` for each other kernel path in ``paths``). The curve and peaks come from the
    main path (``df``) alone; another path's samples only add residual tables, so they change no other figure."""
    if df.empty:
        raise SpecError("--ops", "a measured calibration needs GEMM samples", "include gemm in --ops")
    peaks = peaks_of(df)
    main = "bf16" if "bf16" in set(df["dtype"]) else str(df["dtype"].iloc[0])
    g = df[df["dtype"] == main]
    rate = float((g["bytes"] / g["time_s"]).max())
    fit = fit_gemm(g["m"], g["n"], g["k"], g["bytes"], g["time_s"], peaks[DType(main).peak_key], rate * 2)
    quality["gemm_curve_rms_log_error"] = fit.rms_log_error
    launch = min(fit.launch_s, 0.5 * float(df["time_s"].min()))
    table, need_bw, first_call = {}, {}, {}
    groups = [("", df)] + ([] if paths is None or paths.empty else list(paths.groupby("path")))
    for path, part in groups:
        suffix = f"@{path}" if path else ""
        for d, rows in part.groupby("dtype"):
            if DType(d).peak_key not in peaks:
                raise SpecError("--ops", f"the {path} GEMMs were timed in {d}, which the gemm bench did not time",
                                "measure gemm and gemm_packed in the same formats")
            m, n, k = (rows[c].to_numpy(float) for c in ("m", "n", "k"))
            compute = rows["flops"].to_numpy() / (peaks[DType(d).peak_key] * curve_value(fit.curve, m, n, k))
            factor = np.maximum(rows["time_s"].to_numpy() - launch, 1e-12) / compute
            table[f"{d}{suffix}"] = residual_table(m, n, k, factor)
            if "first_call_s" in rows and rows["first_call_s"].notna().all():
                first_call[f"{d}{suffix}"] = first_call_fit(m, n, k, rows["first_call_s"].to_numpy(float)
                                                            - rows["time_s"].to_numpy(float))
        # The table carries every measured shape, so the memory roofline must never bind at a measured one.
        need_bw[f"gemm{suffix}"] = float(((part["bytes"] + half_bytes) / (part["time_s"] - launch)).max())
    return GemmParams(fit.curve, launch, {}, table, first_call=first_call), peaks, need_bw


def first_call_fit(m: np.ndarray, n: np.ndarray, k: np.ndarray, extra_s: np.ndarray) -> tuple[float, float, float]:
    """(s per call, s per input element, s per weight element) of a GEMM's first-call cost: each shape's first call
    less its steady-state median is one draw with a long tail (page faults, the machine's other work), so the
    non-negative fit uses a soft-L1 loss scaled to the median miss of a least-squares start."""
    x = np.column_stack([np.ones_like(m), m * k, n * k])
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    start, _ = nnls(x / scale, extra_s)
    f = max(float(np.median(np.abs((x / scale) @ start - extra_s))), 1e-9)  # the typical draw's miss
    sol = least_squares(lambda c: (x / scale) @ c - extra_s, start, bounds=(0.0, np.inf), loss="soft_l1", f_scale=f)
    coef = sol.x / scale
    return float(coef[0]), float(coef[1]), float(coef[2])

def _attention(df: pd.DataFrame, peaks: dict[str, float], quality: dict[str, float]) -> tuple[AttentionParams, float]:
    """Forward (prefill and decode) and backward curves, then a residual table per pass over (rows, keys)."""
    if df.empty:
        frac = UNMEASURED["attention_fraction"]
        return AttentionParams(Curve(frac), Curve(frac), UNMEASURED["launch_s"]), 0.0
    main = main_format(df)
    peak = peaks.get(DType(main).peak_key) or max(peaks.values())
    cols = ("flops", "bytes", "query_rows", "kv_per_seq", "time_s")
    others = df[df["dtype"] != main]
    df = df[df["dtype"] == main]
    fwd, bwd = df[df["pass"] != "bwd"], df[df["pass"] == "bwd"]
    f = fit_attention(*(fwd[c] for c in cols), peak, float((fwd["bytes"] / fwd["time_s"]).max()) * 2)
    quality["attention_forward_curve_rms_log_error"] = f.rms_log_error
    launch = min(f.launch_s, 0.5 * float(df["time_s"].min()))
    curves, table = {"fwd": f.curve, "bwd": f.curve}, {}
    for name, rows in (("fwd", fwd), ("bwd", bwd)):
        if rows.empty:
            continue
        if name == "bwd":
            bf = fit_attention(*(rows[c] for c in cols), peak, f.bandwidth_bytes_per_s, f.launch_s,
                               f.bandwidth_bytes_per_s)
            quality["attention_backward_curve_rms_log_error"] = bf.rms_log_error
            curves["bwd"] = bf.curve
        r, kv = rows["query_rows"].to_numpy(float), rows["kv_per_seq"].to_numpy(float)
        body = np.maximum(rows["flops"] / (peak * curve_value(curves[name], r, kv)),
                          rows["bytes"] / f.bandwidth_bytes_per_s).to_numpy()
        factor = np.maximum(rows["time_s"].to_numpy() - launch, 1e-12) / body
        intensity = (rows["flops"] / rows["bytes"]).to_numpy(float)  # separates GQA groups and prefill shapes
        table[name] = residual_grid((r, kv, intensity), ("log2_rows", "log2_kv", "log2_intensity"), factor,
                                    step=0.25)
    for (fmt, name), rows in others.groupby(["dtype", others["pass"].where(others["pass"] == "bwd", "fwd")]):
        # another format: its own residuals against the main curves at its own peak (Perf reads pass@format)
        fpeak = peaks.get(DType(str(fmt)).peak_key) or peak
        r, kv = rows["query_rows"].to_numpy(float), rows["kv_per_seq"].to_numpy(float)
        body = np.maximum(rows["flops"] / (fpeak * curve_value(curves[name], r, kv)),
                          rows["bytes"] / f.bandwidth_bytes_per_s).to_numpy()
        factor = np.maximum(rows["time_s"].to_numpy() - launch, 1e-12) / body
        intensity = (rows["flops"] / rows["bytes"]).to_numpy(float)
        table[f"{name}@{fmt}"] = residual_grid((r, kv, intensity), ("log2_rows", "log2_kv", "log2_intensity"),
                                               factor, step=0.25)
    return AttentionParams(curves["fwd"], curves["bwd"], launch, table), f.bandwidth_bytes_per_s


def fit_comm(df: pd.DataFrame, quality: dict[str, float], protocols: int = 1) -> CommParams:
    """Alpha-beta pairs per tier, collective and group size; all-reduce's entry is each tier's fallback.

    ``protocols``: 2 for NCCL (its LL/Simple protocol switch), 1 for gloo (one algorithm per collective). The
    fit is robust (soft L1) to the few delayed samples of a shared machine."""
    links: dict[str, dict[str, dict[str, Link | tuple[Link, ...]]]] = {}
    if df.empty:
        return CommParams(links)
    for (tier, coll, group), rows in df.groupby(["tier", "collective", "group"]):
        n = protocols if len(rows) >= 10 else 1
        fitted, err = fit_alpha_beta(coll, rows["bytes"], int(group), rows["time_s"], n, loss="soft_l1")
        links.setdefault(str(tier), {}).setdefault(str(coll), {})[str(int(group))] = fitted
        quality[f"{tier}_{coll}_{group}_rms_log_error"] = err
    for colls in links.values():
        if "all_reduce" in colls:
            colls["*"] = colls["all_reduce"]
    return CommParams(links)


def fit_device(samples: list[dict], name: str, device: str, threads: int | None = None,
               memory_bytes: float = 0.0, comm_protocols: int = 1) -> tuple[DeviceParams, dict[str, float]]:
    """Fit one device setting (one CPU thread count) from its samples; collectives are shared by all settings."""
    quality: dict[str, float] = {}
    mem = _memory(_frame(samples, "memory", threads), quality)
    gemm, peaks, gemm_bw = _gemm(_frame(samples, "gemm", threads), mem.half_bytes, quality,
                                 _frame(samples, "gemm_packed", threads))
    attention, att_bw = _attention(_frame(samples, "attention", threads), peaks, quality)
    stream = mem.bandwidth_bytes_per_s
    scale = {**mem.kind_scale, **{k: bw / stream for k, bw in gemm_bw.items()},
             **({"attention": att_bw / stream} if att_bw else {})}
    params = DeviceParams(name=name, kind="measured", device=device, peak_flops_per_s=peaks, gemm=gemm,
                          attention=attention,
                          memory=MemoryParams(stream, mem.launch_s, mem.half_bytes, scale, mem.table),
                          comm=fit_comm(_frame(samples, "comm"), quality, comm_protocols), memory_bytes=memory_bytes)
    return params, quality
