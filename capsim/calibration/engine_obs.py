"""A measured serving run taken apart into engine steps: what the engine-calibration fit reads.

The client saw every token of every request arrive (``vllm bench serve``'s ITLs; a per-request CSV gives only TTFT
and TPOT, so its tokens are spread evenly between the first and the last). A continuous-batching engine emits one
token of every running sequence per step, so the gap between two tokens of one request spans one engine step (with
chunked prefill, V1) or one decode step plus the prompt steps that ran between them (prefill-priority engines, V0):
its shape is read off the other requests' tokens inside the gap (each decode emits one; each prompt that completed
emits its first). Two kinds of rows come out, each linear in the engine's host terms:

- a request's decode window: the sum of its gaps (E2E - TTFT) = sum over its steps of
  device(step) + step_s + sequence_s x sequences + prefill_token_s x prompt tokens;
- a request that found the engine idle (nobody else in flight when it was sent, nobody sent before its first token):
  TTFT = ttft_offset_s + device(its prompt step) + step_s + sequence_s + prefill_token_s x its prompt.

Approximations (said where the fit is reported): a prompt is computed in the step that emits its first token
(chunks of prompts longer than the token budget are not placed earlier); a chunk the client received holding
several tokens counts as one emission; a request's gaps see the client's timing jitter at their edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from capsim.analytic.serving import StepShape
from capsim.data.bench import BenchRun
from capsim.errors import SpecError

TERMS = ("step_s", "sequence_s", "prefill_token_s", "ttft_offset_s")
DECODE, IDLE_TTFT, STEP = 0, 1, 2  # row kinds
KIND_NAMES = {DECODE: "decode windows", IDLE_TTFT: "TTFT from idle", STEP: "single steps"}
CLUSTER_TOL_S = 2e-3  # first tokens of one prompt step reach the client within this of each other
DeviceTime = Callable[[StepShape], np.ndarray]  # seconds of each step shape: device work only, no host terms
# (step token counts, logit rows) -> seconds a step of that shape pays the first time it runs (new GEMM shapes:
# capsim.analytic.step_table.first_call_costs); None where the calibration measured none
FirstCalls = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Observations:
    """Rows of the linear system ``measured - base = features @ terms`` (one run, or single steps)."""

    name: str
    measured_s: np.ndarray
    base_s: np.ndarray  # device time the rows include (the engine's host terms left out)
    features: np.ndarray  # (rows, len(TERMS)): steps, sequences, prefill tokens, TTFT offsets
    kind: np.ndarray
    # The part of base_s that prices the rows' prompts (the rest prices their decodes): what a host term per prompt
    # token is told apart from, or not (engine_fit._confounded).
    prompt_s: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.measured_s)


@dataclass(frozen=True)
class _Events:
    """Every token emission the client saw, sorted by time, with prefix sums for counting inside a window."""

    time: np.ndarray
    first: np.ndarray  # prefix count of first tokens (prompt steps)
    dec: np.ndarray  # prefix count of decode tokens
    prompt: np.ndarray  # prefix sum of prompt tokens over first tokens
    pairs: np.ndarray  # prefix sum of causal pairs over first tokens
    ctx: np.ndarray  # prefix sum of (context + 1) over decode tokens
    clusters: np.ndarray  # prefix count of prompt steps (first tokens more than CLUSTER_TOL_S apart)


def _prefix(x: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(x, dtype=float)])


def emissions(run: BenchRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, request, token index) of every emission, in request order; index 0 is the first token."""
    if run.sent_s is None:
        raise SpecError(run.path, "records no send times, so its requests cannot be placed in time (its arrivals "
                        "were drawn by the client at a request rate)", "fit on a run whose files record send times "
                        "(vllm bench serve 0.32 --save-detailed, GenAI-Perf, AIPerf, a per-request CSV) or whose "
                        "client fixes them (request rate inf, with or without --max-concurrency)")
    n = run.size
    if run.itl_s is not None and run.itl_counts is not None:
        counts = run.itl_counts
        gaps = run.itl_s
    else:  # tokens spread evenly from the first to the last (TPOT per request)
        counts = np.maximum(run.output_tokens - 1, 0)
        tpot = np.where(counts > 0, (run.e2e_s - run.ttft_s) / np.maximum(counts, 1), 0.0)
        gaps = np.repeat(tpot, counts)
    req = np.repeat(np.arange(n), counts + 1)
    starts = np.cumsum(counts + 1) - (counts + 1)
    k = np.arange(len(req)) - starts[req]
    steps = np.zeros(len(req))
    steps[np.flatnonzero(k > 0)] = gaps
    offset = np.cumsum(steps)
    offset -= offset[starts][req]
    return run.sent_s[req] + run.ttft_s[req] + offset, req, k


