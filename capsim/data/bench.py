"""Measured serving runs read from files: the results of the benchmark clients people run against their engines.

The format is told from the file's content, not its name (``read_bench_runs``); each reader lives beside the client it
reads and cites that client's code at a named release:
- ``vllm-bench-json``: ``vllm bench serve --save-result --save-detailed`` and the older
  ``benchmarks/benchmark_serving.py --save-result`` (vLLM 0.4.0 to 0.6.x and after), ``capsim/data/bench_clients.py``;
- ``sglang-bench-jsonl``: ``python -m sglang.bench_serving --output-file F.jsonl --output-details`` (SGLang 0.4.7 to
  0.5.23), one run per line, ``capsim/data/bench_clients.py``;
- ``genai-perf-profile-export``: GenAI-Perf's (perf_analyzer's) ``profile_export.json``, one run per experiment, and
  ``aiperf-profile-export``: AIPerf's per-record ``profile_export.jsonl``, ``capsim/data/bench_nvidia.py``;
- ``per-request-csv``: the columns of ``capsim/data/distserve-vllm-opt13b``: ``arrived_at`` (s),
  ``num_prefill_tokens``, ``num_decode_tokens`` (including the first token), ``ttft_ms``, ``tpot_ms``,
  ``latency_ms``; ``#`` lines are comments. No ITLs.
Failed requests are left out of the replay and of the measured figures, and counted. What a file does not record
(send times, the load mode, burstiness) is never filled with a default: the reader either derives it from what the
client's code did (stated in the run's notes) or the replay refuses and says which flag records it.
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
from capsim.data.bench_lengths import NONE_GIVEN, GivenLengths
from capsim.errors import SpecError

CSV_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens", "ttft_ms", "tpot_ms", "latency_ms")
PERCENTILES = (50, 90, 99)
# Every format read, and the command that writes it (named in the error for a file of none of them).
FORMATS = {
    "vllm-bench-json": "vllm bench serve --save-result --save-detailed JSON (and benchmarks/benchmark_serving.py "
                       "--save-result, vLLM 0.4.0 and later)",
    "sglang-bench-jsonl": "python -m sglang.bench_serving --output-file F.jsonl --output-details (SGLang 0.4.7 to "
                          "0.5.23; SGLang 0.4.6's aggregates of a random dataset)",
    "genai-perf-profile-export": "GenAI-Perf / perf_analyzer profile_export.json (genai-perf 0.0.11 to 0.0.16)",
    "aiperf-profile-export": "AIPerf per-record profile_export.jsonl (aiperf 0.13.0)",
    "per-request-csv": "per-request CSV with the columns " + ", ".join(CSV_COLUMNS),
}


@dataclass(frozen=True)
class BenchRun:
    """One measured run: the requests it sent and what each measured (seconds, tokens)."""

    name: str
    path: str
    sha256: str
    format: str  # a key of FORMATS
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray  # generated tokens, the first included
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    arrival_s: np.ndarray | None  # when each request was meant to be sent, from the first; None: not recorded
    sent_s: np.ndarray | None  # when each was sent (after the client's concurrency limit), on arrival_s's clock
    itl_s: np.ndarray | None = None  # every inter-token gap of every request, concatenated
    itl_counts: np.ndarray | None = None  # gaps per request (to split itl_s)
    request_rate: float = math.inf  # NaN: the file does not record the load (replayed at its send times)
    burstiness: float = 1.0
    max_concurrency: int | None = None
    seed: int | None = None
    duration_s: float = math.nan  # the client's benchmark duration
    failed: int = 0
    # The requests' sampling parameters as the file records them (vLLM SamplingParams names; the project's client
    # saves temperature, vllm bench serve saves them only as --metadata), empty where it records none.
    sampling_params: dict[str, float] = field(default_factory=dict)
    # What the reader derived from the client's code rather than read (Poisson arrivals, E2E from the gaps, send
    # times of a closed loop), said in every report of the run.
    notes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    # The client's own figures under measured_summary's keys, for a file that keeps aggregates only (its requests
    # redrawn from its arguments, capsim/data/bench_aggregates.py; ttft_s and e2e_s are then NaN); None otherwise.
    aggregates: dict[str, float] | None = None

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
                   "recorded send times, load mode not recorded" if math.isnan(self.request_rate) else
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
                + (f" with {', '.join(f'{k}={v}' for k, v in env.items())}" if server and env else "") + said
                + "".join(f"; {n}" for n in self.notes))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "format": self.format,
                "requests": self.size, "failed": self.failed, "request_rate": self.request_rate,
                "burstiness": self.burstiness, "max_concurrency": self.max_concurrency, "seed": self.seed,
                "duration_s": self.duration_s, "arrivals": "recorded" if self.arrival_s is not None else "drawn",
                "sampling_params": dict(self.sampling_params), "notes": list(self.notes)}


def measured_summary(run: BenchRun) -> dict[str, float]:
    """The run's figures as vllm bench serve computes them, under the simulator's summary keys: TTFT, TPOT
    ((E2E - TTFT) / (output - 1), requests of more than one token), ITL (every gap), E2E; throughput over the
    client's duration (or first arrival to last completion)."""
    if run.aggregates is not None:
        return dict(run.aggregates)
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
DEFAULT_WHY = ("so vLLM's SamplingParams default, temperature 1.0, is assumed; a model's generation_config.json may "
               "set others")
