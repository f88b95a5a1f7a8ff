"""``capsim dashboard``: start the Streamlit app, headless, on this machine only unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from typing import Annotated

import typer

SCRIPT = ("capsim.ui.script", "dashboard.py")


def streamlit_command(port: int | None, address: str, open_browser: bool) -> list[str]:
    """The ``streamlit run`` command line. Headless unless asked to open a browser; never Streamlit's first-run
    e-mail prompt (it reads stdin, and without a terminal exits with status 255 before the server starts)."""
    script = resources.files(SCRIPT[0]).joinpath(SCRIPT[1])
    cmd = [sys.executable, "-m", "streamlit", "run", str(script),
           "--server.headless", str(not open_browser).lower(), "--server.showEmailPrompt", "false",
           "--browser.gatherUsageStats", "false", "--server.address", address,
           # No file watcher: it would watch the whole install for hot reloads nobody needs here.
           "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    if port is not None:  # unset: Streamlit takes 8501, or the next free port
        cmd += ["--server.port", str(port)]
    return cmd


def dashboard(port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: 8501, or the next "
                                                                                 "free one).")] = None,
              address: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 serves other machines "
                                                         "too.")] = "127.0.0.1",
              open_browser: Annotated[bool, typer.Option("--open/--headless", help="Open a browser tab once the "
                                                         "server is up (default: headless, print the URL).")]
              = False) -> None:
    """Start the dashboard and print its URL (Ctrl+C stops it). Works without a terminal (scripts, containers)."""
    cmd = streamlit_command(port, address, open_browser)
    sys.stdout.flush()
    if os.name == "posix":  # become the server: Ctrl+C, signals and the exit status go straight to it
        os.execv(sys.executable, cmd)
    raise typer.Exit(subprocess.call(cmd))
