"""The catalogs shipped with capsim (models, accelerators, prices), read by one loader, with name lookup."""

from __future__ import annotations

import re
import statistics
from functools import cache
from importlib import resources
from typing import Any

import yaml

from capsim.errors import UnknownNameError
from capsim.specs.hardware import Accelerator, Peaks
from capsim.specs.model import ModelSpec

CATALOGS = ("models", "accelerators", "prices", "engines")


@cache
def load_catalog(kind: str) -> Any:
    """The raw entries of one catalog file: a tuple of entries (``models``, ``accelerators``, ``prices``) or a
    mapping of named entries (``engines``)."""
    if kind not in CATALOGS:
        raise UnknownNameError("catalog", kind, CATALOGS)
    data = yaml.safe_load(resources.files("capsim.specs").joinpath("catalog", f"{kind}.yaml").read_text())
    return tuple(data) if isinstance(data, list) else data


def normalize_name(name: str) -> str:
    """Fold the spellings people use: case, org prefixes, ``_``, and suffixes such as ``-hf`` or ``-instruct``."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = key.rsplit("/", 1)[-1]  # meta-llama/Llama-2-7b-hf -> llama-2-7b-hf
    # a quantized checkpoint's suffix names its format, not another shape (nvidia/Llama-3.1-8B-Instruct-FP8, the
    # checkpoints TensorRT-LLM's perf-overview.md lists); the format is the precision the run states
    key = re.sub(r"-(fp8|fp4|nvfp4|fp8-dynamic|awq|gptq|w8a8|w4a16)$", "", key)
    key = re.sub(r"-(hf|instruct|chat|base-hf|it)$", "", key)
    key = re.sub(r"^meta-llama-", "llama-", key)
    # the vendor prefix of the name CUDA reports (torch.cuda.get_device_name: 'NVIDIA H100 80GB HBM3', 'NVIDIA B200')
    key = re.sub(r"^nvidia-", "", key)
    return key


def _index(entries: dict[str, Any]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, entry in entries.items():
        for alias in (name, *getattr(entry, "aliases", ())):
            index[normalize_name(alias)] = name
    return index


@cache
def _model_index() -> dict[str, str]:
    """Every spelling of every catalog model -> its canonical name (the catalog is read once, so is this)."""
    return _index(models())


@cache
def _accelerator_index() -> dict[str, str]:
    return _index(accelerators())


@cache
def models() -> dict[str, ModelSpec]:
    """Every catalog model by its canonical name."""
    out = {}
    for entry in load_catalog("models"):
        entry = dict(entry)
        entry["aliases"] = tuple(entry.get("aliases", ()))
        out[entry["name"]] = ModelSpec(**entry)
    return out


@cache
def accelerators() -> dict[str, Accelerator]:
    """Every catalog accelerator by its canonical name, priced at the median of its catalog prices."""
    out = {}
    for entry in load_catalog("accelerators"):
        entry = dict(entry)
        entry["peaks"] = Peaks(**entry["peaks"])
        if entry.get("peaks_high") is not None:
            entry["peaks_high"] = Peaks(**entry["peaks_high"])
        entry["aliases"] = tuple(entry.get("aliases", ()))
        entry["unconfirmed"] = tuple(entry.get("unconfirmed", ()))
        rates = [p["usd_per_gpu_hour"] for p in load_catalog("prices") if p["gpu"] == entry["name"]]
        entry["price_usd_per_hour"] = statistics.median(rates) if rates else None
        out[entry["name"]] = Accelerator(**entry)
    return out


def prices(gpu: str | None = None) -> list[dict[str, Any]]:
    """Catalog price rows, optionally for one accelerator."""
    rows = [dict(p) for p in load_catalog("prices")]
    if gpu is not None:
        name = get_accelerator(gpu).name
        rows = [r for r in rows if r["gpu"] == name]
    return rows


def get_model(name: str | ModelSpec) -> ModelSpec:
    """A catalog model by name or alias (any common spelling); suggests the closest names when unknown."""
    if isinstance(name, ModelSpec):
        return name
    found = _model_index().get(normalize_name(name))
    if found is None:
        raise UnknownNameError("model", name, _model_index())
    return models()[found]


def get_accelerator(name: str | Accelerator, price_usd_per_hour: float | None = None) -> Accelerator:
    """A catalog accelerator by name or alias; ``price_usd_per_hour`` overrides the catalog price."""
    acc = name if isinstance(name, Accelerator) else None
    if acc is None:
        found = _accelerator_index().get(normalize_name(name))
        if found is None:
            raise UnknownNameError("accelerator", name, _accelerator_index())
        acc = accelerators()[found]
    return acc if price_usd_per_hour is None else acc.with_(price_usd_per_hour=price_usd_per_hour)
