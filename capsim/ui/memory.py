"""Page: memory per GPU of a training layout, against the accelerator's capacity."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from capsim.analytic.memory import training_memory
from capsim.errors import SpecError
from capsim.specs.catalog import accelerators, get_accelerator, get_model, models
from capsim.specs.plans import TrainPlan
from capsim.ui.figures import stacked_bar
from capsim.ui.state import query_default, sync_query

PARTS = ["weights", "gradients", "optimizer", "activations", "temporary"]


@st.cache_data(show_spinner=False)
def memory_table(model_name: str, acc_name: str, layouts: tuple[tuple[int, int, int, int, str, int, int], ...],
                 seq_len: int, precision: str) -> pd.DataFrame:
    """Memory per GPU of each (dp, tp, pp, zero, recompute, micro_batch, global_batch) layout (pure, cacheable)."""
    model, acc = get_model(model_name), get_accelerator(acc_name)
    rows = []
    for dp, tp, pp, zero, recompute, mb, gbatch in layouts:
        plan = TrainPlan(dp=dp, tp=tp, pp=pp, zero_stage=zero, recompute=recompute, micro_batch=mb,
                         global_batch=gbatch, seq_len=seq_len, precision=precision).check(model)
        mem = training_memory(model, plan, accelerator=acc).to_dict()
        rows.append({"layout": f"dp{dp} tp{tp} pp{pp} z{zero} {recompute}",
                     **{p: mem[f"{p}_bytes"] / 1e9 for p in PARTS}, "total": mem["total_bytes"] / 1e9,
                     "fits": mem["fits"]})
    return pd.DataFrame(rows)


def render() -> None:
    st.header("Memory per GPU")
    model_names, acc_names = list(models()), list(accelerators())
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox("Model", model_names, index=model_names.index(query_default("model", "llama-2-13b")),
                         key="model")
    acc = c2.selectbox("Accelerator", acc_names, index=acc_names.index(query_default("acc", "A100-SXM4-80GB")),
                       key="acc")
    precision = c3.selectbox("Precision", ["bf16", "fp16", "fp32", "fp8"], key="precision")
    c4, c5, c6, c7 = st.columns(4)
    gpus = c4.number_input("GPUs", 1, 4096, int(query_default("gpus", "8")), key="gpus")
    seq_len = c5.number_input("Sequence length", 128, 131072, int(query_default("seq", "4096")), step=128, key="seq")
    mb = c6.number_input("Micro-batch", 1, 64, 1, key="mb")
    recompute = c7.selectbox("Recompute", ["none", "selective", "full"], index=1, key="recompute")
    sync_query(model=model, acc=acc, gpus=gpus, seq=seq_len)
    layouts = []
    tp = 1
    while tp <= min(gpus, 8):
        pp = 1
        while tp * pp <= gpus and pp <= 8:
            if gpus % (tp * pp) == 0:
                dp = gpus // (tp * pp)
                layouts.append((dp, tp, pp, 1 if dp > 1 else 0, recompute, int(mb), dp * int(mb) * pp * 4))
            pp *= 2
        tp *= 2
    try:
        table = memory_table(model, acc, tuple(layouts), int(seq_len), precision)
    except SpecError as err:
        st.error(f"{err}")
        return
    if table.empty:
        st.error("No layout of tp and pp (powers of two up to 8) divides the GPU count; choose another count.")
        return
    fig = stacked_bar(table, "layout", PARTS, f"{model} on {gpus} x {acc}", "GB per GPU",
                      get_accelerator(acc).memory_bytes / 1e9, "capacity")
    st.plotly_chart(fig, width="stretch")
    st.dataframe(table, hide_index=True)
    st.download_button("Download CSV", table.to_csv(index=False), "memory.csv", "text/csv")
