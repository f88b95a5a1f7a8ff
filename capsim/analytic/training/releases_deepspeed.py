"""DeepSpeed presets: the ZeRO engine of microsoft/DeepSpeed alone (``deepspeed-0.14``, a user's model under
``deepspeed.initialize``), and Megatron-DeepSpeed as BigScience trained BLOOM-176B with it (``megatron-deepspeed-2022``:
Megatron's tensor parallelism, DeepSpeed's pipeline engine and its bf16 ZeRO-1 optimizer).

Both price ZeRO through capsim's one ZeRO/FSDP path (``stages.py``, ``sharded.py``, ``comms.py``); two Framework
fields say where DeepSpeed differs from FSDP and Megatron: ZeRO-1/2 all-reduce the gradients whole and keep their
shard (``zero_grad_allreduce``), and gradient reduction overlaps the backward only at ZeRO-3 unless the run sets
``overlap_comm`` (``overlap_grad_reduce_min_zero``). ZeRO-3 reduce-scatters and all-gathers as FSDP does.

Citations: ``DS@<tag or commit>`` is github.com/microsoft/DeepSpeed there; ``MDS@3ab0ad18`` is
github.com/bigscience-workshop/Megatron-DeepSpeed at 3ab0ad18 (2022-06-28, the fork's last commit before BLOOM's first
epoch ended on 2022-06-28, bigscience-workshop/bigscience train/tr11-176B-ml/README.md). Line numbers are in that
file there.

Priced at block granularity: ``stage3_max_reuse_distance`` (1e9 elements) keeps the last blocks' parameters gathered
from forward to backward (``zero3_reuse_elements``), the 5e8-element reduce buckets expose the last bucket's reduce
whole (``grad_bucket_elements``). Not priced (DeepSpeed behaviours capsim's ZeRO path does not model, stated so that
no row is priced as if they were): ZeRO-3 gathers per ``nn.Module`` with a 5e7-element prefetch window (priced per
transformer block, as FSDP); the embedding kept gathered when the whole model is within the reuse distance; CPU/NVMe
offload (no flag: an offloading run cannot be priced by these presets).
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
    ONE_SCHEDULE,
    PER_REPLICA,
    SPREAD_EXPERTS,
    Flag,
    Framework,
    FrameworkFamily,
    Release,
    Reshard,
    Setting,
)

# The DeepSpeed pipeline engine runs one schedule (TrainSchedule, 1F1B): no pipeline depth interleaves.
NO_INTERLEAVING = 1 << 30

_Z = "DS@v0.14.0 deepspeed/runtime/zero/"
_CFG = _Z + "config.py"
_S12 = _Z + "stage_1_and_2.py"
_S3 = _Z + "stage3.py"
_ENG = "DS@v0.14.0 deepspeed/runtime/engine.py"
_OVERLAP = (_CFG + " L130 overlap_comm: None, L306-310 overlap_comm_valid: None -> stage == ZeroStageEnum.weights "
            "(True at ZeRO-3 only)")
_GENERIC = "DeepSpeed wraps the user's model and adds no {} (the field's generic value)"
_NO_MOE = "DeepSpeed-MoE is not priced by this preset; the field's generic value"
_NO_TORCHAO = "a torchao FP8 option; DeepSpeed has none (the field's generic value)"


def _common_cite(**overrides: str) -> dict[str, str]:
    """The citations both presets share; ``overrides`` replace those a preset states otherwise."""
    return {
        "overlap_tp_comm": "no TP communication overlap in DeepSpeed or Megatron-DeepSpeed's mpu",
        "zero3_prefetch": (_Z + "partitioned_param_coordinator.py L261-355 fetch_sub_module: with "
                           "stage3_prefetch_bucket_size > 0 (" + _CFG + " L194 default 5e7 elements) the next "
                           "modules of the traced order are all-gathered while the current one computes"),
        "distributed_optimizer": "Megatron's distributed optimizer is not DeepSpeed's (DeepSpeed shards by ZeRO stage)",
        "context_parallel": "DeepSpeed-Ulysses (all-to-all sequence parallelism) is not capsim's ring context "
                            "parallelism; not offered by these presets",
        "cp_rotate": "no ring context parallelism in these presets (the field's generic value)",
        "cp_in_graph": CP_NOT_IN_GRAPH,
        "interleave_min_pp": "DS pipeline engine: deepspeed/runtime/pipe/schedule.py TrainSchedule (1F1B) is its only "
                             "training schedule; no interleaved stages",
        "pipeline_split": "DeepSpeed PipelineModule partitions by partition_method (deepspeed/runtime/pipe/module.py); "
                          "a split that does not divide is priced only where the row states it",
        "moe_dispatcher": _NO_MOE, "overlap_moe_a2a": _NO_MOE, "moe_fp8_padding": _NO_MOE,
        "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": _NO_MOE, "moe_combine_saves": _NO_MOE,
        "fp8_scaling": "no FP8 in these presets (a run in FP8 brings Transformer Engine, whose default recipe is "
                       "DelayedScaling; the field's generic value)",
        "fp8_params": "DeepSpeed gathers the parameters in their 16-bit format",
        "fp8_training": "DeepSpeed adds no FP8 but wraps a user's model, whose Linear layers may be Transformer "
                        "Engine's; such a run is priced as TE FP8 (see fp8_scaling; the field's generic value)",
        "reshard_after_forward": (_Z + "partitioned_param_coordinator.py L395 release_sub_module, L487-517 "
                                  "__params_to_release: each module's parameters are freed after its forward and "
                                  "re-gathered for its backward (the last blocks within stage3_max_reuse_distance, "
                                  "1e9 elements, stay gathered: not priced)"),
        "defer_grad_sync": _S3 + " L1213-1221 reduce_independent_p_g_buckets_and_remove_grads runs from every "
                                 "backward's hooks: ZeRO-3 reduce-scatters every micro-batch",
        "pp_defer_grad_sync": "DeepSpeed's PipelineEngine is not torch.distributed.pipelining (the field's generic "
                              "value)",
        "pp_reduce_at_step_end": "DeepSpeed's PipelineEngine is not torch.distributed.pipelining (the field's generic "
                                 "value)",
        "tp_rs": "no userbuffers TP overlap (the field's generic value)",
        "fp32_master": "DeepSpeed's mixed-precision optimizers keep fp32 master parameters and fp32 Adam moments",
        "torch_compile": "eager (the engine's compile() is opt-in; the field's generic value)",
        "fp8_precompute_scales": _NO_TORCHAO, "fp8_recompute_weight_bwd": _NO_TORCHAO,
        "tp_gather_quantized": NO_TE_GATHER, "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS, **GENERIC_EAGER, "norm_quantize": NO_TE_NORM,
        "selective_ac": "no selective policy (the field's generic value)",
        "replica_reduce_every_micro_batch": "DeepSpeed's hierarchical sharding (MiCS mics_shard_size, ZeRO++ "
                                            "zero_hpz_partition_size) is not described by these presets (the "
                                            "field's generic value)",
        "offload_layers": "no Transformer Engine activation offloading: DeepSpeed's own cpu_checkpointing "
                          "(deepspeed/runtime/activation_checkpointing/config.py) is off by default and not priced",
        **overrides}


def deepspeed_0_14(name: str) -> Release:
    """DeepSpeed 0.14.0 (2024-03-07) to 0.16.4 (2025-02-20): the ZeRO engine over a user's model, its
    DeepSpeedZeroConfig defaults (unchanged over the range: zero/config.py, stage_1_and_2.py, stage3.py)."""
    fw = Framework(name, AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=False, fused_grad_accumulation=False, overlap_p2p=False,
                   zero3_prefetch=True, pp_scatter_gather=False, sequence_parallel=False, selective_recompute=False,
                   distributed_optimizer=False, zero=True, context_parallel=False, uneven_pipeline=False,
                   interleave_min_pp=NO_INTERLEAVING, reshard_after_forward=Reshard.ALWAYS, grads_fp32=False,
                   zero_grad_allreduce=True, overlap_grad_reduce_min_zero=3, zero3_reuse_elements=1e9,
                   grad_bucket_elements=5e8)
    cite = _common_cite(
        attention="DeepSpeed wraps the user's model; capsim assumes torch scaled_dot_product_attention (flash on "
                  "sm80+ for 16-bit inputs), as for FSDP",
        dropout="the Llama-style models of ZeRO runs have none (the field's generic value)",
        overlap_grad_reduce=_S12 + " L516-517: with overlap_comm the gradient hooks reduce each bucket on the "
                            "reduction stream during the backward (L1033-1040 average_tensor); " + _OVERLAP,
        overlap_grad_reduce_min_zero=_OVERLAP + "; without it ZeRO-1 reduces after the last backward (" + _ENG +
                                     " L1913-1930 allreduce_gradients -> reduce_gradients) and ZeRO-2 inside the "
                                     "backward on the compute stream (" + _S12 + " L1033-1040)",
        overlap_param_gather=_S12 + " L1811-1914 step: the updated 16-bit partitions are all-gathered inside the "
                             "optimizer step (all_gather_dp_groups), before the next forward starts",
        overlap_tp_wgrad=_GENERIC.format("tensor parallelism"),
        fused_grad_accumulation="autograd's AccumulateGrad adds each micro-batch's gradient into .grad in its own "
                                "kernel (ZeRO-2/3 then copy it into the reduce bucket)",
        overlap_p2p=_GENERIC.format("pipeline schedule to a ZeRO run (the pipeline engine refuses ZeRO-2/3)"),
        pp_scatter_gather=_GENERIC.format("pipeline schedule to a ZeRO run"),
        sequence_parallel=_GENERIC.format("Megatron sequence parallelism"),
        selective_recompute="deepspeed.checkpointing.checkpoint (DS@v0.14.0 deepspeed/runtime/activation_"
                            "checkpointing/checkpointing.py L989) replays whole functions: no selective policy",
        zero=_CFG + " L87 stage 0-3; " + _S12 + " (stages 1-2), " + _S3 + " (stage 3)",
        uneven_pipeline=_GENERIC.format("pipeline schedule to a ZeRO run"),
        loss_copy="the user's torch cross_entropy on fp32-upcast logits keeps that copy (the field's generic value)",
        grads_fp32=_ENG + " L891-905 get_data_types: with ZeRO the gradients accumulate in the model's dtype, and "
                   "L826-837 communication_data_type reduces them in it (fp16/bf16)",
        zero3_reuse_elements=_CFG + " L223 stage3_max_reuse_distance 1e9; " + _Z + "partitioned_param_coordinator.py "
                             "L487-517 __params_to_release keeps a module's parameters when the trace uses them again "
                             "within that many elements (the last blocks of the forward)",
        grad_bucket_elements=_CFG + " L105 reduce_bucket_size 5e8 elements; " + _S3 + " L1213-1221 reduces when the "
                             "bucket would overflow (" + _S12 + " likewise for ZeRO-2); the last bucket after the "
                             "backward's end",
        zero_grad_allreduce=_CFG + " L100 reduce_scatter True, L111 use_multi_rank_bucket_allreduce True (since "
                            "DS 2afa1c7, 2023-11-21, #4695): " + _S12 + " L1112-1130 average_tensor -> L1005 "
                            "allreduce_and_scatter all-reduces each 5e8-element bucket (L105 reduce_bucket_size) "
                            "and every rank keeps its slice; ZeRO-3 reduce-scatters (" + _S3 + " L1327-1343 "
                            "reduce_scatter_coalesced)")
    defaults = {
        "micro_batch": Setting(PER_REPLICA, "DS@v0.14.0 deepspeed/runtime/config.py L931 _set_batch_related_"
                               "parameters: train_batch_size alone means gradient_accumulation_steps 1, the whole "
                               "per-replica batch"),
        "v": Setting(1, "no interleaved schedule"),
        "recompute": Setting("none", "activation checkpointing is opt-in (the model or deepspeed.checkpointing)"),
        "sp": Setting(False, _GENERIC.format("sequence parallelism")),
        "zero_stage": Setting(0, _CFG + " L87 stage: ZeroStageEnum = 0 (a ZeRO run states its stage)"),
        "cp": Setting(1, "no ring context parallelism"),
        "distributed_optimizer": Setting(False, "not DeepSpeed's"),
        "etp": Setting(0, "0 means the routed experts split like the attention (the field's generic value)"),
        "account_for_embedding": Setting(False, "no pipeline"), "account_for_loss": Setting(False, "no pipeline")}
    flags = {"--zero_optimization.overlap_comm": Flag(
        "overlap_grad_reduce_min_zero", {"true": 0, "false": 4}, _OVERLAP + "; a run's stated overlap_comm holds at "
        "every stage (false: never; 4 is above every stage)")}
    return Release(fw, FrameworkFamily.DEEPSPEED, "deepspeed-0.14.0", "2024-03-07",
                   "microsoft/DeepSpeed v0.14.0 (2024-03-07) ZeRO defaults, unchanged through v0.16.4 (2025-02-20)",
                   cite, defaults, flags, covers=("deepspeed-0.14.0", "deepspeed-0.16.4"))


_Z10 = "DS@v0.10.0 deepspeed/runtime/zero/"
_OVERLAP10 = (_Z10 + "config.py L120 overlap_comm: None, L278-284 overlap_comm_valid: None -> stage == "
              "ZeroStageEnum.weights (True at ZeRO-3 only)")


def deepspeed_0_10(name: str) -> Release:
    """DeepSpeed 0.10.0 (2023-07-17), the release that shipped ZeRO++ (DS d18aa2c, #3784, 2023-06-22; Wang et al.
    2023, arXiv 2306.10209) and its tutorial, covering 0.8.2 (2023-03-07) to 0.10.3 (2023-09-11): ZeRO-3 as the
    ZeRO++ paper's baseline runs it. The ZeRO defaults of ``deepspeed-0.14`` (zero/config.py stage, reduce_scatter,
    reduce_bucket_size, overlap_comm, stage3 prefetch bucket and reuse distance are the same at v0.8.2, v0.9.0,
    v0.10.0, v0.10.3 and v0.14.0) but ZeRO-1/2 reduce each rank's slice of a bucket to its owner instead of
    all-reducing the bucket (use_multi_rank_bucket_allreduce arrived 2023-11-21, DS 2afa1c7, #4695). ZeRO++ itself
    (zero_quantized_weights, zero_hpz_partition_size, zero_quantized_gradients: config.py L254-263, all off by
    default) is not priced: no flag takes it, so a ZeRO++ run is refused rather than priced as ZeRO-3."""
    base = deepspeed_0_14(name)
    fw = base.framework.with_(zero_grad_allreduce=False)
    s12, s3, ppc = _Z10 + "stage_1_and_2.py", _Z10 + "stage3.py", _Z10 + "partitioned_param_coordinator.py"
    cite = {
        **base.cite,
        "zero": _Z10 + "config.py L84 stage 0-3; " + s12 + " (stages 1-2), " + s3 + " (stage 3)",
        "overlap_grad_reduce": s12 + " L470-471: with overlap_comm (or ZeRO-2) the gradient hooks reduce each bucket "
                               "during the backward (L904-994 average_tensor); " + _OVERLAP10,
        "overlap_grad_reduce_min_zero": _OVERLAP10 + "; without it ZeRO-1 reduces after the last backward (" + s12 +
                                        " L635-652 reduce_gradients) and ZeRO-2 from its hooks (L470-471) on the "
                                        "compute stream",
        "overlap_param_gather": s12 + " L1646-1777 step: the updated 16-bit partitions are all-gathered inside the "
                                "optimizer step (L1751 all_gather_dp_groups), before the next forward starts",
        "zero3_prefetch": ppc + " L250-377 fetch_sub_module: with stage3_prefetch_bucket_size > 0 (" + _Z10 +
                          "config.py L184 default 5e7 elements; L339-371) the next modules of the traced order are "
                          "all-gathered while the current one computes",
        "zero3_reuse_elements": _Z10 + "config.py L213 stage3_max_reuse_distance 1e9; " + ppc + " L448-477 "
                                "__params_to_release keeps a module's parameters when the trace uses them again "
                                "within that many elements (the last blocks of the forward)",
        "grad_bucket_elements": _Z10 + "config.py L102 reduce_bucket_size 5e8 elements; " + s3 + " L1068-1076 reduces "
                                "when the bucket would overflow (L1102 __reduce_and_partition_ipg_grads, L1195 "
                                "reduce_scatter_coalesced); the last bucket after the backward's end",
        "defer_grad_sync": s3 + " L1025-1046 the gradient hooks run reduce_ready_partitions_and_remove_grads (L1330) "
                           "from every backward: ZeRO-3 reduce-scatters every micro-batch",
        "grads_fp32": "DS@v0.10.0 deepspeed/runtime/engine.py L855-870 get_data_types: with ZeRO the gradients "
                      "accumulate in the model's dtype, and L797-808 communication_data_type reduces them in it "
                      "(fp16/bf16)",
        "zero_grad_allreduce": _Z10 + "config.py L97 reduce_scatter True: " + s12 + " L904-994 average_tensor "
                               "reduces each rank's slice of the bucket to its owner (L990 dist.reduce, async): a "
                               "reduce-scatter's volume, no all-reduce (the multi-rank bucket all-reduce is later, "
                               "DS 2afa1c7, 2023-11-21); ZeRO-3 reduce-scatters (" + s3 + " L1195 without qgZ)",
    }
    return Release(fw, FrameworkFamily.DEEPSPEED, "deepspeed-0.10.0", "2023-07-17",
                   "microsoft/DeepSpeed v0.10.0 (2023-07-17) ZeRO defaults, unchanged from v0.8.2 (2023-03-07) through "
                   "v0.10.3 (2023-09-11)", cite, base.defaults, base.flags,
                   covers=("deepspeed-0.8.2", "deepspeed-0.10.3"))


_MDS = "MDS@3ab0ad18 megatron/"
_BF16 = "DS@56c5223 deepspeed/runtime/"  # 2022-04-19 "bf16+pipeline parallelism (#1801)"


def megatron_deepspeed_2022(name: str) -> Release:
    """Megatron-DeepSpeed as BigScience trained BLOOM-176B (bigscience-workshop/Megatron-DeepSpeed at 3ab0ad18 with
    DeepSpeed's bf16 pipeline code of 56c5223): Megatron tensor parallelism, the DeepSpeed pipeline engine (1F1B,
    blocking sends), and BF16_Optimizer, DeepSpeed's bf16 ZeRO-1: fp32 gradients accumulated every micro-batch,
    all-reduced after the pipeline flush, the updated bf16 shards all-gathered in the step."""
    fw = Framework(name, AttentionImpl.UNFUSED, dropout=True, overlap_grad_reduce=False, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=False, fused_grad_accumulation=False, overlap_p2p=False,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=False, selective_recompute=False,
                   distributed_optimizer=False, zero=True, context_parallel=False, fp8_training=False, uneven_pipeline=True,
                   interleave_min_pp=NO_INTERLEAVING, reshard_after_forward=Reshard.ALWAYS, grads_fp32=True,
                   zero_grad_allreduce=True, overlap_grad_reduce_min_zero=0)
    reduce = _BF16 + "pipe/engine.py L250-267 _exec_reduce_grads -> _bf16_reduce_grads"
    cite = _common_cite(
        attention=_MDS + "model/transformer.py L179 FusedScaleMaskSoftmax, L306-322 torch.baddbmm (ALiBi bias) "
                  "then bmm: no fused attention kernel",
        dropout=_MDS + "arguments.py L456-459 --attention-dropout and --hidden-dropout default 0.1 (BLOOM's "
                "launcher sets neither)",
        overlap_grad_reduce=reduce + ": buffered_allreduce_fallback after the pipeline flush (ReduceGrads), "
                            "on the compute stream",
        overlap_grad_reduce_min_zero="no overlap at any stage (overlap_grad_reduce False), so the stage bound is "
                                     "the field's generic value",
        overlap_param_gather=_BF16 + "bf16_optimizer.py L337-366 step: all_gather_dp_groups of the updated bf16 "
                             "partitions inside the step (L359-362)",
        overlap_tp_wgrad=_MDS + "mpu/layers.py L331-337, L428-437: copy_to/reduce_from_tensor_model_parallel_region "
                         "all-reduce synchronously; no async all-reduce in the file",
        fused_grad_accumulation=_BF16 + "pipe/engine.py L699-760 _exec_backward_pass -> bf16_optimizer.py L383-400 "
                                "update_hp_grads: each micro-batch's bf16 gradients added into the fp32 buffer in "
                                "a separate pass (no gradient-accumulation fusion in MDS mpu/layers.py)",
        overlap_p2p=_BF16 + "pipe/p2p.py L48-66 send: async_op must be False, dist.send blocks",
        pp_scatter_gather=_BF16 + "pipe/engine.py L935-960 _exec_send_activations: every TP rank sends its whole activation "
                          "(no scatter/gather over the TP ranks)",
        sequence_parallel="no sequence parallelism in this Megatron fork (Megatron-LM added it 2022-05-20)",
        selective_recompute=_MDS + "arguments.py L508-516 --checkpoint-activations with --checkpoint-num-layers 1: "
                            "whole layers only",
        zero=_BF16 + "bf16_optimizer.py: BF16_Optimizer shards the fp32 optimizer state over the data-parallel ranks "
             "(its own ZeRO-1, run with ds_config stage 0: bigscience train/tr11-176B-ml/README.md 'Deepspeed "
             "config'); fp16 ZeRO-1 uses stage_1_and_2 (not this preset's gradient path)",
        uneven_pipeline=_MDS + "model/gpt_model.py L305-320: PipelineModule partition_method (default "
                        "'type:transformer') balances any layer count",
        loss_copy=_MDS + "model/gpt_model.py L163-168 CrossEntropy: vocab_parallel_cross_entropy(output.float()), "
                  "which keeps its fp32 exp_logits",
        grads_fp32=_BF16 + "bf16_optimizer.py L383-403: fp32 gradient buffers, the ones all-reduced "
                   "(get_grads_for_reduction)",
        zero_grad_allreduce=reduce + " all-reduces the whole fp32 gradient buffer (MEMORY_OPT_ALLREDUCE_SIZE "
                            "buckets); each rank updates its shard (bf16_optimizer.py L337-366)",
        fp8_params="no FP8 in this code (the field's generic value)",
        fp8_training="not in this code: parse_args adds no Transformer Engine or fp8 argument group (MDS@007719ad "
                     "megatron/arguments.py parse_args, the fork's stored head); Megatron-LM's FP8 arrived 2022-12-21",
        zero3_reuse_elements="no ZeRO-3 under the pipeline engine (pipe/engine.py L72); the field's generic value",
        grad_bucket_elements="ZeRO-1 reduces once after the flush (no per-block ZeRO-2/3 reduce); the field's generic "
                             "value",
        zero3_prefetch=_BF16 + "pipe/engine.py L72: 'ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism': "
                       "no ZeRO-3, nothing to prefetch")
    none = Setting(False, _MDS + "arguments.py L574 --pp-partition-method default None -> 'type:transformer' "
                   "(model/gpt_model.py L311-314): only transformer layers are balanced")
    defaults = {
        "micro_batch": Setting(1, _MDS + "arguments.py L482 --micro-batch-size has no default; the fork's run_bf16.sh "
                               "L50 sets MICRO_BATCH=1"),
        "v": Setting(1, "the pipeline engine has no interleaved schedule"),
        "recompute": Setting("none", _MDS + "arguments.py L508 --checkpoint-activations (store_true: off)"),
        "sp": Setting(False, "no sequence parallelism in this code"),
        "zero_stage": Setting(0, "ds_config zero_optimization.stage default 0; a bf16 run's BF16_Optimizer is "
                              "ZeRO-1 (rows state zero_stage 1)"),
        "cp": Setting(1, "no context parallelism in this code"),
        "distributed_optimizer": Setting(False, "not in this code"),
        "etp": Setting(0, "no MoE priced (the field's generic value)"),
        "account_for_embedding": none, "account_for_loss": none}
    split = _MDS + "model/gpt_model.py L305-320: 'type:transformer|embedding' also counts the first and the last " \
                   "(tied LM head) embedding as layers"
    flags = {"--pp-partition-method": Flag(
        "layout", {"type:transformer|embedding": {"account_for_embedding": True, "account_for_loss": True},
                   "type:transformer": {"account_for_embedding": False, "account_for_loss": False}}, split)}
    return Release(fw, FrameworkFamily.DEEPSPEED, "megatron-deepspeed-2022", "2022-06-28",
                   "bigscience-workshop/Megatron-DeepSpeed 3ab0ad18 (2022-06-28) with microsoft/DeepSpeed 56c5223 "
                   "(2022-04-19, bf16 + pipeline, BF16_Optimizer)", cite, defaults, flags)


__all__ = ["NO_INTERLEAVING", "deepspeed_0_10", "deepspeed_0_14", "megatron_deepspeed_2022"]
