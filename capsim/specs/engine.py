"""Serving-engine profiles by release: batching defaults, host (CPU) time per step, CUDA graphs and memory.

The numbers live in ``capsim/specs/catalog/engines.yaml``, one profile per engine release, each value with its
source (STYLE.md #3); none is fitted to end-to-end results. A release a profile does not cover is an error
(:func:`engine_release`), never the nearest profile.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

from capsim.errors import SpecError, UnknownNameError, require
from capsim.specs.catalog import load_catalog
from capsim.specs.engine_kinds import (
    DEFAULTS,
    PHASES,
    DecodeKvReads,
    GemmPath,
    HostCost,
    KvReservation,
    LargeGpu,
    PagedGrid,
    SchedulerKind,
    Workers,
    parse_version,
)
from capsim.specs.hardware import HOST_CPUS, Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.precision import DType

# Sampling modes an engine profile may time its sampler for (capsim.analytic.serving.SamplingMode's values).
SAMPLER_MODES = ("greedy", "random", "top-k", "top-p")
# engines.yaml sampler_s key of what repetition, frequency and presence penalties add to any measured mode's sampler.
PENALTIES_KEY = "penalties"
# The worker_comm tier priced once per tensor-parallel worker at TP > 1 (on top of "tp2+"): the driver's call to
# each worker (vLLM 0.2.3 vllm/engine/llm_engine.py _run_workers_in_batch L718-727 submits one Ray call per worker).
PER_WORKER = "per_worker"


def _sizes(spec: list[Any]) -> tuple[int, ...]:
    """Captured batch sizes from engines.yaml: ints and "first:last:step" ranges."""
    out: list[int] = []
    for item in spec:
        if isinstance(item, int):
            out.append(item)
        else:
            a, b, s = (int(x) for x in str(item).split(":"))
            out.extend(range(a, b + 1, s))
    return tuple(sorted(set(out)))


def _phase(value: Any) -> tuple[float, float, float]:
    """A phase's host cost from engines.yaml: [intercept_s, per_sequence_s] or [..., per_prompt_token_s]."""
    v = [float(x) for x in value]
    require(len(v) in (2, 3), "engine.cpu", f"a phase is [intercept_s, per_sequence_s(, per_prompt_token_s)], "
            f"got {value!r}")
    return (v[0], v[1], v[2] if len(v) == 3 else 0.0)


