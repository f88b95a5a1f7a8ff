"""The vLLM-CPU engine's own time per decode step on this machine, from a microbenchmark of the engine.

    python benchmarks/vllm_cpu_bench.py --plan host --model-config capsim/data/vllm-cpu-host/model/config.json \
        --out capsim/data/vllm-cpu-host          # ~2 min: the 1-layer set (needs the vLLM CPU venv, see that script)
    for P in 1 2; do for L in 8 4 2 1; do python benchmarks/vllm_cpu_bench.py --venv /work/.vllm-venv --plan host \
        --model-config capsim/data/vllm-cpu-host/model/config.json --layers $L \
        --out capsim/data/vllm-cpu-host/depth/pass-$P/layers-$L; done; done   # ~2.3 min per layer count and pass
    nice -n -10 taskset -c 0 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_sampler.py --repeats 15 \
        --out capsim/data/vllm-cpu-host/sampler/sampler.json     # ~1.5 min per pass (pass 2: sampler-pass2.json)
    python benchmarks/vllm_cpu_host.py           # seconds: the engine's time per step from the saved runs

The runs serve a 64-wide Llama (dummy weights; its forward pass is a small part of each step) at fixed concurrencies
of 1 to 32 requests, 16-token prompts and 128 output tokens, so nearly every step decodes the whole batch. Each run
is replayed through capsim with the ``vllm-cpu`` profile's host time set to zero; what the measured time per output
token exceeds that replay by is the engine's own time per step at that batch.

1. The 1-layer set (capsim/data/vllm-cpu-host/*.json, measured on an idle machine): the mean TPOT's excess, a
   least-squares line over the batch: the engine's per-step and per-sequence time with its caches warm (this
   model's weights stay in cache). Printed last (headline ``per_step_s``). The ``vllm-cpu`` profile no longer
   prices it: it holds the host time beside weights beyond the L3, timed in place by
   ``benchmarks/vllm_cpu_step_profile.py`` (about twice this; the data README, last section).
2. The depth sweep (depth/pass-*/layers-{1,2,4,8}: the same model at 1, 2, 4 and 8 decoder layers, two passes,
   measured while other jobs loaded the machine): the median request's E2E per output token (not the mean TPOT:
   under load the API server and client on the core the worker leaves fall behind and receive a request's tokens
   in one burst, which leaves E2E right but moves time from TPOT into TTFT); of the passes each (layers, batch)
   keeps its lowest (other jobs only ever add time); a least-squares plane over (batch, layers) separates a
   per-layer term: the engine's time per decoder layer beyond what capsim prices for that layer's kernels.
3. The width check (width-512/layers-{1,2}: the vLLM-CPU suite's 512-wide model, vocabulary 32,000, cut to 1 and 2
   layers; one pass, loaded machine): each run's excess and the time one more layer adds, measured and in capsim.
4. The sampler (sampler/sampler*.json, ``benchmarks/vllm_cpu_sampler.py``: vLLM's V1 ``Sampler.forward`` alone at
   vocabularies 1,000-128,000 and batches 1-32, greedy / temperature 1.0 / top-p 0.9 / top-k 50 / greedy with
   penalties, one thread; of the two passes
   each point keeps its lower median, as other jobs only add time): each mode's
   least-squares line t = per call + per row x batch + per logit x batch x vocabulary, and what capsim prices for
   the same rows on the suite's calibration (capsim's generic price: the logits softmax plus ``sampler_ops``); and
   the ``sampler_s[mode]`` lines engines.yaml's vllm-cpu ``sampler_s`` holds (per call + per logit x batch x
   vocabulary, non-negative least squares in relative error; ``sampler_s[penalties]``: greedy+penalties less the
   greedy line).
5. The suite model's GEMMs (step-gemms/pass-*.txt, ``benchmarks/vllm_cpu_step_gemms.py``: vLLM's own oneDNN
   kernels in a decode step's order, 4 layers' weights and the LM head): what capsim prices for the same GEMMs on
   the suite's calibration and the engine's kernel path (``capsim_*`` lines; reads the suite's model config only).

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


def _sampler_line(rows: list[tuple[int, int, float]]) -> tuple[np.ndarray, float]:
    """Least squares of t = call + row x batch + logit x batch x vocab over (vocab, batch, t): terms, rms."""
    vocab, batch, t = (np.array(x, float) for x in zip(*rows, strict=True))
    design = np.column_stack([np.ones_like(t), batch, batch * vocab])
    terms, *_ = np.linalg.lstsq(design, t, rcond=None)
    return terms, float(np.sqrt(np.mean((t - design @ terms) ** 2)))


PENALTIES = "+penalties"  # a sampler mode measured with repetition, frequency and presence penalties on


def sampler_rows(folder: Path = DATA / "sampler") -> list[dict]:
    """The sampler passes (sampler*.json), each (mode, vocab, batch) at its lowest median over the passes."""
    best: dict[tuple[str, int, int], float] = {}
    for f in sorted(folder.glob("sampler*.json")):
        for r in json.loads(f.read_text())["rows"]:
            k = (r["mode"], r["vocab"], r["batch"])
            best[k] = min(r["median_s"], best.get(k, r["median_s"]))
    return [{"mode": m, "vocab": v, "batch": b, "median_s": t} for (m, v, b), t in best.items()]


def sampler_profile(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """engines.yaml vllm-cpu sampler_s: per mode, the line t = per call + per logit x batch x vocabulary over every
    (vocabulary, batch) point, non-negative, least squares in relative error (each point weighted by 1 / t, so the
    0.02 ms points count as much as the 100 ms ones: an unweighted fit leaves random's call term at 0 and misses
    small steps by up to 80%)."""
    from scipy.optimize import nnls

    out: dict[str, tuple[float, float]] = {}
    for mode in sorted(dict.fromkeys(r["mode"] for r in rows), key=lambda m: m.endswith(PENALTIES)):
        pts = [r for r in rows if r["mode"] == mode]
        t = np.array([r["median_s"] for r in pts])
        design = np.array([[1.0, r["batch"] * r["vocab"]] for r in pts])
        base = np.zeros_like(t)
        if mode.endswith(PENALTIES):  # "MODE+penalties": what the penalties add to MODE's own line
            call, logit = out[mode.removesuffix(PENALTIES)]
            base = call + logit * design[:, 1]
        terms, _ = nnls(design / t[:, None], 1.0 - base / t)
        out["penalties" if mode.endswith(PENALTIES) else mode] = (float(terms[0]), float(terms[1]))
    return out


def sampler_profile_residuals(rows: list[dict], terms: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Per mode, (rms, max) relative residual of the profile's line over the measured points."""
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        parts = [terms[m] for m in mode.split("+")]  # "greedy+penalties": greedy's line plus the penalties'
        rel = np.array([sum(c + g * r["batch"] * r["vocab"] for c, g in parts) / r["median_s"] - 1
                        for r in rows if r["mode"] == mode])
        out[mode] = (float(np.sqrt(np.mean(rel**2))), float(np.abs(rel).max()))
    return out


