"""The dashboard's pages, in menu order: one module per page, each with a ``render()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from capsim.ui import calibration, capacity, memory, overview, scaling, serving, training, whatif


@dataclass(frozen=True)
class Page:
    title: str
    url_path: str
    render: Callable[[], None]
    description: str = ""


PAGES = (
    Page("Overview", "overview", overview.render, "What capsim answers, and the accelerators it knows."),
    Page("Training planner", "training", training.render,
         "Step time, memory, MFU, time and cost to train; a layout given or searched; the pipeline schedule."),
    Page("Serving simulator", "serving", serving.render,
         "A serving fleet under a workload: latency distributions, load sweep, KV cache and queue over time."),
    Page("Capacity planner", "capacity", capacity.render,
         "SLOs and traffic in; the cheapest fleet out, with the Pareto front of cost against p99 TTFT."),
    Page("Compression & precision", "whatif", whatif.render,
         "Quantization, pruning and distillation for serving; precision recipes and batch size for training."),
    Page("Scaling study", "scaling", scaling.render,
         "Cost, latency and MFU from small to large: serving traffic, training GPU counts, model size."),
    Page("Memory per GPU", "memory", memory.render, "Memory per GPU of training layouts against capacity."),
    Page("Calibration explorer", "calibration", calibration.render,
         "A calibration's measured samples against its fitted curves; two calibrations compared."),
)
