"""Shared type aliases."""

from __future__ import annotations

import numpy as np

Num = float | np.ndarray
