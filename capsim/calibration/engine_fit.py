"""Fit an engine's host (CPU-side) terms to measured runs, holding the device calibration fixed.

The rows (:mod:`capsim.calibration.engine_obs`) say ``measured - device = features @ terms`` for the four terms
``step_s`` (per engine step), ``sequence_s`` (per sequence in a step), ``prefill_token_s`` (per prompt token
computed in a step) and ``ttft_offset_s`` (added once to every TTFT by the server and the client). They are solved
by non-negative least squares (``scipy.optimize.nnls``) on errors relative to each measured value, so a long
request does not outweigh a short one. A term fewer than ``MIN_ROWS`` rows involve is not fitted: one row fixes a term
exactly, whatever its error, and leaves nothing to judge it by (a run at 0.6 of saturation has one request or none
that found the engine idle, the only rows that hold ``ttft_offset_s``), so the term keeps the base profile's value
(``prior``: the value its source measured) and is said to; terms the rows involve but cannot tell apart (scaled
design matrix condition number above ``MAX_CONDITION``) are refused, with the run that would separate them.

:func:`minimax_floor` answers the question a miss raises: could any values of these terms have fitted the rows?
It is the least worst-row relative error that non-negative terms reach on the rows given (a Chebyshev fit, by linear
programming), so rows whose floor is above a target cannot all meet it by any fit of these terms, on any data.

The fit holds the device calibration fixed, and that is what lets it tell the host terms apart from the device's own
time: each term's feature grows with the device work of the same rows (prompt tokens with the prompts' forward,
steps and sequences with the decodes'). ``EngineFit.confounded`` says how far: each term's standard error when the
device's price of that work is left free as well (one scale for the prompts, one for the decodes), so a term whose
value is within it could as well be an error of the device calibration of that size, which the rows cannot tell
from a host cost, and which need not hold at another load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog, nnls

from capsim.calibration.engine_obs import KIND_NAMES, TERMS, Observations
from capsim.errors import SpecError

MAX_CONDITION = 1e3
# Rows a term must appear in to be fitted: with one, the row's own error becomes the term (zero degrees of freedom).
MIN_ROWS = 2
# What run separates a term from the others, by term.
ADVICE = {
    "step_s": "runs with different numbers of sequences per step: add one with many requests at once "
              "(vllm bench serve --max-concurrency 16, or a request rate near saturation)",
    "sequence_s": "runs with different numbers of sequences per step: add one with many requests at once "
                  "(vllm bench serve --max-concurrency 16, or a request rate near saturation)",
    "prefill_token_s": "prompts of different lengths computed in the steps: add a run with varied prompt lengths "
                       "(--random-range-ratio 0.5) at a moderate rate",
    "ttft_offset_s": "requests that found the engine idle: add a run at low load (vllm bench serve "
                     "--max-concurrency 1)",
}


@dataclass(frozen=True)
class EngineFit:
    """Fitted host terms, which terms the data fixed, and how well the rows fit."""

    terms: dict[str, float]
    fitted: tuple[str, ...]  # terms the rows determined
    not_in_data: tuple[str, ...]  # terms fewer than MIN_ROWS rows involve: kept at the prior's value (held)
    condition: float
    rows: dict[str, int]  # rows by kind
    residuals: dict[str, dict[str, float]]  # run -> kind -> rms relative error (and "all")
    runs: tuple[str, ...] = field(default=())
    # Standard error of each fitted term from the rows' own scatter (least squares: residual variance x the inverse
    # normal matrix). It says how well the rows fix a term, not how the term moves between runs of another load or
    # time (the vLLM-CPU runs' decode steps differ by up to 18% at one batch size: benchmarks/vllm_cpu_run_drift.py).
    stderr: dict[str, float] = field(default_factory=dict)
    # Standard error of each fitted term with the device's price of the same work free as well (a scale on the
    # rows' prompt device time for prefill_token_s, on their decode device time for step_s and sequence_s): how well
    # the rows tell the term from an error of the device calibration (module docstring).
    confounded: dict[str, float] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # term not fitted -> the rows that involve it (< MIN_ROWS)

    def to_dict(self) -> dict[str, Any]:
        return {"terms": dict(self.terms), "fitted": list(self.fitted), "not_in_data": list(self.not_in_data),
                "condition": self.condition, "rows": dict(self.rows), "residuals": self.residuals,
                "runs": list(self.runs), "stderr": dict(self.stderr), "confounded": dict(self.confounded),
                "held": dict(self.held)}

    def describe_terms(self) -> str:
        """Each term in ms, with its standard error where the rows fixed it, or why it was not fitted."""
        return ", ".join(f"{k} {v * 1e3:.4g} ms" + (f" (+-{self.stderr[k] * 1e3:.2g})" if k in self.stderr else "")
                         + (f" (held at the base profile's value: {_rows(self.held[k])}, not fitted)"
                            if k in self.held else "")
                         for k, v in self.terms.items())

    def describe_confounded(self) -> str:
        """Each term's standard error with the device's price of the same work free, in ms ('' if not computed)."""
        if not self.confounded:
            return ""
        return ("with the device's price of the same work free (a scale on the prompts', one on the decodes'), "
                "the rows fix " + ", ".join(f"{k} to +-{v * 1e3:.2g} ms" for k, v in self.confounded.items()))


def _rows(n: int) -> str:
    return "no row involves it" if n == 0 else f"{n} row involves it" if n == 1 else f"only {n} rows involve it"


def _stderr(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Least-squares standard errors of ``theta`` for the weighted system ``a @ theta = b``."""
    dof = a.shape[0] - a.shape[1]
    if dof <= 0:
        return np.full(a.shape[1], np.inf)
    r = b - a @ theta
    cov = (r @ r / dof) * np.linalg.pinv(a.T @ a)
    return np.sqrt(np.maximum(np.diag(cov), 0.0))


