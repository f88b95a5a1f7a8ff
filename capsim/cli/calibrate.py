"""``capsim calibrate``: measure this machine's kernels and collectives into a calibration file."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from capsim.cli.common import JsonOpt, console, emit_json, err_console, table
from capsim.errors import SpecError


def needs_torch(command: str) -> None:
    """Where torch is missing (or broken), one line with the install command and exit 2: these commands time
    real kernels, everything else in capsim runs without torch."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        why = "is not installed" if getattr(err, "name", None) == "torch" else f"does not import ({err})"
        raise SpecError("torch", f"{command} needs torch, which {why} here",
                        f"install it with: {sys.executable} -m pip install 'torch>=2.1'") from None


def _ints(text: str | None, field: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SpecError(field, f"{text!r} is not a comma-separated list of integers", "e.g. 2,1") from None
    if any(v < 1 for v in values):
        raise SpecError(field, "values must be >= 1")
    return values


def _summary(cal: object) -> list[list[object]]:
    p = cal.fitted
    rows = [[f"peak {k}", f"{v / 1e9:.1f} GFLOP/s"] for k, v in p.peak_flops_per_s.items()]
    rows.append(["gemm launch", f"{p.gemm.launch_s * 1e6:.1f} us"])
    rows.append(["attention peak fraction (fwd/bwd)",
                 f"{p.attention.forward.peak_fraction:.2f} / {p.attention.backward.peak_fraction:.2f}"])
    rows.append(["memory stream bandwidth", f"{p.memory.bandwidth_bytes_per_s / 1e9:.2f} GB/s"])
    rows += [[f"memory {k} bandwidth", f"{v * p.memory.bandwidth_bytes_per_s / 1e9:.2f} GB/s"]
             for k, v in p.memory.kind_scale.items()]
    for tier, colls in p.comm.links.items():
        for coll, groups in colls.items():
            if coll == "*":
                continue
            for group, links in groups.items():
                best = links[-1] if isinstance(links, tuple) else links
                first = links[0] if isinstance(links, tuple) else links
                rows.append([f"{tier} {coll} n={group}", f"alpha {first.alpha_s * 1e6:.1f} us, "
                             f"busbw {best.bus_bw_bytes_per_s / 1e9:.2f} GB/s"])
    rows += [[f"variant {k}", f"peak fp32 {v.peak_flops_per_s.get('fp32', 0) / 1e9:.1f} GFLOP/s"]
             for k, v in cal.variants.items()]
    return rows


def warn_if_other_machine(calibration: object, probe: bool = False) -> None:
    """One line on stderr when a measured CPU calibration (a name, path or Calibration) was not measured on this
    machine: CPU model, compute flags, cores and, with ``probe`` (needs torch, ~1 s), the GEMM probe."""
    from capsim.calibration import load_calibration
    from capsim.calibration.machine import machine_mismatch

    if calibration is None:
        return
    try:
        cal = load_calibration(calibration)
    except SpecError:
        return  # the command reports a bad calibration itself
    if cal.kind != "measured" or cal.device.get("type") != "cpu":
        return
    here = None
    if probe:
        from kernels.probe import gemm_probe

        here = gemm_probe("cpu")
    message = machine_mismatch(cal.device, here)
    if message:
        err_console.print(f"[yellow]warning:[/] {cal.name}: {message}", highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    m, sec = divmod(int(round(seconds)), 60)
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


class GroupLines:
    """Progress without a terminal: one line on stderr when each benchmark group ends (samples and seconds it
    took, samples done of planned, time since the start), so a log or a CI job shows where a run is."""

    def __init__(self, start: float) -> None:
        self.start, self.group, self.since, self.first, self.done, self.total = start, "", start, 0, 0, 0

    def __call__(self, label: str, done: int, total: int, group: str) -> None:
        now = time.monotonic()
        if not group:  # the run's start: what is planned, and what an interrupted run left
            err_console.print(f"calibrate: {total} samples planned" + (f", {done} kept from an interrupted run"
                              if done else ""), highlight=False, soft_wrap=True)
        elif group != self.group:
            self.finish(now)
            self.group, self.since, self.first = group, now, self.done
        self.done, self.total = done, total

    def finish(self, now: float | None = None) -> None:
        """Report the group that just ended (if any)."""
        now = time.monotonic() if now is None else now
        if self.group:
            err_console.print(f"calibrate: {self.group}: {self.done - self.first} samples in {_clock(now - self.since)} "
                              f"({self.done}/{self.total} done, {_clock(now - self.start)} elapsed)",
                              highlight=False, soft_wrap=True)
        self.group = ""


def _with_bar(config: object, out: Path | None, run: object) -> tuple:
    """Run with a live progress bar (a terminal)."""
    columns = (TextColumn("{task.description}", style="cyan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("calibrating", total=None)

        def progress(label: str, done: int, total: int, group: str) -> None:
            bar.update(task, description=label[:60].ljust(60), completed=done, total=total)

        return run(config, out, progress)


def calibrate(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="A smaller grid, fp32 only (928 samples on a 2-core CPU: about 2 minutes of CPU time; see the README for wall clocks).")] = False,
    ops: Annotated[str | None, typer.Option("--ops", help="Comma-separated benches: gemm,gemm_packed,attention,memory,comm (default: every bench the device runs; gemm_packed, linears on oneDNN-prepacked weights, is CPU only).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default: <user data dir>/capsim/calibrations/<device>.json; a shipped file is never overwritten).")] = None,
    threads: Annotated[str | None, typer.Option("--threads", help="CPU thread counts, main first; the rest become variants (default 1; e.g. 2,1).")] = None,
    timeout: Annotated[float, typer.Option("--comm-timeout", help="Seconds a collective worker may stay silent.", min=1)] = 120.0,
    kv_cache_space: Annotated[float | None, typer.Option("--kv-cache-space", help="A fixed KV-cache space of this device, GiB (e.g. VLLM_CPU_KVCACHE_SPACE), recorded for serving predictions.", min=0)] = None,
    power: Annotated[float | None, typer.Option("--power", help="The device's power draw, W, recorded for energy figures.", min=0)] = None,
    price: Annotated[float | None, typer.Option("--price", help="The device's price, USD per hour, recorded for cost figures.", min=0)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time GEMMs, attention, memory-bound ops and collectives here, fit them, and write a measured calibration.
    `capsim calibrate engine` fits an engine's host terms to measured runs instead."""
    if ctx.invoked_subcommand is not None:  # `capsim calibrate engine ...`
        return None
    for value, flag in ((kv_cache_space, "--kv-cache-space"), (power, "--power")):
        if value is not None and not value > 0:
            raise SpecError(flag, f"must be > 0, got {value}", f"give {flag} in its unit, or leave it out")
    needs_torch("capsim calibrate")
    from capsim.calibration.runner import (
        RunConfig,
        check_device,
        default_name,
        default_out,
        device_info,
        partial_path,
        resolve,
        run,
    )

    ops_given = () if ops is None else tuple(o.strip() for o in ops.split(",") if o.strip())
    if ops is not None and not ops_given:
        raise SpecError("--ops", "no benchmarks given", "use a comma-separated subset of "
                        "gemm,gemm_packed,attention,memory,comm, or leave --ops out")
    config = RunConfig(device=device, quick=quick, ops=ops_given,
                       threads=_ints(threads, "--threads"), comm_timeout_s=timeout,
                       kv_cache_bytes=None if kv_cache_space is None else kv_cache_space * 2**30, power_w=power,
                       price_usd_per_hour=price)
    check_device(config.device)  # bad input fails here, as one line, before any progress is drawn
    resolve(config)
    start = time.monotonic()
    try:
        if err_console.is_terminal:
            cal, path = _with_bar(config, out, run)
        else:
            lines = GroupLines(start)
            cal, path = run(config, out, lines)
            lines.finish()
    except KeyboardInterrupt:
        kept = partial_path(Path(out) if out else default_out(default_name(device_info(device))))
        err_console.print(f"interrupted: samples so far are kept in {kept}; run the same command again to "
                          "resume (the previous calibration file is unchanged)")
        raise typer.Exit(130) from None
    elapsed = time.monotonic() - start
    if as_json:
        return emit_json({"name": cal.name, "path": str(path), "elapsed_s": elapsed, "calibration": cal.to_dict()})
    console.print(table(f"calibration {cal.name} ({cal.kind}) -> {path}", ["parameter", "value"], _summary(cal)))
    console.print(f"done in {elapsed:.1f} s")
    return None


calibrate_app = typer.Typer(name="calibrate", invoke_without_command=True,
                            help="Measure this machine's kernels (default), or fit an engine (calibrate engine).")
calibrate_app.callback()(calibrate)


def _register_engine() -> None:
    from capsim.cli.bench import calibrate_engine_command

    calibrate_app.command("engine")(calibrate_engine_command)


_register_engine()