# format -> (the sampling its requests had when the file records none, and why)
UNRECORDED = {
    "vllm-bench-json": ("random", "the file records no sampling parameters: vllm bench serve 0.32 then sends none "
                                  f"(older clients sent temperature 0), {DEFAULT_WHY}"),
    # sglang/benchmark/serving.py 0.5.23 lines 311-313, 472-473, 624 (OpenAI backends: temperature 0.0 unless
    # --extra-request-body names one) and 701 with 2561-2565 (--backend sglang: --temperature, default 0.0).
    # benchmarks/backend_request_func.py, vLLM v0.4.0 (430530fc) lines 114, 224, 305 and d34be24b (2024-12-28) lines
    # 129, 240, 338: the vLLM and OpenAI backends send temperature 0.0; a file without burstiness is from that client.
    "vllm-benchmark-serving": ("greedy", "the file records no sampling parameters and no burstiness: it is from "
                                         "benchmarks/benchmark_serving.py before 2024-11-07, whose vLLM and OpenAI "
                                         "backends send temperature 0.0"),
    "sglang-bench-jsonl": ("greedy", "the file records no sampling parameters: sglang.bench_serving sends temperature "
                                     "0.0 unless --extra-request-body or --temperature set another, which the file "
                                     "would not record"),
    "genai-perf-profile-export": ("random", "the requests' payloads name no sampling parameters, so the server's "
                                            f"default applies: {DEFAULT_WHY}"),
    "aiperf-profile-export": ("random", "AIPerf's per-record export does not record the requests' payloads (they are "
                                        f"in inputs.json, not read), {DEFAULT_WHY}"),
    "per-request-csv": ("random", f"a per-request CSV records no sampling parameters, {DEFAULT_WHY}"),
}


