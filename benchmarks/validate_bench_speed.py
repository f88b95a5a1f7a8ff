"""Speed of `capsim validate bench` and `capsim calibrate engine` on large measured runs (issue 14's targets:
10,000 requests replayed in <= 5 s; an engine fit on one file in <= 10 s).

    python benchmarks/validate_bench_speed.py            # medians of 3, one core

The runs are synthetic ``vllm bench serve --save-result --save-detailed`` files (Poisson arrivals at 3 req/s,
prompts 128-384 tokens, outputs 32-96, a token every ~25 ms) for the shipped vLLM-CPU deployment (the small
Llama-style model of capsim/data/vllm-cpu on the shipped CPU calibration, engine vllm-cpu): what is timed is the
reading, the replay and the fit, not the figures they produce.
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
