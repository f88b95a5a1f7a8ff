"""Page: the calibration explorer. A shipped or uploaded calibration's measured samples against its fitted
curves (GEMM efficiency against shape, memory bandwidth by category, collective alpha-beta), and two
calibrations compared."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from capsim.calibration import Calibration, available, load_calibration
from capsim.errors import SpecError
from capsim.ui import calibration_data as cd
from capsim.ui import figures
from capsim.ui.common import checked, downloads, json_object
from capsim.ui.state import number, select

SHIPPED, UPLOAD = "shipped", "upload"
NONE = "none"
DRAW_PER_GROUP = 150  # markers drawn per curve (all samples are in the downloads)
MAX_SHAPES = 8  # more GEMM shapes than this are drawn as sample-by-sample pairs, not curves along m


def _parse(text: str) -> Calibration:
    data = json_object(text, "calibration file",
                       "upload a file written by `capsim calibrate` or shipped under capsim/calibrations/")
    try:
        return Calibration.from_dict(data, "calibration file")
    except (KeyError, TypeError) as err:
        raise SpecError("calibration file", f"misses or mistypes a field ({err})",
                        "upload a file written by `capsim calibrate`") from None


@st.cache_data(show_spinner=False, max_entries=16)
def frames(name: str, text: str | None, fallback_group: int) -> dict[str, Any]:
    """Samples with the fit's predictions, and the fitted curves (pure: ``name`` or the file ``text``)."""
    cal = _parse(text) if text is not None else load_calibration(name)
    perf = cal.perf()
    raw = cd.samples(cal)
    gemm = cd.gemm_points(perf, raw["gemm"])
    mem = cd.memory_points(perf, raw["memory"])
    comm = cd.comm_points(perf, raw["comm"])
    cats = sorted(set(cd.memory_categories(perf)) | set(mem["category"]))
    links = cd.comm_links(perf, fallback_group)
    if len(comm):
        links = pd.concat([links, comm[["tier", "collective", "group"]].drop_duplicates()]).drop_duplicates()
    return {"cal": cal, "gemm": gemm, "gemm_curves": cd.gemm_curves(perf, gemm), "memory": mem,
            "memory_curves": cd.memory_curves(perf, cats, *_span(mem["bytes"])), "comm": comm,
            "comm_curves": cd.comm_curves(perf, links, *_span(comm["bytes"])),
            "square": cd.square_gemm_curve(perf, cal.name), "summary": cd.summary(cal)}


def _span(sizes: pd.Series, low: float = 1e3, high: float = 1e10) -> tuple[float, float]:
    """The curves' byte range: the default decades, widened to cover every sample."""
    if not len(sizes):
        return low, high
    return min(low, float(sizes.min())), max(high, float(sizes.max()))


def _source() -> tuple[str, str | None]:
    c = st.columns([1, 2, 1])
    src = select("Calibration from", [SHIPPED, UPLOAD], "src", SHIPPED, where=c[0], radio=True)
    names = list(available())
    if src == SHIPPED:
        default = "A100-SXM4-80GB-profile" if "A100-SXM4-80GB-profile" in names else names[0]
        return select("Calibration", names, "cal", default, where=c[1]), None
    up = c[1].file_uploader("Calibration JSON", type=["json"], key="cal_file")
    if up is None:
        st.info("Upload a calibration file (capsim.calibration/1 JSON); uploads are not kept in the page's link.")
        st.stop()
    return up.name, up.getvalue().decode("utf-8", errors="replace")


def render() -> None:
    st.header("Calibration explorer")
    st.caption("What a calibration measured and what its fit predicts: GEMM efficiency against shape, achieved "
               "memory bandwidth by op category, collective time against message size (alpha-beta).")
    name, text = _source()
    group = number("Group size for collectives stated for any group", "group", 8, 2, 4096)
    f = checked(frames, name, text, group)
    cal = f["cal"]
    with st.expander(f"{cal.name}: {cal.kind} calibration of {cal.fitted.device}", expanded=False):
        st.write(cal.provenance or "no provenance recorded")
    if f["gemm"].empty and f["memory"].empty and f["comm"].empty:
        st.info("This calibration keeps no measured samples (datasheet calibrations state peaks and efficiencies); "
                "its fitted curves are shown.")
    _gemm(f)
    _memory(f)
    _comm(f)
    _compare(f, group)


def _subset(df: pd.DataFrame, label: str, key: str) -> pd.DataFrame:
    subsets = sorted(df["subset"].astype(str).unique())
    if len(subsets) <= 1:
        return df
    pick = select(label, subsets, key, subsets[0])
    return df[df["subset"].astype(str) == pick]


