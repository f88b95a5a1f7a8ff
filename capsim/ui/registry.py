"""The dashboard's pages, in menu order: one module per page, each with a ``render()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from capsim.ui import memory, overview


@dataclass(frozen=True)
class Page:
    title: str
    url_path: str
    render: Callable[[], None]


PAGES = (
    Page("Overview", "overview", overview.render),
    Page("Memory per GPU", "memory", memory.render),
)
