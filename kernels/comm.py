"""Collective microbenchmarks through torch.distributed: all-reduce, all-gather, reduce-scatter, all-to-all and
send/recv over message sizes from bytes to hundreds of MB, for every group size the machine allows.

Locally the command spawns its own worker processes (gloo on CPU, NCCL on GPUs, one process per GPU); under
``torchrun`` across nodes, :func:`measure` runs in each launched process and measures the inter-node tier.
Sizes follow nccl-tests: the whole buffer of an all-reduce, the gathered output of an all-gather, the scattered
input of a reduce-scatter and all-to-all, and the one message of a send/recv (NCCL docs, PERFORMANCE.md).
"""

from __future__ import annotations

import os
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from kernels.harness import synchronize

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
SIZES = {"quick": tuple(2**k for k in (3, 7, 10, 13, 15, 17, 19, 21, 23, 25)),
         "full": tuple(2**k for k in range(3, 29))}  # 8 B .. 256 MiB
FAULT_ENV = "CAPSIM_TEST_COMM_FAULT"  # "die" or "hang" on rank 1: lets tests check that faults are reported


def _op(name: str, nbytes: int, rank: int, group_ranks: list[int], group: Any, device: str,
        dtype: torch.dtype) -> Callable[[], object]:
    """The collective as a no-argument call on buffers of ``nbytes`` (rounded to whole elements per rank)."""
    n = len(group_ranks)
    esize = torch.tensor([], dtype=dtype).element_size()
    per_rank = max(nbytes // esize // n, 1)
    total = per_rank * n
    buf = torch.ones(total, device=device, dtype=dtype)
    part = torch.ones(per_rank, device=device, dtype=dtype)
    if name == "all_reduce":
        return lambda: dist.all_reduce(buf, group=group)
    if name == "all_gather":
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(buf, part, group=group)
    if name == "reduce_scatter":
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: scatter(part, buf, group=group)
    if name == "all_to_all":
        out = torch.empty_like(buf)
        return lambda: dist.all_to_all_single(out, buf, group=group)
    if name == "send_recv":  # pairs (0,1), (2,3), ...: even ranks send, odd ranks receive
        msg = torch.ones(max(nbytes // esize, 1), device=device, dtype=dtype)
        i = group_ranks.index(rank)
        peer = group_ranks[i ^ 1] if (i ^ 1) < n else None
        if peer is None:
            return lambda: None
        return (lambda: dist.send(msg, peer, group=group)) if i % 2 == 0 else (lambda: dist.recv(msg, peer, group=group))
    raise KeyError(name)


def _time_collective(fn: Callable[[], object], device: str, repeats: int, min_repeat_s: float,
                     group: Any) -> list[float]:
    """Seconds per call over ``repeats`` repeats; every rank runs the same number of calls (agreed by MAX)."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    probe = torch.tensor([time.perf_counter() - t0], dtype=torch.float64,
                         device=device if device.startswith("cuda") else "cpu")
    dist.all_reduce(probe, op=dist.ReduceOp.MAX, group=group)
    inner = max(1, int(round(min_repeat_s / max(float(probe.item()), 1e-7))))
    times = []
    for _ in range(repeats):
        dist.barrier(group=group)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) / inner)
    return times


def measure(plan: list[dict], rank: int, world: int, local_world: int, device: str, emit: Callable[[dict], None],
            repeats: int = 5, min_repeat_s: float = 0.003) -> None:
    """Run every planned (collective, bytes, group) case on an initialised process group; rank 0 emits samples."""
    dtype = torch.float32
    groups = {}
    for g in sorted({c["group"] for c in plan}):
        groups[g] = dist.new_group(list(range(g))) if g < world else None  # every rank must create every group
    fault = os.environ.get(FAULT_ENV, "")
    for case in plan:
        g = case["group"]
        if rank == 1 and fault == "die":
            os._exit(3)
        if rank == 1 and fault == "hang":
            time.sleep(3600)
        if rank >= g:
            dist.barrier()
            continue
        fn = _op(case["collective"], case["bytes"], rank, list(range(g)), groups[g], device, dtype)
        times = _time_collective(fn, device, repeats, min_repeat_s, groups[g])
        if rank == 0:
            q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
            emit({**case, "tier": "inter" if g > local_world else "intra", "time_s": statistics.median(times),
                  "timing": {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                             "q1_s": q[0], "q3_s": q[2], "repeats": repeats}})
        dist.barrier()


def comm_cases(mode: str, groups: list[int], collectives: tuple[str, ...] = COLLECTIVES) -> list[dict]:
    return [{"bench": "comm", "collective": c, "bytes": int(s), "group": g}
            for g in groups for c in collectives for s in SIZES[mode]]


def spawned_worker(rank: int, world: int, init_file: str, queue: Any, backend: str, plan: list[dict],
                   repeats: int, min_repeat_s: float, timeout_s: float) -> None:
    """Entry of one locally spawned worker: one thread on CPU, one GPU each on CUDA; results go to ``queue``."""
    from datetime import timedelta

    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    try:
        if backend == "gloo":
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            torch.set_num_threads(1)
        else:
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
        queue.put(("ready", rank))
        measure(plan, rank, world, world, device, lambda s: queue.put(("sample", s)), repeats, min_repeat_s)
        dist.destroy_process_group()
        queue.put(("done", rank))
    except Exception as err:  # report, then exit non-zero so the parent stops the others
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        queue.put(("error", f"rank {rank}: {last}"))
        raise SystemExit(1) from None
