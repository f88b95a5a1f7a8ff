"""The device model: op and collective times from a calibration."""

from capsim.perf.model import Perf, curve_value, require_perf
from capsim.perf.params import (
                                AttentionParams,
                                Collective,
                                CommParams,
                                Curve,
                                DeviceParams,
                                GemmParams,
                                Link,
                                MemoryParams,
                                Tier,
)

__all__ = ["AttentionParams", "Collective", "CommParams", "Curve", "DeviceParams", "GemmParams", "Link",
           "MemoryParams", "Perf", "Tier", "curve_value", "require_perf"]
