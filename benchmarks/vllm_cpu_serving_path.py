"""The vLLM-CPU server's serving path: how long a request takes to reach the engine and its first token to come back,
beyond the engine's step, from the saved host microbenchmark (no vLLM needed)::

    python benchmarks/vllm_cpu_serving_path.py

What it is: ``vllm serve`` runs the OpenAI API server (HTTP, request processing) in one process and the V1 engine core
in another; a request goes client -> API server -> ZMQ -> the engine core's input queue, and its tokens come back the
same way. The engine core's loop (vllm/v1/engine/core.py ``EngineCoreProc.run_busy_loop``: ``_process_input_queue``
then ``_process_engine_step``) blocks on the input queue only while it has no request; with requests running it takes
what is already queued and steps at once. So a request that reaches it during a step waits for that step to end, and
in a closed loop (``vllm bench serve --max-concurrency``) every replacement request, sent only once its predecessor's
last token came back through that path, reaches the engine after the next step has started: it always waits one
step. capsim prices the path as the engine profile's ``ttft_offset_s`` (the engine sees a request that long after the
client sends it; TTFT and E2E count from the send), which gives both effects.

How it is measured: the host microbenchmark's served runs (capsim/data/vllm-cpu-host: the same server, flags and
client as the vLLM-CPU suite, 16-token prompts, 128 output tokens). One request at a time, the engine is idle when each
request arrives, and a 16-token prompt step of these models costs what a decode step does (the prompt's 16 tokens
add 23 us of host time at engines.yaml's 1.44 us per prompt token; the LM head runs on the last position only), so
each request's TTFT less its own median inter-token gap is the path there and back (and the idle engine's wake-up).
Printed per file (``serving_path_ms[...]``: median, mean, min, max over the requests, with the load average):

- ``single.json``: the 1-layer, 64-wide model on an idle machine (load 0.86 before the run): the profile's value
  (headline ``ttft_offset_s``, the median). A lower bound for a served model: this model's weights stay in the
  caches, where the in-place step profile found the engine's Python on both cores about twice as fast as beside
  weights beyond the L3 (capsim/data/vllm-cpu-host/README.md, step-profile);
- ``width-512/layers-{1,2}/single.json``: the vLLM-CPU suite's width and vocabulary cut to 1 and 2 layers (weights
  beyond the L3, as the suite's), but measured while other jobs loaded the machine (load 6.8-8.5; the API server and
  client share the core other jobs also used): the band's upper end.

A check, not a source (``closed_loop_wait[RUN]``): in the vLLM-CPU suite's closed-loop runs (capsim/data/vllm-cpu),
how many step ends of the other requests (their tokens reaching the client, 5 ms clusters) fall between each
replacement request's send and its first token: 0 would mean it joined the step after its predecessor's finish.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "capsim" / "data" / "vllm-cpu-host"
SUITE = ROOT / "capsim" / "data" / "vllm-cpu"
FILES = ("single.json", "width-512/layers-1/single.json", "width-512/layers-2/single.json")
PROFILE_FILE = FILES[0]  # idle machine: the value engines.yaml vllm-cpu ttft_offset_s holds
CLUSTER_S = 5e-3  # tokens of one step reach the client within this of each other


def serving_path_s(path: Path) -> np.ndarray:
    """Per request of a one-at-a-time run: TTFT less its own median inter-token gap (seconds)."""
    d = json.loads(path.read_text())
    ok = [i for i, e in enumerate(d.get("errors") or [""] * len(d["ttfts"])) if not e]
    return np.array([d["ttfts"][i] - float(np.median(d["itls"][i])) for i in ok])


def ttft_offset_s() -> float:
    """The profile's serving path: the idle host run's median."""
    return float(np.median(serving_path_s(HOST / PROFILE_FILE)))


def closed_loop_wait(path: Path) -> dict[int, int]:
    """Replacement requests of a closed-loop run, by the number of the others' step ends between their send and
    their first token."""
    d = json.loads(path.read_text())
    sent = np.asarray(d["start_times"], float)
    ttft = np.asarray(d["ttfts"], float)
    times, who = [], []
    for i, gaps in enumerate(d["itls"]):
        t = sent[i] + ttft[i] + np.concatenate([[0.0], np.cumsum(gaps)])
        times.append(t)
        who.append(np.full(len(t), i))
    times, who = np.concatenate(times), np.concatenate(who)
    counts: dict[int, int] = {}
    for i in np.argsort(sent, kind="stable")[int(d["max_concurrency"]):]:
        ts = np.sort(times[(who != i) & (times > sent[i]) & (times < sent[i] + ttft[i] - CLUSTER_S)])
        k = int(np.sum(np.diff(ts, prepend=-np.inf) > CLUSTER_S))
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items()))


def main() -> None:
    for name in FILES:
        path = HOST / name
        s = serving_path_s(path) * 1e3
        load = json.loads(path.read_text()).get("load_avg_before", [float("nan")])[0]
        print(f"serving_path_ms[{name}]: median {np.median(s):.2f} mean {s.mean():.2f} min {s.min():.2f} "
              f"max {s.max():.2f} ({len(s)} requests, load average {load:.2f} before)")
    for c in (2, 4, 8, 16, 32):
        counts = closed_loop_wait(SUITE / f"concurrency-{c}.json")
        print(f"closed_loop_wait[concurrency-{c}]: " + ", ".join(f"{k} step ends: {n}" for k, n in counts.items()))
    print(f"ttft_offset_s: {ttft_offset_s():.3e}")


if __name__ == "__main__":
    main()
