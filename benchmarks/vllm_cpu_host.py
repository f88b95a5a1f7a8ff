"""The vLLM-CPU engine's own time per decode step on this machine, from a microbenchmark of the engine.

    python benchmarks/vllm_cpu_bench.py --plan host --model-config capsim/data/vllm-cpu-host/model/config.json \
        --out capsim/data/vllm-cpu-host          # ~2 min: the 1-layer set (needs the vLLM CPU venv, see that script)
    for P in 1 2; do for L in 8 4 2 1; do python benchmarks/vllm_cpu_bench.py --venv /work/.vllm-venv --plan host \
        --model-config capsim/data/vllm-cpu-host/model/config.json --layers $L \
        --out capsim/data/vllm-cpu-host/depth/pass-$P/layers-$L; done; done   # ~2.3 min per layer count and pass
    python benchmarks/vllm_cpu_host.py           # seconds: the engine's time per step from the saved runs

The runs serve a 64-wide Llama (dummy weights; its forward pass is a small part of each step) at fixed concurrencies
of 1 to 32 requests, 16-token prompts and 128 output tokens, so nearly every step decodes the whole batch. Each run
is replayed through capsim with the ``vllm-cpu`` profile's host time set to zero; what the measured time per output
token exceeds that replay by is the engine's own time per step at that batch.

1. The 1-layer set (capsim/data/vllm-cpu-host/*.json, measured on an idle machine): the mean TPOT's excess, a
   least-squares line over the batch: the per-step and per-sequence terms the ``vllm-cpu`` profile prices
   (engines.yaml cites this script and its data). Printed last (headline ``per_step_s``).
2. The depth sweep (depth/pass-*/layers-{1,2,4,8}: the same model at 1, 2, 4 and 8 decoder layers, two passes,
   measured while other jobs loaded the machine): the median request's E2E per output token (not the mean TPOT:
   under load the API server and client on the core the worker leaves fall behind and receive a request's tokens
   in one burst, which leaves E2E right but moves time from TPOT into TTFT); of the passes each (layers, batch)
   keeps its lowest (other jobs only ever add time); a least-squares plane over (batch, layers) separates a
   per-layer term: the engine's time per decoder layer beyond what capsim prices for that layer's kernels.
3. The width check (width-512/layers-{1,2}: the vLLM-CPU suite's 512-wide model, vocabulary 32,000, cut to 1 and 2
   layers; one pass, loaded machine): each run's excess and the time one more layer adds, measured and in capsim.

No run of the vLLM-CPU validation suite (capsim/data/vllm-cpu) is used.
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


def excess(spec: dict, folder: Path, statistic: str = "tpot") -> list[tuple[int, int, float, float]]:
    """(batch, layers, measured, capsim without host time) per run in ``folder``: the mean TPOT ("tpot"), or the
    median request's end-to-end latency per output token ("e2e")."""
    dep, _ = deployment(spec, folder)
    bare = dep.with_engine(dep.engine.with_(cpu={}))
    out = []
    for name, c in RUNS:
        run = read_bench(folder / name)
        if statistic == "tpot":
            measured = measured_summary(run)["tpot_mean_s"]
            device = float(replay(run, bare)[0].summary["tpot_mean_s"])
        else:
            tokens = float(np.mean(run.output_tokens))
            measured = measured_summary(run)["e2e_p50_s"] / tokens
            device = float(replay(run, bare)[0].summary["e2e_p50_s"]) / tokens
        out.append((c, dep.model.layers, measured, device))
    return out


def fit(rows: list[tuple[int, int, float]]) -> tuple[np.ndarray, float]:
    """Least squares of host = step + sequence x batch + layer x layers: the terms and the rms residual."""
    batch, layers, host = (np.array(x, float) for x in zip(*rows, strict=True))
    design = np.column_stack([np.ones_like(batch), batch, layers])
    terms, *_ = np.linalg.lstsq(design, host, rcond=None)
    return terms, float(np.sqrt(np.mean((host - design @ terms) ** 2)))


def depth_sweep(spec: dict) -> None:
    passes = sorted(p for p in (DATA / "depth").iterdir() if p.is_dir())
    by_run: dict[tuple[int, int], list[float]] = {}
    for p in passes:
        for n in LAYERS:
            folder = p / f"layers-{n}"
            load = json.loads((folder / "manifest.json").read_text())["load_avg_before_server"][0]
            for c, layers, measured, device in excess(spec, folder, "e2e"):
                by_run.setdefault((layers, c), []).append(measured - device)
                print(f"engine_s_per_step[{p.name},layers={layers},batch={c}]: {measured - device:.6f} (median E2E "
                      f"per output token {measured * 1e3:.3f} ms, capsim without host time {device * 1e3:.3f} ms, "
                      f"load average before the server {load:.2f})")
    for name, pick in (("median_over_passes", np.median), ("lowest_of_passes", min)):
        (step, seq, layer), rms = fit([(c, n, float(pick(v))) for (n, c), v in by_run.items()])
        print(f"depth_{name}: per_step_s {step:.4e} per_sequence_s {seq:.4e} per_layer_s {layer:.4e} "
              f"rms_s {rms:.2e} ({len(by_run)} runs, {len(passes)} passes)")


def width_check(spec: dict) -> None:
    """The suite's 512-wide model (vocabulary 32,000) cut to 1 and 2 layers (width-512/): where its time goes."""
    runs = {n: excess(spec, DATA / "width-512" / f"layers-{n}", "e2e") for n in (1, 2)}
    for n, rows in runs.items():
        for c, _, measured, device in rows:
            print(f"width512_s_per_step[layers={n},batch={c}]: {measured - device:.6f} (median E2E per output token "
                  f"{measured * 1e3:.3f} ms, capsim without host time {device * 1e3:.3f} ms)")
    for (c, _, m1, d1), (_, _, m2, d2) in zip(runs[1], runs[2], strict=True):
        print(f"width512_per_layer_s[batch={c}]: measured {m2 - m1:.6f}, capsim {d2 - d1:.6f}")


def main() -> None:
    import yaml

    spec = yaml.safe_load((DATA / "suite.yaml").read_text())
    depth_sweep(spec)
    width_check(spec)
    rows = []
    for c, _, measured, device in excess(spec, DATA):
        rows.append((c, measured - device))
        print(f"engine_s_per_step[batch={c}]: {measured - device:.6f} (measured TPOT {measured * 1e3:.3f} ms, "
              f"capsim without host time {device * 1e3:.3f} ms)")
    batch, host = (np.array(x, float) for x in zip(*rows, strict=True))
    slope, intercept = np.polyfit(batch, host, 1)
    resid = host - (intercept + slope * batch)
    print(f"per_sequence_s: {slope:.4e}")
    print(f"fit_rms_s: {float(np.sqrt(np.mean(resid ** 2))):.4e}")
    print(f"manifest_load_avg_before_server: {json.loads((DATA / 'manifest.json').read_text())['load_avg_before_server'][0]:.2f}")
    print(f"per_step_s: {intercept:.4e}")

if __name__ == "__main__":
    main()
