"""The releases capsim first described: Megatron-LM of 2021 and 2022, Megatron-Core 0.8.0 and PyTorch FSDP (FSDP1)
of PyTorch 2.3, each a :class:`Release` as ``framework.py`` registers them.

Citations: ``ML@<commit>`` is github.com/NVIDIA/Megatron-LM at that commit; line numbers are in that file there.
"""

from __future__ import annotations

from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.core_flags import megatron_core_flags
from capsim.analytic.training.release import (
    COMBINE_PROBS,
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
    PER_REPLICA,
    SPREAD_EXPERTS,
    TE_RING,
    UNFUSED_CE,
    Flag,
    Framework,
    FrameworkFamily,
    LossKernel,
    MoeDispatcher,
    Release,
    Setting,
    megatron_ce,
)

_ML21, _ML22, _MC08 = "ML@6985e58 megatron/", "ML@9aad920 megatron/", "ML@core_v0.8.0 megatron/"
_NO_ZERO3 = "no ZeRO-3 in this code (zero=False): nothing to prefetch"

_NO_OFFLOAD = "no CPU activation offloading in this code (the field's generic value)"
_NO_CP_YET = "no context parallelism in this code (the field's generic value)"
_NO_HSDP = "no hybrid sharding in this code (the field's generic value)"
_NO_MOE = "no mixture of experts in this code (the field's generic value)"
# Megatron-LM 2021-22: megatron/model/gpt_model.py post_language_model_processing runs
# mpu.vocab_parallel_cross_entropy(output.float(), labels), which keeps its fp32 exp_logits
_ML_CE = ("megatron/model/gpt_model.py post_language_model_processing: mpu.vocab_parallel_cross_entropy("
          "output.float(), labels) on an fp32 copy, saving its fp32 exp_logits")
_FP32_GRADS = ("Megatron's mixed precision accumulates and all-reduces gradients in fp32 (main_grad; "
               "--accumulate-allreduce-grads-in-fp32 is forced with bf16)")
_FP32_MASTER = "Megatron's mixed-precision optimizer keeps fp32 main parameters and fp32 Adam moments"
_NO_FP8 = "no FP8 in this code (Transformer Engine FP8 arrived 2023; the field's generic value)"
# Megatron-LM's FP8 training arrived with Transformer Engine in ML 3499542 (2022-12-21, megatron/arguments.py
# L374-376 --fp8-e4m3/--fp8-hybrid); ML@6985e58 and ML@9aad920 megatron/arguments.py have no fp8 argument.
_NO_FP8_TRAINING = ("not in this code: no fp8 argument in megatron/arguments.py; FP8 arrived with Transformer "
                    "Engine in ML 3499542 (2022-12-21) arguments.py L374-376 --fp8-e4m3/--fp8-hybrid")
_ETP_NONE = "0 means the routed experts split like the attention (etp = tp); no expert tensor parallelism of its own"
_SPLIT_NONE = "the embedding and loss do not count as layers in the pipeline split"
_TE_UB_DEFAULT = ("with --tp-comm-overlap and no overlap config, Transformer Engine's initialize_ub defaults: proj_fprop and "
                  "fc2_fprop pipelined in 4 chunks, no SM margin (TE@v1.8 transformer_engine/pytorch/module/base.py "
                  "L99-102, L228-232)")
_MEGATRON_SPLIT = ("layers that do not divide the stages go as Megatron's stated options place them (capsim.specs."
                   "pipeline_layout.default_uneven; a release without uneven pipelines runs none of them)")
_EAGER = "Megatron-LM runs the model eagerly with its own fused kernels (no torch.compile of the model)"
_NO_TORCHAO = "a torchao Float8Linear option; this code's FP8, if any, is Transformer Engine's (the field's generic value)"
_NO_UB = ("no userbuffers TP overlap in this code (overlap_tp_comm off; the field's generic value, Transformer Engine's "
          "default method: pipelined in 4 chunks, no SM margin)")


