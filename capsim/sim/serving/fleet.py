"""The serving fleet: arrivals, routers and replicas in one SimPy environment, run to the last completion."""

from __future__ import annotations

import gc
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from capsim.analytic.memory import kv_cache_bytes_per_token, serving_memory
from capsim.analytic.serving import DEFAULT_SAMPLING, Sampling
from capsim.analytic.step_table import StepTable
from capsim.errors import InfeasibleError, require
from capsim.perf import Collective, Perf, require_perf
from capsim.sim.serving import drivers, pipeline
from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS, check_work, estimate_work
from capsim.sim.serving.metrics import RunInfo, ServingResult, build_result
from capsim.sim.serving.replica import Replica, ReplicaConfig, Role
from capsim.sim.serving.router import RouterKind, make_router
from capsim.sim.serving.state import Requests
from capsim.sim.serving.workload import Workload
from capsim.specs.engine import EngineProfile, KvReservation, SchedulerKind, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan


@dataclass(frozen=True)
class ServeConfig:
    """How the fleet serves, beyond the replica layout (ServePlan)."""

    engine: str | EngineProfile = "vllm"
    sampling: Sampling | str = DEFAULT_SAMPLING  # the requests' sampling (Sampling, or greedy/random/top-k/top-p)
    scheduler: SchedulerKind | str | None = None  # None: the engine's default
    router: RouterKind | str = RouterKind.ROUND_ROBIN
    prefill_replicas: int = 0  # > 0: disaggregated, this many of plan.replicas prefill and the rest decode
    kv_transfer_tier: str = "inter"  # link the KV cache crosses from a prefill to a decode replica
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    price_usd_per_gpu_hour: float | None = None  # None: the accelerator's catalog price
    fast: bool = True  # False: one event per decode step (the reference)
    seed: int = 0
    # Route open-loop arrivals ahead of time when the router ignores replica state (round-robin, random): no
    # event per arrival. False sends every arrival through an arrival process (same results, slower).
    preroute: bool = True
    max_events: float = DEFAULT_MAX_EVENTS  # refuse a simulation estimated to take more (capsim.sim.serving.budget)


def engine_plan(engine: str | EngineProfile, model: ModelSpec, accelerator: Accelerator | None = None,
                **changes: Any) -> ServePlan:
    """A ServePlan with the engine's default batching limits and memory fraction; ``changes`` override them
    (None values are ignored). ``max_batch`` / ``max_batched_tokens``, defaults and changes alike, are the engine's
    own settings (max_num_seqs, max_batch_size, ...); the plan holds the replica's, which differ only where the engine
    applies them per attention-DP rank (:func:`attention_dp_ranks`)."""
    eng = get_engine(engine)
    seqs, tokens = eng.limits(model, accelerator)
    base = {"max_batch": seqs, "max_batched_tokens": tokens, "gpu_memory_utilization": eng.memory_fraction,
            "block_size": eng.block_size}
    base.update({k: v for k, v in changes.items() if v is not None})
    ranks = attention_dp_ranks(eng, int(base.get("tp", 1)), bool(base.get("dp_attention", False)))
    base["max_batch"], base["max_batched_tokens"] = base["max_batch"] * ranks, base["max_batched_tokens"] * ranks
    return ServePlan(**base)


def attention_dp_ranks(engine: EngineProfile, tp: int, dp_attention: bool) -> int:
    """How many times the engine's max_batch_size / max_num_tokens a replica holds: tp for TensorRT-LLM under
    attention DP, whose every rank runs its own executor and scheduler to those limits
    (tensorrt_llm/_torch/pyexecutor/executor_request_queue.py @007a7508 _fetch_new_requests_attention_dp L391:
    total_max_num_active_requests = dist.tp_size * max_num_active_requests, against L364's max_num_active_requests
    without attention DP; _schedule_attention_dp_requests L449-450 fills each rank to max_num_active_requests;
    _util.py @v1.1.0rc5 L630-655, via ai-dynamo/dynamo #11982), else 1. SGLang's --max-running-requests and --chunked-prefill-size are the whole
    server's, divided among the DP ranks (python/sglang/srt/server_args.py _handle_data_parallelism:
    chunked_prefill_size // dp_size; the scheduler's max_running_requests // dp_size), so they stay as given."""
    return tp if dp_attention and engine.engine == "tensorrt-llm" else 1


