"""PyTorch FSDP (FSDP1, ``FullyShardedDataParallel``) as of PyTorch 2.0: the release Zhao et al. describe and measured
("PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel", VLDB 16(12) 2023, arXiv 2304.11277, Sec. 8:
"the underlying rationale, design philosophy, and implementation of FullyShardedDataParallel as of PyTorch 2.0
release").

What capsim prices of FSDP1 is the same in 2.0 as in 2.3 (``releases_legacy.fsdp_pytorch_2_3``), so this preset shares
that Framework and its citations and replaces only the citations of the behaviours the paper states for 2.0:
- each unit's AllGather is issued on a separate CUDA stream and overlaps the computation before it (Sec. 3.3.1);
- AllGather and ReduceScatter share one process group, so they run one after the other on its NCCL stream; backward
  prefetching issues the next unit's AllGather before the current ReduceScatter (Sec. 3.3.2): the per-block window
  of ``sharded.py`` (gather + reduce-scatter against the block's backward, counted once);
- full sharding frees a unit's parameters after its forward and gathers them again for its backward (Sec. 5.4, RAF);
- hybrid sharding reduce-scatters in the sharding group, then all-reduces over the replication group (Sec. 3.2.2).
Not priced, and neutral to capsim's schedule: the rate limiter (Sec. 3.4.2, at most two AllGathers in flight: the
one-block-ahead prefetch capsim prices needs no more) and forward prefetching (Sec. 3.3.3, for CPU-bound runs).

Where 2.0 and 2.3 differ, the difference is not in capsim's fields: ``limit_all_gathers`` defaults to False in 2.0
and to True from pytorch/pytorch 63d1fb21 ("[FSDP] Default `limit_all_gathers=True` (#104900)", July 2023, before
2.1); the paper's large runs turn the limiter on anyway (Sec. 5.4). The constructor's other defaults at the v2.0.0
tag (backward_prefetch, forward_prefetch, sharding_strategy) were not read at the tag: github.com/pytorch/pytorch
cannot be brought onto this machine (4 GB) and the index holds the file at a later commit only; the behaviours are
cited from the paper, which describes 2.0.
"""

from __future__ import annotations

from capsim.analytic.training.release import FrameworkFamily, Release, Setting
from capsim.analytic.training.releases_legacy import fsdp_pytorch_2_3

_PAPER = "Zhao et al. 2023, 'PyTorch FSDP' (VLDB 16(12), arXiv 2304.11277)"


def fsdp_pytorch_2_0(name: str) -> Release:
    """PyTorch 2.0.0 (2023-03-15) FSDP1, as the FSDP paper describes it; the 2.3 preset's data where they agree."""
    base = fsdp_pytorch_2_3(name)
    cite = {
        **base.cite,
        "overlap_param_gather": _PAPER + " Sec. 3.3.1: FSDP issues each AllGather from a separate CUDA stream, so it "
                                "overlaps the computation issued before it (the forward's implicit prefetch)",
        "overlap_grad_reduce": _PAPER + " Sec. 3.2.3 and 4.3: a hook on each FlatParameter's AccumulateGrad launches "
                               "its ReduceScatter as soon as the gradient is ready, during the backward",
        "zero3_prefetch": _PAPER + " Sec. 3.3.2: one process group runs AllGather and ReduceScatter one after the other "
                          "on its NCCL stream; backward prefetching issues the next unit's AllGather before the current "
                          "ReduceScatter; Sec. 5.2: 'we always turn-on backward pre-fetching'",
        "zero": _PAPER + " Sec. 3.2: sharding factor F: full replication (F = 1), full sharding (F = W), hybrid "
                "sharding (1 < F < W, Sec. 3.2.2)",
        "reshard_after_forward": _PAPER + " Sec. 5.4: 'RAF: reshard-after-forward frees AllGathered shards from other "
                                 "GPUs after forward pass and unshards them again before backward computation' (full "
                                 "sharding; Sec. 3.3.1: the outermost unit stays gathered from forward to backward)",
        "replica_reduce_every_micro_batch": _PAPER + " Sec. 3.2.2: under hybrid sharding each backward's gradients "
                                            "are reduce-scattered in the sharding group, then all-reduced in the "
                                            "replication group",
        "defer_grad_sync": _PAPER + " Sec. 3.3.4: gradient accumulation 'with communication' (running several "
                           "iterations without clearing gradients) reduces every backward; without it is opt-in "
                           "(no_sync)",
    }
    defaults = {
        **base.defaults,
        "zero_stage": Setting(3, _PAPER + " Sec. 3.2.1: full sharding, FSDP's default strategy (F = W); constructor "
                              "default not read at v2.0.0 (see the module's docstring)"),
    }
    return Release(base.framework, FrameworkFamily.FSDP, "pytorch-2.0", "2023-03-15",
                   "PyTorch 2.0.0 (2023-03-15) FullyShardedDataParallel (FSDP1), as " + _PAPER + " describes it "
                   "(Sec. 3-4, Sec. 8 'as of PyTorch 2.0 release')", cite, defaults, base.flags)


__all__ = ["fsdp_pytorch_2_0"]