def megatron_lm_2021(name: str) -> Release:
    fw = Framework(name, AttentionImpl.UNFUSED, loss_kernel=LossKernel.MEGATRON_FP32, dropout=True, overlap_grad_reduce=False,
                   overlap_param_gather=False, overlap_tp_comm=False, overlap_tp_wgrad=False,
                   fused_grad_accumulation=False, overlap_p2p=False, zero3_prefetch=False, pp_scatter_gather=True,
                   sequence_parallel=False, selective_recompute=False, distributed_optimizer=False, zero=False,
                   context_parallel=False, fp8_training=False, uneven_pipeline=False, interleave_min_pp=3)
    absent = "not in this code; "
    return Release(
        fw, FrameworkFamily.MEGATRON_LM, "megatron-lm-2021", "2021-08-18",
        "ML@6985e58 (2021-08-18): the code the SC21 authors' launchers (examples/sc21) were published against",
        {"attention": _ML21 + "model/transformer.py L165-330: baddbmm, FusedScaleMaskSoftmax, dropout, bmm",
         "dropout": _ML21 + "arguments.py L352-355: --attention-dropout and --hidden-dropout default 0.1",
         "overlap_grad_reduce": _ML21 + "arguments.py L600 --DDP-impl default local; training.py L369-374 "
                                "all-reduces the gradients after the pipeline flush",
         "overlap_param_gather": absent + "the distributed optimizer arrived 2022-06-08 (ML merge d07d29d)",
         "overlap_tp_comm": _ML21 + "mpu/mappings.py: TP all-reduces run on the compute stream, between GEMMs",
         "overlap_tp_wgrad": absent + "the async column-parallel all-reduce arrived 2021-09-02 (ML merge 6e1bde1)",
         "fused_grad_accumulation": absent + "gradient-accumulation fusion arrived 2022-02-22 (ML merge 9c5a830)",
         "overlap_p2p": _ML21 + "p2p_communication.py L126-130: batch_isend_irecv, wait, torch.cuda.synchronize",
         "zero3_prefetch": _NO_ZERO3,
         "pp_scatter_gather": _ML21 + "arguments.py L607 --no-scatter-gather-tensors-in-pipeline (on by default); "
                              "Narayanan et al. SC21 Sec. 4.1",
         "sequence_parallel": absent + "--sequence-parallel arrived 2022-05-20 (ML merge 9aad920)",
         "selective_recompute": absent + "--recompute-granularity arrived 2022-05-20 (ML merge 9aad920)",
         "distributed_optimizer": absent + "--use-distributed-optimizer arrived 2022-06-08 (ML merge d07d29d)",
         "zero": "Megatron-LM has no ZeRO stages (those are DeepSpeed's)",
         "context_parallel": absent + "--context-parallel-size arrived 2023-10-30 (ML merge 4a6255a)",
         "cp_rotate": _NO_CP_YET, "cp_in_graph": CP_NOT_IN_GRAPH,
         "pipeline_split": _MEGATRON_SPLIT,
         "uneven_pipeline": _ML21 + "model/transformer.py L549-563: layers must divide over the stages and chunks",
         "interleave_min_pp": _ML21 + "arguments.py L125: the interleaved schedule needs pipeline size > 2",
         "moe_dispatcher": _NO_MOE, "overlap_moe_a2a": _NO_MOE, "moe_fp8_padding": _NO_MOE, "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": _NO_MOE, "moe_combine_saves": _NO_MOE, "loss_copy": _ML_CE, "fp8_scaling": _NO_FP8, "fp8_params": _NO_FP8, "fp8_training": _NO_FP8_TRAINING,
         "reshard_after_forward": _NO_ZERO3, "defer_grad_sync": _NO_ZERO3, "pp_defer_grad_sync": _NO_ZERO3, "pp_reduce_at_step_end": _NO_ZERO3, "replica_reduce_every_micro_batch": _NO_HSDP, "offload_layers": _NO_OFFLOAD, "grads_fp32": _FP32_GRADS, "tp_rs": _NO_UB,
         "fp32_master": _FP32_MASTER,
         "selective_ac": absent + "selective recompute arrived 2022-05-20 (ML merge 9aad920); the field's generic value",
         "torch_compile": _EAGER, "fp8_precompute_scales": _NO_TORCHAO, "fp8_recompute_weight_bwd": _NO_TORCHAO,
         "tp_gather_quantized": NO_TE_GATHER, "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS, **GENERIC_EAGER, "norm_quantize": NO_TE_NORM, **NOT_DEEPSPEED,
         **megatron_ce(_ML21 + "mpu/cross_entropy.py L31-103, model/gpt_model.py L56 output.float()")},
        {"micro_batch": Setting(4, _ML21 + "arguments.py L116 requires --micro-batch-size (no default); the "
                                "release's GPT example examples/pretrain_gpt.sh sets 4"),
         "v": Setting(1, _ML21 + "arguments.py L124-135, L595: --num-layers-per-virtual-pipeline-stage absent = "
                      "no interleaving"),
         "recompute": Setting("none", _ML21 + "arguments.py L404-419: --checkpoint-activations / "
                              "--activations-checkpoint-method default off"),
         "sp": Setting(False, "no sequence parallelism in this code"),
         "zero_stage": Setting(0, "no ZeRO in Megatron-LM"),
         "cp": Setting(1, "no context parallelism in this code"),
         "distributed_optimizer": Setting(False, "no distributed optimizer in this code"),
         "etp": Setting(0, _ETP_NONE),
         "account_for_embedding": Setting(False, _SPLIT_NONE), "account_for_loss": Setting(False, _SPLIT_NONE)},
        {"--DDP-impl": Flag("overlap_grad_reduce", {"local": False, "torch": True},
                            _ML21 + "arguments.py L600; torch DDP all-reduces buckets during the last micro-batch's "
                            "backward (schedules.py L117-133: no_sync for the others)"),
         "--no-scatter-gather-tensors-in-pipeline": Flag("pp_scatter_gather", {"": False}, _ML21 + "arguments.py L607")},
        covers=("megatron-lm-2021.02.17", "megatron-lm-2021.09.01"))  # from the interleaved-schedule merge 76e3fca
    # (2021-02-17) to the day before the async TP all-reduce merge 6e1bde1 (2021-09-02)


