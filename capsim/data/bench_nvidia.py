"""Runs saved by NVIDIA's benchmark clients: GenAI-Perf (perf_analyzer's profile export) and AIPerf.

GenAI-Perf (``genai-perf-profile-export``): ``profile_export.json`` as perf_analyzer writes it
(triton-inference-server/perf_analyzer at 263c5f6e, 2025-12-15, ``src/profile_data_exporter.cc``; the file last changed
in aed6e3d4, 2025-02-18) and GenAI-Perf 0.0.16 reads it (PyPI ``genai-perf==0.0.16``,
``genai_perf/profile_data_parser/llm_profile_data_parser.py``): top-level ``experiments``, ``version``,
``service_kind`` and ``endpoint`` (lines 80-83); per experiment ``experiment: {mode: "concurrency" | "request_rate",
value}`` (lines 96-111) and ``requests``, each with ``timestamp`` (ns since the epoch, when sent), ``request_inputs``
(for OpenAI endpoints the JSON ``payload`` sent), ``response_timestamps`` (ns, one per response received) and
``response_outputs`` (for OpenAI endpoints the raw SSE text of each response; lines 114-149). There are no token
counts: GenAI-Perf counts them with the model's tokenizer when it analyses the file (parser lines 174-181, 375-430).
capsim reads the counts the server reports in the responses' ``usage`` (``prompt_tokens``, ``completion_tokens``:
present when the run asked for them, e.g. ``--extra-inputs '{"stream_options": {"include_usage": true}}'``, which
GenAI-Perf merges into every payload, ``genai_perf/subcommand/common.py`` lines 60-66), or the ``input_ids`` /
``output_ids`` of a ``triton_c_api`` run, and refuses a file that has neither. TTFT, the gaps and E2E come from the
responses that carry text, as GenAI-Perf takes them (empty responses dropped, parser lines 365-373). perf_analyzer
exports only the requests that ended inside its measurement windows (``src/inference_profiler.cc``
``ValidLatencyMeasurement``), so the requests in flight at a window's edges are not in the file.

AIPerf (``aiperf-profile-export``): ``profile_export.jsonl`` (ai-dynamo/aiperf 0.13.0, PyPI ``aiperf==0.13.0``,
``aiperf/common/models/record_models.py`` ``MetricRecordInfo`` and ``MetricRecordMetadata``, written by
``aiperf/post_processors/record_export_jsonl_writer.py`` in each metric's display unit; documented in the repository's
``docs/tutorials/working-with-profile-exports.md``): one record per request with ``metadata`` (``request_start_ns``,
``credit_issued_ns``, ``benchmark_phase``, ``was_cancelled``), ``metrics`` (``{tag: {value, unit}}``:
``input_sequence_length`` and ``output_sequence_length`` in tokens, ``time_to_first_token``, ``request_latency`` and
the list ``inter_chunk_latency`` in ms) and ``error``. Records of the warmup phase are left out, as AIPerf's own
loader does (``aiperf/orchestrator/jsonl_loader.py`` lines 58-61). The per-record file does not record the load mode
(``--concurrency`` or ``--request-rate`` are in ``profile_export_aiperf.json``, not read): the run is replayed at its
recorded send times.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from capsim.data.bench import SAMPLING_KEYS, BenchRun, check_run, number
from capsim.data.bench_lengths import NONE_GIVEN, GivenLengths, counts, missing_error
from capsim.errors import SpecError

# perf_analyzer 263c5f6e src/inference_profiler.cc L1202 (each window starts where the previous one ended, the first
# at the concurrency change) and L1357 (a request counts in the window its last response falls in)
WINDOW_NOTE = ("only the requests perf_analyzer kept (those that ended inside its measurement windows, which run back "
               "to back from the start, so the start-up is kept): the requests in flight at the last window's end are "
               "missing from the replay")
TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def _events(text: str) -> list[dict[str, Any]]:
    """The JSON events of one response's SSE text (or one non-streamed body); an ``event: error`` is one error."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith(("data:", "event:", ":", "id:", "retry:")):
        return [json.loads(text)]
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("event:") and "error" in line.lower():  # genai_perf/utils.py sse_error_occurred
            out.append({"error": line})
        elif line.startswith("data:"):
            body = line[5:].strip()
            if body and body != "[DONE]":
                out.append(json.loads(body))
    return out


