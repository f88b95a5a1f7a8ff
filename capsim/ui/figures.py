"""Figure builders: DataFrames in, plotly figures out (no business numbers here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

PALETTE = qualitative.Plotly
LAYOUT = dict(legend_orientation="h", legend_y=-0.18, margin=dict(l=50, r=20, t=60, b=40), height=420)
GANTT_MAX_BLOCKS = 4000  # more bars than this are drawn as the step's start and end panels


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _si(fig: go.Figure) -> go.Figure:
    """SI prefixes on the axes (G, not plotly's B for billion, which reads as bytes)."""
    fig.update_xaxes(exponentformat="SI")
    fig.update_yaxes(exponentformat="SI")
    return fig


def stacked_bar(df: pd.DataFrame, x: str, parts: Sequence[str], title: str, yaxis: str,
                line: float | None = None, line_name: str = "", labels: Mapping[str, str] | None = None,
                hover: str | None = None) -> go.Figure:
    """One stacked bar per row of ``df`` (parts that are zero in every row are left out of the legend);
    an optional horizontal line (a capacity, a target); ``hover`` names a column shown on hover."""
    fig = go.Figure()
    labels = labels or {}
    for part in parts:
        if not (df[part].fillna(0) != 0).any():
            continue
        name = labels.get(part, part)
        template = ("%{customdata}<br>" if hover else "") + f"{name}: %{{y:.4g}}<extra></extra>"
        fig.add_bar(name=name, x=df[x], y=df[part], customdata=df[hover] if hover else None,
                    hovertemplate=template)
    fig.update_layout(barmode="stack", title=title, yaxis_title=yaxis, **LAYOUT)
    fig.update_xaxes(type="category")  # labels such as "#1" or "2:4" stay labels
    if line is not None:
        fig.add_hline(y=line, line_dash="dash", line_color="red", annotation_text=line_name)
    return _si(fig)


def _gantt_traces(fig: go.Figure, tl: pd.DataFrame, row: int | None, legend: bool) -> None:
    for i, (kind, name) in enumerate((("F", "forward"), ("B", "backward"))):
        part = tl[tl["kind"] == kind]
        hover = ("stage %{y}<br>micro-batch %{customdata[0]}, chunk %{customdata[1]}<br>"
                 "%{base:.4g} s + %{x:.4g} s<extra>" + name + "</extra>")
        bar = go.Bar(name=name, y=part["stage"].map(lambda s: f"stage {s}"), x=part["duration_s"],
                     base=part["start_s"], orientation="h", marker_color=_color(i), marker_line_width=0.3,
                     marker_line_color="white", customdata=part[["micro_batch", "chunk"]].to_numpy(),
                     hovertemplate=hover, showlegend=legend, legendgroup=kind)
        fig.add_trace(bar, row=row, col=1 if row else None)


def gantt(timeline: pd.DataFrame, title: str, marks: Mapping[str, float] | None = None) -> go.Figure:
    """A pipeline schedule: one row per stage, one bar per forward/backward block (``stage``, ``kind`` F/B,
    ``micro_batch``, ``chunk``, ``start_s``, ``duration_s``). Past ``GANTT_MAX_BLOCKS`` blocks the step's start
    and end are drawn in two panels (the steady state between them repeats)."""
    tl = timeline.sort_values("start_s")
    stages = sorted(tl["stage"].unique())
    order = [f"stage {s}" for s in stages][::-1]
    height = max(260, 60 + 34 * len(stages))
    if len(tl) <= GANTT_MAX_BLOCKS:
        fig = go.Figure()
        _gantt_traces(fig, tl, None, True)
        for name, x in (marks or {}).items():
            fig.add_vline(x=x, line_dash="dash", line_color="gray", annotation_text=name)
        fig.update_yaxes(categoryorder="array", categoryarray=order)
        fig.update_layout(barmode="overlay", title=title, xaxis_title="seconds into the step", bargap=0.15,
                          **{**LAYOUT, "height": height})
        return _si(fig)
    half = GANTT_MAX_BLOCKS // 2
    head, tail = tl.iloc[:half], tl.iloc[-half:]
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.16, subplot_titles=(
        f"start of the step (first {half} of {len(tl)} blocks)", f"end of the step (last {half} blocks)"))
    _gantt_traces(fig, head, 1, True)
    _gantt_traces(fig, tail, 2, False)
    fig.update_yaxes(categoryorder="array", categoryarray=order)
    fig.update_xaxes(title_text="seconds into the step", row=2, col=1)
    fig.update_layout(barmode="overlay", title=title, bargap=0.15, **{**LAYOUT, "height": 2 * height})
    return _si(fig)