def _gemm(f: dict[str, Any]) -> None:
    st.subheader("GEMM efficiency against shape")
    gemm = f["gemm"]
    if gemm.empty:
        st.plotly_chart(figures.lines(f["square"], "size", {"efficiency": "fitted"},
                                      "Fitted GEMM efficiency, square m = n = k", "m = n = k", "fraction of peak",
                                      log_x=True), width="stretch")
        return
    part = _subset(gemm, "Samples of", "gemm_subset")
    curves = f["gemm_curves"][f["gemm_curves"]["label"].isin(part["label"].unique())]
    if part["label"].nunique() <= MAX_SHAPES:  # a few shapes swept along m: curves
        st.plotly_chart(_gemm_fig(part, curves), width="stretch")
    else:  # many irregular shapes: each sample beside its prediction, by op, against its FLOPs
        st.plotly_chart(figures.measured_and_predicted(part, "flops", "measured_eff", "predicted_eff", "op",
                                                       "Measured (filled) and fitted (open) GEMM efficiency",
                                                       "FLOPs (2 m n k)", "fraction of peak"), width="stretch")
    st.plotly_chart(figures.parity(cd.thin(gemm, DRAW_PER_GROUP * 2, "subset", "time_s"), "time_s", "predicted_s",
                                   "subset", "GEMM time, every subset: predicted against measured", "s"),
                    width="stretch")
    downloads("gemm-samples", gemm, None, key="gemm", what="GEMM samples")


def _gemm_fig(part: pd.DataFrame, curves: pd.DataFrame) -> Any:
    measured = cd.thin(part, DRAW_PER_GROUP, "label", "m").rename(columns={"measured_eff": "efficiency"})
    return figures.measured_vs_fitted(measured, curves, "m", "efficiency", "label",
                                      "Measured (markers) and fitted (lines) GEMM efficiency", "m (tokens)",
                                      "fraction of peak")


def _memory(f: dict[str, Any]) -> None:
    st.subheader("Memory bandwidth by category")
    mem = f["memory"]
    measured = cd.thin(_subset(mem, "Samples of", "mem_subset"), DRAW_PER_GROUP, "category", "bytes") \
        if len(mem) else mem
    measured = measured.assign(gb_per_s=measured["measured_bw"] / 1e9)
    curves = f["memory_curves"].assign(gb_per_s=f["memory_curves"]["bandwidth"] / 1e9)
    fig = figures.measured_vs_fitted(measured, curves, "bytes", "gb_per_s", "category",
                                     "Achieved bandwidth against bytes moved", "bytes moved", "GB/s", log_y=True)
    st.plotly_chart(fig, width="stretch")
    if len(mem):
        downloads("memory-samples", mem, None, key="mem", what="memory samples")


def _comm(f: dict[str, Any]) -> None:
    st.subheader("Collectives: alpha-beta")
    curves, comm = f["comm_curves"], f["comm"]
    tiers = sorted(curves["tier"].unique())
    tier = select("Link tier", tiers, "tier", "intra" if "intra" in tiers else tiers[0])
    measured = cd.thin(comm[comm["tier"] == tier], DRAW_PER_GROUP, "label", "bytes") if len(comm) else comm
    fig = figures.measured_vs_fitted(measured, curves[curves["tier"] == tier], "bytes", "time_s", "label",
                                     f"Collective time against buffer size ({tier}-node)", "buffer bytes", "seconds",
                                     log_y=True)
    st.plotly_chart(fig, width="stretch")
    if len(comm):
        downloads("comm-samples", comm, None, key="comm", what="collective samples")


def _compare(f: dict[str, Any], group: int) -> None:
    st.subheader("Compare with another calibration")
    names = [n for n in available() if n != f["cal"].name]
    device = str(f["cal"].fitted.device)
    default = device if device in names else NONE
    other = select("Compare with", [NONE, *names], "compare", default)
    if other == NONE:
        return
    g = checked(frames, other, None, group)
    square = pd.concat([f["square"], g["square"]], ignore_index=True)
    mem = pd.concat([f["memory_curves"].assign(calibration=f["cal"].name),
                     g["memory_curves"].assign(calibration=other)], ignore_index=True)
    big = mem[mem["bytes"] == mem["bytes"].max()].assign(gb_per_s=lambda d: d["bandwidth"] / 1e9)
    c = st.columns(2)
    c[0].plotly_chart(figures.measured_vs_fitted(square.iloc[:0], square, "size", "efficiency", "calibration",
                                                 "Fitted GEMM efficiency, square m = n = k", "m = n = k",
                                                 "fraction of peak"), width="stretch")
    c[1].plotly_chart(figures.grouped_bar(big, "category", "gb_per_s", "calibration",
                                          f"Fitted memory bandwidth by category ({big['bytes'].max() / 1e9:.0f} GB "
                                          "moved)", "GB/s"),
                      width="stretch")
    ar = pd.concat([f["comm_curves"].assign(calibration=f["cal"].name), g["comm_curves"].assign(calibration=other)])
    ar = ar[(ar["collective"] == "all_reduce") & (ar["tier"] == "intra") & (ar["group"] == group)]
    if len(ar):
        st.plotly_chart(figures.measured_vs_fitted(ar.iloc[:0], ar, "bytes", "time_s", "calibration",
                                                   f"All-reduce over {group} GPUs in a node", "buffer bytes",
                                                   "seconds", log_y=True), width="stretch")
    else:
        st.info(f"Neither calibration states an intra-node all-reduce over {group} GPUs; pick another group size.")
    table = pd.DataFrame([f["summary"], g["summary"]]).set_index("name").T.reset_index(names="parameter")
    table = table.astype(str)
    st.dataframe(table, hide_index=True)
    downloads("calibration-compare", table, {"a": f["summary"], "b": g["summary"]}, key="compare",
              what="comparison")


__all__ = ["frames", "render"]
