"""PyTorch FSDP2 releases' common parts (the flags, Framework, citations and layout defaults NeMo AutoModel and
torchtitan share) and NeMo AutoModel 2025-10. Each release is a :class:`Release` as in ``framework.py``; citations as
in ``releases_current.py`` (``AM@<commit>`` github.com/NVIDIA-NeMo/Automodel, ``TT@b5bcd76`` github.com/pytorch/
torchtitan).
"""

from __future__ import annotations

from capsim.analytic.eager import YarnRope
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.release import (
    CP_NOT_IN_GRAPH,
    FLEX_DEEPEP,
    FP8_OFFERED,
    FUSED_FORMS,
    FUSED_POINTWISE,
    GENERIC_EAGER,
    KV_OWN_HEADS,
    NO_TE_NORM,
    NOT_DEEPSPEED,
    ONE_SCHEDULE,
    PER_REPLICA,
    SPREAD_EXPERTS,
    CpRotate,
    Flag,
    Framework,
    FrameworkFamily,
    LossCopy,
    MoeDispatcher,
    PipelineSplit,
    Release,
    Reshard,
    Setting,
)
from capsim.specs.precision import Fp8Scaling


def fsdp2_flags(where: str) -> dict[str, Flag]:
    """The settings of an FSDP2 run (as NeMo AutoModel's and torchtitan's configs name them) capsim prices."""
    return {
        "--activation-checkpointing": Flag("layout.recompute", {"true": "full", "false": "none"},
                                           where + ": checkpoint_wrapper around every transformer block"),
        "--reshard-after-forward": Flag("reshard_after_forward", {r.value: r for r in Reshard},
                                        where + ": fully_shard(reshard_after_forward=...)"),
        "--enable-fsdp-optimizations": Flag("defer_grad_sync", {"true": True, "false": False},
                                            "AM@2c236e0 nemo_automodel/components/moe/fsdp_mixin.py: no gradient sync "
                                            "and no resharding until the step's last backward"),
        "--enable-deepep": Flag("moe_dispatcher", {"true": MoeDispatcher.FLEX, "false": MoeDispatcher.ALLTOALL},
                                "AM@8d9bfb9 nemo_automodel/components/moe/utils.py BackendConfig.enable_deepep"),
    }


def fake_gate_flag(layers: str) -> Flag:
    """NeMo AutoModel's ``backend.fake_balanced_gate`` (default False: the learned Gate): FakeBalancedGate at its
    default noise 0 gives token t the experts (t k + j) mod E, j < k (``layers`` cites its file and lines), the
    experts sharded in contiguous blocks over the EP ranks (DTensor Shard(0))."""
    return Flag("moe_consecutive_experts", {"true": True, "false": False},
                layers + " FakeBalancedGate.forward: indices = arange(n_tokens * k).view(-1, k) % n_experts")


# torch.distributed.pipelining's stage, before every backward of its FSDP2 module, turns off the gradient reduce-scatter
# and the resharding after backward, and reduce-scatters only after the step's last micro-batch: the stage's gradients
# stay unsharded (in the reduce dtype) across the step (torch 2.13.0 torch/distributed/pipelining/stage.py L844-847
# backward_maybe_with_nosync, L1173-1177 the final post-backward; the same in pytorch 0138610 and in the 2024 form whose
# last_backward branch runs "Manually call post backward for FSDP"); FSDP2 keeps an unsynced gradient in the reduce
# dtype (torch/distributed/fsdp/_fully_shard/_fsdp_param.py FSDPParam.to_accumulated_grad_if_needed), fp32 where the
# release reduces in fp32 (grads_fp32)
_PP_STAGE_NOSYNC = ("torch.distributed.pipelining stage.py backward_maybe_with_nosync: for an FSDPModule every backward "
                    "runs with set_is_last_backward(False), set_reshard_after_backward(False), "
                    "set_requires_gradient_sync(False); the reduce-scatter and reshard run once after the step's last "
                    "micro-batch (torch 2.13.0 stage.py L844-847, L1164-1191; the same setters in the late-2024 form)")