def ecdf_panels(df: pd.DataFrame, columns: Mapping[str, str], title: str, scale: float = 1.0, unit: str = "",
                marks: Mapping[str, float | None] | None = None) -> go.Figure:
    """Empirical CDFs side by side, one panel per column of ``df`` (``columns``: column -> panel title);
    values multiplied by ``scale``; ``marks`` draws a target (an SLO) on a column's panel."""
    fig = make_subplots(rows=1, cols=len(columns), subplot_titles=list(columns.values()))
    for i, col in enumerate(columns, start=1):
        v = np.sort(df[col].to_numpy(float))
        v = v[np.isfinite(v)] * scale
        y = np.arange(1, len(v) + 1) / max(len(v), 1)
        fig.add_trace(go.Scatter(x=v, y=y, mode="lines", line_shape="hv", line_color=_color(i - 1),
                                 name=columns[col], showlegend=False), row=1, col=i)
        target = (marks or {}).get(col)
        if target is not None:
            fig.add_vline(x=target * scale, line_dash="dash", line_color="red", annotation_text="SLO",
                          row=1, col=i)
        fig.update_xaxes(title_text=unit, row=1, col=i)
    fig.update_yaxes(title_text="fraction of requests", range=[0, 1.02], row=1, col=1)
    fig.update_layout(title=title, **{**LAYOUT, "height": 360})
    return _si(fig)


def lines(df: pd.DataFrame, x: str, ys: Mapping[str, str], title: str, xaxis: str, yaxis: str,
          log_x: bool = False, log_y: bool = False, hline: float | None = None, hline_name: str = "",
          y_range: tuple[float, float] | None = None) -> go.Figure:
    """One line with markers per column in ``ys`` (column -> legend name) against ``x``."""
    fig = go.Figure()
    for i, (col, name) in enumerate(ys.items()):
        fig.add_trace(go.Scatter(x=df[x], y=df[col], mode="lines+markers", name=name, line_color=_color(i)))
    if hline is not None:
        fig.add_hline(y=hline, line_dash="dash", line_color="red", annotation_text=hline_name)
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, **LAYOUT)
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_yaxes(type="log" if log_y else "linear", range=y_range)
    return _si(fig)


def step_series(df: pd.DataFrame, x: str, ys: Mapping[str, str], group: str, title: str, xaxis: str) -> go.Figure:
    """Time series held between samples (step lines), one panel per column in ``ys`` and one line per ``group``."""
    fig = make_subplots(rows=len(ys), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=list(ys.values()))
    for r, col in enumerate(ys, start=1):
        for i, (g, part) in enumerate(df.groupby(group, sort=True)):
            fig.add_trace(go.Scatter(x=part[x], y=part[col], mode="lines", line_shape="hv", line_color=_color(i),
                                     name=f"{group} {g}", legendgroup=str(g), showlegend=r == 1), row=r, col=1)
    fig.update_xaxes(title_text=xaxis, row=len(ys), col=1)
    fig.update_layout(title=title, **{**LAYOUT, "height": 220 + 200 * len(ys)})
    return _si(fig)


def measured_vs_fitted(measured: pd.DataFrame, fitted: pd.DataFrame, x: str, y: str, group: str, title: str,
                       xaxis: str, yaxis: str, log_x: bool = True, log_y: bool = False) -> go.Figure:
    """Measured samples as markers and the fitted model as lines, one colour per ``group`` value in either
    frame (``fitted`` rows are drawn in ``x`` order)."""
    fig = go.Figure()
    groups = list(dict.fromkeys([*measured.get(group, pd.Series(dtype=str)), *fitted.get(group, pd.Series(dtype=str))]))
    for i, g in enumerate(groups):
        m = measured[measured[group] == g] if len(measured) else measured
        f = fitted[fitted[group] == g].sort_values(x) if len(fitted) else fitted
        if len(m):
            fig.add_trace(go.Scatter(x=m[x], y=m[y], mode="markers", name=f"{g} measured", legendgroup=str(g),
                                     marker=dict(color=_color(i), size=6, opacity=0.7)))
        if len(f):
            fig.add_trace(go.Scatter(x=f[x], y=f[y], mode="lines", name=f"{g} fitted", legendgroup=str(g),
                                     line=dict(color=_color(i), width=2)))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, **{**LAYOUT, "height": 460})
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_yaxes(type="log" if log_y else "linear")
    return _si(fig)


