"""The calibration file: versioned JSON with provenance, raw samples and fitted parameters.

{
  "schema": "capsim.calibration/1",
  "name": str, "kind": "datasheet" | "measured" | "profile",
  "device": {"name": str, ...}, "host": {...}, "torch_version": str | null, "created": ISO-8601,
  "provenance": str,                       # where every number came from
  "samples": {"gemm": [...], "attention": [...], "memory": [...], "comm": [...]},   # raw, as measured
  "fitted": DeviceParams,                   # what capsim.perf reads
  "variants": {"threads=1": DeviceParams}   # optional: the same device under another setting (CPU threads)
}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from capsim.errors import SpecError, UnknownNameError
from capsim.inputs import read_json_object
from capsim.perf import DeviceParams, Perf

SCHEMA = "capsim.calibration/1"
KINDS = ("datasheet", "measured", "profile")


@dataclass(frozen=True)
class Calibration:
    """A calibration file in memory."""

    name: str
    kind: str
    device: dict[str, Any]
    fitted: DeviceParams
    provenance: str = ""
    host: dict[str, Any] = field(default_factory=dict)
    torch_version: str | None = None
    created: str = ""
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    variants: dict[str, DeviceParams] = field(default_factory=dict)  # e.g. "threads=1" on a multi-core CPU

    def perf(self, variant: str | None = None) -> Perf:
        """The device model; ``variant`` picks one of ``variants`` (e.g. "threads=1")."""
        if variant is None:
            return Perf(self.fitted)
        if variant not in self.variants:
            raise SpecError("calibration", f"{self.name} has no variant {variant!r}",
                            f"known: {', '.join(self.variants) or 'none'}; re-run `capsim calibrate` to measure it")
        return Perf(self.variants[variant])

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "name": self.name, "kind": self.kind, "device": self.device, "host": self.host,
                "torch_version": self.torch_version, "created": self.created, "provenance": self.provenance,
                "samples": self.samples, "fitted": self.fitted.to_dict(),
                **({"variants": {k: v.to_dict() for k, v in self.variants.items()}} if self.variants else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "calibration") -> Calibration:
        if not isinstance(d, dict):
            raise SpecError(source, f"holds a {type(d).__name__}, not a calibration object",
                            "give a file written by `capsim calibrate`")
        if d.get("schema") != SCHEMA:
            raise SpecError(source, f"schema {d.get('schema')!r} is not {SCHEMA!r}",
                            "re-run `capsim calibrate` to write a current file")
        if d.get("kind") not in KINDS:
            raise SpecError(f"{source}.kind", f"{d.get('kind')!r} is not one of {KINDS}")
        _finite(d.get("fitted"), f"{source}.fitted")
        _finite(d.get("variants"), f"{source}.variants")
        try:
            return cls(name=str(d["name"]), kind=d["kind"], device=dict(d["device"]),
                       fitted=DeviceParams.from_dict(d["fitted"]), provenance=str(d.get("provenance", "")),
                       host=dict(d.get("host") or {}), torch_version=d.get("torch_version"),
                       created=str(d.get("created", "")), samples=dict(d.get("samples") or {}),
                       variants={k: DeviceParams.from_dict(v) for k, v in (d.get("variants") or {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            what = f"lacks {err}" if isinstance(err, KeyError) else f"has a value of the wrong type ({err})"
            raise SpecError(source, f"does not follow {SCHEMA}: it {what}",
                            "re-run `capsim calibrate`, or compare the file with a shipped one") from None


def _finite(value: Any, field: str) -> None:
    """Every number of a fitted section must be finite."""
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{field}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite(v, f"{field}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise SpecError(field, f"{value} is not a finite number", "fix or re-measure the calibration")


def calibrations_dir() -> Path:
    """Where shipped calibrations live: $CAPSIM_CALIBRATIONS, else capsim/calibrations inside the package
    (``datasheet/``, ``profile/``, ``measured/``; declared package data, so every install has them)."""
    env = os.environ.get("CAPSIM_CALIBRATIONS")
    return Path(env) if env else Path(str(resources.files("capsim"))) / "calibrations"


def user_calibrations_dir() -> Path:
    """Where `capsim calibrate` writes and where measured calibrations are found by name besides the shipped
    ones: $CAPSIM_USER_CALIBRATIONS, else ``calibrations`` in the user data directory (platformdirs:
    $XDG_DATA_HOME/capsim/calibrations, by default ~/.local/share/capsim/calibrations, on Linux;
    ~/Library/Application Support/capsim/calibrations on macOS; %LOCALAPPDATA%/capsim/calibrations on Windows)."""
    env = os.environ.get("CAPSIM_USER_CALIBRATIONS")
    if env:
        return Path(env)
    from platformdirs import user_data_path

    return user_data_path("capsim", appauthor=False) / "calibrations"


def write_calibration(cal: Calibration, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename, so a reader never sees half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(cal.to_dict(), fh, indent=1, sort_keys=False)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it owner-only; a calibration is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def available() -> dict[str, Path]:
    """Calibrations by name: the shipped ones (``<kind>/<name>.json``), then the user's (`capsim calibrate`'s
    output, ``<name>.json``), which win a name they share with a shipped file (a measurement of this machine over
    one shipped from another). Hidden files (an interrupted run's ``.calibrate-partial-<name>.json``, temporary
    files) are never calibrations."""
    def found(root: Path, pattern: str) -> dict[str, Path]:
        if not root.is_dir():
            return {}
        return {p.stem: p for p in sorted(root.glob(pattern)) if not p.name.startswith(".") and p.is_file()}

    return {**found(calibrations_dir(), "*/*.json"), **found(user_calibrations_dir(), "*.json")}


def load_calibration(name_or_path: str | Path | Calibration) -> Calibration:
    """A calibration by file path or by name (``A100-SXM4-80GB`` finds the datasheet file, ``a100-profile``...)."""
    if isinstance(name_or_path, Calibration):
        return name_or_path
    path = Path(name_or_path)
    if not path.is_file():
        known = available()
        key = str(name_or_path)
        lookup = {k.lower(): p for k, p in known.items()}
        path = lookup.get(key.lower())
        if path is None:
            from capsim.specs.catalog import get_accelerator
            try:  # an accelerator name or alias -> its datasheet calibration
                path = lookup.get(get_accelerator(key).name.lower())
            except SpecError:
                path = None
        if path is None:
            raise UnknownNameError("calibration", key, list(known))
    return Calibration.from_dict(read_json_object(path, "calibration", "calibration JSON file"), str(path))