def run_sampling(run: BenchRun) -> tuple[Sampling, str]:
    """The sampling the run's requests used, and where that comes from (the file, or the documented default)."""
    if not run.sampling_params:
        name, why = UNRECORDED[run.format if not run.meta.get("pre_burstiness_client") else "vllm-benchmark-serving"]
        return Sampling.parse(name), why
    s = Sampling.from_params(**run.sampling_params)
    shown = ", ".join(f"{k} {v:g}" for k, v in run.sampling_params.items())
    return s, f"the file's {shown}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bench_runs(path: str | Path, given: GivenLengths | None = None) -> list[BenchRun]:
    """Every run a benchmark file holds (a SGLang JSONL or a GenAI-Perf export may hold several), the format told
    from the content; a file of none of the formats read is one error naming them. ``given``
    (``bench_lengths.GivenLengths``): prompt/output lengths the user states for a GenAI-Perf export that records
    no token counts (refused for any other format, whose files record their own)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError("FILE", f"no file at {p}", "give a benchmark result file: " + "; ".join(FORMATS.values()))
    data = p.read_bytes()
    fmt, parsed = _detect(p, data)
    if given and fmt != "genai-perf-profile-export":
        raise SpecError("--input-len/--output-len", f"{p} is a {fmt} file, which records its own token counts",
                        "give them only for a GenAI-Perf export without usage")
    if fmt == "per-request-csv":
        return [_from_csv(p, data)]
    from capsim.data import bench_clients, bench_nvidia

    sha, origin = _sha256(data), str(p)
    if fmt == "vllm-bench-json":
        return [bench_clients.from_lists(parsed[0], origin, p.stem, sha, fmt)]
    if fmt == "sglang-bench-jsonl":
        many = len(parsed) > 1
        return [_nth(bench_clients.from_lists(d, f"{origin} line {i}" if many else origin,
                                              f"{p.stem}:{i}" if many else p.stem, sha, fmt), i)
                for i, d in enumerate(parsed, 1)]
    if fmt == "genai-perf-profile-export":
        runs = bench_nvidia.from_genai_perf(parsed[0], origin, p.stem, sha, given or NONE_GIVEN)
        return [_nth(r, i) for i, r in enumerate(runs, 1)]
    return [bench_nvidia.from_aiperf(parsed, origin, p.stem, sha)]


def _nth(run: BenchRun, i: int) -> BenchRun:
    run.meta["run_in_file"] = i  # which run of its file (with sha256: the same run under any file name)
    return run


def run_key(run: BenchRun) -> tuple[str, int]:
    """The same run whatever its file is called: the file's sha256 and the run's place in it."""
    return run.sha256, int(run.meta.get("run_in_file", 1))


def read_bench(path: str | Path) -> BenchRun:
    """The one run of a benchmark file (:func:`read_bench_runs` for files that hold several)."""
    runs = read_bench_runs(path)
    if len(runs) != 1:
        raise SpecError("FILE", f"{path} holds {len(runs)} runs ({', '.join(r.name for r in runs)})",
                        "read it with read_bench_runs")
    return runs[0]


def _unknown(p: Path, why: str) -> SpecError:
    return SpecError("FILE", f"{p} is not a benchmark result capsim reads ({why}); formats read: "
                     + "; ".join(FORMATS.values()))


def _kind(d: Any) -> str | None:
    """The format of one parsed JSON object, or None."""
    if not isinstance(d, dict):
        return None
    if "experiments" in d and "service_kind" in d:  # perf_analyzer src/profile_data_exporter.cc lines 80-83
        return "genai-perf-profile-export"
    if "metadata" in d and "metrics" in d:  # aiperf MetricRecordInfo (common/models/record_models.py)
        return "aiperf-profile-export"
    from capsim.data.bench_clients import JSON_LISTS, SGLANG_KEY

    if SGLANG_KEY in d:
        return "sglang-bench-jsonl"
    if any(k in d for k in (*JSON_LISTS, "request_rate", "date", "model_id", "num_prompts", "completed")):
        return "vllm-bench-json"
    return None


def _detect(p: Path, data: bytes) -> tuple[str, list[Any]]:
    """The file's format and its parsed JSON objects (none for a CSV)."""
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            d = json.loads(data)
        except json.JSONDecodeError as err:
            if err.msg != "Extra data":
                raise SpecError("FILE", f"{p} is not valid JSON ({err.msg}, line {err.lineno})") from None
            return _detect_lines(p, data)
        kind = _kind(d)
        if kind is None:
            raise _unknown(p, f"a JSON {type(d).__name__} without the keys of any of them")
        return kind, [d]
    text = data[:4096].decode("utf-8", "replace")
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if any(c in first.split(",") for c in CSV_COLUMNS):
        return "per-request-csv", []
    raise _unknown(p, "neither JSON nor a CSV with the per-request columns")


def _detect_lines(p: Path, data: bytes) -> tuple[str, list[Any]]:
    objs = []
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            objs.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SpecError("FILE", f"{p} line {i} is not valid JSON ({err.msg})") from None
    kinds = {_kind(d) for d in objs}
    if len(kinds) != 1 or None in kinds or kinds & {"vllm-bench-json", "genai-perf-profile-export"}:
        raise _unknown(p, "JSON lines that are not all SGLang runs or all AIPerf records")
    return kinds.pop(), objs


def number(value: Any, name: str, origin: str) -> float:
    """``value`` as a float, or an error naming the field (NaN is an error)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{origin}: {name}", f"{value!r} is not a number") from None
    if math.isnan(x):
        raise SpecError(f"{origin}: {name}", "is NaN")
    return x


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
    check_run(run)
    return run


def check_run(run: BenchRun) -> None:
    """Lengths of at least one token and TTFTs no longer than E2E."""
    bad = (run.prompt_tokens < 1) | (run.output_tokens < 1)
    if bad.any():
        raise SpecError(f"{run.path}", f"{int(bad.sum())} requests have fewer than 1 prompt or output token",
                        "drop or fix those requests")
    if (run.ttft_s < 0).any() or (run.e2e_s < run.ttft_s - 1e-9).any():
        raise SpecError(f"{run.path}", "a request has a negative TTFT or an E2E shorter than its TTFT")


__all__ = ["FORMATS", "BenchRun", "CSV_COLUMNS", "SAMPLING_KEYS", "check_run", "measured_summary", "number", "read_bench",
           "read_bench_runs", "run_key", "run_sampling"]
