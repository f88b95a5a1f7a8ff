"""The user's own deployment, as options: the device (a catalog accelerator, or any measured calibration on its
own), the engine (a catalog profile or an engine file, with flags) and the replica's plan. Shared by ``capsim
validate bench``, ``capsim calibrate engine`` and the commands that accept ``--calibration`` without ``-a``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capsim.calibration import load_calibration, perf_for
from capsim.calibration.device import calibrated_device, check_same_device, perf_at, thread_counts
from capsim.calibration.engine_cal import Deployment
from capsim.calibration.engine_file import read_engine_file
from capsim.calibration.select import is_rule
from capsim.cli import options as o
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.sim.serving import engine_plan
from capsim.specs.engine import EngineProfile, get_engine
from capsim.specs.engine_flags import apply_flags, parse_flags
from capsim.specs.hardware import Accelerator

DEFAULT_ACCELERATOR = "A100-SXM4-80GB"

AccelOpt = Annotated[str | None, typer.Option("--accelerator", "-a", help="Catalog accelerator (default: the "
                                              "device of --calibration when it is a measured one, else "
                                              f"{DEFAULT_ACCELERATOR}).", show_default=False)]
CalibOpt = Annotated[str | None, typer.Option("--calibration", "-c", help="Calibration name or file; a measured one "
                                              "is a device of its own (leave -a out).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads of the calibration setting to use "
                                                "(one it measured; default: its main setting, or the cores the "
                                                "engine computes on).", min=1)]
EngineOpt = Annotated[str | None, typer.Option("--engine", "-e", help="Engine profile (capsim catalog engines), e.g. "
                                               "vllm, vllm-cpu, vllm-0.2.")]
EngineFileOpt = Annotated[Path | None, typer.Option("--engine-file", help="An engine profile file (capsim calibrate "
                                                    "engine --out) instead of --engine.")]
FlagsOpt = Annotated[str, typer.Option("--flags", help="Engine flags the runs used, key=value;key=value (e.g. "
                                       "max_num_seqs=128;vllm_cpu_kvcache_space=1).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Serving dtype (fp32 on a CPU without bf16 units).")]
KvSpaceOpt = Annotated[float | None, typer.Option("--kv-cache-space", help="KV-cache space per rank, GiB "
                                                  "(VLLM_CPU_KVCACHE_SPACE; default: the calibration's, else "
                                                  "the engine's memory rule).", min=0)]


def positive(value: float | None, flag: str) -> float | None:
    """An option that must be > 0 where given (typer's bound admits 0)."""
    if value is not None and not value > 0:
        raise SpecError(flag, f"must be > 0, got {value}", f"give {flag} in its unit, or leave it out")
    return value


def resolve_device(accelerator: str | None, calibration: str | None, threads: int | None = None,
                   price: float | None = None, engine: EngineProfile | None = None,
                   default: str = DEFAULT_ACCELERATOR) -> tuple[Accelerator, Perf, float | None, str]:
    """(accelerator, device model, KV space the calibration carries, device type "cpu" or "gpu"): a catalog
    accelerator with its calibration, or the device a measured calibration describes. ``-a`` with a calibration of
    another device is an error."""
    if accelerator is None and calibration is not None and not is_rule(calibration) \
            and load_calibration(calibration).kind == "measured":
        cal = load_calibration(calibration)
        if threads is None and engine is not None and engine.device_type == "cpu" and thread_counts(cal):
            threads = max(int(cal.device.get("cores") or 1) - engine.reserved_cores, 1)
        dev = calibrated_device(cal, threads, price)
        return dev.accelerator, dev.perf, dev.kv_cache_bytes, "cpu" if dev.threads is not None else "gpu"
    acc = o.get_accelerator(accelerator or default, price)
    if calibration is None or is_rule(calibration):  # the default rule (profile) or the datasheet
        if threads is not None:
            raise SpecError("--threads", "applies to a measured CPU calibration", "pass --calibration FILE")
        return acc, perf_for(acc, calibration), None, "gpu"
    check_same_device(acc, calibration)
    return acc, perf_at(load_calibration(calibration), threads), None, "gpu"


def resolve_engine(engine: str | None, engine_file: Path | None) -> EngineProfile:
    if engine is not None and engine_file is not None:
        raise SpecError("--engine-file", "both --engine and --engine-file given", "give one of them")
    if engine_file is not None:
        return read_engine_file(engine_file)
    if engine is None:
        raise SpecError("--engine", "no engine given", "name the engine that served the runs (--engine vllm-cpu, "
                        "vllm, vllm-0.2, ...) or an --engine-file; capsim does not assume one")
    return get_engine(engine)


def deployment(model: str, hf_config: Path | None, accelerator: str | None, calibration: str | None,
               threads: int | None, engine: str | None, engine_file: Path | None, flags: str, dtype: str,
               tp: int = 1, kv_space_gib: float | None = None) -> tuple[Deployment, tuple[str, ...]]:
    """The deployment the options state, and the notes of flags that change nothing."""
    positive(kv_space_gib, "--kv-cache-space")
    spec = o.resolve_model(model, hf_config)
    applied = apply_flags(resolve_engine(engine, engine_file), parse_flags(flags), dtype)
    eng = applied.engine
    acc, perf, kv, kind = resolve_device(accelerator, calibration, threads, engine=eng)
    is_cpu = kind == "cpu"
    if eng.device_type != kind:
        raise SpecError("--engine", f"{eng.name} is {eng.engine} {eng.release}'s {eng.device_type.upper()} build, "
                        f"but the device is {'a CPU' if is_cpu else acc.name}",
                        "use vllm-cpu for vLLM's CPU backend on a measured CPU calibration, a GPU profile on a GPU")
    plan_kw = dict(applied.plan)
    if kv_space_gib is not None:
        plan_kw["kv_cache_bytes"] = kv_space_gib * 2**30
    elif "kv_cache_bytes" not in plan_kw and kv is not None:
        plan_kw["kv_cache_bytes"] = kv
    plan = engine_plan(eng, spec, acc, tp=tp, dtype=dtype, **plan_kw)
    return Deployment(spec, plan, acc, perf, eng), applied.notes


__all__ = ["DEFAULT_ACCELERATOR", "deployment", "positive", "resolve_device", "resolve_engine"]
