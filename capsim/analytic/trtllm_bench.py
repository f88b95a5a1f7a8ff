"""The max_batch_size / max_num_tokens that ``trtllm-bench throughput`` (TensorRT-LLM 1.x, PyTorch backend) runs with
when the command gives neither: its own tuning heuristic, not the LLM API's defaults (2048 / 8192).

Sources (NVIDIA/TensorRT-LLM, read from the search tool's GitHub index; no release tag was resolved, the repository
is over the fetch limit):
- tensorrt_llm/bench/benchmark/utils/general.py ``get_settings`` (the PyTorch path): when max_batch_size and
  max_num_tokens are not both given it calls build.py ``get_benchmark_engine_settings(model_config, quant_config,
  tp, pp, dataset avg_isl, dataset avg_osl, params['kv_cache_free_gpu_mem_fraction'])``; then, with chunked
  prefill off (the default: throughput.py --enable_chunked_context is a flag defaulting to False),
  ``max_num_tokens = max(max_num_tokens, dataset max_isl + max_batch_size)``.
- tensorrt_llm/bench/benchmark/throughput.py (stored commit 000a01de): ``--kv_cache_free_gpu_mem_fraction``
  default .90.
- tensorrt_llm/bench/build/build.py ``get_benchmark_engine_settings``: the heuristic for quant_algo in
  TUNED_QUANTS {NVFP4, FP8, FP8_BLOCK_SCALES, NO_QUANT, None}; any other scheme gets the defaults.
- tensorrt_llm/bench/build/tuning.py ``calc_engine_setting`` and ``finetune_setting`` (stored commit 04cba882,
  L18 on; the same arithmetic in the revisions with ``cache_memory_fraction``): bytes per element NVFP4 0.5,
  FP8 / FP8_BLOCK_SCALES 1.0, else 2.0; KV GiB per token = 2 x num_attention_layers x max(tp, num_key_value_heads)
  x head_size x KV bytes / 2**30; engine GiB = param_count x bytes per element / 2**30; total = NVML total memory
  (utils.py get_device_memory, GiB) x tp x pp; requests = (total - engine) x fraction / (KV GiB per token x
  (isl + osl)); raw_bs = min(requests, 4096) / pp; raw_token = min(raw_bs x (1 + isl / osl), 32768); batch
  rounded up to 32 (min 64) below 256, to 128 below 1024, else to 256; tokens rounded up to 256 (min 2048) below
  4096, to 512 below 8192, else to 1024.
- tensorrt_llm/bench/build/dataclasses.py ModelConfig: param_count = the sum of the checkpoint's safetensors
  parameter (element) counts; head_size = config.json head_dim, else hidden_size // num_attention_heads.

At these revisions the heuristic knows neither MLA nor attention data parallelism: PR #16707 (2026-07-22, 'used the
plain MHA formula (2*layers*kv_heads*head_size) for all models, overestimating KV bytes/token ~25x for MLA models')
and PR #13498 (2026-04-27, after the 1.2 release notes of 2026-03-05: engine size from checkpoint bytes, attention-DP
batch per rank) changed that later. The max_batch_size / max_num_tokens it returns are the LlmArgs values, which
TensorRT-LLM applies per attention-DP rank (each rank runs its own executor and capacity scheduler: ai-dynamo/dynamo
#11982, reading tensorrt_llm/_torch/pyexecutor/_util.py at v1.1.0rc5 L630-655), which capsim.sim.serving.fleet
engine_plan turns into the replica's (x tp), as it does the defaults and the max_batch_size / max_num_tokens flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from capsim.analytic.params import param_counts
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan

TRTLLM_BENCH = "trtllm-bench"
BENCH_TOOLS = (TRTLLM_BENCH,)
KV_FRACTION = 0.90  # throughput.py --kv_cache_free_gpu_mem_fraction default .90
# tuning.py BYTES_PER_ELEM (the scheme's bytes per stored element); build.py TUNED_QUANTS are the schemes it tunes
BYTES_PER_ELEM = {"nvfp4": 0.5, "fp8": 1.0, "none": 2.0}
MAX_REQUESTS = 4096  # finetune_setting: 'Cap total batch size to avoid decoder buffer size becoming too large'
MAX_TOKENS = 32768  # finetune_setting: 'Cap num tokens to avoid TRT activation buffer becoming too large'
GIB = 1024**3


@dataclass(frozen=True)
class BenchLimits:
    """trtllm-bench's max_batch_size / max_num_tokens: per attention-DP rank, as the engine applies them
    (capsim.sim.serving.fleet.engine_plan makes them the replica's)."""

    max_batch_size: int
    max_num_tokens: int


def stored_elements(model: ModelSpec, quantization: str) -> float:
    """The checkpoint's safetensors element count (dataclasses.py get_param_count): a ModelOpt NVFP4 checkpoint
    stores its quantized linear weights as U8 pairs of E2M1 values (half an element per parameter) plus one F8
    scale per 16 (PR #13498: 'U8 for packed FP4 weights, BF16 for non-quantized layers (embeddings, norms), and
    F8_E4M3 for scale factors'); capsim takes the decoder stack as the quantized part and the embeddings and LM
    head as BF16. FP8 and unquantized checkpoints store one element per parameter."""
    c = param_counts(model)
    rest = c.embedding + c.lm_head + c.other
    if quantization == "nvfp4":
        return c.decoder * (0.5 + 1.0 / 16) + rest
    return float(c.decoder + rest)


def head_size(model: ModelSpec) -> int:
    """dataclasses.py ModelConfig.head_size: config.json head_dim, else hidden_size // num_attention_heads. An MLA
    config (DeepSeek-V3's) has no head_dim, so hidden // heads, the plain MHA formula PR #16707 describes."""
    return model.hidden // model.heads if model.kv_lora_rank else model.head_dim


def finetune(requests: float, isl: int, osl: int, pp: int) -> tuple[int, int]:
    """tuning.py finetune_setting (optimistic tuning, the non-hybrid path)."""
    raw_bs = min(requests, MAX_REQUESTS) / pp
    raw_token = min(raw_bs * (1 + isl / osl), MAX_TOKENS)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_token < 4096:
        tokens = max(2048, 256 * math.ceil(raw_token / 256))
    elif raw_token < 8192:
        tokens = 512 * math.ceil(raw_token / 512)
    else:
        tokens = 1024 * math.ceil(raw_token / 1024)
    return bs, tokens


def trtllm_bench_limits(model: ModelSpec, plan: ServePlan, accelerator: Accelerator, isl: int, osl: int,
                        fraction: float = KV_FRACTION) -> BenchLimits | None:
    """trtllm-bench's max_batch_size / max_num_tokens for a dataset of fixed ``isl`` / ``osl`` (avg = max), chunked
    prefill off, ``fraction`` its --kv_cache_free_gpu_mem_fraction; None where the scheme is not in TUNED_QUANTS
    (the LLM API's defaults then apply) or where calc_engine_setting would refuse the run (under one request)."""
    quant = str(plan.quantization.value)
    if quant not in BYTES_PER_ELEM:
        return None
    kv_bytes = 1.0 if plan.kv_cache_dtype.bytes == 1 else 2.0  # BYTES_PER_ELEM of kv_cache_quant_algo FP8, else 2
    gib_per_token = 2 * model.layers * max(plan.tp, model.kv_heads) * head_size(model) * kv_bytes / GIB
    engine = stored_elements(model, quant) * BYTES_PER_ELEM[quant] / GIB
    # get_device_memory is NVML's total; capsim's accelerator total is the CUDA-reported one (accelerators.yaml)
    total = accelerator.memory_bytes / GIB * plan.tp * plan.pp
    requests = (total - engine) * fraction / (gib_per_token * (isl + osl))
    if requests < 1:
        return None  # calc_engine_setting raises: the run would not have started
    bs, tokens = finetune(requests, isl, osl, plan.pp)
    tokens = max(tokens, isl + bs)  # general.py get_settings, chunked prefill disabled
    return BenchLimits(bs, tokens)


__all__ = ["BENCH_TOOLS", "KV_FRACTION", "TRTLLM_BENCH", "BenchLimits", "finetune", "head_size", "stored_elements",
           "trtllm_bench_limits"]
