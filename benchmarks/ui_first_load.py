"""A newcomer's first minute with the dashboard: start ``capsim dashboard`` as the README does (no terminal, a
fresh HOME, so Streamlit's first run), time until it prints its URL, then each page's first load in headless
Chromium (page requested -> charts drawn and the script idle). Each repeat starts a fresh server; medians.

    python benchmarks/ui_first_load.py [--repeats 3]

Needs Chromium and playwright (the dev extras). Wall-clock seconds: on a shared machine, read them with its load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import report  # noqa: E402
from capsim.ui.menu import MENU  # noqa: E402

IDLE = ("() => document.querySelector('.js-plotly-plot') && !document.querySelector('[data-testid=stStatusWidget]')"
        " && !document.querySelector('[data-stale=true]')")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(chromium: str) -> dict[str, float]:
    """Seconds to the printed URL, and each page's first load, on a fresh server."""
    from playwright.sync_api import sync_playwright

    home, port = tempfile.mkdtemp(), _port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "capsim", "dashboard", "--port", str(port)], cwd=home,
                            env={**os.environ, "HOME": home}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    printed = threading.Event()
    threading.Thread(target=lambda: [printed.set() for line in proc.stdout if b"URL:" in line], daemon=True).start()
    out: dict[str, float] = {}
    try:
        if not printed.wait(300):
            raise RuntimeError("the dashboard printed no URL within 300 s")
        out["url printed s"] = time.monotonic() - t0
        url = f"http://127.0.0.1:{port}"
        while urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read() != b"ok":
            time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox",
                                                                         "--disable-gpu"])
            for i, entry in enumerate(MENU):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t = time.monotonic()
                page.goto(f"{url}/{'' if i == 0 else entry.url_path}")
                page.wait_for_function(IDLE, timeout=600_000, polling=100)
                out[f"first load {entry.url_path} s"] = time.monotonic() - t
                page.close()
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is missing (apt-get install chromium)")
    runs = [one_run(chromium) for _ in range(parser.parse_args().repeats)]
    if hasattr(os, "getloadavg"):
        report("load average at the end", round(os.getloadavg()[0], 1))
    for name in runs[0]:
        if name != f"first load {MENU[0].url_path} s":
            report(name, round(statistics.median(r[name] for r in runs), 1))
    report(f"first load {MENU[0].url_path} s", round(statistics.median(r[f"first load {MENU[0].url_path} s"]
                                                                        for r in runs), 1))


if __name__ == "__main__":
    main()
