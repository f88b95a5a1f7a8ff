"""Pieces every page shares: the model picker, error display, and the download buttons."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from capsim.analytic.training import DEFAULT_FRAMEWORK, FrameworkName
from capsim.errors import SpecError
from capsim.specs.catalog import get_model, models
from capsim.specs.hf import from_hf_config
from capsim.specs.model import ModelSpec
from capsim.ui import fmt
from capsim.ui.fmt import plain_md
from capsim.ui.state import select

T = TypeVar("T")
CATALOG, UPLOAD = "catalog", "config.json"


def show_error(err: Exception, where: Any = st) -> None:
    """A SpecError as field, problem and fix; anything else as its message (never a traceback), as plain text."""
    if isinstance(err, SpecError):
        text = f"**{plain_md(err.field)}**: {plain_md(err.problem)}"
        if err.fix:
            text += f"  \nFix: {plain_md(err.fix)}"
        where.error(text)
    else:
        where.error(plain_md(f"{type(err).__name__}: {err}"))


def infeasible(reason: str, change: str | None, where: Any = st) -> None:
    """The box an infeasible result gets instead of its numbers: why, and the nearest change that works."""
    text = f"**Infeasible**: {plain_md(reason)}"
    if change:
        text += f"  \n**Nearest feasible change**: {plain_md(change)}"
    where.error(text, icon=":material/block:")


def stop(err: Exception) -> NoReturn:
    show_error(err)
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises


def last_resort(render: Callable[[], None]) -> Callable[[], None]:
    """``render`` with any unexpected error shown as one short line instead of a traceback (pages catch
    SpecError themselves; this is the net under them)."""
    def page() -> None:
        try:
            render()
        except Exception as err:  # noqa: BLE001 - the dashboard must never show a traceback
            st.error(plain_md(f"This page hit an unexpected error: {type(err).__name__}: {str(err)[:300]}"))

    page.__name__ = f"{render.__module__.rsplit('.', 1)[-1]}_page"
    return page


def checked(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or the page stops with the SpecError's message."""
    try:
        return fn(*args, **kwargs)
    except SpecError as err:
        stop(err)


def framework_input(where: Any = st) -> str:
    """The framework release a page prices training under (``--framework``: a preset, by default the CLI's), its
    choice in the URL under ``fw``; every training price on the page runs the plan as that release does."""
    return select("Framework", [f.value for f in FrameworkName], "fw", DEFAULT_FRAMEWORK.value, where=where,
                  help="The release whose recipes, features and overlap facts price the plan (as capsim train "
                       "--framework); a format or feature it lacks is refused with the reason.")


def model_input(where: Any = st, default: str = "llama-2-7b", key: str = "model") -> ModelSpec:
    """A catalog model, or one read from an uploaded Hugging Face config.json (stops the page until there is one)."""
    src = select("Model from", [CATALOG, UPLOAD], f"{key}_src", CATALOG, where=where, radio=True,
                 help="A catalog model, or a Hugging Face config.json from your disk (uploads are not kept in "
                      "the page's link).")
    if src == CATALOG:
        return get_model(select("Model", list(models()), key, default, where=where))
    upload = where.file_uploader("config.json", type=["json"], key=f"{key}_file")
    if upload is None:
        st.info("Upload a Hugging Face config.json (an unsupported family is named, with the ones capsim reads).")
        st.stop()
    return checked(hf_model, upload.getvalue().decode("utf-8", errors="replace"), Path(upload.name).stem)


def parse_numbers(value: str, field: str, example: str, integer: bool = False, most: int = 24
                  ) -> tuple[float, ...] | tuple[int, ...]:
    """A comma-separated list of positive numbers (sorted, distinct), or a SpecError naming ``field``."""
    kind = int if integer else float
    try:
        numbers = tuple(sorted({kind(float(x)) if integer and float(x).is_integer() else kind(x)
                                for x in value.replace(" ", "").split(",") if x}))
    except ValueError:
        raise SpecError(field, f"{value!r} is not a comma-separated list of {'integers' if integer else 'numbers'}",
                        f"write e.g. {example}") from None
    if not numbers or min(numbers) <= 0 or len(numbers) > most:
        raise SpecError(field, f"{value!r} needs 1 to {most} positive values", f"write e.g. {example}")
    return numbers


# The requests' sampling choices (`capsim serve/plan serve --sampling`): vLLM's default (random) first.
SAMPLINGS = ("random", "greedy", "top-k", "top-p", "random+penalties", "greedy+penalties", "top-k+penalties",
             "top-p+penalties")
