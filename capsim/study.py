"""Public entry point for scripted studies: ``capsim.study.sweep(fn, grid)``."""

from capsim.plan.study import Backend, expand, sweep

__all__ = ["Backend", "expand", "sweep"]
