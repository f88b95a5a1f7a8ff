"""The dashboard's pages in menu order (``menu.MENU``), each a module with a ``render()``, and ``main()``, the
app that ``app.py`` and ``capsim dashboard`` run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from capsim.ui import calibration, capacity, memory, overview, scaling, serving, training, whatif
from capsim.ui.common import last_resort
from capsim.ui.menu import MENU


@dataclass(frozen=True)
class Page:
    title: str
    url_path: str
    render: Callable[[], None]
    description: str = ""


RENDER: dict[str, Callable[[], None]] = {
    "overview": overview.render, "training": training.render, "serving": serving.render,
    "capacity": capacity.render, "whatif": whatif.render, "scaling": scaling.render, "memory": memory.render,
    "calibration": calibration.render,
}
PAGES = tuple(Page(e.title, e.url_path, RENDER[e.url_path], e.description) for e in MENU)


def main() -> None:
    """The Streamlit app: page config and the navigation between pages (each under the error net)."""
    st.set_page_config(page_title="capsim", layout="wide")
    st.navigation([st.Page(last_resort(p.render), title=p.title, url_path=p.url_path) for p in PAGES]).run()


__all__ = ["PAGES", "Page", "main"]
