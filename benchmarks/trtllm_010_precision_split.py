"""Where capsim's TensorRT-LLM 0.10 misses come from: the same page's FP16 and FP8 cells side by side.

TensorRT-LLM's docs/source/performance/perf-overview.md of 0.10 ('All data in the table below was generated using
version 0.10.0'; NVIDIA/TensorRT-LLM, the version whose Llama-2-7B H100 FP8 128/128 cell is 16985.6) publishes each
model and length pair at H100 FP8, H100 FP16 and H200 FP8 from one recipe: trtllm-build --max_batch_size 2048
--max_num_tokens 2048 --use_paged_context_fmha enable --multiple_profiles enable, gptManagerBenchmark --type IFB
--scheduler_policy max_utilization --kv_cache_free_gpu_mem_fraction 0.9 --enable_chunked_context --streaming
--request_rate -1.0 over 2000 requests of exactly the stated lengths, FP8 = quant_algo FP8 with kv_cache_quant_algo
FP8 (the page's config files). Only the precision (and for H200 the GPU) differs between the cells of a row, so the
engine release, its scheduler, KV sizing, chunked context and host path are common to them.

This prices each cell as ``capsim validate serving`` prices a row (the trtllm-0.10 rows' flags; the cells that are
also validation rows carry the same numbers) and prints, per cell, capsim's error and its prediction at the two FP8
rates nobody published for this release: every FP8 GEMM at DeepGEMM's block-scaled ratio instead of TE's cuBLASLt
ratio (capsim.calibration.fp8), and the 8-bit KV cache read by the masked-MHA decode kernel (groups 1 and 4; XQA
takes only groups of 8 in 0.10, engines.yaml decode_kv_groups) at the rate of a 16-bit cache (no gain from the smaller
bytes). The cells are published figures used as a check, never to set a value.

    python benchmarks/trtllm_010_precision_split.py

Prints one ``name: value`` line per cell, then the FP8/FP16 ratio of each model pair, measured and capsim's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from capsim.analytic.serving_moe import decode_kv_reads
from capsim.calibration.fp8 import fp8_rates, with_fp8_scale
from capsim.specs.catalog import get_model
from capsim.specs.engine import DecodeKvReads
from capsim.validation.harness import read_csv
from capsim.validation.serving import _fixed, _perf, _plan, _run, row_software

GPUS = {"H100": "H100-SXM5-80GB", "H200": "H200-SXM-141GB"}
# (model, gpu, tp, precision, input, output, published output tok/s): perf-overview.md of 0.10, the table above.
CELLS = (
    ("llama-2-7b", "H100", 1, "fp8", 128, 128, 16985.6), ("llama-2-7b", "H100", 1, "fp16", 128, 128, 10725.31),
    ("llama-2-7b", "H200", 1, "fp8", 128, 128, 18229.3),
    ("llama-3-8b", "H100", 1, "fp8", 128, 128, 16708.53), ("llama-3-8b", "H100", 1, "fp16", 128, 128, 12085.78),
    ("llama-3-8b", "H200", 1, "fp8", 128, 128, 16708.84),
    ("mixtral-8x7b", "H100", 2, "fp8", 128, 128, 16051.88), ("mixtral-8x7b", "H100", 2, "fp16", 128, 128, 12376.52),
    ("llama-2-70b", "H100", 4, "fp8", 128, 128, 8148.67), ("llama-2-70b", "H100", 4, "fp16", 128, 128, 5454.76),
    ("llama-2-7b", "H100", 1, "fp8", 2048, 128, 2355.47), ("llama-2-7b", "H100", 1, "fp16", 2048, 128, 1235.4),
    ("llama-3-8b", "H100", 1, "fp8", 2048, 128, 2427.09), ("llama-3-8b", "H100", 1, "fp16", 2048, 128, 1604.7),
    ("llama-3-8b", "H100", 1, "fp8", 2048, 2048, 3500.48), ("llama-3-8b", "H100", 1, "fp16", 2048, 2048, 2776.31),
    ("llama-3-70b", "H100", 4, "fp8", 2048, 2048, 3685.74), ("llama-3-70b", "H100", 4, "fp16", 2048, 2048, 1612.11),
)
FLAGS = ("max_batch_size=2048;max_num_tokens=2048;capacity_scheduler_policy=max_utilization;"
         "kv_cache_free_gpu_mem_fraction=0.9")
REQUESTS = 2000  # prepare_dataset.py --num-requests=2000


def _row(model: str, gpu: str, tp: int, prec: str, isl: int, osl: int, value: float) -> dict[str, str]:
    return {"source": "trtllm-0.10", "model": model, "gpu": GPUS[gpu], "gpus": str(tp), "tp": str(tp),
            "precision": prec, "engine": "tensorrt-llm", "engine_version": "0.10.0", "flags": FLAGS,
            "workload": "max-load", "trace": "", "batch": str(REQUESTS), "input_tokens": str(isl),
            "output_tokens": str(osl), "rate_rps": "", "metric": "output_tokens_per_s", "value": str(value),
            "unit": "tok/s"}


def _tok_s(r: dict[str, str], perf, sw, kv_bytes_rate: bool = True) -> float:
    plan = _plan(r, sw)
    if not kv_bytes_rate:  # the decode kernel reads the 8-bit cache at a 16-bit cache's rate
        eng = replace(sw.engine, decode_attention_efficiency=sw.engine.decode_attention_efficiency
                      * plan.kv_cache_dtype.bytes / 2.0)
        sw = replace(sw, engine=eng)
    res = _run(r, _fixed(REQUESTS, r, np.zeros(REQUESTS)), plan, sw, perf)
    return float(res.summary["output_tokens_per_s"])


def main() -> None:
    assert read_csv(None, "serving_published.csv", ())  # the shipped rows load (the cells share their columns)
    got: dict[tuple, float] = {}
    for cell in CELLS:
        r = _row(*cell)
        sw, perf = row_software(r), _perf(r["gpu"], None)
        point = _tok_s(r, perf, sw)
        got[cell[:6]] = point
        measured = cell[6]
        line = f"{point:.0f} tok/s vs {measured:g} ({100 * (point / measured - 1):+.1f}%)"
        if cell[3] == "fp8":
            rates = fp8_rates(perf)
            alt = _tok_s(r, with_fp8_scale(perf, rates[1].dtype_scale), sw) if rates else point
            line += f"; FP8 GEMMs at DeepGEMM's ratio {100 * (alt / measured - 1):+.1f}%"
            if decode_kv_reads(get_model(r["model"]), _plan(r, sw), sw.engine) is DecodeKvReads.PER_QUERY_HEAD:
                kv16 = _tok_s(r, perf, sw, kv_bytes_rate=False)
                line += f"; 8-bit KV read by the masked MHA at the 16-bit rate {100 * (kv16 / measured - 1):+.1f}%"
            else:
                line += "; decoded by XQA (group of 8)"
        print(f"{cell[0]} {cell[1]} tp{cell[2]} {cell[3]} {cell[4]}/{cell[5]}: {line}", flush=True)
    for cell in CELLS:
        if cell[3] != "fp8" or cell[1] != "H100":
            continue
        pair = next((c for c in CELLS if c[:3] == cell[:3] and c[3] == "fp16" and c[4:6] == cell[4:6]), None)
        if pair is None:
            continue
        measured = cell[6] / pair[6]
        capsim = got[cell[:6]] / got[pair[:6]]
        print(f"fp8/fp16 {cell[0]} tp{cell[2]} {cell[4]}/{cell[5]}: measured {measured:.2f}, capsim {capsim:.2f}")


if __name__ == "__main__":
    main()