def _bound(host: str, value: Any) -> tuple[float, float]:
    """A host kind's host-time bound from engines.yaml cpu_bound: [intercept_s, per_sequence_s]."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 \
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    require(ok, f"engine.cpu_bound.{host}", f"must be [intercept_s, per_sequence_s], got {value!r}")
    return (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class EngineProfile:
    """One engine release; see engines.yaml for the meaning and source of each field."""

    name: str
    engine: str  # family: vllm, sglang, tensorrt-llm, nim
    release: str  # the release described
    covers: tuple[str, str | None]  # releases [first, before) the profile stands for
    description: str
    scheduler: SchedulerKind
    max_num_seqs: int = DEFAULTS["max_num_seqs"]
    max_num_batched_tokens: int | str = DEFAULTS["max_num_batched_tokens"]  # "model": max(model context, 2048)
    large_gpu: dict[str, int] = field(default_factory=dict)
    large_gpu_when: LargeGpu = LargeGpu(DEFAULTS["large_gpu_when"])  # which GPUs take large_gpu
    watermark: float = DEFAULTS["watermark"]
    kv_reservation: KvReservation = KvReservation(DEFAULTS["kv_reservation"])  # blocks reserved at admission
    kv_memory_of: str = DEFAULTS["kv_memory_of"]  # "total" or "free"
    memory_fraction: float = DEFAULTS["memory_fraction"]
    reserved_bytes: float = DEFAULTS["reserved_bytes"]
    cpu: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # phase -> (intercept_s,
    #                                                       per_sequence_s, per_prompt_token_s)
    overlapped: tuple[str, ...] = ()  # phases hidden behind the GPU ("all" = every phase)
    # An upper bound on the host time of a whole step where no figure splits it into phases, by host CPU kind
    # (hardware.HOST_CPUS): kind -> (intercept_s, per_sequence_s). Never priced (a prediction prices ``cpu``); the
    # serving validation reports the band it opens (engines.yaml cpu_bound).
    cpu_bound: dict[str, tuple[float, float]] = field(default_factory=dict)
    overlap_needs_cuda_graphs: bool = False  # the overlap is off when CUDA graphs are (vLLM V0 async output)
    workers: Workers = Workers.LOCAL  # at TP1
    workers_tp: Workers | None = None  # at TP > 1 (None: as at TP1)
    worker_comm: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)
    # transport -> {"tp1" | "tp2+": host cost per step, PER_WORKER: added once per TP worker at TP > 1}
    # How the API server reaches the engine loop: local = in the server's process; ray = the engine is a Ray actor
    # the server calls once per step and that returns every running request's output (vLLM --engine-use-ray).
    server: Workers = Workers.LOCAL
    server_comm: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # transport -> host cost
    # The server's calls to a remote engine loop that are per request, not per step: transport -> (seconds per
    # request it adds, seconds per step after one in which requests finished), both exposed (vLLM 0.2.x-0.3.x
    # --engine-use-ray awaits add_request.remote and abort_request.remote before the step's call).
    server_calls: dict[str, tuple[float, float]] = field(default_factory=dict)
    cuda_graphs: bool = DEFAULTS["cuda_graphs"]
    cuda_graph_sizes: tuple[int, ...] = ()
    cuda_graph_padding: bool = DEFAULTS["cuda_graph_padding"]
    kernel_dispatch_s: float = DEFAULTS["kernel_dispatch_s"]
    prefix_caching: bool = DEFAULTS["prefix_caching"]
    # Prompts of a prefill batch padded to its longest (vLLM 0.2.2-0.3.x): the padded tokens count against
    # max_num_batched_tokens and run through the model, and a batch takes at most this many padding tokens; None:
    # prompts are packed without padding.
    max_paddings: int | None = None
    # What the release's memory profile run holds at its sampler's peak, per logit (one row x vocabulary element of
    # the max_num_seqs rows it samples): (tensors in the serving dtype, further bytes), engines.yaml profile_sampler.
    # The KV cache gets what is left after the larger of the forward's and that peak (capsim.analytic.memory
    # serving_memory). None: capsim's generic estimate (the fp32 logits on top of the forward's peak).
    profile_sampler: tuple[float, float] | None = None
    # vLLM V0 (0.5-0.7): chunked prefill turns on by default when the served context (max_model_len, else the
    # model's) exceeds chunked_above_context and the model has no sliding window; with chunked prefill on and no
    # token budget given, a step takes chunked_max_num_batched_tokens. None: no such rule.
    chunked_above_context: int | None = None
    chunked_max_num_batched_tokens: int | None = None
    max_model_len: int | None = None  # the served context a row states (flags max_model_len), else the model's
    # The runtime a TensorRT-LLM release runs by default: "pytorch" (1.0+) or "tensorrt" (TensorRT engines under the
    # C++ executor); a row's backend flag must name it (capsim has no profile of the other runtime of that release).
    backend: str | None = None
    device_type: str = DEFAULTS["device_type"]  # "gpu", or "cpu" for a CPU backend (vLLM's CPU build)
    # A CPU backend's host work (scheduling, input preparation, sampling) and its kernel dispatch run on the cores
    # that compute: nothing overlaps the device's work (every phase is exposed); the calibration's per-kernel
    # launch already holds the dispatch (its microbenchmarks time eager torch ops on the same thread).
    host_shares_device: bool = DEFAULTS["host_shares_device"]
    block_size: int = DEFAULTS["block_size"]  # tokens per paged-KV block by default
    reserved_cores: int = DEFAULTS["reserved_cores"]  # CPU cores per rank kept for the engine's own processes
    ttft_offset_s: float = DEFAULTS["ttft_offset_s"]  # added to every TTFT by server and client (measured or fitted)
    # The kernel path the engine runs its dense linears on; the device calibration must have timed it (a path
    # other than torch's linear: capsim calibrate --ops gemm_packed).
    gemm_path: GemmPath = GemmPath(DEFAULTS["gemm_path"])
    # How the decode attention kernel reads a GQA group's KV cache (engines.yaml decode_kv_reads): the bytes it moves.
    decode_kv_reads: DecodeKvReads = DecodeKvReads(DEFAULTS["decode_kv_reads"])
    # The GQA group sizes (query heads per cached KV head on a rank) the per-KV-head decode kernel covers; a group
    # outside them decodes with the per-query-head kernel (engines.yaml decode_kv_groups). Empty: every group.
    decode_kv_groups: tuple[int, ...] = ()
    # The engine's own sampler where an operator profile timed it (engines.yaml sampler_s): sampling mode ->
    # (per call s, per logit s), a step's seconds = per call + per logit x rows x vocabulary, replacing the generic
    # sampler kernels of that mode (capsim.analytic.serving.sampler_host_s); modes not listed stay generic. Key
    # "penalties" (PENALTIES_KEY): what repetition/frequency/presence penalties add to a measured mode.
    sampler_s: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The engine's own KV-cache write kernel where an operator profile timed it (engines.yaml kv_write_s): (per call
    # s, per byte written s), one call per layer per step over the step's new tokens, replacing the generic
    # kv_cache_write copy (capsim.analytic.serving.kv_write_s). Empty: the generic copy.
    kv_write_s: tuple[float, ...] = ()
    # The engine's own decode attention kernel where an operator profile timed it (an engine file written by
    # benchmarks/vllm_cpu_step_profile.py --engine-out --attention-profiles): KV-cache dtype -> (per call s, per byte
    # s), one call per layer per decode step over the bytes capsim's decode attention op moves (the KV cache read,
    # queries and outputs), replacing the calibration's attention price of decode
    # (capsim.analytic.serving.decode_attention_s). Empty: the calibration's price.
    decode_attention_s: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The fraction of the GPU's peak HBM bandwidth at which the release's decode attention kernel reads the KV cache
    # at the largest sizes an operator microbenchmark timed, by GPU family (a prefix of the accelerator's name);
    # decode attention never reads faster (capsim.analytic.serving.engine_perf). Empty: the calibration's.
    decode_kv_read_fraction: dict[str, float] = field(default_factory=dict)
    # The release's PagedAttention decode launch grid (engines.yaml decode_grid): the simulator prices how its blocks
    # share the SMs (capsim.analytic.paged_grid). None: a decode kernel balanced over the GPU.
    decode_grid: PagedGrid | None = None
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)  # a fitted profile's files and fit
    # Multipliers on the calibration's kernel efficiencies: 1.0, since no operator profile of an engine's kernels
    # says they differ from the calibrated ones (kept for what-if studies, not set by any profile).
    gemm_efficiency: float = 1.0
    attention_efficiency: float = 1.0
    decode_attention_efficiency: float = 1.0
    memory_efficiency: float = 1.0
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("kernel_dispatch_s", "watermark", "reserved_bytes", "ttft_offset_s", "reserved_cores"):
            require(getattr(self, name) >= 0, f"engine.{name}", f"must be >= 0, got {getattr(self, name)}")
        for name in ("gemm_efficiency", "attention_efficiency", "decode_attention_efficiency", "memory_efficiency",
                     "memory_fraction"):
            value = getattr(self, name)
            require(0 < value <= 1.5, f"engine.{name}", f"must be in (0, 1.5], got {value}")
        require(self.kv_memory_of in ("total", "free"), "engine.kv_memory_of",
                f"must be 'total' or 'free', got {self.kv_memory_of!r}")
        bad = [p for p in (*self.cpu, *self.overlapped) if p not in (*PHASES, "all")]
        require(not bad, "engine.cpu", f"unknown phases {bad}", f"use {', '.join(PHASES)}")
        for mode, terms in self.sampler_s.items():
            require(mode in (*SAMPLER_MODES, PENALTIES_KEY), f"engine.sampler_s.{mode}", "unknown sampling mode",
                    f"use {', '.join(SAMPLER_MODES)} or {PENALTIES_KEY}")
            require(len(terms) == 2 and min(terms) >= 0, f"engine.sampler_s.{mode}",
                    f"must be [per_call_s, per_logit_s] >= 0, got {terms}")
        require(not self.kv_write_s or (len(self.kv_write_s) == 2 and min(self.kv_write_s) >= 0), "engine.kv_write_s",
                f"must be [per_call_s, per_byte_s] >= 0, got {list(self.kv_write_s)}")
        for kv_dtype, terms in self.decode_attention_s.items():
            require(kv_dtype in {d.value for d in DType}, f"engine.decode_attention_s.{kv_dtype}",
                    "unknown KV-cache dtype", f"use one of {', '.join(d.value for d in DType)}")
            require(len(terms) == 2 and min(terms) >= 0, f"engine.decode_attention_s.{kv_dtype}",
                    f"must be [per_call_s, per_byte_s] >= 0, got {list(terms)}")
        require(all(isinstance(g, int) and g >= 1 for g in self.decode_kv_groups), "engine.decode_kv_groups",
                f"must be whole numbers >= 1, got {list(self.decode_kv_groups)}")
        for family, frac in self.decode_kv_read_fraction.items():
            require(0 < frac <= 1, f"engine.decode_kv_read_fraction.{family}", f"must be in (0, 1], got {frac}")
        for phase, terms in self.cpu.items():
            require(len(terms) == 3 and min(terms) >= 0, f"engine.cpu.{phase}", f"must be >= 0, got {terms}")
        for host, terms in self.cpu_bound.items():
            require(host in HOST_CPUS, f"engine.cpu_bound.{host}", f"unknown host CPU {host!r}",
                    f"use one of {', '.join(HOST_CPUS)}")
            require(len(terms) == 2 and all(math.isfinite(x) and x >= 0 for x in terms), f"engine.cpu_bound.{host}",
                    f"must be [intercept_s, per_sequence_s], finite and >= 0, got {list(terms)}")
        require(self.device_type in ("gpu", "cpu"), "engine.device_type",
                f"must be 'gpu' or 'cpu', got {self.device_type!r}")
        require(isinstance(self.block_size, int) and self.block_size > 0, "engine.block_size",
                f"must be a positive integer, got {self.block_size!r}")
        require(self.max_paddings is None or (isinstance(self.max_paddings, int) and self.max_paddings >= 0),
                "engine.max_paddings", f"must be a whole number >= 0 or null, got {self.max_paddings!r}")
        require(self.max_paddings is None or self.scheduler is SchedulerKind.VLLM, "engine.max_paddings",
                "padded prompt batches belong to the prefill-priority scheduler (scheduler: vllm)")
        require(self.profile_sampler is None or (len(self.profile_sampler) == 2 and min(self.profile_sampler) >= 0),
                "engine.profile_sampler", f"must be [tensors in the serving dtype, bytes] >= 0 or null, got "
                f"{self.profile_sampler!r}")
        for name in ("chunked_above_context", "chunked_max_num_batched_tokens", "max_model_len"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value > 0), f"engine.{name}",
                    f"must be a positive whole number or null, got {value!r}")
        require(self.backend in (None, "pytorch", "tensorrt"), "engine.backend",
                f"must be 'pytorch', 'tensorrt' or null, got {self.backend!r}")
        for transport, terms in self.server_calls.items():
            require(len(terms) == 2 and min(terms) >= 0, f"engine.server_calls.{transport}",
                    f"must be [per_request_added_s, per_finishing_step_s] >= 0, got {list(terms)}")
        require(self.server is Workers.LOCAL or self.server.value in self.server_comm, "engine.server",
                f"no server_comm cost for the {self.server.value} transport", "add it to server_comm, with its source")
        require(not self.cuda_graphs or bool(self.cuda_graph_sizes), "engine.cuda_graph_sizes",
                "CUDA graphs need captured batch sizes")

    @property
    def cuda_graph_max_batch(self) -> int:
        return max(self.cuda_graph_sizes) if self.cuda_graphs and self.cuda_graph_sizes else 0

    def covers_release(self, version: tuple[int, ...]) -> bool:
        lo, hi = self.covers
        return parse_version(lo) <= version and (hi is None or version < parse_version(hi))

    def host_cost(self, tp: int = 1) -> HostCost:
        """Host time per step at tensor-parallel degree ``tp``: the profile's phases plus driving its workers."""
        phases = dict(self.cpu)
        transport = self.workers if tp == 1 else (self.workers_tp or self.workers)
        comm = self.worker_comm.get(transport.value, {})
        tier = comm.get("tp1" if tp == 1 else "tp2+")
        per = comm.get(PER_WORKER) if tp > 1 else None  # the driver's calls, one per worker (engines.yaml cites)
        if tier is not None or per is not None:
            phases["workers"] = tuple((tier[i] if tier else 0.0) + (tp * per[i] if per else 0.0)
                                      for i in range(3))  # type: ignore[assignment]
        admit = finish = 0.0
        if self.server is not Workers.LOCAL:
            phases["server"] = self.server_comm[self.server.value]
            admit, finish = self.server_calls.get(self.server.value, (0.0, 0.0))
        hidden = set() if self.host_shares_device else set(PHASES) if "all" in self.overlapped \
            else set(self.overlapped)
        exp = [v for k, v in phases.items() if k not in hidden]
        ovl = [v for k, v in phases.items() if k in hidden]
        return HostCost(tuple(sum(v[i] for v in exp) for i in range(3)),  # type: ignore[arg-type]
                        tuple(sum(v[i] for v in ovl) for i in range(3)),  # type: ignore[arg-type]
                        admit_s=admit, finish_s=finish)

    def graph_batch(self, seqs: int) -> int:
        """The captured batch a decode-only step of ``seqs`` sequences replays (padded up when the engine pads),
        or 0 when it runs eagerly."""
        if not self.cuda_graphs or seqs > self.cuda_graph_max_batch:
            return 0
        size = self.cuda_graph_sizes[bisect_left(self.cuda_graph_sizes, seqs)]  # the smallest captured >= seqs
        return size if (size == seqs or self.cuda_graph_padding) else 0

    def limits(self, model: ModelSpec, accelerator: Accelerator | None = None) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens) this engine defaults to for ``model`` on ``accelerator``."""
        prof = self.for_model(model)
        seqs, tokens = prof.max_num_seqs, prof.max_num_batched_tokens
        large = accelerator is not None and prof.large_gpu_when.applies_to(accelerator)
        if large and prof.large_gpu:
            seqs = prof.large_gpu.get("max_num_seqs", seqs)
            tokens = prof.large_gpu.get("max_num_batched_tokens", tokens)
        if tokens == "model" and prof.scheduler is SchedulerKind.SARATHI and prof.chunked_max_num_batched_tokens:
            tokens = prof.chunked_max_num_batched_tokens  # vllm/config.py SchedulerConfig (V0) with chunked prefill
        if tokens == "model":
            tokens = max(prof.max_model_len or model.max_seq, 2048)
        return int(seqs), int(tokens)

    def for_model(self, model: ModelSpec) -> EngineProfile:
        """The profile as the release sets itself up for ``model``: vLLM V0 turns chunked prefill on for a served
        context above chunked_above_context (vllm/engine/arg_utils.py, 0.5-0.7), unless the model slides a window."""
        if self.chunked_above_context is None:
            return self
        context = self.max_model_len or model.max_seq
        long = context > self.chunked_above_context and model.sliding_window is None
        return replace(self, scheduler=SchedulerKind.SARATHI if long else self.scheduler, chunked_above_context=None)

    def graphs(self, on: bool) -> EngineProfile:
        """The profile with CUDA graphs switched on or off (off also ends an overlap that needs them)."""
        drop = not on and self.overlap_needs_cuda_graphs
        return replace(self, cuda_graphs=on, overlapped=() if drop else self.overlapped)

    def decode_reads_for(self, group: float) -> DecodeKvReads:
        """How the decode kernel reads the cache for a rank's GQA ``group`` (query heads per cached KV head): the
        profile's pattern where its kernel covers the group, else once per query head (the masked MHA fallback)."""
        covered = not self.decode_kv_groups or any(math.isclose(group, g) for g in self.decode_kv_groups)
        return self.decode_kv_reads if covered else DecodeKvReads.PER_QUERY_HEAD

    def with_(self, **changes: Any) -> EngineProfile:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(scheduler=self.scheduler.value, workers=self.workers.value, server=self.server.value,
                   workers_tp=None if self.workers_tp is None else self.workers_tp.value, covers=list(self.covers),
                   cuda_graph_sizes=list(self.cuda_graph_sizes), overlapped=list(self.overlapped),
                   gemm_path=self.gemm_path.value, large_gpu_when=self.large_gpu_when.value,
                   decode_kv_reads=self.decode_kv_reads.value, kv_reservation=self.kv_reservation.value,
                   decode_kv_groups=list(self.decode_kv_groups), kv_write_s=list(self.kv_write_s),
                   decode_attention_s={k: list(v) for k, v in self.decode_attention_s.items()},
                   profile_sampler=None if self.profile_sampler is None else list(self.profile_sampler),
                   decode_grid=None if self.decode_grid is None else asdict(self.decode_grid))
        return out


