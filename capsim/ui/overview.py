"""Landing page: what capsim answers, and the accelerators it knows (a chart of the catalog)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from capsim.specs.catalog import accelerators


def accelerator_table() -> pd.DataFrame:
    rows = []
    for a in accelerators().values():
        rows.append({"accelerator": a.name, "bf16 TFLOP/s": (a.peaks.bf16 or 0) / 1e12,
                     "memory GB": a.memory_bytes / 1e9, "HBM TB/s": a.memory_bw_bytes_per_s / 1e12,
                     "$/GPU-hour": a.price_usd_per_hour})
    return pd.DataFrame(rows)


def render() -> None:
    st.header("capsim")
    st.markdown(
        "Predict before you spend: training step time and cost, the memory of a layout, serving latency and the "
        "fleet that meets your SLOs, from one GPU to tens of thousands. Pick a page on the left.")
    table = accelerator_table()
    fig = px.scatter(table, x="HBM TB/s", y="bf16 TFLOP/s", size="memory GB", hover_name="accelerator",
                     title="Catalog accelerators: dense bf16 peak against memory bandwidth (size = memory)")
    st.plotly_chart(fig, width="stretch")
    st.dataframe(table, hide_index=True)
    st.download_button("Download CSV", table.to_csv(index=False), "accelerators.csv", "text/csv")
