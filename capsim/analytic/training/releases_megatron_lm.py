"""Megatron-LM of January 2023 (before Megatron-Core): the merge 285068c8 (2023-01-11, "Merge branch
'tridao-flashattn'"), the code MegaScale's Megatron-LM baseline ran (Jiang et al. 2024, NSDI, arXiv 2402.15627, Sec.
6.1: "Our experiments use the Megatron-LM (commit hash: 285068c8)").

Citations: ``ML@285068c8`` is github.com/NVIDIA/Megatron-LM at that commit; line numbers are in that file there.
"""

from __future__ import annotations

from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.release import (
    CP_NOT_IN_GRAPH,
    FLEX_DEEPEP,
    FUSED_FORMS,
    FUSED_POINTWISE,
    GENERIC_EAGER,
    KV_OWN_HEADS,
    NO_TE_GATHER,
    NO_TE_NORM,
    NOT_DEEPSPEED,
    ONE_SCHEDULE,
    SPREAD_EXPERTS,
    Flag,
    Framework,
    FrameworkFamily,
    LossKernel,
    Release,
    Setting,
    megatron_ce,
)

_ML = "ML@285068c8 megatron/"
_ARGS = _ML + "arguments.py "
_ABSENT = "not in this code (the field's generic value)"
_NO_ZERO3 = "no ZeRO-3 in this code (zero=False): nothing to prefetch or reshard"
_NO_MOE = "no mixture of experts in this code (the field's generic value)"
_NO_FP8 = ("FP8 exists here only through Transformer Engine (" + _ARGS + "L374-387 --fp8-e4m3/--fp8-hybrid with "
           "--transformer-impl transformer_engine, default 'local'), whose path capsim has not read at this commit: "
           "not offered by this preset")
_FP32_GRADS = _ARGS + "L152-160: bf16 forces --accumulate-allreduce-grads-in-fp32 (fp16 runs choose it)"


def _cite() -> dict[str, str]:
    return {
        "attention": _ML + "model/transformer.py L181 CoreAttention (baddbmm, FusedScaleMaskSoftmax, dropout, bmm) "
                     "unless --use-flash-attn (" + _ARGS + "L655, store_true: off; transformer.py L318 "
                     "FlashSelfAttention, flash_attn_unpadded_func)",
        "dropout": _ARGS + "L531-534: --attention-dropout and --hidden-dropout default 0.1",
        "overlap_grad_reduce": _ARGS + "L838 --DDP-impl default local: training.py L425 reduce_model_grads after "
                               "forward_backward_func, not during the backward",
        "overlap_param_gather": _ML + "training.py L437-440: gather_model_params after the optimizer step "
                                "(distrib_optimizer.py L586-611 _all_gather_base), blocking",
        "overlap_tp_comm": "no userbuffers TP overlap in this code: forward TP collectives run between the GEMMs",
        "overlap_tp_wgrad": _ML + "core/tensor_parallel/layers.py L213-294 LinearWithGradAccumulationAndAsync"
                            "Communication: grad-input all-reduce (SP: reduce-scatter) async_op during the weight-"
                            "gradient GEMM, SP's all-gather during the data-gradient GEMM (" + _ARGS + "L664 "
                            "--no-async-tensor-model-parallel-allreduce: on by default)",
        "fused_grad_accumulation": _ARGS + "L677 --no-gradient-accumulation-fusion (fusion on by default)",
        "overlap_p2p": _ML + "p2p_communication.py L227-231: batch_isend_irecv, wait, torch.cuda.synchronize",
        "zero3_prefetch": _NO_ZERO3,
        "pp_scatter_gather": _ARGS + "L846 --no-scatter-gather-tensors-in-pipeline (on by default; "
                             "p2p_communication.py L233-236: not under --sequence-parallel)",
        "sequence_parallel": _ARGS + "L675 --sequence-parallel",
        "selective_recompute": _ARGS + "L593 --recompute-granularity selective",
        "distributed_optimizer": _ARGS + "L874 --use-distributed-optimizer (distrib_optimizer.py L536-611: "
                                 "reduce-scatter after the backward, all-gather after the step)",
        "zero": "Megatron-LM has no ZeRO stages (those are DeepSpeed's)",
        "context_parallel": _ABSENT, "cp_rotate": _ABSENT, "cp_in_graph": CP_NOT_IN_GRAPH,
        "fp8_training": _NO_FP8, "fp8_scaling": _NO_FP8, "fp8_params": _NO_FP8,
        "repeat_kv": KV_OWN_HEADS,
        "uneven_pipeline": _ML + "model/transformer.py L850: num_layers % pipeline size == 0 asserted",
        "pipeline_split": "layers must divide the stages here (uneven_pipeline); the field's generic value",
        "interleave_min_pp": _ARGS + "L134-137: the interleaved schedule needs pipeline-model-parallel size > 2",
        "moe_dispatcher": _NO_MOE, "overlap_moe_a2a": _NO_MOE, "moe_fp8_padding": _NO_MOE,
        "moe_random_routing": _NO_MOE, "moe_combine_saves": _NO_MOE, "moe_consecutive_experts": SPREAD_EXPERTS,
        "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE,
        "loss_copy": _ML + "model/gpt_model.py L36-38: vocab_parallel_cross_entropy(output.float(), labels) unless "
                     "--fp16-lm-cross-entropy: an fp32 copy, its fp32 exp_logits saved",
        "reshard_after_forward": _NO_ZERO3, "defer_grad_sync": _NO_ZERO3, "pp_defer_grad_sync": _NO_ZERO3,
        "pp_reduce_at_step_end": _NO_ZERO3,
        "replica_reduce_every_micro_batch": "no hybrid sharding in this code (the field's generic value)",
        "offload_layers": "no CPU activation offloading in this code (the field's generic value)",
        "grads_fp32": _FP32_GRADS,
        "fp32_master": _ML + "optimizer/optimizer.py Float16OptimizerWithFloat16Params: fp32 main parameters, fp32 "
                       "Adam moments",
        "tp_rs": "no userbuffers TP overlap in this code (the field's generic value)",
        "selective_ac": _ML + "model/transformer.py L430, L559-560: --recompute-granularity selective checkpoints "
                        "CoreAttention (not the flash path)",
        "torch_compile": "Megatron-LM runs the model eagerly with its own fused kernels (no torch.compile)",
        "fp8_precompute_scales": "a torchao option (the field's generic value)",
        "fp8_recompute_weight_bwd": "a torchao option (the field's generic value)",
        "tp_gather_quantized": NO_TE_GATHER, "norm_quantize": NO_TE_NORM,
        "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **GENERIC_EAGER, **FUSED_FORMS,
        **NOT_DEEPSPEED,
        **megatron_ce(_ML + "core/tensor_parallel/cross_entropy.py L14-120, model/gpt_model.py L38 output.float()"),
    }


