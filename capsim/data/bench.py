"""Measured serving runs read from files: ``vllm bench serve`` results and per-request CSVs.

Formats read (checked against the client code of each release named):
- ``vllm bench serve --save-result --save-detailed`` JSON (vLLM 0.32.0, ``vllm/benchmarks/serve.py``): per request
  ``input_lens``, ``output_lens``, ``ttfts``, ``itls``, ``latencies``, ``start_times`` (``time.perf_counter()``
  when the request was sent), ``queue_times`` (time it waited for the ``--max-concurrency`` semaphore), ``errors``;
  per run ``request_rate`` (a number or ``"inf"``), ``burstiness``, ``max_concurrency``, ``duration``, ``date``,
  and ``--metadata KEY=VALUE`` entries as top-level keys (``seed`` where the run recorded it). Without
  ``--save-detailed`` the per-request lists are left out and the file cannot be replayed (an error says so).
- The older ``benchmarks/benchmark_serving.py --save-result`` JSON (vllm-project/vllm at commit 0049e29c, 2025):
  ``input_lens``, ``output_lens``, ``ttfts``, ``itls``, ``errors`` always (its ``--save-detailed`` check runs before
  the per-request lists are merged in), no ``start_times`` or ``latencies``: E2E is TTFT + sum(ITL), exactly as that
  client measures it, and arrivals are drawn from the run's ``request_rate``/``burstiness`` (gamma gaps, numpy
  seeded with the file's ``seed`` or 0), which the report says.
- Per-request CSV with the columns of ``capsim/data/distserve-vllm-opt13b``: ``arrived_at`` (s),
  ``num_prefill_tokens``, ``num_decode_tokens`` (including the first token), ``ttft_ms``, ``tpot_ms``,
  ``latency_ms``; ``#`` lines are comments. No ITLs.
Failed requests (a non-empty ``errors`` entry) are left out of the replay and of the measured figures, and counted.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim.analytic.serving import Sampling
from capsim.errors import SpecError

CSV_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens", "ttft_ms", "tpot_ms", "latency_ms")
JSON_LISTS = ("input_lens", "output_lens", "ttfts", "itls")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class BenchRun:
    """One measured run: the requests it sent and what each measured (seconds, tokens)."""

    name: str
    path: str
    sha256: str
    format: str  # "vllm-bench-json" or "per-request-csv"
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray  # generated tokens, the first included
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    arrival_s: np.ndarray | None  # when each request was meant to be sent, from the first; None: not recorded
    sent_s: np.ndarray | None  # when each was sent (after the client's concurrency limit), on arrival_s's clock
    itl_s: np.ndarray | None = None  # every inter-token gap of every request, concatenated
    itl_counts: np.ndarray | None = None  # gaps per request (to split itl_s)
    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    seed: int | None = None
    duration_s: float = math.nan  # the client's benchmark duration
    failed: int = 0
    # The requests' sampling parameters as the file records them (vLLM SamplingParams names; the project's client
    # saves temperature, vllm bench serve saves them only as --metadata), empty where it records none.
    sampling_params: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return len(self.prompt_tokens)

    @property
    def closed_loop(self) -> bool:
        """A fixed number of clients sending back to back (``--max-concurrency`` with every request at once)."""
        return self.max_concurrency is not None and math.isinf(self.request_rate)

    def describe(self) -> str:
        load = self.meta.get("load_avg_before")
        traffic = ("recorded arrivals" if self.format == "per-request-csv" else
                   f"{self.max_concurrency} concurrent clients" if self.closed_loop else
                   f"{self.request_rate:g} req/s" if not math.isinf(self.request_rate) else "all at once")
        if self.max_concurrency is not None and not self.closed_loop:
            traffic += f", at most {self.max_concurrency} concurrent"
        server = self.meta.get("server_command")
        env = self.meta.get("server_env")
        try:
            sampling, why = run_sampling(self)
            said = f"; sampling {sampling.name} ({why})"
        except SpecError as err:
            said = f"; sampling: {err}"
        return (f"{self.name}: {self.size} requests ({traffic}), {self.format}, sha256 {self.sha256[:12]}"
                + (f", {self.failed} failed left out" if self.failed else "")
                + (f", load average {load[0]:.2f} before" if load else "")
                + (f"; the file records the server as `vllm {server}`" if server else "")
                + (f" with {', '.join(f'{k}={v}' for k, v in env.items())}" if server and env else "") + said)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "format": self.format,
                "requests": self.size, "failed": self.failed, "request_rate": self.request_rate,
                "burstiness": self.burstiness, "max_concurrency": self.max_concurrency, "seed": self.seed,
                "duration_s": self.duration_s, "arrivals": "recorded" if self.arrival_s is not None else "drawn",
                "sampling_params": dict(self.sampling_params)}


def measured_summary(run: BenchRun) -> dict[str, float]:
    """The run's figures as vllm bench serve computes them, under the simulator's summary keys: TTFT, TPOT
    ((E2E - TTFT) / (output - 1), requests of more than one token), ITL (every gap), E2E; throughput over the
    client's duration (or first arrival to last completion)."""
    out: dict[str, float] = {}
    tpot = (run.e2e_s - run.ttft_s)[run.output_tokens > 1] / (run.output_tokens[run.output_tokens > 1] - 1)
    series = {"ttft": run.ttft_s, "tpot": tpot, "e2e": run.e2e_s}
    if run.itl_s is not None and len(run.itl_s):
        series["itl"] = run.itl_s
    for name, v in series.items():
        if not len(v):
            continue
        out[f"{name}_mean_s"] = float(np.mean(v))
        for q, x in zip(PERCENTILES, np.percentile(v, PERCENTILES), strict=True):
            out[f"{name}_p{q}_s"] = float(x)
    duration = run.duration_s
    if not math.isfinite(duration) or duration <= 0:
        start = run.arrival_s if run.arrival_s is not None else np.zeros(run.size)
        duration = float((start + run.e2e_s).max() - start.min())
    out["request_throughput_rps"] = run.size / duration
    out["output_tokens_per_s"] = float(run.output_tokens.sum()) / duration
    out["duration_s"] = duration
    return out


SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                 "presence_penalty")
# What a run's requests got when its file records no sampling parameters: vllm bench serve 0.32 sends none unless
# given (vllm/benchmarks/serve.py: "vllm bench serve no longer sets temperature==0 (greedy) in requests by default.
# The default will be determined on the server side"), and vLLM's server then applies SamplingParams' defaults
# (vllm/sampling_params.py: temperature 1.0, top_p 1.0, top_k 0): random sampling, unless the served model's
# generation_config.json sets others (--generation-config auto), which the file does not record either.
UNRECORDED_SAMPLING = "random"
UNRECORDED_WHY = {"vllm-bench-json": "the file records no sampling parameters: vllm bench serve 0.32 then sends none "
                                    "(older clients sent temperature 0)",
                  "per-request-csv": "a per-request CSV records no sampling parameters"}
DEFAULT_WHY = ("so vLLM's SamplingParams default, temperature 1.0, is assumed; a model's generation_config.json may "
               "set others")


def run_sampling(run: BenchRun) -> tuple[Sampling, str]:
    """The sampling the run's requests used, and where that comes from (the file, or the documented default)."""
    if not run.sampling_params:
        return Sampling.parse(UNRECORDED_SAMPLING), f"{UNRECORDED_WHY[run.format]}, {DEFAULT_WHY}"
    s = Sampling.from_params(**run.sampling_params)
    shown = ", ".join(f"{k} {v:g}" for k, v in run.sampling_params.items())
    return s, f"the file's {shown}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bench(path: str | Path) -> BenchRun:
    """A run from a ``vllm bench serve`` JSON (``.json``) or a per-request CSV (anything else)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError("FILE", f"no file at {p}", "give a vllm bench serve --save-result JSON or a per-request CSV")
    data = p.read_bytes()
    if p.suffix.lower() == ".json":
        return _from_json(p, data)
    return _from_csv(p, data)


def _number(value: Any, name: str, origin: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{origin}: {name}", f"{value!r} is not a number") from None
    if math.isnan(x):
        raise SpecError(f"{origin}: {name}", "is NaN")
    return x


def _from_json(p: Path, data: bytes) -> BenchRun:
    origin = str(p)
    try:
        d = json.loads(data)
    except json.JSONDecodeError as err:
        raise SpecError("FILE", f"{origin} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(d, dict):
        raise SpecError("FILE", f"{origin} holds a JSON {type(d).__name__}, not a vllm bench serve result object")
    missing = [k for k in JSON_LISTS if k not in d]
    if missing:
        raise SpecError("FILE", f"{origin} has no per-request data ({', '.join(missing)} missing)",
                        "run vllm bench serve with --save-result --save-detailed")
    n = len(d["input_lens"])
    for k in (*JSON_LISTS, "errors", "start_times", "latencies", "queue_times"):
        if k in d and (not isinstance(d[k], list) or len(d[k]) != n):
            raise SpecError(f"{origin}: {k}", f"must be a list of {n} entries like input_lens")
    ok = np.array([not e for e in d.get("errors", [""] * n)], bool)
    if not ok.any():
        raise SpecError("FILE", f"{origin}: every request failed", "replay a run whose requests completed")
    idx = np.flatnonzero(ok)

    def col(key: str) -> np.ndarray:
        return np.array([_number(d[key][i], key, origin) for i in idx], float)

    prompt, output, ttft = col("input_lens"), col("output_lens"), col("ttfts")
    itls = [d["itls"][i] for i in idx]
    for i, gaps in zip(idx, itls, strict=True):  # a completed request's gaps: a list of numbers
        if not isinstance(gaps, list):
            raise SpecError(f"{origin}: itls", f"request {i} completed (no error) but its itls is {gaps!r}, not a "
                            "list of inter-token gaps", "give [] for a one-token request, or its error in errors")
    counts = np.array([len(x) for x in itls], np.int64)
    flat = np.fromiter((_number(x, "itls", origin) for gaps in itls for x in gaps), float, int(counts.sum()))
    # Without latencies: the client's own E2E, the first token plus every gap after it.
    e2e = col("latencies") if "latencies" in d else \
        ttft + np.bincount(np.repeat(np.arange(len(idx)), counts), weights=flat, minlength=len(idx))
    arrival = sent = None
    if "start_times" in d:
        sent = col("start_times")
        start = sent - (col("queue_times") if "queue_times" in d else 0.0)
        arrival, sent = start - start.min(), sent - start.min()
    rate_raw = d.get("request_rate", "inf")
    rate = math.inf if str(rate_raw).strip().lower() == "inf" else _number(rate_raw, "request_rate", origin)
    conc = d.get("max_concurrency")
    run = BenchRun(
        name=p.stem, path=origin, sha256=_sha256(data), format="vllm-bench-json",
        prompt_tokens=prompt.astype(np.int64), output_tokens=output.astype(np.int64), ttft_s=ttft, e2e_s=e2e,
        arrival_s=arrival, sent_s=sent, itl_s=flat, itl_counts=counts, request_rate=rate,
        burstiness=_number(d.get("burstiness", 1.0), "burstiness", origin),
        max_concurrency=None if conc in (None, "", "None") else int(_number(conc, "max_concurrency", origin)),
        seed=None if d.get("seed") in (None, "") else int(_number(d["seed"], "seed", origin)),
        duration_s=_number(d.get("duration", math.nan), "duration", origin) if "duration" in d else math.nan,
        failed=int(n - ok.sum()),
        sampling_params={k: _number(d[k], k, origin) for k in SAMPLING_KEYS if d.get(k) not in (None, "", "None")},
        meta={k: d[k] for k in ("date", "model_id", "backend", "load_avg_before", "load_avg_after", "client",
                                "server_command", "server_env", "kv_cache_tokens", "worker_cores", "engine",
                                "num_prompts") if k in d})
    _check(run)
    return run


def _from_csv(p: Path, data: bytes) -> BenchRun:
    origin = str(p)
    import io

    try:
        df = pd.read_csv(io.BytesIO(data), comment="#")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise SpecError("FILE", f"{origin} is not a readable CSV ({str(err).splitlines()[0][:120]})") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise SpecError("FILE", f"{origin} lacks the columns {missing}", f"a per-request CSV needs {', '.join(CSV_COLUMNS)}")
    if df.empty:
        raise SpecError("FILE", f"{origin} has no data rows")
    for c in CSV_COLUMNS:
        if not pd.api.types.is_numeric_dtype(df[c]) or not np.isfinite(df[c].to_numpy(float)).all():
            raise SpecError(f"{origin}: {c}", "must hold finite numbers in every row")
    df = df.sort_values("arrived_at", kind="stable")
    arrival = df["arrived_at"].to_numpy(float)
    ttft, e2e = df["ttft_ms"].to_numpy(float) * 1e-3, df["latency_ms"].to_numpy(float) * 1e-3
    run = BenchRun(name=p.stem, path=origin, sha256=_sha256(data), format="per-request-csv",
                   prompt_tokens=df["num_prefill_tokens"].to_numpy(np.int64),
                   output_tokens=df["num_decode_tokens"].to_numpy(np.int64), ttft_s=ttft, e2e_s=e2e,
                   arrival_s=arrival - arrival.min(), sent_s=arrival - arrival.min(), duration_s=float((arrival + e2e).max() - arrival.min()))
    _check(run)
    return run


def _check(run: BenchRun) -> None:
    bad = (run.prompt_tokens < 1) | (run.output_tokens < 1)
    if bad.any():
        raise SpecError(f"{run.path}", f"{int(bad.sum())} requests have fewer than 1 prompt or output token",
                        "drop or fix those requests")
    if (run.ttft_s < 0).any() or (run.e2e_s < run.ttft_s - 1e-9).any():
        raise SpecError(f"{run.path}", "a request has a negative TTFT or an E2E shorter than its TTFT")


__all__ = ["BenchRun", "CSV_COLUMNS", "SAMPLING_KEYS", "measured_summary", "read_bench", "run_sampling"]