SAMPLING_HELP = ("The requests' sampling parameters, as `--sampling`: greedy (temperature 0), random (vLLM's "
                 "default), top-k, top-p; +penalties adds repetition/frequency/presence penalties.")


def preset_traffic(preset: str, rate_rps: float, requests: int | None = None, sampling: str = "random") -> Any:
    """The planner's Traffic at ``rate_rps`` with a workload preset's lengths (a trace preset: its lengths
    sampled) and the requests' sampling, as ``capsim plan serve --workload --sampling`` builds it."""
    from capsim.plan.serving import Traffic
    from capsim.sim.serving.presets import get_preset

    lengths = get_preset(preset).lengths
    if isinstance(lengths, str):
        return Traffic(rate_rps, None, lengths, requests=requests, sampling=sampling)
    return Traffic(rate_rps, lengths, requests=requests, sampling=sampling)


def json_object(text: str, field: str, fix: str) -> dict:
    """An uploaded file's JSON object, or a SpecError naming the file and the fix."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(field, f"not valid JSON ({err.msg}, line {err.lineno})", fix) from None
    if not isinstance(data, dict):
        raise SpecError(field, "holds no JSON object", fix)
    return data


def use_in_link(values: dict[str, Any]) -> None:
    """Button callback: put ``values`` in the page's link and let the widgets take them from there on the rerun
    (their remembered state is dropped, so the link wins)."""
    for key, value in values.items():
        st.query_params[key] = str(value).lower() if isinstance(value, bool | np.bool_) else str(value)
        st.session_state.pop(key, None)


def show_table(df: pd.DataFrame, columns: list[str] | None = None, where: Any = st,
               height: int | None = None) -> None:
    """A results table (optionally some columns) in people's units and formats, infeasible rows without results
    (``fmt.display_table``); the data itself is unchanged in the downloads."""
    df = fmt.mask_infeasible(df)
    shown, specs = fmt.display_table(df if columns is None else df[[c for c in columns if c in df.columns]])
    config: dict[str, Any] = {}
    for col, spec in specs.items():
        if "format" in spec:
            config[col] = st.column_config.NumberColumn(spec["label"], format=spec["format"])
        elif shown[col].dtype == bool:
            config[col] = st.column_config.CheckboxColumn(spec["label"])
        else:
            config[col] = st.column_config.Column(spec["label"])
    kwargs = {"height": height} if height else {}
    where.dataframe(shown, hide_index=True, column_config=config, **kwargs)


def table_with_downloads(df: pd.DataFrame, stem: str, columns: list[str] | None = None) -> None:
    """A results table (optionally some columns) with its CSV/JSON downloads (all columns)."""
    show_table(df, columns)
    downloads(stem, df, None, key=stem, what="table")


def hf_model(text: str, name: str) -> ModelSpec:
    cfg = json_object(text, "config.json", "upload the model's config.json as published on the Hugging Face Hub")
    return from_hf_config(cfg, name=str(cfg.get("_name_or_path") or name))


def money(usd: float) -> str:
    """$ amounts short enough for a metric tile: $950, $12.3k, $1.60M, $2.1B."""
    if not math.isfinite(usd):
        return "no price"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(usd) >= scale:
            return f"${usd / scale:.3g}{suffix}"
    return f"${usd:.3g}"


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, NaN and inf to None, enums to their values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def downloads(stem: str, table: pd.DataFrame | None = None, payload: dict[str, Any] | None = None,
              where: Any = st, key: str = "", what: str = "") -> None:
    """CSV of ``table`` and JSON of ``payload`` (or of the table) as download buttons labelled with ``what``.
    The files are written when a button is clicked, not on every rerun."""
    cols = where.columns([1, 1, 2])
    what = f"{what} " if what else ""
    icon = ":material/download:"
    if table is not None:
        cols[0].download_button(f"{what}CSV", lambda: table.to_csv(index=False), f"{stem}.csv", "text/csv",
                                key=f"csv_{key or stem}", icon=icon, width="stretch", on_click="ignore")

    def as_json() -> str:
        data = payload if payload is not None else {"rows": table.to_dict("records") if table is not None else []}
        return json.dumps(plain(data), indent=1)

    cols[1].download_button(f"{what}JSON", as_json, f"{stem}.json", "application/json", key=f"json_{key or stem}",
                            icon=icon, width="stretch", on_click="ignore")


__all__ = ["checked", "downloads", "framework_input", "hf_model", "infeasible", "last_resort", "model_input", "money", "parse_numbers",
           "plain", "plain_md", "SAMPLINGS", "preset_traffic", "show_error", "show_table", "stop", "table_with_downloads",
           "use_in_link"]
