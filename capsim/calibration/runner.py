"""`capsim calibrate`: run the kernels/ microbenchmarks on this machine, then fit and write a measured calibration.

Safe to interrupt: samples go to a partial file (``.calibrate-partial-<name>.json`` beside the output, written
atomically) as they arrive; the same command resumes from it, and the output file is replaced only once, atomically,
when every sample is in. torch is imported only inside the functions that run kernels.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capsim.calibration.comm import under_torchrun
from capsim.calibration.machine import OtherLoad, cpu_fingerprint
from capsim.calibration.measured import fit_device
from capsim.calibration.partial import (
    Progress,
    Saver,
    case_key,
    load_partial,
    partial_path,
)
from capsim.calibration.schema import (
    Calibration,
    calibrations_dir,
    load_calibration,
    user_calibrations_dir,
    write_calibration,
)
from capsim.errors import SpecError

NATIVE_FRACTION = 0.25  # a CPU format below this fraction of fp32's GEMM rate is emulated: left out of a full run

BENCHES = ("gemm", "gemm_packed", "attention", "memory", "comm")
# gemm_packed: forward linears on weights prepacked for oneDNN (kernels/gemm.py run_packed_gemm), the path vLLM's CPU
# backend runs its dense projections on; a CPU path, so a GPU run leaves it out.
CPU_ONLY = ("gemm_packed",)


def default_ops(device: str) -> tuple[str, ...]:
    """Every bench the device runs: all of them on a CPU, all but the CPU-only ones on a GPU."""
    return BENCHES if device == "cpu" else tuple(b for b in BENCHES if b not in CPU_ONLY)


@dataclass(frozen=True)
class RunConfig:
    """What to measure. Empty tuples mean "the default for this device"."""

    device: str = "cpu"
    quick: bool = False
    ops: tuple[str, ...] = ()  # empty: default_ops(device)
    threads: tuple[int, ...] = ()  # CPU thread counts; the first is the main setting, the rest become variants
    dtypes: tuple[str, ...] = ()
    comm_groups: tuple[int, ...] = ()
    comm_timeout_s: float = 120.0
    repeats: int = 0  # 0: 3 with --quick, else 5
    # Facts about the device the user gives, recorded in the calibration's device section (calibration.device):
    kv_cache_bytes: float | None = None  # a fixed KV-cache space (vLLM-CPU's VLLM_CPU_KVCACHE_SPACE), bytes
    power_w: float | None = None
    price_usd_per_hour: float | None = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


def check_device(device: str) -> None:
    """A clear error when the device asked for is not there."""
    import torch

    if device not in ("cpu", "cuda"):
        raise SpecError("--device", f"unknown device {device!r}", "use cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device", f"CUDA is not available (torch {torch.__version__} sees no GPU)",
                        "run with --device cpu, or on a machine with a GPU and a CUDA build of torch")


def resolve(config: RunConfig) -> RunConfig:
    """Fill the device defaults: threads (all cores, then 1), formats, and collective group sizes."""
    import torch

    ops = config.ops or default_ops(config.device)
    bad = [o for o in ops if o not in default_ops(config.device)]
    if bad:
        cpu_only = [o for o in bad if o in CPU_ONLY]
        raise SpecError("--ops", f"{', '.join(cpu_only)} only runs on a CPU" if cpu_only == bad
                        else f"unknown benchmarks {[o for o in bad if o not in CPU_ONLY]}",
                        f"use a comma-separated subset of {','.join(default_ops(config.device))}")
    gpu = config.device == "cuda"
    cores = os.cpu_count() or 1
    threads = config.threads or (1,)  # one thread: reproducible on a shared machine; ask for more with --threads
    if gpu:
        dtypes = config.dtypes or ("bf16", "fp16", "fp32") + (("fp8",) if _has_fp8() else ())
        ranks = torch.cuda.device_count()
    else:
        gemms = {"gemm", "gemm_packed"} & set(ops)
        dtypes = config.dtypes or (("fp32",) if config.quick or not gemms else
                                   ("fp32", *(d for d, r in native_cpu_formats().items() if r >= NATIVE_FRACTION)))
        ranks = cores
    if under_torchrun():  # the launched processes are the ranks, across nodes
        ranks = int(os.environ["WORLD_SIZE"])
    groups = config.comm_groups or tuple(2**i for i in range(1, 8) if 2**i <= max(ranks, 2))
    return RunConfig(config.device, config.quick, tuple(ops), tuple(threads), tuple(dtypes), tuple(groups),
                     config.comm_timeout_s, config.repeats or (3 if config.quick else 5), config.kv_cache_bytes,
                     config.power_w, config.price_usd_per_hour)


@functools.cache
def native_cpu_formats() -> dict[str, float]:
    """bf16's and fp16's GEMM rates here as fractions of fp32's (kernels/probe.py; measured once per process)."""
    from kernels.probe import native_formats

    return native_formats(("bf16", "fp16"))