def _text(event: dict[str, Any]) -> str:
    """The text an OpenAI completion, chat-completion chunk or chat completion carries."""
    choices = event.get("choices") or [{}]
    c = choices[0] if isinstance(choices[0], dict) else {}
    msg = c.get("delta") or c.get("message") or {}
    return (c.get("text") or (msg.get("content") if isinstance(msg, dict) else "") or "") if c else ""


# A non-empty "content" (chat) or "text" (completions) string: what GenAI-Perf's parser keeps a response for
# (_extract_openai_chat_text_output / _extract_openai_completion_text_output, then _is_empty_response).
HAS_TEXT = re.compile(r'"(?:content|text)"\s*:\s*"(?:[^"\\]|\\.)')


def _openai_request(req: dict[str, Any], where: str) -> tuple[list[int], int | None, int | None, bool, list[str]]:
    """(timestamps of the responses with text, prompt tokens, output tokens, failed) of one request. Only responses
    that name usage or an error are parsed as JSON; the others are told to carry text or not by their raw string."""
    prompt, output, failed = None, None, False
    stamps, outs = req["response_timestamps"], req["response_outputs"]
    if len(stamps) != len(outs):
        raise SpecError(where, "has a different number of response_timestamps and response_outputs")
    raws = [str(o.get("response", "")) for o in outs]
    text = [HAS_TEXT.search(r) is not None for r in raws]
    for i in [i for i, r in enumerate(raws) if '"usage"' in r or "error" in r]:
        try:
            events = _events(raws[i])
        except json.JSONDecodeError:
            raise SpecError(where, "a response is not a whole SSE event (perf_analyzer split it across responses), "
                            "which capsim does not join") from None
        text[i] = any(bool(_text(e)) for e in events)
        for e in events:
            failed |= "error" in e
            u = e.get("usage")
            if isinstance(u, dict) and "completion_tokens" in u:
                prompt, output = u.get("prompt_tokens"), u.get("completion_tokens")
    return [t for t, x in zip(stamps, text, strict=True) if x], prompt, output, failed, raws


def _ids(x: Any) -> int:
    return len(x) if isinstance(x, list) else 0 if x in ("", None) else 1


def _c_api_request(req: dict[str, Any]) -> tuple[list[int], int | None, int | None, bool, list[str]]:
    outs = req["response_outputs"]
    times = [t for t, o in zip(req["response_timestamps"], outs, strict=True) if _ids(o.get("output_ids"))]
    return (times, _ids(req["request_inputs"].get("input_ids")), sum(_ids(o.get("output_ids")) for o in outs), False,
            [])


def _triton_request(req: dict[str, Any]) -> tuple[list[int], int | None, int | None, bool, list[str]]:
    """A ``triton`` (KServe, TensorRT-LLM backend) request: ``text_input`` in, ``text_output`` per response, text only
    (GenAI-Perf tokenizes both, llm_profile_data_parser.py L403-404, L438-439): no count is read."""
    outs = req["response_outputs"]
    times = [t for t, o in zip(req["response_timestamps"], outs, strict=True) if o.get("text_output")]
    return times, None, None, False, []


def _payload_sampling(requests: list[dict[str, Any]], origin: str) -> dict[str, float]:
    for req in requests:
        payload = (req.get("request_inputs") or {}).get("payload")
        if isinstance(payload, str) and payload.strip().startswith("{"):
            p = json.loads(payload)
            return {k: number(p[k], k, origin) for k in SAMPLING_KEYS if p.get(k) is not None}
    return {}


