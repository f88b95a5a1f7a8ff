"""What a training framework does that changes step time: configuration facts, not tuning knobs.

Each preset states how a framework (at a given date) runs attention, whether it overlaps each kind of
communication with compute, and how it sends pipeline activations. They are facts about the software, taken from
its papers and source; a prediction names the framework it assumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum

from capsim.analytic.ops import AttentionImpl
from capsim.errors import SpecError


class MoeDispatcher(StrEnum):
    """How MoE tokens reach their experts' ranks (megatron/core/transformer/moe/README.md, "Token Dispatching",
    NVIDIA/Megatron-LM@d98e8a6)."""

    ALLTOALL = "alltoall"  # NCCL all-to-all of every (token, expert) copy
    FLEX = "flex"  # DeepEP / HybridEP: "removes redundant tokens during cross-node communication"


@dataclass(frozen=True)
class Framework:
    """How a training framework schedules kernels and communication (one variant per entry of FRAMEWORKS)."""

    name: str
    attention: AttentionImpl = AttentionImpl.FLASH  # fused kernel, or Megatron's bmm + softmax + bmm
    dropout: bool = False  # dropout on attention probabilities and residuals (kept masks, extra passes)
    overlap_grad_reduce: bool = True  # DP gradient reduction overlapped with the backward pass (bucketed)
    overlap_param_gather: bool = False  # post-step parameter all-gather overlapped with the next forward
    overlap_tp_comm: bool = False  # TP all-gather/reduce-scatter pipelined with the adjacent GEMMs
    # Column-parallel backward: the grad-input all-reduce (SP: reduce-scatter) runs during the weight-gradient
    # GEMM, and under SP the input all-gather during the data-gradient GEMM (Megatron-LM layers.py,
    # LinearWithGradAccumulationAndAsyncCommunication, from late 2021).
    overlap_tp_wgrad: bool = True
    # Weight-gradient GEMMs accumulate straight into the fp32 main-grad buffer (Megatron-LM's
    # gradient_accumulation_fusion, mid 2021); otherwise every micro-batch adds its gradients in a separate pass.
    fused_grad_accumulation: bool = True
    overlap_p2p: bool = False  # pipeline sends/receives run asynchronously, off the compute stream
    zero3_prefetch: bool = True  # ZeRO-3/FSDP gathers layer i+1 while layer i computes
    overlap_moe_a2a: bool = False  # MoE all-to-alls of one micro-batch run during another's compute
    # MoE token dispatch: NCCL all-to-all of every token copy, or a dispatcher that sends each token once per
    # destination node and forwards it over NVLink (Megatron-Core's flex dispatcher with DeepEP/HybridEP).
    moe_dispatcher: MoeDispatcher = MoeDispatcher.ALLTOALL
    pp_scatter_gather: bool = True  # split a pipeline send over the TP ranks, all-gather on arrival (SC21 4.1)
    # Layout features the software offers; a layout search does not try the others.
    sequence_parallel: bool = True
    selective_recompute: bool = True
    distributed_optimizer: bool = True
    zero: bool = True  # ZeRO stages 1-3 / FSDP sharding
    context_parallel: bool = True

    def with_(self, **changes: object) -> Framework:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["attention"] = self.attention.value
        out["moe_dispatcher"] = self.moe_dispatcher.value
        return out


class FrameworkName(StrEnum):
    MEGATRON_2021 = "megatron-2021"
    MEGATRON_2022 = "megatron-2022"
    MEGATRON_CORE = "megatron-core"
    FSDP = "fsdp"


FRAMEWORKS: dict[FrameworkName, Framework] = {
    # Megatron-LM as used by Narayanan et al. SC21 (runs of early 2021; the paper's Sec. 4.2 lists its kernel
    # optimisations): unfused softmax attention with dropout 0.1; TP all-reduces on the critical path; the
    # main-grad accumulation a separate pass; blocking batched isend/irecv between stages with scatter/gather;
    # the DP all-reduce of gradients after the pipeline flush, not overlapped (that arrived in 2023).
    # It had neither sequence parallelism nor selective recomputation (Korthikanti et al. 2022 introduced both),
    # nor the distributed optimizer (2022), ZeRO (DeepSpeed's) or context parallelism (2023).
    FrameworkName.MEGATRON_2021: Framework(
        "megatron-2021", AttentionImpl.UNFUSED, dropout=True, overlap_grad_reduce=False,
        overlap_param_gather=False, overlap_tp_comm=False, overlap_tp_wgrad=False, fused_grad_accumulation=False,
        overlap_p2p=False, pp_scatter_gather=True, sequence_parallel=False, selective_recompute=False,
        distributed_optimizer=False, zero=False, context_parallel=False),
    # Megatron-LM as used by Korthikanti et al. 2022 (the release that introduced sequence parallelism): as above,
    # plus the asynchronous column-parallel backward communication and gradient-accumulation fusion, both on by
    # default in that code (--no-async-tensor-model-parallel-allreduce, --no-gradient-accumulation-fusion).
    # Its distributed optimizer arrived later that year; no ZeRO, no context parallelism.
    FrameworkName.MEGATRON_2022: Framework(
        "megatron-2022", AttentionImpl.UNFUSED, dropout=True, overlap_grad_reduce=False,
        overlap_param_gather=False, overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True,
        overlap_p2p=False, pp_scatter_gather=True, distributed_optimizer=False, zero=False, context_parallel=False),
    # Megatron-Core (2024) with --overlap-grad-reduce --overlap-param-gather and flash attention; the interleaved
    # schedule overlaps its p2p (--overlap-p2p-comm); TP comm overlap (TE userbuffers) is off by default.
    # Megatron-Core shards with its distributed optimizer, not DeepSpeed's ZeRO stages.
    FrameworkName.MEGATRON_CORE: Framework(
        "megatron-core", AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
        overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
        pp_scatter_gather=True, zero=False),
    # PyTorch FSDP / DeepSpeed ZeRO: bucketed reduce-scatter overlapped with backward, forward/backward prefetch of
    # the next layer's parameters (Zhao et al. 2023, "PyTorch FSDP", Sec. 4.2); autograd accumulates .grad in place.
    # FSDP shards (ZeRO-2/3); no Megatron distributed optimizer, no sequence parallelism of Megatron's kind.
    FrameworkName.FSDP: Framework(
        "fsdp", AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
        overlap_tp_comm=False, overlap_tp_wgrad=False, fused_grad_accumulation=False, overlap_p2p=False,
        zero3_prefetch=True, pp_scatter_gather=False, sequence_parallel=False, distributed_optimizer=False),
}


def get_framework(framework: Framework | FrameworkName | str) -> Framework:
    """A preset by name, or a Framework given whole."""
    if isinstance(framework, Framework):
        return framework
    try:
        return FRAMEWORKS[FrameworkName(str(framework).lower())]
    except ValueError:
        raise SpecError("framework", f"unknown framework {framework!r}",
                        f"use one of {', '.join(f.value for f in FrameworkName)}") from None


__all__ = ["FRAMEWORKS", "Framework", "FrameworkName", "MoeDispatcher", "get_framework"]
