"""Runs of a known engine, step by step, written as vllm bench serve files (shared by the bench tests)."""

from __future__ import annotations

import json

import numpy as np

from capsim.analytic.serving import StepShape

TRUE = {"step_s": 2e-3, "sequence_s": 4e-4, "prefill_token_s": 2e-5, "ttft_offset_s": 5e-3}


def device_s(shape: StepShape) -> np.ndarray:
    """A stand-in device: 1 us per prompt token, 0.5 ms per decode, 1 ns per key read."""
    return (1e-6 * np.asarray(shape.prefill_tokens, float) + 5e-4 * np.asarray(shape.decode_seqs, float)
            + 1e-9 * np.asarray(shape.decode_kv_tokens, float))


def engine_run(arrivals: np.ndarray, prompts: np.ndarray, outputs: np.ndarray, terms: dict, clients: int = 0,
               device=device_s):
    """A chunked-prefill engine with these host terms, step by step: every waiting request's whole prompt and one
    token of every running one per step; requests reach the engine ttft_offset after they are sent. Returns the
    per-request send times, TTFTs and inter-token gaps the client would see."""
    n = len(prompts)
    sent = np.array(arrivals, float)
    first, gaps, last = np.full(n, np.nan), [[] for _ in range(n)], np.zeros(n)
    done_tokens, running, waiting, t, nxt = np.zeros(n, int), [], [], 0.0, 0
    if clients:
        sent[:] = np.inf
        sent[:clients] = 0.0
        nxt = clients
    finished = 0
    while finished < n:
        ready = [i for i in range(n) if sent[i] + terms["ttft_offset_s"] <= t and done_tokens[i] == 0
                 and i not in waiting and i not in running]
        waiting += sorted(ready, key=lambda i: sent[i])
        if not waiting and not running:
            t = min(sent[i] + terms["ttft_offset_s"] for i in range(n) if done_tokens[i] == 0 and np.isfinite(sent[i]))
            continue
        pre, dec = list(waiting), list(running)
        p = float(prompts[pre].sum()) if pre else 0.0
        ctx = float(sum(prompts[i] + done_tokens[i] + 1 for i in dec))  # keys read: context + the new token
        pairs = float(sum(prompts[i] * (prompts[i] + 1) / 2 for i in pre))
        shape = StepShape(prefill_tokens=p, prefill_seqs=len(pre), prefill_pairs=pairs, prefill_kv_tokens=p,
                          decode_seqs=len(dec), decode_kv_tokens=ctx)
        t += float(device(shape)) + terms["step_s"] + terms["sequence_s"] * (len(pre) + len(dec)) \
            + terms["prefill_token_s"] * p
        waiting = []
        for i in pre + dec:
            if done_tokens[i] == 0:
                first[i] = t
            else:
                gaps[i].append(t - last[i])
            last[i] = t
            done_tokens[i] += 1
            if done_tokens[i] == outputs[i]:
                finished += 1
                if i in running:
                    running.remove(i)
                if clients and nxt < n:
                    sent[nxt] = t
                    nxt += 1
            elif i not in running:
                running.append(i)
    return sent, first - sent, gaps


def write_json(tmp_path, name, sent, ttft, gaps, prompts, outputs, concurrency=None):
    d = {"request_rate": "inf", "burstiness": 1.0, "max_concurrency": concurrency, "duration": float(
        max(s + f + sum(g) for s, f, g in zip(sent, ttft, gaps, strict=True))),
         "input_lens": prompts.tolist(), "output_lens": outputs.tolist(), "ttfts": ttft.tolist(), "itls": gaps,
         "latencies": [float(f + sum(g)) for f, g in zip(ttft, gaps, strict=True)], "start_times": sent.tolist(),
         "errors": [""] * len(prompts)}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(d))
    return path


# The same runs in the other clients' shapes (the fields each writes, capsim/data/bench_clients.py and
# bench_nvidia.py cite where): what capsim reads of them must be the same requests and times.