def _events(run: BenchRun, t: np.ndarray, req: np.ndarray, k: np.ndarray) -> _Events:
    order = np.argsort(t, kind="stable")
    t, req, k = t[order], req[order], k[order]
    first = k == 0
    p = run.prompt_tokens[req].astype(float)
    ft = t[first]
    new_cluster = np.zeros(len(t), bool)
    new_cluster[np.flatnonzero(first)] = np.diff(np.concatenate([[-np.inf], ft])) > CLUSTER_TOL_S
    return _Events(t, _prefix(first), _prefix(~first), _prefix(np.where(first, p, 0.0)),
                   _prefix(np.where(first, p * (p + 1) / 2, 0.0)), _prefix(np.where(first, 0.0, p + k + 1.0)),
                   _prefix(new_cluster))


def _window(ev: _Events, lo_t: np.ndarray, hi_t: np.ndarray) -> dict[str, np.ndarray]:
    """Counts and sums of the emissions in (lo_t, hi_t]."""
    lo, hi = np.searchsorted(ev.time, lo_t, "right"), np.searchsorted(ev.time, hi_t, "right")
    return {name: getattr(ev, name)[hi] - getattr(ev, name)[lo]
            for name in ("first", "dec", "prompt", "pairs", "ctx", "clusters")}


