"""The vocabulary of a serving-engine profile (:class:`capsim.specs.engine.EngineProfile`): how a release
schedules, reaches its workers, reads the KV cache, reserves KV blocks, runs its linears and picks its large-GPU
defaults, the defaults for values its sources do not state, host cost per step, and release numbers.
``capsim.specs.engine`` re-exports every name here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from capsim.errors import SpecError
from capsim.specs.hardware import Accelerator


class SchedulerKind(StrEnum):
    """How a replica forms its engine steps."""

    VLLM = "vllm"  # continuous batching, prefill-priority: a step is all prefill or all decode (vLLM V0, SGLang)
    SARATHI = "sarathi"  # chunked prefill: decodes plus prefill chunks up to a token budget (Sarathi-Serve, V1)
    STATIC = "static"  # whole batches run to completion (FasterTransformer-style baseline)


class Workers(StrEnum):
    """How an engine's driver reaches its GPU workers."""

    LOCAL = "local"  # in the driver's process (TP1)
    RAY = "ray"  # Ray actors, one remote call per worker per step
    MP = "mp"  # worker processes behind a shared-memory queue or MPI


PHASES = ("schedule", "prepare", "sampler", "outputs", "step", "workers", "server")  # host-time phases of a step


class DecodeKvReads(StrEnum):
    """How often an engine's decode attention kernel reads a GQA group's cached keys and values per step."""

    PER_KV_HEAD = "per_kv_head"  # once per KV head for its whole group of query heads (XQA, FlashInfer, FA2)
    PER_QUERY_HEAD = "per_query_head"  # once per query head: one thread block per (sequence, query head) (MMHA)


class KvReservation(StrEnum):
    """How an engine's capacity scheduler reserves KV blocks when it admits a request (engines.yaml kv_reservation)."""

    PER_STEP = "per_step"  # the prompt's blocks, then blocks as decoding needs them; preempt when short (vLLM)
    WHOLE_SEQUENCE = "whole_sequence"  # prompt + max output tokens at admission, never preempt (TRT-LLM no-evict)


class LargeGpu(StrEnum):
    """Which GPUs take an engine release's large-GPU batching defaults (engines.yaml large_gpu_when)."""

    MEMORY_NOT_A100 = "memory_not_a100"  # >= 70 GiB and not an A100 (vLLM 0.9+, vllm-project/vllm#17885)
    MEMORY = "memory"  # >= 70 GiB (vLLM 0.8.5)
    H100_H200 = "h100_h200"  # the device's name holds "h100" or "h200" (vLLM 0.8.0-0.8.4)

    def applies_to(self, accelerator: Accelerator) -> bool:
        """Whether ``accelerator`` takes the large-GPU defaults under this rule."""
        name, big = accelerator.name.lower(), accelerator.memory_bytes >= 70 * 2**30
        return {LargeGpu.MEMORY_NOT_A100: big and "a100" not in name, LargeGpu.MEMORY: big,
                LargeGpu.H100_H200: "h100" in name or "h200" in name}[self]


class GemmPath(StrEnum):
    """How an engine runs its linear layers, where a calibration times kernel paths apart (kernels/gemm.py)."""

    TORCH = "torch"  # torch's linear / matmul on the weight as stored (the calibration's main GEMM bench)
    ONEDNN_PACKED = "onednn_packed"  # a oneDNN matmul on a weight reordered once into oneDNN's blocked layout


# capsim's defaults where a release's sources do not state a value (engines.yaml names them per profile): vLLM's
# long-standing limits and memory fraction, no watermark, nothing reserved, no host time priced, eager kernels.
DEFAULTS: dict[str, Any] = {"max_num_seqs": 256, "max_num_batched_tokens": "model", "watermark": 0.0,
                            "kv_memory_of": "total", "memory_fraction": 0.9, "reserved_bytes": 0.0,
                            "workers": "local", "cuda_graphs": False, "cuda_graph_padding": False,
                            "kernel_dispatch_s": 1.0e-5, "prefix_caching": False, "device_type": "gpu",
                            "host_shares_device": False, "block_size": 16, "reserved_cores": 0,
                            "ttft_offset_s": 0.0, "gemm_path": "torch",
                            "large_gpu_when": "memory_not_a100", "decode_kv_reads": "per_kv_head",
                            "kv_reservation": "per_step"}


