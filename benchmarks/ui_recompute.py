"""Dashboard recompute times: one input changed to a value the page has not seen (so what depends on it is not
cached), the page's script rerun server-side (Streamlit's AppTest: inputs, model calls, figures and tables
serialised; the browser's drawing is not counted).

Analytic pages have a 300 ms target; DES pages (serving simulator, capacity planner, serving scaling) are listed
for reference (they show progress and cache their runs). Median of repeats on one core.

    PYTHONPATH=$PWD python benchmarks/ui_recompute.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks._common import median_time, pin_one_core, report  # noqa: E402

Change = Callable[[AppTest, int], None]


def _page(module: str, **query: str) -> AppTest:
    at = AppTest.from_string(f"from capsim.ui.{module} import render\nrender()", default_timeout=300)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def rerun_s(module: str, change: Change, repeats: int = 5, **query: str) -> float:
    """Median seconds of a rerun after ``change`` sets its i-th (new) value."""
    st.cache_data.clear()
    at = _page(module, **query)
    assert not at.exception, at.exception
    state = {"i": 0}

    def once() -> None:
        change(at, state["i"])
        state["i"] += 1
        at.run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])

    return median_time(once, repeats=repeats, warmup=1)[0]


def number(key: str, *values: float) -> Change:
    return lambda at, i: at.number_input(key=key).set_value(values[i % len(values)])


def choose(key: str, *values: str, kind: str = "selectbox") -> Change:
    return lambda at, i: getattr(at, kind)(key=key).set_value(values[i % len(values)])


def texts(key: str, *values: str) -> Change:
    return lambda at, i: at.text_input(key=key).input(values[i % len(values)])


MODELS = ("llama-2-13b", "llama-3-70b", "mistral-7b", "llama-3-8b", "mixtral-8x7b", "llama-2-7b", "llama-2-70b")


ANALYTIC = {
    "overview (peak format)": ("overview", choose("fmt", "fp8", "fp32", "tf32", "int8", "bf16", kind="radio"), {}),
    "memory (sequence length)": ("memory", number("seq", 1024, 2048, 3072, 5120, 6144, 7168), {}),
    "training planner, manual layout (sequence length)": ("training", number("seq", 2048, 3072, 5120, 6144, 1024, 7168),
                                                      {"mode": "manual", "gpus": "64", "pp": "4", "tp": "4", "sp": "true",
                                                       "distopt": "true"}),
    "training planner, auto search on 64 GPUs (sequence length)": (
        "training", number("seq", 2048, 3072, 5120, 6144, 1024, 7168), {}),
    "training planner, auto search on 64 GPUs (model)": ("training", choose("model", *MODELS), {}),
    "what-if quantization (rate)": ("whatif", number("rate", 11.0, 12.0, 13.0, 14.0, 15.0, 16.0),
                                    {"study": "quantization"}),
    "what-if sparsity (rate)": ("whatif", number("rate", 11.0, 12.0, 13.0, 14.0, 15.0, 16.0), {"study": "sparsity"}),
    "what-if training precision (sequence length)": ("whatif", number("seq", 1024, 2048, 3072, 5120, 6144, 7168),
                                                     {"study": "training precision"}),
    "what-if distillation (tokens)": ("whatif", number("tokens", 2e11, 3e11, 4e11, 5e11, 6e11, 7e11),
                                      {"study": "distillation"}),
    "what-if batch size (tokens)": ("whatif", number("tokens", 2e12, 3e12, 4e12, 5e12, 6e12, 7e12),
                                    {"study": "batch size"}),
    "scaling model size (budgets)": ("scaling", texts("flops", "1e21,1e23", "1e20,1e22", "1e21,1e22,1e24",
                                                      "1e19,1e25", "1e20,1e23", "1e22,1e24"),
                                     {"study": "model size"}),
    "scaling training, 6 GPU counts (tokens)": ("scaling", number("tokens", 2e12, 3e12, 4e12, 5e12, 6e12, 7e12),
                                                {"study": "training"}),
    "calibration explorer (compare with)": ("calibration", choose("compare", "H100-SXM5-80GB", "L4", "B200", "T4",
                                                                  "MI300X", "H200-SXM-141GB"), {}),
    "calibration explorer (calibration: a GPU profile's raw samples)": (
        "calibration", lambda at, i: (st.cache_data.clear(), at.selectbox(key="cal").set_value(
            ("H100-SXM5-80GB-profile", "A100-SXM4-80GB-profile")[i % 2])), {}),
}
DES = {
    "serving simulator, 300 requests x 7 loads (replicas)": ("serving", number("replicas", 2, 3, 4, 5), {}),
    "capacity planner, 4 accelerators (rate)": ("capacity", number("rate", 11.0, 12.0, 13.0, 14.0), {}),
    "scaling serving, 4 rates (TTFT target)": ("scaling", number("ttft", 1.1, 1.2, 1.3, 1.4), {}),
}


def main() -> None:
    pin_one_core()
    worst = 0.0
    for name, (module, change, query) in ANALYTIC.items():
        t = rerun_s(module, change, **query)
        report(f"analytic {name} rerun ms", round(t * 1e3))
        if not name.startswith("calibration explorer (calibration"):
            worst = max(worst, t)
    for name, (module, change, query) in DES.items():
        report(f"des {name} rerun ms", round(rerun_s(module, change, repeats=3, **query) * 1e3))
    report("worst analytic page rerun ms (calibration switch excluded: it reads raw profiles)", round(worst * 1e3))


if __name__ == "__main__":
    main()