def profile_from_dict(name: str, entry: dict[str, Any]) -> EngineProfile:
    """An engine profile from its engines.yaml entry (also the form an engine file holds)."""
    entry = dict(entry)
    entry["scheduler"] = SchedulerKind(entry["scheduler"])
    entry["covers"] = tuple(entry["covers"])
    entry["cpu"] = {k: _phase(v) for k, v in entry.get("cpu", {}).items()}
    entry["worker_comm"] = {t: {k: _phase(v) for k, v in tiers.items()}
                            for t, tiers in entry.get("worker_comm", {}).items()}
    for t, tiers in entry["worker_comm"].items():
        bad = sorted(set(tiers) - {"tp1", "tp2+", PER_WORKER})
        require(not bad, f"engine {name}.worker_comm.{t}", f"unknown tier {', '.join(bad)}",
                f"use tp1, tp2+ or {PER_WORKER}")
    entry["overlapped"] = tuple(entry.get("overlapped", ()))
    bounds = entry.get("cpu_bound") or {}
    require(isinstance(bounds, dict), f"engine {name}.cpu_bound", f"must map a host CPU to [intercept_s, "
            f"per_sequence_s], got {bounds!r}")
    entry["cpu_bound"] = {str(k): _bound(str(k), v) for k, v in bounds.items()}
    entry["sampler_s"] = {str(k): tuple(float(x) for x in v) for k, v in entry.get("sampler_s", {}).items()}
    entry["kv_write_s"] = tuple(float(x) for x in entry.get("kv_write_s") or ())
    entry["decode_attention_s"] = {str(k): tuple(float(x) for x in v)
                                   for k, v in (entry.get("decode_attention_s") or {}).items()}
    if entry.get("profile_sampler") is not None:
        entry["profile_sampler"] = tuple(float(x) for x in entry["profile_sampler"])
    entry["decode_kv_read_fraction"] = {str(k): float(v) for k, v in (entry.get("decode_kv_read_fraction") or {}).items()}
    if entry.get("decode_grid") is not None:
        grid = dict(entry["decode_grid"])
        regs = grid.get("registers") or {}
        grid["registers"] = {str(f): {str(d): {int(h): (int(r[0]), int(r[1])) for h, r in heads.items()}
                                      for d, heads in dtypes.items()} for f, dtypes in regs.items()}
        entry["decode_grid"] = PagedGrid(**grid)
    entry["workers"] = Workers(entry.get("workers", DEFAULTS["workers"]))
    entry["server"] = Workers(entry.get("server", DEFAULTS["workers"]))
    entry["server_comm"] = {t: _phase(v) for t, v in entry.get("server_comm", {}).items()}
    entry["server_calls"] = {str(t): tuple(float(x) for x in v) for t, v in (entry.get("server_calls") or {}).items()}
    if entry.get("workers_tp") is not None:
        entry["workers_tp"] = Workers(entry["workers_tp"])
    entry["cuda_graph_sizes"] = _sizes(entry.get("cuda_graph_sizes", []))
    path = entry.get("gemm_path", DEFAULTS["gemm_path"])
    require(path in set(GemmPath), f"engine {name}.gemm_path", f"unknown kernel path {path!r}",
            f"use one of {', '.join(GemmPath)}")
    entry["gemm_path"] = GemmPath(path)
    reads = entry.get("decode_kv_reads", DEFAULTS["decode_kv_reads"])
    require(reads in set(DecodeKvReads), f"engine {name}.decode_kv_reads", f"unknown read pattern {reads!r}",
            f"use one of {', '.join(DecodeKvReads)}")
    entry["decode_kv_reads"] = DecodeKvReads(reads)
    groups = entry.get("decode_kv_groups") or []
    require(isinstance(groups, list), f"engine {name}.decode_kv_groups", f"must be a list of group sizes, got {groups!r}")
    entry["decode_kv_groups"] = tuple(groups)
    held = entry.get("kv_reservation", DEFAULTS["kv_reservation"])
    require(held in set(KvReservation), f"engine {name}.kv_reservation", f"unknown reservation {held!r}",
            f"use one of {', '.join(KvReservation)}")
    entry["kv_reservation"] = KvReservation(held)
    rule = entry.get("large_gpu_when", DEFAULTS["large_gpu_when"])
    require(rule in set(LargeGpu), f"engine {name}.large_gpu_when", f"unknown rule {rule!r}",
            f"use one of {', '.join(LargeGpu)}")
    entry["large_gpu_when"] = LargeGpu(rule)
    entry.pop("cuda_graph_sizes_padded", None)
    return EngineProfile(name=name, **entry)


