"""Check that a change to the serving simulator leaves its results unchanged, bit for bit.

Runs a fixed set of fleets (the speed benchmark's two cases and the test suite's scheduler/engine/router/preemption
configurations, in fast and step mode) and saves every per-request record, time series, per-replica figure and
summary value. Save with one tree, check with another:

    PYTHONPATH=/work/main python benchmarks/serving_sim_identity.py --save /tmp/ref.npz
    PYTHONPATH=$PWD       python benchmarks/serving_sim_identity.py --check /tmp/ref.npz

The reference is an ``.npz`` of plain arrays plus a JSON manifest, read with ``allow_pickle=False``: checking a file
never runs code from it (no pickle).

Prints ``name: value`` lines; the headline (last) is the number of fleets whose results differ (0 to pass).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from capsim import get_accelerator, get_model, load_calibration  # noqa: E402
from capsim.sim.serving import Lengths, ServeConfig, Workload, engine_plan, renewal, simulate  # noqa: E402
from capsim.sim.serving.presets import WorkloadSpec, build_workload, preset_spec  # noqa: E402
from capsim.sim.serving.workload import ArrivalKind  # noqa: E402

MODEL, ACC = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")


def _poisson(n: int, rate: float, seed: int, lengths: Lengths) -> Workload:
    rng = np.random.default_rng(seed)
    p, o = lengths.draw(n, rng)
    return Workload("poisson", p, o, renewal(rate, n, None, rng))


def cases() -> dict[str, tuple[dict, Workload, dict]]:
    """name -> (plan changes, workload, ServeConfig fields)."""
    conv = build_workload(preset_spec("azure-conv"))
    big = build_workload(WorkloadSpec(ArrivalKind.POISSON, lengths=Lengths.lognormal(1155, 0.96, 211, 0.77),
                                      rate_rps=40.0, requests=100_000, seed=1, name="poisson-100k"))
    mid = _poisson(2000, 8.0, 0, Lengths.lognormal(700, 0.9, 150, 0.9))
    hot = _poisson(1500, 30.0, 3, Lengths.lognormal(900, 0.9, 200, 0.9))
    closed = Workload("closed", np.full(400, 1500), np.full(400, 200), None, 16)
    # Prefix caching (issue 13): the speed benchmark's shared 500-token system prompt, and 40 groups (conversations
    # resending a history of up to 1,200 tokens) on a small KV cache, where groups are evicted and re-cached.
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 40, hot.size)
    shared = replace(hot, prefix_group=groups.astype(np.int64),
                     prefix_tokens=np.minimum(hot.prompt_tokens, 300 + 23 * groups).astype(np.int64))
    out: dict[str, tuple[dict, Workload, dict]] = {
        "bench_azure_conv": ({"replicas": 4}, conv, {}),
        "bench_poisson_100k": ({"replicas": 16}, big, {}),
        "conv_v0": ({"replicas": 4}, conv, {"engine": "vllm-v0"}),
        "conv_v0_eager": ({"replicas": 4}, conv, {"engine": get_engine_eager("vllm-v0")}),
        "closed_loop": ({}, closed, {}),
        "bench_poisson_100k_prefix_cached": ({"replicas": 16}, replace(big, prefix_group=np.zeros(big.size, np.int64),
                                             prefix_tokens=np.minimum(big.prompt_tokens, 500).astype(np.int64)), {}),
    }
    configs = {
        "sarathi": ({}, {"engine": "vllm"}),
        "v0": ({}, {"engine": "vllm-v0"}),
        "v0_preempt_lor": ({"gpu_memory_utilization": 0.25, "replicas": 2},
                           {"engine": "vllm-v0", "router": "least-outstanding"}),
        "sarathi_preempt": ({"gpu_memory_utilization": 0.25, "max_batched_tokens": 512}, {"engine": "vllm"}),
        "static": ({"max_batch": 8}, {"engine": "vllm", "scheduler": "static"}),
        "disagg": ({"replicas": 4}, {"engine": "sglang", "prefill_replicas": 1, "router": "random"}),
        "sarathi_hot_2rep": ({"replicas": 2}, {"engine": "vllm"}),
        "prefix_evict": ({"gpu_memory_utilization": 0.25, "replicas": 2}, {"engine": "vllm"}),
        "prefix_lor": ({"replicas": 3}, {"engine": "vllm", "router": "least-outstanding"}),
    }
    for name, (plan_kw, cfg) in configs.items():
        wl = shared if name.startswith("prefix") else hot if name.endswith("hot_2rep") else mid
        for fast in (True, False):
            out[f"{name}_{'fast' if fast else 'step'}"] = (plan_kw, wl, {**cfg, "fast": fast})
    return out


def get_engine_eager(name: str):  # noqa: ANN201
    from capsim.specs.engine import get_engine

    return get_engine(name, cuda_graphs=False)


def run(plan_kw: dict, wl: Workload, cfg: dict) -> dict[str, object]:
    engine = cfg.get("engine", "vllm")
    perf = load_calibration("A100-SXM4-80GB").perf()
    plan = engine_plan(engine, MODEL, ACC, **plan_kw)
    res = simulate(MODEL, plan, ACC, perf, wl, ServeConfig(**cfg))
    return {"requests": res.requests, "timeline": res.timeline, "replicas": res.replicas,
            "summary": {k: v for k, v in res.summary.items()}}


TABLES = ("requests", "timeline", "replicas")


def _columns(df: object) -> dict[str, np.ndarray]:
    """A DataFrame as plain arrays (text columns as fixed-width strings, so no pickle is ever needed)."""
    out = {}
    for c in df.columns:
        arr = df[c].to_numpy()
        out[str(c)] = arr.astype(str) if arr.dtype == object else arr
    return out


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def save(results: dict[str, dict[str, object]], path: str) -> None:
    arrays, manifest = {}, {}
    for name, res in results.items():
        manifest[name] = {"summary": {k: _plain(v) for k, v in res["summary"].items()}}
        for key in TABLES:
            cols = _columns(res[key])
            manifest[name][key] = list(cols)
            arrays.update({f"{name}/{key}/{c}": a for c, a in cols.items()})
    np.savez_compressed(path, __manifest__=np.array(json.dumps(manifest)), **arrays)


def load(path: str) -> dict[str, dict[str, object]]:
    with np.load(path, allow_pickle=False) as z:
        manifest = json.loads(str(z["__manifest__"]))
        return {name: {"summary": m["summary"],
                       **{key: {c: z[f"{name}/{key}/{c}"] for c in m[key]} for key in TABLES}}
                for name, m in manifest.items()}


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _same_array(x: np.ndarray, y: np.ndarray) -> bool:
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


def differs(ref: dict[str, object], new: dict[str, object]) -> list[str]:
    bad = []
    for key in TABLES:
        x, y = ref[key], _columns(new[key])
        if list(x) != list(y):
            bad.append(f"{key}: columns")
            continue
        bad += [f"{key}.{c}" for c in x if not _same_array(x[c], y[c])]
    summary = {k: _plain(v) for k, v in new["summary"].items()}
    for k, v in ref["summary"].items():
        if not _same(v, summary.get(k)):
            bad.append(f"summary.{k}: {v!r} != {summary.get(k)!r}")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save")
    g.add_argument("--check")
    args = ap.parse_args()
    results = {name: run(*case) for name, case in cases().items()}
    if args.save:
        save(results, args.save)
        report("fleets_saved", len(results))
        return
    ref = load(args.check)
    failed = 0
    for name, new in results.items():
        bad = differs(ref[name], new)
        report(name, "identical" if not bad else "DIFFERS " + "; ".join(bad[:6]))
        failed += bool(bad)
    report("fleets_differing", failed)


if __name__ == "__main__":
    main()
