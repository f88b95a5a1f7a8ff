"""Compare predictions with measurements: rows, reports and their stable JSON form.

``capsim validate <suite> --json`` prints one object:
{"suite", "calibration", "rows": [{"source", "case", "metric", "measured", "predicted", "error_pct"}],
 "median_abs_error_pct", "max_abs_error_pct"}
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from capsim.errors import SpecError
from capsim.inputs import read_text


@dataclass(frozen=True)
class Row:
    source: str
    case: str
    metric: str
    measured: float
    predicted: float
    unit: str = ""
    note: str = ""  # what capsim chose where the source left a setting unpublished, tolerances, ...

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted - self.measured) / self.measured

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "case": self.case, "metric": self.metric, "measured": self.measured,
                "predicted": self.predicted, "error_pct": round(self.error_pct, 4), "unit": self.unit,
                "note": self.note}


@dataclass(frozen=True)
class Report:
    suite: str
    calibration: str  # the calibration the predictions used ("none" where no timing is involved)
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def abs_errors(self) -> np.ndarray:
        return np.abs([r.error_pct for r in self.rows])

    @property
    def median_abs_error_pct(self) -> float:
        return float(np.median(self.abs_errors)) if self.rows else float("nan")

    @property
    def max_abs_error_pct(self) -> float:
        return float(np.max(self.abs_errors)) if self.rows else float("nan")

    def subset(self, **match: str) -> Report:
        rows = tuple(r for r in self.rows if all(getattr(r, k) == v for k, v in match.items()))
        return Report(self.suite, self.calibration, rows, self.notes)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "calibration": self.calibration, "rows": [r.to_dict() for r in self.rows],
                "median_abs_error_pct": round(self.median_abs_error_pct, 4),
                "max_abs_error_pct": round(self.max_abs_error_pct, 4), "notes": list(self.notes)}


# Columns shared by the validation CSVs, checked wherever they appear: counts are whole numbers (>= 1, or >= 0 where
# zero means something), rates finite and positive; a blank cell means "not published" and is left to the suite.
COUNT_COLUMNS = ("hidden", "layers", "heads", "kv_heads", "ffn_hidden", "seq", "vocab", "gpus", "tp", "pp",
                 "pp_interleave", "cp", "dp", "global_batch", "micro_batch", "batch", "input_tokens", "output_tokens")
ZERO_OK_COLUMNS = ("zero_stage", "digits")
RATE_COLUMNS = ("rate_rps",)


def read_csv(path: str | Path | None, default: str, required: tuple[str, ...],
             units: Collection[str] | None = None) -> list[dict[str, str]]:
    """Rows of a validation CSV (``#`` lines are comments); the shipped copy of ``default`` when no path.
    A row with missing or extra fields, text or a non-finite number in a numeric column, a measured ``value`` that
    is not positive (the error is relative to it) or a ``unit`` outside ``units`` is refused, naming the line."""
    if path is None:
        text = resources.files("capsim.data").joinpath("validation", default).read_text()
        origin = default
    else:
        text, origin = read_text(path, "--file", "CSV file"), str(path)
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(ln for _, ln in numbered))))
    if not rows:
        raise SpecError("--file", f"{origin} has no data rows")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise SpecError("--file", f"{origin} lacks the columns {missing}", f"needs {', '.join(required)}")
    for (line, _), row in zip(numbered[1:], rows, strict=True):
        _check_row(row, f"{origin}, line {line}", units)
    return rows


def _check_row(row: dict[str, Any], where: str, units: Collection[str] | None) -> None:
    if None in row:
        raise SpecError("--file", f"{where} has more fields than the header", "quote fields that hold commas")
    given = sum(v is not None for v in row.values())
    if given < len(row):
        raise SpecError("--file", f"{where} has {given} fields, the header {len(row)}",
                        "give every column of the header; leave unpublished ones empty")
    for col, low in [*((c, 1) for c in COUNT_COLUMNS), *((c, 0) for c in ZERO_OK_COLUMNS)]:
        cell = (row.get(col) or "").strip()
        if cell and not (cell.isdigit() and int(cell) >= low):
            raise SpecError("--file", f"{where}: {col}={cell!r} is not a whole number >= {low}", "fix that row")
    for col in (*RATE_COLUMNS, "value"):
        cell = (row.get(col) or "").strip()
        if not cell and col != "value":
            continue
        try:
            number = float(cell)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise SpecError("--file", f"{where}: {col}={cell!r} is not a finite number > 0",
                            "give the measured value in the row's unit" if col == "value" else "fix that row")
    if units is not None and row.get("unit") not in units:
        raise SpecError("--file", f"{where}: unit {row.get('unit')!r} is not known", f"use one of {', '.join(units)}")


def data_path(*parts: str) -> Path:
    """A file shipped under capsim/data."""
    return Path(str(resources.files("capsim.data").joinpath(*parts)))
