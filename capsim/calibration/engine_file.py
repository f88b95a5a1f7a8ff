"""Engine files: one engine profile as YAML, in the form of a ``capsim/specs/catalog/engines.yaml`` entry (its name
as the only top-level key), with the provenance of a fitted profile under ``provenance``. ``capsim calibrate engine``
writes them; ``--engine-file`` reads them wherever ``--engine`` names a catalog profile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from capsim.errors import SpecError
from capsim.specs.engine import EngineProfile, profile_from_dict

HEADER = "# capsim engine profile (capsim calibrate engine); read with --engine-file. Fields: capsim/specs/catalog/engines.yaml\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    return value


def profile_entry(profile: EngineProfile) -> dict[str, Any]:
    """The engines.yaml entry of ``profile`` (plain YAML types)."""
    d = _plain(profile.to_dict())
    d.pop("name")
    d.pop("cuda_graph_max_batch", None)
    return d


def write_engine_file(profile: EngineProfile, path: str | Path) -> Path:
    """Write atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + yaml.safe_dump({profile.name: profile_entry(profile)}, sort_keys=False, width=120)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_engine_file(path: str | Path) -> EngineProfile:
    """The one profile an engine file holds; a clear error naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise SpecError("--engine-file", f"no file at {p}", "give the YAML `capsim calibrate engine --out` wrote")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise SpecError("--engine-file", f"{p} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or len(data) != 1:
        raise SpecError("--engine-file", f"{p} must hold one engine profile (its name as the only top-level key)")
    (name, entry), = data.items()
    if not isinstance(entry, dict):
        raise SpecError("--engine-file", f"{p}: profile {name!r} is not a mapping of fields")
    try:
        return profile_from_dict(str(name), entry)
    except (TypeError, KeyError, ValueError) as err:
        if isinstance(err, SpecError):
            raise
        raise SpecError("--engine-file", f"{p}: {err}", "compare it with an entry of capsim/specs/catalog/"
                        "engines.yaml") from None


__all__ = ["profile_entry", "read_engine_file", "write_engine_file"]
