"""Every validation row against its stated bound (issue 11): a row that misses today is xfail(strict=True) with the
reason, so fixing it turns the suite red until the marker goes; a row capsim cannot price is a miss.

Bounds, from the issues that set them:
- training (issue 4, restated by issue 12 for documented defaults): every SC21 and Korthikanti row within 12%, and
  the median of each source's rows within 5%, under the datasheet and the GPU-profile A100 calibrations;
- memory (issue 2): the ZeRO figure within 2%, each Korthikanti activation and parameter+optimizer row within 10%;
- params (issue 2): within 1%, or within the rounding of a count published to fewer figures.
"""

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from capsim.validation import run_suite
from capsim.validation.harness import read_csv

ROW_BOUND_PCT, MEDIAN_BOUND_PCT = 12.0, 5.0
CALIBRATIONS = ("A100-SXM4-80GB", "A100-SXM4-80GB-profile")
AS_PUBLISHED = str(Path(__file__).parent / "data" / "training_sc21_as_published.csv")
MEMORY_BOUND_PCT = {"zero-fig1": 2.0, "korthikanti-fig1": 10.0}

_DEFAULTS = ("at Megatron-LM 2021's documented defaults (micro-batch 4, no interleaving, local DDP) instead of the "
             "authors' launcher")
# (file, calibration, model) -> why the row misses its 12% bound today.
TRAINING_MISSES = {
    (AS_PUBLISHED, cal, model): f"{_DEFAULTS}: {why}"
    for cal in CALIBRATIONS
    for model, why in (("gpt-145.6B", "-12% (datasheet) / -14% (profile), the bubble of v=1 at pp=8"),
                       ("gpt-310.1B", "-18% / -19%, the bubble of v=1 at pp=16"),
                       ("gpt-529.6B", "-22% / -24%, the bubble of v=1 at pp=35 (micro-batch 4 fits the A100's "
                                      "79.25 GiB, 85.1e9 B, that CUDA reports)"))}
# gpt-1008B: micro-batch 4 needs 110.0 GB/GPU of the A100's 85.1 GB, so the row is priced at its band's median
# feasible layout (micro-batch 1): -4.3% (datasheet) / -5.2% (profile)
MEDIAN_MISSES = {(AS_PUBLISHED, cal, "sc21"): f"{_DEFAULTS}: median |error| 6.3% (datasheet) / 9.1% (profile)"
                 for cal in CALIBRATIONS}


@cache
def _report(suite: str, file: str | None, calibration: str | None):
    return run_suite(suite, file, calibration)


def _cases(file: str | None, default: str) -> list[tuple[str | None, int, str]]:
    return [(file, i, f"{r['source']}:{r['model']}:{r.get('config') or r.get('recompute', '')}")
            for i, r in enumerate(read_csv(file, default, ("source", "model")))]


def _marked(params: list[tuple], misses: dict, key, name) -> list:
    out = []
    for p in params:
        reason = misses.get(key(p))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(*p, marks=marks, id=name(p)))
    return out


def _label(file: str | None) -> str:
    return "shipped" if file is None else Path(file).stem


TRAINING_ROWS = [(cal, file, i) for file in (None, AS_PUBLISHED) for cal in CALIBRATIONS
                 for i in range(len(_cases(file, "training_published.csv")))]


def _model(file: str | None, i: int) -> str:
    return read_csv(file, "training_published.csv", ("model",))[i]["model"]


@pytest.mark.parametrize("calibration, file, i", _marked(
    TRAINING_ROWS, TRAINING_MISSES, lambda p: (p[1], p[0], _model(p[1], p[2])),
    lambda p: f"{_label(p[1])}-{p[0]}-{p[2]}-{_model(p[1], p[2])}"))
def test_training_row_within_12_pct(calibration, file, i):
    row = _report("training", file, calibration).rows[i]
    assert row.predicted is not None, row.note
    assert abs(row.error_pct) <= ROW_BOUND_PCT, (row.case, row.error_pct, row.note)


MEDIANS = [(cal, file, source) for file in (None, AS_PUBLISHED) for cal in CALIBRATIONS
           for source in sorted({r["source"].split("-")[0] for r in read_csv(file, "training_published.csv",
                                                                            ("source",))})]


@pytest.mark.parametrize("calibration, file, source", _marked(
    MEDIANS, MEDIAN_MISSES, lambda p: (p[1], p[0], p[2]), lambda p: f"{_label(p[1])}-{p[0]}-{p[2]}"))
def test_training_median_within_5_pct(calibration, file, source):
    rows = [r for r in _report("training", file, calibration).rows if r.source.split("-")[0] == source]
    errors = [abs(r.error_pct) if r.priced else np.inf for r in rows]  # a row not priced is a miss
    assert np.median(errors) <= MEDIAN_BOUND_PCT, (source, np.median(errors))


@pytest.mark.parametrize("i", range(len(_cases(None, "memory_published.csv"))))
def test_memory_row_within_its_bound(i):
    row = _report("memory", None, None).rows[i]
    assert row.predicted is not None, row.note
    assert abs(row.error_pct) <= MEMORY_BOUND_PCT[row.source], (row.case, row.error_pct)


@pytest.mark.parametrize("i", range(len(_cases(None, "params_published.csv"))))
def test_params_row_within_1_pct_or_its_rounding(i):
    row = _report("params", None, None).rows[i]
    assert row.predicted is not None, row.note
    rounding = float(row.note.split("+/-")[1].split("%")[0]) if "+/-" in row.note else 0.0
    assert abs(row.error_pct) <= max(1.0, rounding), (row.case, row.error_pct)
