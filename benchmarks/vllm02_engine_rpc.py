"""Host cost per running request of vLLM 0.2.x's Ray engine actor (``--engine-use-ray``): each step the API server
awaits ``engine.step.remote()`` (vllm/engine/async_llm_engine.py v0.2.3 L335-336), whose return value is one
``RequestOutput`` per scheduled request (vllm/engine/llm_engine.py v0.2.3 ``_process_model_outputs``), pickled by
Ray in the engine's process and unpickled in the server's.

This times that round trip with vLLM 0.2.3's own classes: ``RequestOutput.from_seq_group`` is left out (the engine
builds it with or without Ray, so the engine profile's output phase holds it); pickle protocol 5, what Ray's
serializer uses for such objects, dumps and loads the list. The per-step cost of the actor call itself is Ray's
release microbenchmark (engines.yaml cites it); this adds the per-request part.

With ``--worker-use-ray`` at TP1 (0.2.2-0.2.6 have no driver worker), every step also makes one Ray call from the
engine to its worker actor (vllm/engine/llm_engine.py v0.2.3 step L577-583, ``_run_workers_in_batch``): the
``worker_call`` lines time pickling and unpickling its arguments (each running sequence's SequenceGroupMetadata with
its token lists, sampling parameters and block table) and the SamplerOutput it returns, per running sequence.

    pip download vllm==0.2.3 --no-deps -d /tmp/vllm023 && cd /tmp/vllm023 && unzip -q vllm-0.2.3-*.whl 'vllm/*'
    python benchmarks/vllm02_engine_rpc.py --vllm-dir /tmp/vllm023

Prints ``name: value`` lines (median over repeats, microseconds per request or per sequence), the headline last:
tokens per sequence 1024 (a 2048-token context half used), batch 16.
"""

from __future__ import annotations

import argparse
import pickle
import random
import statistics
import sys
import time
import types


def _import_vllm(root: str) -> tuple[type, ...]:
    """vLLM 0.2.3's sequence and output classes without its CUDA extension or its package __init__."""
    sys.modules.setdefault("psutil", types.ModuleType("psutil"))
    ext = types.ModuleType("vllm._C")
    ext.cuda_utils = None  # type: ignore[attr-defined]
    sys.modules["vllm._C"] = ext
    pkg = types.ModuleType("vllm")
    pkg.__path__ = [f"{root}/vllm"]  # type: ignore[attr-defined]
    sys.modules["vllm"] = pkg
    from vllm.outputs import RequestOutput
    from vllm.sampling_params import SamplingParams
    from vllm.sequence import (
        Sequence,
        SequenceGroup,
        SequenceGroupMetadata,
        SequenceGroupOutput,
        SequenceOutput,
        SequenceStatus,
    )
    return (RequestOutput, SamplingParams, Sequence, SequenceGroup, SequenceStatus, SequenceGroupMetadata,
            SequenceGroupOutput, SequenceOutput)


def _groups(classes: tuple[type, ...], batch: int, prompt: int, output: int) -> list[object]:
    """``batch`` running requests as DistServe's client sends them (n=1, temperature 1.0, top_p 1.0, ignore_eos)."""
    request_output, sampling, sequence, group, status = classes[:5]
    rng = random.Random(0)
    out = []
    for i in range(batch):
        ids = [rng.randrange(50272) for _ in range(prompt)]
        seq = sequence(i, " ".join(f"w{t}" for t in ids), ids, block_size=16)
        for _ in range(output):
            t = rng.randrange(50272)
            seq.append_token_id(t, {t: -1.0})
        seq.output_text = "w " * output
        seq.status = status.RUNNING
        params = sampling(n=1, temperature=1.0, top_p=1.0, max_tokens=2048, ignore_eos=True)
        out.append(request_output.from_seq_group(group(str(i), [seq], params, arrival_time=0.0)))
    return out


def per_request_us(classes: tuple[type, ...], batch: int, tokens: int, repeats: int) -> float:
    """Median microseconds per request of pickling and unpickling one step's outputs (prompt = 85% of tokens)."""
    outputs = _groups(classes, batch, int(tokens * 0.85), tokens - int(tokens * 0.85))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pickle.loads(pickle.dumps(outputs, protocol=5))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch * 1e6


def _worker_call(classes: tuple[type, ...], batch: int, prompt: int, output: int) -> tuple[dict, list]:
    """One decode step's Ray call to a worker actor (``worker_use_ray``, vllm/engine/llm_engine.py v0.2.3 step L572-578
    and _run_workers_in_batch L710-728): its keyword arguments as Scheduler._schedule builds them (L293-302: each
    running sequence's SequenceData, its sampling parameters and block table) and the worker's SamplerOutput."""
    sampling, sequence, metadata, group_output, seq_output = classes[1], classes[2], *classes[5:]
    rng = random.Random(0)
    groups, outs = [], []
    for i in range(batch):
        ids = [rng.randrange(50272) for _ in range(prompt)]
        seq = sequence(i, None, ids, block_size=16)
        for _ in range(output):
            t = rng.randrange(50272)
            seq.append_token_id(t, {t: -1.0})
        params = sampling(n=1, temperature=1.0, top_p=1.0, max_tokens=2048, ignore_eos=True)
        blocks = list(range(i * 128, i * 128 + -(-(prompt + output) // 16)))
        groups.append(metadata(str(i), False, {i: seq.data}, params, {i: blocks}))
        t = rng.randrange(50272)
        outs.append(group_output([seq_output(i, t, {t: -1.0})], None))
    kwargs = {"seq_group_metadata_list": groups, "blocks_to_swap_in": {}, "blocks_to_swap_out": {}, "blocks_to_copy": {}}
    return kwargs, outs


def worker_per_sequence_us(classes: tuple[type, ...], batch: int, tokens: int, repeats: int) -> float:
    """Median microseconds per running sequence of pickling and unpickling one decode step's worker call: the
    arguments the engine sends and the SamplerOutput the worker returns (prompt = 85% of tokens)."""
    kwargs, outs = _worker_call(classes, batch, int(tokens * 0.85), tokens - int(tokens * 0.85))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pickle.loads(pickle.dumps(kwargs, protocol=5))
        pickle.loads(pickle.dumps(outs, protocol=5))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-dir", required=True, help="a directory holding vLLM 0.2.3's vllm/ package (unzipped wheel)")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    classes = _import_vllm(args.vllm_dir)
    for tokens in (256, 2048):
        print(f"tokens_{tokens}_batch_16_us_per_request: {per_request_us(classes, 16, tokens, args.repeats):.1f}")
    for batch in (4, 64):
        print(f"tokens_1024_batch_{batch}_us_per_request: {per_request_us(classes, batch, 1024, args.repeats):.1f}")
    for tokens in (256, 1024, 2048):
        for batch in (4, 16, 64):
            us = worker_per_sequence_us(classes, batch, tokens, args.repeats)
            print(f"worker_call_tokens_{tokens}_batch_{batch}_us_per_sequence: {us:.1f}")
    print(f"tokens_1024_batch_16_us_per_request: {per_request_us(classes, 16, 1024, args.repeats):.1f}")


if __name__ == "__main__":
    main()