@cache
def engines() -> dict[str, EngineProfile]:
    """Every engine profile of the catalog, by name."""
    raw: dict[str, dict[str, Any]] = load_catalog("engines")
    return {name: profile_from_dict(name, entry) for name, entry in raw.items()}


@cache
def padded_sizes(name: str) -> tuple[int, ...]:
    """The capture sizes a profile uses when padding is switched on (engines.yaml cuda_graph_sizes_padded), or
    its own sizes."""
    entry = load_catalog("engines").get(name, {})
    spec = entry.get("cuda_graph_sizes_padded")
    return _sizes(spec) if spec is not None else engines()[name].cuda_graph_sizes


FAMILIES = {"vllm": "vllm", "sglang": "sglang", "tensorrt-llm": "tensorrt-llm", "trtllm": "tensorrt-llm",
            "trt-llm": "tensorrt-llm", "tensorrtllm": "tensorrt-llm", "nim": "nim", "nvidia-nim": "nim"}
ALIASES = {"trtllm": "tensorrt-llm", "trt-llm": "tensorrt-llm", "tensorrtllm": "tensorrt-llm", "vllm-v1": "vllm",
           "nvidia-nim": "nim-1.8", "nim": "nim-1.8", "trtllm-0.5": "tensorrt-llm-0.5",
           "trt-llm-0.5": "tensorrt-llm-0.5"}


