"""Tables for people: values in human units (ms, GB, days, $, k/M), never cut to fit the terminal.

A column's unit follows from its name (``ttft_p99_s`` is a time, ``weights_bytes`` a size, ``cost_usd`` money,
``mfu`` a fraction shown in percent); one unit per column, chosen from its values, is named in the header. A table
too wide for the terminal is split into several tables that each repeat the key column(s), so every value keeps
its full width; long text (notes, reasons) wraps. ``--json`` keeps SI: only these tables convert.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table

TEXT = {"note", "notes", "reason", "description", "source_note", "provenance"}  # wrapped, never a number
TEXT_MIN_WIDTH = 24  # a wrapped text column is never narrower than this
PERCENT = {"mfu", "hfu", "goodput", "scaling_efficiency", "utilization", "share", "precise_share"}
DAY_S, HOUR_S = 86400.0, 3600.0


def kind_of(name: str) -> str:
    """The unit kind of a column or key: time, bytes, money, percent, energy, flops, count, rate or plain."""
    n = name.lower().strip()
    if n in TEXT:
        return "text"
    if n.endswith("_per_s") or n.endswith("_rps") or n.endswith("/s"):
        return "rate"
    if "usd" in n or n.startswith("cost_per") or n in ("cost", "price", "$"):
        return "money"
    if n in PERCENT or n.endswith(("_fraction", "_mean_fraction")) or "occupancy" in n or n.startswith("utilization"):
        return "percent"
    if n.endswith("_s") or n in ("seconds", "time", "duration"):
        return "time"
    if n.endswith("_bytes") or n == "bytes":
        return "bytes"
    if n.endswith("_j") or n == "energy":
        return "energy"
    if n.endswith("flops") or n == "flops":
        return "flops"
    if n in ("params", "tokens", "active") or n.endswith(("_tokens", "_params", "_requests", "_count")):
        return "count"
    return "plain"


def number(v: float) -> str:
    """Three or four significant digits, thousands separated; whole numbers without decimals."""
    if not math.isfinite(v):
        return "-"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 1e-3:
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return f"{v:.2e}"


def _scaled(v: float, steps: tuple[tuple[float, str], ...]) -> str:
    """``v`` in the largest step it reaches (k, M, ...), else plain."""
    for factor, suffix in steps:
        if abs(v) >= factor:
            scaled = v / factor
            return f"{scaled:.3g}{suffix}" if abs(scaled) < 1000 else f"{v:.3g}"
    return number(v)


COUNT_STEPS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
FLOP_STEPS = ((1e18, " EFLOP"), (1e15, " PFLOP"), (1e12, " TFLOP"), (1e9, " GFLOP"), (1e6, " MFLOP"))


def money(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    if abs(v) >= 1e6:
        return f"${_scaled(v, ((1e9, 'B'), (1e6, 'M')))}"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    return f"${v:,.2f}" if abs(v) >= 0.01 or v == 0 else f"${v:.2g}"


def percent(v: float) -> str:
    return f"{100 * v:.1f}%" if math.isfinite(v) else "-"


def time_unit(values: Iterable[float]) -> tuple[str, float]:
    """(unit, seconds per unit) that reads best for a column of durations: the largest value's scale."""
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    top = max(finite, default=1.0)
    for unit, size, below in (("us", 1e-6, 1e-3), ("ms", 1e-3, 1.0), ("s", 1.0, 120.0), ("min", 60.0, 2 * HOUR_S),
                              ("h", HOUR_S, 2 * DAY_S)):
        if top < below:
            return unit, size
    return "days", DAY_S


def bytes_unit(values: Iterable[float]) -> tuple[str, float]:
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if top >= size:
            return unit, size
    return "B", 1.0


def energy_unit(values: Iterable[float]) -> tuple[str, float]:
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    for unit, size in (("GWh", 3.6e12), ("MWh", 3.6e9), ("kWh", 3.6e6)):
        if top >= size:
            return unit, size
    return "J", 1.0


SCALES: dict[str, Callable[[Iterable[float]], tuple[str, float]]] = {"time": time_unit, "bytes": bytes_unit,
                                                                      "energy": energy_unit}