# Until pytorch/pytorch#165106 (2025-10-09, "[PP] move FSDP reduce scatters to end of step": "The reduce scatter compute
# stream sync blocks the other stages from executing their backwards leading to bubbles") the stage ran FSDP's
# post_backward of every parameter group inside its last micro-batch's backward (pytorch#134052, 2024-08-20;
# _root_post_backward_final_callback added by pytorch#144535, 2025-01-10), before the schedule sends that backward's
# input gradient; FSDP2's post_backward makes the compute stream wait for the previous reduce-scatter before issuing
# the next (one input buffer in flight: pytorch#186000; torch 2.13.0 _fsdp_param_group.py L647-658), so the send
# waits for the stage's reduce-scatters. The same code as torch 2.8 ran it: AM@8d9bfb9 nemo_automodel/components/moe/
# fsdp_mixin.py L187-268 (a copy of torch's backward_maybe_with_nosync, L247-268 the FSDPModule branch)
_PP_REDUCE_IN_LAST_BACKWARD = (
    "torch.distributed.pipelining before pytorch#165106 (2025-10-09): the stage's FSDP2 post_backward (its reduce-"
    "scatters, each waited for by the compute stream before the next) runs inside its last micro-batch's backward, "
    "before that backward's input-gradient send (pytorch#134052, 2024-08; #144535, 2025-01; the torch 2.8 code as "
    "AM@8d9bfb9 nemo_automodel/components/moe/fsdp_mixin.py L247-268 copies it): every stage's reduction lies on the "
    "drain (#165106: 'blocks the other stages from executing their backwards')")


def _fsdp2(name: str, reshard: Reshard, dispatcher: MoeDispatcher, master: bool, **changes: object) -> Framework:
    return Framework(name, AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                     overlap_tp_comm=False, overlap_tp_wgrad=False, fused_grad_accumulation=False, overlap_p2p=False,
                     zero3_prefetch=True, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                     distributed_optimizer=False, zero=True, context_parallel=True, uneven_pipeline=True,
                     interleave_min_pp=2, cp_rotate=CpRotate.ALLGATHER, moe_dispatcher=dispatcher, overlap_moe_a2a=False,
                     fp8_scaling=Fp8Scaling.DELAYED, fp8_params=False, reshard_after_forward=reshard,
                     defer_grad_sync=False, pp_defer_grad_sync=True, grads_fp32=master,
                     fp32_master=master).with_(**changes)


# FSDP2 over a 2-D (replicate, shard) mesh all-reduces each reduce-scattered gradient over the replicate dimension
# in the same post-backward, every backward it syncs (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py
# foreach_reduce, all_reduce_group; FSDPModule.set_requires_all_reduce defaults True, pytorch v2.4.0+).
_FSDP2_HSDP = ("FSDP2 HSDP all-reduces each reduce-scattered gradient over the replicate mesh dimension in the same "
               "post-backward (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py foreach_reduce; "
               "FSDPModule.set_requires_all_reduce default True)")


# torch's experimental context parallelism rotates K, V with _cp_options.rotate_method unless the trainer calls
# set_rotate_method: _RotateMethod.ALL_GATHER (pytorch/pytorch#132820, 2024-08: "overlap the communication with the
# first sharded kv computation"; torch/distributed/tensor/experimental/_attention.py _ContextParallelOptions)
_TORCH_CP_ALLGATHER = ("torch/distributed/tensor/experimental/_attention.py _ContextParallelOptions.rotate_method "
                       "default _RotateMethod.ALL_GATHER (pytorch/pytorch#132820): every rank's K, V all-gathered "
                       "once per pass, overlapping only the first step; _templated_ring_attention_backward passes the "
                       "fp32 dK, dV with _RotateMethod.ALL_TO_ALL")


