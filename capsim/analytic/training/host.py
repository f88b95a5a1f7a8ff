"""Host (CPU) time to issue one layer's kernels in a training pass: the floor under that pass's GPU time.

Eager PyTorch training issues every kernel from the host; a pass whose kernels take less GPU time than the host needs
to issue them runs at the host's pace (H. He, "Making Deep Learning Go Brrrr From First Principles", 2022,
"Overhead"). Megatron-Core's all-to-all token dispatcher synchronises the host with the GPU in every MoE layer's
forward (the routing counts it reads to size the all-to-all), so the host cannot build a queue across layers there;
the floor is priced per layer and pass, which for a stack of identical layers is the same as per pass.

Per-launch host costs (cited; no fit to the validated rows):
- ``GEMM_LAUNCH_S``: one cuBLAS GEMM issued through Transformer Engine, 13.7 us median host time of the
  ``nvte_cublas_gemm`` NVTX range (10.3 us min, 645,099 calls) in the Nsight Systems profile of a Megatron-Core
  Qwen3-30B-A3B run on 8 B200 (EP 8, micro-batch 1, TE grouped GEMM), yanring/Megatron-MoE-ModelZoo issue #7
  (2025-08-18) -- an operator profile, read for this per-call figure only;
- ``FWD_GROUPED_LAUNCH_S``: one local expert's GEMM of a forward grouped GEMM (TE ``GroupedLinear`` as
  Megatron-Core's TEGroupedMLP runs it), with the Python around it: the same profile's forward routed-experts block
  (NVTX range ``:#MOE_EXPERTS_COMP``, by its name Megatron-Core's ``MoELayer.experts_compute``: the dispatcher's
  sort, fc1, the activation, fc2, the unsort) took 2,187,257 ns of host time (median; min 1,939,806; 6,144
  instances), over that run's
  2 x 16 per-expert GEMMs (128 experts at EP 8): 68.4 us each (60.6 at the minimum), against the 13.7 us of the cuBLAS
  call alone. The block's few other kernels are charged to its GEMMs (an upper bound per launch: with three eager ops
  at ``EAGER_OP_S`` taken out, 67.4 us). The range runs no host wait (with ``--moe-permute-fusion``, set in the run's
  base config model_configs/benchmarking/Qwen3-30B-A3B.yaml, yanring/Megatron-MoE-ModelZoo@1707096, the all-to-all
  dispatcher has the routed counts on the host from the dispatch's wait before it) and in that run its GPU work (32 expert GEMMs of ~2k rows at hidden
  2048 on a B200) takes a fraction of it, so it is issue time. The profile's Python ranges cover the forward only
  (autograd runs the backward on its own thread): the backward's per-expert GEMMs keep ``GEMM_LAUNCH_S``, a lower
  bound;
- ``EAGER_OP_S``: any other kernel, ~10 us of host time per eager PyTorch op (He 2022, "Overhead"; the same stated
  default as the serving engines' ``kernel_dispatch_s``, capsim/specs/catalog/engines.yaml).

Launch counts: one per op, except TE's grouped experts: ``GroupedLinear`` issues one cuBLAS GEMM per local expert
(``multi_stream_cublas_gemm`` loops ``nvte_cublas_gemm_v2`` over ``num_gemms`` on 4 compute streams,
transformer_engine/common/gemm/cublaslt_gemm.cu L923-966, NVIDIA/TransformerEngine@v2.9), and quantizes each
expert's input with its own kernel except under FP8 delayed scaling, which has one fused multi-tensor
cast-transpose (``multi_tensor_quantize_impl``, transformer_engine/pytorch/csrc/extensions/cast.cpp L103-149 at v2.9:
"Currently only have fused kernel for FP8 delayed scaling", else "Quantize kernels individually"), and a biased
model's fc2 bias is a scale and an add per expert (``capsim.analytic.moe._expert_bias``). The experts'
activation runs once on the concatenated rows (one kernel).

CUDA graphs (Megatron-Core ``--cuda-graph-impl`` / ``--cuda-graph-scope``, capsim.analytic.training.core_flags): the
ops of a graphed scope cost one graph launch, ``GRAPH_LAUNCH_S``, charged to the first op of each run of graphed ops,
instead of their per-kernel issue (``graphed_ops``); the rest keep the costs above. The graph's static buffers and
memory pool are not priced (no source quantifies them).

The forward of an MoE layer waits for the GPU once (every dropless Megatron-Core dispatcher needs the routed counts on
the host: TEGroupedMLP.forward takes ``tokens_per_expert.tolist()`` as GroupedLinear's split sizes,
megatron/core/transformer/moe/experts.py L879, NVIDIA/Megatron-LM@0d8e0714). Where the wait falls is the
dispatcher's (``SyncPoint``): the all-to-all dispatcher copies the counts to the host on a side stream after the
router and blocks on that copy's event just before the token all-to-all (token_dispatcher.py L572 sets
``cuda_sync_point = "before_ep_alltoall"`` when ep or tp > 1, L671 calls ``_maybe_dtoh_and_synchronize`` before
``all_to_all`` at L674, L907 ``self.d2h_event.synchronize()``; "before_finish", still before the experts, without
EP); DeepEP's dispatch spins on the host for the received counts between its layout exchange and the token copy
(fused_a2a.py L103-104: "the CPU will wait for GPU's signal to arrive"), HybridEP reads the dispatched size from a
GPU tensor when none is given, "which causes a D2H synchronization" (fused_a2a.py L485-489; dropless training gives
none); the all-gather dispatcher calls ``.cpu()`` on the counts after its all-gather (token_dispatcher.py
``MoEAllGatherTokenDispatcher.dispatch_postprocess``); torchtitan's ``ExpertParallel._token_dispatch`` copies the
output splits with ``non_blocking=False`` before its all-to-all ("NOTE: this would incur a device-to-host sync",
torchtitan/distributed/expert_parallel.py, pytorch/torchtitan@31f33c14). After such a wait the GPU queue is empty, so the host cannot
build a lead across it: from the wait to the next one the layer runs as a list of kernels issued in order onto an
empty queue, kernel i starting once the host has issued it and the GPU has finished kernel i-1, which takes
max over i of (host time to issue kernels 1..i + GPU time of kernels i..n) (``Issue``; the classic bound of a
two-stage pipeline), not max(host, GPU). The backward has no such wait (its split sizes are the forward's host
lists), so it keeps one max per pass. Not priced: the wake-up latency of the wait itself (no published figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.fp8 import CastKind
from capsim.analytic.moe import GROUPED
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.precision import DType, Fp8Scaling, Precision

GEMM_LAUNCH_S = 13.7e-6  # TE nvte_cublas_gemm host time, median (Megatron-MoE-ModelZoo issue #7 nsys profile)
# forward routed-experts NVTX range (:#MOE_EXPERTS_COMP, median) of the same profile over its 2 x 16 expert GEMMs
FWD_GROUPED_LAUNCH_S = 2_187_257e-9 / (2 * 16)
EAGER_OP_S = 1.0e-5  # one eager PyTorch op's host time (He 2022, "Overhead")
# One CUDA graph launch's host time: CUDA.jl's graph docs (cuda.juliagpu.org/dev/usage/graphs) measure 8 us of CPU
# for a graphed 4-layer MLP and 3.5 us for 80 graphed kernels; the upper figure, band 3.5-8 us
GRAPH_LAUNCH_S = 8.0e-6
# Megatron-Core's graph scopes -> the layer's ops they capture (core_v0.16.0 arguments.py L1430-1443: "attn"
# TransformerLayer._forward_attention(), "mlp" _forward_mlp() of a dense layer, "moe_router" _forward_mlp() up to
# MoELayer.router(), "moe_preprocess" MoELayer.preprocess(): the all-to-all dispatcher's dispatch_preprocess, its
# counts and first permute, token_dispatcher.py L505-530). Casts and eager extras outside these names stay eager.
SCOPE_OPS: dict[str, frozenset[str]] = {
    "attn": frozenset({"norm_attn", "qkv", "qk_norm", "rope", "attention", "attn_out", "residual_attn"}),
    "mlp": frozenset({"norm_mlp", "mlp_up", "mlp_act", "mlp_down", "residual_mlp"}),
    "moe_router": frozenset({"norm_mlp", "router", "moe_router_topk"}),
    "moe_preprocess": frozenset({"moe_permute"}),
}
# "full" (the whole layer; core_v0.16.0 turns it into the empty list) and "full_iteration" graph every op of a dense
# layer; in a dropless MoE layer only what runs before the dispatcher's host wait (the experts need the routed
# counts on the host, experts.py L879 at 0d8e0714; the all-to-all dispatcher moves its copy of them to
# "before_ep_alltoall" under a whole-layer graph, token_dispatcher.py L439-442 at core_v0.16.0): attn, moe_router
# and moe_preprocess
_WHOLE = frozenset({"full", "full_iteration"})
# TE's quantize ops (capsim.analytic.fp8 cast names), per expert unless FP8 delayed scaling fuses them
_CASTS = frozenset(kind.value for kind in CastKind)
# fc2's eager bias (capsim.analytic.moe._expert_bias): a scale and an add per local expert; fc1's where a release
# adds it eagerly (capsim.analytic.eager.fc1_bias_ops): an add per local expert
MOE_BIAS_PER_EXPERT = frozenset({"moe_bias_scale", "moe_bias_add", "moe_fc1_bias_add"})


def _per_expert(op: Op, precision: Precision) -> bool:
    """Whether ``op``'s ``count`` instances are issued one launch each (see the module docstring)."""
    base = op.name.split(".")[0]
    if op.kind is OpKind.GEMM:
        return op.impl == GROUPED
    if base in MOE_BIAS_PER_EXPERT:
        return True
    if base in _CASTS:
        # unnamed scaling (None) is TE's default, delayed
        return not (precision.compute is DType.FP8 and precision.fp8_scaling is not Fp8Scaling.CURRENT)
    return False