def sampler_check(spec: dict) -> None:
    """vLLM's sampler alone (sampler/sampler.json) against capsim's price of the same rows on the calibration."""
    import dataclasses

    from capsim.analytic.ops import head_ops
    from capsim.analytic.serving import Sampling, engine_perf, sampler_ops

    dep, _ = deployment(spec, DATA)
    perf = engine_perf(dep.perf, dep.engine)[0]  # the engine's kernel paths and efficiencies, as its steps are priced
    rows = sampler_rows()
    sampling = {m: Sampling.parse(m) for m in dict.fromkeys(r["mode"] for r in rows)}  # generic prices, no profile
    for mode, kind in sampling.items():
        measured, priced = [], []
        for r in (r for r in rows if r["mode"] == mode):
            model = dataclasses.replace(dep.model, vocab=int(r["vocab"]))
            ops = [o for o in head_ops(model, r["batch"], 1, dep.plan.dtype, logits_tokens=r["batch"])
                   if o.name == "logits_softmax"] + sampler_ops(model, r["batch"], kind)
            measured.append((r["vocab"], r["batch"], r["median_s"]))
            priced.append((r["vocab"], r["batch"], float(perf.ops_s(ops))))
            if r["vocab"] == 32000:
                print(f"sampler_{mode}_s[vocab=32000,batch={r['batch']}]: measured {r['median_s']:.6f}, "
                      f"capsim {priced[-1][2]:.6f}")
        for name, points in (("measured", measured), ("capsim", priced)):
            (call, row, logit), rms = _sampler_line(points)
            print(f"sampler_{mode}_{name}: per_call_s {call:.3e} per_row_s {row:.3e} per_logit_s {logit:.3e} "
                  f"rms_s {rms:.2e}")
    profile = sampler_profile(rows)
    for mode, (rms, worst) in sampler_profile_residuals(rows, profile).items():
        key = "penalties" if mode.endswith(PENALTIES) else mode
        call, logit = profile[key]
        print(f"sampler_s[{key}]: [{call:.3e}, {logit:.3e}] relative residual rms {rms:.3f} max {worst:.3f} "
              f"(over the {mode} points)"
              "  # engines.yaml vllm-cpu sampler_s (per call s, per logit s)")


def step_gemms_check(spec: dict) -> None:
    """capsim's price of the suite model's GEMMs (step-gemms/: vLLM's own kernels, benchmarks/vllm_cpu_step_gemms.py)."""
    from capsim.analytic.ops import head_ops
    from capsim.analytic.serving import engine_perf, layer_token_ops

    dep, _ = deployment(spec, ROOT / "capsim" / "data" / "vllm-cpu")
    perf = engine_perf(dep.perf, dep.engine)[0]
    for m in (1, 8, 32):
        ops = [o for o in layer_token_ops(dep.model, dep.plan, m, 1.0) if o.kind.value == "gemm"]
        head = [o for o in head_ops(dep.model, m, 1, dep.plan.dtype, logits_tokens=m) if o.name == "lm_head"]
        for o in ops + head:
            print(f"capsim_ms[{o.name},M={m}]: {float(perf.op_s(o)) * 1e3:.4f}")
        print(f"capsim_step_gemms_ms[M={m}]: {float(dep.model.layers * perf.ops_s(ops) + perf.ops_s(head)) * 1e3:.4f}")


def main() -> None:
    import yaml

    spec = yaml.safe_load((DATA / "suite.yaml").read_text())
    depth_sweep(spec)
    width_check(spec)
    sampler_check(spec)
    step_gemms_check(yaml.safe_load((ROOT / "capsim" / "data" / "vllm-cpu" / "suite.yaml").read_text()))
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
