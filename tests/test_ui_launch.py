"""``capsim dashboard`` starts on a fresh machine (no Streamlit credentials file) with or without a terminal:
no first-run prompt, the server answers its health check, and the URL is printed."""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from capsim.cli.dashboard import streamlit_command

STARTUP_S = 90  # generous: a loaded 2-core machine imports Streamlit slowly


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


class _Reader(threading.Thread):
    """Collects everything a file descriptor yields (a pipe or a pseudo-terminal) until it closes."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.chunks = fd, []

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # a pseudo-terminal raises EIO once the other side is gone
                return
            if not data:
                return
            self.chunks.append(data)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


@pytest.mark.parametrize("terminal", [False, True], ids=["no-tty", "tty"])
def test_dashboard_starts_headless_and_prints_its_url(tmp_path: Path, terminal: bool):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env |= {"HOME": str(tmp_path), "USERPROFILE": str(tmp_path)}  # no ~/.streamlit: Streamlit's first run
    cmd = [sys.executable, "-m", "capsim", "dashboard", "--port", str(port)]
    if terminal:
        parent, child = pty.openpty()
        proc = subprocess.Popen(cmd, stdin=child, stdout=child, stderr=child, cwd=tmp_path, env=env,
                                start_new_session=True)
        os.close(child)
        reader = _Reader(parent)
    else:  # stdin from /dev/null and no controlling terminal, as in a script, a container or over ssh
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd=tmp_path, env=env, start_new_session=True)
        reader = _Reader(proc.stdout.fileno())
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _healthy(url) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert proc.poll() is None, f"the dashboard exited with {proc.returncode}: {reader.text()[-2000:]}"
        assert _healthy(url), f"no answer at {url} within {STARTUP_S} s: {reader.text()[-2000:]}"
        while url not in reader.text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert url in reader.text(), reader.text()
        assert "Email" not in reader.text()
        assert not (tmp_path / ".streamlit" / "credentials.toml").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the session this test started, nothing else
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if terminal:
            os.close(parent)


def test_the_command_is_headless_on_localhost_unless_asked():
    cmd = streamlit_command(None, "127.0.0.1", open_browser=False)
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert Path(cmd[4]).is_file() and Path(cmd[4]).parent.name == "script"
    assert opts["--server.headless"] == "true" and opts["--server.showEmailPrompt"] == "false"
    assert opts["--server.address"] == "127.0.0.1" and "--server.port" not in opts
    opened = dict(zip(*(lambda c: (c[5::2], c[6::2]))(streamlit_command(8600, "0.0.0.0", True)), strict=True))
    assert opened["--server.headless"] == "false" and opened["--server.showEmailPrompt"] == "false"
    assert opened["--server.port"] == "8600" and opened["--server.address"] == "0.0.0.0"