def launches(op: Op, precision: Precision) -> Num:
    """Kernels ``op`` launches per layer (its count where TE issues one per expert), times its share of layers."""
    count = op.count if _per_expert(op, precision) else 1.0
    return np.asarray(count, float) * np.asarray(op.share, float)


def graphed_ops(scope: str, ops: Sequence[Op]) -> frozenset[str]:
    """The op names (before any ".") of one layer's ``ops`` that Megatron-Core's CUDA-graph ``scope`` (comma-
    separated scope names; "" for no graph) captures (``SCOPE_OPS``)."""
    names = {op.name.split(".")[0] for op in ops}
    moe = "moe_permute" in names
    out: set[str] = set()
    for part in filter(None, scope.split(",")):
        if part in _WHOLE:
            out |= (SCOPE_OPS["attn"] | SCOPE_OPS["moe_router"] | SCOPE_OPS["moe_preprocess"]) if moe else names
        elif part != "mlp" or not moe:
            out |= SCOPE_OPS[part]
    return frozenset(out & names)


def host_costs(ops: Sequence[Op], precision: Precision, graphed: frozenset[str] = frozenset()) -> list[Num]:
    """Each op's host seconds: ``op_host_s``, or for an op of ``graphed`` one graph launch where a run of graphed
    ops starts and nothing after it."""
    out: list[Num] = []
    prev = False
    for op in ops:
        inside = op.name.split(".")[0] in graphed
        out.append((0.0 if prev else GRAPH_LAUNCH_S) if inside else op_host_s(op, precision))
        prev = inside
    return out


