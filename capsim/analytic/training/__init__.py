"""Training step time for data, tensor, pipeline, sequence, context and expert parallelism with ZeRO,
recomputation and overlap, vectorised over layouts (``step_time``)."""

from capsim.analytic.training import comms, stages
from capsim.analytic.training.framework import (
    DEFAULT_FRAMEWORK,
    FRAMEWORKS,
    RELEASES,
    Framework,
    FrameworkFamily,
    FrameworkName,
    Release,
    get_framework,
    get_release,
    release_for,
)
from capsim.analytic.training.result import BREAKDOWN, StepTime
from capsim.analytic.training.step import (
    as_released,
    release_memory,
    release_refusal,
    release_sp,
    resolve_perf,
    step_time,
)

__all__ = ["as_released", "release_memory", "release_refusal", "release_sp", "BREAKDOWN", "DEFAULT_FRAMEWORK", "FRAMEWORKS", "RELEASES", "Framework", "FrameworkFamily", "FrameworkName", "Release",
           "StepTime", "comms", "get_framework", "get_release", "release_for", "resolve_perf", "stages", "step_time"]
