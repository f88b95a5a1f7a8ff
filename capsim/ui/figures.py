"""Figure builders: DataFrames in, plotly figures out (no business numbers here).

Each builder assembles the figure as plain dicts and validates it once (``go.Figure(dict)``): several times
faster than adding traces and shapes one call at a time, which keeps analytic pages inside their recompute budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from capsim.ui import fmt

PALETTE = qualitative.Plotly
GANTT_MAX_BLOCKS = 4000  # more bars than this are drawn as the step's start and end panels
MARGIN = dict(l=50, r=20, t=60, b=40)


def _values(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[col].to_numpy(float) if len(df) and col in df else np.empty(0)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _np(values: Any) -> Any:
    """Plain arrays for plotly (a pandas Series goes through a slower conversion layer)."""
    return values.to_numpy() if isinstance(values, pd.Series | pd.Index) else values


def log_ticks(values: Any) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a log axis over ``values``: powers of ten (1, 10, 100 or 1k, 10k; every
    second or third decade when they are many), 1-2-5 steps within a decade or two, finer within one."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return [], []
    lo, hi = float(v.min()), float(v.max())
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    span = math.log10(hi / lo)
    mantissas = (1,) if span > 2.5 else (1, 2, 5) if span > 0.7 else (1, 1.5, 2, 3, 4, 5, 6, 8)
    ticks = [m * 10.0**d for d in decades for m in mantissas]
    ticks = [t for t in ticks if lo / 1.5 <= t <= hi * 1.5] or [10.0 ** round(math.log10(lo))]
    step = max(1, math.ceil(len(ticks) / 9))
    ticks = ticks[::step]
    return ticks, [fmt.tick(t) for t in ticks]


def _axis(title: str = "", log: bool = False, category: bool = False, values: Any = None,
          **extra: Any) -> dict[str, Any]:
    """An axis whose labels people read: a log axis ticks at 1, 10, 100 (or 1-2-5 within a narrow range) and
    labels 1k, 1M, 1G (not plotly's B for billion, which reads as bytes); a linear axis prints small numbers as
    decimals (0.02, not 20m) and large ones with SI letters. Its labels push the margins, never get cut."""
    kind = "log" if log else ("category" if category else "-")
    axis: dict[str, Any] = {"title": {"text": title}, "type": kind, "automargin": True}
    if log and values is not None:
        ticks, text = log_ticks(values)
        if ticks:
            axis |= {"tickmode": "array", "tickvals": ticks, "ticktext": text}
    elif not category:
        v = np.asarray(values if values is not None else [], float).ravel()
        v = v[np.isfinite(v)]
        big = bool(len(v)) and float(np.abs(v).max()) >= 1e4
        axis |= {"exponentformat": "SI" if big else "none", "separatethousands": not big}
    return {**axis, **extra}


def _figure(data: list[dict[str, Any]], title: str, height: int = 420, legend_v: bool = False,
            **layout: Any) -> go.Figure:
    legend = {"orientation": "v", "y": 1.0} if legend_v else {"orientation": "h", "y": -0.2, "yanchor": "top"}
    return go.Figure({"data": data, "layout": {"title": {"text": title}, "height": height, "margin": MARGIN,
                                               "legend": legend, **layout}})


def _hline(y: float, text: str, xref: str = "x", yref: str = "y") -> tuple[dict[str, Any], dict[str, Any]]:
    shape = dict(type="line", xref=f"{xref} domain", x0=0, x1=1, yref=yref, y0=y, y1=y,
                 line=dict(color="red", dash="dash"))
    note = dict(xref=f"{xref} domain", x=1, yref=yref, y=y, text=text, showarrow=False, xanchor="right",
                yanchor="bottom", font=dict(color="gray", size=11))
    return shape, note


def _vline(x: float, text: str, xref: str = "x", yref: str = "y", color: str = "red"
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    shape = dict(type="line", xref=xref, x0=x, x1=x, yref=f"{yref} domain", y0=0, y1=1,
                 line=dict(color=color, dash="dash"))
    note = dict(xref=xref, x=x, yref=f"{yref} domain", y=1, text=text, showarrow=False, xanchor="right",
                yanchor="bottom", font=dict(color="gray", size=11))  # above the plot, left of the line
    return shape, note


def _panel_title(text: str, x0: float, x1: float, y: float) -> dict[str, Any]:
    return dict(text=f"<b>{text}</b>", xref="paper", yref="paper", x=(x0 + x1) / 2, y=y, xanchor="center",
                yanchor="bottom", showarrow=False, font=dict(size=13))


def _domains(n: int, gap: float) -> list[tuple[float, float]]:
    width = (1.0 - gap * (n - 1)) / n
    return [(max(0.0, i * (width + gap)), min(1.0, i * (width + gap) + width)) for i in range(n)]


def stacked_bar(df: pd.DataFrame, x: str, parts: Sequence[str], title: str, yaxis: str,
                line: float | None = None, line_name: str = "", labels: Mapping[str, str] | None = None,
                hover: str | None = None) -> go.Figure:
    """One stacked bar per row of ``df`` (parts that are zero in every row are left out of the legend);
    an optional horizontal line (a capacity, a target); ``hover`` names a column shown on hover."""
    labels = labels or {}
    data = []
    for part in parts:
        if not (df[part].fillna(0) != 0).any():
            continue
        name = labels.get(part, part)
        data.append(dict(type="bar", name=name, x=_np(df[x]), y=_np(df[part]), customdata=_np(df[hover]) if hover else None,
                         hovertemplate=("%{customdata}<br>" if hover else "") + f"{name}: %{{y:.4g}}<extra></extra>"))
    extra: dict[str, Any] = {}
    if line is not None:
        shape, note = _hline(line, line_name)
        extra = {"shapes": [shape], "annotations": [note]}
    totals = df[list(parts)].fillna(0).sum(axis=1).to_numpy(float) if len(df) else []
    return _figure(data, title, barmode="stack", xaxis=_axis(category=True, **_wrapped(df[x])),
                   yaxis=_axis(yaxis, values=totals), **extra)


def _wrapped(categories: Any, width: int = 9, crowded: int = 6) -> dict[str, Any]:
    """Tick labels of a crowded category axis broken into short lines (``dp16 tp1<br>pp1 z1``), so they need
    not be slanted (slanted labels run into the legend below)."""
    names = [str(c) for c in categories]
    if len(names) <= crowded or max(map(len, names), default=0) <= width:
        return {}
    lines = []
    for name in names:
        rows: list[str] = []
        for word in name.split():
            if rows and len(rows[-1]) + 1 + len(word) <= width:
                rows[-1] += " " + word
            else:
                rows.append(word)
        lines.append("<br>".join(rows))
    return {"tickmode": "array", "tickvals": names, "ticktext": lines, "tickangle": 0}


def grouped_bar(df: pd.DataFrame, x: str, y: str, group: str, title: str, yaxis: str) -> go.Figure:
    """Bars of ``y`` by ``x``, one bar per ``group`` value side by side."""
    data = [dict(type="bar", name=str(g), x=_np(part[x]), y=_np(part[y]), marker=dict(color=_color(i)))
            for i, (g, part) in enumerate(df.groupby(group, sort=False))]
    return _figure(data, title, barmode="group", xaxis=_axis(category=True), yaxis=_axis(yaxis, values=df[y]))


def _gantt_bars(tl: pd.DataFrame, axis: str, legend: bool) -> list[dict[str, Any]]:
    out = []
    for i, (kind, name) in enumerate((("F", "forward"), ("B", "backward"))):
        part = tl[tl["kind"] == kind]
        out.append(dict(type="bar", orientation="h", name=name, legendgroup=kind, showlegend=legend,
                        y=("stage " + part["stage"].astype(str)).to_numpy(), x=part["duration_s"].to_numpy(),
                        base=part["start_s"].to_numpy(), customdata=part[["micro_batch", "chunk"]].to_numpy(),
                        marker=dict(color=_color(i), line=dict(width=0.3, color="white")),
                        xaxis=f"x{axis}", yaxis=f"y{axis}",
                        hovertemplate=("%{y}<br>micro-batch %{customdata[0]}, chunk %{customdata[1]}<br>"
                                       "%{base:.4g} s + %{x:.4g} s<extra>" + name + "</extra>")))
    return out


def gantt(timeline: pd.DataFrame, title: str, marks: Mapping[str, float] | None = None) -> go.Figure:
    """A pipeline schedule: one row per stage, one bar per forward/backward block (``stage``, ``kind`` F/B,
    ``micro_batch``, ``chunk``, ``start_s``, ``duration_s``). Past ``GANTT_MAX_BLOCKS`` blocks the step's start
    and end are drawn in two panels (the steady state between them repeats)."""
    tl = timeline.sort_values("start_s", kind="stable")
    stages = sorted(tl["stage"].unique())
    order = [f"stage {s}" for s in stages][::-1]
    height = max(260, 60 + 34 * len(stages))
    yaxis = _axis(category=True, categoryorder="array", categoryarray=order)
    if len(tl) <= GANTT_MAX_BLOCKS:
        lines = [_vline(x, name, color="gray") for name, x in (marks or {}).items()]
        return _figure(_gantt_bars(tl, "", True), title, height, barmode="overlay", bargap=0.15,
                       xaxis=_axis("seconds into the step", values=tl["start_s"] + tl["duration_s"]), yaxis=yaxis,
                       shapes=[s for s, _ in lines],
                       annotations=[a for _, a in lines])
    half = GANTT_MAX_BLOCKS // 2
    head, tail = tl.iloc[:half], tl.iloc[-half:]
    top, bottom = (0.58, 1.0), (0.0, 0.42)
    notes = [_panel_title(f"start of the step (first {half} of {len(tl)} blocks)", 0, 1, top[1]),
             _panel_title(f"end of the step (last {half} blocks)", 0, 1, bottom[1])]
    return _figure(_gantt_bars(head, "", True) + _gantt_bars(tail, "2", False), title, 2 * height,
                   barmode="overlay", bargap=0.15, xaxis=_axis(anchor="y", values=head["start_s"]),
                   yaxis={**yaxis, "domain": top},
                   xaxis2=_axis("seconds into the step", anchor="y2", values=tail["start_s"]),
                   yaxis2={**yaxis, "domain": bottom,
                                                                               "anchor": "x2"},
                   annotations=notes)


def ecdf_panels(df: pd.DataFrame, columns: Mapping[str, str], title: str, scale: float = 1.0, unit: str = "",
                marks: Mapping[str, float | None] | None = None) -> go.Figure:
    """Empirical CDFs side by side, one panel per column of ``df`` (``columns``: column -> panel title);
    values multiplied by ``scale``; ``marks`` draws a target (an SLO) on a column's panel."""
    data, shapes, notes, layout = [], [], [], {}
    for i, ((col, name), (x0, x1)) in enumerate(zip(columns.items(), _domains(len(columns), 0.06), strict=True)):
        k = "" if i == 0 else str(i + 1)
        v = np.sort(df[col].to_numpy(float))
        v = v[np.isfinite(v)] * scale
        y = np.arange(1, len(v) + 1) / max(len(v), 1)
        data.append(dict(type="scatter", x=v, y=y, mode="lines", line=dict(shape="hv", color=_color(i)), name=name,
                         showlegend=False, xaxis=f"x{k}", yaxis=f"y{k}"))
        layout[f"xaxis{k}"] = _axis(unit, domain=[x0, x1], anchor=f"y{k}", values=v)
        layout[f"yaxis{k}"] = _axis("fraction of requests" if i == 0 else "", range=[0, 1.02], anchor=f"x{k}")
        notes.append(_panel_title(name, x0, x1, 1.0))
        target = (marks or {}).get(col)
        if target is not None:
            shape, note = _vline(target * scale, "SLO", f"x{k}", f"y{k}")
            shapes.append(shape)
            notes.append(note)
    return _figure(data, title, 360, shapes=shapes, annotations=notes, **layout)


def lines(df: pd.DataFrame, x: str, ys: Mapping[str, str], title: str, xaxis: str, yaxis: str,
          log_x: bool = False, log_y: bool = False, hline: float | None = None, hline_name: str = "",
          y_range: tuple[float, float] | None = None) -> go.Figure:
    """One line with markers per column in ``ys`` (column -> legend name) against ``x``."""
    data = [dict(type="scatter", x=_np(df[x]), y=_np(df[col]), mode="lines+markers", name=name, line=dict(color=_color(i)))
            for i, (col, name) in enumerate(ys.items())]
    extra: dict[str, Any] = {}
    if hline is not None:
        shape, note = _hline(hline, hline_name)
        extra = {"shapes": [shape], "annotations": [note]}
    ys_values = df[list(ys)].to_numpy(float) if len(df) else []
    yax = _axis(yaxis, log_y, values=ys_values, **({"range": list(y_range)} if y_range else {}))
    return _figure(data, title, xaxis=_axis(xaxis, log_x, values=df[x]), yaxis=yax, **extra)


def step_series(df: pd.DataFrame, x: str, ys: Mapping[str, str], group: str, title: str, xaxis: str) -> go.Figure:
    """Time series held between samples (step lines), one panel per column in ``ys`` (stacked, sharing x) and
    one line per ``group``."""
    n = len(ys)
    gap = 0.12
    height = (1.0 - gap * (n - 1)) / n
    data, layout, notes = [], {}, []
    groups = list(df.groupby(group, sort=True))
    for r, (col, name) in enumerate(ys.items()):
        k = "" if r == 0 else str(r + 1)
        top = 1.0 - r * (height + gap)
        for i, (g, part) in enumerate(groups):
            data.append(dict(type="scatter", x=part[x].to_numpy(), y=part[col].to_numpy(), mode="lines",
                             line=dict(shape="hv", color=_color(i)), name=f"{group} {g}", legendgroup=str(g),
                             showlegend=r == 0, xaxis=f"x{k}", yaxis=f"y{k}"))
        last = r == n - 1
        layout[f"xaxis{k}"] = _axis(xaxis if last else "", anchor=f"y{k}", **({"matches": "x"} if r else {}),
                                    showticklabels=last, values=df[x])
        layout[f"yaxis{k}"] = _axis(domain=[max(0.0, top - height), min(1.0, top)], anchor=f"x{k}",
                                    values=df[col])
        notes.append(_panel_title(name, 0, 1, top))
    return _figure(data, title, 220 + 200 * n, annotations=notes, **layout)


def measured_vs_fitted(measured: pd.DataFrame, fitted: pd.DataFrame, x: str, y: str, group: str, title: str,
                       xaxis: str, yaxis: str, log_x: bool = True, log_y: bool = False) -> go.Figure:
    """Measured samples as markers and the fitted model as lines, one colour per ``group`` value in either
    frame (``fitted`` rows are drawn in ``x`` order)."""
    m_groups = list(measured[group]) if len(measured) else []
    f_groups = list(fitted[group]) if len(fitted) else []
    data = []
    for i, g in enumerate(dict.fromkeys([*m_groups, *f_groups])):
        m = measured[measured[group] == g] if len(measured) else measured
        f = fitted[fitted[group] == g].sort_values(x) if len(fitted) else fitted
        if len(m):
            data.append(dict(type="scatter", x=_np(m[x]), y=_np(m[y]), mode="markers", name=f"{g} measured",
                             legendgroup=str(g), marker=dict(color=_color(i), size=6, opacity=0.7)))
        if len(f):
            data.append(dict(type="scatter", x=_np(f[x]), y=_np(f[y]), mode="lines", name=f"{g} fitted", legendgroup=str(g),
                             line=dict(color=_color(i), width=2)))
    xs = np.concatenate([_values(measured, x), _values(fitted, x)])
    ys = np.concatenate([_values(measured, y), _values(fitted, y)])
    return _figure(data, title, 460, legend_v=len(data) > 4, xaxis=_axis(xaxis, log_x, values=xs),
                   yaxis=_axis(yaxis, log_y, values=ys))


def measured_and_predicted(df: pd.DataFrame, x: str, measured: str, predicted: str, group: str, title: str,
                           xaxis: str, yaxis: str, log_x: bool = True) -> go.Figure:
    """Samples of irregular shapes: each one's measured value (filled marker) and the fit's prediction for the
    same sample (open marker), one colour per ``group``."""
    data = []
    for i, (g, part) in enumerate(df.groupby(group, sort=False)):
        for col, name, symbol in ((measured, "measured", "circle"), (predicted, "fitted", "circle-open")):
            data.append(dict(type="scatter", x=_np(part[x]), y=_np(part[col]), mode="markers", name=f"{g} {name}",
                             legendgroup=str(g), marker=dict(color=_color(i), size=7, symbol=symbol, opacity=0.8)))
    ys = np.concatenate([_values(df, measured), _values(df, predicted)])
    return _figure(data, title, 460, legend_v=len(data) > 4, xaxis=_axis(xaxis, log_x, values=df[x]),
                   yaxis=_axis(yaxis, values=ys))


def parity(df: pd.DataFrame, measured: str, predicted: str, group: str, title: str, unit: str) -> go.Figure:
    """Predicted against measured, log-log, with the y = x line."""
    data = [dict(type="scatter", x=_np(part[measured]), y=_np(part[predicted]), mode="markers", name=str(g),
                 marker=dict(color=_color(i), size=6, opacity=0.7))
            for i, (g, part) in enumerate(df.groupby(group, sort=False))]
    both = pd.concat([df[measured], df[predicted]]).to_numpy(float)
    both = both[np.isfinite(both) & (both > 0)]
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        data.append(dict(type="scatter", x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                         line=dict(color="gray", dash="dash")))
    return _figure(data, title, 460, legend_v=True, xaxis=_axis(f"measured ({unit})", True, values=both),
                   yaxis=_axis(f"predicted ({unit})", True, values=both))


def pareto(points: pd.DataFrame, front: pd.DataFrame, x: str, y: str, label: str, ok: str, title: str,
           xaxis: str, yaxis: str) -> go.Figure:
    """Every option as a marker (filled where ``ok``), the non-dominated ones joined as the front; the front's
    labels point into the plot (left of points in its right half), so none runs off an edge."""
    data = []
    for flag, name, symbol in ((True, "meets the SLOs", "circle"), (False, "misses the SLOs", "x")):
        part = points[points[ok] == flag] if len(points) else points
        if len(part):
            data.append(dict(type="scatter", x=_np(part[x]), y=_np(part[y]), mode="markers", name=name,
                             text=_np(part[label]), marker=dict(symbol=symbol, size=10, color=_color(0 if flag else 1)),
                             hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    xs = np.concatenate([_values(points, x), _values(front, x)])
    ys = np.concatenate([_values(points, y), _values(front, y)])
    xax, yax = _axis(xaxis, values=xs), _axis(yaxis, values=ys)
    if len(xs):
        lo, hi = float(np.nanmin(xs)), float(np.nanmax(xs))
        pad = 0.08 * (hi - lo) if hi > lo else 0.1 * abs(hi) + 1e-9
        xax["range"] = [lo - pad, hi + pad]
        ylo, yhi = float(np.nanmin(ys)), float(np.nanmax(ys))
        ypad = 0.1 * (yhi - ylo) if yhi > ylo else 0.1 * abs(yhi) + 1e-9
        yax["range"] = [ylo - ypad, yhi + 2 * ypad]  # room for the labels above the points
    if len(front):
        where = _label_sides(front[x].to_numpy(float), front[y].to_numpy(float), xax["range"], yax["range"])
        data.append(dict(type="scatter", x=_np(front[x]), y=_np(front[y]), mode="lines+markers+text",
                         name="Pareto front", text=_np(front[label]), textposition=where,
                         textfont=dict(size=10), cliponaxis=False, line=dict(color=_color(2), width=2, shape="hv")))
    return _figure(data, title, 460, xaxis=xax, yaxis=yax)


def _label_sides(xs: np.ndarray, ys: np.ndarray, xr: list[float], yr: list[float]) -> list[str]:
    """Where each point's label goes: towards the middle of the plot (left of points in its right half), and
    below the point when the previous label sits close above it (so neighbours do not overprint)."""
    mid, xspan, yspan = (xr[0] + xr[1]) / 2, xr[1] - xr[0], yr[1] - yr[0]
    out: list[str] = []
    for i, (px, py) in enumerate(zip(xs, ys, strict=True)):
        vertical = "top"
        if i and out[-1].startswith("top") and abs(px - xs[i - 1]) < 0.3 * xspan \
                and abs(py - ys[i - 1]) < 0.1 * yspan:
            vertical = "bottom"
        out.append(f"{vertical} {'left' if px > mid else 'right'}")
    return out


def _log_range(values: np.ndarray, below: float, above: float) -> list[float]:
    """A log axis range (in decades) around ``values`` with margins, in decades, below and above."""
    v = values[np.isfinite(values) & (values > 0)]
    if not len(v):
        return [0.0, 1.0]
    return [math.log10(float(v.min())) - below, math.log10(float(v.max())) + above]


def bubbles(df: pd.DataFrame, x: str, y: str, size: str, label: str, title: str, log: bool = False) -> go.Figure:
    """Labelled points, marker area proportional to ``size`` (log axes spread a wide range); the axes leave room
    for the largest marker and the labels above the points."""
    sizes = df[size].to_numpy(float)
    data = [dict(type="scatter", x=_np(df[x]), y=_np(df[y]), mode="markers+text", text=_np(df[label]),
                 textposition="top center", textfont=dict(size=10), customdata=sizes, cliponaxis=False,
                 marker=dict(size=sizes, sizemode="area", sizeref=2.0 * np.nanmax(sizes) / 40**2, sizemin=4,
                             color=_color(0), opacity=0.7),
                 hovertemplate=f"%{{text}}<br>{x} %{{x}}<br>{y} %{{y}}<br>{size} %{{customdata}}<extra></extra>")]
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    xax, yax = _axis(x, log, values=xs), _axis(y, log, values=ys)
    if log:
        xax["range"], yax["range"] = _log_range(xs, 0.12, 0.12), _log_range(ys, 0.12, 0.25)
    return _figure(data, title, 520, xaxis=xax, yaxis=yax)