def _experiment(exp: dict[str, Any], kind: str, origin: str, name: str, sha: str,
                given: GivenLengths = NONE_GIVEN) -> BenchRun:
    reqs = sorted(exp["requests"], key=lambda r: r["timestamp"])
    read = {"openai": None, "triton_c_api": _c_api_request, "triton": _triton_request}
    if kind not in read:
        raise SpecError("FILE", f"{origin}: a {kind!r} run records its outputs as text, no token counts (GenAI-Perf "
                        "counts them with the model's tokenizer)", "profile an OpenAI endpoint with usage reported")
    rows, failed, missing, filled = [], 0, {"prompt": 0, "output": 0}, set()
    for i, req in enumerate(reqs):
        times, p, o, bad, raws = _openai_request(req, f"{origin}: request {i}") if kind == "openai" else \
            read[kind](req)
        if bad or not times:  # GenAI-Perf skips requests with no text (parser lines 139-142)
            failed += 1
            continue
        if p is None or o is None:
            p, o, how = counts(req, raws, p, o, given)
            filled.update(how)
            missing["prompt"] += p is None
            missing["output"] += o is None
        rows.append((req["timestamp"], times, p, o))
    if missing["prompt"] or missing["output"]:
        raise SpecError("FILE", *missing_error(origin, missing, len(reqs)))
    if not rows:
        raise SpecError("FILE", f"{origin}: every request failed", "replay a run whose requests completed")
    sent = np.array([r[0] for r in rows], np.int64)
    first = np.array([r[1][0] for r in rows], np.int64)
    last = np.array([r[1][-1] for r in rows], np.int64)
    gaps = [np.diff(np.asarray(r[1], np.int64)) * 1e-9 for r in rows]
    mode, value = exp["experiment"]["mode"], number(exp["experiment"]["value"], "experiment.value", origin)
    closed = mode == "concurrency" and value > 0
    t0 = int(sent.min())
    rel = (sent - t0) * 1e-9
    run = BenchRun(
        name=name, path=origin, sha256=sha, format="genai-perf-profile-export",
        prompt_tokens=np.array([r[2] for r in rows], np.int64), output_tokens=np.array([r[3] for r in rows], np.int64),
        ttft_s=(first - sent) * 1e-9, e2e_s=(last - sent) * 1e-9, arrival_s=rel, sent_s=rel,
        itl_s=np.concatenate(gaps) if gaps else np.zeros(0), itl_counts=np.array([len(g) for g in gaps], np.int64),
        request_rate=math.inf if closed else value if value > 0 else math.nan, burstiness=math.nan,
        max_concurrency=int(value) if closed else None, duration_s=float(last.max() - t0) * 1e-9, failed=failed,
        sampling_params=_payload_sampling(reqs, origin),
        notes=(WINDOW_NOTE, *(f"token counts not in the file, {h}" for h in sorted(filled))),
        meta={"experiment": exp["experiment"]})
    check_run(run)
    return run


def from_genai_perf(d: dict[str, Any], origin: str, stem: str, sha: str,
                    given: GivenLengths = NONE_GIVEN) -> list[BenchRun]:
    """One run per experiment (load level) of a perf_analyzer / GenAI-Perf profile export; ``given`` lengths fill
    only the counts the file does not fix (capsim/data/bench_lengths.py)."""
    exps = d["experiments"]
    if not isinstance(exps, list) or not exps:
        raise SpecError("FILE", f"{origin} has no experiments")
    kind = str(d.get("service_kind"))
    many = len(exps) > 1
    out = []
    for e in exps:
        tag = f"{e['experiment']['mode']}={e['experiment']['value']}"
        out.append(_experiment(e, kind, f"{origin} ({tag})" if many else origin, f"{stem}:{tag}" if many else stem,
                               sha, given))
    return out


