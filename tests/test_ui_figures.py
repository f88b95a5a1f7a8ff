"""Figure builders: DataFrames in, plotly figures out, for shapes the pages meet (many panels, many blocks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capsim.ui import figures


def _timeline(stages: int, micro_batches: int) -> pd.DataFrame:
    rows = [{"stage": s, "micro_batch": m, "chunk": 0, "kind": k, "start_s": 2.0 * m + (k == "B") + 0.1 * s,
             "duration_s": 0.9} for s in range(stages) for m in range(micro_batches) for k in "FB"]
    return pd.DataFrame(rows)


def test_gantt_draws_every_block_or_the_start_and_end_of_a_long_step():
    small = figures.gantt(_timeline(4, 8), "t", {"flush": 16.0})
    assert sum(len(t.x) for t in small.data) == 4 * 8 * 2
    assert small.layout.shapes[0].x0 == 16.0
    big = _timeline(8, figures.GANTT_MAX_BLOCKS // 8)
    fig = figures.gantt(big, "t")
    assert sum(len(t.x) for t in fig.data) == figures.GANTT_MAX_BLOCKS < len(big)
    assert {t.yaxis for t in fig.data} == {"y", "y2"}


@pytest.mark.parametrize("panels", [1, 2, 3, 5])
def test_panels_stay_inside_the_figure(panels):
    df = pd.DataFrame({"t": np.arange(10.0), "g": [0, 1] * 5, **{f"c{i}": np.random.rand(10) for i in range(panels)}})
    fig = figures.step_series(df, "t", {f"c{i}": f"panel {i}" for i in range(panels)}, "g", "t", "s")
    assert len(fig.data) == 2 * panels
    cdf = figures.ecdf_panels(df, {f"c{i}": f"panel {i}" for i in range(panels)}, "t", marks={"c0": 0.5})
    assert len(cdf.data) == panels
    assert cdf.data[0].y[-1] == 1.0  # a CDF ends at 1


def test_stacked_bar_leaves_out_parts_that_are_zero_everywhere():
    df = pd.DataFrame({"x": ["#1", "#2"], "a": [1.0, 2.0], "b": [0.0, 0.0]})
    fig = figures.stacked_bar(df, "x", ["a", "b"], "t", "s", line=3.0, line_name="cap")
    assert [t.name for t in fig.data] == ["a"]
    assert fig.layout.xaxis.type == "category" and fig.layout.shapes[0].y0 == 3.0


def test_pareto_marks_the_front_and_misses():
    pts = pd.DataFrame({"c": [1.0, 2.0, 3.0], "l": [3.0, 1.0, 2.0], "name": list("abc"), "ok": [True, True, False]})
    fig = figures.pareto(pts, pts.iloc[:2], "c", "l", "name", "ok", "t", "c", "l")
    assert [t.name for t in fig.data] == ["meets the SLOs", "misses the SLOs", "Pareto front"]


@pytest.mark.parametrize("lo,hi,expected", [
    (1, 1e4, ["1", "10", "100", "1k", "10k"]),
    (0.06, 30, ["0.1", "1", "10"]),
    (0.3, 40, ["0.2", "0.5", "1", "2", "5", "10", "20", "50"]),
    (1e21, 1e25, ["1e21", "1e22", "1e23", "1e24", "1e25"]),
])
def test_log_axes_tick_once_per_value_with_readable_labels(lo, hi, expected):
    ticks, labels = figures.log_ticks([lo, hi])
    assert labels == expected and len(set(labels)) == len(labels)
    assert all(lo / 1.5 <= t <= hi * 1.5 for t in ticks)


def test_a_narrow_log_range_still_gets_ticks_and_never_the_digits_alone():
    ticks, labels = figures.log_ticks([2.1, 3.9])
    assert 2 <= len(labels) <= 9 and labels[0] in ("2", "1.5")
    fig = figures.lines(pd.DataFrame({"x": [1.0, 10.0, 100.0], "y": [0.07, 0.3, 12.0]}), "x", {"y": "y"}, "t", "x",
                        "s", log_x=True, log_y=True)
    assert list(fig.layout.yaxis.ticktext) == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"]
    assert fig.layout.yaxis.automargin and fig.layout.xaxis.automargin


def test_linear_axes_print_small_numbers_as_decimals():
    small = figures._axis("s", values=[0.01, 0.02])
    big = figures._axis("tokens", values=[1e3, 2e6])
    assert small["exponentformat"] == "none" and big["exponentformat"] == "SI"


def test_pareto_labels_point_inward_and_do_not_overprint():
    pts = pd.DataFrame({"c": [2.0, 6.0, 7.0], "l": [0.34, 0.14, 0.125], "name": list("abc"), "ok": [True] * 3})
    fig = figures.pareto(pts, pts, "c", "l", "name", "ok", "t", "c", "l")
    front = fig.data[-1]
    assert list(front.textposition) == ["top right", "top left", "bottom left"]
    assert front.cliponaxis is False


def test_crowded_category_labels_wrap_instead_of_slanting():
    df = pd.DataFrame({"layout": [f"dp{2 ** i} tp1 pp1 z1" for i in range(8)], "a": np.arange(8.0)})
    ax = figures.stacked_bar(df, "layout", ["a"], "t", "GB").layout.xaxis
    assert ax.ticktext[4] == "dp16 tp1<br>pp1 z1" and ax.tickangle == 0
    few = figures.stacked_bar(df.head(3), "layout", ["a"], "t", "GB").layout.xaxis
    assert few.ticktext is None
