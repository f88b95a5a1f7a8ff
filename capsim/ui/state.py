"""URL query-parameter state, so a view can be shared by its link.

Each input widget here takes its first value from the URL when the URL holds a valid one (a warning names any
value it cannot use), and writes its current value back, so the address bar always reproduces the view.
Uploaded files cannot travel in a link; pages say so where they take one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

from capsim.ui.fmt import plain_md

T = TypeVar("T")


def query_default(key: str, default: str) -> str:
    value = st.query_params.get(key)
    return default if value is None else str(value)


def sync_query(**values: object) -> None:
    for key, value in values.items():
        text = _text(value)
        if st.query_params.get(key) != text:
            st.query_params[key] = text


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ignored(key: str, raw: str, why: str) -> None:
    st.warning(plain_md(f"Ignored the link's {key}={raw}: {why}; using the default."))


def select(label: str, options: Sequence[T], key: str, default: T, where: Any = st, radio: bool = False,
           format_func: Callable[[T], str] = str, help: str | None = None) -> T:
    """A selectbox (or radio) whose choice lives in the URL under ``key``."""
    options = list(options)
    index = options.index(default)
    raw = st.query_params.get(key)
    if raw is not None:
        names = [_text(o) for o in options]
        if raw in names:
            index = names.index(raw)
        else:
            _ignored(key, raw, f"not one of {', '.join(names[:8])}{'...' if len(names) > 8 else ''}")
    widget = where.radio if radio else where.selectbox
    kwargs = {"horizontal": True} if radio else {}
    value = widget(label, options, index=index, key=key, format_func=format_func, help=help, **kwargs)
    sync_query(**{key: value})
    return value


def number(label: str, key: str, default: int | float, low: int | float, high: int | float | None = None,
           where: Any = st, step: int | float | None = None, help: str | None = None,
           fmt: str | None = None) -> Any:
    """A number input (int when ``default`` is an int) whose value lives in the URL under ``key``."""
    kind = int if isinstance(default, int) else float
    value = default
    raw = st.query_params.get(key)
    if raw is not None:
        try:
            parsed = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
        except ValueError:
            _ignored(key, raw, f"not a{'n integer' if kind is int else ' number'}")
        else:
            if parsed < low or (high is not None and parsed > high):
                _ignored(key, raw, f"outside {low}..{high if high is not None else 'inf'}")
            else:
                value = parsed
    kwargs: dict[str, Any] = {"min_value": kind(low), "value": value, "key": key, "help": help}
    if high is not None:
        kwargs["max_value"] = kind(high)
    if step is not None:
        kwargs["step"] = kind(step)
    if fmt is not None:
        kwargs["format"] = fmt
    out = where.number_input(label, **kwargs)
    sync_query(**{key: out})
    return out


def flag(label: str, key: str, default: bool, where: Any = st, help: str | None = None) -> bool:
    """A checkbox whose state lives in the URL under ``key`` (``true``/``false``)."""
    value = default
    raw = st.query_params.get(key)
    if raw is not None:
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            _ignored(key, raw, "not true or false")
    out = where.checkbox(label, value=value, key=key, help=help)
    sync_query(**{key: out})
    return bool(out)


def multi(label: str, options: Sequence[str], key: str, default: Sequence[str], where: Any = st,
          help: str | None = None) -> list[str]:
    """A multiselect whose choices live in the URL under ``key``, comma-separated."""
    options = list(options)
    chosen = list(default)
    raw = st.query_params.get(key)
    if raw is not None:
        picked = [x for x in raw.split(",") if x]
        unknown = [x for x in picked if x not in options]
        if unknown:
            _ignored(key, raw, f"{', '.join(unknown)} not among the choices")
        else:
            chosen = picked
    out = where.multiselect(label, options, default=chosen, key=key, help=help)
    sync_query(**{key: ",".join(out)})
    return list(out)


def text(label: str, key: str, default: str, where: Any = st, help: str | None = None) -> str:
    """A text input whose value lives in the URL under ``key`` (the page validates it)."""
    raw = st.query_params.get(key)
    out = where.text_input(label, value=default if raw is None else raw, key=key, help=help)
    sync_query(**{key: out})
    return out


__all__ = ["flag", "multi", "number", "query_default", "select", "sync_query", "text"]