def _metric(m: dict[str, Any], tag: str, origin: str, scale: dict[str, float] | None = None) -> Any:
    v = m.get(tag)
    if not isinstance(v, dict) or "value" not in v:
        return None
    if scale is None:
        return v["value"]
    unit = v.get("unit")
    if unit not in scale:
        raise SpecError(f"{origin}: {tag}", f"unit {unit!r} is not one of {', '.join(scale)}")
    if not isinstance(v["value"], list):
        return number(v["value"], tag, origin) * scale[unit]
    try:
        x = np.asarray(v["value"], float) * scale[unit]
    except (TypeError, ValueError):
        raise SpecError(f"{origin}: {tag}", "must be a list of numbers") from None
    if np.isnan(x).any():
        raise SpecError(f"{origin}: {tag}", "holds NaN")
    return x


def _record(r: dict[str, Any], origin: str) -> tuple[Any, ...]:
    m, md = r.get("metrics") or {}, r["metadata"]
    need = {"input_sequence_length": "AIPerf writes it for token endpoints",
            "output_sequence_length": "AIPerf writes it for token endpoints",
            "time_to_first_token": "AIPerf measures TTFT only for streamed requests (--streaming)",
            "request_latency": "AIPerf writes it for every completed request"}
    for tag, why in need.items():
        if _metric(m, tag, origin) is None:
            raise SpecError("FILE", f"{origin}: request {md.get('session_num')} has no {tag} ({why})",
                            "replay a streamed run of a token endpoint" if "TTFT" in why else "")
    gaps = _metric(m, "inter_chunk_latency", origin, TIME_UNITS)
    gaps = np.zeros(0) if gaps is None else np.atleast_1d(gaps)
    return (int(md["request_start_ns"]), int(md.get("credit_issued_ns") or md["request_start_ns"]),
            number(_metric(m, "input_sequence_length", origin), "input_sequence_length", origin),
            number(_metric(m, "output_sequence_length", origin), "output_sequence_length", origin),
            _metric(m, "time_to_first_token", origin, TIME_UNITS), _metric(m, "request_latency", origin, TIME_UNITS),
            gaps)


def from_aiperf(records: list[dict[str, Any]], origin: str, name: str, sha: str) -> BenchRun:
    """The profiling phase of an AIPerf per-record export."""
    prof = [r for r in records if r["metadata"].get("benchmark_phase") == "profiling"]
    warm = len(records) - len(prof)
    ok = [r for r in prof if r.get("error") is None and not r["metadata"].get("was_cancelled")]
    if not ok:
        raise SpecError("FILE", f"{origin}: no completed request of the profiling phase",
                        "replay a run whose requests completed")
    rows = sorted((_record(r, origin) for r in ok), key=lambda x: x[0])
    start = np.array([r[0] for r in rows], np.int64)
    credit = np.array([r[1] for r in rows], np.int64)
    t0 = int(min(start.min(), credit.min()))
    ttft, e2e = np.array([r[4] for r in rows]), np.array([r[5] for r in rows])
    counts = np.array([len(r[6]) for r in rows], np.int64)
    notes = ["the per-record export does not record the load mode (--concurrency or --request-rate, in "
             "profile_export_aiperf.json, not read): replayed at the recorded send times"]
    if warm:
        notes.append(f"{warm} warmup records left out")
    run = BenchRun(
        name=name, path=origin, sha256=sha, format="aiperf-profile-export",
        prompt_tokens=np.array([r[2] for r in rows]).astype(np.int64),
        output_tokens=np.array([r[3] for r in rows]).astype(np.int64), ttft_s=ttft, e2e_s=e2e,
        arrival_s=(credit - t0) * 1e-9, sent_s=(start - t0) * 1e-9,
        itl_s=np.concatenate([r[6] for r in rows]), itl_counts=counts, request_rate=math.nan,
        burstiness=math.nan, duration_s=float(((start - t0) * 1e-9 + e2e).max()), failed=len(prof) - len(ok),
        notes=tuple(notes))
    check_run(run)
    return run


__all__ = ["from_aiperf", "from_genai_perf"]