DEVICE_PART = {"step_s": "decode", "sequence_s": "decode", "prefill_token_s": "prompt"}  # the work a term rides on


def _confounded(a: np.ndarray, b: np.ndarray, names: list[str], device: dict[str, np.ndarray]) -> dict[str, float]:
    """Standard error of each term of ``names`` in the weighted system ``a @ theta = b`` with the device's time of
    the work it rides on (``device``: weighted columns by part) added as free columns (unconstrained least
    squares, as ``_stderr``)."""
    extra = [c for part, c in device.items() if np.any(c != 0) and any(DEVICE_PART.get(n) == part for n in names)]
    if not extra:
        return {}
    full = np.hstack([a, np.stack(extra, axis=1)])
    s = np.linalg.svd(full / np.maximum(np.linalg.norm(full, axis=0), 1e-300), compute_uv=False)
    if s[-1] <= 1e-10 * s[0]:  # a term's feature proportional to the device's time: nothing tells them apart
        return {n: float("inf") for n in names if n in DEVICE_PART}
    theta = np.linalg.lstsq(full, b, rcond=None)[0]
    se = _stderr(full, b, theta)
    return {n: float(se[i]) for i, n in enumerate(names) if n in DEVICE_PART}


def _stack(obs: list[Observations]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y = np.concatenate([o.measured_s for o in obs])
    base = np.concatenate([o.base_s for o in obs])
    x = np.concatenate([o.features for o in obs])
    kind = np.concatenate([o.kind for o in obs])
    run = np.concatenate([np.full(o.rows, i) for i, o in enumerate(obs)])
    return y, base, x, kind, run


def _refuse(names: list[str], v: np.ndarray, condition: float) -> SpecError:
    """The terms the weakest direction mixes, and the runs that would separate them."""
    mixed = [names[i] for i in np.flatnonzero(np.abs(v) > 0.3)] or names
    advice = "; ".join(dict.fromkeys(ADVICE[t] for t in mixed))
    return SpecError("--from", f"the runs cannot separate {', '.join(mixed)} (condition number {condition:.3g})",
                     advice)


def fit_engine_terms(obs: list[Observations], prior: dict[str, float] | None = None) -> EngineFit:
    """Non-negative least squares of the host terms over every row of every run; a term fewer than ``MIN_ROWS``
    rows involve keeps its ``prior`` value (the base profile's; 0 where none is given) and is not fitted."""
    if not obs or sum(o.rows for o in obs) == 0:
        raise SpecError("--from", "the files hold no usable rows (no request with two or more tokens, and none "
                        "that found the engine idle)", ADVICE["ttft_offset_s"])
    y, base, x, kind, run = _stack(obs)
    counts = np.count_nonzero(x, axis=0)
    held = {TERMS[j]: int(counts[j]) for j in range(len(TERMS)) if counts[j] < MIN_ROWS}
    fixed = np.array([(prior or {}).get(t, 0.0) if t in held else 0.0 for t in TERMS])
    device, base = base, base + x @ fixed  # a held term's time is the prior's: the fit does not touch it
    w = 1.0 / np.maximum(y, 1e-9)  # relative errors
    a, b = x * w[:, None], (y - base) * w
    present = [j for j in range(len(TERMS)) if TERMS[j] not in held]
    names = [TERMS[j] for j in present]
    if not names:
        raise SpecError("--from", f"every host term is involved in fewer than {MIN_ROWS} rows", ADVICE["step_s"])
    scaled = a[:, present] / np.linalg.norm(a[:, present], axis=0)
    _u, s, vt = np.linalg.svd(scaled, full_matrices=False)
    condition = float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
    if condition > MAX_CONDITION:
        raise _refuse(names, vt[-1], condition)
    theta, _ = nnls(a[:, present], b)
    terms = dict(zip(TERMS, map(float, fixed), strict=True))
    terms.update({n: float(v) for n, v in zip(names, theta, strict=True)})
    pred = base + x[:, present] @ theta
    rel = (pred - y) / np.maximum(y, 1e-9)
    residuals: dict[str, dict[str, float]] = {}
    for i, o in enumerate(obs):
        mine = run == i
        r = {KIND_NAMES[k]: float(np.sqrt(np.mean(rel[mine & (kind == k)] ** 2)))
             for k in np.unique(kind[mine])}
        r["all"] = float(np.sqrt(np.mean(rel[mine] ** 2)))
        residuals[o.name] = r
    rows = {KIND_NAMES[k]: int(np.sum(kind == k)) for k in np.unique(kind)}
    se = dict(zip(names, map(float, _stderr(a[:, present], b, theta)), strict=True))
    conf: dict[str, float] = {}
    if all(o.prompt_s is not None for o in obs):
        prompt = np.concatenate([o.prompt_s for o in obs])
        conf = _confounded(a[:, present], b, names, {"prompt": prompt * w, "decode": (device - prompt) * w})
    return EngineFit(terms, tuple(names), tuple(held), condition, rows, residuals, tuple(o.name for o in obs), se,
                     conf, held)


def minimax_floor(obs: list[Observations]) -> tuple[float, dict[str, float]]:
    """(the least, over every non-negative value of the terms the rows involve, of the largest relative error of a
    row; the terms that reach it). A floor for any fit of these terms to these rows (Chebyshev approximation as a
    linear program: minimise t subject to -t <= (base + features @ terms - measured) / measured <= t)."""
    y, base, x, _kind, _run = _stack(obs)
    present = [j for j in range(len(TERMS)) if np.any(x[:, j] != 0)]
    a, b = x[:, present] / y[:, None], (y - base) / y
    k = len(present)
    ones = np.ones((len(b), 1))
    res = linprog(np.r_[np.zeros(k), 1.0], A_ub=np.vstack([np.hstack([a, -ones]), np.hstack([-a, -ones])]),
                  b_ub=np.r_[b, -b], bounds=[(0.0, None)] * (k + 1), method="highs")
    if not res.success:  # a bounded, feasible LP (t large enough is always feasible): only a solver failure
        raise RuntimeError(f"minimax fit failed: {res.message}")
    terms = dict.fromkeys(TERMS, 0.0)
    terms.update({TERMS[j]: float(v) for j, v in zip(present, res.x[:k], strict=True)})
    return float(res.x[-1]), terms


__all__ = ["ADVICE", "MAX_CONDITION", "MIN_ROWS", "EngineFit", "fit_engine_terms", "minimax_floor"]
