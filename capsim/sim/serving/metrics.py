"""Serving metrics in the vocabulary of ``vllm bench serve``: TTFT, TPOT, ITL, E2E, throughput, goodput, and
per-replica utilization, batch size, KV-cache occupancy and queue length over time; cost per token.

Every percentile here is numpy's ``inverted_cdf`` (the smallest value whose share of the samples reaches p%),
with the inter-token gaps weighted by the sequences that saw them (:mod:`capsim.sim.serving.gaps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capsim.sim.serving.gaps import GapSummary
from capsim.sim.serving.records import TIMELINE, ReplicaRecord
from capsim.sim.serving.state import Requests

PERCENTILES = (50, 90, 99)
METHOD = "inverted_cdf"  # one percentile definition for every figure of the summary


@dataclass(frozen=True)
class ServingResult:
    """A simulated serving run: per-request records, time series, per-replica figures and a summary."""

    requests: pd.DataFrame  # one row per request (times in seconds from the start)
    timeline: pd.DataFrame  # one row per scheduling decision of each replica
    replicas: pd.DataFrame  # one row per replica (per virtual engine at pp > 1: replica i // pp)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.summary)


@dataclass(frozen=True)
class RunInfo:
    """What the summary reports next to the measurements: the run's setup."""

    calibration: str
    engine: str
    scheduler: str
    replicas: int
    gpus: int
    kv_blocks: int  # per scheduler: per replica, or per virtual engine of a pipeline-parallel replica
    block_size: int
    max_seq: int  # the model's context length
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    fast: bool
    ttft_offset_s: float = 0.0  # the engine sees a request this long after the client sends it (measured or fitted)
    virtual_engines: int = 1  # schedulers (batches in flight) per replica: its pipeline stages (capsim.sim.serving.pipeline)


def _stats(name: str, values: np.ndarray, out: dict[str, Any]) -> None:
    v = values[np.isfinite(values)]
    out[f"{name}_mean_s"] = float(v.mean()) if len(v) else math.nan
    pct = np.percentile(v, PERCENTILES, method=METHOD) if len(v) else [math.nan] * len(PERCENTILES)
    for p, x in zip(PERCENTILES, pct, strict=True):
        out[f"{name}_p{p}_s"] = float(x)


def gap_summary(records: Sequence[ReplicaRecord]) -> GapSummary:
    """Every replica's inter-token gaps as one weighted multiset (stored gaps and decode-run progressions)."""
    pairs = [r.gap_arrays() for r in records]
    values = np.concatenate([v for v, _ in pairs]) if pairs else np.zeros(0)
    weights = np.concatenate([w for _, w in pairs]) if pairs else np.zeros(0)
    runs = np.concatenate([r.run_array() for r in records]) if records else np.zeros((0, 5))
    return GapSummary.build(values, weights, runs)


def _gap_stats(gaps: GapSummary, out: dict[str, Any]) -> None:
    """Mean and percentiles of the inter-token gaps, each gap counted once per sequence (vLLM lists every gap)."""
    out["itl_mean_s"] = gaps.mean()
    for p, x in zip(PERCENTILES, gaps.percentiles(PERCENTILES), strict=True):
        out[f"itl_p{p}_s"] = x


def request_frame(req: Requests, info: RunInfo) -> pd.DataFrame:
    d = req.to_arrays()
    d["arrival_s"] = d["arrival_s"] - info.ttft_offset_s  # the client's send (the engine's is later)
    arrival, first, finish, out = d["arrival_s"], d["first_token_s"], d["finish_s"], d["output_tokens"]
    cols: dict[str, np.ndarray] = {"request": np.arange(len(arrival)), **d}
    cols["ttft_s"] = first - arrival
    cols["e2e_s"] = finish - arrival
    cols["queue_s"] = d["start_s"] - arrival
    cols["tpot_s"] = np.where(out > 1, (finish - first) / (out - 1).clip(1), np.nan)
    ok = np.ones(len(arrival), bool)
    if info.slo_ttft_s is not None:
        ok &= cols["ttft_s"] <= info.slo_ttft_s
    if info.slo_tpot_s is not None:
        ok &= ~(cols["tpot_s"] > info.slo_tpot_s)
    cols["meets_slo"] = ok
    return pd.DataFrame(cols)  # one construction: every column computed in numpy first


def timeline_frame(records: Sequence[ReplicaRecord], kv_blocks: int) -> pd.DataFrame:
    arrays = [r.timeline_array() for r in records]
    data = np.concatenate(arrays) if arrays else np.zeros((0, len(TIMELINE)))
    df = pd.DataFrame({"time_s": data[:, 0], "replica": np.repeat([r.idx for r in records], [len(a) for a in arrays])})
    for i, c in enumerate(TIMELINE[1:], start=1):
        df[c] = data[:, i].astype(np.int64)
    df["batch_size"] = df["decoding"] + df["prefilling"]
    df["kv_occupancy"] = df["kv_blocks_used"] / kv_blocks
    return df