def _fsdp2_cite(where: str, reshard: str, dispatcher: str, attention: str, master: str,
                **overrides: str) -> dict[str, str]:
    """Citations of an FSDP2 release; ``overrides`` replace those a release states otherwise."""
    none = "FSDP2 has no {} of its own"
    return {"attention": attention, "dropout": "the Llama/Qwen model code these runs use has no dropout",
            "replica_reduce_every_micro_batch": _FSDP2_HSDP,
            "offload_layers": "FSDP2's CPUOffloadPolicy moves parameters, not activations; none of these runs "
                              "offloads activations (the field's generic value)",
            "overlap_grad_reduce": "FSDP2 reduce-scatters each block's gradients on a separate stream during the "
                                   "backward (torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py)",
            "overlap_param_gather": "FSDP2 all-gathers the next block during the current block's forward "
                                    "(implicit prefetching; PyTorch docs 'FSDP Prefetch Nuances')",
            "overlap_tp_comm": none.format("TP communication overlap"),
            "overlap_tp_wgrad": none.format("asynchronous TP backward"),
            "fused_grad_accumulation": "autograd accumulates each micro-batch's gradients in its own kernel",
            "overlap_p2p": "torch.distributed.pipelining sends between stages on the compute stream",
            "zero3_prefetch": "FSDP2 prefetches the next block's all-gather in forward and backward",
            "pp_scatter_gather": none.format("scatter/gather of pipeline tensors"),
            "sequence_parallel": where + " tensor parallelism with a SequenceParallel plan",
            "selective_recompute": "torch.utils.checkpoint selective activation checkpointing",
            "distributed_optimizer": "Megatron's distributed optimizer is not FSDP's",
            "zero": "fully_shard shards parameters, gradients and optimizer states (ZeRO-3)",
            "context_parallel": where + " context parallelism (torch.distributed.tensor.experimental.context_parallel)",
            "cp_rotate": _TORCH_CP_ALLGATHER, "cp_in_graph": CP_NOT_IN_GRAPH,
            "uneven_pipeline": "torch.distributed.pipelining stages take any layer counts",
            "pipeline_split": "not read for this release: capsim places layers that do not divide the stages as "
                              "Megatron-Core's options do (the field's generic value)",
            "interleave_min_pp": "torch.distributed.pipelining ScheduleInterleaved1F1B needs pp > 1",
            "moe_dispatcher": dispatcher,
            "overlap_moe_a2a": none.format("MoE communication overlap"),
            "moe_fp8_padding": none.format("Megatron-Core TEGroupedMLP"),
            "moe_combine_saves": "the model's own MoE: its weighted sum of each token's k expert outputs keeps them "
                                 "for the gradient of the weights (the field's generic value)",
            "loss_copy": "torch cross_entropy on fp32-upcast logits keeps that copy (the field's generic "
                                   "value)",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": "AM@8d9bfb9 nemo_automodel/components/moe/layers.py FakeBalancedGate: noise 0.0 "
                                  "spreads tokens uniformly over the experts (exact balance)",
            "fp8_scaling": "FP8 comes from Transformer Engine, whose default recipe is DelayedScaling (TE@v2.2 "
                           "transformer_engine/pytorch/fp8.py L52-56 on Hopper)",
            "fp8_training": FP8_OFFERED,
            "fp8_params": "FSDP2 gathers the parameters in the MixedPrecisionPolicy param_dtype (bf16)",
            "reshard_after_forward": reshard,
            "defer_grad_sync": "fully_shard reduce-scatters after every backward unless set_requires_gradient_sync("
                               "False) (FSDP2's default: requires_gradient_sync=True)",
            "pp_defer_grad_sync": _PP_STAGE_NOSYNC, "pp_reduce_at_step_end": _PP_REDUCE_IN_LAST_BACKWARD,
            "grads_fp32": master, "fp32_master": master,
            "tp_rs": "FSDP2's tensor parallelism has no userbuffers overlap (the field's generic value)",
            "selective_ac": none.format("selective checkpointing policy") + " (the field's generic value)",
            "torch_compile": "not compiled unless the run says so (the field's generic value)",
            "fp8_precompute_scales": "a torchao FP8 all-gather option this release does not set (generic value)",
            "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS,
            **GENERIC_EAGER, "norm_quantize": NO_TE_NORM,
            "tp_gather_quantized": "torchao's Float8Linear, not Transformer Engine: torchtitan docs/float8.md says "
                                   "TP all-gathers float8 by default, but which of its backward gathers and casts "
                                   "run on local rows is not read here, so 16-bit gathers and casts of the gathered "
                                   "rows are priced (the field's generic value)",
            "fp8_recompute_weight_bwd": "a torchao FP8 all-gather option this release does not set (generic value)",
            **NOT_DEEPSPEED, **overrides}


def _fsdp2_defaults(where: str, micro: Setting) -> dict[str, Setting]:
    none = "off unless configured (" + where + ")"
    return {"micro_batch": micro, "v": Setting(1, "no pipeline unless configured"),
            "recompute": Setting("none", "activation checkpointing is off unless configured (" + where + ")"),
            "sp": Setting(False, none), "zero_stage": Setting(3, "fully_shard shards parameters too (ZeRO-3)"),
            "cp": Setting(1, none), "distributed_optimizer": Setting(False, "not FSDP's"),
            "etp": Setting(1, "the experts are not tensor-parallel (grouped experts sharded by EP only)"),
            "account_for_embedding": Setting(False, "the embedding is not a layer of the split"),
            "account_for_loss": Setting(False, "the loss is not a layer of the split")}


