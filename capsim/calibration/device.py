"""Any calibrated device is a device: a measured calibration turned into an :class:`Accelerator` and its device
model, so a CPU (or a GPU the catalog lacks) can be served, trained and planned for without a catalog entry.

What a measured calibration's ``device`` section carries (``capsim calibrate`` writes it): ``name``, ``type`` (cpu or
cuda), ``memory_bytes`` (host RAM for a CPU, device memory for a GPU), ``cores``, ``count`` (GPUs), the formats
measured (``dtypes``) and, where the user gave them, ``kv_cache_bytes`` (a fixed KV-cache space such as vLLM-CPU's
``VLLM_CPU_KVCACHE_SPACE``), ``power_w`` and ``price_usd_per_hour``. The thread counts measured are the host's
``threads`` (the main setting) and ``variant_threads``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from capsim.calibration.schema import Calibration, load_calibration
from capsim.errors import SpecError, UnknownNameError
from capsim.perf import Perf
from capsim.specs.hardware import Accelerator, Peaks

PEAK_KEYS = ("fp32", "tf32", "bf16", "fp8", "fp4", "int8")


@dataclass(frozen=True)
class CalibratedDevice:
    """The device a calibration describes: as an accelerator, its device model at one setting, and the KV space
    the user gave (None: the engine sizes its KV cache from memory)."""

    accelerator: Accelerator
    perf: Perf
    threads: int | None  # CPU threads of the setting used; None for a GPU
    kv_cache_bytes: float | None
    calibration: str

    def to_dict(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator.name, "calibration": self.calibration, "threads": self.threads,
                "kv_cache_bytes": self.kv_cache_bytes, "memory_bytes": self.accelerator.memory_bytes}


def thread_counts(cal: Calibration) -> tuple[int, ...]:
    """The CPU thread counts a calibration measured, main first (empty for a GPU or a datasheet file)."""
    main = cal.host.get("threads")
    if cal.device.get("type") != "cpu" or main is None:
        return ()
    return (int(main), *(int(t) for t in cal.host.get("variant_threads", [])))


def perf_at(cal: Calibration, threads: int | None) -> Perf:
    """The device model at ``threads`` (None: the main setting); an error naming the measured counts otherwise."""
    counts = thread_counts(cal)
    if threads is None or (counts and threads == counts[0]):
        return cal.perf()
    if not counts:
        raise SpecError("--threads", f"calibration {cal.name} is not of a CPU, so it has no thread settings",
                        "leave --threads out")
    if threads not in counts:
        raise SpecError("--threads", f"calibration {cal.name} measured {', '.join(map(str, counts))} thread(s), "
                        f"not {threads}", f"use one of those, or run `capsim calibrate --threads {threads}`")
    return cal.perf(f"threads={threads}")


def calibrated_device(calibration: str | Calibration, threads: int | None = None,
                      price_usd_per_hour: float | None = None) -> CalibratedDevice:
    """The accelerator a measured calibration describes, with its device model at ``threads``."""
    cal = load_calibration(calibration)
    if cal.kind != "measured":
        raise SpecError("--calibration", f"{cal.name} is a {cal.kind} calibration of {cal.device.get('name')}, a "
                        "catalog accelerator", f"pass -a {cal.device.get('name')} with it")
    perf = perf_at(cal, threads)
    d, p = cal.device, perf.params
    cpu = d.get("type") == "cpu"
    t = threads if threads is not None else (thread_counts(cal) or (None,))[0]
    name = f"{cal.name}@threads={t}" if cpu else cal.name
    memory = float(d.get("memory_bytes") or p.memory_bytes or 0.0)
    if memory <= 0:
        raise SpecError("--calibration", f"{cal.name} records no memory capacity",
                        "re-run `capsim calibrate` (it records the device's memory)")
    count = 1 if cpu else int(d.get("count", 1))
    acc = Accelerator(
        name=name, peaks=Peaks(**{k: v for k, v in p.peak_flops_per_s.items() if k in PEAK_KEYS}),
        memory_bytes=memory, memory_bw_bytes_per_s=p.memory.bandwidth_bytes_per_s,
        intra_node_link="none (one device)" if count == 1 else "pcie (measured collectives)",
        intra_node_bw_bytes_per_s=None, gpus_per_node=count, tdp_w=d.get("power_w"),
        source=f"measured calibration {cal.name}: {d.get('name')} ({d.get('type')})"
               + (f", {t} thread(s)" if cpu else ""),
        price_usd_per_hour=price_usd_per_hour if price_usd_per_hour is not None else d.get("price_usd_per_hour"))
    kv = d.get("kv_cache_bytes")
    return CalibratedDevice(acc, perf, t if cpu else None, None if kv is None else float(kv), cal.name)


def check_same_device(accelerator: Accelerator, calibration: str | Calibration) -> None:
    """``-a`` with a calibration of another device is an error that says which device the calibration measured."""
    from capsim.specs.catalog import get_accelerator

    cal = load_calibration(calibration)
    measured = cal.device.get("name", cal.name)
    try:
        same = get_accelerator(measured).name == accelerator.name
    except UnknownNameError:
        same = False
    if not same:
        kind = f"{cal.kind} calibration of {measured}" + (f" ({cal.device.get('type')})" if cal.device.get("type")
                                                          else "")
        raise SpecError("--accelerator", f"{accelerator.name} is not the device of calibration {cal.name} (a "
                        f"{kind})", "leave -a out to use the calibrated device, or pass that device's calibration")


__all__ = ["CalibratedDevice", "calibrated_device", "check_same_device", "perf_at", "thread_counts"]
