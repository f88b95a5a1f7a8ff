"""Compare predictions with measurements: rows, reports and their stable JSON form.

``capsim validate <suite> --json`` always prints one object:

    {"suite", "calibration",
     "rows": [{"source", "case", "metric", "measured", "predicted", "error_pct", "unit", "note",
               "band_low", "band_high"}],
     "rows_priced", "rows_failed", "median_abs_error_pct", "max_abs_error_pct", "notes"}

- ``predicted`` and ``error_pct`` are null for a row capsim could not price (an infeasible or unsupported layout,
  an unknown model, ...); its ``note`` says why. Such a row is counted in ``rows_failed`` and is a miss.
- ``median_abs_error_pct`` and ``max_abs_error_pct`` are over the priced rows only (``rows_priced`` of them);
  null when no row was priced.
- ``band_low`` / ``band_high``: the least and greatest prediction over the plausible values of every setting the
  row left unpublished (feasible layouts only), and, on an accelerator whose peaks are a stated range, over both ends
  of that range (training); null where the row left nothing open or the suite has no band.

A malformed file (a missing column, an unknown metric, a measured value that is not a finite non-zero number, an
unknown framework or release) is not a row: it raises :class:`DataError` and the command exits 2 with one line.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from capsim.errors import SpecError
from capsim.inputs import read_text

T = TypeVar("T")
LINE = "_line"  # key read_csv adds to every row: its line number in the file, for error messages


class DataError(SpecError):
    """A validation file that cannot be read as the suite's data: the whole suite stops (exit 2)."""


@dataclass(frozen=True)
class Row:
    source: str
    case: str
    metric: str
    measured: float
    predicted: float | None  # None: capsim could not price the row (the note says why)
    unit: str = ""
    note: str = ""  # what capsim assumed where the source left a setting unpublished, tolerances, why it failed
    band_low: float | None = None  # least prediction over the plausible values of the row's unpublished settings
    band_high: float | None = None

    @property
    def priced(self) -> bool:
        return self.predicted is not None

    @property
    def error_pct(self) -> float | None:
        if self.predicted is None:
            return None
        return 100.0 * (self.predicted - self.measured) / self.measured

    def to_dict(self) -> dict[str, Any]:
        err = self.error_pct
        return {"source": self.source, "case": self.case, "metric": self.metric, "measured": self.measured,
                "predicted": self.predicted, "error_pct": None if err is None else round(err, 4), "unit": self.unit,
                "note": self.note, "band_low": self.band_low, "band_high": self.band_high}


def failed_row(source: str, case: str, metric: str, measured: float, unit: str, reason: str) -> Row:
    """A row capsim could not price: no prediction, the reason in its note."""
    return Row(source, case, metric, measured, None, unit, f"not priced: {reason}")


def attempt(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | None, SpecError | None]:
    """``(fn(...), None)``, or ``(None, error)`` where the row cannot be priced (its reason is ``str(error)``); a
    DataError (a malformed file) propagates."""
    try:
        return fn(*args, **kwargs), None
    except DataError:
        raise
    except SpecError as err:
        return None, err


@dataclass(frozen=True)
class Report:
    suite: str
    calibration: str  # the calibration the predictions used ("none" where no timing is involved)
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def priced_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.priced)

    @property
    def rows_failed(self) -> int:
        return len(self.rows) - len(self.priced_rows)

    @property
    def abs_errors(self) -> np.ndarray:
        """|error| of the priced rows, in percent."""
        return np.abs([r.error_pct for r in self.priced_rows], dtype=float)

    @property
    def median_abs_error_pct(self) -> float:
        errors = self.abs_errors
        return float(np.median(errors)) if errors.size else float("nan")

    @property
    def max_abs_error_pct(self) -> float:
        errors = self.abs_errors
        return float(np.max(errors)) if errors.size else float("nan")

    def subset(self, **match: str) -> Report:
        rows = tuple(r for r in self.rows if all(getattr(r, k) == v for k, v in match.items()))
        return replace(self, rows=rows)

    def summary(self) -> str:
        """One line: median and worst |error| over the priced rows, and how many rows failed."""
        line = (f"median |error| {self.median_abs_error_pct:.2f}%   max |error| {self.max_abs_error_pct:.2f}%   "
                f"over {len(self.priced_rows)} priced rows")
        if self.rows_failed:
            line += f"; {self.rows_failed} of {len(self.rows)} rows not priced (misses)"
        return line

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return round(x, 4) if math.isfinite(x) else None

        return {"suite": self.suite, "calibration": self.calibration, "rows": [r.to_dict() for r in self.rows],
                "rows_priced": len(self.priced_rows), "rows_failed": self.rows_failed,
                "median_abs_error_pct": num(self.median_abs_error_pct),
                "max_abs_error_pct": num(self.max_abs_error_pct), "notes": list(self.notes)}


