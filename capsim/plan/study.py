"""Scripted what-if studies: ``sweep(fn, grid)`` evaluates a function over a grid and returns a DataFrame.

Runs serially, on a local process pool (default), or on Ray (``backend="ray"``, the optional ``capsim[ray]``
extra) for sweeps that outgrow one machine. ``fn`` must be importable by the workers (a module-level function).
A point whose spec cannot work (SpecError) becomes a row with its ``error``; other exceptions propagate.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from enum import StrEnum
from typing import Any

import pandas as pd

from capsim.errors import SpecError


class Backend(StrEnum):
    SERIAL = "serial"
    PROCESS = "process"
    RAY = "ray"


def expand(grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A dict of lists becomes its cartesian product (in key order); a list of dicts is taken as given."""
    if isinstance(grid, Mapping):
        for key, values in grid.items():
            if isinstance(values, str) or not isinstance(values, Iterable):
                raise SpecError(f"grid.{key}", f"must be a list of values, got {values!r}", f"use [{values!r}]")
        keys = list(grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(list(grid[k]) for k in keys))]
    points = [dict(p) for p in grid]
    for i, p in enumerate(points):
        if not isinstance(p, Mapping):
            raise SpecError(f"grid[{i}]", "each point must be a dict of keyword arguments")
    return points


def _row(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    if isinstance(result, Mapping):
        return dict(result)
    return {"value": result}


def _call(fn: Callable[..., Any], point: dict[str, Any]) -> dict[str, Any]:
    try:
        return {**point, **_row(fn(**point)), "error": None}
    except SpecError as err:
        return {**point, "error": str(err)}


def _run_ray(fn: Callable[..., Any], points: list[dict[str, Any]], address: str | None) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise SpecError("backend", "Ray is not installed", "pip install 'capsim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(_call)
        fn_ref = ray.put(fn)
        return ray.get([remote.remote(fn_ref, p) for p in points])
    finally:
        if started:
            ray.shutdown()


def sweep(fn: Callable[..., Any], grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
          backend: Backend | str = Backend.PROCESS, workers: int | None = None,
          ray_address: str | None = None) -> pd.DataFrame:
    """Evaluate ``fn(**point)`` for every point of ``grid``; one row per point, in grid order.

    Result dicts (or dataclasses with ``to_dict``) become columns beside the point's parameters; an
    ``error`` column holds the message of points whose spec was invalid.
    """
    points = expand(grid)
    backend = Backend(backend)
    if backend is Backend.SERIAL or len(points) <= 1:
        rows = [_call(fn, p) for p in points]
    elif backend is Backend.PROCESS:
        workers = workers or min(len(points), os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_call, [fn] * len(points), points, chunksize=max(1, len(points) // (4 * workers))))
    else:
        rows = _run_ray(fn, points, ray_address)
    return pd.DataFrame(rows)
