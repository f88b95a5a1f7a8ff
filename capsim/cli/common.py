"""What every command shares: the consoles, JSON output, error handling, and the common options (tables: render.py)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console

from capsim.cli.render import fmt, gb, pairs, table
from capsim.errors import SpecError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

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


def fail(message: str) -> None:
    """Print one clear line on stderr and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def guarded(fn: F) -> F:
    """Turn a bad input into one line and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SpecError as err:
            fail(str(err))
        except (ValueError, KeyError, FileNotFoundError, OSError) as err:
            fail(f"{type(err).__name__}: {err}")
        return None

    return wrapper  # type: ignore[return-value]


__all__ = ["JsonOpt", "console", "emit_json", "err_console", "fail", "fmt", "gb", "guarded", "pairs", "table"]
