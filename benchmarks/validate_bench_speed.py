"""Speed of `capsim validate bench` and `capsim calibrate engine` on large measured runs (issue 14's targets:
10,000 requests replayed in <= 5 s; an engine fit on one file in <= 10 s).

    python benchmarks/validate_bench_speed.py            # medians of 3, one core

The runs are synthetic ``vllm bench serve --save-result --save-detailed`` files (Poisson arrivals at 3 req/s,
prompts 128-384 tokens, outputs 32-96, a token every ~25 ms) for the shipped vLLM-CPU deployment (the small
Llama-style model of capsim/data/vllm-cpu on the shipped CPU calibration, engine vllm-cpu): what is timed is the
reading, the replay and the fit, not the figures they produce. The 10,000 requests are also read as SGLang,
GenAI-Perf (one streamed chunk per token, usage last) and AIPerf files.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, pin_one_core, report  # noqa: E402


def synthetic_run(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    prompts = rng.integers(128, 385, n)
    outputs = rng.integers(32, 97, n)
    sent = np.cumsum(rng.exponential(1 / 3.0, n))
    ttft = rng.uniform(0.05, 0.3, n)
    itls = [rng.normal(0.025, 0.004, k - 1).clip(0.005).round(6).tolist() for k in outputs]
    lat = ttft + np.array([sum(x) for x in itls])
    d = {"request_rate": 3.0, "burstiness": 1.0, "max_concurrency": None, "duration": float((sent + lat).max()),
         "input_lens": prompts.tolist(), "output_lens": outputs.tolist(), "ttfts": ttft.tolist(), "itls": itls,
         "latencies": lat.tolist(), "start_times": sent.tolist(), "queue_times": [0.0] * n, "errors": [""] * n}
    path.write_text(json.dumps(d))
    return path


def other_formats(path: Path) -> dict[str, Path]:
    """The same requests as SGLang, GenAI-Perf and AIPerf files (the shapes capsim/data/bench_clients.py and
    bench_nvidia.py read): what is timed is reading them."""
    d = json.loads(path.read_text())
    sg = {k: v for k, v in d.items() if k not in ("start_times", "latencies", "queue_times")}
    sg["total_output_tokens_retokenized"] = sum(d["output_lens"])
    out = {"sglang": path.with_suffix(".sglang.jsonl")}
    out["sglang"].write_text(json.dumps(sg) + "\n")
    t0 = 1_765_000_000_000_000_000
    chunk = ('data: {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": '
             '{"content": "tok"}}]}\n\n')
    reqs, lines = [], []
    for i, (s, f, g, p, o) in enumerate(zip(d["start_times"], d["ttfts"], d["itls"], d["input_lens"],
                                            d["output_lens"], strict=True)):
        ts = t0 + int(s * 1e9)
        times = (ts + np.round(np.cumsum([f, *g]) * 1e9)).astype(np.int64).tolist()
        usage = json.dumps({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": o}})
        reqs.append({"timestamp": ts, "request_inputs": {"payload": "{}"}, "response_timestamps": times + [times[-1]],
                     "response_outputs": [{"response": chunk}] * len(times) + [{"response": f"data: {usage}\n\n"}]})
        m = {"input_sequence_length": {"value": p, "unit": "tokens"},
             "output_sequence_length": {"value": o, "unit": "tokens"},
             "time_to_first_token": {"value": f * 1e3, "unit": "ms"},
             "request_latency": {"value": (f + sum(g)) * 1e3, "unit": "ms"},
             "inter_chunk_latency": {"value": [x * 1e3 for x in g], "unit": "ms"}}
        lines.append(json.dumps({"metadata": {"session_num": i, "request_start_ns": ts, "credit_issued_ns": ts,
                                              "benchmark_phase": "profiling", "was_cancelled": False},
                                 "metrics": m, "error": None}))
    out["genai-perf"] = path.with_suffix(".genai-perf.json")
    out["genai-perf"].write_text(json.dumps({"experiments": [{"experiment": {"mode": "request_rate", "value": 3.0},
                                                              "requests": reqs}], "version": "",
                                             "service_kind": "openai", "endpoint": "v1/chat/completions"}))
    out["aiperf"] = path.with_suffix(".aiperf.jsonl")
    out["aiperf"].write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    pin_one_core()
    from capsim.calibration.engine_fit import fit_engine_terms
    from capsim.calibration.engine_obs import run_observations
    from capsim.data.bench import read_bench
    from capsim.validation.bench import bench_report
    from capsim.validation.bench_suites import deployment, load_suite

    suite = load_suite("vllm-cpu")
    dep = deployment(suite.spec, suite.folder)[0]
    work = Path(tempfile.mkdtemp(prefix="capsim-bench-speed-"))
    files = {n: synthetic_run(work / f"run-{n}.json", n) for n in (1000, 10000)}
    device = dep.device_time()
    for n, path in files.items():
        med, lo, hi = median_time(lambda p=path: read_bench(p), repeats=3, warmup=0)
        report(f"read_{n}_requests_s", f"{med:.3f} (min {lo:.3f}, max {hi:.3f})")
        run = read_bench(path)
        med, lo, hi = median_time(lambda r=run: fit_engine_terms([run_observations(r, True, device)]), repeats=3,
                                  warmup=0)
        report(f"calibrate_engine_{n}_requests_s", f"{med:.3f} (min {lo:.3f}, max {hi:.3f})")
    for fmt, path in other_formats(files[10000]).items():
        med, lo, hi = median_time(lambda p=path: read_bench(p), repeats=3, warmup=0)
        report(f"read_10000_requests_{fmt}_s", f"{med:.3f} (min {lo:.3f}, max {hi:.3f})")
    runs = {n: read_bench(p) for n, p in files.items()}
    t0 = time.perf_counter()
    bench_report([runs[1000]], dep)
    report("validate_bench_1000_requests_s", f"{time.perf_counter() - t0:.3f}")

    def whole() -> None:  # the command's work: read the file, replay it, compare
        bench_report([read_bench(files[10000])], dep)

    med, lo, hi = median_time(whole, repeats=3, warmup=0)
    report("validate_bench_10000_requests_s", f"{med:.3f} (min {lo:.3f}, max {hi:.3f}; target <= 5)")


if __name__ == "__main__":
    main()
