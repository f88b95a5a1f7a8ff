"""Figure builders: DataFrames in, plotly figures out (no business numbers here)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def stacked_bar(df: pd.DataFrame, x: str, parts: list[str], title: str, yaxis: str,
                line: float | None = None, line_name: str = "") -> go.Figure:
    """One stacked bar per row of ``df``; an optional horizontal line (a capacity, a target)."""
    fig = go.Figure()
    for part in parts:
        fig.add_bar(name=part, x=df[x], y=df[part])
    fig.update_layout(barmode="stack", title=title, yaxis_title=yaxis, legend_orientation="h", height=420,
                      margin=dict(l=40, r=20, t=60, b=40))
    if line is not None:
        fig.add_hline(y=line, line_dash="dash", line_color="red", annotation_text=line_name)
    return fig
