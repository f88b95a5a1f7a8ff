"""``capsim calibrate``: measure this machine's kernels and collectives into a calibration file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from capsim.cli.common import JsonOpt, console, emit_json, err_console, table
from capsim.errors import SpecError


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


def calibrate(
    quick: Annotated[bool, typer.Option("--quick", help="A smaller grid (under 3 minutes on a 2-core CPU).")] = False,
    ops: Annotated[str, typer.Option("--ops", help="Comma-separated benches: gemm,attention,memory,comm.")] = "gemm,attention,memory,comm",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default capsim/calibrations/measured/<device>.json).")] = None,
    threads: Annotated[str | None, typer.Option("--threads", help="CPU thread counts, main first; the rest become variants (default 1; e.g. 2,1).")] = None,
    timeout: Annotated[float, typer.Option("--comm-timeout", help="Seconds a collective worker may stay silent.", min=1)] = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Time GEMMs, attention, memory-bound ops and collectives here, fit them, and write a measured calibration."""
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

    config = RunConfig(device=device, quick=quick, ops=tuple(o.strip() for o in ops.split(",") if o.strip()),
                       threads=_ints(threads, "--threads"), comm_timeout_s=timeout)
    check_device(config.device)  # bad input fails here, as one line, before any progress is drawn
    resolve(config)
    start = time.monotonic()
    columns = (TextColumn("{task.description}", style="cyan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("calibrating", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label[:60].ljust(60), completed=done, total=total)

        try:
            cal, path = run(config, out, progress)
        except KeyboardInterrupt:
            bar.stop()
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
