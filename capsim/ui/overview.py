"""Landing page: what capsim answers, the pages, and the accelerators it knows (a chart of the catalog)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from capsim.specs.catalog import accelerators
from capsim.ui import figures
from capsim.ui.common import downloads, show_table
from capsim.ui.menu import MENU
from capsim.ui.state import select

FORMATS = ("bf16", "fp8", "fp32", "tf32", "int8")


def accelerator_table(fmt: str = "bf16") -> pd.DataFrame:
    """The catalog's accelerators: dense peak in ``fmt`` (TFLOP/s; NaN where the datasheet has none), memory,
    bandwidth, price."""
    rows = []
    for a in accelerators().values():
        peak = getattr(a.peaks, fmt)
        rows.append({"accelerator": a.name, f"{fmt} TFLOP/s": (peak or float("nan")) / 1e12,
                     "memory GB": a.memory_bytes / 1e9, "HBM TB/s": a.memory_bw_bytes_per_s / 1e12,
                     "$/GPU-hour": a.price_usd_per_hour, "GPUs per node": a.gpus_per_node})
    return pd.DataFrame(rows)


def render() -> None:
    st.header("capsim")
    st.markdown(
        "Predict before you spend: training step time and cost, the memory of a layout, serving latency and the "
        "fleet that meets your SLOs, from one GPU to tens of thousands. Every view is kept in the page's link, so "
        "it can be shared; every result can be downloaded as CSV or JSON.")
    st.markdown("\n".join(f"- **{p.title}**: {p.description}" for p in MENU[1:]))
    fmt = select("Peak rate of", list(FORMATS), "fmt", "bf16", radio=True)
    table = accelerator_table(fmt)
    shown = table.dropna(subset=[f"{fmt} TFLOP/s"])
    st.plotly_chart(figures.bubbles(shown, "HBM TB/s", f"{fmt} TFLOP/s", "memory GB", "accelerator",
                                    f"Catalog accelerators: dense {fmt} peak against memory bandwidth "
                                    "(area = memory; log axes)", log=True), width="stretch")
    if len(shown) < len(table):
        st.caption(f"Without a {fmt} rate in their datasheet: "
                   + ", ".join(table.loc[table[f'{fmt} TFLOP/s'].isna(), 'accelerator']))
    show_table(table)
    downloads("accelerators", table, key="acc", what="accelerators")
