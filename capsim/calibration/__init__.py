"""Calibration files: schema, loading, writing, fitting, and datasheet-derived calibrations."""

from capsim.calibration.schema import (
    Calibration,
    available,
    calibrations_dir,
    load_calibration,
    write_calibration,
)
from capsim.calibration.select import calibration_name, default_calibration, is_rule, perf_for, perfs_for

__all__ = ["Calibration", "available", "calibration_name", "calibrations_dir", "default_calibration", "is_rule",
           "load_calibration", "perf_for", "perfs_for", "write_calibration"]