def parity(df: pd.DataFrame, measured: str, predicted: str, group: str, title: str, unit: str) -> go.Figure:
    """Predicted against measured, log-log, with the y = x line."""
    fig = go.Figure()
    for i, (g, part) in enumerate(df.groupby(group, sort=False)):
        fig.add_trace(go.Scatter(x=part[measured], y=part[predicted], mode="markers", name=str(g),
                                 marker=dict(color=_color(i), size=6, opacity=0.7)))
    both = pd.concat([df[measured], df[predicted]]).to_numpy(float)
    both = both[np.isfinite(both) & (both > 0)]
    if len(both):
        lo, hi = both.min(), both.max()
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line=dict(color="gray", dash="dash")))
    fig.update_layout(title=title, xaxis_title=f"measured ({unit})", yaxis_title=f"predicted ({unit})",
                      **{**LAYOUT, "height": 460, "legend_orientation": "v", "legend_y": 1.0})
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return _si(fig)


def bubbles(df: pd.DataFrame, x: str, y: str, size: str, label: str, title: str) -> go.Figure:
    """Labelled points, marker area proportional to ``size``."""
    sizes = df[size].to_numpy(float)
    fig = go.Figure(go.Scatter(
        x=df[x], y=df[y], mode="markers+text", text=df[label], textposition="top center", textfont_size=10,
        marker=dict(size=sizes, sizemode="area", sizeref=2.0 * np.nanmax(sizes) / 40**2, sizemin=4,
                    color=_color(0), opacity=0.7),
        customdata=sizes, hovertemplate=f"%{{text}}<br>{x} %{{x}}<br>{y} %{{y}}<br>{size} %{{customdata}}"
                                        "<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, **{**LAYOUT, "height": 480})
    return _si(fig)


def pareto(points: pd.DataFrame, front: pd.DataFrame, x: str, y: str, label: str, ok: str, title: str,
           xaxis: str, yaxis: str) -> go.Figure:
    """Every option as a marker (filled where ``ok``), the non-dominated ones joined as the front."""
    fig = go.Figure()
    for flag, name, symbol in ((True, "meets the SLOs", "circle"), (False, "misses the SLOs", "x")):
        part = points[points[ok] == flag] if len(points) else points
        if len(part):
            fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers", name=name, text=part[label],
                                     marker=dict(symbol=symbol, size=10, color=_color(0 if flag else 1)),
                                     hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    if len(front):
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines+markers+text", name="Pareto front",
                                 text=front[label], textposition="top right", textfont_size=10,
                                 line=dict(color=_color(2), width=2, shape="hv")))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, **{**LAYOUT, "height": 460})
    xs = pd.concat([points[x], front[x]]) if len(front) else points[x]
    if len(xs):
        lo, hi = float(xs.min()), float(xs.max())
        pad = 0.08 * (hi - lo) if hi > lo else 0.1 * abs(hi) + 1e-9
        fig.update_xaxes(range=[lo - pad, hi + 3 * pad])  # room for the front's labels
    return _si(fig)


def grouped_bar(df: pd.DataFrame, x: str, y: str, group: str, title: str, yaxis: str) -> go.Figure:
    """Bars of ``y`` by ``x``, one bar per ``group`` value side by side."""
    fig = go.Figure()
    for i, (g, part) in enumerate(df.groupby(group, sort=False)):
        fig.add_bar(name=str(g), x=part[x], y=part[y], marker_color=_color(i))
    fig.update_layout(barmode="group", title=title, yaxis_title=yaxis, **LAYOUT)
    fig.update_xaxes(type="category")
    return _si(fig)
