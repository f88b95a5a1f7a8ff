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
PROFILE, DATASHEET = "profile", "datasheet"  # rules by name, per accelerator: the default rule; its datasheet
RULES = (PROFILE, DATASHEET)


def is_rule(calibration: CalibrationRef) -> bool:
    """Whether ``calibration`` names a per-accelerator rule rather than one calibration."""
    return isinstance(calibration, str) and calibration.lower() in RULES


def default_calibration(accelerator: Accelerator | str) -> str:
    """The calibration a prediction for ``accelerator`` uses when none is named."""
    name = get_accelerator(accelerator).name if isinstance(accelerator, str) else accelerator.name
    profile = f"{name}-profile"
    return profile if profile in available() else name


def calibration_name(accelerator: Accelerator | str, calibration: str | None) -> str:
    """The calibration a name resolves to for ``accelerator``: ``profile`` (or none) the default rule,
    ``datasheet`` the accelerator's datasheet calibration (named as the accelerator), any other name itself."""
    if calibration is None or calibration.lower() == PROFILE:
        return default_calibration(accelerator)
    if calibration.lower() == DATASHEET:
        return get_accelerator(accelerator).name if isinstance(accelerator, str) else accelerator.name
    return calibration


def perf_for(accelerator: Accelerator | str, calibration: CalibrationRef = None) -> Perf:
    """The device model of ``accelerator``: from the calibration named, else by :func:`default_calibration`."""
    if isinstance(calibration, Perf):
        return calibration
    if isinstance(calibration, Calibration):
        return calibration.perf()
    if isinstance(calibration, Path):
        return load_calibration(calibration).perf()
    return load_calibration(calibration_name(accelerator, calibration)).perf()


def perfs_for(accelerators: Iterable[Accelerator | str], calibration: CalibrationRef = None) -> dict[str, Perf]:
    """:func:`perf_for` of each accelerator, by accelerator name (what the serving planner takes); one named
    calibration is used for every accelerator, as asked (a rule, ``profile`` or ``datasheet``, per accelerator)."""
    accs = [get_accelerator(a) if isinstance(a, str) else a for a in accelerators]
    shared = perf_for(accs[0], calibration) if calibration is not None and not is_rule(calibration) and accs else None
    return {a.name: shared if shared is not None else perf_for(a, calibration) for a in accs}


__all__ = ["DATASHEET", "PROFILE", "RULES", "CalibrationRef", "calibration_name", "default_calibration", "is_rule",
           "perf_for", "perfs_for"]
