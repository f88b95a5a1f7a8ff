"""The README's example commands run as written: every ``capsim`` line of its code blocks (continuation lines joined)
ends with exit 0, or with exit 1 where the line's own comment says so (a valid but infeasible plan). Left out: lines
that name the user's own files (my/..., run-*.json, requests.csv, '...'), the measurements (calibrate, validate
local), and the slow suites and planners other tests run (validate training/serving/bench, plan serve, scale serve)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
USER_FILES = re.compile(r"my[/_.-]|run-\w+\.json|requests\.csv|\.\.\.")
ELSEWHERE = ("capsim calibrate", "capsim validate", "capsim plan serve", "capsim scale serve")


def _commands() -> list[tuple[str, int]]:
    out, block, joined = [], False, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            block = not block
            continue
        text = line.strip()
        if not block or not (joined or text.startswith("capsim ")):
            continue
        joined = f"{joined} {text.rstrip(chr(92)).strip()}".strip()
        if text.endswith("\\"):
            continue
        command, _, comment = joined.partition(" #")
        joined = ""
        if not USER_FILES.search(command) and not command.startswith(ELSEWHERE):
            out.append((command.strip(), 1 if "exit 1" in comment else 0))
    return out


COMMANDS = _commands()


def test_the_readme_has_its_examples():
    assert len(COMMANDS) >= 30 and any(c.startswith("capsim train") for c, _ in COMMANDS)


@pytest.mark.parametrize(("command", "code"), COMMANDS, ids=[c[:60] for c, _ in COMMANDS])
def test_a_readme_command_runs_as_written(command, code):
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == code, (command, result.output[-600:])
