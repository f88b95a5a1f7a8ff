"""Engine flags as a measurement states them (``key=value;key=value``): parsed, checked and applied.

Each flag maps to the engine option it names: a plan limit (``max_num_seqs``), a profile switch (``cuda_graphs``),
a check against the row (``dtype``), or an option capsim records without a change in its prediction, with the
reason (``swap_space_gb``). An unknown flag, or one the engine does not have, is an error naming the flag and the
ones capsim knows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from capsim.errors import SpecError
from capsim.specs.engine import (
    DecodeKvReads,
    EngineProfile,
    KvReservation,
    SchedulerKind,
    Workers,
    padded_sizes,
)

ALL = ("vllm", "sglang", "tensorrt-llm", "nim")


def _bool(name: str, text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "on", "yes"):
        return True
    if low in ("0", "false", "off", "no"):
        return False
    raise SpecError("flags", f"{name}={text!r} is not a switch", f"write {name}=1 or {name}=0")


def _int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SpecError("flags", f"{name}={text!r} is not a whole number", f"write {name}=<integer>") from None
    if value <= 0:
        raise SpecError("flags", f"{name}={value} must be > 0")
    return value


def _fraction(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError("flags", f"{name}={text!r} is not a number", f"write {name}=0.9") from None
    if not 0.0 < value <= 1.0:
        raise SpecError("flags", f"{name}={value} must be in (0, 1]")
    return value


def _bytes(name: str, text: str, unit: float = 1.0) -> float:
    try:
        value = float(text) * unit
    except ValueError:
        raise SpecError("flags", f"{name}={text!r} is not a number", f"write {name}=<number>") from None
    if not value > 0:
        raise SpecError("flags", f"{name}={text} must be > 0")
    return value


def _workers(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    try:
        w = Workers(text.strip().lower())
    except ValueError:
        raise SpecError("flags", f"{name}={text!r}", f"use one of {', '.join(x.value for x in Workers)}") from None
    known = {eng.workers, eng.workers_tp or eng.workers, *(Workers(t) for t in eng.worker_comm)}
    if w not in known:
        raise SpecError("flags", f"{name}={w.value}: {eng.engine} {eng.release} has no source for that transport",
                        f"capsim knows {', '.join(sorted(x.value for x in known))} for this release")
    return replace(eng, workers=w, workers_tp=w)


def _engine_ray(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    if not _bool(name, text):
        return replace(eng, server=Workers.LOCAL)
    if Workers.RAY.value not in eng.server_comm:
        raise SpecError("flags", f"{name}=1: capsim's {eng.engine} {eng.release} profile ({eng.name}) has no source "
                        "for the cost of a Ray engine actor", "remove the flag, or give a release whose profile "
                        "prices it (server_comm in engines.yaml)")
    return replace(eng, server=Workers.RAY)


def _graphs(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    on = _bool(name, text)
    if on and not eng.cuda_graph_sizes:
        raise SpecError("flags", f"{name}=1: {eng.engine} {eng.release} has no CUDA graphs",
                        "remove the flag, or give the release that captured them")
    return eng.graphs(on)


def _padding(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    on = _bool(name, text)
    return replace(eng, cuda_graph_padding=on, cuda_graph_sizes=padded_sizes(eng.name) if on else
                   eng.cuda_graph_sizes)


def _overlap(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    return replace(eng, overlapped=("all",) if _bool(name, text) else ())


def _backend(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    if eng.backend is None or text.strip().lower() != eng.backend:
        raise SpecError("flags", f"{name}={text}: capsim's {eng.engine} {eng.release} profile ({eng.name}) describes "
                        f"the {eng.backend or 'default'} backend only",
                        "remove the flag, or give a release whose default runtime it is (tensorrt-llm >= 1.0: "
                        "pytorch; 0.11-0.21: tensorrt)")
    return eng


def _chunked(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    # Stated outright, it replaces the release's own default (vLLM V0: on for long contexts).
    return replace(eng, scheduler=SchedulerKind.SARATHI if _bool(name, text) else SchedulerKind.VLLM,
                   chunked_above_context=None)


def _context(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    return replace(eng, max_model_len=_int(name, text))


def _paddings(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    # vLLM 0.2.2-0.3.x --max-paddings (vllm/engine/arg_utils.py v0.2.3 L31 default 256, L171-174 the option; config.py
    # SchedulerConfig L330-340): the padding a whole-prompt batch may carry (EngineProfile.max_paddings)
    if eng.max_paddings is None:
        raise SpecError("flags", f"{name} is not an option of {eng.name}: it packs prompts without padding",
                        "drop the flag, or name a vLLM release of 0.2.2-0.3.x")
    try:
        value = int(text)
    except ValueError:
        raise SpecError("flags", f"{name}={text!r} is not a whole number", f"write {name}=<integer>") from None
    if value < 0:
        raise SpecError("flags", f"{name}={value} must be >= 0")
    return replace(eng, max_paddings=value)


def _prefix(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    return replace(eng, prefix_caching=_bool(name, text))


def _xqa(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    # TensorRT-LLM 0.8-0.9 docs/source/performance.md: the XQA GQA generation kernels are "not enabled by default",
    # "export TRTLLM_ENABLE_XQA=1"; XQA reads a KV head's cache once for its query heads, the masked MHA per query head
    on = _bool(name, text)
    return replace(eng, decode_kv_reads=DecodeKvReads.PER_KV_HEAD if on else DecodeKvReads.PER_QUERY_HEAD)


# TensorRT-LLM's CapacitySchedulerPolicy (cpp/include/tensorrt_llm/executor/executor.h; llm_args.py SchedulerConfig):
# GUARANTEED_NO_EVICT reserves each request's whole sequence at admission; MAX_UTILIZATION takes blocks as steps need
# them and pauses requests when short (cpp/include/tensorrt_llm/batch_manager/llmRequest.h LlmRequest::pause "moving
# the generated tokens to the prompt": recomputed, as capsim preempts). pause keeps min(maxInputLen, prompt +
# generated) tokens; the TrtGptModel constructor (cpp/tensorrt_llm/batch_manager/trtGptModel.h, 2024) sets
# maxInputLen = maxSequenceLen - 1 with chunked context (0.10's published runs), so nothing is dropped; without it,
# under context FMHA with packed input (trtllm-build's defaults), min(maxSequenceLen - 1, max_num_tokens), which can
# drop a long sequence's tail to be generated again (not modelled).
CAPACITY_POLICIES = {"guaranteed_no_evict": KvReservation.WHOLE_SEQUENCE, "max_utilization": KvReservation.PER_STEP}


def _capacity(eng: EngineProfile, name: str, text: str) -> EngineProfile:
    held = CAPACITY_POLICIES.get(text.strip().lower())
    if held is None:
        raise SpecError("flags", f"{name}={text!r} is not a policy capsim models",
                        f"use one of {', '.join(CAPACITY_POLICIES)} (STATIC_BATCH: --scheduler static)")
    return replace(eng, kv_reservation=held)


def _kv_dtype(name: str, text: str) -> str | None:
    low = text.strip().lower()
    kv = {"fp8": "fp8", "fp8_e4m3": "fp8", "auto": None, "bf16": "bf16", "fp16": "fp16"}
    if low not in kv:
        raise SpecError("flags", f"{name}={text!r} is not a KV-cache format capsim prices", f"use one of {', '.join(kv)}")
    return kv[low]


@dataclass(frozen=True)
class Flag:
    """One engine option: the engines that have it and what it changes."""

    engines: tuple[str, ...]
    plan: str | None = None  # the ServePlan field it sets
    parse: Callable[[str, str], Any] | None = None  # value parser for a plan field
    engine: Callable[[EngineProfile, str, str], EngineProfile] | None = None  # profile change
    note: str = ""  # why a recorded flag changes nothing in capsim's prediction


FLAGS: dict[str, Flag] = {
    "workers": Flag(("vllm",), engine=_workers),
    "engine_use_ray": Flag(("vllm",), engine=_engine_ray),
    "block_size": Flag(("vllm", "sglang"), plan="block_size", parse=_int),
    "max_num_batched_tokens": Flag(("vllm",), plan="max_batched_tokens", parse=_int),
    "max_num_tokens": Flag(("tensorrt-llm", "nim"), plan="max_batched_tokens", parse=_int),
    "chunked_prefill_size": Flag(("sglang",), plan="max_batched_tokens", parse=_int),
    "max_num_seqs": Flag(("vllm",), plan="max_batch", parse=_int),
    "max_paddings": Flag(("vllm",), engine=_paddings),
    "max_batch_size": Flag(("tensorrt-llm", "nim"), plan="max_batch", parse=_int),
    "max_running_requests": Flag(("sglang",), plan="max_batch", parse=_int),
    "gpu_memory_utilization": Flag(("vllm",), plan="gpu_memory_utilization", parse=_fraction),
    "mem_fraction_static": Flag(("sglang",), plan="gpu_memory_utilization", parse=_fraction),
    "kv_cache_free_gpu_mem_fraction": Flag(("tensorrt-llm", "nim"), plan="gpu_memory_utilization",
                                           parse=_fraction),
    "cuda_graphs": Flag(ALL, engine=_graphs),
    "cuda_graph_padding": Flag(("tensorrt-llm", "sglang"), engine=_padding),
    "async_scheduling": Flag(("vllm",), engine=_overlap),
    "overlap_scheduler": Flag(("tensorrt-llm",), engine=_overlap),
    "enable_overlap_schedule": Flag(("sglang",), engine=_overlap),  # SGLang 0.3.4-0.3.5 --enable-overlap-schedule
    "capacity_scheduler_policy": Flag(("tensorrt-llm", "nim"), engine=_capacity),
    "chunked_prefill": Flag(("vllm",), engine=_chunked),
    "prefix_caching": Flag(ALL, engine=_prefix),
    "trtllm_enable_xqa": Flag(("tensorrt-llm",), engine=_xqa),  # the TRTLLM_ENABLE_XQA environment variable
    "backend": Flag(("tensorrt-llm",), engine=_backend),
    "enable_expert_parallel": Flag(("vllm",), plan="ep", parse=lambda n, v: 0 if _bool(n, v) else 1),  # 0: tp
    "ep_size": Flag(("sglang",), plan="ep", parse=_int),
    "moe_expert_parallel_size": Flag(("tensorrt-llm",), plan="ep", parse=_int),
    "enable_dp_attention": Flag(("sglang",), plan="dp_attention", parse=_bool),
    "enable_attention_dp": Flag(("tensorrt-llm",), plan="dp_attention", parse=_bool),
    "kv_cache_memory_bytes": Flag(("vllm",), plan="kv_cache_bytes", parse=_bytes),
    # The KV cache's format where the run states it apart from the weights' (vLLM/SGLang --kv-cache-dtype,
    # TensorRT-LLM KvCacheConfig.dtype): fp8, or the serving dtype (auto)
    "kv_cache_dtype": Flag(ALL, plan="kv_cache_dtype", parse=_kv_dtype),
    # vLLM's CPU backend reads its KV space in GiB from the environment (vllm/platforms/cpu.py).
    "vllm_cpu_kvcache_space": Flag(("vllm",), plan="kv_cache_bytes", parse=lambda n, v: _bytes(n, v, 2.0**30)),
    "vllm_cpu_omp_threads_bind": Flag(("vllm",), note="the cores the CPU worker's OpenMP threads are bound to: "
                                      "capsim prices the device calibration at that many threads (--threads)"),
    "max_model_len": Flag(ALL, engine=_context, note="the context limit: it sets vLLM V0's default token budget "
                          "and long-context chunked prefill; capsim refuses a request longer than the model's context"),
    "dtype": Flag(ALL, note="checked against the row's precision"),
    "client": Flag(ALL, note="the benchmark client that measured the row (validation/clients.py), not an engine option"),
    "bench": Flag(("tensorrt-llm",), note="the benchmark tool that ran the engine (trtllm-bench: its max_batch_size / "
                  "max_num_tokens heuristic where the row states neither, capsim/analytic/trtllm_bench.py)"),
    "swap_space_gb": Flag(("vllm",), note="CPU swap space: vLLM preempts a single-sequence request by recomputation "
                          "(vllm/core/scheduler.py PreemptionMode), so the swap space is never used by these requests"),
}
DTYPES = {"fp16": "fp16", "half": "fp16", "float16": "fp16", "bf16": "bf16", "bfloat16": "bf16", "fp8": "fp8",
          "fp32": "fp32", "float32": "fp32", "float": "fp32"}


def parse_flags(text: str) -> dict[str, str]:
    """``key=value;key=value`` as a dict (blank: none); a malformed or repeated entry is an error."""
    out: dict[str, str] = {}
    for item in (s.strip() for s in str(text or "").split(";")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key or not value.strip():
            raise SpecError("flags", f"{item!r} is not key=value", "separate flags with ';', e.g. max_num_seqs=256")
        if key in out:
            raise SpecError("flags", f"{key} is given twice")
        out[key] = value.strip()
    return out


@dataclass(frozen=True)
class Applied:
    """A profile and plan limits after a row's flags, with what capsim did with each flag."""

    engine: EngineProfile
    plan: dict[str, Any]
    notes: tuple[str, ...]


