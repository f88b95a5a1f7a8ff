"""Running the collective microbenchmarks: local worker processes under a watchdog, or in place under torchrun.

A worker that dies, reports an error, or stays silent for ``comm_timeout_s`` stops the whole group; the failure
is raised as one line (:class:`CommError`), and the samples that already arrived are kept for a resumed run.
"""

from __future__ import annotations

import os
import queue as queue_mod
import tempfile
import time
from collections.abc import Callable
from typing import Any

from capsim.errors import SpecError


class CommError(SpecError):
    """A collective worker died, failed or hung."""

    def __init__(self, problem: str, fix: str = "see the worker's message; re-run to resume, or leave comm out of --ops"
                 ) -> None:
        super().__init__("comm", problem, fix)


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_comm(cases: list[dict], config: Any, on_sample: Callable[[dict, dict], None]) -> None:
    if under_torchrun():
        return _run_in_place(cases, config, on_sample)
    # Collectives are cheap to repeat and noisier than kernels (two processes must be scheduled together).
    return run_local(cases, config.device, config.comm_timeout_s, max(config.repeats, 7), on_sample,
                     0.005 if config.quick else 0.01)


def _key(sample: dict) -> tuple:
    return sample["collective"], sample["bytes"], sample["group"]


def run_local(cases: list[dict], device: str, timeout_s: float, repeats: int,
              on_sample: Callable[[dict, dict], None], min_repeat_s: float = 0.003) -> None:
    """Spawn one worker per rank (gloo on CPU, NCCL with one GPU each), stream their samples to ``on_sample``."""
    from kernels.comm import spawned_worker

    world = max(c["group"] for c in cases)
    by_key = {_key(c): c for c in cases}
    backend = "nccl" if device == "cuda" else "gloo"
    spawn_workers(spawned_worker, world, (backend, cases, repeats, min_repeat_s, timeout_s), timeout_s,
                  lambda s: on_sample(by_key[_key(s)], s))


def spawn_workers(target: Callable[..., None], world: int, args: tuple, timeout_s: float,
                  on_sample: Callable[[dict], None]) -> None:
    """Run ``target(rank, world, rendezvous_file, queue, *args)`` in ``world`` fresh processes; workers put
    ("sample", dict), ("done", rank) or ("error", text) on the queue. Any death, error or silence longer than
    ``timeout_s`` stops them all and raises :class:`CommError`."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="capsim-workers-") as tmp:
        procs = [ctx.Process(target=target, daemon=True, name=f"capsim-worker-{r}",
                             args=(r, world, os.path.join(tmp, "rendezvous"), results, *args)) for r in range(world)]
        for p in procs:
            p.start()
        try:
            _watch(procs, results, timeout_s, on_sample)
        finally:
            _stop(procs)


STARTUP_S = 120.0  # a worker imports torch and joins the group before the silence timeout applies


def _watch(procs: list, results: Any, timeout_s: float, on_sample: Callable[[dict], None]) -> None:
    done: set[int] = set()
    ready: set[int] = set()
    last = time.monotonic()
    while len(done) < len(procs):
        try:
            kind, payload = results.get(timeout=0.2)
        except queue_mod.Empty:
            dead = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in done]
            if dead:
                rank, code = dead[0]
                raise CommError(f"collective worker rank {rank} died (exit code {code}); stopped the others") from None
            limit = timeout_s if len(ready) == len(procs) else max(timeout_s, STARTUP_S)
            if time.monotonic() - last > limit:
                raise CommError(f"collective workers hung: no result for {limit:g} s; stopped them") from None
            continue
        last = time.monotonic()
        if kind == "sample":
            on_sample(payload)
        elif kind == "ready":
            ready.add(int(payload))
        elif kind == "done":
            done.add(int(payload))
        else:  # a peer's death shows up as a connection error elsewhere: name the dead rank when there is one
            time.sleep(1.0)
            dead = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (None, 0, 1)]
            cause = "".join(f"rank {r} died (exit code {c}); " for r, c in dead)
            raise CommError(f"collective worker failed: {cause}{str(payload)[:200]}")


def _stop(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join(timeout=3)


def _run_in_place(cases: list[dict], config: Any, on_sample: Callable[[dict, dict], None]) -> None:
    """Under torchrun every launched process measures; rank 0 keeps the samples (inter tier across nodes)."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from kernels.comm import measure

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    gpu = config.device == "cuda"
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(seconds=config.comm_timeout_s))
    cases = [c for c in cases if c["group"] <= world]
    by_key = {_key(c): c for c in cases}
    device = f"cuda:{torch.cuda.current_device()}" if gpu else "cpu"
    measure(cases, rank, world, local_world, device, lambda s: on_sample(by_key[_key(s)], s), config.repeats,
            0.003 if config.quick else 0.01)
