"""Loaders for request traces shipped under capsim/data (or any CSV with the same columns).

A trace has one row per request: ``num_prefill_tokens`` and ``num_decode_tokens`` (prompt and output lengths),
and optionally ``arrived_at`` (seconds from the start). Shipped traces (see capsim/data/README.md):
``azure-conv``, ``azure-code`` (Azure LLM inference traces 2023, as published with Splitwise and shipped by
Vidur), ``arxiv-summarization`` (lengths only, from Vidur) and the DistServe vLLM replays
``distserve-vllm-opt13b/vllm-<N>-<rate>.csv``.
"""

from __future__ import annotations

import io
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from capsim.errors import SpecError, UnknownNameError

SHIPPED = {
    "azure-conv": "traces/splitwise_conv.csv.gz",
    "azure-code": "traces/splitwise_code.csv.gz",
    "arxiv-summarization": "traces/arxiv_summarization.csv.gz",
}
COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


@cache
def _read_shipped(rel: str) -> pd.DataFrame:
    raw = resources.files("capsim.data").joinpath(*rel.split("/")).read_bytes()
    return pd.read_csv(io.BytesIO(raw), compression="gzip" if rel.endswith(".gz") else None)


def load_trace(name_or_path: str | Path) -> pd.DataFrame:
    """A trace as a DataFrame with ``prompt_tokens``, ``output_tokens`` and, when the file has it,
    ``arrived_at`` (sorted by arrival). ``name_or_path``: a shipped name, a file under capsim/data, or a path."""
    key = str(name_or_path)
    if key in SHIPPED:
        df, origin = _read_shipped(SHIPPED[key]), key
    elif Path(key).is_file():
        df, origin = pd.read_csv(key), key
    else:
        try:
            df, origin = _read_shipped(key), key
        except (FileNotFoundError, IsADirectoryError, OSError):
            raise UnknownNameError("trace", key, list(SHIPPED)) from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SpecError("trace", f"{origin} lacks the columns {missing}",
                        "a trace needs num_prefill_tokens and num_decode_tokens (and optionally arrived_at)")
    out = pd.DataFrame({"prompt_tokens": df["num_prefill_tokens"].to_numpy(np.int64),
                        "output_tokens": df["num_decode_tokens"].to_numpy(np.int64)})
    if "arrived_at" in df.columns:
        out.insert(0, "arrived_at", df["arrived_at"].to_numpy(float))
        out = out.sort_values("arrived_at", kind="stable").reset_index(drop=True)
    bad = (out["prompt_tokens"] < 1) | (out["output_tokens"] < 1)
    if bad.any():
        raise SpecError("trace", f"{origin}: {int(bad.sum())} rows have fewer than 1 prompt or output token",
                        "drop or fix those rows")
    return out


__all__ = ["SHIPPED", "load_trace"]