SIMPLE: dict[str, Callable[[float], str]] = {"money": money, "percent": percent,
                                              "count": lambda v: _scaled(v, COUNT_STEPS),
                                              "rate": lambda v: _scaled(v, COUNT_STEPS) if abs(v) >= 1e4 else number(v),
                                              "flops": lambda v: _scaled(v, FLOP_STEPS), "plain": number}


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def cell(value: Any, kind: str = "plain", unit: tuple[str, float] | None = None) -> str:
    """One value as text: numbers in the column's unit or kind, anything else as it is."""
    v = _float(value)
    if v is None:
        return "-" if value is None else str(value)
    if unit is not None:
        return number(v / unit[1]) if math.isfinite(v) else "-"
    if kind in SIMPLE:
        return SIMPLE[kind](v)
    return number(v)


def value_with_unit(key: str, value: Any) -> str:
    """A value of a key-value table, with its unit written after it (``12.3 ms``, ``1.21 GB``, ``$4.20``)."""
    kind, v = kind_of(key), _float(value)
    if v is None or kind not in SCALES:
        return cell(value, kind)
    unit = SCALES[kind]([v])
    return f"{number(v / unit[1])} {unit[0]}" if math.isfinite(v) else "-"


UNIT_KINDS = {"s": "time", "bytes": "bytes", "B": "bytes", "J": "energy"}


def with_unit(value: Any, unit: str) -> str:
    """A value given in ``unit`` (SI), shown in a readable scale of it: (0.0123, "s") -> ``12.3 ms``."""
    v, kind = _float(value), UNIT_KINDS.get(unit)
    if v is None or kind is None or not math.isfinite(v):
        return f"{cell(value)} {unit}".strip()
    scale = SCALES[kind]([v])
    return f"{number(v / scale[1])} {scale[0]}"


HEADERS = {"cost_per_million_output_tokens": "$ per M output tokens", "cost_per_hour_usd": "$ per hour",
           "cost_per_hour_min": "$ per hour (bound)", "price_usd_per_gpu_hour": "$ per GPU-hour", "cost_usd": "cost",
           "capacity_rps": "capacity req/s", "rate_rps": "req/s", "replicas_min": "replicas (bound)",
           "gpus_min": "GPUs (bound)", "gpus": "GPUs", "quantization": "quant", "kv_cache_dtype": "KV format",
           "micro_batch": "micro batch", "zero_stage": "ZeRO", "mfu": "MFU", "hfu": "HFU", "ttft_p99_s": "p99 TTFT",
           "tpot_p99_s": "p99 TPOT", "time_to_train_s": "time to train", "energy_j": "energy",
           "tokens_per_s": "tokens/s", "scaling_efficiency": "scaling eff.", "weights_per_gpu_bytes": "weights/GPU",
           "cost_vs_baseline": "cost vs base"}


def header(name: str, kind: str, unit: str | None) -> str:
    """``ttft_p99_s`` -> ``p99 TTFT (ms)``: a short name (the unit suffix dropped, words spaced), the display
    unit named."""
    if name in HEADERS:
        return f"{HEADERS[name]} ({unit})" if unit else HEADERS[name]
    base = name
    for suffix in ("_usd", "_s", "_bytes", "_j"):
        if kind != "plain" and base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    base = base.replace("_", " ")
    return f"{base} ({unit})" if unit else base


