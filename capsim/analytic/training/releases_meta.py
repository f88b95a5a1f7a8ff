"""Meta's Llama 3 training stack as the Llama 3 paper describes it: 4D parallelism (TP, CP, PP, FSDP) on PyTorch with
NCCLX. The code is not public; every fact below is the paper's, cited by section and page, and every behaviour the
paper does not state takes the field's generic value, said so in its citation (a band over those is reported with
the validation rows, never a value chosen to fit them).

Citations: ``L3`` is Llama Team, AI @ Meta, "The Llama 3 Herd of Models", arXiv 2407.21783 v3 (2024-11-23; v1
2024-07-31), pages as in that version's PDF.
"""

from __future__ import annotations

from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.release import (
    CP_NOT_IN_GRAPH,
    FLEX_DEEPEP,
    FUSED_FORMS,
    FUSED_POINTWISE,
    GENERIC_EAGER,
    NO_TE_GATHER,
    NO_TE_NORM,
    NOT_DEEPSPEED,
    ONE_SCHEDULE,
    SPREAD_EXPERTS,
    WITH_TP,
    CpRotate,
    Framework,
    FrameworkFamily,
    LossCopy,
    MoeDispatcher,
    PipelineSplit,
    Release,
    Reshard,
    Setting,
)

L3 = "L3 (Dubey et al. 2024, arXiv 2407.21783 v3)"
_UNSTATED = "not stated in " + L3 + ": the field's generic value"
_NO_MOE = "Llama 3 is dense: no MoE (the field's generic value)"
# Sec. 3.3.2 p. 10: "Our use of FSDP for Llama 3 shards optimizer states and gradients, but for model shards we do
# not reshard after forward computation to avoid an extra all-gather communication during backward passes"
_NO_RESHARD = (L3 + " Sec. 3.3.2 p. 10: 'Our use of FSDP for Llama 3 shards optimizer states and gradients, but for "
               "model shards we do not reshard after forward computation to avoid an extra all-gather communication "
               "during backward passes'")
# Sec. 3.3.2 p. 12: "DP (i.e., FSDP) is the outermost parallelism because it can tolerate longer network latency by
# asynchronously prefetching sharded model weights and reducing gradients"
_ASYNC_DP = (L3 + " Sec. 3.3.2 p. 12: 'DP (i.e., FSDP) is the outermost parallelism because it can tolerate longer "
             "network latency by asynchronously prefetching sharded model weights and reducing gradients'")
# Sec. 3.3.2 p. 12: "we use FP32 gradients accumulation during backward computation over multiple micro-batches and
# also reduce-scatter gradients in FP32 across data parallel workers in FSDP"
_FP32_GRADS = (L3 + " Sec. 3.3.2 p. 12: 'FP32 gradients accumulation during backward computation over multiple "
               "micro-batches and also reduce-scatter gradients in FP32 across data parallel workers in FSDP'")
# Sec. 3.3.2 p. 11: "we reduce one Transformer layer each from the first and the last stages ... the first model
# chunk on the first stage has only the embedding, and the last model chunk on the last stage has only output
# projection and loss calculation"
_BALANCED = (L3 + " Sec. 3.3.2 p. 11: 'we reduce one Transformer layer each from the first and the last stages ... "
             "the first model chunk on the first stage has only the embedding, and the last model chunk on the last "
             "stage has only output projection and loss calculation' (the embedding and the loss each take one "
             "layer's place: Megatron-Core's account-for-embedding/loss split)")


