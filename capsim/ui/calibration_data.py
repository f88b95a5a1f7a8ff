"""The data behind the calibration explorer: a calibration's raw samples as DataFrames, and its fitted model
evaluated at those samples and along smooth curves (``capsim.perf``). Pure: no Streamlit, no plotting.

Where the samples come from: a measured file keeps them (``samples``: gemm, memory, comm lists); a GPU-profile
calibration was fitted from the shipped Vidur profiles, re-read here through ``capsim.calibration.profiles``; a
datasheet calibration has none (its curves come from datasheet peaks and stated efficiencies).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from capsim.calibration import Calibration
from capsim.perf import Perf
from capsim.perf.model import curve_value

GEMM_COLUMNS = ("subset", "op", "m", "n", "k", "dtype", "time_s")
MEMORY_COLUMNS = ("subset", "category", "bytes", "time_s")
COMM_COLUMNS = ("subset", "collective", "group", "tier", "bytes", "time_s")
EMPTY = {"gemm": GEMM_COLUMNS, "memory": MEMORY_COLUMNS, "comm": COMM_COLUMNS}
REQUIRED = {"gemm": {"m", "n", "k", "time_s"}, "memory": {"category", "bytes", "time_s"},
            "comm": {"collective", "group", "bytes", "time_s"}}
DEFAULTS = {"subset": "all", "op": "gemm", "dtype": "bf16", "tier": "intra"}


def _empty(kind: str) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in EMPTY[kind]})


@cache
def _profile_samples(device: str) -> dict[str, pd.DataFrame]:
    """A profile calibration's raw samples, read from the shipped profiles (immutable: kept for the process)."""
    from capsim.calibration.profiles import DEVICES, GEMM_OPS, MEMORY_OPS, comm_samples, op_samples

    entry = DEVICES.get(device)
    if entry is None:
        return {k: _empty(k) for k in EMPTY}
    gpu_dir, node_dir, fit_models, held_out = entry
    ops = pd.concat([op_samples(gpu_dir, m) for m in (*fit_models, *held_out)], ignore_index=True)
    role = {m: "fitted" for m in fit_models} | {m: "held out" for m in held_out}
    ops["subset"] = (ops["model"].astype(str) + " tp" + ops["tp"].astype(str) + " ("
                     + ops["model"].map(role).astype(str) + ")")
    gemm = ops[ops["op"].isin(GEMM_OPS)].assign(dtype="fp16")
    mem = ops[ops["op"].isin(list(MEMORY_OPS))].assign(category=lambda d: d["op"].map(MEMORY_OPS))
    comm = comm_samples(node_dir).assign(subset=lambda d: d["tier"])
    return {"gemm": gemm[list(GEMM_COLUMNS)].reset_index(drop=True),
            "memory": mem.assign(subset=mem["subset"])[list(MEMORY_COLUMNS)].reset_index(drop=True),
            "comm": comm[list(COMM_COLUMNS)].reset_index(drop=True)}


def _listed(rows: list[dict[str, Any]], kind: str) -> pd.DataFrame:
    """A measured file's sample list as a frame with the explorer's columns (missing ones: a label)."""
    df = pd.DataFrame(rows)
    if df.empty or not REQUIRED[kind] <= set(df.columns):
        return _empty(kind)
    if "threads" in df.columns and "subset" not in df.columns:
        df["subset"] = [f"{t} threads" for t in df["threads"]]
    df = df.assign(**{c: DEFAULTS[c] for c in EMPTY[kind] if c not in df.columns})
    return df[list(EMPTY[kind])].reset_index(drop=True)


def samples(cal: Calibration) -> dict[str, pd.DataFrame]:
    """Raw samples by kind (gemm, memory, comm); empty frames where the calibration has none."""
    if cal.kind == "profile" and not cal.samples:
        return {k: v.copy() for k, v in _profile_samples(str(cal.fitted.device)).items()}
    return {kind: _listed(list(cal.samples.get(kind, [])), kind) for kind in EMPTY}


