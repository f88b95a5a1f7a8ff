"""What every command shares: the consoles, JSON output, error handling, and the common options (tables:
render.py)."""

from __future__ import annotations

import json
import math
import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from capsim.cli.options import click_exceptions, harden
from capsim.cli.render import fmt, gb, pairs, table
from capsim.errors import InfeasibleError, SpecError

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (NaN and infinity become null)."""
    typer.echo(json.dumps(_plain(obj), indent=1))


def infeasible(reason: str) -> None:
    """A valid input with no feasible answer: the reason on stderr (stdout keeps the tables or the JSON), exit
    status 1, every command alike."""
    err_console.print(f"[red]infeasible[/]: {_one_line(reason)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _one_line(message: str) -> str:
    return escape(" ".join(str(message).split()))


INTERNAL_EXIT = 70  # EX_SOFTWARE: a bug in capsim, not in the input


def _report(err: BaseException) -> int:
    """The one error path of the whole CLI: print one line for ``err`` and return the exit status."""
    if isinstance(err, click_exceptions.NoArgsIsHelpError):
        return err.exit_code  # typer printed the help while building the error
    if isinstance(err, click_exceptions.UsageError):
        ctx = err.ctx
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return _line(f"{err.format_message()}{hint}", 2)
    if isinstance(err, click_exceptions.ClickException):
        return _line(err.format_message(), 2)
    if isinstance(err, typer.Abort):
        return _line("aborted", 130)
    if isinstance(err, InfeasibleError):
        err_console.print(f"[red]infeasible[/]: {_one_line(str(err))}", highlight=False, soft_wrap=True)
        return 1
    if isinstance(err, SpecError):
        return _line(str(err), 2)
    if isinstance(err, OSError) and err.filename is not None:
        return _line(f"{err.filename}: {err.strerror or err}", 2)
    if isinstance(err, (ValueError, KeyError, OSError)):
        return _line(f"{type(err).__name__}: {err}", 2)
    if os.environ.get("CAPSIM_DEBUG"):
        raise err
    return _line(f"internal error, a bug in capsim (please report it with the command): {type(err).__name__}: "
                 f"{err} (CAPSIM_DEBUG=1 shows the traceback)", INTERNAL_EXIT)


def _line(message: str, code: int) -> int:
    err_console.print(f"[bold red]error:[/] {_one_line(message)}", highlight=False, soft_wrap=True)
    return code


class CapsimGroup(TyperGroup):
    """The root command: every error of every command, Click's usage errors included, ends here as one line."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        harden(self)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except Exception as err:  # noqa: BLE001 - this is the one place that turns any error into one line
            code = _report(err)
        if standalone_mode:
            sys.exit(code)
        return code


__all__ = ["CapsimGroup", "JsonOpt", "console", "emit_json", "err_console", "fmt", "gb", "infeasible", "pairs",
           "table"]
