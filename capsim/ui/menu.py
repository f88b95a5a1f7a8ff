"""The dashboard's menu: each page's title, address and one-line description, in menu order. Data only (no page
imports), so the overview can list the pages while the registry imports the overview."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    title: str
    url_path: str
    description: str


MENU = (
    Entry("Overview", "overview", "What capsim answers, and the accelerators it knows."),
    Entry("Training planner", "training",
          "Step time, memory, MFU, time and cost to train; a layout given or searched; the pipeline schedule."),
    Entry("Serving simulator", "serving",
          "A serving fleet under a workload: latency distributions, load sweep, KV cache and queue over time."),
    Entry("Capacity planner", "capacity",
          "SLOs and traffic in; the cheapest fleet out, with the Pareto front of cost against p99 TTFT."),
    Entry("Compression & precision", "whatif",
          "Quantization, pruning and distillation for serving; precision recipes and batch size for training."),
    Entry("Scaling study", "scaling",
          "Cost, latency and MFU from small to large: serving traffic, training GPU counts, model size."),
    Entry("Memory per GPU", "memory", "Memory per GPU of training layouts against capacity."),
    Entry("Calibration explorer", "calibration",
          "A calibration's measured samples against its fitted curves; two calibrations compared."),
)

__all__ = ["MENU", "Entry"]
