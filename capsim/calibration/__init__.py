"""Calibration files: schema, loading, writing, fitting, and datasheet-derived calibrations."""

from capsim.calibration.schema import (
    Calibration,
    available,
    calibrations_dir,
    load_calibration,
    write_calibration,
)

__all__ = ["Calibration", "available", "calibrations_dir", "load_calibration", "write_calibration"]