def get_engine(name: str | EngineProfile, cuda_graphs: bool | None = None) -> EngineProfile:
    """An engine profile by name (``vllm``, ``vllm-v1-0.8``, ``vllm-v0.6``, ``vllm-v0``, ``vllm-0.4``, ``vllm-0.2.6``,
    ``vllm-0.2``, ``sglang``, ``sglang-0.3.4``, ``tensorrt-llm``, ``tensorrt-llm-0.14``, ``tensorrt-llm-0.11``,
    ``tensorrt-llm-0.10``, ``tensorrt-llm-0.8``, ``tensorrt-llm-0.6``, ``tensorrt-llm-0.5``, ``nim-1.8``; also ``trtllm``, ``nim``;
    ``capsim catalog engines`` lists all); ``cuda_graphs`` overrides the profile's default (switching them on
    needs a profile with captured sizes)."""
    if isinstance(name, EngineProfile):
        prof = name
    else:
        key = str(name).strip().lower().replace("_", "-")
        key = ALIASES.get(key, key)
        release = re.fullmatch(r"(.+?)[-=@ ]+(v?\d+(?:\.\d+)*\S*)", key)
        if key in engines():
            prof = engines()[key]
        elif release is not None and release.group(1) in FAMILIES:
            # an engine and its release, as validation rows name them (``vllm-0.10.1``, ``sglang-0.5.2``,
            # ``tensorrt-llm-1.1.0``): the profile covering that release
            prof = engine_release(release.group(1), release.group(2))
        else:
            raise UnknownNameError("engine", str(name), list(engines()))
    if cuda_graphs is not None:
        if not isinstance(cuda_graphs, bool):
            raise SpecError("engine.cuda_graphs", f"must be true or false, got {cuda_graphs!r}")
        if cuda_graphs and not prof.cuda_graph_sizes:
            raise SpecError("engine.cuda_graphs", f"{prof.name} ({prof.engine} {prof.release}) has no CUDA graphs",
                            "leave CUDA graphs off for this release")
        prof = prof.graphs(cuda_graphs)
    return prof