_AM8 = "AM@8d9bfb9 "
_GATE_8D = "AM@8d9bfb9 nemo_automodel/components/moe/layers.py L548-550"
# step_scheduler.local_batch_size with pp > 1: the pipeline's batch (train_ft.py L741 pp_batch_size), one
# schedule.step per gradient-accumulation step (L893-944; step_scheduler.py L56 grad_acc_steps)
_LOCAL_BATCH = ("AM@8d9bfb9 nemo_automodel/recipes/llm/train_ft.py L741 pp_batch_size = step_scheduler.local_batch_size, "
                "L893-944 one pipeline schedule.step per batch of the step's grad_acc_steps "
                "(components/training/step_scheduler.py L56: global_batch_size // (local_batch_size * dp_size))")


# AutoModel's pipeline stage holds the whole causal-LM part, while fully_shard wraps only its .model, its blocks, the
# embedding and the LM head (AM@8d9bfb9 nemo_automodel/components/moe/parallelizer.py L138-172; pipelining/functional.py
# L493-507 stages[i].submod = the parallelized part; models/deepseek_v3/model.py L248-249): the stage's submod is no
# FSDPModule, so torch's backward_maybe_with_nosync takes its plain branch and FSDP2's own hooks reduce-scatter every
# micro-batch. AutoModel's patched_backward_maybe_with_nosync is installed only with model.backend.
# enable_fsdp_optimizations (recipes/llm/train_ft.py L769; pipelining/functional.py L521), which the benchmark configs do
# not set (examples/benchmark/configs/deepseek_v3_te_deepep.yaml spells enable_fsdp_optimization)
_AM_STAGE_PLAIN = ("AM@8d9bfb9: the pipeline stage's submod is the causal-LM part, fully_shard only on its .model, blocks, "
                   "embedding and head (moe/parallelizer.py L138-172, pipelining/functional.py L493-507): torch's stage "
                   "runs its plain backward and FSDP2 reduce-scatters every micro-batch; the patched stage backward "
                   "needs model.backend.enable_fsdp_optimizations (recipes/llm/train_ft.py L769), unset in "
                   "examples/benchmark/configs")


