"""The vLLM-CPU engine's own time per decode step on this machine, from a microbenchmark of the engine.

    python benchmarks/vllm_cpu_bench.py --plan host --model-config capsim/data/vllm-cpu-host/model/config.json \
        --out capsim/data/vllm-cpu-host          # ~2 min: measure (needs the vLLM CPU venv, see that script)
    python benchmarks/vllm_cpu_host.py           # seconds: the engine's time per step from the saved runs

The runs serve a 1-layer, 64-wide Llama (dummy weights; its forward pass is a small part of each step) at fixed
concurrencies of 1 to 32 requests, 16-token prompts and 128 output tokens, so nearly every step decodes the whole
batch. Each run is replayed through capsim with the ``vllm-cpu`` profile's host time set to zero; what the measured
time per output token (TPOT) exceeds that replay by is the engine's own time per step at that batch. A least-squares
line over the batch gives the per-step and per-sequence terms the ``vllm-cpu`` profile prices (engines.yaml cites
this script and its data). No run of the vLLM-CPU validation suite (capsim/data/vllm-cpu) is used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from capsim.data.bench import measured_summary, read_bench
from capsim.validation.bench import replay
from capsim.validation.bench_suites import deployment

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "capsim" / "data" / "vllm-cpu-host"
RUNS = (("single.json", 1), *((f"concurrency-{c}.json", c) for c in (2, 4, 8, 16, 32)))


def main() -> None:
    import yaml

    spec = yaml.safe_load((DATA / "suite.yaml").read_text())
    dep, _ = deployment(spec, DATA)
    bare = dep.with_engine(dep.engine.with_(cpu={}))
    batch, host = [], []
    for name, c in RUNS:
        run = read_bench(DATA / name)
        measured = measured_summary(run)["tpot_mean_s"]
        device = float(replay(run, bare)[0].summary["tpot_mean_s"])
        batch.append(c)
        host.append(measured - device)
        print(f"engine_s_per_step[batch={c}]: {measured - device:.6f} (measured TPOT {measured * 1e3:.3f} ms, "
              f"capsim without host time {device * 1e3:.3f} ms)")
    slope, intercept = np.polyfit(batch, host, 1)
    resid = np.asarray(host) - (intercept + slope * np.asarray(batch))
    print(f"per_sequence_s: {slope:.4e}")
    print(f"fit_rms_s: {float(np.sqrt(np.mean(resid ** 2))):.4e}")
    print(f"manifest_load_avg_before_server: {json.loads((DATA / 'manifest.json').read_text())['load_avg_before_server'][0]:.2f}")
    print(f"per_step_s: {intercept:.4e}")


if __name__ == "__main__":
    main()
