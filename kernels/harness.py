"""The timing harness every microbenchmark shares (nanoGPT ``bench.py`` style: burn-in, then a measured stage
bracketed by a device synchronisation).

One ``Timing`` is the median of ``repeats`` measured repeats; each repeat runs the kernel ``inner`` times back to
back so that it lasts far longer than the timer's resolution (and, on a GPU, than one launch).

Clock: wall time (``perf_counter``) on GPUs and multi-threaded CPUs; on a CPU running torch with one thread, the
CPU time of that thread (``thread_time``, user + system): every kernel runs in the calling thread, so this is the
wall time the work takes while it holds a core, without the spells when a shared machine's other processes take
the core away (which no fit or prediction can know about).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

RESOLUTION_MARGIN = 1000.0  # a repeat lasts at least this many timer ticks (0.1% quantisation error)


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one kernel: the median over repeats, with its spread."""

    median_s: float
    min_s: float
    max_s: float
    q1_s: float  # first quartile over repeats
    q3_s: float  # third quartile
    repeats: int
    inner: int  # calls per repeat
    clock: str = "wall"  # "wall" (perf_counter) or "thread" (the calling thread's CPU time)

    @property
    def spread(self) -> float:
        """Inter-quartile range over the median: the run-to-run noise of this sample."""
        return (self.q3_s - self.q1_s) / self.median_s if self.median_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread}


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def choose_clock(device: str) -> str:
    """"thread" for a single-threaded CPU torch, else "wall" (see the module docstring)."""
    return "thread" if not str(device).startswith("cuda") and torch.get_num_threads() == 1 else "wall"


def timer_resolution_s(samples: int = 2000, clock: str = "wall") -> float:
    """The smallest positive step of the clock seen in back-to-back reads (an upper bound on its tick, including
    the cost of reading it); at least the clock's advertised resolution."""
    read = CLOCKS[clock]
    steps = []
    last = read()
    for _ in range(samples):
        now = read()
        if now > last:
            steps.append(now - last)
        last = now
    advertised = time.get_clock_info("thread_time" if clock == "thread" else "perf_counter").resolution
    return max(min(steps) if steps else advertised, advertised)


def synchronize(device: str) -> None:
    """Wait for queued kernels: a no-op on CPU, ``torch.cuda.synchronize`` on a GPU."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def run_timed(fn: Callable[[], object], inner: int, device: str, clock: str = "wall") -> float:
    """Seconds for ``inner`` back-to-back calls, bracketed by device synchronisation."""
    read = CLOCKS[clock]
    synchronize(device)
    t0 = read()
    for _ in range(inner):
        fn()
    synchronize(device)
    return read() - t0


def summarize(times: list[float], inner: int, clock: str) -> Timing:
    s = sorted(times)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
    return Timing(statistics.median(s), s[0], s[-1], q[0], q[2], len(s), inner, clock)


def time_fn(fn: Callable[[], object], device: str = "cpu", repeats: int = 5, warmup: int = 1,
            min_repeat_s: float = 0.005, resolution_s: float | None = None, clock: str | None = None) -> Timing:
    """Time ``fn``: ``warmup`` untimed calls, a probe that sizes ``inner``, then ``repeats`` measured repeats.

    A repeat lasts at least ``min_repeat_s`` and at least RESOLUTION_MARGIN ticks of the clock.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    clock = clock or choose_clock(device)
    resolution = timer_resolution_s(clock=clock) if resolution_s is None else resolution_s
    for _ in range(warmup):
        fn()
    probe = run_timed(fn, 1, device, clock)
    floor = max(min_repeat_s, RESOLUTION_MARGIN * resolution)
    inner = max(1, int(round(floor / max(probe, resolution))))
    return summarize([run_timed(fn, inner, device, clock) / inner for _ in range(repeats)], inner, clock)


def last_level_cache_bytes(device: str) -> float:
    """Size of the last-level cache: the GPU's L2, else the CPU's highest cache level (32 MiB if unknown)."""
    if str(device).startswith("cuda"):
        return float(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 2**25)
    best = 0.0
    for index in range(8):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size") as fh:
                text = fh.read().strip()
        except OSError:
            break
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        best = max(best, float(text.rstrip("KMG")) * scale)
    return best or 2.0**25


def rotating(make: Callable[[], tuple], nbytes: float, device: str, max_copies: int = 4096) -> Callable[[], tuple]:
    """Enough copies of a kernel's operands that cycling through them evicts the last-level cache before a copy
    comes round again (a cold-cache measurement, as nvbench and Triton's do_bench flush the L2): weights and KV
    caches stream from memory in a real model, not from a cache warmed by the previous repeat."""
    copies = max(1, min(max_copies, math.ceil(2.0 * last_level_cache_bytes(device) / max(nbytes, 1.0))))
    first = make()
    rest = [tuple(t.clone() for t in first) for _ in range(copies - 1)]  # a copy is cheaper than new random data
    cycle = itertools.cycle([first, *rest])
    return lambda: next(cycle)


def device_name(device: str) -> str:
    """A short name for the device: the GPU's marketing name, else the CPU model."""
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(device)
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
