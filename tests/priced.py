"""``predict_row`` once per (row, calibration) for the whole test session (the ``priced`` fixture, tests/conftest.py).

Every shipped training row is priced under both calibration rules by its own test file, and the whole shipped suite
(``capsim validate training``, ``run_suite("training")``) again by the CLI's tests, test_training_modern.py and
test_training_nemo.py: the same deterministic work five to seven times, a fifth of the suite's CPU. Here a row is
priced once; a worker process of pytest-xdist writes what it priced to the session's shared temporary folder (the
pytest-xdist docs' pattern: ``tmp_path_factory.getbasetemp().parent``, one per test run), and another worker that
needs the same row reads it instead of pricing it again, or waits for it while it is being priced.

The key is the row's every cell and the calibration file the product resolves for it (its rule applied to the
row's accelerator, ``row_calibration``; the file's path, size and modification time), so a row edited by a test, a
calibration a test writes or another rule is priced afresh. What a test sees is what ``predict_row`` returned for
those inputs: the value, or the error it raised. ``suite`` and ``patched`` run the product's own suite code
(``training_suite``, the CLI) with only ``predict_row`` looked up here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from unittest import mock

try:
    import fcntl
except ImportError:  # not POSIX: each worker prices for itself (``shared`` None)
    fcntl = None  # type: ignore[assignment]

from capsim.calibration.schema import available
from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator
from capsim.validation import training
from capsim.validation.harness import Report, read_csv
from capsim.validation.training import REQUIRED, SHIPPED, RowPrediction
from capsim.validation.training_rows import row_calibration

_PREDICT_ROW = training.predict_row  # the product's, whatever a test patches later


class Priced:
    """``predict_row`` memoized in this process and, where ``shared`` is a folder, across the session's workers."""

    def __init__(self, shared: Path | None) -> None:
        self.shared = shared if fcntl is not None else None
        self.memo: dict[str, RowPrediction | SpecError] = {}
        if self.shared is not None:
            self.shared.mkdir(parents=True, exist_ok=True)

    def key(self, r: dict[str, str], calibration: str | None) -> str | None:
        """The row's cells and the calibration file it resolves to; None where the accelerator is unknown (the row
        is then priced each time, and raises as it did)."""
        try:
            name = row_calibration(calibration, get_accelerator(r["gpu"]).name)
        except (SpecError, KeyError):
            return None
        path = available().get(name) if name is not None else None
        stat = os.stat(path) if path is not None else None
        ident = (sorted(r.items()), calibration, name, str(path), stat and (stat.st_size, stat.st_mtime_ns))
        return hashlib.sha256(repr(ident).encode()).hexdigest()

    def row(self, r: dict[str, str], calibration: str | None = None) -> RowPrediction:
        """``predict_row(r, calibration)``: its prediction, or the error it raised, raised again."""
        out = self._get(r, calibration, wait=True)
        if isinstance(out, SpecError):
            raise out
        return out  # type: ignore[return-value]

    def rows(self, rows: Iterable[dict[str, str]], calibration: str | None = None) -> list[RowPrediction | SpecError]:
        """Each row's prediction or error. Rows another worker is pricing are left to it and read at the end, so
        two workers that need the same rows at once share them out."""
        rows = list(rows)
        for r in rows:
            self._get(r, calibration, wait=False)
        return [self._get(r, calibration, wait=True) for r in rows]  # type: ignore[misc]

    @contextlib.contextmanager
    def patched(self, calibration: str | None = None) -> Iterator[None]:
        """Within: the product's suite code (``training_suite``, ``capsim validate training``) prices every row
        through ``row``; the shipped rows under ``calibration`` are priced (or read) first."""
        self.rows([r for name in SHIPPED for r in read_csv(None, name, REQUIRED)], calibration)
        with mock.patch.object(training, "predict_row", self.row):
            yield

    def suite(self, path: str | Path | None = None, calibration: str | None = None) -> Report:
        """``training_suite(path, calibration)`` with its rows priced through ``row``."""
        if path is None:
            with self.patched(calibration):
                return training.training_suite(None, calibration)
        self.rows(read_csv(path, SHIPPED[0], REQUIRED), calibration)
        with mock.patch.object(training, "predict_row", self.row):
            return training.training_suite(path, calibration)

    def _get(self, r: dict[str, str], calibration: str | None, wait: bool) -> RowPrediction | SpecError | None:
        key = self.key(r, calibration)
        if key is None:
            return _price(r, calibration)
        if key in self.memo:
            return self.memo[key]
        if self.shared is None:
            self.memo[key] = _price(r, calibration)
            return self.memo[key]
        done = self.shared / f"{key}.pkl"
        with open(self.shared / f"{key}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:  # another worker is pricing it
                return None
            try:
                if done.exists():
                    self.memo[key] = _load(done)
                else:
                    self.memo[key] = out = _price(r, calibration)
                    _store(done, out)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return self.memo[key]


def _price(r: dict[str, str], calibration: str | None) -> RowPrediction | SpecError:
    try:
        return _PREDICT_ROW(r, calibration)
    except SpecError as err:  # DataError included: raised again where the row is asked for
        return err


def _store(path: Path, out: RowPrediction | SpecError) -> None:
    # an error's extra attributes (the unpriced row's band) travel beside it: SpecError pickles only its message
    blob = pickle.dumps((out, vars(out) if isinstance(out, SpecError) else None))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)  # whole or absent, for a reader that does not take the lock


def _load(path: Path) -> RowPrediction | SpecError:
    out, extra = pickle.loads(path.read_bytes())
    if extra:
        vars(out).update(extra)
    return out
