"""Reading what users hand capsim (JSON configs and calibrations, CSV traces and tables): every problem is a
:class:`~capsim.errors.SpecError` naming the file, the field (or row and column) and the fix, never a traceback.

The loaders of ``specs``, ``calibration``, ``data`` and ``validation`` read files through these functions only.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from capsim.errors import SpecError

MAX_COUNT = 2**31 - 1  # no count in a trace or a table (tokens, GPUs, batch) comes near this


def read_text(path: str | Path, field: str, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (gunzipped when it ends in .gz); a missing file, a folder or binary content is
    one clear error."""
    p = Path(path)
    if p.is_dir():
        raise SpecError(field, f"{p} is a folder", f"give the path of a {what}")
    if not p.is_file():
        raise SpecError(field, f"no file at {p}", f"give the path of a {what}")
    try:
        raw = p.read_bytes()
        return (gzip.decompress(raw) if p.suffix == ".gz" else raw).decode("utf-8")
    except (gzip.BadGzipFile, EOFError):
        raise SpecError(field, f"{p} is not a gzip file", f"give a {what} (.gz only when gzipped)") from None
    except UnicodeDecodeError:
        raise SpecError(field, f"{p} is not UTF-8 text", f"give a {what}, not a binary or other file") from None
    except OSError as err:
        raise SpecError(field, f"cannot read {p} ({err.strerror or err})", "check the path and its permissions") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def json_object(text: str, field: str, origin: str, constants: bool = False) -> dict[str, Any]:
    """Parse ``text`` as one JSON object (not a list, a string or null; no NaN or Infinity unless ``constants``:
    Python's json module writes them, e.g. a Hugging Face Mamba config's time_step_limit [0.0, Infinity])."""
    try:
        data = json.loads(text, parse_constant=float if constants else _no_constant)
    except json.JSONDecodeError as err:
        raise SpecError(field, f"{origin} is not valid JSON ({err.msg}, line {err.lineno})", "fix the file") from None
    except ValueError as err:  # NaN / Infinity
        raise SpecError(field, f"{origin}: {err}", "write finite numbers") from None
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(data), "a number")
        raise SpecError(field, f"{origin} holds {kind}, not a JSON object", "give a file whose top level is {...}")
    return data


def read_json_object(path: str | Path, field: str, what: str = "JSON file", constants: bool = False) -> dict[str, Any]:
    """A JSON object from a file: :func:`read_text`, then :func:`json_object`."""
    return json_object(read_text(path, field, what), field, str(path), constants)


def integer(value: Any, field: str, low: int = 1, high: int = MAX_COUNT) -> int:
    """A JSON/YAML value that must be an integer (not a bool, string or float) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {value!r}", "write a whole number without quotes")
    if not low <= value <= high:
        raise SpecError(field, f"{value} is outside [{low}, {high}]", f"give a value from {low} to {high}")
    return value


def read_csv(path: str | Path, field: str, what: str = "CSV file") -> pd.DataFrame:
    """A CSV file as a DataFrame (``#`` lines are comments); unreadable, empty or ragged files are one error."""
    text = read_text(path, field, what)
    try:
        return pd.read_csv(io.StringIO(text), comment="#", skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise SpecError(field, f"{path} is empty", f"give a {what} with a header row and data rows") from None
    except pd.errors.ParserError as err:
        raise SpecError(field, f"{path} is not a well-formed CSV ({' '.join(str(err).split())})",
                        "every row needs as many fields as the header") from None


def numeric_column(df: pd.DataFrame, column: str, field: str, origin: str, *, integral: bool = False,
                   low: float = 0.0, low_open: bool = False, high: float = math.inf) -> pd.Series:
    """``df[column]`` as numbers, each finite and in range (whole numbers where ``integral``); the first bad row
    is named in the error (rows count from 1 after the header)."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = values.isna() | ~values.map(math.isfinite)
    if integral:
        bad |= values != values.round()
    bad |= (values <= low) if low_open else (values < low)
    bad |= values > high
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        cell = raw.iloc[i]
        shown = "empty or NaN" if pd.isna(cell) else repr(str(cell))
        want = "a whole number" if integral else "a finite number"
        rng = [f"> {low:g}" if low_open else f">= {low:g}"] if low > -math.inf else []
        rng += [f"<= {high:.0f}" if float(high).is_integer() else f"<= {high:g}"] if high < math.inf else []
        raise SpecError(field, f"{origin}, data row {i + 1}: {column} is {shown}, not {want}"
                        + (f" {' and '.join(rng)}" if rng else ""), f"fix that row; {int(bad.sum())} bad in all")
    return values


def known(value: str, field: str, choices: Collection[str], where: str = "") -> str:
    """``value`` if it is one of ``choices``, else an error listing them."""
    if value not in choices:
        raise SpecError(field, f"{where}{value!r} is not known", f"use one of {', '.join(map(str, choices))}")
    return value


def inside(root: Path, name: str, field: str, allowed: Iterable[str] = ()) -> Path:
    """``root / name`` resolved, refused if it leaves ``root`` (``..``, absolute paths, symlinks out)."""
    base = root.resolve()
    target = (base / name).resolve()
    if not target.is_relative_to(base):
        hint = f"use one of {', '.join(allowed)}" if allowed else f"name a file under {base}"
        raise SpecError(field, f"{name!r} points outside {base}", hint)
    return target


__all__ = ["MAX_COUNT", "inside", "integer", "json_object", "known", "numeric_column", "read_csv",
           "read_json_object", "read_text"]
