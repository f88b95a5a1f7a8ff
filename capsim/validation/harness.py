"""Compare predictions with measurements: rows, reports and their stable JSON form.

``capsim validate <suite> --json`` prints one object:
{"suite", "calibration", "rows": [{"source", "case", "metric", "measured", "predicted", "error_pct"}],
 "median_abs_error_pct", "max_abs_error_pct"}
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from capsim.errors import SpecError


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


def read_csv(path: str | Path | None, default: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a validation CSV (``#`` lines are comments); the shipped copy of ``default`` when no path."""
    if path is None:
        text = resources.files("capsim.data").joinpath("validation", default).read_text()
        origin = default
    else:
        p = Path(path)
        if not p.is_file():
            raise SpecError("--file", f"no file at {p}", "give the path of a CSV with the published columns")
        text, origin = p.read_text(), str(p)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    if not rows:
        raise SpecError("--file", f"{origin} has no data rows")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise SpecError("--file", f"{origin} lacks the columns {missing}", f"needs {', '.join(required)}")
    return rows


def data_path(*parts: str) -> Path:
    """A file shipped under capsim/data."""
    return Path(str(resources.files("capsim.data").joinpath(*parts)))
