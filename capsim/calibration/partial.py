"""The partial file of an interrupted `capsim calibrate` run: samples by case, checkpointed atomically as they
arrive, and read back by a resumed run with the same device, host, torch and settings."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[str, int, int, str], None]  # (what is running, samples done, samples planned, its group)


def case_key(case: dict) -> str:
    return json.dumps({k: v for k, v in sorted(case.items()) if k not in ("time_s", "timing")}, sort_keys=True,
                      default=str)


def partial_path(out: Path) -> Path:
    return out.with_name(f".calibrate-partial-{out.stem}.json")


def load_partial(path: Path, fingerprint: dict[str, Any]) -> dict[str, dict]:
    """Samples of an interrupted run with the same device, host, torch and settings; else none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if data.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return {}
    samples = data.get("samples", {})
    return dict(samples) if isinstance(samples, dict) else {}


def save_partial(path: Path, fingerprint: dict[str, Any], samples: dict[str, dict]) -> None:
    """Atomic, like the calibration itself: a reader (or a resumed run) never sees half a file."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"fingerprint": fingerprint, "samples": samples}, fh)  # case key -> sample
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Saver:
    """Collects samples and checkpoints them to the partial file at most every ``every_s`` seconds."""

    def __init__(self, path: Path, fingerprint: dict, samples: dict, total: int, progress: Progress | None,
                 every_s: float = 2.0) -> None:
        self.path, self.fingerprint, self.samples, self.total = path, fingerprint, samples, total
        self.progress, self.every_s, self.last, self.dirty = progress, every_s, time.monotonic(), False

    def add(self, case: dict, sample: dict, label: str) -> None:
        self.samples[case_key(case)] = sample
        self.dirty = True
        if time.monotonic() - self.last > self.every_s:
            self.flush()
        if self.progress:
            self.progress(label, len(self.samples), self.total, group_of(case))

    def flush(self) -> None:
        if self.dirty:
            save_partial(self.path, self.fingerprint, self.samples)
            self.dirty, self.last = False, time.monotonic()


def group_of(case: dict) -> str:
    """The benchmark group a case belongs to (progress is reported per group): bench, format, threads."""
    if case["bench"] == "comm":
        return f"comm n={case['group']}"
    return f"{case['bench']} {case.get('dtype', '')} t{case['threads']}".replace("  ", " ")


__all__ = ["Progress", "Saver", "case_key", "group_of", "load_partial", "partial_path", "save_partial"]