class Grid:
    """A table that fits the width it is printed at: split into column groups (each repeating the first ``keys``
    columns) when too wide, values never cut; ``pairs`` tables format each value by its row's key."""

    def __init__(self, title: str, columns: list[str], rows: list[list[Any]], keys: int = 1,
                 pairs: bool = False) -> None:
        self.title, self.keys = title, max(1, min(keys, len(columns)))
        kinds = [kind_of(c) for c in columns]
        if pairs:  # key-value rows: the unit comes from each row's key
            self.headers = list(columns)
            self.cells = [[header(str(r[0]), kind_of(str(r[0])), None), *(value_with_unit(str(r[0]), v) for v in r[1:])]
                          for r in rows]
            self.wrap = [False] + [True] * (len(columns) - 1)
            self.right = [False] * len(columns)
            return
        units: list[tuple[str, float] | None] = []
        for j, kind in enumerate(kinds):
            nums = [f for f in (_float(r[j]) for r in rows) if f is not None]
            units.append(SCALES[kind](nums) if kind in SCALES and nums else None)
        self.headers = [header(c, k, u[0] if u else None) for c, k, u in zip(columns, kinds, units, strict=True)]
        self.cells = [[cell(v, k, u) for v, k, u in zip(r, kinds, units, strict=True)] for r in rows]
        self.wrap = [k == "text" for k in kinds]
        self.right = [k != "text" and all(_float(r[j]) is not None or r[j] is None for r in rows) and bool(rows)
                      for j, k in enumerate(kinds)]

    def _width(self, j: int) -> int:
        """The narrowest a column may be: its longest value (text: wrapped), its header's longest word."""
        values = max((len(r[j]) for r in self.cells), default=0)
        head = max((len(w) for w in self.headers[j].split()), default=0)
        return max(min(values, TEXT_MIN_WIDTH) if self.wrap[j] else values, head, 1)

    def _span(self, cols: list[int]) -> int:
        return sum(self._width(j) + 3 for j in cols) + 1  # a column: its width, 2 padding, 1 rule; +1 edge

    def groups(self, max_width: int, key: list[int]) -> list[list[int]] | None:
        """Columns per printed table: the ``key`` columns in each, then as many others as fit; None when the key
        columns and any one other do not fit."""
        out: list[list[int]] = []
        group = list(key)
        for j in (j for j in range(len(self.headers)) if j not in key):
            if self._span([*group, j]) > max_width and len(group) > len(key):
                out.append(group)
                group = list(key)
            if self._span([*group, j]) > max_width:
                return None
            group.append(j)
        return [*out, group]

    def _numbered(self) -> None:
        """Add a row-number column in front, so the rows of split tables can be matched."""
        self.headers = ["#", *self.headers]
        self.cells = [[str(i + 1), *r] for i, r in enumerate(self.cells)]
        self.wrap = [False, *self.wrap]
        self.right = [False, *self.right]

    def records(self, max_width: int) -> Table:
        """The last resort for a narrow terminal: one block of ``column  value`` lines per row."""
        t = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False,
                  min_width=min(len(self.title), max_width))
        t.add_column(no_wrap=True)
        t.add_column(overflow="fold", max_width=max(max_width - max(len(h) for h in self.headers) - 7, 12))
        for i, r in enumerate(self.cells):
            for j, (head, value) in enumerate(zip(self.headers, r, strict=True)):
                t.add_row(head, value, end_section=j == len(r) - 1 and i < len(self.cells) - 1)
        return t

    def table(self, cols: list[int], key: list[int], title: str | None, max_width: int) -> Table:
        """One printed table: every value column exactly as wide as its longest value (headers wrap inside
        it), text columns sharing what is left."""
        widths = {j: self._width(j) for j in cols}
        text = [j for j in cols if self.wrap[j]]
        spare = max_width - self._span([j for j in cols if not self.wrap[j]]) - 3 * len(text)
        for j in text:
            natural = max((len(r[j]) for r in self.cells), default=1)
            widths[j] = max(min(natural, spare // len(text)), widths[j])
        spare = max_width - sum(w + 3 for w in widths.values()) - 1
        for j in cols:  # room left: widen columns whose header would wrap, leftmost first
            grow = min(max(len(self.headers[j]) - widths[j], 0), max(spare, 0))
            widths[j] += grow
            spare -= grow
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for j in cols:
            t.add_column(self.headers[j], justify="right" if self.right[j] and j not in key else "left",
                         overflow="fold", width=widths[j])
        for r in self.cells:
            t.add_row(*(r[j] for j in cols))
        return t

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        everything = list(range(len(self.headers)))
        if self._span(everything) <= width:
            yield self.table(everything, everything[: self.keys], self.title, width)
            return
        if len(self.cells) > 1:
            self._numbered()
        shift = len(self.cells) > 1
        for keys in range(self.keys, -1, -1):
            key = list(range(keys + shift))
            groups = self.groups(width, key) if key else None
            if groups is not None:
                break
        else:
            yield self.records(width)
            return
        for i, cols in enumerate(groups):
            title = f"{self.title} (1/{len(groups)})" if i == 0 else f"({i + 1}/{len(groups)}, continued)"
            yield self.table(cols, key, title, width)


def table(title: str, columns: list[str], rows: list[list[Any]], keys: int = 1) -> Grid:
    """A table in human units that fits the terminal (see :class:`Grid`)."""
    return Grid(title, columns, rows, keys)


def pairs(title: str, rows: list[list[Any]], columns: tuple[str, str] = ("metric", "value")) -> Grid:
    """A key-value table: each value in the unit its key names (``duration_s`` -> ``12.3 s``)."""
    return Grid(title, list(columns), rows, pairs=True)


def fmt(value: Any) -> str:
    """One value without a column: numbers to 3-4 significant digits."""
    return cell(value)


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.2f} GB"


__all__ = ["Grid", "cell", "fmt", "gb", "kind_of", "money", "number", "pairs", "table", "value_with_unit", "with_unit"]