def nemo_automodel_2025_10(name: str) -> Release:
    """NeMo AutoModel (main of early October 2025): FSDP2 + expert parallelism for its custom MoE models."""
    par = "AM@8d9bfb9 (2025-10-08) nemo_automodel/components/moe/parallelizer.py"
    cite = _fsdp2_cite("AM@8d9bfb9 nemo_automodel/components/distributed/fsdp2.py FSDP2Manager",
                       par + " L123, L187: reshard_after_forward=False by default (kept gathered until backward)",
                       "AM@8d9bfb9 nemo_automodel/components/moe/utils.py L35 BackendConfig.enable_deepep = "
                       "HAVE_DEEP_EP (DeepEP: one copy per destination node)",
                       "AM@8d9bfb9 nemo_automodel/components/moe/utils.py BackendConfig attn 'te': TE DotProductAttention",
                       "AM@8d9bfb9 nemo_automodel/components/models/qwen3_moe/model.py L121, L232: parameters built in "
                       "the model config's torch_dtype (bfloat16); torch.optim.Adam keeps its moments in the "
                       "parameters' dtype and FSDP2 casts the reduced gradients to it: no fp32 copy",
                       pipeline_split="AM@8d9bfb9 nemo_automodel/components/distributed/pipelining/functional.py "
                                      "L113-126: the first (layers mod stages) virtual stages one layer heavier, "
                                      "L66-71 stage i on rank i mod pp",
                       loss_copy="AM@8d9bfb9 examples/benchmark/configs/*.yaml (every one) loss_fn MaskedCrossEntropy "
                                 "fp32_upcast: false; nemo_automodel/components/loss/masked_ce.py L73-82: "
                                 "F.cross_entropy on the bf16 logits, whose log_softmax keeps its bf16 output",
                       pp_defer_grad_sync=_AM_STAGE_PLAIN,
                       pp_reduce_at_step_end="not used: the stage does not defer the sync (pp_defer_grad_sync)")
    # The recipes' blocks are not compiled (no compile: section in examples/benchmark/configs/*.yaml; train_ft.py
    # L276-279 compiles only with one); RMSNorm is TE's fused kernel, RoPE and the dense MLP run as eager torch ops,
    # the routed experts' activation as its own compiled function (capsim.analytic.eager).
    cite.update(eager_norm=_AM8 + "examples/benchmark/configs/{deepseek_v3,gptoss_20b,gptoss_120b,qwen3_moe_30b}_te_"
                               "deepep.yaml backend rms_norm: te -> nemo_automodel/components/moe/utils.py L84-94 "
                               "initialize_rms_norm_module: transformer_engine RMSNorm (one fused kernel each way)",
                eager_pointwise=_AM8 + "nemo_automodel/components/moe/rope_utils.py L118-133 apply_rotary_emb (x.float(),"
                                " complex multiply, .to(dtype); DeepSeek V3 MLA, deepseek_v3/layers.py L158, L164), "
                                "models/gpt_oss/layers.py L30-40 _apply_rotary_emb (GPT-OSS L166-167, Qwen3 MoE "
                                "qwen3_moe/layers.py L132-133), moe/layers.py L100-110 MLP.forward F.silu(gate_proj(x)) "
                                "* up_proj(x) (DeepSeek V3's dense layers, deepseek_v3/model.py L40-41, and shared "
                                "experts, moe/layers.py L877-878; capsim prices no shared-expert activation): torch "
                                "ops, not compiled",
                compiled_expert_act=_AM8 + "nemo_automodel/components/moe/layers.py L117-129 swiglu, L309-324 "
                                    "quick_geglu_deepep: @torch.compile; L327-329 weighted_bias_swiglu_impl -> "
                                    "moe/megatron/moe_utils.py L196-232 @torch.compile swiglu / weighted_swiglu and "
                                    "their backward")
    fw = _fsdp2(name, Reshard.NEVER, MoeDispatcher.FLEX, master=False, pipeline_split=PipelineSplit.FRONT_LOADED,
                loss_copy=LossCopy.ACTIVATION, eager_pointwise=True, compiled_expert_act=True, pp_defer_grad_sync=False
                ).with_(moe_fc1_bias_eager=True, yarn_rope=YarnRope.HALVES)
    cite["yarn_rope"] = ("AM@8d9bfb9 nemo_automodel/components/models/gpt_oss/layers.py L30-40 _apply_rotary_emb "
                         "(x1 * cos - x2 * sin, x2 * cos + x1 * sin, torch.cat; eager: the benchmark configs compile "
                         "nothing), applied to the queries and keys in GptOssAttention.forward L166-167 and Qwen3 "
                         "MoE's qwen3_moe/layers.py L132-133: every non-MLA attention's RoPE (MLA keeps "
                         "moe/rope_utils.py L118-133's complex fp32 form, priced under eager_pointwise)")
    cite["moe_fc1_bias_eager"] = ("AM@8d9bfb9 nemo_automodel/components/moe/layers.py L486-487: GroupedExpertsDeepEP "
                                  "adds gate_up_proj_bias with _apply_bias (L376-380: torch.cat of t + b per expert "
                                  "split) after the grouped GEMM (ops.gmm, no bias)")
    defaults = _fsdp2_defaults("AM@8d9bfb9 FSDP2Manager", Setting(PER_REPLICA, "step_scheduler local_batch_size "
                                                                               "has no default: the per-replica batch"))
    return Release(fw, FrameworkFamily.FSDP2, "nemo-automodel-2025-10", "2025-10-08",
                   "NeMo AutoModel main at 8d9bfb9 (2025-10-08; docs/performance-summary.md 'Last Updated 2025-10-02')",
                   cite, defaults, {**fsdp2_flags("AM@8d9bfb9 examples/benchmark/configs"),
                                    "--fake-balanced-gate": fake_gate_flag(_GATE_8D),
                                    "--local-batch-size": Flag("pp_schedule_sequences",
                                                               {str(n): n for n in (1, 2, 4, 8, 16, 32, 64, 128)},
                                                               _LOCAL_BATCH)})


__all__ = ["fake_gate_flag", "fsdp2_flags", "nemo_automodel_2025_10"]