def megatron_lm_2022(name: str) -> Release:
    fw = Framework(name, AttentionImpl.UNFUSED, loss_kernel=LossKernel.MEGATRON_FP32, dropout=True, overlap_grad_reduce=False,
                   overlap_param_gather=False, overlap_tp_comm=False, overlap_tp_wgrad=True,
                   fused_grad_accumulation=True, overlap_p2p=False, zero3_prefetch=False, pp_scatter_gather=True,
                   sequence_parallel=True, selective_recompute=True, distributed_optimizer=False, zero=False,
                   context_parallel=False, fp8_training=False, uneven_pipeline=False, interleave_min_pp=3)
    absent = "not in this code; "
    return Release(
        fw, FrameworkFamily.MEGATRON_LM, "megatron-lm-2022", "2022-05-20",
        "ML@9aad920 (2022-05-20, merge of 'sequence_parallel'): the code of Korthikanti et al. 2022",
        {"attention": _ML22 + "model/transformer.py L169-293 CoreAttention: baddbmm, FusedScaleMaskSoftmax, dropout, "
                      "bmm",
         "dropout": _ML22 + "arguments.py L434-437: --attention-dropout and --hidden-dropout default 0.1",
         "overlap_grad_reduce": _ML22 + "arguments.py L730 --DDP-impl default local: gradients all-reduced after the "
                                "pipeline flush (training.py train_step)",
         "overlap_param_gather": absent + "the distributed optimizer arrived 2022-06-08 (ML merge d07d29d)",
         "overlap_tp_comm": _ML22 + "mpu/mappings.py: forward TP collectives run between GEMMs, not pipelined",
         "overlap_tp_wgrad": _ML22 + "mpu/layers.py L241-313: the grad-input all-reduce (async_op; "
                             "--no-async-tensor-model-parallel-allreduce, L564, on by default) or under SP the "
                             "reduce-scatter runs during the weight-gradient GEMM, SP's all-gather during the "
                             "data-gradient GEMM",
         "fused_grad_accumulation": _ML22 + "arguments.py L577-581 --no-gradient-accumulation-fusion (on by "
                                    "default), kept where gradients accumulate in fp32 (L176-188), as capsim's "
                                    "fp16 and bf16 presets do",
         "overlap_p2p": _ML22 + "p2p_communication.py L135-139: batch_isend_irecv, wait, torch.cuda.synchronize",
         "zero3_prefetch": _NO_ZERO3,
         "pp_scatter_gather": _ML22 + "arguments.py L738-740 --no-scatter-gather-tensors-in-pipeline (on by default)",
         "sequence_parallel": _ML22 + "arguments.py L575 --sequence-parallel; Korthikanti et al. 2022",
         "selective_recompute": _ML22 + "arguments.py L496 --recompute-granularity selective",
         "distributed_optimizer": absent + "--use-distributed-optimizer arrived 2022-06-08 (ML merge d07d29d)",
         "zero": "Megatron-LM has no ZeRO stages (those are DeepSpeed's)",
         "context_parallel": absent + "--context-parallel-size arrived 2023-10-30 (ML merge 4a6255a)",
         "cp_rotate": _NO_CP_YET, "cp_in_graph": CP_NOT_IN_GRAPH,
         "pipeline_split": _MEGATRON_SPLIT,
         "uneven_pipeline": _ML22 + "model/transformer.py L768-769 and the same per-stage assert: layers must divide",
         "interleave_min_pp": _ML22 + "arguments.py L144: the interleaved schedule needs pipeline size > 2",
         "moe_dispatcher": _NO_MOE, "overlap_moe_a2a": _NO_MOE, "moe_fp8_padding": _NO_MOE, "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": _NO_MOE, "moe_combine_saves": _NO_MOE, "loss_copy": _ML_CE, "fp8_scaling": _NO_FP8, "fp8_params": _NO_FP8, "fp8_training": _NO_FP8_TRAINING,
         "reshard_after_forward": _NO_ZERO3, "defer_grad_sync": _NO_ZERO3, "pp_defer_grad_sync": _NO_ZERO3, "pp_reduce_at_step_end": _NO_ZERO3, "replica_reduce_every_micro_batch": _NO_HSDP, "offload_layers": _NO_OFFLOAD, "grads_fp32": _FP32_GRADS, "tp_rs": _NO_UB,
         "fp32_master": _FP32_MASTER,
         "selective_ac": _ML22 + "model/transformer.py L359, L482-483: --recompute-granularity selective "
                         "checkpoints CoreAttention only (Korthikanti et al. 2022, Sec. 5)",
         "torch_compile": _EAGER, "fp8_precompute_scales": _NO_TORCHAO, "fp8_recompute_weight_bwd": _NO_TORCHAO,
         "tp_gather_quantized": NO_TE_GATHER, "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS, **GENERIC_EAGER, "norm_quantize": NO_TE_NORM, **NOT_DEEPSPEED,
         **megatron_ce(_ML22 + "mpu/cross_entropy.py L31-103, model/gpt_model.py L51 output.float()")},
        {"micro_batch": Setting(4, _ML22 + "arguments.py L135 requires --micro-batch-size (no default); the "
                                "release's GPT example examples/pretrain_gpt.sh sets 4"),
         "v": Setting(1, _ML22 + "arguments.py L143-154, L725: --num-layers-per-virtual-pipeline-stage absent = "
                      "no interleaving"),
         "recompute": Setting("none", _ML22 + "arguments.py L496 --recompute-granularity default None"),
         "sp": Setting(False, _ML22 + "arguments.py L575 --sequence-parallel (store_true: off)"),
         "zero_stage": Setting(0, "no ZeRO in Megatron-LM"),
         "cp": Setting(1, "no context parallelism in this code"),
         "distributed_optimizer": Setting(False, "no distributed optimizer in this code"),
         "etp": Setting(0, _ETP_NONE),
         "account_for_embedding": Setting(False, _SPLIT_NONE), "account_for_loss": Setting(False, _SPLIT_NONE)},
        {"--DDP-impl": Flag("overlap_grad_reduce", {"local": False, "torch": True}, _ML22 + "arguments.py L730"),
         "--no-scatter-gather-tensors-in-pipeline": Flag("pp_scatter_gather", {"": False}, _ML22 + "arguments.py L738"),
         "--no-async-tensor-model-parallel-allreduce": Flag("overlap_tp_wgrad", {"": False},
                                                            _ML22 + "arguments.py L564"),
         "--no-gradient-accumulation-fusion": Flag("fused_grad_accumulation", {"": False},
                                                   _ML22 + "arguments.py L577")},
        covers=("megatron-lm-2022.05.20", "megatron-lm-2022.06.07"))  # to the distributed-optimizer merge


