"""Runs saved by the Python benchmark clients that keep per-request lists: vLLM's and SGLang's.

Both write one JSON object per run whose per-request data are parallel lists ``input_lens``, ``output_lens``,
``ttfts`` (s), ``itls`` (s, the gaps between streamed chunks of each request) and ``errors`` (empty string when the
request completed); SGLang's client is adapted from vLLM's (its header cites vllm-project/vllm 6366efc6).

vLLM (``vllm-bench-json``), checked against each release's code:
- ``vllm bench serve --save-result --save-detailed`` (vLLM 0.32.0, ``vllm/benchmarks/serve.py``) adds per request
  ``latencies``, ``start_times`` (``time.perf_counter()`` when sent) and ``queue_times`` (the wait for the
  ``--max-concurrency`` semaphore), and per run ``request_rate``, ``burstiness``, ``max_concurrency``, ``duration``
  and the ``--metadata KEY=VALUE`` entries (``seed`` where recorded). Without ``--save-detailed`` the lists are left
  out and the file cannot be replayed.
- ``benchmarks/benchmark_serving.py --save-result`` (vllm-project/vllm, read at the commits that bumped the version:
  v0.4.0 430530fc, v0.4.3 87a658c8, v0.5.0 114332b8, v0.5.4 4db5176d, v0.6.0 32e7db25, v0.6.1 3fd2b0d2, and at
  d34be24b, 2024-12-28): the lists (v0.4.0 lines 310-330: ``input_lens``, ``output_lens`` re-tokenized from the
  generated text by the client, ``ttfts``, ``itls``, ``generated_texts``, ``errors``) and ``request_rate`` (a number
  or ``"inf"``, lines 442-444), no ``latencies`` or ``start_times``. ``max_concurrency`` is written from 7dbe738d
  (2024-10-18, #9390) and ``burstiness`` from a62bc010 (2024-11-07, #10105; d34be24b lines 922-925); before those the
  client had no concurrency limit and drew exponential gaps (``np.random.exponential(1.0 / request_rate)``: Poisson),
  which a file without the keys therefore means. v0.3.x's ``--save-result`` (8fbd84bf lines 223-238) wrote aggregates
  only: nothing to replay.
SGLang (``sglang-bench-jsonl``), ``python -m sglang.bench_serving`` (sgl-project/sglang v0.5.23, PyPI wheel
``sglang==0.5.23``, ``sglang/benchmark/serving.py``; ``sglang/bench_serving.py`` is its alias): the run's ``result``
(lines 1855-1900: ``request_rate``, a number, ``Infinity`` or ``"trace"``, ``max_concurrency``, ``duration``,
``completed``, ``total_output_tokens_retokenized``, ...) is appended to ``--output-file`` as one line (lines
1961-1966), merged with ``result_details`` (lines 1945-1952: the lists plus ``generated_texts``) only with
``--output-details`` (line 2492; first in 0.4.7, absent in 0.4.6 whose file never holds per-request data). No
``latencies``, ``start_times`` or ``burstiness``: arrivals are exponential gaps (``get_request``, lines 1092-1129),
and a failed request's ``output_lens`` entry is 0 (line 1190).
Where a file has no send times the replay draws arrivals from the run's rate (said in the run's notes); a run sent
all at once, or from a fixed number of clients with every request queued at once, has send times that follow from
the client's code and are derived (for the engine fit); E2E is TTFT + sum(ITL), as those clients measure TPOT's
numerator up to the last chunk.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from capsim.data.bench import SAMPLING_KEYS, BenchRun, check_run, number
from capsim.errors import SpecError

JSON_LISTS = ("input_lens", "output_lens", "ttfts", "itls")
# A key only SGLang's result writes (sglang/benchmark/serving.py 0.5.23 line 1875; bench_serving.py 0.4.6 line 1195).
SGLANG_KEY = "total_output_tokens_retokenized"
META_KEYS = ("date", "model_id", "backend", "load_avg_before", "load_avg_after", "client", "server_command",
             "server_env", "kv_cache_tokens", "worker_cores", "engine", "num_prompts", "dataset_name", "tag")


def _lists(d: dict[str, Any], origin: str, fmt: str) -> int:
    missing = [k for k in JSON_LISTS if k not in d]
    if missing:
        fix = ("run vllm bench serve with --save-result --save-detailed (benchmarks/benchmark_serving.py saved them "
               "from vLLM 0.4.0; v0.3.x's --save-result never did, and records no synthetic dataset whose draw capsim "
               "could redo: its requests are not determined by the file)" if fmt == "vllm-bench-json" else
               "run python -m sglang.bench_serving with --output-file F.jsonl --output-details (SGLang 0.4.7 or "
               "later; 0.4.6 and earlier never write them)")
        raise SpecError("FILE", f"{origin} has aggregates only, no per-request data ({', '.join(missing)} missing)",
                        fix)
    n = len(d["input_lens"]) if isinstance(d["input_lens"], list) else -1
    for k in (*JSON_LISTS, "errors", "start_times", "latencies", "queue_times"):
        if k in d and (not isinstance(d[k], list) or len(d[k]) != n):
            raise SpecError(f"{origin}: {k}", f"must be a list of {max(n, 0)} entries like input_lens")
    return n


def _gaps(d: dict[str, Any], idx: np.ndarray, origin: str) -> tuple[np.ndarray, np.ndarray]:
    itls = [d["itls"][i] for i in idx]
    for i, gaps in zip(idx, itls, strict=True):  # a completed request's gaps: a list of numbers
        if not isinstance(gaps, list):
            raise SpecError(f"{origin}: itls", f"request {i} completed (no error) but its itls is {gaps!r}, not a "
                            "list of inter-token gaps", "give [] for a one-token request, or its error in errors")
    counts = np.array([len(x) for x in itls], np.int64)
    flat = np.fromiter((number(x, "itls", origin) for gaps in itls for x in gaps), float, int(counts.sum()))
    return flat, counts


def closed_loop_sends(e2e_s: np.ndarray, clients: int) -> np.ndarray:
    """When each request was sent by ``clients`` clients that queue every request at once and each send the next
    one in the file's order as soon as one of theirs ends (an ``asyncio.Semaphore(max_concurrency)`` around every
    request, as both clients do: vLLM benchmark_serving.py d34be24b lines 603-613, SGLang serving.py lines 1432-1438)."""
    free = [0.0] * clients
    sent = np.empty(len(e2e_s))
    for i, e in enumerate(e2e_s):
        sent[i] = heapq.heappop(free)
        heapq.heappush(free, sent[i] + float(e))
    return sent


def _rate(d: dict[str, Any], origin: str, fmt: str) -> float:
    if "request_rate" not in d:
        raise SpecError("FILE", f"{origin} names no request_rate, which every {fmt} writer records",
                        "add the run's request rate (a number or \"inf\") to the file")
    raw = d["request_rate"]
    if fmt == "sglang-bench-jsonl" and (raw == "trace" or d.get("dataset_name") == "mooncake"):
        # serving.py 0.5.23 lines 1555-1560 and 1860: mooncake traces are sent at the trace's own timestamps.
        raise SpecError("FILE", f"{origin} was sent at a Mooncake trace's timestamps (request_rate {raw!r}, dataset "
                        f"{d.get('dataset_name')!r}), which the file does not record",
                        "replay a run made with --request-rate or --max-concurrency")
    return math.inf if str(raw).strip().lower() in ("inf", "infinity") else number(raw, "request_rate", origin)


def _traffic(d: dict[str, Any], origin: str, fmt: str, e2e: np.ndarray) -> dict[str, Any]:
    """Rate, burstiness and concurrency, the send times where the client's code fixes them, and what was said."""
    notes = []
    rate = _rate(d, origin, fmt)
    # Without the key the client drew exponential gaps (see the notes): burstiness 1 is what it did, not a default.
    burst = number(d["burstiness"], "burstiness", origin) if "burstiness" in d else 1.0
    if "burstiness" not in d and math.isfinite(rate):
        notes.append("Poisson arrivals: " + ("the SGLang client draws exponential gaps (serving.py get_request) and "
                                             "records no burstiness" if fmt == "sglang-bench-jsonl" else
                                             "the file has no burstiness, which vLLM's client writes from a62bc010 "
                                             "(2024-11-07); before it, it drew exponential gaps"))
    conc = d.get("max_concurrency")
    if "max_concurrency" not in d and fmt == "vllm-bench-json":
        notes.append("no concurrency limit: the file has no max_concurrency, an option of vLLM's client from "
                     "7dbe738d (2024-10-18)")
    conc = None if conc in (None, "", "None") else int(number(conc, "max_concurrency", origin))
    sent = None
    if "start_times" not in d and math.isinf(rate):
        if conc is None:
            sent = np.zeros(len(e2e))
            notes.append("no send times recorded: every request sent at once (request rate inf, no concurrency "
                         "limit)")
        else:
            sent = closed_loop_sends(e2e, conc)
            notes.append(f"no send times recorded: derived for {conc} clients that each send the next request, in "
                         "the file's order, when one ends (TTFT + sum(ITL))")
    return {"request_rate": rate, "burstiness": burst, "max_concurrency": conc, "sent": sent, "notes": notes,
            "pre_burstiness_client": fmt == "vllm-bench-json" and "burstiness" not in d}


