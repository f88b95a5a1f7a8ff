"""The measuring half of suite ``local``: builds the torch models and times them (torch imported in functions).

The machine may be shared: each measurement records how many cores other processes kept busy meanwhile
(/proc/stat minus this process and its children), and the data-parallel run, which needs every core and the wall
clock, first waits (a bounded time) for a quiet spell.
"""

from __future__ import annotations

import os
from typing import Any

from capsim.calibration.machine import OtherLoad, wait_quiet


def measure(cases: list, threads: int, repeats: int, ddp_timeout_s: float = 600.0,
            quiet_wait_s: float = 90.0) -> tuple[list[dict], list[str]]:
    """Median and spread of every case's step: single-process cases interleaved at ``threads`` threads, data
    parallel cases in two spawned gloo processes of one thread each. Returns (timings, notes)."""
    import torch

    from kernels.local_bench import time_interleaved, workload
    from kernels.models import DecoderConfig

    quiet = wait_quiet(max_wait_s=quiet_wait_s)
    notes = [f"single-process rows at torch.set_num_threads({threads}); 1-min load average before: "
             f"{os.getloadavg()[0]:.2f}" + (f"; other processes busy on {quiet:.2f} cores at the start"
                                            if quiet is not None else "")]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    single = [c for c in cases if c.phase != "ddp"]
    load = OtherLoad()
    try:
        calls = [workload(DecoderConfig(**c.config()), c.phase, c.batch, c.length) for c in single]
        timed = dict(zip(single, (t.to_dict() for t in time_interleaved(calls, repeats)), strict=True))
    finally:
        torch.set_num_threads(before)
    notes.append(_busy_note("single-process rows", load.cores()))
    ddp = [c for c in cases if c.phase == "ddp"]
    if ddp:
        quiet = wait_quiet(max_wait_s=quiet_wait_s)
        load = OtherLoad()
        timed.update(_measure_ddp(ddp, repeats, ddp_timeout_s))
        notes.append(_busy_note("data-parallel rows", load.cores())
                     + (f" (before starting: {quiet:.2f} cores)" if quiet is not None else ""))
    return [timed[c] for c in cases], notes


def _busy_note(what: str, cores: float | None) -> str:
    if cores is None:
        return f"{what}: other processes' CPU use unknown (no /proc/stat)"
    return f"{what}: other processes kept {cores:.2f} of {os.cpu_count()} cores busy on average"


def _measure_ddp(cases: list, repeats: int, timeout_s: float) -> dict[Any, dict]:
    """Per case: the median over the steps no other process disturbed (else over all steps), with counts."""
    from capsim.calibration.comm import spawn_workers
    from kernels.local_bench import ddp_worker, undisturbed

    plan = [{"id": i, "config": c.config(), "batch": c.batch, "length": c.length} for i, c in enumerate(cases)]
    out: dict[Any, dict] = {}

    def keep(s: dict) -> None:
        timing, quiet = undisturbed(s["steps_s"], s["other_cores"])
        out[cases[s["id"]]] = {**timing.to_dict(), "quiet_steps": quiet, "steps": len(s["steps_s"]),
                               "all_steps_median_s": sorted(s["steps_s"])[len(s["steps_s"]) // 2],
                               "process_cpu_s": s["process_cpu_s"]}

    spawn_workers(ddp_worker, 2, (plan, max(3 * repeats, 15), timeout_s), timeout_s, keep)
    return out