def apply_flags(engine: EngineProfile, flags: dict[str, str], precision: str) -> Applied:
    """``engine`` with ``flags`` applied; ServePlan changes and one note per flag that changes nothing."""
    plan: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in flags.items():
        flag = FLAGS.get(name)
        if flag is None:
            raise SpecError("flags", f"unknown flag {name!r}", f"capsim knows {', '.join(sorted(FLAGS))}")
        if engine.engine not in flag.engines:
            raise SpecError("flags", f"{name} is not a {engine.engine} option",
                            f"{engine.engine} flags: {', '.join(k for k, f in FLAGS.items() if engine.engine in f.engines)}")
        if flag.plan is not None and flag.parse is not None:
            plan[flag.plan] = flag.parse(name, value)
        elif flag.engine is not None:
            engine = flag.engine(engine, name, value)
            if flag.note:
                notes.append(f"{name}={value}: {flag.note}")
        elif name == "dtype":
            want = DTYPES.get(value.strip().lower())
            if want is None or want != precision.strip().lower():
                raise SpecError("flags", f"dtype={value} disagrees with the row's precision {precision!r}",
                                "make the flag and the precision column agree")
        else:
            notes.append(f"{name}={value}: {flag.note}")
    return Applied(engine, plan, tuple(notes))


__all__ = ["FLAGS", "Applied", "Flag", "apply_flags", "parse_flags"]