def megatron_core_0_8(name: str) -> Release:
    fw = Framework(name, AttentionImpl.FLASH, loss_kernel=LossKernel.MEGATRON_FP32, dropout=True, overlap_grad_reduce=False,
                   overlap_param_gather=False, overlap_tp_comm=False, overlap_tp_wgrad=True,
                   fused_grad_accumulation=True, overlap_p2p=True, zero3_prefetch=False, pp_scatter_gather=False,
                   sequence_parallel=True, selective_recompute=True, distributed_optimizer=True, zero=False,
                   context_parallel=True, uneven_pipeline=False, interleave_min_pp=2,
                   moe_dispatcher=MoeDispatcher.ALLGATHER)
    args = _MC08 + "training/arguments.py "
    return Release(
        fw, FrameworkFamily.MEGATRON_CORE, "megatron-core-0.8.0", "2024-08-12",
        "ML@core_v0.8.0 (baf94af, 2024-08-12) with its flag defaults, as its own GPT-3 example "
        "(examples/gpt3/train_gpt3_175b_distributed.sh) runs it",
        {"attention": args + "L668 --transformer-impl default transformer_engine; core/models/gpt/gpt_layer_specs.py "
                      "L60 TEDotProductAttention (Transformer Engine's fused/flash kernels)",
         "dropout": args + "L947-950: --attention-dropout and --hidden-dropout default 0.1",
         "overlap_grad_reduce": args + "L1413 --overlap-grad-reduce default False",
         "overlap_param_gather": args + "L1429 --overlap-param-gather default False",
         "overlap_tp_comm": args + "L1053 --tp-comm-overlap (store_true: off)",
         "overlap_tp_wgrad": _MC08 + "core/tensor_parallel/layers.py L451-485: async all-gather, all-reduce and "
                             "reduce-scatter in the column-parallel backward",
         "fused_grad_accumulation": args + "L1163 --no-gradient-accumulation-fusion (on by default)",
         "overlap_p2p": args + "L1405 --no-overlap-p2p-communication (on by default); core/pipeline_parallel/"
                        "schedules.py L853-1097 applies it in the interleaved schedule (the 1F1B schedule's "
                        "sends block: Framework.overlaps_p2p)",
         "zero3_prefetch": _NO_ZERO3,
         "pp_scatter_gather": args + "L1433 parses --no-scatter-gather-tensors-in-pipeline but megatron/core never "
                              "reads it: whole tensors are sent",
         "sequence_parallel": args + "L1161 --sequence-parallel",
         "selective_recompute": args + "L1008 --recompute-granularity selective",
         "distributed_optimizer": args + "L1453 --use-distributed-optimizer",
         "zero": "Megatron-Core shards with its distributed optimizer, not DeepSpeed's ZeRO stages",
         "context_parallel": args + "L1455 --context-parallel-size", "cp_rotate": TE_RING, "cp_in_graph": CP_NOT_IN_GRAPH,
         "pipeline_split": _MEGATRON_SPLIT,
         "uneven_pipeline": args + "L264-267 (interleaved: layers must divide the stages and chunks); core/transformer/"
                            "transformer_block.py L48-77 builds num_layers // pp layers per stage",
         "interleave_min_pp": args + "L255-262: with --overlap-p2p-communication (the default) pipeline size > 1, "
                              "without it > 2",
         "moe_dispatcher": args + "L1748-1750 --moe-token-dispatcher-type default allgather",
         "overlap_moe_a2a": "not in this release: --overlap-moe-expert-parallel-comm arrived in core_v0.14.0",
         "moe_fp8_padding": "not in this release: TEGroupedMLP's Fp8Padding arrived in core_v0.10.0 "
                            "(megatron/core/transformer/moe/experts.py L638)",
         "moe_combine_saves": "ML@core_v0.8.0 " + COMBINE_PROBS,
         "loss_copy": "ML@core_v0.8.0 " + UNFUSED_CE,
         "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": "not in this release: forced balancing (RandomSTE) arrived by core_v0.14.0 "
                               "(megatron/core/transformer/moe/moe_utils.py L874)",
         "fp8_scaling": "Transformer Engine 1.x has one FP8 recipe, DelayedScaling (transformer_engine/common/recipe/"
                        "__init__.py, TE v1.8); --fp8-recipe arrived later",
         "fp8_params": "not in this release: --fp8-param-gather arrived later (core_v0.14.0 arguments.py L1248)",
         "fp8_training": args + "L648 --fp8-format (e4m3, hybrid), Transformer Engine FP8",
         "reshard_after_forward": _NO_ZERO3, "defer_grad_sync": _NO_ZERO3, "pp_defer_grad_sync": _NO_ZERO3, "pp_reduce_at_step_end": _NO_ZERO3, "replica_reduce_every_micro_batch": _NO_HSDP, "offload_layers": _NO_OFFLOAD, "grads_fp32": _FP32_GRADS,
         "tp_rs": _TE_UB_DEFAULT,
         "fp32_master": _FP32_MASTER,
         "selective_ac": _MC08 + "core/transformer/attention.py L103, L322-323: selective recompute checkpoints the "
                         "core attention only (_checkpointed_attention_forward)",
         "torch_compile": _EAGER, "fp8_precompute_scales": _NO_TORCHAO, "fp8_recompute_weight_bwd": _NO_TORCHAO,
         "tp_gather_quantized": NO_TE_GATHER, "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS, **GENERIC_EAGER, "norm_quantize": NO_TE_NORM, **NOT_DEEPSPEED,
         **megatron_ce(_MC08 + "core/tensor_parallel/cross_entropy.py L27-113 (--cross-entropy-loss-fusion off)")},
        {"micro_batch": Setting(1, args + "L979 --micro-batch-size has no default; the release's "
                                "examples/gpt3/train_gpt3_175b_distributed.sh sets 1"),
         "v": Setting(1, args + "L1403 --num-layers-per-virtual-pipeline-stage default None = no interleaving"),
         "recompute": Setting("none", args + "L1008 --recompute-granularity default None"),
         "sp": Setting(False, args + "L1161 --sequence-parallel (store_true: off)"),
         "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
         "cp": Setting(1, args + "L1455 --context-parallel-size default 1"),
         "distributed_optimizer": Setting(False, args + "L1453 --use-distributed-optimizer (store_true: off)"),
         "etp": Setting(0, _ETP_NONE),
         "account_for_embedding": Setting(False, _SPLIT_NONE), "account_for_loss": Setting(False, _SPLIT_NONE)},
        # every flag of core_flags._MC_FLAGS that core_v0.8.0's arguments.py has (--moe-token-dispatcher-type
        # among them, L1748-1750), as the later core presets take theirs
        megatron_core_flags(8))


