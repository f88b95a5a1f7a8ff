"""The machine a calibration runs on: how busy it is (cores kept busy by other processes, read from /proc/stat;
None off Linux), and its fingerprint (CPU model, compute flags, cores, a GEMM probe) so that a measured
calibration can tell when it is used on another machine.

Calibration and validation record the load beside their figures, so a reader can tell a quiet run from a crowded
one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from typing import Any

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


# Instruction-set flags that change how fast kernels run (x86 vector and matrix units; Arm SIMD). Other flags
# (mitigations, virtualisation) vary with kernels and microcode and say nothing about speed.
COMPUTE_FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                           "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimdhp",
                           "sve", "sve2", "bf16", "i8mm"})
PROBE_TOLERANCE = 0.30  # a GEMM probe this far (relative) from the recorded one: another machine, or throttled
# (on a shared 2-core VM the probe moved 17% between a quiet and a crowded minute: 91 and 76 GFLOP/s)


def cpu_fingerprint() -> dict[str, Any]:
    """This machine's CPU as a calibration records it: model name, compute flags (and a hash of all flags),
    logical cores. Read from /proc/cpuinfo on Linux, from ``platform`` elsewhere."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model", "Hardware") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return {"cpu_model": model, "cores": os.cpu_count(), "flags": sorted(flags & COMPUTE_FLAGS),
            "flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]}


def fingerprint_differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """What differs between a calibration's fingerprint and this machine's, in words (empty: it matches).
    The GEMM probe is compared only where both sides have one."""
    out = []
    if recorded.get("cpu_model") != here.get("cpu_model"):
        out.append(f"CPU {recorded.get('cpu_model')!r}, here {here.get('cpu_model')!r}")
    if recorded.get("cores") != here.get("cores"):
        out.append(f"{recorded.get('cores')} cores, here {here.get('cores')}")
    if set(recorded.get("flags", [])) != set(here.get("flags", [])):
        gone = sorted(set(recorded.get("flags", [])) - set(here.get("flags", [])))
        new = sorted(set(here.get("flags", [])) - set(recorded.get("flags", [])))
        out.append("instruction sets differ (" + ", ".join([*(f"-{f}" for f in gone), *(f"+{f}" for f in new)]) + ")")
    a, b = recorded.get("gemm_probe_flops_per_s"), here.get("gemm_probe_flops_per_s")
    if a and b and abs(b / a - 1) > PROBE_TOLERANCE:
        out.append(f"GEMM probe {b / 1e9:.1f} GFLOP/s here against {a / 1e9:.1f} when calibrated")
    return out


def machine_mismatch(device: dict[str, Any], probe: dict[str, Any] | None = None) -> str | None:
    """One line when a measured CPU calibration's ``device`` was not measured on this machine (None if it was,
    or where the calibration is not of a CPU). ``probe``: this machine's GEMM probe, where one was run."""
    if device.get("type") != "cpu":
        return None
    recorded = device.get("fingerprint")
    if not recorded:
        return (f"this calibration of {device.get('name')!r} has no machine fingerprint (written before capsim "
                "recorded one); run `capsim calibrate --quick` to measure this machine")
    diff = fingerprint_differences(recorded, {**cpu_fingerprint(), **(probe or {})})
    if not diff:
        return None
    return (f"this calibration was measured on another machine ({'; '.join(diff)}); run `capsim calibrate --quick` "
            "to measure this one")