def _skipped_formats(config: RunConfig) -> str:
    """The provenance's note on the low-precision formats a CPU full run left out (emulated here)."""
    if config.device != "cpu" or config.quick or "gemm" not in config.ops:
        return ""
    slow = {d: r for d, r in native_cpu_formats().items() if d not in config.dtypes}
    if not slow:
        return ""
    return ("Not measured: " + ", ".join(f"{d} ({r:.1%} of fp32's GEMM rate here: emulated, no native "
                                         "instructions)" for d, r in slow.items()) + ". ")


def _has_fp8() -> bool:
    from kernels.gemm import fp8_available

    return fp8_available("cuda")


def plan(config: RunConfig) -> list[dict]:
    """Every case to time, each tagged with its thread count (compute) or group size (collectives)."""
    from kernels.attention import attention_cases
    from kernels.comm import comm_cases
    from kernels.gemm import gemm_cases, packed_gemm_cases
    from kernels.memory import memory_cases

    cases: list[dict] = []
    for t in config.threads:
        if "gemm" in config.ops:
            cases += [{**c, "threads": t} for c in gemm_cases(config.mode, config.dtypes)]
        if "gemm_packed" in config.ops:
            cases += [{**c, "threads": t} for c in packed_gemm_cases(config.mode, config.dtypes)]
        # A CPU times attention and memory-bound ops in every format it computes natively (config.dtypes: fp32,
        # and bf16/fp16 where the CPU has units for them); a GPU in bf16, its serving and training format.
        formats = config.dtypes if config.device == "cpu" else ("bf16",)
        for fmt in formats:
            if "attention" in config.ops:
                cases += [{**c, "threads": t} for c in attention_cases(config.mode, fmt)]
            if "memory" in config.ops:
                cases += [{**c, "threads": t} for c in memory_cases(config.mode, fmt)]
    if "comm" in config.ops:
        cases += comm_cases(config.mode, list(config.comm_groups))
    return cases