def gemm_dtype(perf: Perf, dtype: str) -> str:
    """``dtype`` where the calibration has a rate for it, else the first format it has."""
    try:
        perf.peak(dtype)
        return dtype
    except ValueError:
        have = [k for k, v in perf.params.peak_flops_per_s.items() if v]
        return have[0] if have else dtype


def gemm_points(perf: Perf, gemm: pd.DataFrame) -> pd.DataFrame:
    """Each GEMM sample's measured and predicted time and efficiency (achieved FLOP/s over the format's peak)."""
    if gemm.empty:
        return gemm.assign(label=[], flops=[], measured_eff=[], predicted_s=[], predicted_eff=[])
    out = []
    for dt, part in gemm.groupby("dtype", sort=False):
        fmt = gemm_dtype(perf, str(dt))
        m, n, k = (part[c].to_numpy(float) for c in ("m", "n", "k"))
        flops = 2.0 * m * n * k
        pred = np.asarray(perf.gemm_s(m, n, k, fmt), float) * np.ones(len(part))
        peak = perf.peak(fmt)
        out.append(part.assign(label=part["op"].astype(str) + " (" + part["n"].astype(int).astype(str) + "x"
                               + part["k"].astype(int).astype(str) + ")",
                               flops=flops, measured_eff=flops / (part["time_s"].to_numpy(float) * peak),
                               predicted_s=pred, predicted_eff=flops / (pred * peak)))
    return pd.concat(out, ignore_index=True)