def replica_frame(records: Sequence[ReplicaRecord], timeline: pd.DataFrame, horizon_s: float) -> pd.DataFrame:
    """Per replica: utilization (busy time / run time), time-weighted batch size, KV occupancy, queue length."""
    rows = []
    cols = {c: timeline[c].to_numpy() for c in ("time_s", "batch_size", "kv_occupancy", "waiting")}
    bounds = np.searchsorted(timeline["replica"].to_numpy(), np.arange(len(records) + 1))
    for rec in records:
        lo, hi = bounds[rec.idx], bounds[rec.idx + 1]
        t = cols["time_s"][lo:hi]
        dt = np.diff(np.append(t, horizon_s))
        w = dt / dt.sum() if len(dt) and dt.sum() > 0 else dt

        def avg(col: str, lo: int = lo, hi: int = hi, w: np.ndarray = w) -> float:
            return float(np.dot(cols[col][lo:hi], w)) if hi > lo else 0.0

        occ, wait = cols["kv_occupancy"][lo:hi], cols["waiting"][lo:hi]
        rows.append({"replica": rec.idx, "role": rec.role,
                     "utilization": rec.busy_s / horizon_s if horizon_s > 0 else 0.0, "busy_s": rec.busy_s,
                     "batch_size_mean": avg("batch_size"), "kv_occupancy_mean": avg("kv_occupancy"),
                     "kv_occupancy_max": float(occ.max()) if hi > lo else 0.0, "queue_length_mean": avg("waiting"),
                     "queue_length_max": int(wait.max()) if hi > lo else 0, "preemptions": rec.preemptions})
    return pd.DataFrame(rows)


def build_result(req: Requests, records: Sequence[ReplicaRecord], info: RunInfo,
                 price_usd_per_gpu_hour: float) -> ServingResult:
    """The run's per-request frame, time series, per-replica frame and summary."""
    requests = request_frame(req, info)
    start = float(requests["arrival_s"].min())
    horizon = float(requests["finish_s"].max())
    duration = max(horizon - start, 1e-12)
    timeline = timeline_frame(records, info.kv_blocks)
    reps = replica_frame(records, timeline, horizon)
    out_tokens, in_tokens = float(requests["output_tokens"].sum()), float(requests["prompt_tokens"].sum())
    s: dict[str, Any] = {"completed": len(requests), "duration_s": duration,
                         "request_throughput_rps": len(requests) / duration, "input_tokens_per_s": in_tokens / duration,
                         "output_tokens_per_s": out_tokens / duration,
                         "total_tokens_per_s": (in_tokens + out_tokens) / duration}
    for name in ("ttft", "tpot", "e2e", "queue"):
        _stats(name, requests[f"{name}_s"].to_numpy(float), s)
    _gap_stats(gap_summary(records), s)
    s["goodput"] = float(requests["meets_slo"].mean())
    s["goodput_rps"] = float(requests["meets_slo"].sum()) / duration
    s["preemptions"] = int(requests["preemptions"].sum())
    looked = sum(rec.prefix_lookup_tokens for rec in records)  # prompt tokens the prefix caches looked up
    s["prefix_cache_hit_rate"] = sum(rec.prefix_hit_tokens for rec in records) / looked if looked else 0.0
    for col in ("utilization", "batch_size_mean", "kv_occupancy_mean", "queue_length_mean"):
        s[f"{col}" if col.endswith("mean") else f"{col}_mean"] = float(reps[col].mean())
    s["kv_occupancy_max"] = float(reps["kv_occupancy_max"].max())
    s["cost_per_hour_usd"] = info.gpus * price_usd_per_gpu_hour
    s["cost_per_million_output_tokens"] = s["cost_per_hour_usd"] * duration / 3600 / out_tokens * 1e6
    over = int(np.sum(requests["prompt_tokens"] + requests["output_tokens"] > info.max_seq))
    s.update(calibration=info.calibration, engine=info.engine, scheduler=info.scheduler, replicas=info.replicas,
             gpus=info.gpus, kv_tokens_per_replica=info.kv_blocks * info.block_size * info.virtual_engines,
             virtual_engines_per_replica=info.virtual_engines, requests_over_context=over,
             slo_ttft_s=info.slo_ttft_s, slo_tpot_s=info.slo_tpot_s, mode="fast" if info.fast else "step",
             price_usd_per_gpu_hour=price_usd_per_gpu_hour)
    return ServingResult(requests, timeline, reps, s)


__all__ = ["METHOD", "PERCENTILES", "RunInfo", "ServingResult", "build_result", "gap_summary"]