def device_info(device: str) -> dict[str, Any]:
    import torch

    from kernels.harness import device_name

    info: dict[str, Any] = {"name": device_name(device), "type": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(count=torch.cuda.device_count(), memory_bytes=float(props.total_memory),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    else:
        info.update(cores=os.cpu_count(), memory_bytes=_host_memory_bytes())
    return info


def _host_memory_bytes() -> float:
    try:
        with open("/proc/meminfo") as fh:
            return float(fh.readline().split()[1]) * 1024.0
    except (OSError, IndexError, ValueError):
        return 0.0


def default_name(device: dict[str, Any]) -> str:
    """``cpu-<model>-<cores>c`` or the GPU's name, as a file-name-safe slug."""
    slug = re.sub(r"[^a-z0-9]+", "-", device["name"].lower()).strip("-")
    return f"cpu-{slug}-{device['cores']}c" if device["type"] == "cpu" else slug


def default_out(name: str) -> Path:
    """The user's calibration directory: never a shipped file."""
    return user_calibrations_dir() / f"{name}.json"


def machine_fingerprint(device: str) -> dict[str, Any]:
    """CPU model, compute flags, cores and a 1-second GEMM probe of the measured device (kernels/probe.py)."""
    from kernels.probe import gemm_probe

    return {**cpu_fingerprint(), **gemm_probe("cuda:0" if device == "cuda" else "cpu")}


def _fingerprint(config: RunConfig, device: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {"device": device["name"], "host": socket.gethostname(), "torch": torch.__version__,
            "config": asdict(config)}


def _label(case: dict) -> str:
    if case["bench"] in ("gemm", "gemm_packed"):
        return f"{case['bench']} {case['op']} {case['pass']} {case['M']}x{case['N']}x{case['K']} {case['dtype']} t{case['threads']}"
    if case["bench"] == "attention":
        return (f"attention {case['pass']} b{case['sequences']} h{case['heads']}/{case['kv_heads']} "
                f"q{case['q_len']} kv{case['kv_len']} t{case['threads']}")
    if case["bench"] == "memory":
        return f"memory {case['op']} {case['pass']} {case['elements']} t{case['threads']}"
    return f"comm {case['collective']} n{case['group']} {case['bytes']} B"


def _run_compute(todo: list[dict], config: RunConfig, saver: Saver) -> None:
    import torch

    from kernels.attention import run_attention
    from kernels.gemm import run_gemm, run_packed_gemm
    from kernels.memory import run_memory

    runners = {"gemm": run_gemm, "gemm_packed": run_packed_gemm, "attention": run_attention, "memory": run_memory}
    before = torch.get_num_threads()
    min_repeat_s = 0.01 if config.quick else 0.02
    device = "cuda:0" if config.device == "cuda" else "cpu"
    try:
        for case in todo:
            torch.set_num_threads(case["threads"])
            try:
                sample = runners[case["bench"]](case, device, config.repeats, min_repeat_s)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as err:  # name the kernel; samples so far are kept
                raise SpecError("benchmark", f"{_label(case)} failed: {str(err).splitlines()[0][:200]}",
                                "re-run to resume, or leave this bench out of --ops") from None
            saver.add(case, {**sample, "threads": case["threads"]}, _label(case))
    finally:
        torch.set_num_threads(before)


def run(config: RunConfig, out: Path | None = None, progress: Progress | None = None) -> tuple[Calibration, Path]:
    """Measure what is missing, fit, and write the calibration atomically; returns it and its path."""
    check_device(config.device)
    config = resolve(config)
    device = device_info(config.device)
    name = default_name(device)
    out = check_out(Path(out) if out is not None else default_out(name))
    device["fingerprint"] = machine_fingerprint(config.device)
    fingerprint = _fingerprint(config, device)
    partial = partial_path(out)
    kept = _kept_samples(out, device, config)
    if "gemm" not in config.ops and not any(s.get("bench") == "gemm" for s in kept):
        raise SpecError("--ops", f"every calibration is fitted on the gemm bench, which neither this run nor {out} "
                        "holds", "add gemm to --ops, or give --out a calibration of this machine that has it")
    cases = plan(config)
    samples = load_partial(partial, fingerprint)
    todo = [c for c in cases if case_key(c) not in samples]
    saver = Saver(partial, fingerprint, samples, len(cases), progress)
    if progress:
        progress("resuming" if samples else "starting", len(samples), len(cases), "")
    load = [os.getloadavg()[0]]
    others = OtherLoad()
    try:
        _run_compute([c for c in todo if c["bench"] != "comm"], config, saver)
        comm = [c for c in todo if c["bench"] == "comm"]
        if comm:
            from capsim.calibration.comm import run_comm

            run_comm(comm, config, lambda c, s: saver.add(c, s, _label(c)))
    finally:
        saver.flush()
    load.append(os.getloadavg()[0])
    load.append(others.cores())
    previous = load_calibration(out) if kept else None
    cal = build_calibration(list(samples.values()) + kept, config, device, name, load, previous)
    if int(os.environ.get("RANK", "0")) == 0 or not under_torchrun():  # under torchrun, rank 0 writes
        write_calibration(cal, out)
        partial.unlink(missing_ok=True)
    return cal, out


def check_out(out: Path) -> Path:
    """``out`` if a calibration may be written there: a new or empty file, or a calibration to replace (or keep
    benches from), never a shipped calibration. Anything else is refused before measuring, so a wrong --out never
    costs a run or a user's file."""
    if out.is_file() and out.resolve().is_relative_to(calibrations_dir().resolve()):
        raise SpecError("--out", f"{out} is a shipped calibration, which `capsim calibrate` never overwrites",
                        f"leave --out out (default: {user_calibrations_dir()}) or give another path")
    if out.is_dir():
        raise SpecError("--out", f"{out} is a folder", "give a file path, e.g. --out my-machine.json")
    if out.is_file() and out.stat().st_size > 0:
        try:
            load_calibration(out)
        except SpecError as err:
            raise SpecError("--out", f"{out} exists and is not a capsim calibration ({err.problem})",
                            "choose another path, or delete the file first") from None
    return out


def _kept_samples(out: Path, device: dict[str, Any], config: RunConfig) -> list[dict]:
    """Samples of benches not re-measured now, from the calibration already at ``out`` (same device, kind
    measured, same thread counts), so ``--ops comm`` refreshes the collectives and keeps the rest."""
    if not out.is_file():
        return []
    old = load_calibration(out)  # check_out made sure it is one
    same = (old.kind == "measured" and old.device.get("name") == device["name"]
            and [old.host.get("threads"), *old.host.get("variant_threads", [])] == list(config.threads))
    if not same:
        return []
    return [s for bench, rows in old.samples.items() if bench not in config.ops for s in rows]


def build_calibration(samples: list[dict], config: RunConfig, device: dict[str, Any], name: str,
                      load: list[float], previous: Calibration | None = None, created: str = "") -> Calibration:
    """The calibration of ``samples``; ``previous`` is the file whose other benches were kept (its date and
    provenance are carried into the new provenance: its host and load describe those benches, not this run);
    ``created`` is when the samples were measured (default: now)."""
    import torch

    main, *others = config.threads
    present = {s["bench"] for s in samples}
    kept_benches = present - set(config.ops)
    missing = set(default_ops(config.device)) - present
    protocols = 2 if config.device == "cuda" else 1  # NCCL switches protocols by size; gloo does not
    params, quality = fit_device(samples, name, device["name"], main if config.device == "cpu" else None,
                                 device.get("memory_bytes", 0.0), protocols)
    variants = {f"threads={t}": fit_device(samples, f"{name}@threads={t}", device["name"], t,
                                           device.get("memory_bytes", 0.0), protocols)[0] for t in others}
    host = {"hostname": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "threads": main, "variant_threads": others, "load_avg_1min": load[:2],
            "other_processes_busy_cores": load[2], "mode": config.mode}
    created = created or datetime.now(UTC).isoformat(timespec="seconds")
    provenance = (
        f"Measured {created} by `capsim calibrate{' --quick' if config.quick else ''}` (kernels/ microbenchmarks) on "
        f"{device['name']} ({config.device}), torch {torch.__version__}, {main} thread(s) for `fitted`"
        + (f" and {', '.join(map(str, others))} for the variants" if others else "")
        + f"; benches measured in this run: {', '.join(config.ops)}"
        + (f" (kept from the previous file{', created ' + previous.created if previous else ''}: "
           f"{', '.join(sorted(kept_benches))})" if kept_benches else "")
        + f"; formats {', '.join(config.dtypes)}"
        + "; collective groups "
        f"{', '.join(map(str, config.comm_groups)) if 'comm' in config.ops else 'not measured'}; "
        f"{len(samples)} samples (median of {config.repeats} repeats each); 1-min load average "
        f"{load[0]:.2f} at start, {load[1]:.2f} at end"
        + (f", other processes kept {load[2]:.2f} cores busy on average" if load[2] is not None else "")
        + ". Peaks are the best measured GEMM rates. "
        + ("Not measured, generic: " + ", ".join(sorted(missing)) + ". " if missing else "")
        + _skipped_formats(config)
        + "Fit quality (rms of log time error): " + ", ".join(f"{k}={v:.3f}" for k, v in quality.items())
        + (f". The kept benches' own provenance (previous file): {previous.provenance}"
           if previous is not None and kept_benches else ""))
    by_bench = {b: [s for s in samples if s["bench"] == b] for b in BENCHES}
    given = {"kv_cache_bytes": config.kv_cache_bytes, "power_w": config.power_w,
             "price_usd_per_hour": config.price_usd_per_hour}
    device = {**device, "dtypes": list(config.dtypes), **{k: v for k, v in given.items() if v is not None}}
    return Calibration(name=name, kind="measured", device=device, fitted=params, provenance=provenance, host=host,
                       torch_version=torch.__version__, created=created,
                       samples={k: v for k, v in by_bench.items() if v}, variants=variants)
