"""End-to-end timings of real torch decoders for `capsim validate local`: a training step (forward, backward,
Adam), a prefill, and a decode step with a KV cache; and a data-parallel training step (DistributedDataParallel
over gloo) in spawned worker processes.

Rows are timed interleaved (one repeat of every row per round), so slow spells of a shared machine spread over
all rows instead of spoiling one.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from kernels.harness import Timing, choose_clock, run_timed, summarize
from kernels.models import Decoder, DecoderConfig, train_step


def _tokens(c: DecoderConfig, batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, c.vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def build_model(c: DecoderConfig, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(c)


def workload(c: DecoderConfig, phase: str, batch: int, length: int, model: Decoder | None = None) -> Callable[[], Any]:
    """A no-argument call running one ``phase`` ("train", "prefill" or "decode") of a fresh or given model.

    ``length`` is the sequence length (train, prefill) or the tokens already in the KV cache (decode)."""
    model = model if model is not None else build_model(c)
    if phase == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
        idx, tgt = _tokens(c, batch, length, 1), _tokens(c, batch, length, 2)
        return lambda: train_step(model, opt, idx, tgt)
    model.eval()
    caches = model.new_caches(batch, length + 1)
    if phase == "prefill":
        idx = _tokens(c, batch, length, 3)
        return torch.inference_mode()(lambda: model.next_tokens(idx, caches, 0))
    if phase == "decode":
        with torch.inference_mode():
            model.next_tokens(_tokens(c, batch, length, 4), caches, 0)  # fill the caches with a prompt
        step = _tokens(c, batch, 1, 5)
        return torch.inference_mode()(lambda: model.next_tokens(step, caches, length))
    raise KeyError(phase)


def time_interleaved(calls: list[Callable[[], Any]], repeats: int = 5, warmup: int = 2,
                     min_repeat_s: float = 0.1, clock: str | None = None) -> list[Timing]:
    """Median seconds per call of each workload, one repeat of every workload per round (harness clocks)."""
    clock = clock or choose_clock("cpu")
    inner = []
    for fn in calls:
        for _ in range(warmup):
            fn()
        inner.append(max(1, round(min_repeat_s / max(run_timed(fn, 1, "cpu", clock), 1e-7))))
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, fn in enumerate(calls):
            times[i].append(run_timed(fn, inner[i], "cpu", clock) / inner[i])
    return [summarize(t, n, clock) for t, n in zip(times, inner, strict=True)]


QUIET_STEP_CORES = 0.25  # a data-parallel step counts as undisturbed when other processes used less than this


def _busy_s() -> float:
    """Seconds all CPUs spent busy since boot (/proc/stat; 0 where it is missing)."""
    try:
        with open("/proc/stat") as fh:
            f = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(f) - f[3] - (f[4] if len(f) > 4 else 0.0)) / os.sysconf("SC_CLK_TCK")


def _timed_steps(step: Callable[[], None], steps: int) -> tuple[list, list, list]:
    """(wall, own process CPU, whole-machine busy) seconds of each step after two warm-up steps (the first builds
    DDP's buckets and Adam's state). Barriers on both sides make a step last until every rank has finished it."""
    import torch.distributed as dist

    wall, cpu, busy = [], [], []
    for i in range(steps + 2):
        dist.barrier()
        t0, c0, b0 = time.perf_counter(), time.process_time(), _busy_s()
        step()
        dist.barrier()
        if i >= 2:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            busy.append(_busy_s() - b0)
    return wall, cpu, busy


def gloo_worker(rank: int, world: int, init_file: str, queue: Any, cases: list[dict], repeats: int,
                timeout_s: float, make_step: Callable[[dict, int, int], Callable[[], None]]) -> None:
    """One gloo rank (1 thread): for each case, ``make_step(case, rank, world)`` builds this rank's training step,
    which is timed ``repeats`` times.

    Rank 0 reports every step's wall time and how many cores other processes used during it (machine busy time
    minus every rank's CPU time), so steps a shared machine disturbed can be told apart."""
    from datetime import timedelta

    import torch.distributed as dist

    try:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
        queue.put(("ready", rank))
        for case in cases:
            wall, cpu, busy = _timed_steps(make_step(case, rank, world), repeats)
            cpus: list = [None] * world
            dist.all_gather_object(cpus, cpu)
            if rank == 0:
                others = [max(b - sum(r[i] for r in cpus), 0.0) / w for i, (b, w) in enumerate(zip(busy, wall, strict=True))]
                queue.put(("sample", {"id": case["id"], "steps_s": wall, "other_cores": others,
                                      "process_cpu_s": summarize(cpu, 1, "process").median_s}))
        dist.destroy_process_group()
        queue.put(("done", rank))
    except Exception as err:
        queue.put(("error", f"rank {rank}: {traceback.format_exception_only(type(err), err)[-1].strip()}"))
        raise SystemExit(1) from None


