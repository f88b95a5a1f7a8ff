"""Every bad input of the reliability fixtures (tests/fixtures/reliability, a copy of shared/reliability) ends
cleanly: exit 2 with one line naming the field, or exit 1 with the reason where the input is valid but infeasible;
never a traceback, never exit 0. The commands run in-process (CliRunner) from a copy of ``fx/``."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app

HERE = Path(__file__).parent / "fixtures" / "reliability"
LINE = re.compile(r"\[(\d+)\] \(cd fx\) capsim (.*?)  ->  (.*)")
# A Python exception's name in a message means an error escaped the field-by-field checks.
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")

# Cases whose input is valid but has no feasible answer: exit 1 with the reason.
INFEASIBLE: set[str] = set()
# Known misses, each with its reason (xfail strict); none left. Case 222 (plan serve --rate 1e12) is refused by the
# simulator's work bound (--max-events) before any candidate fleet is built.
KNOWN: dict[str, str] = {}


def _cases() -> list[tuple[str, str, list[str]]]:
    out, klass = [], ""
    for line in (HERE / "failures.txt").read_text().splitlines():
        if line.startswith("## "):
            klass = line[3:].strip()
        m = LINE.match(line)
        if m:
            out.append((m.group(1), klass, shlex.split(m.group(2))))
    return out


CASES = _cases()


def _param(case: str, klass: str, args: list[str]) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[case])] if case in KNOWN else []
    return pytest.param(case, args, id=f"{klass}-{case}", marks=marks)


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("reliability") / "fx"
    shutil.copytree(HERE / "fx", dest)
    return dest


def test_the_fixture_list_is_read_whole():
    assert len(CASES) == 128 and {k for _, k, _ in CASES} == {"TRACEBACK", "SILENT", "WRONG_EXIT", "PARTIAL"}


@pytest.mark.parametrize(("case", "args"), [_param(*c) for c in CASES])
def test_bad_input_ends_cleanly(case, args, fx, monkeypatch):
    monkeypatch.chdir(fx)
    result = CliRunner().invoke(app, args)
    output = result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if case in INFEASIBLE:
        assert result.exit_code == 1 and any(ln.startswith("infeasible: ") for ln in lines), output
        return
    assert result.exit_code == 2, output
    assert len(lines) == 1 and lines[0].startswith("error: ") and not result.stdout.strip(), output
    assert not EXCEPTION_NAME.search(lines[0]), lines[0]
