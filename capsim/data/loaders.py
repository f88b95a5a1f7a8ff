"""Loaders for request traces shipped under capsim/data (or any CSV with the same columns).

A trace has one row per request: ``num_prefill_tokens`` and ``num_decode_tokens`` (prompt and output lengths),
and optionally ``arrived_at`` (seconds from the start). Shipped traces (see capsim/data/README.md):
``azure-conv``, ``azure-code`` (Azure LLM inference traces 2023, as published with Splitwise and shipped by
Vidur), ``arxiv-summarization`` (lengths only, from Vidur) and the DistServe vLLM replays
``distserve-vllm-opt13b/vllm-<N>-<rate>.csv``.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from capsim.errors import SpecError, UnknownNameError
from capsim.inputs import MAX_COUNT, inside, numeric_column, read_csv

SHIPPED = {
    "azure-conv": "traces/splitwise_conv.csv.gz",
    "azure-code": "traces/splitwise_code.csv.gz",
    "arxiv-summarization": "traces/arxiv_summarization.csv.gz",
}
COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


def data_dir() -> Path:
    """The folder of the data shipped inside the package (capsim/data)."""
    return Path(str(resources.files("capsim.data")))


def data_file(name: str, field: str = "trace") -> Path:
    """A file under capsim/data by its relative name; ``..``, absolute paths and symlinks that leave the data
    folder are refused."""
    path = inside(data_dir(), name, field, SHIPPED)
    if not path.is_file():
        raise UnknownNameError(field, name, list(SHIPPED))
    return path


@cache
def _read(path: Path, field: str) -> pd.DataFrame:
    return read_csv(path, field, "trace CSV")


def load_trace(name_or_path: str | Path) -> pd.DataFrame:
    """A trace as a DataFrame with ``prompt_tokens``, ``output_tokens`` and, when the file has it,
    ``arrived_at`` (sorted by arrival). ``name_or_path``: a shipped name, a file under capsim/data, or a path.
    Every length must be a whole number of tokens >= 1 and every arrival time finite; a trace without rows, with
    missing columns or with text in a number column is refused, naming the row."""
    key = str(name_or_path)
    if key in SHIPPED:
        path = data_file(SHIPPED[key])
    elif Path(key).is_file():
        path = Path(key)
    else:
        path = data_file(key)
    df = _read(path, "trace")
    origin = key
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SpecError("trace", f"{origin} lacks the columns {missing}",
                        "a trace needs num_prefill_tokens and num_decode_tokens (and optionally arrived_at)")
    if df.empty:
        raise SpecError("trace", f"{origin} has a header but no rows", "give at least one request")
    lengths = {c: numeric_column(df, c, "trace", origin, integral=True, low=1, high=MAX_COUNT) for c in COLUMNS}
    out = pd.DataFrame({"prompt_tokens": lengths["num_prefill_tokens"].to_numpy(np.int64),
                        "output_tokens": lengths["num_decode_tokens"].to_numpy(np.int64)})
    if "arrived_at" in df.columns:
        t = numeric_column(df, "arrived_at", "trace", origin, low=-math.inf)
        out.insert(0, "arrived_at", t.to_numpy(float))
        out = out.sort_values("arrived_at", kind="stable").reset_index(drop=True)
    return out


__all__ = ["SHIPPED", "data_dir", "data_file", "load_trace"]