def fsdp_pytorch_2_3(name: str) -> Release:
    fw = Framework(name, AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True,
                   overlap_param_gather=True, overlap_tp_comm=False, overlap_tp_wgrad=False,
                   fused_grad_accumulation=False, overlap_p2p=False, zero3_prefetch=True, pp_scatter_gather=False,
                   sequence_parallel=False, selective_recompute=True, distributed_optimizer=False, zero=True,
                   context_parallel=False, uneven_pipeline=False, interleave_min_pp=2)
    fsdp = "pytorch v2.3.0 torch/distributed/fsdp/fully_sharded_data_parallel.py "
    notes = "PyTorch docs notes/fsdp.rst 'FSDP Prefetch Nuances' (2024-01-21)"
    none = "FSDP has no {} of its own"
    return Release(
        fw, FrameworkFamily.FSDP, "pytorch-2.3", "2024-04-24",
        "PyTorch 2.3.0 FullyShardedDataParallel (FSDP1) with its constructor defaults",
        {"attention": "FSDP wraps the user's model; capsim assumes torch's scaled_dot_product_attention, whose "
                      "flash backend PyTorch 2.x picks for fp16/bf16 on sm80+",
         "dropout": "FSDP adds none; Llama-style decoders have none",
         "overlap_grad_reduce": "each unit's gradients are reduce-scattered from a separate stream while backward "
                                "goes on (Zhao et al. 2023, 'PyTorch FSDP', Fig. 5)",
         "overlap_param_gather": notes + ": each unit's all-gather is issued from a separate stream and overlaps "
                                 "the previous unit's compute (implicit forward prefetching, always on)",
         "overlap_tp_comm": none.format("tensor parallelism"),
         "overlap_tp_wgrad": none.format("tensor parallelism"),
         "fused_grad_accumulation": "autograd's AccumulateGrad adds each micro-batch's gradient into .grad in its "
                                    "own kernel",
         "overlap_p2p": none.format("pipeline schedule"),
         "zero3_prefetch": fsdp + "__init__ backward_prefetch=BackwardPrefetch.BACKWARD_PRE; forward: " + notes,
         "pp_scatter_gather": none.format("pipeline schedule"),
         "sequence_parallel": none.format("sequence parallelism"),
         "selective_recompute": "torch.distributed.algorithms._checkpoint.checkpoint_wrapper."
                                "apply_activation_checkpointing wraps whichever submodules the user picks",
         "distributed_optimizer": "Megatron's distributed optimizer is not FSDP's (FSDP shards by ShardingStrategy)",
         "zero": fsdp + "ShardingStrategy FULL_SHARD (ZeRO-3), SHARD_GRAD_OP (ZeRO-2), NO_SHARD",
         "context_parallel": none.format("context parallelism"), "cp_rotate": none.format("context parallelism"), "cp_in_graph": CP_NOT_IN_GRAPH,
         "pipeline_split": _MEGATRON_SPLIT,
         "uneven_pipeline": none.format("pipeline schedule"),
         "interleave_min_pp": none.format("pipeline schedule") + " (the field's generic value)",
         "moe_dispatcher": none.format("MoE token dispatcher") + " (the field's generic value)",
         "overlap_moe_a2a": none.format("MoE token dispatcher"),
         "moe_fp8_padding": none.format("grouped-expert FP8 padding"),
         "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": none.format("forced MoE load balancing"),
         "moe_combine_saves": none.format("MoE layer") + "; a model's weighted sum of its k expert outputs keeps "
                              "them for the gradient of the weights (the field's generic value)",
         "loss_copy": "FSDP adds no loss kernel; the usual torch cross_entropy on fp32-upcast logits keeps "
                                "that copy (the field's generic value)",
         "fp8_scaling": "FSDP adds no FP8; a run in FP8 brings Transformer Engine, whose default recipe is "
                        "DelayedScaling (TE v1.8 transformer_engine/common/recipe/__init__.py)",
         "fp8_params": "FSDP1 gathers the parameters in their own (16-bit) format",
         "fp8_training": "FSDP1 adds no FP8 but shards a model whose Linear layers may be Transformer Engine's; "
                         "such a run is priced as TE FP8 (see fp8_scaling; the field's generic value)",
         "reshard_after_forward": fsdp + "ShardingStrategy.FULL_SHARD frees each unit's parameters after its "
                                  "forward and re-gathers them for its backward",
         "defer_grad_sync": fsdp + "reduce-scatters after every backward unless the loop enters no_sync()",
         "pp_defer_grad_sync": "no torch.distributed.pipelining stage over FSDP1 in this code (the field's generic value)",
         "pp_reduce_at_step_end": "no torch.distributed.pipelining stage over FSDP1 in this code (the field's generic "
                                  "value)",
         "replica_reduce_every_micro_batch": "pytorch v2.3.0 torch/distributed/fsdp/_runtime_utils.py _reduce_grad: "
                                             "under ShardingStrategy.HYBRID_SHARD the reduce-scatter output is "
                                             "all-reduced over the inter-node process group in the same "
                                             "post-backward hook",
         "offload_layers": "FSDP1's CPUOffload moves parameters, not activations (the field's generic value)",
         "tp_rs": _NO_UB,
         "grads_fp32": "FSDP1 MixedPrecision(reduce_dtype=float32) as the usual mixed-precision setup (the field's "
                       "generic value)",
         "fp32_master": "FSDP1 keeps the sharded parameters in fp32 with MixedPrecision(param_dtype=bfloat16)",
         "selective_ac": "FSDP has no selective policy of its own (the user picks what checkpoint_wrapper wraps); "
                         "the field's generic value",
         "torch_compile": "FSDP compiles nothing; a run's torch.compile is the training script's (off: the field's "
                          "generic value)",
         "fp8_precompute_scales": "FSDP1 has no FP8 all-gather (the field's generic value)",
         "tp_gather_quantized": NO_TE_GATHER, "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS, **GENERIC_EAGER, "norm_quantize": NO_TE_NORM,
         "fp8_recompute_weight_bwd": "FSDP1 has no FP8 all-gather (the field's generic value)", **NOT_DEEPSPEED},
        {"micro_batch": Setting(PER_REPLICA, "FSDP runs one forward and backward per optimizer step unless the "
                                "training loop accumulates: the whole per-replica batch"),
         "v": Setting(1, none.format("pipeline schedule")),
         "recompute": Setting("none", "activation checkpointing is opt-in (apply_activation_checkpointing)"),
         "sp": Setting(False, none.format("sequence parallelism")),
         "zero_stage": Setting(3, fsdp + "__init__ sharding_strategy=None means ShardingStrategy.FULL_SHARD"),
         "cp": Setting(1, none.format("context parallelism")),
         "distributed_optimizer": Setting(False, "not FSDP's"),
         "etp": Setting(0, _ETP_NONE),
         "account_for_embedding": Setting(False, _SPLIT_NONE), "account_for_loss": Setting(False, _SPLIT_NONE)},
        {})


__all__ = ["fsdp_pytorch_2_3", "megatron_core_0_8", "megatron_lm_2021", "megatron_lm_2022"]