def _ddp_step(case: dict, rank: int, world: int) -> Callable[[], None]:
    """A DistributedDataParallel training step of the whole model on this rank's own batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    c = DecoderConfig(**case["config"])
    model = DDP(build_model(c))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    idx, tgt = _tokens(c, case["batch"], case["length"], 1 + rank), _tokens(c, case["batch"], case["length"], 9)
    return lambda: train_step(model, opt, idx, tgt)


def ddp_worker(rank: int, world: int, init_file: str, queue: Any, cases: list[dict], repeats: int,
               timeout_s: float) -> None:
    """One rank of the data-parallel run (see ``gloo_worker``)."""
    gloo_worker(rank, world, init_file, queue, cases, repeats, timeout_s, _ddp_step)


def undisturbed(steps_s: list[float], other_cores: list[float], limit: float = QUIET_STEP_CORES,
                least: int = 3) -> tuple[Timing, int]:
    """The steps other processes left alone (fewer than ``limit`` cores busy), if there are ``least`` of them,
    else all steps; returns (their timing, how many were kept)."""
    quiet = [w for w, o in zip(steps_s, other_cores, strict=True) if o < limit]
    kept = quiet if len(quiet) >= least else steps_s
    return summarize(kept, 1, "wall"), len(quiet) if len(quiet) >= least else 0


PP_MICRO_BATCHES = 4  # micro-batches per pipeline-parallel step


class _Stage(torch.nn.Module):
    """One pipeline stage of a Decoder: the embedding and first layers (rank 0), or the last layers, the final
    norm and the LM head (the last rank). Weights come from the whole model built with the same seed."""

    def __init__(self, model: Decoder, rank: int, world: int) -> None:
        super().__init__()
        n = len(model.blocks)
        lo, hi = rank * n // world, (rank + 1) * n // world
        self.first, self.last, self.c = rank == 0, rank == world - 1, model.c
        if model.c.llama:  # rotary tables (buffers, not parameters)
            self.register_buffer("cos", model.cos, persistent=False)
            self.register_buffer("sin", model.sin, persistent=False)
        self.blocks = torch.nn.ModuleList(model.blocks[lo:hi])
        self.embed = model.embed if self.first else None
        self.pos = model.pos if self.first else None
        self.norm, self.norm_b = (model.norm, model.norm_b) if self.last else (None, None)
        self.head = model.head if self.last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kernels.ops import layer_norm, rms_norm

        c = self.c
        s = x.shape[1]
        if self.first:
            x = self.embed(x)
            if not c.llama:
                x = x + self.pos.weight[:s]
        rot = (self.cos[:s], self.sin[:s]) if c.llama else None
        for block in self.blocks:
            x = block(x, rot, None, 0)
        if self.last:
            x = rms_norm(x, self.norm) if c.llama else layer_norm(x, self.norm, self.norm_b)
            x = self.head(x)
        return x


def one_f_one_b(rank: int, world: int, micro_batches: int) -> list[tuple[str, int]]:
    """This rank's 1F1B order (Megatron-LM schedules.py): p - rank - 1 warm-up forwards, then one forward and one
    backward alternately, then the remaining backwards."""
    warm = min(world - rank - 1, micro_batches)
    order = [("F", i) for i in range(warm)]
    for i in range(warm, micro_batches):
        order += [("F", i), ("B", i - warm)]
    return order + [("B", i) for i in range(micro_batches - warm, micro_batches)]


def pp_step(stage: _Stage, opt: Any, rank: int, world: int, idx: list, tgt: list, shape: tuple) -> None:
    """One 1F1B step over ``len(idx)`` micro-batches: activations go forward and gradients back with isend/irecv
    (waited for where the data is needed), then Adam on this stage's parameters."""
    import torch.distributed as dist
    import torch.nn.functional as F

    m = len(idx)
    inputs, outputs, pending = {}, {}, []
    for kind, i in one_f_one_b(rank, world, m):
        if kind == "F":
            if stage.first:
                x = idx[i]
            else:
                x = torch.empty(shape)
                dist.recv(x, rank - 1)
                x.requires_grad_(True)
            y = stage(x)
            if stage.last:
                y = F.cross_entropy(y.view(-1, y.shape[-1]), tgt[i].view(-1)) / m
            else:
                pending.append(dist.isend(y.detach(), rank + 1))
            inputs[i], outputs[i] = x, y
        else:
            if stage.last:
                outputs[i].backward()
            else:
                g = torch.empty(shape)
                dist.recv(g, rank + 1)
                outputs[i].backward(g)
            if not stage.first:
                pending.append(dist.isend(inputs[i].grad, rank - 1))
            del inputs[i], outputs[i]
    for req in pending:
        req.wait()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _pp_step(case: dict, rank: int, world: int) -> Callable[[], None]:
    """This rank's stage of a 1F1B pipeline step over the case's micro-batches."""
    c = DecoderConfig(**case["config"])
    stage = _Stage(build_model(c), rank, world)
    opt = torch.optim.Adam(list(stage.parameters()), lr=1e-4, fused=True)
    b, s, m = case["batch"], case["length"], case["micro_batches"]
    idx = [_tokens(c, b, s, 10 + i) for i in range(m)]
    tgt = [_tokens(c, b, s, 50 + i) for i in range(m)]
    return lambda: pp_step(stage, opt, rank, world, idx, tgt, (b, s, c.hidden))


def pp_worker(rank: int, world: int, init_file: str, queue: Any, cases: list[dict], repeats: int,
              timeout_s: float) -> None:
    """One rank of the pipeline-parallel run (see ``gloo_worker``)."""
    gloo_worker(rank, world, init_file, queue, cases, repeats, timeout_s, _pp_step)
