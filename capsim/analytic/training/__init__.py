"""Training step time for data, tensor, pipeline, sequence, context and expert parallelism with ZeRO,
recomputation and overlap, vectorised over layouts (``step_time``)."""

from capsim.analytic.training import comms, stages
from capsim.analytic.training.framework import FRAMEWORKS, Framework, FrameworkName, get_framework
from capsim.analytic.training.result import BREAKDOWN, StepTime
from capsim.analytic.training.step import resolve_perf, step_time

__all__ = ["BREAKDOWN", "comms", "stages", "FRAMEWORKS", "Framework", "FrameworkName", "StepTime", "get_framework", "resolve_perf",
           "step_time"]
