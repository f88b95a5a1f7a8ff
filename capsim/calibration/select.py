"""Which calibration a prediction uses, loaded in one place for every face (CLI, dashboard, validation, API).

The pure layers (``analytic``, ``sim``, ``plan``) take a :class:`~capsim.perf.Perf` and never load one; callers
get it here. One rule for training and serving alike: the calibration named (a name, a file or an object), else
the accelerator's GPU-profile calibration where one ships (fitted from real operator and collective timings,
:mod:`capsim.calibration.profiles`), else its datasheet calibration.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from capsim.calibration.schema import Calibration, available, load_calibration
from capsim.perf import Perf
from capsim.specs.catalog import get_accelerator
from capsim.specs.hardware import Accelerator

CalibrationRef = str | Path | Calibration | Perf | None  # what a user may name; None: the default rule


def default_calibration(accelerator: Accelerator | str) -> str:
    """The calibration a prediction for ``accelerator`` uses when none is named."""
    name = get_accelerator(accelerator).name if isinstance(accelerator, str) else accelerator.name
    profile = f"{name}-profile"
    return profile if profile in available() else name


def perf_for(accelerator: Accelerator | str, calibration: CalibrationRef = None) -> Perf:
    """The device model of ``accelerator``: from the calibration named, else by :func:`default_calibration`."""
    if isinstance(calibration, Perf):
        return calibration
    if isinstance(calibration, Calibration):
        return calibration.perf()
    return load_calibration(calibration if calibration is not None else default_calibration(accelerator)).perf()


def perfs_for(accelerators: Iterable[Accelerator | str], calibration: CalibrationRef = None) -> dict[str, Perf]:
    """:func:`perf_for` of each accelerator, by accelerator name (what the serving planner takes); one named
    calibration is used for every accelerator, as asked."""
    accs = [get_accelerator(a) if isinstance(a, str) else a for a in accelerators]
    shared = perf_for(accs[0], calibration) if calibration is not None and accs else None
    return {a.name: shared if shared is not None else perf_for(a) for a in accs}


__all__ = ["CalibrationRef", "default_calibration", "perf_for", "perfs_for"]
