"""Real-browser check of the dashboard: start it as a user does (``capsim dashboard``, headless, no terminal),
walk every page in Chromium with its defaults and with one input changed through the page's own widget, and
assert what a person would see: charts, no exception box, no warning or error on a default view, no infeasible
result shown with metrics or a cost, messages shown as written, every chart label inside its figure, log axes
ticked once per value (no "5 2 1 5 2"). Screenshots of each view are saved under artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
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
def server(tmp_path_factory):
    port = _free_port()
    home = tmp_path_factory.mktemp("home")  # a first run: no ~/.streamlit
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "capsim", "dashboard", "--port", str(port)], cwd=home, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the dashboard did not start")
    if proc.poll() is not None:
        pytest.fail("the dashboard exited: " + proc.stdout.read().decode(errors="replace")[-2000:])
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # the session this fixture started
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


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
    from capsim.ui.menu import MENU
    return [e.url_path for e in MENU]


def url_of(path: str) -> str:
    """The default (first) page is served at the root; the others at their url_path."""
    return "" if path == pages()[0] else path


def _radio(option: str) -> Callable:
    return lambda page: page.locator("[data-testid=stRadio]").get_by_text(option, exact=True).first.click()


def _number(label: str, value: str) -> Callable:
    def change(page) -> None:  # noqa: ANN001
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
    return change


# One input per page, changed through its widget, and what the change leads to.
CHANGES: dict[str, Callable] = {
    "overview": _radio("fp8"),
    "training": _radio("manual"),  # tp1 pp1 for a 70B model: infeasible, shown as such
    "serving": _number("Replicas", "2"),
    "capacity": _number("Peak rate (req/s)", "40.00"),
    "whatif": _radio("sparsity"),
    "scaling": _radio("training"),
    "memory": _number("GPUs", "16"),
    "calibration": _number("Group size for collectives stated for any group", "4"),
}

# Every text element of every plotly figure that pokes out of the figure's box (labels cut at an edge).
OUTSIDE_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const box = plot.querySelector('svg.main-svg').getBoundingClientRect();
    for (const t of plot.querySelectorAll('svg text')) {
      const r = t.getBoundingClientRect();
      if (r.width === 0 || !t.textContent.trim()) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
        out.push(t.textContent.trim());
    }
  }
  return out;
}"""

# Axis tick labels that a figure's legend covers.
UNDER_LEGEND_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const bg = plot.querySelector('g.legend rect.bg');
    if (!bg) continue;
    const l = bg.getBoundingClientRect();
    for (const t of plot.querySelectorAll('g.xtick text, g.ytick text')) {
      const r = t.getBoundingClientRect();
      if (r.width && r.left < l.right && r.right > l.left && r.top < l.bottom && r.bottom > l.top)
        out.push(t.textContent);
    }
  }
  return out;
}"""

# Tick labels of every log axis of every figure, as plotly drew them.
LOG_TICKS_JS = """() => {
  const axes = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const layout = plot._fullLayout || {};
    for (const [name, ax] of Object.entries(layout)) {
      if (!/^[xy]axis\\d*$/.test(name) || !ax || ax.type !== 'log') continue;
      const cls = name.replace('axis', '') + 'tick';
      const labels = [...plot.querySelectorAll('g.' + cls + ' text')].map(t => t.textContent);
      axes.push(labels);
    }
  }
  return axes;
}"""


SHOWN = ".js-plotly-plot, [data-testid=stAlertContentError], [data-testid=stException]"  # a result, or why not


def _wait_idle(page) -> None:  # noqa: ANN001
    """Wait until the page's script has finished: no running indicator, spinner or stale (greyed) element."""
    page.wait_for_timeout(800)  # a rerun starts after the widget's message reaches the server
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')"
                           " && !document.querySelector('[data-testid=stSpinner]')"
                           " && !document.querySelector('[data-stale=true]')", timeout=240_000)


def _screenshot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Streamlit scrolls inside its main container, so grow the viewport to the content for a whole-page picture.
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stAppViewContainer], section')].map(e => e.scrollHeight), 1000)")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 100, 12000)})
    page.wait_for_timeout(1200)  # charts resize to the new viewport
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _alerts(page, kind: str) -> list[str]:  # noqa: ANN001
    return [e.inner_text() for e in page.locator(f"[data-testid=stAlertContent{kind}]").all()]


def _check(page, default: bool) -> None:  # noqa: ANN001
    assert page.locator("[data-testid='stException']").count() == 0, "a Streamlit exception box is on the page"
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator(".js-plotly-plot").count() >= 1
    errors, warnings = _alerts(page, "Error"), _alerts(page, "Warning")
    if default:
        assert not errors and not warnings, (errors, warnings)
    if any("Infeasible" in e for e in errors):
        metrics = [m.inner_text() for m in page.locator("[data-testid=stMetric]").all()]
        assert not metrics, f"an infeasible result is shown with numbers: {metrics}"
    assert not page.evaluate(OUTSIDE_JS), "labels outside their figure"
    assert not page.evaluate(UNDER_LEGEND_JS), "tick labels under a legend"
    for labels in page.evaluate(LOG_TICKS_JS):
        assert len(labels) == len(set(labels)), f"a log axis repeats its tick labels: {labels}"


@pytest.mark.parametrize("path", pages())
def test_page_with_its_defaults_and_one_change(server, browser, path):
    """The page with its defaults, then, in the same tab as a person goes on, with one input changed through its
    widget: each view checked and saved (one page load per page: the default view is where the change starts)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/{url_of(path)}", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector(SHOWN, timeout=240_000)
    _wait_idle(page)
    page.wait_for_timeout(1000)  # let the charts draw
    _check(page, default=True)
    _screenshot(page, f"{path}-default")
    page.set_viewport_size({"width": 1400, "height": 1000})  # back to the window the page was opened in
    _wait_idle(page)
    before = page.url
    CHANGES[path](page)
    _wait_idle(page)
    page.wait_for_selector(SHOWN, timeout=240_000)
    assert page.url != before, "the change is kept in the page's link"
    page.wait_for_timeout(1000)  # let the charts draw
    _check(page, default=False)
    _screenshot(page, f"{path}-changed")
    _wait_idle(page)  # leave the server idle for the next page (a closed tab's script would run on)
    page.close()


def test_messages_are_shown_as_written(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/training?mode=manual&tp=3", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector("[data-testid=stAlertContentError]", timeout=120_000)
    _wait_idle(page)
    assert any("tp*pp*cp = 3 does not divide the 64 GPUs" in e for e in _alerts(page, "Error"))
    page.close()


def test_serving_pipeline_stages_through_the_widget(server, browser):
    """PP set through its own box runs the pipelined replica; a PP the model cannot take is one error line."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/serving?requests=60&loads=1", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector(SHOWN, timeout=240_000)
    _wait_idle(page)
    _number("PP stages per replica", "2")(page)
    _wait_idle(page)
    page.wait_for_selector(SHOWN, timeout=240_000)
    assert "pp=2" in page.url
    assert "TP 1 x PP 2" in page.locator("h3").first.inner_text()
    _check(page, default=True)
    _number("PP stages per replica", "3")(page)
    _wait_idle(page)
    assert "pp=3" in page.url
    alerts = _alerts(page, "Error")
    assert len(alerts) == 1 and "plan.pp: pp=3 does not divide 32 layers" in alerts[0], alerts
    assert "use pp in [1, 2, 4, 8, 16, 32]" in alerts[0]
    assert page.locator("[data-testid=stMetric]").count() == 0
    page.close()