def gemm_curves(perf: Perf, points: pd.DataFrame, steps: int = 40) -> pd.DataFrame:
    """The fitted efficiency along m for each (n, k) of ``points`` (the samples' shapes), on a log grid."""
    rows = []
    for (label, n, k, dt), part in points.groupby(["label", "n", "k", "dtype"], sort=False):
        fmt = gemm_dtype(perf, str(dt))
        m = np.geomspace(max(part["m"].min(), 1.0), part["m"].max(), steps)
        t = np.asarray(perf.gemm_s(m, float(n), float(k), fmt), float)
        rows.append(pd.DataFrame({"label": label, "m": m, "efficiency": 2.0 * m * n * k / (t * perf.peak(fmt))}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame({"label": [], "m": [], "efficiency": []})


def square_gemm_curve(perf: Perf, name: str, sizes: np.ndarray | None = None) -> pd.DataFrame:
    """Fitted efficiency of square GEMMs (m = n = k) in the calibration's bf16 format (or its first format)."""
    sizes = np.geomspace(64, 16384, 40) if sizes is None else sizes
    fmt = gemm_dtype(perf, "bf16")
    t = np.asarray(perf.gemm_s(sizes, sizes, sizes, fmt), float)
    return pd.DataFrame({"calibration": name, "size": sizes, "efficiency": 2.0 * sizes**3 / (t * perf.peak(fmt)),
                         "shape_efficiency": curve_value(perf.params.gemm.efficiency, sizes, sizes, sizes)})


def memory_points(perf: Perf, mem: pd.DataFrame) -> pd.DataFrame:
    """Each memory-bound sample's achieved and predicted bandwidth."""
    if mem.empty:
        return mem.assign(measured_bw=[], predicted_s=[], predicted_bw=[])
    b = mem["bytes"].to_numpy(float)
    pred = np.zeros(len(mem))
    for cat in mem["category"].unique():
        rows = (mem["category"] == cat).to_numpy()
        pred[rows] = perf.memory_s(b[rows], str(cat))
    return mem.assign(measured_bw=b / mem["time_s"].to_numpy(float), predicted_s=pred, predicted_bw=b / pred)


def memory_curves(perf: Perf, categories: list[str], low: float = 1e3, high: float = 1e10, steps: int = 40
                  ) -> pd.DataFrame:
    """Fitted achieved bandwidth against bytes moved, per category."""
    b = np.geomspace(low, high, steps)
    return pd.concat([pd.DataFrame({"category": c, "bytes": b, "bandwidth": b / np.asarray(perf.memory_s(b, c))})
                      for c in categories], ignore_index=True)


def memory_categories(perf: Perf) -> list[str]:
    return ["stream", *sorted(k for k in perf.params.memory.kind_scale if k != "gemm")]


def comm_links(perf: Perf, fallback_group: int) -> pd.DataFrame:
    """Every (tier, collective, group) the calibration states (a "*" entry priced at ``fallback_group``)."""
    rows = []
    for tier, colls in perf.params.comm.links.items():
        for coll, groups in colls.items():
            names = ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"] if coll == "*" else [coll]
            for name in names:
                for g in groups:
                    group = fallback_group if g == "*" else int(g)
                    rows.append({"tier": tier, "collective": name, "group": 2 if name == "send_recv" else group})
    return pd.DataFrame(rows).drop_duplicates().reset_index(drop=True)


def comm_curves(perf: Perf, links: pd.DataFrame, low: float = 1e3, high: float = 1e10, steps: int = 40
                ) -> pd.DataFrame:
    """Fitted collective time against buffer size, per (tier, collective, group)."""
    b = np.geomspace(low, high, steps)
    out = [pd.DataFrame({"tier": r.tier, "collective": r.collective, "group": r.group, "bytes": b,
                         "time_s": np.asarray(perf.collective_s(r.collective, b, int(r.group), r.tier), float)})
           for r in links.itertuples()]
    df = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=[*COMM_COLUMNS[1:]])
    return df.assign(label=df["collective"].astype(str) + " x" + df["group"].astype(str))


def comm_points(perf: Perf, comm: pd.DataFrame) -> pd.DataFrame:
    pred = np.zeros(len(comm))
    for (c, g, t), part in comm.groupby(["collective", "group", "tier"], sort=False):
        pred[comm.index.get_indexer(part.index)] = perf.collective_s(str(c), part["bytes"].to_numpy(float), int(g),
                                                                     str(t))
    if comm.empty:
        return comm.assign(predicted_s=[], label=[])
    return comm.assign(predicted_s=pred, label=comm["collective"].astype(str) + " x" + comm["group"].astype(str))


def thin(df: pd.DataFrame, per_group: int, by: str, order: str) -> pd.DataFrame:
    """At most ``per_group`` rows of each ``by`` group, evenly spaced along ``order`` (for drawing only)."""
    parts = []
    for _, g in df.groupby(by, sort=False):
        g = g.sort_values(order)
        parts.append(g.iloc[np.unique(np.linspace(0, len(g) - 1, per_group).astype(int))] if len(g) > per_group
                     else g)
    return pd.concat(parts, ignore_index=True) if parts else df


def summary(cal: Calibration) -> dict[str, Any]:
    """The fitted parameters a reader compares first, flat."""
    f = cal.fitted
    out: dict[str, Any] = {"name": cal.name, "kind": cal.kind, "device": f.device}
    out |= {f"peak {k} TFLOP/s": v / 1e12 for k, v in f.peak_flops_per_s.items() if v}
    out |= {"gemm peak fraction": f.gemm.efficiency.peak_fraction,
            "gemm half sizes (m, n, k)": ", ".join(f"{h:.4g}" for h in f.gemm.efficiency.half_sizes),
            "gemm launch us": f.gemm.launch_s * 1e6, "gemm residual table": f.gemm.table is not None,
            "attention fwd peak fraction": f.attention.forward.peak_fraction,
            "attention bwd peak fraction": f.attention.backward.peak_fraction,
            "memory stream GB/s": f.memory.bandwidth_bytes_per_s / 1e9, "memory launch us": f.memory.launch_s * 1e6,
            "memory half bytes": f.memory.half_bytes}
    out |= {f"memory {k} GB/s": f.memory.bandwidth_bytes_per_s * v / 1e9 for k, v in f.memory.kind_scale.items()}
    return out


__all__ = ["comm_curves", "comm_links", "comm_points", "gemm_curves", "gemm_points", "memory_categories",
           "memory_curves", "memory_points", "samples", "square_gemm_curve", "summary", "thin"]
