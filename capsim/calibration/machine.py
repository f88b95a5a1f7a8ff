"""How busy the machine is: cores kept busy by other processes, read from /proc/stat (Linux; None elsewhere).

Calibration and validation record it beside their figures, so a reader can tell a quiet run from a crowded one.
"""

from __future__ import annotations

import os
import time

QUIET_CORES = 0.5  # other processes may use at most this many cores for the data-parallel run to start
QUIET_WAIT_S = 90.0


def _cpu_ticks() -> tuple[float, float] | None:
    """(busy, total) seconds of all CPUs since boot, or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Average cores kept busy by other processes between start and ``cores()``."""

    def __init__(self) -> None:
        self.start, self.own, self.wall = _cpu_ticks(), _own_cpu_s(), time.monotonic()

    def cores(self) -> float | None:
        end = _cpu_ticks()
        if end is None or self.start is None:
            return None
        wall = max(time.monotonic() - self.wall, 1e-9)
        return max((end[0] - self.start[0]) - (_own_cpu_s() - self.own), 0.0) / wall


def wait_quiet(limit: float = QUIET_CORES, max_wait_s: float = QUIET_WAIT_S) -> float | None:
    """Wait until other processes use fewer than ``limit`` cores over one second (or ``max_wait_s`` passes);
    returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        probe = OtherLoad()
        time.sleep(1.0)
        busy = probe.cores()
        if busy is None or busy < limit or time.monotonic() > deadline:
            return busy
