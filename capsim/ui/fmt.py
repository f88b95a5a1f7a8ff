"""Numbers for people: durations in ms, s, minutes, hours or days; counts with separators or k/M/G/T; GB; and
a results table shown with labels and formats read off its column names (the downloads keep the raw SI columns).
Pure: no Streamlit here, so the rules are testable on their own."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

MINUTE_S, HOUR_S, DAY_S = 60.0, 3600.0, 86400.0
SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
# Columns read as a share of something (shown as %), found by a word in their name.
FRACTION_WORDS = ("mfu", "hfu", "goodput", "utilization", "efficiency", "occupancy", "fraction", "attainment")
ACRONYMS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E", "mfu": "MFU", "hfu": "HFU", "kv": "KV",
            "tp": "TP", "pp": "PP", "dp": "DP", "cp": "CP", "ep": "EP", "sp": "SP", "slo": "SLO", "gpus": "GPUs", "gpu": "GPU",
            "rps": "req/s", "tflops": "TFLOP/s", "usd": "$", "gb": "GB", "p50": "p50", "p90": "p90", "p99": "p99"}
# Results an infeasible row must not show (a cost, a capacity, a time or rate it cannot achieve).
RESULTS = re.compile(r"cost|capacity_rps|replicas|gpus_min|mfu|hfu|tokens_per_s|throughput|goodput|time_to_train"
                     r"|train_time|energy|speedup|vs_baseline|^batch$|^step_s$|^days$")
UNIT_SUFFIXES = (("_per_hour_usd", "$/h"), ("_usd", "$"), ("_gb", "GB"), ("_bytes", "GB"), ("_rps", "req/s"),
                 ("_per_s", "/s"), ("_j", "kWh"), ("_s", "s"))


_MARKDOWN = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark: CommonMark escapes each with "\\"


def plain_md(text: object) -> str:
    """``text`` escaped so Streamlit shows it as written (``tp*pp*cp`` is not italics, ``$`` is not maths)."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", "  \n")


def _sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, without an exponent below a million (1,230 not 1.23e+03)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def seconds(s: float) -> str:
    """A duration the way a person says it: 850 us, 331 ms, 11.6 s, 4.2 min, 3.1 h, 381 days."""
    if not math.isfinite(s):
        return "-"
    for limit, scale, unit in ((1e-3, 1e-6, "us"), (1.0, 1e-3, "ms"), (120.0, 1.0, "s"),
                               (2 * HOUR_S, MINUTE_S, "min"), (2 * DAY_S, HOUR_S, "h")):
        if abs(s) < limit:
            return f"{_sig(s / scale)} {unit}"
    return f"{_sig(s / DAY_S)} days"


def count(x: float, digits: int = 3) -> str:
    """A count or rate: 627, 30,404, 1.14M, 1.14T (SI letters from a million up)."""
    if not math.isfinite(x):
        return "-"
    if abs(x) < 1e6:
        return f"{x:,.0f}" if abs(x) >= 100 else _sig(x, digits)
    for scale, letter in SI:
        if abs(x) >= scale:
            return f"{_sig(x / scale, digits)}{letter}"
    return _sig(x, digits)  # pragma: no cover - every |x| >= 1e6 has a letter


def tick(v: float) -> str:
    """An axis label: 0.01, 0.5, 1, 20, 500, 1k, 20k, 1M, 5G, 1T, 1e18."""
    if v == 0:
        return "0"
    if abs(v) >= 1e15 or abs(v) < 1e-4:
        mantissa, exp = f"{v:.0e}".split("e")
        return f"{mantissa}e{int(exp)}"
    for scale, letter in SI:
        if abs(v) >= scale:
            return f"{v / scale:g}{letter}"
    return f"{v:g}"


def gigabytes(b: float) -> str:
    return f"{b / 1e9:,.1f} GB" if math.isfinite(b) else "-"


