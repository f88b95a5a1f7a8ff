"""How one PagedAttention decode launch spreads its thread blocks over a GPU's SMs (vLLM 0.2.x's V1 and V2 kernels).

capsim prices decode attention as the KV bytes a step reads at the kernel's measured plateau bandwidth, which assumes
the work is spread evenly over the GPU. vLLM 0.2.3's kernels are not: V1 launches one thread block per (query head,
sequence) that walks its sequence's whole context, V2 one per (query head, sequence, 512-key partition)
(csrc/attention/attention_kernels.cu L609 ``dim3 grid(num_heads, num_seqs, 1)``, L773 ``dim3 grid(num_heads,
num_seqs, max_num_partitions)``; a V2 block past its sequence's end returns at once, L98-100). With the mixed
context lengths of a real batch, some SMs hold more keys than others and the launch lasts as long as the most loaded
SM. This module gives that factor: the most loaded SM's keys over the mean SM's.

How many blocks an SM holds at once follows from the release's build: registers per thread of each kernel
(engines.yaml decode_grid registers, read from the wheel's cubins), allocated per warp in units of 256, against the
SM's 65,536 registers, 2,048 threads and 32 blocks (compute capability 8.x and 9.0: CUDA C++ Programming Guide,
"Technical Specifications per Compute Capability", and the CUDA Occupancy Calculator's allocation unit); e.g. V1
in fp16 with head size 128 on an A100: 125 registers -> 4,096 per warp -> 4 blocks of 4 warps per SM.

Assumptions (stated, not measured): the kernel is bound per SM rather than per block, so an SM's time is the keys
it holds at a common per-SM rate (flashinfer.ai's timing of vLLM 0.2.6's kernel, the decode_kv_read_fraction
source: 32 blocks of 512 keys on 32 SMs read ~11 GB/s each, and 512 such blocks on 108 SMs ~11 GB/s per SM, not
several times that); the hardware hands out the first wave in launch order (blockIdx.x fastest) one SM after
another, and each later block goes to the SM that frees a slot first, taken as the least loaded one (list
scheduling; the ``heads`` blocks of one sequence and partition, all alike, go to the least loaded SMs together).
A block's fixed cost and V2's reduction kernel are not priced, so small and uniform grids stay optimistic (the same
source's 16 x 512 keys read at 57% of peak, where this model gives 76%).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from capsim.specs.engine_kinds import PagedGrid

# Compute capability 8.0-9.0 (CUDA C++ Programming Guide, technical specifications per compute capability).
REGISTERS_PER_SM = 65536
THREADS_PER_SM = 2048
BLOCKS_PER_SM = 32
REGISTER_UNIT = 256  # registers are allocated per warp in units of 256 (CUDA Occupancy Calculator)
WARP = 32


def blocks_per_sm(threads_per_block: int, registers_per_thread: int) -> int:
    """Thread blocks one SM holds at once, by threads and by registers (shared memory is not limiting for these
    kernels: V1 holds 4 bytes per key of the longest context, 8 KB at 2,048 keys, of the A100's 164 KB)."""
    warps = -(-threads_per_block // WARP)
    per_warp = -(-registers_per_thread * WARP // REGISTER_UNIT) * REGISTER_UNIT
    return max(min(BLOCKS_PER_SM, THREADS_PER_SM // threads_per_block, REGISTERS_PER_SM // (warps * per_warp)), 1)


def uses_v1(grid: PagedGrid, seqs: int, heads: int, max_context: int) -> bool:
    """vLLM 0.2.3 vllm/model_executor/layers/attention.py L225-236: V1 when max_context_len <= 8192 and
    (max_num_partitions == 1 or num_seqs * num_heads > 512)."""
    partitions = -(-max_context // grid.partition_tokens)
    return max_context <= grid.v1_max_context and (partitions == 1 or seqs * heads > grid.v1_min_blocks)


def group_keys(grid: PagedGrid, contexts: Sequence[int], heads: int) -> tuple[list[int], bool]:
    """Keys of each group of ``heads`` like blocks (one sequence, one partition) in launch order, and whether the
    launch is V1 (head fastest in the grid, then sequence, then partition)."""
    ctx = np.asarray(contexts, dtype=np.int64).tolist()  # Python ints: a batch is tens of sequences
    longest = max(ctx)
    if uses_v1(grid, len(ctx), heads, longest):
        return ctx, True
    p = grid.partition_tokens
    # (partition, sequence): each partition's keys of each sequence, min(max(c - s, 0), p) without the calls
    return [p if c - s >= p else (c - s if c > s else 0) for s in range(0, longest, p) for c in ctx], False


def sm_keys(grid: PagedGrid, contexts: Sequence[int], heads: int, sms: int, registers: tuple[int, int]) -> list[int]:
    """Keys each SM reads in one decode launch (see the module's assumptions), least loaded SM first: which SM
    holds which load does not matter to the launch, so the loads are kept sorted, and the least loaded SMs are
    the first ones."""
    groups, v1 = group_keys(grid, contexts, heads)
    wave = sms * blocks_per_sm(grid.threads_per_block, registers[0] if v1 else registers[1])
    end = min(wave, heads * len(groups))  # blocks in the first wave: block j (of group j // heads) on SM j % sms
    first = -(-end // heads)  # groups that start in the first wave
    base, diff = 0, [0] * (sms + 1)  # keys every SM gets, and the rest as differences along the SMs
    for g in range(first):
        k, a = groups[g], g * heads
        laps, part = divmod((end if end < a + heads else a + heads) - a, sms)
        base += laps * k
        s = a % sms
        if s + part <= sms:
            diff[s] += k
            diff[s + part] -= k
        else:  # wraps past the last SM
            diff[s] += k
            diff[0] += k
            diff[s + part - sms] -= k
    load = sorted(base + d for d in itertools.accumulate(diff[:sms]))
    rest = heads * first - end  # blocks of the wave's last group that wait for a slot
    later = [(rest, groups[first - 1])] if rest else []
    for count, k in later + [(heads, k) for k in groups[first:]]:
        if k <= 0:
            continue
        whole, part = divmod(count, sms)
        if whole:
            k_all = whole * k
            load = [x + k_all for x in load]
        if part:  # the least loaded SMs take them: the first ones, sorted again after
            load[:part] = [x + k for x in load[:part]]
            load.sort()
    return load


def grid_factor(grid: PagedGrid, contexts: Sequence[int], heads: int, sms: int, registers: tuple[int, int]) -> float:
    """The most loaded SM's keys over the mean SM's (>= 1) for one decode launch over sequences of ``contexts``
    keys with ``heads`` query heads per GPU on a GPU of ``sms`` SMs, the kernels using ``registers`` (V1, V2)."""
    if len(contexts) == 0:
        return 1.0
    load = sm_keys(grid, contexts, heads, sms, registers)
    total = float(sum(load))
    return max(float(load[-1]) * sms / total, 1.0) if total > 0 else 1.0


__all__ = ["blocks_per_sm", "grid_factor", "group_keys", "sm_keys", "uses_v1"]
