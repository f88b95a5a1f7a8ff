"""The validation harness: suites that compare capsim's predictions with measured and published numbers."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from capsim.validation.harness import Report, Row


class Suite(StrEnum):
    PARAMS = "params"
    MEMORY = "memory"
    GPU_PROFILES = "gpu-profiles"
    TRAINING = "training"
    PLANNER = "planner"
    SERVING = "serving"
    LOCAL = "local"


def _suites() -> dict[Suite, Callable[..., Report]]:
    from capsim.validation import gpu_profiles, local, planner, serving_suite, static, training
    return {Suite.PARAMS: static.params_suite, Suite.MEMORY: static.memory_suite,
            Suite.GPU_PROFILES: gpu_profiles.gpu_profiles_suite, Suite.TRAINING: training.training_suite,
            Suite.PLANNER: planner.planner_suite, Suite.SERVING: serving_suite.serving_suite, Suite.LOCAL: local.local_suite}


def run_suite(suite: Suite | str, file: str | Path | None = None, calibration: str | None = None) -> Report:
    """Run one suite on its shipped data, or on ``file`` (a CSV with the same columns)."""
    fn = _suites()[Suite(suite)]
    return fn(file) if calibration is None else fn(file, calibration=calibration)


__all__ = ["Report", "Row", "Suite", "run_suite"]