def host_s(ops: Sequence[Op], precision: Precision, graphed: frozenset[str] = frozenset()) -> Num:
    """Host seconds to issue ``ops`` (one layer's pass), the ``graphed`` ones as graph launches."""
    out: Num = 0.0
    for h in host_costs(ops, precision, graphed):
        out = out + h
    return out


def op_host_s(op: Op, precision: Precision) -> Num:
    """Host seconds to issue one op's kernels: a forward grouped GEMM's per-expert launches at
    ``FWD_GROUPED_LAUNCH_S``, any other GEMM's at ``GEMM_LAUNCH_S``, other kernels at ``EAGER_OP_S``."""
    if op.kind is not OpKind.GEMM:
        return launches(op, precision) * EAGER_OP_S
    forward_grouped = op.impl == GROUPED and not op.name.endswith((".dgrad", ".wgrad"))
    return launches(op, precision) * (FWD_GROUPED_LAUNCH_S if forward_grouped else GEMM_LAUNCH_S)


@dataclass(frozen=True)
class Issue:
    """A run of kernels issued in order onto a GPU queue that starts empty: ``span_s`` from the first issue to the
    last kernel's end (max over i of issue time of 1..i + GPU time of i..n), ``host_s`` the issuing alone,
    ``gpu_s`` the kernels alone (arrays over layouts)."""

    span_s: Num
    host_s: Num
    gpu_s: Num

    def then(self, other: Issue) -> Issue:
        """This run followed by ``other`` (the bound composes: associative, so runs can be built block by block)."""
        return Issue(np.maximum(self.span_s + other.gpu_s, self.host_s + other.span_s),
                     self.host_s + other.host_s, self.gpu_s + other.gpu_s)