def megatron_lm_2023_01(name: str) -> Release:
    """Megatron-LM at 285068c8 (2023-01-11)."""
    fw = Framework(name, AttentionImpl.UNFUSED, loss_kernel=LossKernel.MEGATRON_FP32, dropout=True,
                   overlap_grad_reduce=False, overlap_param_gather=False, overlap_tp_comm=False,
                   overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=False, zero3_prefetch=False,
                   pp_scatter_gather=True, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=False, fp8_training=False,
                   uneven_pipeline=False, interleave_min_pp=3)
    defaults = {
        "micro_batch": Setting(4, _ARGS + "L564 --micro-batch-size has no default (L126 asserted set); the "
                                          "commit's examples/pretrain_gpt.sh L16 sets 4"),
        "v": Setting(1, _ARGS + "L833 --num-layers-per-virtual-pipeline-stage default None: no interleaving"),
        "recompute": Setting("none", _ARGS + "L593 --recompute-granularity default None"),
        "sp": Setting(False, _ARGS + "L675 --sequence-parallel (store_true: off)"),
        "zero_stage": Setting(0, "no ZeRO in Megatron-LM"),
        "cp": Setting(1, "no context parallelism in this code"),
        "distributed_optimizer": Setting(False, _ARGS + "L874 --use-distributed-optimizer (store_true: off)"),
        "etp": Setting(0, "no expert tensor parallelism in this code"),
        "account_for_embedding": Setting(False, "the embedding is not a layer of the split in this code"),
        "account_for_loss": Setting(False, "the loss is not a layer of the split in this code"),
    }
    flags = {
        "--use-flash-attn": Flag("attention", {"": AttentionImpl.FLASH}, _ARGS + "L655; model/transformer.py L318"),
        "--DDP-impl": Flag("overlap_grad_reduce", {"local": False, "torch": True}, _ARGS + "L838"),
        "--no-scatter-gather-tensors-in-pipeline": Flag("pp_scatter_gather", {"": False}, _ARGS + "L846"),
        "--no-async-tensor-model-parallel-allreduce": Flag("overlap_tp_wgrad", {"": False}, _ARGS + "L664"),
        "--no-gradient-accumulation-fusion": Flag("fused_grad_accumulation", {"": False}, _ARGS + "L677"),
        "--use-distributed-optimizer": Flag("layout.distributed_optimizer", {"": True}, _ARGS + "L874"),
    }
    return Release(fw, FrameworkFamily.MEGATRON_LM, "megatron-lm-2023.01.11", "2023-01-11",
                   "ML@285068c8 (2023-01-11, merge of 'tridao-flashattn')", _cite(), defaults, flags)


__all__ = ["megatron_lm_2023_01"]