# Columns shared by the validation CSVs, checked wherever they appear: counts are whole numbers (>= 1, or >= 0 where
# zero means something), rates positive (inf: every request sent at t = 0, as the benchmark clients' --request-rate inf);
# a blank cell means "not published" and is left to the suite.
COUNT_COLUMNS = ("hidden", "layers", "heads", "kv_heads", "ffn_hidden", "seq", "vocab", "gpus", "tp", "pp",
                 "pp_interleave", "cp", "dp", "global_batch", "micro_batch", "batch", "input_tokens", "output_tokens")
ZERO_OK_COLUMNS = ("zero_stage", "digits")
RATE_COLUMNS = ("rate_rps",)


def read_csv(path: str | Path | None, default: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a validation CSV (``#`` lines are comments); the shipped copy of ``default`` when no path. Each row
    carries its line number under ``_line``. A row with missing or extra cells, or text, a fraction or a
    non-positive number in a count or rate column, stops the suite (the file is malformed, not the row a miss)."""
    if path is None:
        text = resources.files("capsim.data").joinpath("validation", default).read_text()
        origin = default
    else:
        text, origin = read_text(path, "--file", "CSV file with the published columns"), str(path)
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(ln for _, ln in numbered))))
    if not rows:
        raise DataError("--file", f"{origin} has no data rows")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise DataError("--file", f"{origin} lacks the columns {missing}", f"needs {', '.join(required)}")
    for (line, _), row in zip(numbered[1:], rows, strict=False):
        if None in row or any(row[c] is None for c in required):
            raise DataError("--file", f"{origin} line {line} has {'more' if None in row else 'fewer'} cells than "
                            "the header", "give one value per column (blank for unknown)")
        row[LINE] = str(line)
        _check_cells(row)
    return rows


def _check_cells(row: dict[str, str]) -> None:
    where = f"line {row[LINE]}"
    for col, low in [*((c, 1) for c in COUNT_COLUMNS), *((c, 0) for c in ZERO_OK_COLUMNS)]:
        cell = (row.get(col) or "").strip()
        if cell and not cell.lstrip("-").isdigit():
            raise DataError(col, f"{where}: {cell!r} is not an integer", "give a whole number")
        if cell and int(cell) < low:
            raise DataError(col, f"{where}: {cell} must be >= {low}", "fix that row")
    for col in RATE_COLUMNS:
        cell = (row.get(col) or "").strip()
        try:
            ok = not cell or (not math.isnan(float(cell)) and float(cell) > 0)
        except ValueError:
            ok = False
        if not ok:
            raise DataError(col, f"{where}: {cell!r} is not a number > 0 (or inf)", "fix that row")
    if "value" in row:
        measured_value(row)


def measured_value(r: dict[str, str], column: str = "value") -> float:
    """The row's measured number: finite and positive (every metric measured is a size, a time or a rate, and the
    error is relative to it), else a DataError naming the line."""
    text = (r.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise DataError(column, f"line {r.get(LINE, '?')}: {text!r} is not a number",
                        "give the measured value") from None
    if not math.isfinite(value) or value <= 0.0:
        raise DataError(column, f"line {r.get(LINE, '?')}: measured value {text!r} must be finite and positive",
                        "give the measured size, time or rate")
    return value


def check_metric(r: dict[str, str], metrics: tuple[str, ...] | dict[str, object]) -> str:
    """The row's metric, or a DataError listing the suite's metrics."""
    metric = r.get("metric", "").strip()
    if metric not in metrics:
        raise DataError("metric", f"line {r.get(LINE, '?')}: unknown metric {metric!r}",
                        f"use one of {', '.join(metrics)}")
    return metric


def data_path(*parts: str) -> Path:
    """A file shipped under capsim/data."""
    return Path(str(resources.files("capsim.data").joinpath(*parts)))
