"""``capsim dashboard``: start the Streamlit app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from capsim.cli.common import fail


def dashboard(port: Annotated[int, typer.Option(help="Local port.")] = 8501,
              headless: Annotated[bool, typer.Option(help="Do not open a browser.")] = False) -> None:
    """Launch the Streamlit dashboard (app.py) on the built-in defaults."""
    app = Path(__file__).resolve().parents[2] / "app.py"
    if not app.is_file():
        fail(f"no app.py at {app}: run capsim from a source checkout (pip install -e .)")
    # No file watcher: it would watch the whole checkout (virtualenv included) for hot reloads nobody needs here.
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    raise typer.Exit(subprocess.call(cmd))
