"""URL query-parameter state, so a view can be shared by its link."""

from __future__ import annotations

import streamlit as st


def query_default(key: str, default: str) -> str:
    value = st.query_params.get(key)
    return default if value is None else str(value)


def sync_query(**values: object) -> None:
    for key, value in values.items():
        if st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)
