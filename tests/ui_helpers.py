"""Helpers the dashboard's AppTest suites share: run one page with a link's query, read what it shows."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest


def page(module: str, timeout: float = 120, **query: str) -> AppTest:
    at = AppTest.from_string(f"from capsim.ui.{module} import render\nrender()", default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def shown(markdown: str) -> str:
    """What a person reads: the page escapes every punctuation mark so its messages are never read as markdown."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at: AppTest) -> str:
    return " ".join(shown(e.value) for e in at.error)


def param(at: AppTest, key: str) -> str:
    """A query parameter of the page's link (AppTest before Streamlit 1.5x returns a list of values)."""
    value = at.query_params[key]
    return value[-1] if isinstance(value, list) else value