def known_releases() -> str:
    """Every engine release capsim has a profile for, as one line (for error messages)."""
    parts = [f"{p.engine}{' (cpu)' if p.device_type == 'cpu' else ''} >={p.covers[0]}"
             f"{'' if p.covers[1] is None else f',<{p.covers[1]}'} ({p.name})"
             for p in engines().values()]
    return "; ".join(parts)


def engine_release(engine: str, version: str, device_type: str = "gpu") -> EngineProfile:
    """The profile of ``engine`` (a family name) that covers release ``version`` on ``device_type`` (gpu, or cpu
    for a CPU backend); an engine or release capsim has no profile for is an error naming the column and the known
    values."""
    family = FAMILIES.get(str(engine).strip().lower())
    if family is None:
        raise SpecError("engine", f"unknown engine {engine!r}",
                        f"use one of {', '.join(sorted(set(FAMILIES.values())))}")
    if not str(version).strip():
        raise SpecError("engine_version", f"no release given for {family}",
                        f"name the release measured; capsim knows {known_releases()}")
    v = parse_version(version)
    for prof in engines().values():
        if prof.engine == family and prof.device_type == device_type and prof.covers_release(v):
            return prof
    raise SpecError("engine_version", f"{family} {version} on a {device_type} is a release capsim has no profile "
                    "for",
                    f"capsim knows {known_releases()}")


__all__ = ["DEFAULTS", "PENALTIES_KEY", "PER_WORKER", "PHASES", "SAMPLER_MODES", "DecodeKvReads", "EngineProfile",
           "GemmPath", "HostCost", "KvReservation", "LargeGpu", "SchedulerKind", "Workers", "engine_release",
           "engines", "get_engine", "known_releases", "padded_sizes", "parse_version", "profile_from_dict"]