def label(column: str) -> str:
    """A column's header: words, known acronyms upper-cased, the unit in brackets (``ttft_p99_s`` -> TTFT p99 (s))."""
    unit = ""
    for suffix, name in UNIT_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            column, unit = column[: -len(suffix)], name
            break
    words = [ACRONYMS.get(w, w) for w in column.split("_") if w]
    text = " ".join(words)
    if unit.startswith("/"):
        return text + unit
    return f"{text} ({unit})" if unit else text


def _is_fraction(column: str, values: pd.Series) -> bool:
    finite = values[np.isfinite(values)]
    return any(w in column for w in FRACTION_WORDS) and bool(len(finite)) and float(finite.abs().max()) <= 1.5


def mask_infeasible(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the results of infeasible rows (``feasible`` or ``viable`` False) blanked: a plan that cannot
    run has no cost, capacity or time to show (its reason column says why)."""
    flag = next((c for c in ("feasible", "viable") if c in df.columns), None)
    if flag is None or df[flag].astype(bool).all():
        return df
    out = df.copy()
    bad = ~out[flag].astype(bool)
    for col in out.columns:
        if RESULTS.search(str(col)) and pd.api.types.is_numeric_dtype(out[col]) and out[col].dtype != bool:
            out[col] = out[col].astype(float).where(~bad)
    return out


def display_table(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """A copy of ``df`` in people's units (bytes as GB, long durations in hours or days, energy in kWh), the
    results of infeasible rows blanked, and, per column, a label and (numbers) a format. The caller turns the
    specs into Streamlit column configs."""
    df = mask_infeasible(df)
    out, specs = df.copy(), {}
    for col in df.columns:
        values = df[col]
        if values.dtype == bool or not pd.api.types.is_numeric_dtype(values):
            specs[col] = {"label": label(str(col))}
            continue
        v = values.astype(float)
        name, head = str(col), label(str(col))
        if name.endswith("_bytes"):
            v = v / 1e9
        elif name.endswith("_j"):
            v = v / 3.6e6
        elif _duration(name) and np.nanmax(np.abs(v.to_numpy()), initial=0.0) >= 2 * DAY_S:
            v, head = v / DAY_S, head.replace("(s)", "(days)")
        elif _duration(name) and np.nanmax(np.abs(v.to_numpy()), initial=0.0) >= 2 * HOUR_S:
            v, head = v / HOUR_S, head.replace("(s)", "(h)")
        integer = pd.api.types.is_integer_dtype(values)
        fmt = _format(name, v, integer)
        out[col] = values if integer else (_round_sig(v) if fmt in ("localized", "compact") else v)
        specs[col] = {"label": head, "format": fmt}
    return out, specs


def _duration(column: str) -> bool:
    """A column of seconds (``step_s``), not a rate (``tokens_per_s``)."""
    return column.endswith("_s") and not column.endswith("_per_s")


def _round_sig(v: pd.Series, digits: int = 3) -> pd.Series:
    """Each value to ``digits`` significant digits, whole numbers kept whole (12.5, 953,674; and for a compact
    column 1,139,466,248,058.1465 tokens reads 1.14T)."""
    a = v.to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.maximum(10.0 ** (digits - 1 - np.floor(np.log10(np.abs(a)))), 1.0)
        rounded = np.where(np.isfinite(scale) & (a != 0), np.round(a * scale) / scale, a)
    return pd.Series(rounded, index=v.index)


def _format(column: str, v: pd.Series, integer: bool) -> str:
    finite = v[np.isfinite(v)]
    top = float(finite.abs().max()) if len(finite) else 0.0
    if _is_fraction(column, v):
        return "percent"
    if "usd" in column or column.startswith("cost_per"):
        return "dollar" if top < 1e6 else "compact"
    if top >= 1e6:
        return "compact"
    if integer or top >= 1000:
        return "localized"
    return "%.3g"


__all__ = ["count", "plain_md", "display_table", "gigabytes", "label", "mask_infeasible", "seconds", "tick"]
