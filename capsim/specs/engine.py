"""Serving-engine profiles: per-step CPU overhead, kernel efficiencies and batching defaults of an engine.

The numbers live in ``capsim/specs/catalog/engines.yaml``, each with its source (STYLE.md #3); none is fitted to
end-to-end results.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from typing import Any

from capsim.errors import SpecError, UnknownNameError, require
from capsim.specs.catalog import load_catalog
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec


class SchedulerKind(StrEnum):
    """How a replica forms its engine steps."""

    VLLM = "vllm"  # continuous batching, prefill-priority: a step is all prefill or all decode (vLLM V0, SGLang)
    SARATHI = "sarathi"  # chunked prefill: decodes plus prefill chunks up to a token budget (Sarathi-Serve, V1)
    STATIC = "static"  # whole batches run to completion (FasterTransformer-style baseline)


@dataclass(frozen=True)
class EngineProfile:
    """What a serving engine adds to the device model; see engines.yaml for the meaning and source of each."""

    name: str
    description: str
    scheduler: SchedulerKind
    max_num_seqs: int
    max_num_batched_tokens: int | str  # "model": max(model context, 2048)
    watermark: float
    kv_memory_of: str  # "total" or "free"
    memory_fraction: float
    step_overhead_s: float
    sequence_overhead_s: float
    cuda_graphs: bool
    cuda_graph_max_batch: int
    kernel_dispatch_s: float
    gemm_efficiency: float = 1.0
    attention_efficiency: float = 1.0
    decode_attention_efficiency: float = 1.0
    memory_efficiency: float = 1.0
    # The decode attention kernel runs one thread block per query head, each streaming its KV head's cache: a GQA
    # group's cache is read once per query head instead of once per group (vLLM V0 PagedAttention, TensorRT-LLM's
    # masked MHA before XQA). False: one read per KV head (FlashAttention, FlashInfer, XQA).
    decode_kv_per_query_head: bool = False
    large_gpu: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("step_overhead_s", "sequence_overhead_s", "kernel_dispatch_s", "watermark"):
            require(getattr(self, name) >= 0, f"engine.{name}", f"must be >= 0, got {getattr(self, name)}")
        for name in ("gemm_efficiency", "attention_efficiency", "decode_attention_efficiency", "memory_efficiency",
                     "memory_fraction"):
            value = getattr(self, name)
            require(0 < value <= 1.5, f"engine.{name}", f"must be in (0, 1.5], got {value}")
        require(isinstance(self.decode_kv_per_query_head, bool), "engine.decode_kv_per_query_head",
                f"must be true or false, got {self.decode_kv_per_query_head!r}")
        require(self.kv_memory_of in ("total", "free"), "engine.kv_memory_of",
                f"must be 'total' or 'free', got {self.kv_memory_of!r}")

    def limits(self, model: ModelSpec, accelerator: Accelerator | None = None) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens) this engine defaults to for ``model`` on ``accelerator``."""
        seqs, tokens = self.max_num_seqs, self.max_num_batched_tokens
        large = accelerator is not None and accelerator.memory_bytes >= 70 * 2**30 \
            and "a100" not in accelerator.name.lower()
        if large and self.large_gpu:
            seqs = self.large_gpu.get("max_num_seqs", seqs)
            tokens = self.large_gpu.get("max_num_batched_tokens", tokens)
        if tokens == "model":
            tokens = max(model.max_seq, 2048)
        return int(seqs), int(tokens)

    def with_(self, **changes: Any) -> EngineProfile:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["scheduler"] = self.scheduler.value
        return out


@cache
def engines() -> dict[str, EngineProfile]:
    """Every engine profile of the catalog, by name."""
    raw: dict[str, dict[str, Any]] = load_catalog("engines")
    out: dict[str, EngineProfile] = {}
    for name, entry in raw.items():
        entry = dict(entry)
        parent = entry.pop("inherits", None)
        if parent is not None:
            base = dict(raw[parent])
            base.update({k: v for k, v in entry.items() if k != "sources"})
            base["sources"] = {**raw[parent].get("sources", {}), **entry.get("sources", {})}
            entry = base
        entry["scheduler"] = SchedulerKind(entry["scheduler"])
        out[name] = EngineProfile(name=name, **entry)
    return out


def get_engine(name: str | EngineProfile, cuda_graphs: bool | None = None) -> EngineProfile:
    """An engine profile by name (``vllm``, ``vllm-v0``, ``tensorrt-llm``, ``tensorrt-llm-0.5``, ``sglang``,
    ``nim``; also ``trtllm``, ``trt-llm``); ``cuda_graphs`` overrides the profile's default."""
    if isinstance(name, EngineProfile):
        prof = name
    else:
        key = str(name).strip().lower().replace("_", "-")
        key = {"trtllm": "tensorrt-llm", "trt-llm": "tensorrt-llm", "tensorrtllm": "tensorrt-llm",
               "vllm-v1": "vllm", "nvidia-nim": "nim", "trtllm-0.5": "tensorrt-llm-0.5",
               "trt-llm-0.5": "tensorrt-llm-0.5"}.get(key, key)
        if key not in engines():
            raise UnknownNameError("engine", str(name), list(engines()))
        prof = engines()[key]
    if cuda_graphs is not None:
        if not isinstance(cuda_graphs, bool):
            raise SpecError("engine.cuda_graphs", f"must be true or false, got {cuda_graphs!r}")
        prof = replace(prof, cuda_graphs=cuda_graphs)
    return prof


__all__ = ["EngineProfile", "SchedulerKind", "engines", "get_engine"]