def kv_blocks(model: ModelSpec, plan: ServePlan, accelerator: Accelerator, engine: EngineProfile) -> int:
    """Paged-KV blocks per replica: what memory leaves after weights, the activation peak and the engine's
    reserved memory (engines.yaml reserved_bytes), sized as the engine sizes it (vLLM: utilization x capacity -
    weights - activations - reserved; TensorRT-LLM: fraction x free). Capacity is the accelerator's memory_bytes, the
    total the device reports to CUDA (torch.cuda.mem_get_info()[1]), the figure vLLM's utilization multiplies."""
    mem = serving_memory(model, plan.with_(gpu_memory_utilization=1.0), accelerator,
                         profile_sampler=engine.profile_sampler)
    free = mem.kv_cache_bytes - engine.reserved_bytes
    if plan.kv_cache_bytes is not None:  # given outright (--kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE)
        if plan.kv_cache_bytes > free:
            raise InfeasibleError("plan.kv_cache_bytes", f"{plan.kv_cache_bytes / 2**30:.2f} GiB of KV cache does "
                                  f"not fit beside {model.name}'s weights and activations on {accelerator.name} "
                                  f"({free / 2**30:.2f} GiB left)", "give a smaller KV-cache space")
        budget = plan.kv_cache_bytes
    elif engine.kv_memory_of == "free":
        budget = plan.gpu_memory_utilization * free
    else:
        budget = free - (1.0 - plan.gpu_memory_utilization) * accelerator.memory_bytes
    blocks = int(budget // (mem.kv_bytes_per_token * plan.block_size)) if budget > 0 else 0
    blocks *= plan.tp if plan.dp_attention else 1  # attention data parallel: each GPU caches its own sequences
    if blocks <= 0:
        raise InfeasibleError("plan", f"{model.name} leaves no memory for the KV cache on {plan.tp}x{plan.pp} "
                              f"{accelerator.name} (weights {mem.weights_bytes / 1e9:.1f} GB per GPU)",
                              "raise --tp or --pp, quantize the weights, or use a larger accelerator")
    return blocks


def engine_kv_blocks(model: ModelSpec, plan: ServePlan, accelerator: Accelerator, engine: EngineProfile) -> int:
    """Paged-KV blocks per scheduler: a pipeline-parallel replica runs plan.pp virtual engines, each with 1/pp of
    its blocks (vLLM V0 Scheduler: num_gpu_blocks //= pipeline_parallel_size; capsim.sim.serving.pipeline)."""
    return kv_blocks(model, plan, accelerator, engine) // plan.pp


class Fleet:
    """Replicas, routers and the request population of one simulation; the replicas' :class:`Handoff`
    (``finished``, ``transfer``, ``reprefill``) routes the requests they are done with."""

    def __init__(self, model: ModelSpec, plan: ServePlan, accelerator: Accelerator, perf: Perf,
                 workload: Workload, cfg: ServeConfig) -> None:
        self.model, self.plan, self.acc, self.perf, self.workload, self.cfg = (model, plan, accelerator, perf,
                                                                              workload, cfg)
        self.engine = get_engine(cfg.engine).for_model(model)  # the release's own set-up for this model
        self.policy = SchedulerKind(cfg.scheduler) if cfg.scheduler is not None else self.engine.scheduler
        plan.check(model)
        require_perf(perf)
        check_work(estimate_work(workload.size, plan.replicas * plan.pp, float(np.mean(workload.prompt_tokens)),
                                 float(np.mean(workload.output_tokens)), plan.max_batched_tokens, cfg.fast),
                   cfg.max_events)
        self.env = simpy.Environment()
        # The engine sees each request ttft_offset_s after the client sends it (the serving path an engine profile
        # measures or a fit carries); metrics count from the client's send. A closed loop's next request is sent at
        # its predecessor's finish, so with an offset it reaches a busy replica mid-step and waits for the step's
        # end, as vLLM V1's engine core, which steps again at once while requests run (v1/engine/core.py run_busy_loop).
        self.offset = self.engine.ttft_offset_s
        arrival = workload.arrival_s if workload.arrival_s is None or not self.offset \
            else workload.arrival_s + self.offset
        self.req = Requests(workload.prompt_tokens, workload.output_tokens, arrival, workload.prefix_group,
                            workload.prefix_tokens)
        self.fin_count = [0] * self.req.n
        self.closed = workload.closed  # read once per finished request
        self.table = StepTable(model, plan, perf, self.engine, accelerator, sampling=Sampling.parse(cfg.sampling))
        self.stages = plan.pp
        self.blocks = engine_kv_blocks(model, plan, accelerator, self.engine)
        require(self.blocks > 0, "plan.pp", f"{plan.pp} virtual engines leave no KV block each",
                "lower --pp or give the KV cache more memory")
        self._check_fits()
        self.replicas, self.prefill_pool, self.decode_pool = self._build_replicas()
        self.router = make_router(cfg.router, cfg.seed)
        self.decode_router = make_router(cfg.router, cfg.seed + 1)
        self.next_rid = 0
        self.kv_bytes_per_token = float(kv_cache_bytes_per_token(model, plan.kv_cache_dtype.bytes, plan.tp, plan.pp))

    def _check_fits(self) -> None:
        bs, plan = self.plan.block_size, self.plan
        wm = int(self.engine.watermark * self.blocks)
        need = np.ceil((self.workload.prompt_tokens + self.workload.output_tokens) / bs).astype(np.int64)
        too_big = int(np.sum(need > self.blocks - wm))
        holder = "one replica" if plan.pp == 1 else f"one of a replica's {plan.pp} virtual engines"
        require(too_big == 0, "workload", f"{too_big} requests need more KV cache than {holder} holds "
                f"({self.blocks * bs} tokens on {plan.tp}x{plan.pp} GPUs)",
                "raise --tp, quantize the KV cache (--kv-cache-dtype fp8), or shorten the requests")
        if self.policy is SchedulerKind.SARATHI:
            # Equal suffices: while a slot is free, the running decodes leave >= 1 token of the budget to a prompt
            # (vLLM's SchedulerConfig check is max_num_batched_tokens >= max_num_seqs; TensorRT-LLM 0.10's published
            # runs build max_batch_size 2048 with max_num_tokens 2048, perf-overview.md of 0.10).
            require(plan.max_batched_tokens >= plan.max_batch, "plan.max_batched_tokens",
                    f"chunked prefill needs a token budget ({plan.max_batched_tokens}) of at least max_num_seqs "
                    f"({plan.max_batch}) so prompts can progress", "raise --max-batched-tokens or lower --max-seqs")

    def _build_replicas(self) -> tuple[list[Replica], list[Any], list[Any]]:
        """Every replica's engines (its virtual engines at pp > 1), and the pools the routers pick from."""
        cfg, plan, pp = self.cfg, self.plan, self.stages
        p = cfg.prefill_replicas
        require(0 <= p < plan.replicas or p == 0, "prefill_replicas", f"{p} of {plan.replicas} replicas leaves "
                "no decode replica", "use fewer prefill replicas or more replicas")
        require(not (p and self.policy is SchedulerKind.STATIC), "scheduler", "static batching cannot be "
                "disaggregated", "use --scheduler vllm or sarathi")
        wm = int(self.engine.watermark * self.blocks)

        # Prefix caching where the engine release has it on (engines.yaml prefix_caching, cited per release) and a
        # request shares a prefix; a decode replica receives whole KV caches, static batches compute whole prompts.
        prefix = self.engine.prefix_caching and self.workload.prefix_group is not None
        # Blocks reserved at admission (engines.yaml kv_reservation): a whole sequence's under TRT-LLM's no-evict; a
        # disaggregated prefill replica hands the cache over after the prompt, so it reserves no output tokens.
        whole = self.engine.kv_reservation is KvReservation.WHOLE_SEQUENCE

        def rc(role: Role, policy: SchedulerKind) -> ReplicaConfig:
            pad = self.engine.max_paddings if policy is SchedulerKind.VLLM and self.engine.max_paddings is not None \
                else -1
            return ReplicaConfig(policy, plan.max_batch, plan.max_batched_tokens, plan.block_size, self.blocks, wm,
                                 cfg.fast, role, prefix and role is not Role.DECODE and policy is not SchedulerKind.STATIC,
                                 pad, whole and role is not Role.PREFILL)

        reps = []
        for i in range(plan.replicas * pp):  # replica i // pp, virtual engine i % pp
            role = Role.BOTH if not p else (Role.PREFILL if i < p * pp else Role.DECODE)
            policy = self.policy if role is Role.BOTH else SchedulerKind.VLLM
            reps.append(Replica(i, self.env, self.req, self.table, rc(role, policy), self))
        pool: list[Any] = reps if pp == 1 else pipeline.group(reps, pp)
        if not p:
            return reps, pool, []
        return reps, pool[:p], pool[p:]

    def _engine(self, pool: list[Any], router: Any) -> Replica:
        """The replica the router picks from ``pool``, and at pp > 1 its virtual engine with the fewest unfinished
        requests."""
        rep = router(pool)
        return rep if self.stages == 1 else rep.pick()

    # --- request flow ------------------------------------------------------------------------------
    def route(self, rid: int, front: bool = False) -> None:
        rep = self._engine(self.prefill_pool, self.router)
        self.req.replica[rid] = rep.idx
        rep.submit(rid, front)

    def reprefill(self, rid: int) -> None:
        """A sequence preempted on a decode replica recomputes its prompt on a prefill replica."""
        self.route(rid, front=True)

    def transfer(self, rid: int) -> None:
        """Send a prefilled request's KV cache to a decode replica (one point-to-point send per GPU)."""
        nbytes = self.kv_bytes_per_token * self.req.todo[rid]
        dt = float(self.perf.collective_s(Collective.SEND_RECV, nbytes, 2, self.cfg.kv_transfer_tier))

        def arrive(_e: Any) -> None:
            rep = self._engine(self.decode_pool, self.decode_router)
            self.req.decode_replica[rid] = rep.idx
            rep.submit(rid)

        self.env.timeout(dt).callbacks.append(arrive)

    def finished(self, rid: int) -> None:
        self.fin_count[rid] += 1
        self.req.finished += 1
        if self.closed and self.next_rid < self.req.n:
            self._issue(self.next_rid)

    def _issue(self, rid: int) -> None:
        self.next_rid = rid + 1
        self.req.arrival[rid] = self.env.now + self.offset
        if self.offset:
            self.env.timeout(self.offset).callbacks.append(lambda _e, r=rid: self.route(r))
        else:
            self.route(rid)

    def arrivals(self) -> Generator[Any, Any, None]:
        times = self.workload.arrival_s.tolist()
        env = self.env
        for rid in range(self.req.n):
            dt = times[rid] - env.now
            if dt > 0:
                yield env.timeout(dt)
            self.route(rid)

    def _preroutable(self) -> bool:
        cfg = self.cfg
        return (cfg.preroute and not self.workload.closed and not cfg.prefill_replicas and self.stages == 1
                and RouterKind(cfg.router) in (RouterKind.ROUND_ROBIN, RouterKind.RANDOM))

    def run(self) -> None:
        if self.workload.closed:
            for rid in range(min(self.workload.clients, self.req.n)):
                self._issue(rid)
        elif self._preroutable():  # the same picks, made in arrival order before the run
            for rep in self.replicas:
                rep.pushed = False
            for rid in range(self.req.n):
                rep = self.router(self.prefill_pool)
                self.req.replica[rid] = rep.idx
                rep.incoming.append(rid)
        else:
            self.env.process(self.arrivals())
        for rep in self.replicas:
            drivers.start(rep)
        self.env.run()

    def info(self) -> RunInfo:
        """The run's setup, as the metrics report it."""
        plan = self.plan
        return RunInfo(self.perf.name, self.engine.name, self.policy.value, plan.replicas, plan.num_gpus,
                       self.blocks, plan.block_size, self.model.max_seq, self.cfg.slo_ttft_s, self.cfg.slo_tpot_s,
                       self.cfg.fast, self.offset, self.stages)


def simulate(model: ModelSpec, plan: ServePlan, accelerator: Accelerator, perf: Perf, workload: Workload,
             config: ServeConfig | None = None) -> ServingResult:
    """Serve ``workload`` on ``plan.replicas`` replicas and measure it as ``vllm bench serve`` would."""
    cfg = config or ServeConfig()
    for name in ("slo_ttft_s", "slo_tpot_s", "price_usd_per_gpu_hour"):
        value = getattr(cfg, name)
        require(value is None or value >= 0, name, f"must be >= 0, got {value}")
    enabled = gc.isenabled()
    gc.disable()  # millions of small live objects: the cyclic collector would rescan them all (nothing cycles)
    try:
        fleet = Fleet(model, plan, accelerator, perf, workload, cfg)
        fleet.run()
        for rep in fleet.replicas:
            rep.close()
        lost = fleet.req.n - fleet.fin_count.count(1)
        if lost:
            raise RuntimeError(f"serving simulation lost or double-finished {lost} requests")
        price = cfg.price_usd_per_gpu_hour if cfg.price_usd_per_gpu_hour is not None \
            else accelerator.price_usd_per_hour
        records = [rep.rec for rep in fleet.replicas]
        return build_result(fleet.req, records, fleet.info(), price if price is not None else math.nan)
    finally:
        if enabled:
            gc.enable()


__all__ = ["Fleet", "ServeConfig", "attention_dp_ranks", "engine_kv_blocks", "engine_plan", "kv_blocks", "simulate"]
