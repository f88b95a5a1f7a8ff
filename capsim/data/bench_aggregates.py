"""Aggregate-only benchmark results: what their arguments determine of the requests, redrawn as the client drew them.

SGLang 0.4.6 (``python -m sglang.bench_serving``; PyPI ``sglang==0.4.6``, ``sglang/bench_serving.py``) appends one
result line of arguments and aggregates to ``--output-file`` and never the per-request lists (L1180-1235):
``dataset_name``, ``request_rate``, ``max_concurrency``, ``random_input_len``, ``random_output_len``,
``random_range_ratio``, ``completed``, ``total_input_tokens``, ``total_output_tokens``, mean/median/p99 TTFT, TPOT,
ITL and E2E (ms), ``request_throughput``, ``output_throughput``, ``duration``. It does not record ``--seed`` (default
1, L1536) or ``--num-prompts``. Its ``random`` datasets fix the lengths with numpy's global generator seeded by
``np.random.seed(args.seed)`` (L1282, no numpy draw before the dataset): ``sample_random_requests`` draws
``input_lens = np.random.randint(max(int(input_len * range_ratio), 1), input_len + 1, size=num_prompts)`` then
``output_lens = np.random.randint(int(output_len * range_ratio), output_len + 1, size=num_prompts)`` (L693-702);
``random`` then builds the prompts from ShareGPT text with Python's ``random`` (L704-747), so the next numpy draws
are ``get_request``'s gaps, ``np.random.exponential(1.0 / request_rate)`` after each request (L868-884), while
``random-ids`` first draws token offsets (L756, bounded by the tokenizer's vocabulary, which the file does not name).
The sglang backends send ``ignore_eos`` unless ``--disable-ignore-eos`` (L183, L266, L342) with ``max_new_tokens``
(``max_tokens``) = the drawn length, and the totals count the drawn prompt lengths (``calculate_metrics``:
``total_input += input_requests[i][1]``) and the served output lengths. capsim redraws with seed 1 and
``completed`` prompts and replays only if both totals equal the file's (a seed, a failure or an EOS stop would
show there); the aggregates are scored. ``sharegpt`` runs sample a dataset file with the model's tokenizer
(``sample_sharegpt_requests``), which capsim has neither of: refused, naming them.
A file with SGLang's later result keys (0.5.23 adds ``p90_ttft_ms``, ``server_info``, ``tag``, ...) and no lists is
a newer run without ``--output-details``: refused, naming the flag (its draw is other code).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from capsim.data.bench import BenchRun, check_run, number
from capsim.errors import SpecError

SEED = 1  # sglang/bench_serving.py 0.4.6 L1536: --seed default
LATER_KEYS = ("p90_ttft_ms", "server_info", "tag", "total_throughput")  # sglang/benchmark/serving.py 0.5.23 result
# summary key -> the 0.4.6 result's key (ms, or per second)
MEASURED = {f"{m}_{q}_s": f"{k}_{m if m != 'e2e' else 'e2e_latency'}_ms" for m in ("ttft", "tpot", "itl", "e2e")
            for q, k in (("mean", "mean"), ("p50", "median"), ("p99", "p99"))}


def is_sglang_046(d: dict[str, Any]) -> bool:
    """An aggregates-only result line of the shape SGLang 0.4.6 writes (none of the later releases' keys)."""
    return "input_lens" not in d and not any(k in d for k in LATER_KEYS)


def draw_046(input_len: int, output_len: int, ratio: float, n: int, rate: float, ids: bool,
             seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Prompt and output lengths and send times (None where the file cannot fix them) as bench_serving.py 0.4.6
    draws them (module docstring); np.random.seed seeds the legacy global RandomState, whose stream this repeats."""
    rs = np.random.RandomState(seed)
    inputs = rs.randint(max(int(input_len * ratio), 1), input_len + 1, size=n)
    outputs = rs.randint(int(output_len * ratio), output_len + 1, size=n)
    if math.isinf(rate):
        return inputs, outputs, np.zeros(n)
    if ids:  # random-ids draws offsets bounded by the tokenizer's vocabulary first
        return inputs, outputs, None
    return inputs, outputs, np.concatenate([[0.0], np.cumsum(rs.exponential(1.0 / rate, size=n - 1))])


def _measured(d: dict[str, Any], origin: str) -> dict[str, float]:
    out = {k: number(d[v], v, origin) * 1e-3 for k, v in MEASURED.items() if d.get(v) is not None}
    out["request_throughput_rps"] = number(d["request_throughput"], "request_throughput", origin)
    out["output_tokens_per_s"] = number(d["output_throughput"], "output_throughput", origin)
    out["duration_s"] = number(d["duration"], "duration", origin)
    return out


def from_sglang_aggregates(d: dict[str, Any], origin: str, name: str, sha256: str, traffic: dict[str, Any]) -> BenchRun:
    """The run of a SGLang 0.4.6 result line, its requests redrawn; refused where its arguments do not fix them."""
    dataset = str(d.get("dataset_name"))
    if dataset not in ("random", "random-ids"):
        raise SpecError("FILE", f"{origin} has aggregates only and its requests came from the {dataset!r} dataset, "
                        "sampled from a dataset file with the model's tokenizer, which the file does not hold",
                        "rerun with sglang.bench_serving --output-details (SGLang 0.4.7 or later)")
    need = ("random_input_len", "random_output_len", "random_range_ratio", "completed", "total_input_tokens",
            "total_output_tokens")
    missing = [k for k in need if d.get(k) is None]
    if missing:
        raise SpecError("FILE", f"{origin} has aggregates only and lacks {', '.join(missing)}, which its random "
                        "draw needs", "rerun with sglang.bench_serving --output-details (SGLang 0.4.7 or later)")
    n = int(number(d["completed"], "completed", origin))
    rate = traffic["request_rate"]
    inputs, outputs, arrivals = draw_046(int(d["random_input_len"]), int(d["random_output_len"]),
                                         number(d["random_range_ratio"], "random_range_ratio", origin), n, rate,
                                         dataset == "random-ids")
    got = (int(inputs.sum()), int(outputs.sum()))
    want = (int(number(d["total_input_tokens"], "total_input_tokens", origin)),
            int(number(d["total_output_tokens"], "total_output_tokens", origin)))
    if got != want:
        raise SpecError("FILE", f"{origin} has aggregates only: bench_serving.py 0.4.6's draw of {n} requests with "
                        f"seed {SEED} gives {got[0]} prompt and {got[1]} output tokens, the file's totals are "
                        f"{want[0]} and {want[1]}: the run used another --seed, had failed requests or stopped on "
                        "EOS (--disable-ignore-eos), none of which the file records",
                        "rerun with sglang.bench_serving --output-details (SGLang 0.4.7 or later)")
    notes = [f"aggregates only (SGLang 0.4.6 result): {n} requests redrawn as bench_serving.py 0.4.6 draws its "
             f"{dataset} dataset with --seed {SEED} (its default; the file records no seed), which gives the file's "
             "total prompt and output tokens; prompt lengths are the client's (the server re-tokenizes the "
             "decoded prompt text); the file's aggregates are scored"]
    zero = int((outputs < 1).sum())
    if zero:
        notes.append(f"{zero} drawn output lengths of 0 replayed as 1 token")
    if arrivals is not None and not math.isinf(rate):
        notes.append("send times from the same draw (get_request's exponential gaps)")
    nan = np.full(n, np.nan)
    sent = arrivals if traffic["max_concurrency"] is None else None
    run = BenchRun(
        name=name, path=origin, sha256=sha256, format="sglang-bench-jsonl", prompt_tokens=inputs.astype(np.int64),
        output_tokens=np.maximum(outputs, 1).astype(np.int64), ttft_s=nan, e2e_s=nan,
        arrival_s=arrivals if traffic["max_concurrency"] is None else None, sent_s=sent, request_rate=rate,
        burstiness=1.0, max_concurrency=traffic["max_concurrency"], seed=SEED,
        duration_s=number(d["duration"], "duration", origin), notes=tuple(notes),
        aggregates=_measured(d, origin), meta={"dataset_name": dataset})
    check_run(run)
    return run


__all__ = ["LATER_KEYS", "draw_046", "from_sglang_aggregates", "is_sglang_046"]
