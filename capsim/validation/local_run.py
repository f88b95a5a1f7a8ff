"""The measuring half of suite ``local``: builds the torch models and times them (torch imported in functions)."""

from __future__ import annotations

import os
from typing import Any


def measure(cases: list, threads: int, repeats: int, ddp_timeout_s: float = 600.0) -> tuple[list[dict], list[str]]:
    """Median and spread of every case's step: single-process cases interleaved at ``threads`` threads, data
    parallel cases in two spawned gloo processes of one thread each. Returns (timings, notes)."""
    import torch

    from kernels.local_bench import time_interleaved, workload
    from kernels.models import DecoderConfig

    notes = [f"single-process rows at torch.set_num_threads({threads}); 1-min load average before: "
             f"{os.getloadavg()[0]:.2f}"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    single = [c for c in cases if c.phase != "ddp"]
    try:
        calls = [workload(DecoderConfig(**c.config()), c.phase, c.batch, c.length) for c in single]
        timed = dict(zip(single, (t.to_dict() for t in time_interleaved(calls, repeats)), strict=True))
    finally:
        torch.set_num_threads(before)
    ddp = [c for c in cases if c.phase == "ddp"]
    if ddp:
        timed.update(_measure_ddp(ddp, repeats, ddp_timeout_s))
    notes.append(f"1-min load average after: {os.getloadavg()[0]:.2f}")
    return [timed[c] for c in cases], notes


def _measure_ddp(cases: list, repeats: int, timeout_s: float) -> dict[Any, dict]:
    from capsim.calibration.comm import spawn_workers
    from kernels.local_bench import ddp_worker

    plan = [{"id": i, "config": c.config(), "batch": c.batch, "length": c.length} for i, c in enumerate(cases)]
    out: dict[Any, dict] = {}
    spawn_workers(ddp_worker, 2, (plan, repeats, timeout_s), timeout_s,
                  lambda s: out.__setitem__(cases[s["id"]], {**s["timing"], "process_cpu_s": s["process_cpu_s"]}))
    return out
