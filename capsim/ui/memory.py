"""Page: memory per GPU of the training layouts a GPU count allows, against the accelerator's capacity."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from capsim.analytic.training import DEFAULT_FRAMEWORK, release_memory
from capsim.errors import SpecError
from capsim.specs.catalog import accelerators, get_accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Recompute, TrainPlan
from capsim.specs.precision import PRESET_NAMES
from capsim.ui.common import checked, downloads, framework_input, model_input, show_table
from capsim.ui.figures import stacked_bar
from capsim.ui.state import number, select

PARTS = ["weights", "gradients", "optimizer", "activations", "temporary"]
MAX_WIDTH = 8  # tp and pp tried: powers of two up to this


def layouts_of(gpus: int, global_batch: int, micro_batch: int, zero: int) -> list[tuple[int, int, int, int]]:
    """(dp, tp, pp, zero) for tp and pp powers of two up to MAX_WIDTH that divide ``gpus`` and whose dp splits the
    global batch into micro-batches (ZeRO only where dp > 1)."""
    out = []
    for tp in (1 << i for i in range(MAX_WIDTH.bit_length())):
        for pp in (1 << i for i in range(MAX_WIDTH.bit_length())):
            if gpus % (tp * pp) == 0:
                dp = gpus // (tp * pp)
                if global_batch % (dp * micro_batch) == 0:
                    out.append((dp, tp, pp, zero if dp > 1 else 0))
    return out


@st.cache_data(show_spinner=False)
def memory_table(model: ModelSpec, acc_name: str, layouts: tuple[tuple[int, int, int, int], ...], recompute: str,
                 micro_batch: int, global_batch: int, seq_len: int, precision: str,
                 framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """Memory per GPU of each (dp, tp, pp, zero) layout as ``framework`` runs it (``release_memory``: the
    memory the training planner and `capsim train` report; pure, cacheable)."""
    acc = get_accelerator(acc_name)
    rows = []
    for dp, tp, pp, zero in layouts:
        plan = TrainPlan(dp=dp, tp=tp, pp=pp, zero_stage=zero, recompute=recompute, micro_batch=micro_batch,
                         global_batch=global_batch, seq_len=seq_len, precision=precision)
        try:
            plan.check(model)
        except SpecError:
            continue  # tp that does not divide the heads, pp that does not divide the layers
        mem = release_memory(model, plan, acc, framework).to_dict()
        rows.append({"layout": f"dp{dp} tp{tp} pp{pp} z{zero}", "dp": dp, "tp": tp, "pp": pp, "zero_stage": zero,
                     **{f"{p}_gb": mem[f"{p}_bytes"] / 1e9 for p in PARTS}, "total_gb": mem["total_bytes"] / 1e9,
                     "fits": mem["fits"]})
    return pd.DataFrame(rows)


def render() -> None:
    st.header("Memory per GPU")
    st.caption("Weights, gradients, optimizer states, activations and temporaries per GPU for every layout of "
               "tp and pp (powers of two up to 8) on the GPU count, against the accelerator's memory; layouts the model "
               "cannot run (tp not dividing the heads, pp not dividing the layers) are left out.")
    c1, c2, c3 = st.columns(3)
    with c1:
        model = model_input(default="llama-2-13b")
    acc = select("Accelerator", list(accelerators()), "acc", "A100-SXM4-80GB", where=c2)
    precision = select("Precision", list(PRESET_NAMES), "precision", "bf16", where=c3)
    framework = framework_input(where=c3)
    c4, c5, c6, c7, c8, c9 = st.columns(6)
    gpus = number("GPUs", "gpus", 8, 1, 1 << 20, where=c4)
    seq_len = number("Sequence length", "seq", 4096, 1, 1 << 21, where=c5, step=128)
    mb = number("Micro-batch", "mb", 1, 1, 1024, where=c6)
    gb = number("Global batch", "gb", 256, 1, 1 << 24, where=c7)
    recompute = select("Recompute", [r.value for r in Recompute], "recompute", "selective", where=c8)
    zero = select("ZeRO stage (dp > 1)", [0, 1, 2, 3], "zero", 1, where=c9)
    checked(lambda: TrainPlan(seq_len=seq_len, global_batch=gb, micro_batch=mb).check(model))
    layouts = tuple(layouts_of(gpus, gb, mb, zero))
    table = checked(memory_table, model, acc, layouts, recompute, mb, gb, seq_len, precision, framework)
    if table.empty:
        st.error("No layout of tp and pp (powers of two up to 8) divides the GPU count, the global batch into "
                 "micro-batches, and the model's heads and layers; change the GPU count or the batch.")
        return
    fig = stacked_bar(table, "layout", [f"{p}_gb" for p in PARTS], f"{model.name} on {gpus} x {acc}", "GB per GPU",
                      get_accelerator(acc).memory_bytes / 1e9, "capacity", labels={f"{p}_gb": p for p in PARTS})
    st.plotly_chart(fig, width="stretch")
    show_table(table)
    downloads("memory", table, {"model": model.name, "accelerator": acc, "gpus": gpus, "seq_len": seq_len,
                                "micro_batch": mb, "global_batch": gb, "recompute": recompute,
                                "precision": precision, "framework": framework,
                                "layouts": table.to_dict("records")})