def _cite() -> dict[str, str]:
    """A source for every behaviour field: the paper's words, or its silence."""
    return {
        "attention": "a fused attention kernel (no s^2 tensor): the kernel is " + _UNSTATED + " (L3 Sec. 3.2 masks "
                     "attention between documents of a sequence, not priced: the mask's saving depends on document "
                     "lengths the paper does not give)",
        "dropout": "dropout " + _UNSTATED + " (off)",
        "overlap_grad_reduce": _ASYNC_DP, "overlap_param_gather": _ASYNC_DP, "zero3_prefetch": _ASYNC_DP,
        "overlap_tp_comm": "TP communication overlap " + _UNSTATED + " (off)",
        "overlap_tp_wgrad": "TP backward overlap " + _UNSTATED,
        "fused_grad_accumulation": _FP32_GRADS + "; whether the wgrad GEMM writes the fp32 buffer is " + _UNSTATED,
        "overlap_p2p": L3 + " Sec. 3.3.2 p. 11: 'we adopt asynchronous point-to-point communication in PP'",
        "pp_scatter_gather": "splitting pipeline sends over the TP ranks " + _UNSTATED,
        "sequence_parallel": "offered: L3 Sec. 3.3.2 p. 10 cites Korthikanti et al. (2023) for tensor parallelism",
        "selective_recompute": "offered " + _UNSTATED,
        "distributed_optimizer": "not Megatron's distributed optimizer: " + L3 + " Sec. 3.3.2 p. 10 shards with FSDP",
        "zero": _NO_RESHARD,
        "context_parallel": L3 + " Sec. 3.3.2 p. 11: 'context parallelism ... sequences up to 128K'",
        "fp8_training": "not offered: " + L3 + " Sec. 3.3.2 p. 10 reports BF16 training (Table 4 'BF16 MFU')",
        "cp_rotate": L3 + " Sec. 3.3.2 p. 11-12: 'we first all-gather the key (K) and value (V) tensors, and then "
                     "compute attention output for the local query (Q) tensor chunk ... the all-gather communication "
                     "latency is exposed in the critical path'; p. 11: the sequence in 2 x CP chunks, rank i holding "
                     "chunks i and 2 x CP - 1 - i (causal load balancing)",
        "cp_in_graph": CP_NOT_IN_GRAPH,
        "repeat_kv": L3 + " Sec. 3.3.2 p. 12: 'the communicated K and V tensors are much smaller than Q tensor due to "
                     "the use of GQA': the gathered K, V keep the model's KV heads",
        "uneven_pipeline": _BALANCED, "pipeline_split": _BALANCED,
        "interleave_min_pp": L3 + " Sec. 3.3.2 p. 11: 'an interleaved schedule (Narayanan et al., 2021) with V "
                             "pipeline stages on one pipeline rank'; its least pp " + _UNSTATED,
        "moe_dispatcher": _NO_MOE, "moe_flex_backend": FLEX_DEEPEP, "overlap_moe_a2a": _NO_MOE,
        "moe_fp8_padding": _NO_MOE, "moe_random_routing": _NO_MOE, "moe_consecutive_experts": SPREAD_EXPERTS,
        "moe_combine_saves": _NO_MOE,
        "pp_schedule_sequences": ONE_SCHEDULE + " (L3 Sec. 3.3.2 p. 11: one interleaved schedule over the batch's M "
                                 "micro-batches, bubble (PP - 1) / (V x M))",
        "loss_copy": "what the loss keeps " + _UNSTATED,
        "fp8_scaling": "no FP8 training (fp8_training)", "fp8_params": "no FP8 training (fp8_training)",
        "reshard_after_forward": _NO_RESHARD,
        "defer_grad_sync": _FP32_GRADS + "; when the reduce-scatter runs is not stated: FSDP's documented default "
                           "(Zhao et al. 2023b, cited there: a reduce-scatter after every backward, no_sync opt-in)",
        "pp_defer_grad_sync": "no pipeline-stage deferral stated in " + L3 + " (FSDP's default, as defer_grad_sync)",
        "pp_reduce_at_step_end": "no pipeline-stage deferral stated (pp_defer_grad_sync)",
        "replica_reduce_every_micro_batch": "no hybrid sharding stated in " + L3 + " (the field's generic value)",
        "offload_layers": "no activation offloading stated in " + L3 + " (the field's generic value)",
        "grads_fp32": _FP32_GRADS,
        "fp32_master": "an fp32 master copy and Adam moments " + _UNSTATED,
        "tp_rs": "no userbuffers overlap stated (overlap_tp_comm off; the field's generic value)",
        "tp_gather_quantized": NO_TE_GATHER, "norm_quantize": NO_TE_NORM,
        "selective_ac": "what selective recomputation replays " + _UNSTATED + " (L3 Sec. 3.3.2 p. 11 trains 8K "
                        "sequences 'without activation checkpointing')",
        "torch_compile": "torch.compile " + _UNSTATED,
        "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **GENERIC_EAGER, **FUSED_FORMS,
        "fp8_precompute_scales": "a torchao FP8 option; no FP8 training here (fp8_training)",
        "fp8_recompute_weight_bwd": "a torchao FP8 option; no FP8 training here (fp8_training)",
        **NOT_DEEPSPEED,
    }


def _defaults() -> dict[str, Setting]:
    """The layout settings a row may leave blank: the paper's where it states them, else a stated default."""
    return {
        "micro_batch": Setting(1, "sequences per micro-batch " + _UNSTATED.replace("the field's generic value",
                                                                                   "one sequence")
                               + " (Sec. 3.3.2 p. 11: the schedule runs 'an arbitrary number of micro-batches')"),
        "v": Setting(1, "V " + _UNSTATED.replace("the field's generic value", "no interleaving") + "; a row states "
                        "the V its split implies"),
        "recompute": Setting("none", L3 + " Sec. 3.3.2 p. 11: 'we could pre-train Llama 3 on sequences of 8K tokens "
                                          "without activation checkpointing'"),
        "sp": Setting(WITH_TP, "sequence parallelism with TP " + _UNSTATED.replace(
            "the field's generic value", "on wherever TP is") + " (Sec. 3.3.2 p. 10 cites Korthikanti et al. 2023)"),
        "zero_stage": Setting(3, _NO_RESHARD + ": parameters, gradients and optimizer states sharded (ZeRO-3), the "
                                 "parameters kept gathered from forward to backward (reshard_after_forward)"),
        "cp": Setting(1, L3 + " Table 4 p. 10: CP 1 at 8K sequences"),
        "distributed_optimizer": Setting(False, "FSDP, not Megatron's distributed optimizer"),
        "etp": Setting(1, _NO_MOE),
        "account_for_embedding": Setting(True, _BALANCED),
        "account_for_loss": Setting(True, _BALANCED),
    }


def meta_4d_2024(name: str) -> Release:
    """Meta's 4D-parallel stack of the Llama 3 405B pre-training (2024), as L3 Sec. 3.3 describes it."""
    fw = Framework(name, AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                   overlap_tp_comm=False, zero3_prefetch=True, overlap_p2p=True, distributed_optimizer=False,
                   zero=True, context_parallel=True, fp8_training=False, cp_rotate=CpRotate.GATHER_KV,
                   repeat_kv=False, uneven_pipeline=True, pipeline_split=PipelineSplit.MEGATRON,
                   moe_dispatcher=MoeDispatcher.ALLTOALL, loss_copy=LossCopy.FP32,
                   reshard_after_forward=Reshard.NEVER, defer_grad_sync=False, pp_defer_grad_sync=False,
                   grads_fp32=True, fp32_master=True)
    return Release(fw, FrameworkFamily.META_4D, "meta-4d-2024", "2024-07-31",
                   "the Llama 3 paper's description of Meta's training stack (" + L3 + " Sec. 3.3, pp. 8-12); the "
                   "code is not public", _cite(), _defaults(), {})


__all__ = ["meta_4d_2024"]
