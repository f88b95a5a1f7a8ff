"""What every command shares: the consoles, JSON output, error handling, and the common options."""

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
from rich.table import Table

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


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "-"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.2f} GB"