EMPTY = Issue(0.0, 0.0, 0.0)


def issue(ops: Sequence[Op], gpu_s: Sequence[Num], precision: Precision,
          host: Sequence[Num] | None = None) -> Issue:
    """``ops`` (with their GPU seconds) issued in order, at ``host`` seconds each (default ``op_host_s``)."""
    out = EMPTY
    costs = [op_host_s(op, precision) for op in ops] if host is None else host
    for h, g in zip(costs, gpu_s, strict=True):
        out = out.then(Issue(h + g, h, g))
    return out


def collective(gpu_s: Num) -> Issue:
    """One collective launch (an NCCL kernel: ``EAGER_OP_S`` of host time, like any other kernel) and its time."""
    return Issue(EAGER_OP_S + np.asarray(gpu_s, float), EAGER_OP_S, np.asarray(gpu_s, float))


class SyncPoint(StrEnum):
    """Where a dispatcher's host wait falls in an MoE layer's forward (module docstring)."""

    BEFORE_DISPATCH = "before_dispatch"  # all-to-all (cuda_sync_point before_ep_alltoall), DeepEP, HybridEP
    AFTER_DISPATCH = "after_dispatch"  # the all-gather dispatcher's .cpu() after its all-gather


# The MoE forward's three runs between its collectives, in the op list's order (capsim.analytic.moe.moe_ops):
# PRE the permute (before the dispatch), EXPERTS the sort, experts, their FP8 padding and bias, the unsort (between
# dispatch and combine), POST the unpermute, shared experts and the next layer's attention, router and top-k.
_EXPERT_BLOCK_EXTRA = frozenset({"moe_fp8_pad", "moe_fp8_unpad"})


def moe_runs(ops: Sequence[Op], gpu_s: Sequence[Num], precision: Precision, graphed: frozenset[str] = frozenset()
             ) -> tuple[Issue, Issue, Issue] | None:
    """(pre, experts, post) runs of an MoE layer's forward op list, or None without a dispatcher's permute; the
    ``graphed`` ops as graph launches (``host_costs``)."""
    names = [op.name.split(".")[0] for op in ops]
    if "moe_permute" not in names:
        return None
    perm = names.index("moe_permute")
    sorts = [i for i, n in enumerate(names) if n == "moe_sort"]
    first, last = sorts[0], sorts[-1]
    extra = [i for i, n in enumerate(names) if n.startswith(tuple(_EXPERT_BLOCK_EXTRA))]
    pre = list(range(perm, first))
    experts = list(range(first, last + 1)) + extra
    post = [i for i in range(last + 1, len(ops)) if i not in extra] + list(range(perm))

    costs = host_costs(ops, precision, graphed)

    def run(idx: list[int]) -> Issue:
        return issue([ops[i] for i in idx], [gpu_s[i] for i in idx], precision, [costs[i] for i in idx])

    return run(pre), run(experts), run(post)


def synced_pass_s(pre: Issue, experts: Issue, post: Issue, dispatch_s: Num, combine_s: Num, point: SyncPoint) -> Num:
    """Seconds of one MoE layer's forward from one host wait to the next (module docstring): the runs and the two
    collectives issued in order after the wait, on an empty GPU queue."""
    d, c = collective(dispatch_s), collective(combine_s)
    chain = (pre, d, experts, c, post) if point is SyncPoint.BEFORE_DISPATCH else (experts, c, post, pre, d)
    out = EMPTY
    for run in chain:
        out = out.then(run)
    return out.span_s


__all__ = ["EAGER_OP_S", "EMPTY", "FWD_GROUPED_LAUNCH_S", "GEMM_LAUNCH_S", "GRAPH_LAUNCH_S", "SCOPE_OPS", "Issue",
           "graphed_ops", "host_costs", "SyncPoint", "collective", "host_s", "issue", "launches",
           "moe_runs", "op_host_s", "synced_pass_s"]