def parse_version(text: str, field_name: str = "engine_version") -> tuple[int, ...]:
    """(major, minor, patch, ...) of a release string such as ``0.2.3``, ``v1.0`` or ``1.0.0rc2`` (the release
    candidate counts as its release)."""
    m = re.fullmatch(r"v?(\d+(?:\.\d+)*)(?:[.-]?(?:rc|post|dev|a|b)\d*)?", str(text).strip().lower())
    if m is None:
        raise SpecError(field_name, f"{text!r} is not a release number", "write it as 0.2.3 or 1.0.0")
    parts = tuple(int(p) for p in m.group(1).split("."))
    return parts + (0,) * (3 - len(parts))


@dataclass(frozen=True)
class HostCost:
    """Host seconds per step for a step of ``seqs`` sequences computing ``prompt`` prompt tokens: exposed (the GPU
    waits for it) and overlapped (it runs while the GPU computes, so a step takes at least that long), each
    intercept + per-sequence + per-prompt-token. Per request, not per step: ``admit_s`` for each request the step
    admits (exposed: the server hands it to the engine before the step), ``finish_s`` once after a step in which
    any request finished (exposed: the server tells the engine before the next step)."""

    exposed: tuple[float, float, float] = (0.0, 0.0, 0.0)
    overlapped: tuple[float, float, float] = (0.0, 0.0, 0.0)
    admit_s: float = 0.0
    finish_s: float = 0.0

    def exposed_s(self, seqs: Any, prompt: Any = 0.0, admitted: Any = 0.0) -> Any:
        return self.exposed[0] + self.exposed[1] * seqs + self.exposed[2] * prompt + self.admit_s * admitted

    def overlapped_s(self, seqs: Any, prompt: Any = 0.0) -> Any:
        return self.overlapped[0] + self.overlapped[1] * seqs + self.overlapped[2] * prompt


@dataclass(frozen=True)
class PagedGrid:
    """How a release's PagedAttention decode kernel lays out its thread blocks (engines.yaml decode_grid): V1 is
    one block per (query head, sequence) over the whole context, V2 one per (query head, sequence, partition of
    ``partition_tokens`` keys), and the engine picks V1 when the longest context is at most ``v1_max_context`` and
    either it fits one partition or sequences x heads exceed ``v1_min_blocks``. ``registers``: registers per thread
    of the (V1, V2) kernels in the release's build, by GPU family (a prefix of the accelerator's name), KV dtype and
    head size."""

    partition_tokens: int
    v1_min_blocks: int
    v1_max_context: int
    threads_per_block: int
    registers: dict[str, dict[str, dict[int, tuple[int, int]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("partition_tokens", "v1_min_blocks", "v1_max_context", "threads_per_block"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f'"decode_grid.{name}" must be a positive integer, got {value!r}')
        for family, by_dtype in self.registers.items():
            for dtype, by_head in by_dtype.items():
                for head, regs in by_head.items():
                    if len(regs) != 2 or min(regs) <= 0:
                        raise ValueError(f'"decode_grid.registers.{family}.{dtype}.{head}" must be [V1, V2] '
                                         f"registers > 0, got {regs!r}")

    def registers_for(self, device: str, dtype: str, head_size: int) -> tuple[int, int] | None:
        """(V1, V2) registers per thread on ``device`` for ``dtype`` and ``head_size``; None where the release's
        build was not read for them."""
        by_dtype = next((r for family, r in self.registers.items() if device.startswith(family)), {})
        regs = by_dtype.get(dtype, {}).get(int(head_size))
        return None if regs is None else (int(regs[0]), int(regs[1]))


__all__ = ["DEFAULTS", "PHASES", "DecodeKvReads", "GemmPath", "HostCost", "KvReservation", "LargeGpu", "PagedGrid",
           "SchedulerKind", "Workers", "parse_version"]