def _gaps(ev: _Events, t: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(index of every emission that ends a gap, the emissions inside each gap's step window)."""
    gap = np.flatnonzero(k > 0)
    # The other requests' tokens of the same step reach the client a little before or after this one's: the window
    # is shifted by half the clustering tolerance (at most a quarter of the gap) so they count in its own step.
    eps = np.minimum(CLUSTER_TOL_S / 2, 0.25 * (t[gap] - t[gap - 1]))
    return gap, _window(ev, t[gap - 1] + eps, t[gap] + eps)


def _first_seen(time: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Whether each step (at ``time``, of shape ``key``) is the first of its shape: within the clustering tolerance
    of the earliest step of that shape (one step's emissions reach the client that close together). A step at an
    infinite time (a placeholder for one that did not run) is never first."""
    keys, inverse = np.unique(key, return_inverse=True)
    earliest = np.full(len(keys), np.inf)
    np.minimum.at(earliest, inverse, time)
    ran = np.isfinite(time)
    first = np.zeros(len(time), bool)
    first[ran] = time[ran] - earliest[inverse[ran]] <= CLUSTER_TOL_S
    return first


def first_call_extras(run: BenchRun, ev: _Events, t: np.ndarray, k: np.ndarray,
                      first_calls: FirstCalls) -> tuple[np.ndarray, np.ndarray]:
    """(seconds each gap's step, each request's prompt step pays for shapes run there first): the replay's
    once-per-shape first calls (capsim.sim.serving.replica: each new step token count and logit row count),
    placed on the steps the run took apart, in time order (chunked-prefill steps: a gap spans one step)."""
    gap, w = _gaps(ev, t, k)
    alone = _idle(run)  # a request that found the engine idle ran its prompt step alone; others' are in the gaps
    times = np.concatenate([t[gap], np.where(alone, run.sent_s + run.ttft_s, np.inf)])
    tokens = np.concatenate([w["prompt"] + w["dec"], np.where(alone, run.prompt_tokens, -1.0)])
    rows = np.concatenate([w["first"] + w["dec"], np.where(alone, 1.0, -1.0)])
    tok_s = first_calls(np.maximum(tokens, 0.0), np.zeros_like(rows))
    row_s = first_calls(np.zeros_like(tokens), np.maximum(rows, 0.0))
    extra = np.where(_first_seen(times, tokens), tok_s, 0.0) + np.where(_first_seen(times, rows), row_s, 0.0)
    return extra[: len(gap)], np.where(alone, extra[len(gap):], 0.0)


def _decode_rows(run: BenchRun, ev: _Events, t: np.ndarray, req: np.ndarray, k: np.ndarray, mixed: bool,
                 device_s: DeviceTime, extra: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """One row per request with at least one gap: its gaps summed, their device time (plus ``extra`` seconds
    per gap) and features summed."""
    gap, w = _gaps(ev, t, k)
    owner = req[gap]
    if mixed:  # one step per gap, prompts and decodes together (chunked prefill)
        shape = StepShape(prefill_tokens=w["prompt"], prefill_seqs=w["first"], prefill_pairs=w["pairs"],
                          prefill_kv_tokens=w["prompt"], decode_seqs=w["dec"], decode_kv_tokens=w["ctx"])
        dev, steps = device_s(shape), np.ones(len(gap))
    else:  # a decode step plus the prompt steps that ran before it (prefill priority)
        dev = device_s(StepShape(decode_seqs=w["dec"], decode_kv_tokens=w["ctx"]))
        has = w["first"] > 0
        if has.any():
            n = np.maximum(w["clusters"][has], 1.0)  # prompts are split evenly over the prompt steps in the gap
            shape = StepShape(prefill_tokens=w["prompt"][has] / n, prefill_seqs=w["first"][has] / n,
                              prefill_pairs=w["pairs"][has] / n, prefill_kv_tokens=w["prompt"][has] / n)
            dev[has] += n * device_s(shape)
        steps = 1.0 + np.maximum(w["clusters"], np.where(w["first"] > 0, 1.0, 0.0))
    if extra is not None:
        dev = dev + extra
    n = run.size
    keep = np.bincount(owner, minlength=n) > 0

    def per_request(x: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=x, minlength=n)[keep]

    measured = (run.e2e_s - run.ttft_s)[keep]
    feats = np.stack([per_request(steps), per_request(w["first"] + w["dec"]), per_request(w["prompt"]),
                      np.zeros(int(keep.sum()))], axis=1)
    return measured, per_request(dev), feats


def _idle(run: BenchRun) -> np.ndarray:
    """Whether each request found the engine idle: nobody else in flight when sent, nobody sent before its first
    token (its prompt step is then its own)."""
    sent, end = run.sent_s, run.sent_s + run.e2e_s
    first = sent + run.ttft_s
    s_sorted, e_sorted = np.sort(sent), np.sort(end)
    in_flight = np.searchsorted(s_sorted, sent, "right") - np.searchsorted(e_sorted, sent, "right") - 1
    sent_after = np.searchsorted(s_sorted, first, "right") - np.searchsorted(s_sorted, sent, "right")
    return (in_flight <= 0) & (sent_after == 0)


def _idle_rows(run: BenchRun, device_s: DeviceTime, extra: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Requests that found the engine idle: nobody else in flight when sent, nobody sent before its first token."""
    idle = _idle(run)
    p = run.prompt_tokens[idle].astype(float)
    dev = device_s(StepShape.prefill(np.ones(len(p)), p)) + (0.0 if extra is None else extra[idle])
    feats = np.stack([np.ones(len(p)), np.ones(len(p)), p, np.ones(len(p))], axis=1)
    return run.ttft_s[idle], dev, feats


def decode_part(device_s: DeviceTime) -> DeviceTime:
    """The device time of a step shape's decodes alone (0 where it has none): the whole step less this is the time
    of its prompts, which a host term per prompt token is told apart from, or not (engine_fit._confounded)."""

    def decodes_s(shape: StepShape) -> np.ndarray:
        z = np.zeros_like(np.asarray(shape.prefill_tokens, float))
        decodes = replace(shape, prefill_tokens=z, prefill_seqs=z, prefill_pairs=z, prefill_kv_tokens=z)
        return np.where(np.asarray(shape.decode_seqs, float) > 0, device_s(decodes), 0.0)

    return decodes_s


def run_observations(run: BenchRun, mixed: bool, device_s: DeviceTime,
                     first_calls: FirstCalls | None = None) -> Observations:
    """The rows of one measured run (``mixed``: the engine mixes prompt chunks with decodes in one step;
    ``first_calls``: what a step pays for shapes it runs first, priced on chunked-prefill runs as the replay
    prices them)."""
    t, req, k = emissions(run)
    ev = _events(run, t, req, k)
    gap_extra = idle_extra = None
    if first_calls is not None and mixed:
        gap_extra, idle_extra = first_call_extras(run, ev, t, k, first_calls)
    m1, b1, f1 = _decode_rows(run, ev, t, req, k, mixed, device_s, gap_extra)
    m2, b2, f2 = _idle_rows(run, device_s, idle_extra)
    p1 = b1 - _decode_rows(run, ev, t, req, k, mixed, decode_part(device_s))[1]
    kind = np.concatenate([np.full(len(m1), DECODE), np.full(len(m2), IDLE_TTFT)])
    return Observations(run.name, np.concatenate([m1, m2]), np.concatenate([b1, b2]), np.concatenate([f1, f2]),
                        kind, np.concatenate([p1, b2]))  # an idle request's TTFT is its prompt's alone


def step_observations(name: str, measured_s: np.ndarray, shape: StepShape, device_s: DeviceTime) -> Observations:
    """Rows of single engine steps timed on their own (a prompt batch, or one decode step)."""
    measured_s = np.asarray(measured_s, float)
    ones = np.ones(len(measured_s))
    seqs = np.asarray(shape.sequences, float) * ones
    feats = np.stack([ones, seqs, np.asarray(shape.prefill_tokens, float) * ones, 0 * ones], axis=1)
    base = np.asarray(device_s(shape), float) * ones
    return Observations(name, measured_s, base, feats, np.full(len(measured_s), STEP),
                        base - np.asarray(decode_part(device_s)(shape), float) * ones)


__all__ = ["FirstCalls", "first_call_extras", "DECODE", "IDLE_TTFT", "KIND_NAMES", "STEP", "TERMS", "DeviceTime", "Observations", "emissions",
           "decode_part", "run_observations", "step_observations"]