def from_lists(d: dict[str, Any], origin: str, name: str, sha256: str, fmt: str) -> BenchRun:
    """One run from a vLLM or SGLang client's result object (``fmt`` names which)."""
    if fmt == "sglang-bench-jsonl" and "input_lens" not in d:
        from capsim.data.bench_aggregates import from_sglang_aggregates, is_sglang_046

        if is_sglang_046(d):
            conc = d.get("max_concurrency")
            traffic = {"request_rate": _rate(d, origin, fmt),
                       "max_concurrency": None if conc in (None, "", "None") else int(number(conc, "max_concurrency",
                                                                                             origin))}
            return from_sglang_aggregates(d, origin, name, sha256, traffic)
    n = _lists(d, origin, fmt)
    ok = np.array([not e for e in d.get("errors", [""] * n)], bool)
    if not ok.any():
        raise SpecError("FILE", f"{origin}: every request failed", "replay a run whose requests completed")
    idx = np.flatnonzero(ok)

    def col(key: str) -> np.ndarray:
        return np.array([number(d[key][i], key, origin) for i in idx], float)

    prompt, output, ttft = col("input_lens"), col("output_lens"), col("ttfts")
    flat, counts = _gaps(d, idx, origin)
    # Without latencies: the client's own E2E, the first token plus every gap after it.
    e2e = col("latencies") if "latencies" in d else \
        ttft + np.bincount(np.repeat(np.arange(len(idx)), counts), weights=flat, minlength=len(idx))
    t = _traffic(d, origin, fmt, e2e)
    notes = t["notes"]
    if "latencies" not in d:
        notes.append("E2E is TTFT + sum(ITL) (the file has no latencies)")
    arrival, sent = None, t["sent"]
    if "start_times" in d:
        sent = col("start_times")
        start = sent - (col("queue_times") if "queue_times" in d else 0.0)
        arrival, sent = start - start.min(), sent - start.min()
    run = BenchRun(
        name=name, path=origin, sha256=sha256, format=fmt,
        prompt_tokens=prompt.astype(np.int64), output_tokens=output.astype(np.int64), ttft_s=ttft, e2e_s=e2e,
        arrival_s=arrival, sent_s=sent, itl_s=flat, itl_counts=counts, request_rate=t["request_rate"],
        burstiness=t["burstiness"], max_concurrency=t["max_concurrency"],
        seed=None if d.get("seed") in (None, "") else int(number(d["seed"], "seed", origin)),
        duration_s=number(d["duration"], "duration", origin) if "duration" in d else math.nan,
        failed=int(n - ok.sum()),
        sampling_params={k: number(d[k], k, origin) for k in SAMPLING_KEYS if d.get(k) not in (None, "", "None")},
        notes=tuple(notes), meta={**{k: d[k] for k in META_KEYS if k in d},
                                  **({"pre_burstiness_client": True} if t["pre_burstiness_client"] else {})})
    check_run(run)
    return run


__all__ = ["JSON_LISTS", "SGLANG_KEY", "closed_loop_sends", "from_lists"]