def write_sglang(tmp_path, name, runs, details=True):
    """sglang.bench_serving --output-file NAME.jsonl [--output-details]: one line per run (sent, ttft, gaps,
    prompts, outputs, concurrency); its request rate is inf, so a run with a concurrency is a closed loop."""
    lines = []
    for sent, ttft, gaps, prompts, outputs, conc in runs:
        e2e = [float(f + sum(g)) for f, g in zip(ttft, gaps, strict=True)]
        d = {"tag": None, "backend": "sglang-oai", "dataset_name": "random", "request_rate": float("inf"),
             "max_concurrency": conc, "sharegpt_output_len": None, "random_input_len": 256,
             "random_output_len": 32, "random_range_ratio": 0.5, "server_info": None,
             "duration": float(max(s + e for s, e in zip(sent, e2e, strict=True))), "completed": len(prompts),
             "total_input_tokens": int(prompts.sum()), "total_output_tokens": int(outputs.sum()),
             "total_output_tokens_retokenized": int(outputs.sum()), "mean_ttft_ms": float(np.mean(ttft) * 1e3),
             "concurrency": 1.0, "accept_length": None}
        if details:
            d |= {"input_lens": prompts.tolist(), "output_lens": outputs.tolist(), "ttfts": ttft.tolist(),
                  "itls": gaps, "generated_texts": ["x" * int(o) for o in outputs], "errors": [""] * len(prompts)}
        lines.append(json.dumps(d))  # Python's json writes inf as Infinity, as SGLang's file has it
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _chunk(text):
    return "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m",
                                  "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}) + "\n\n"


def write_genai_perf(tmp_path, name, sent, ttft, gaps, prompts, outputs, concurrency=None, usage=True, rate=None):
    """perf_analyzer's profile_export.json of an OpenAI chat endpoint, streamed, one token per chunk; with usage,
    the last response is the usage chunk stream_options.include_usage asks for."""
    t0 = 1_765_000_000_000_000_000
    reqs = []
    for s, f, g, p, o in zip(sent, ttft, gaps, prompts, outputs, strict=True):
        ts = t0 + int(round(s * 1e9))
        times = ts + np.round(np.cumsum([f, *g]) * 1e9).astype(np.int64)
        outs = [{"response": _chunk("tok")} for _ in times]
        times = times.tolist()
        if usage:
            times.append(times[-1] + 1000)
            outs.append({"response": "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk",
                                                            "choices": [], "usage": {"prompt_tokens": int(p),
                                                                                     "completion_tokens": int(o),
                                                                                     "total_tokens": int(p + o)}})
                         + "\n\ndata: [DONE]\n\n"})
        payload = {"messages": [{"role": "user", "content": "hi " * int(p)}], "model": "m", "stream": True,
                   "max_tokens": int(o)}  # no sampling parameters: the server's default (random) applies
        reqs.append({"timestamp": ts, "request_inputs": {"payload": json.dumps(payload)},
                     "response_timestamps": times, "response_outputs": outs})
    mode = {"mode": "concurrency", "value": concurrency} if concurrency else {"mode": "request_rate",
                                                                             "value": rate or 0.0}
    d = {"experiments": [{"experiment": mode, "requests": reqs, "window_boundaries": [t0, t0 + 10**12]}],
         "version": "", "service_kind": "openai", "endpoint": "v1/chat/completions"}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(d))
    return path


def write_aiperf(tmp_path, name, sent, ttft, gaps, prompts, outputs, warmup=0):
    """AIPerf's profile_export.jsonl: one MetricRecordInfo per request, times in ms (display units)."""
    t0 = 1_765_000_000_000_000_000
    lines = []
    for i, (s, f, g, p, o) in enumerate(zip(sent, ttft, gaps, prompts, outputs, strict=True)):
        ts = t0 + int(round(s * 1e9))
        metrics = {"input_sequence_length": {"value": int(p), "unit": "tokens"},
                   "time_to_first_token": {"value": f * 1e3, "unit": "ms"},
                   "request_latency": {"value": (f + sum(g)) * 1e3, "unit": "ms"},
                   "output_sequence_length": {"value": int(o), "unit": "tokens"}}
        if g:
            metrics["inter_chunk_latency"] = {"value": [x * 1e3 for x in g], "unit": "ms"}
        md = {"session_num": i, "x_request_id": f"r{i}", "credit_issued_ns": ts, "request_start_ns": ts,
              "request_ack_ns": None, "request_end_ns": ts + int(round((f + sum(g)) * 1e9)), "worker_id": "w",
              "record_processor_id": "rp", "benchmark_phase": "warmup" if i < warmup else "profiling",
              "was_cancelled": False, "cancellation_time_ns": None}
        lines.append(json.dumps({"metadata": md, "metrics": metrics, "error": None}))
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
