"""Real-browser check of the dashboard: start `streamlit run app.py` headless, load every page in Chromium,
assert plotly charts render and no Streamlit exception box appears, and save screenshots as artifacts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.fileWatcherType", "none", "--server.headless",
                             "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode(errors="replace")[-2000:])
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "Chromium is missing: install the Debian package `chromium` (.ci/run does) to run browser tests"
        if os.environ.get("CI"):  # CI installs it, so a missing browser there is a broken CI, not a skip
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def pages() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from capsim.ui.registry import PAGES
    return [p.url_path for p in PAGES]


def url_of(path: str) -> str:
    """The default (first) page is served at the root; the others at their url_path."""
    from capsim.ui.registry import PAGES
    return "" if path == PAGES[0].url_path else path


@pytest.mark.parametrize("path", pages())
def test_page_renders_charts_without_exceptions(server, browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/{url_of(path)}", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    _wait_idle(page)
    page.wait_for_timeout(1500)  # let the last reruns settle
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Streamlit scrolls inside its main container, so grow the viewport to the content for a whole-page picture.
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stAppViewContainer], section')].map(e => e.scrollHeight), 1000)")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 100, 12000)})
    page.wait_for_timeout(1000)  # charts resize to the new viewport
    page.screenshot(path=str(ARTIFACTS / f"{path}.png"), full_page=True)
    assert page.locator(".js-plotly-plot").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0, "a Streamlit exception box is on the page"
    assert page.get_by_text("Page not found").count() == 0
    _wait_idle(page)  # leave the server idle for the next page (a closed tab's script would run on)
    page.close()


def _wait_idle(page) -> None:  # noqa: ANN001
    """Wait until Streamlit's running indicator is gone (the page's script has finished)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')"
                           " || !document.querySelector('[data-testid=stStatusWidget]').innerText.includes('Running')",
                           timeout=180_000)
