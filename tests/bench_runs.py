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
