"""The session's memo of ``predict_row`` (tests/priced.py): what it returns is what ``predict_row`` returns for the same
row and calibration, a second worker reads what the first priced, and an edited row or another calibration is
priced afresh."""

from __future__ import annotations

import priced as memo
import pytest

from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, _Unpriced, predict_row

ROW = read_csv(None, "training_deepspeed.csv", REQUIRED)[0]


@pytest.fixture
def calls(monkeypatch):
    """The rows the memo priced (it prices through ``predict_row``)."""
    seen: list[tuple[str, str | None]] = []

    def counted(r, calibration=None):  # noqa: ANN001, ANN202
        seen.append((r.get("inter_node_gb_per_s", ""), calibration))
        return predict_row(r, calibration)
    monkeypatch.setattr(memo, "_PREDICT_ROW", counted)
    return seen


@pytest.mark.parametrize("shared", [False, True])
def test_a_row_is_priced_once_and_read_by_a_second_worker(tmp_path, calls, shared):
    first, second = (memo.Priced(tmp_path if shared else None) for _ in range(2))
    pred = first.row(ROW, "datasheet")
    assert pred == predict_row(ROW, "datasheet") and first.row(ROW, "datasheet") is pred
    assert first.rows([ROW], "datasheet") == [pred] and len(calls) == 1
    again = second.row(ROW, "datasheet")
    assert again == pred and len(calls) == (1 if shared else 2)  # read from the shared folder, not priced again


def test_an_edited_row_or_another_calibration_is_priced_afresh(tmp_path, calls):
    priced = memo.Priced(tmp_path)
    base = priced.row(ROW, "datasheet")
    assert priced.row(ROW, "DATASHEET") == base and priced.row(ROW, None) == priced.row(ROW, "profile")
    slower = priced.row({**ROW, "inter_node_gb_per_s": "5"}, "datasheet")
    assert slower.value > base.value and len(calls) == 5  # four calibration spellings and one edit, each priced


def test_an_error_is_raised_again_with_its_attributes_in_every_worker(tmp_path, monkeypatch):
    def fails(r, calibration=None):  # noqa: ANN001, ANN202
        raise _Unpriced("does not fit in memory", (1.0, 2.0), "H100")  # a row's band and calibration beside it
    monkeypatch.setattr(memo, "_PREDICT_ROW", fails)
    for priced in (memo.Priced(tmp_path), memo.Priced(tmp_path)):  # the second reads the first's
        with pytest.raises(_Unpriced, match="does not fit") as err:
            priced.row(ROW, "datasheet")
        assert (err.value.band, err.value.calibration) == ((1.0, 2.0), "H100") and isinstance(priced.rows([ROW], "datasheet")[0], _Unpriced)
