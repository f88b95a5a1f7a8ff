"""``capsim validate <suite>``: predictions against measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capsim.cli.common import JsonOpt, console, emit_json, table
from capsim.cli.render import with_unit
from capsim.validation import Suite, run_suite


def validate(suite: Annotated[Suite, typer.Argument(help="Which comparison to run.")],
             file: Annotated[Path | None, typer.Option("--file", help="A CSV with the columns of the suite's shipped file.")] = None,
             calibration: Annotated[str | None, typer.Option("--calibration", "-c", help="Calibration name or file.")] = None,
             rows: Annotated[int, typer.Option("--rows", help="Most table rows to print (0 = all; --json has all).", min=0)] = 60,
             as_json: JsonOpt = False) -> None:
    """Compare predictions with measured or published numbers: measured, predicted and error per row. A row capsim
    cannot price is shown with its reason and counted as a miss; a malformed file exits 2."""
    if suite is Suite.LOCAL:
        from capsim.cli.calibrate import needs_torch, warn_if_other_machine
        from capsim.validation.local import default_calibration

        needs_torch("capsim validate local")
        warn_if_other_machine(calibration if calibration is not None else default_calibration(), probe=True)
    report = run_suite(suite, file, calibration)
    if as_json:
        return emit_json(report.to_dict())
    shown = report.rows if rows == 0 else report.rows[:rows]
    body = [[r.source, r.case, r.metric, with_unit(r.measured, r.unit),
             "-" if r.predicted is None else with_unit(r.predicted, r.unit),
             "not priced" if r.error_pct is None else f"{r.error_pct:+.2f}%", _band(r.band_low, r.band_high, r.unit),
             r.note] for r in shown]
    console.print(table(f"validate {report.suite} (calibration: {report.calibration})",
                        ["source", "case", "metric", "measured", "predicted", "error", "band", "note"], body, keys=2))
    if len(shown) < len(report.rows):
        console.print(f"... {len(report.rows) - len(shown)} more rows (--rows 0 or --json for all)")
    for note in report.notes:
        console.print(f"note: {note}")
    console.print(report.summary())
    return None


def _band(low: float | None, high: float | None, unit: str) -> str:
    return "" if low is None or high is None else f"{with_unit(low, unit)} to {with_unit(high, unit)}"
