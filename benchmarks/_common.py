"""Helpers shared by the benchmark scripts: one core, medians of repeats, ``name: value`` output."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def pin_one_core() -> None:
    """Run on one core so figures compare across machines (no-op where affinity is unsupported)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def median_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs: wall seconds, or with
    ``clock=time.process_time`` this process's CPU seconds (steadier on a shared machine for one-thread work)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times), min(times), max(times)


def report(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)
