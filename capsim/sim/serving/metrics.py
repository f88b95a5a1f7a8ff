"""Serving metrics in the vocabulary of ``vllm bench serve``: TTFT, TPOT, ITL, E2E, throughput, goodput, and
per-replica utilization, batch size, KV-cache occupancy and queue length over time; cost per token."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from capsim.sim.serving.fleet import Fleet

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class ServingResult:
    """A simulated serving run: per-request records, time series, per-replica figures and a summary."""

    requests: pd.DataFrame  # one row per request (times in seconds from the start)
    timeline: pd.DataFrame  # one row per scheduling decision of each replica
    replicas: pd.DataFrame  # one row per replica
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.summary)


def _stats(name: str, values: np.ndarray, out: dict[str, Any]) -> None:
    v = values[np.isfinite(values)]
    out[f"{name}_mean_s"] = float(v.mean()) if len(v) else math.nan
    pct = np.percentile(v, PERCENTILES) if len(v) else [math.nan] * len(PERCENTILES)  # one partition for all
    for p, x in zip(PERCENTILES, pct, strict=True):
        out[f"{name}_p{p}_s"] = float(x)


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, ps: tuple[int, ...]) -> list[float]:
    """For each p: the smallest value x whose weight W(values <= x) reaches p% of the total (the inverted-CDF
    percentile of ``values`` repeated ``weights`` times, as a full sort gives it). A weighted sample brackets
    each percentile between two of its values; only the values inside the bracket are sorted (a few O(n) passes
    instead of a full argsort), and a bracket that misses is widened until it holds the percentile."""
    n = len(values)
    total = float(weights.sum())
    pick = slice(None, None, max(n // 4096, 1))
    order = np.argsort(values[pick])
    sample, sample_cw = values[pick][order], np.cumsum(weights[pick][order])
    out = []
    for p in ps:
        t = p / 100 * total
        i, d = int(np.searchsorted(sample_cw, p / 100 * sample_cw[-1])), 32
        while True:
            lo = sample[i - d] if i - d >= 0 else -np.inf  # the bracket is (lo, hi]
            hi = sample[i + d] if i + d < len(sample) else np.inf
            below = float(weights[values <= lo].sum())
            inside = (values > lo) & (values <= hi)
            v, w = values[inside], weights[inside]
            reach = below + float(w.sum())
            if (below < t or lo == -np.inf) and (reach >= t or hi == np.inf):
                break
            d *= 4
        order = np.argsort(v)
        c = below + np.cumsum(w[order])
        out.append(float(v[order[min(int(np.searchsorted(c, t)), len(v) - 1)]]))
    return out


def _weighted_stats(name: str, values: np.ndarray, weights: np.ndarray, out: dict[str, Any]) -> None:
    """Mean and percentiles of ``values`` repeated ``weights`` times (vLLM lists every gap)."""
    if not len(values) or weights.sum() <= 0:
        _stats(name, np.array([]), out)
        return
    out[f"{name}_mean_s"] = float(np.dot(values, weights) / weights.sum())
    for p, x in zip(PERCENTILES, weighted_percentiles(values, weights, PERCENTILES), strict=True):
        out[f"{name}_p{p}_s"] = x


def _flat(lists: list[list[float]]) -> np.ndarray:
    return np.concatenate([np.fromiter(x, float, len(x)) for x in lists]) if lists else np.zeros(0)


def itl_samples(fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    """Every inter-token gap with its weight (sequences that saw it): first gaps of decode runs stored as they
    happened, later steps of each run expanded from its closed-form lines in one vectorised pass."""
    reps = fleet.replicas
    vals, wts = [_flat([r.itl_gap for r in reps])], [_flat([r.itl_weight for r in reps])]
    for nlines in (2, 3):  # two lines with CUDA graphs, three with the CPU-dispatch floor
        kb = np.concatenate([np.array(r.itl_kb[nlines], np.int64) for r in reps]).reshape(-1, 2)
        if not len(kb):
            continue
        ks, bs = kb[:, 0], kb[:, 1].astype(float)
        lines = np.concatenate([np.array(r.itl_ab[nlines], float) for r in reps]).reshape(-1, nlines, 2)
        starts = np.cumsum(ks) - ks  # each run's first sample (every run has ks >= 1 samples)
        run = np.zeros(int(ks.sum()), np.int64)  # the run of each sample: a cumulative sum of run starts
        run[starts[1:]] = 1
        np.cumsum(run, out=run)
        j = np.arange(len(run), dtype=float) - starts[run] + 1.0  # steps 1..k-1 of each run
        out = lines[run, 0, 0] + lines[run, 0, 1] * j
        for i in range(1, nlines):
            np.maximum(out, lines[run, i, 0] + lines[run, i, 1] * j, out=out)
        vals.append(out)
        wts.append(bs[run])
    return np.concatenate(vals), np.concatenate(wts)


def request_frame(fleet: Fleet) -> pd.DataFrame:
    d = fleet.req.to_arrays()
    d["arrival_s"] = d["arrival_s"] - fleet.engine.ttft_offset_s  # the client's send (the engine's is later)
    arrival, first, finish, out = d["arrival_s"], d["first_token_s"], d["finish_s"], d["output_tokens"]
    cols: dict[str, np.ndarray] = {"request": np.arange(len(arrival)), **d}
    cols["ttft_s"] = first - arrival
    cols["e2e_s"] = finish - arrival
    cols["queue_s"] = d["start_s"] - arrival
    cols["tpot_s"] = np.where(out > 1, (finish - first) / (out - 1).clip(1), np.nan)
    cfg = fleet.cfg
    ok = np.ones(len(arrival), bool)
    if cfg.slo_ttft_s is not None:
        ok &= cols["ttft_s"] <= cfg.slo_ttft_s
    if cfg.slo_tpot_s is not None:
        ok &= ~(cols["tpot_s"] > cfg.slo_tpot_s)
    cols["meets_slo"] = ok
    return pd.DataFrame(cols)  # one construction: every column computed in numpy first


def timeline_frame(fleet: Fleet) -> pd.DataFrame:
    cols = ["time_s", "decoding", "prefilling", "waiting", "kv_blocks_used"]
    sizes = [len(r.timeline) // 5 for r in fleet.replicas]
    data = np.concatenate([np.fromiter(r.timeline, float, len(r.timeline)) for r in fleet.replicas]).reshape(-1, 5)
    df = pd.DataFrame({"time_s": data[:, 0], "replica": np.repeat(np.arange(len(sizes)), sizes)})
    for i, c in enumerate(cols[1:], start=1):
        df[c] = data[:, i].astype(np.int64)
    df["batch_size"] = df["decoding"] + df["prefilling"]
    df["kv_occupancy"] = df["kv_blocks_used"] / fleet.blocks
    return df


def replica_frame(fleet: Fleet, timeline: pd.DataFrame, horizon_s: float) -> pd.DataFrame:
    """Per replica: utilization (busy time / run time), time-weighted batch size, KV occupancy, queue length."""
    rows = []
    cols = {c: timeline[c].to_numpy() for c in ("time_s", "batch_size", "kv_occupancy", "waiting")}
    bounds = np.searchsorted(timeline["replica"].to_numpy(), np.arange(len(fleet.replicas) + 1))
    for rep in fleet.replicas:
        lo, hi = bounds[rep.idx], bounds[rep.idx + 1]
        t = cols["time_s"][lo:hi]
        dt = np.diff(np.append(t, horizon_s))
        w = dt / dt.sum() if len(dt) and dt.sum() > 0 else dt

        def avg(col: str, lo: int = lo, hi: int = hi, w: np.ndarray = w) -> float:
            return float(np.dot(cols[col][lo:hi], w)) if hi > lo else 0.0

        occ, wait = cols["kv_occupancy"][lo:hi], cols["waiting"][lo:hi]
        rows.append({"replica": rep.idx, "role": rep.cfg.role.value,
                     "utilization": rep.busy_s / horizon_s if horizon_s > 0 else 0.0, "busy_s": rep.busy_s,
                     "batch_size_mean": avg("batch_size"), "kv_occupancy_mean": avg("kv_occupancy"),
                     "kv_occupancy_max": float(occ.max()) if hi > lo else 0.0, "queue_length_mean": avg("waiting"),
                     "queue_length_max": int(wait.max()) if hi > lo else 0, "preemptions": rep.preemptions})
    return pd.DataFrame(rows)


def build_result(fleet: Fleet, price_usd_per_gpu_hour: float) -> ServingResult:
    req = request_frame(fleet)
    start = float(req["arrival_s"].min())
    horizon = float(req["finish_s"].max())
    duration = max(horizon - start, 1e-12)
    timeline = timeline_frame(fleet)
    reps = replica_frame(fleet, timeline, horizon)
    out_tokens, in_tokens = float(req["output_tokens"].sum()), float(req["prompt_tokens"].sum())
    plan = fleet.plan
    s: dict[str, Any] = {"completed": len(req), "duration_s": duration,
                         "request_throughput_rps": len(req) / duration, "input_tokens_per_s": in_tokens / duration,
                         "output_tokens_per_s": out_tokens / duration,
                         "total_tokens_per_s": (in_tokens + out_tokens) / duration}
    for name in ("ttft", "tpot", "e2e", "queue"):
        _stats(name, req[f"{name}_s"].to_numpy(float), s)
    _weighted_stats("itl", *itl_samples(fleet), s)
    s["goodput"] = float(req["meets_slo"].mean())
    s["goodput_rps"] = float(req["meets_slo"].sum()) / duration
    s["preemptions"] = int(req["preemptions"].sum())
    for col in ("utilization", "batch_size_mean", "kv_occupancy_mean", "queue_length_mean"):
        s[f"{col}" if col.endswith("mean") else f"{col}_mean"] = float(reps[col].mean())
    s["kv_occupancy_max"] = float(reps["kv_occupancy_max"].max())
    gpus = plan.num_gpus
    s["cost_per_hour_usd"] = gpus * price_usd_per_gpu_hour
    s["cost_per_million_output_tokens"] = s["cost_per_hour_usd"] * duration / 3600 / out_tokens * 1e6
    s.update(calibration=fleet.perf.name, engine=fleet.engine.name, scheduler=fleet.policy.value,
             replicas=plan.replicas, gpus=gpus, kv_tokens_per_replica=fleet.blocks * plan.block_size,
             requests_over_context=int(np.sum(req["prompt_tokens"] + req["output_tokens"] > fleet.model.max_seq)),
             slo_ttft_s=fleet.cfg.slo_ttft_s, slo_tpot_s=fleet.cfg.slo_tpot_s, mode="fast" if fleet.cfg.fast
             else "step", price_usd_per_gpu_hour=price_usd_per_gpu_hour)
    return ServingResult(req, timeline, reps, s)


__all__ = ["PERCENTILES", "ServingResult", "build_result", "weighted_percentiles"]
