"""Framework releases of 2024-2026: Megatron-Core as NeMo and Megatron-Bridge ship it (PyTorch FSDP2's common parts
and NeMo AutoModel 2025-10 are in ``releases_fsdp2.py``). Each is a :class:`Release` like those of ``framework.py``: a cited value for every
behaviour field, the documented defaults of unpublished layout settings, and the flags a run (or the source's own
recipe) states. A release's behaviour is the framework's own default; what a model's recipe or launcher turns on
(TP communication overlap, recomputation, the MoE dispatcher, ...) is a flag of the run.

Citations: ``ML@<tag>`` is github.com/NVIDIA/Megatron-LM, ``NeMo@<ref>`` github.com/NVIDIA/NeMo, ``NFL@24.07``
github.com/NVIDIA/NeMo-Framework-Launcher at tag 24.07 (8325688d, 2024-08-01), ``MB@v0.4.2`` github.com/NVIDIA-NeMo/
Megatron-Bridge (v0.4.2 is the 26.04.01 container, docs/versions1.json), ``AM@<commit>`` github.com/NVIDIA-NeMo/
Automodel, ``TT@b5bcd76`` github.com/pytorch/torchtitan, ``TE@<tag>`` github.com/NVIDIA/TransformerEngine.
"""

from __future__ import annotations

from capsim.analytic.eager import YarnRope
from capsim.analytic.fp8 import NormQuantize
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.core_flags import (
    megatron_core_flags,
    nemo1_grad_sync,
    nemo2_grad_reduce,
    nemo_grad_reduce_flag,
)
from capsim.analytic.training.release import (
    COMBINE_NO_PROBS,
    COMBINE_PROBS,
    CP_NOT_IN_GRAPH,
    FLEX_DEEPEP,
    FP8_OFFERED,
    FUSED_CE,
    FUSED_FORMS,
    FUSED_POINTWISE,
    GENERIC_EAGER,
    KV_OWN_HEADS,
    NOT_DEEPSPEED,
    ONE_SCHEDULE,
    SPREAD_EXPERTS,
    TE_NORM_FP8,
    TE_NORM_FP8_AMAX,
    TE_RING,
    UNFUSED_CE,
    Flag,
    Framework,
    FrameworkFamily,
    LossCopy,
    LossKernel,
    MoeDispatcher,
    Release,
    Reshard,
    RsOverlap,
    Setting,
    megatron_ce,
)
from capsim.specs.precision import Fp8Scaling

_NO_ZERO3 = "Megatron-Core shards with its distributed optimizer; no ZeRO-3 here (the field's generic value)"
_TE_ATTN = "core/models/gpt/gpt_layer_specs.py: TEDotProductAttention (Transformer Engine's fused/flash kernels)"
_UB = "TE userbuffers overlap the TP all-gather/reduce-scatter with the adjacent GEMMs"


# H100 SXM5 has 132 SMs (NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022, "H100 SXM5": 132 SMs).
_H100_SMS = 132
_RING = RsOverlap(0)  # ring exchange: one SM (num_sm=1) lent, under 1% of the GPU's: left out


def _pipelined(proj_sms: int, fc2_sms: int, sms: int) -> RsOverlap:
    """A pipelined (4-chunk) reduce-scatter whose comm kernels reserve ``proj_sms`` and ``fc2_sms`` of ``sms``
    SMs from the attention-output and fc2 GEMMs (set_sm_margin)."""
    return RsOverlap(4, proj_sms / sms, fc2_sms / sms)


def _ub_flag(configs: dict[str, RsOverlap], where: str) -> dict[str, Flag]:
    """``--tp-comm-overlap-cfg``: the userbuffers overlap config a run's recipe passes (by its name in ``where``),
    read for how its proj_fprop and fc2_fprop reduce-scatters overlap (``RsOverlap``)."""
    return {"--tp-comm-overlap-cfg": Flag("tp_rs", configs, where)}


# NeMo-Framework-Launcher 24.07 launcher_scripts/conf/training/tp_overlap/*.yaml (the llama2_70b / llama3_70b
# configs' ``tp_overlap@model.ub_tp_comm_overlap_cfg``): proj_fprop and fc2_fprop pipelined, 4 splits,
# num_sm 24 and 16, set_sm_margin 1.
_NFL_24_07_UB = {name: _pipelined(24, 16, _H100_SMS) for name in (
    "ub_cfg_h100_h8192_tp4_mbs1_seqlen4096", "ub_cfg_h100_h8192_tp4_mbs1_seqlen8192",
    "ub_cfg_h100_fp8_h8192_tp4_mbs1_seqlen8192")}
# The GPT-3 20B config (NFL@24.07 launcher_scripts/conf/training/gpt3/20b.yaml L3): proj_fprop num_sm 16, fc2_fprop
# num_sm 24, both pipelined in 4 splits with set_sm_margin 1 (tp_overlap/ub_cfg_h100_h6144_tp2_mbs2_seqlen2048.yaml
# L47-59).
_NFL_24_07_UB["ub_cfg_h100_h6144_tp2_mbs2_seqlen2048"] = _pipelined(16, 24, _H100_SMS)
# NeMo@v2.2.0rc3 nemo/collections/llm/recipes/tp_overlap_configs/userbuffers.py L79-181 (the configs
# scripts/llm/performance/pretrain_llama3_70b.py and pretrain_llama31_405b.py L84-89 pick by GPU and precision).
_NEMO_2_2_UB = {
    "userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192": _pipelined(24, 16, _H100_SMS),
    "userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192": _pipelined(24, 16, _H100_SMS),
    "userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192": _pipelined(24, 8, _H100_SMS),
    "userbuffers_fp8_h100_h16384_tp8_cp2_mbs1_seqlen8192": _pipelined(24, 8, _H100_SMS),
    "userbuffers_fp8_b200_h8192_tp2_mbs1_seqlen8192": _RING,
    "userbuffers_fp8_b200_h16384_tp4_cp2_mbs1_seqlen8192": _RING,
    # L251-262 (scripts/llm/performance/pretrain_gpt3_175b.py L69-86 picks it for B200 FP8): ring exchange
    "userbuffers_fp8_b200_h12288_tp4_mbs1_seqlen2048": _RING}
# MB@v0.4.2 src/megatron/bridge/training/comm_overlap.py L98-200 (scripts/performance/configs/llama/
# llama3_llm_pretrain.py L22-27 and llama31_llm_pretrain.py L23-26 import them): the FP8 configs ring-exchange.
_MB_0_4_2_UB = {
    "userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192": _pipelined(24, 16, _H100_SMS),
    "userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192": _RING,
    "userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192": _pipelined(24, 8, _H100_SMS),
    "userbuffers_fp8_h100_h16384_tp8_cp2_mbs1_seqlen8192": _RING,
    "userbuffers_fp8_b200_h8192_tp2_mbs1_seqlen8192": _RING,
    "userbuffers_fp8_b200_h16384_tp4_cp2_mbs1_seqlen8192": _RING}
_TE_UB = ("{}: with no overlap config, Transformer Engine's initialize_ub defaults: proj_fprop and fc2_fprop "
          "pipelined in 4 chunks, no SM margin (TE@{} transformer_engine/pytorch/module/base.py initialize_ub)")


def bridge_param_flags(tag: str, nvfp4_lines: str) -> dict[str, Flag]:
    """Two Megatron-Bridge settings its perf scripts change per run and capsim prices: whether NVFP4 weights are
    gathered and kept in FP4 (``bf16_with_nvfp4_mixed`` at ``tag``, ``nvfp4_lines`` of mixed_precision.py: before
    v0.4.2 fp8_param_gather False and no fp4_param_gather; from v0.4.2 fp4_param_gather True), and the parameter
    all-gather overlap the Llama3.1-405B GB200 NVFP4 V2 run turns off (scripts/performance/configs/llama/
    llama31_llm_pretrain.py disable_param_gather_overlap, MB@v0.4.2 L123-124, MB@v0.5.0 L123-124)."""
    where = f"MB@{tag} src/megatron/bridge/training/mixed_precision.py {nvfp4_lines} bf16_with_nvfp4_mixed"
    return {"--fp4-param-gather": Flag("fp8_params", {"true": True, "false": False}, where),
            "--overlap-param-gather": Flag("overlap_param_gather", {"": True, "true": True, "false": False},
                                           f"MB@{tag} ddp.overlap_param_gather, which the perf scripts turn off for some runs "
                                           "(disable_param_gather_overlap from v0.4.2; v0.2.0 scripts/performance/"
                                           "configs/llama31/llama31_llm_pretrain.py L75-78, L110-113, L140-143: "
                                           "fp8_mx)")}


def eager_cites(core: str, bridge: str, provide_line: int, fusions_line: int) -> dict[str, str]:
    """Where a Megatron-Bridge release (``bridge`` = "MB@<tag>", on Megatron-Core ``core``) runs a clamped GLU's clamp
    and a YaRN RoPE as eager ops (capsim.analytic.eager), or FUSED_FORMS where ``provide_line`` is 0 (a release
    without those paths)."""
    if not provide_line:
        return dict(FUSED_FORMS)
    return {"glu_clamp_eager": f"{core} megatron/core/fusions/fused_bias_geglu.py L424-432 "
                               "weighted_bias_quick_geglu_impl: chunk, clamp, clamp, torch.cat before the fused "
                               "quick-GEGLU (called by TEGroupedMLP and MLP with activation_func_clamp_value)",
            "yarn_rope": f"{bridge} src/megatron/bridge/models/gpt_provider.py L{provide_line} and "
                                   f"utils/fusions.py L{fusions_line}: RoPE fusion off for a position type other "
                                   f"than 'rope' (yarn); {core} megatron/core/models/common/embeddings/rope_utils.py "
                                   "L279-284: mscale != 1 takes the unfused _apply_rotary_pos_emb_bshd (L92-126)"}


def op_fuser_flag(core: str) -> dict[str, Flag]:
    """``use_transformer_engine_op_fuser`` (a TransformerConfig field, no argparse flag; Megatron-Bridge's perf
    scripts set it for cutedsl_fused_grouped_mlp): TEGroupedMLP runs its fc1, activation and fc2 as Transformer
    Engine fused ops (``_fused_forward``, with the clamp inside ScaledClampedQGeGLU), not the eager clamp."""
    return {"--use-transformer-engine-op-fuser": Flag(
        "glu_clamp_eager", {"": False},
        f"{core} megatron/core/transformer/transformer_config.py L465 use_transformer_engine_op_fuser; "
        "moe/experts.py L270-273, L649-654 (_fused_forward), L446-460 (ScaledClampedQGeGLU with limit)")}


# Megatron-Core's FP8 runs Transformer Engine's modules, which under SP quantize the local rows and gather the
# quantized copy (capsim.analytic.fp8 _SP_GATHERED_INPUT, sp_gather_bytes; comms._amax_reduce_s).
TE_SP_GATHER = ("TE@v1.8 module/layernorm_linear.py L126-157 (FP8 norm output gathered), module/base.py "
                "grad_output_preprocess ('FP8 case with gather': cast, then gather); TE@71bbefbf (Megatron-Bridge "
                "v0.4.0's pin) distributed.py _all_gather_fp8/_all_gather_mxfp8/_all_gather_nvfp4, "
                "module/layernorm_linear.py L243-276, csrc/quantizer.cpp L882-887 and L2333-2351 (amax all-reduce)")


def _megatron_common(cite_args: str) -> dict[str, str]:
    """Citations shared by the Megatron-Core releases (features present in all of them)."""
    return {"overlap_tp_wgrad": cite_args + " core/tensor_parallel/layers.py: async all-gather/all-reduce/"
                                "reduce-scatter in the column-parallel backward",
            "zero3_prefetch": _NO_ZERO3, "reshard_after_forward": _NO_ZERO3, "defer_grad_sync": _NO_ZERO3, "pp_defer_grad_sync": _NO_ZERO3,
            "pp_reduce_at_step_end": _NO_ZERO3,
            "offload_layers": "no CPU activation offloading unless the run states --cpu-offloading-num-layers "
                              "(core/transformer/transformer_config.py cpu_offloading default False)",
            "replica_reduce_every_micro_batch": "the distributed optimizer reduces its gradients once per step, "
                                                "replicas or not; Megatron-FSDP's switch, where a release has it, "
                                                "sets this False (capsim.analytic.training.megatron_fsdp)",
            "pipeline_split": cite_args + " --account-for-embedding/loss-in-pipeline-split, --decoder-first/last-"
                              "pipeline-num-layers or a layout string (capsim.specs.pipeline_layout.default_uneven)",
            "pp_scatter_gather": cite_args + " megatron/core never reads --no-scatter-gather-tensors-in-pipeline: "
                                 "whole tensors are sent",
            "sequence_parallel": cite_args + " --sequence-parallel",
            "selective_recompute": cite_args + " --recompute-granularity selective",
            "distributed_optimizer": cite_args + " --use-distributed-optimizer",
            "zero": "Megatron-Core shards with its distributed optimizer, not DeepSpeed's ZeRO stages",
            "context_parallel": cite_args + " --context-parallel-size",
            "cp_rotate": TE_RING, "cp_in_graph": CP_NOT_IN_GRAPH,
            "grads_fp32": "Megatron-Core accumulates and reduces gradients in fp32 by default "
                          "(ML@core_v0.14.0 training/arguments.py L2279 --grad-reduce-in-bf16 turns it off)",
            "fp32_master": "Megatron-Core's distributed optimizer keeps fp32 main parameters and fp32 Adam moments",
            "selective_ac": cite_args + " --recompute-granularity selective: the core attention only (core/transformer/"
                            "attention.py _checkpointed_attention_forward; 'core_attn', the default recompute module)",
            "torch_compile": "Megatron-Core runs the model eagerly with Transformer Engine's fused kernels",
            "fp8_precompute_scales": "a torchao option; Megatron-Core's FP8 is Transformer Engine's",
            "tp_gather_quantized": TE_SP_GATHER,
            "repeat_kv": KV_OWN_HEADS, "eager_norm": FUSED_POINTWISE, "eager_pointwise": FUSED_POINTWISE, **FUSED_FORMS, **GENERIC_EAGER, "norm_quantize": TE_NORM_FP8,
            "fp8_recompute_weight_bwd": "a torchao option; Megatron-Core's FP8 is Transformer Engine's",
            "moe_combine_saves": cite_args + " " + COMBINE_PROBS,
            "loss_copy": cite_args + " " + UNFUSED_CE, **NOT_DEEPSPEED}


def nemo_24_07(name: str) -> Release:
    """NeMo 24.07: NeMo 1.0's MegatronGPTModel on Megatron-Core (mcore_gpt), defaults of its GPT config."""
    conf = "NeMo@c277b9a6 (2024-08-01) examples/nlp/language_modeling/conf/megatron_gpt_config.yaml"
    mc = "ML@core_v0.8.0"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8, dropout=True, overlap_grad_reduce=False, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=False, overlap_p2p=False,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=False,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   fp8_scaling=Fp8Scaling.DELAYED, fp8_params=False, reshard_after_forward=Reshard.ALWAYS,
                   defer_grad_sync=False, loss_kernel=LossKernel.MEGATRON_FP32)
    cite = {**_megatron_common(mc),
            **megatron_ce("ML@core_r0.8.0 megatron/core/tensor_parallel/cross_entropy.py L27-113, called by "
                          "language_module.py L37-40 unless cross_entropy_loss_fusion (model_parallel_config.py L201 "
                          "default False; NeMo@c277b9a6 megatron_base_model.py build_transformer_config and "
                          "the NFL@24.07 training configs set none)"),
            "attention": mc + " " + _TE_ATTN + " (NeMo: transformer_engine, mcore_gpt)",
            "dropout": conf + " L94-95: hidden_dropout and attention_dropout 0.1",
            "overlap_grad_reduce": conf + " L300: optim fused_adam (no distributed optimizer, no overlapped sync)",
            "overlap_param_gather": conf + " L300: optim fused_adam",
            "overlap_tp_comm": conf + " L231 ub_tp_comm_overlap: False (" + _UB + " when on)",
            "fused_grad_accumulation": conf + " L151 gradient_accumulation_fusion: False",
            "overlap_p2p": conf + " L116 overlap_p2p_comm: False",
            "uneven_pipeline": mc + " (see megatron-core-0.8.0: layers divide the stages)",
            "interleave_min_pp": mc + " arguments.py L255-262",
            "moe_dispatcher": mc + " arguments.py L1748-1750 --moe-token-dispatcher-type default allgather",
            "overlap_moe_a2a": "not in Megatron-Core 0.8 (--overlap-moe-expert-parallel-comm: core_v0.14.0)",
            "moe_fp8_padding": "not in Megatron-Core 0.8: TEGroupedMLP's Fp8Padding arrived in core_v0.10.0 "
                               "(moe/experts.py L638)",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": "no forced load balancing in Megatron-Core 0.8 (RandomSTE: core_v0.14.0)",
            "fp8_scaling": conf + " L222-228: fp8 with amax history 1024, 'max' (TE 1.8's only recipe, "
                           "DelayedScaling, TE@v1.8 transformer_engine/common/recipe/__init__.py)",
            "fp8_training": FP8_OFFERED,
            "fp8_params": "NFL@24.07 training configs set no fp8_params: weights stay 16-bit",
            "tp_rs": _TE_UB.format("NeMo 1.0 ub_tp_comm_overlap_cfg null", "v1.8")}
    defaults = {"micro_batch": Setting(4, conf + " L77 micro_batch_size: 4"),
                "v": Setting(1, conf + " L82 virtual_pipeline_model_parallel_size: null"),
                "recompute": Setting("none", conf + " L192 activations_checkpoint_granularity: null"),
                "sp": Setting(False, conf + " L218 sequence_parallel: False"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, mc + " --context-parallel-size default 1"),
                "distributed_optimizer": Setting(False, conf + " L300 optim name: fused_adam"),
                "etp": Setting(0, "Megatron-Core 0.8 splits the experts like the attention (etp = tp)"),
                "account_for_embedding": Setting(False, "not in Megatron-Core 0.8"),
                "account_for_loss": Setting(False, "not in Megatron-Core 0.8")}
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "nemo-24.07", "2024-08-01",
                   "NeMo 24.07 container (NeMo 1.0 MegatronGPTModel, mcore_gpt: Megatron-Core r0.8, TE 1.8); per-model "
                   "launcher settings: NFL@24.07 launcher_scripts/conf/training/<model>.yaml", cite, defaults,
                   {**megatron_core_flags(8), **_ub_flag(_NFL_24_07_UB, "NFL@24.07 launcher_scripts/conf/training/"
                                                         "tp_overlap/<name>.yaml"),
                    **nemo_grad_reduce_flag(nemo1_grad_sync("NeMo@c277b9a6", "L541"))})


def nemo_25_02(name: str) -> Release:
    """NeMo 25.02: NeMo 2.0 (v2.2.0rc3) recipes on Megatron-Core, with MegatronCommOverlapCallback's defaults."""
    cb = "NeMo@v2.2.0rc3 (b21e079d, 2025-02-25) nemo/lightning/pytorch/callbacks/megatron_comm_overlap.py"
    gpt = "NeMo@v2.2.0rc3 nemo/collections/llm/gpt/model/"
    # The container's Megatron-Core: NeMo@v2.2.0rc3 requirements/manifest.json pins megatron-lm 74428fda (2025-02-24,
    # branch core_r0.11.0), the "Megatron-Core 0.11.0" NVIDIA ships with NeMo Framework 25.02.
    mc = "ML@74428fda (core_r0.11.0)"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False, moe_fp8_padding=False,
                   fp8_scaling=Fp8Scaling.DELAYED, fp8_params=False, reshard_after_forward=Reshard.ALWAYS,
                   defer_grad_sync=False)
    cite = {**_megatron_common(mc),
            "loss_kernel": "NeMo@v2.2.0rc3 nemo/collections/llm/gpt/model/base.py L184 GPTConfig "
                           "cross_entropy_loss_fusion = True (the recipes turn it off only for LoRA/DoRA "
                           "fine-tuning, e.g. recipes/llama31_70b.py L321): Megatron-Core's fused loss "
                           "(fusions/fused_cross_entropy.py, torch.compile'd steps), not read pass by pass: the "
                           "generic one-pass loss",
            "attention": mc + " " + _TE_ATTN,
            "dropout": gpt + "llama.py L55-56 and mixtral.py L54-55: attention and hidden dropout 0.0",
            "overlap_grad_reduce": cb + " L176-187: on whenever dp > 1",
            "overlap_param_gather": cb + " L176-187: on whenever dp > 1",
            "overlap_tp_comm": cb + " L134-135: off unless a recipe turns it on (" + _UB + ")",
            "fused_grad_accumulation": gpt + "base.py L185 gradient_accumulation_fusion = "
                                       "_grad_accum_fusion_available (apex is in the container)",
            "overlap_p2p": cb + " L153-156: on with pp > 1 and vp > 1 (the interleaved case)",
            "uneven_pipeline": "NeMo@v2.2.0rc3 nemo/collections/llm/recipes/llama31_405b.py L72-73 passes "
                               "account_for_embedding/loss_in_pipeline_split to Megatron-Core",
            "interleave_min_pp": mc + " training/arguments.py: interleaving needs pipeline size > 1",
            "moe_dispatcher": mc + " training/arguments.py L2224-2226 --moe-token-dispatcher-type default allgather",
            "overlap_moe_a2a": "not in this Megatron-Core (--overlap-moe-expert-parallel-comm: core_v0.14.0)",
            "moe_fp8_padding": mc + " transformer_config.py L335 moe_grouped_gemm default False (NeMo@v2.2.0rc3 "
                               "MixtralConfig, gpt/model/mixtral.py L36-62, leaves it): experts are SequentialMLP, "
                               "whose FP8 pad (moe/experts.py L766-776) copies only rows short of a multiple of 16; "
                               "--moe-grouped-gemm selects TEGroupedMLP, which pads every expert (L639 Fp8Padding)",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": "no forced load balancing in core_r0.11.0 (RandomSTE: core_v0.14.0 "
                                  "moe_utils.py L874); the run's own routing is not published",
            "fp8_scaling": "NeMo@v2.2.0rc3 nemo/collections/llm/recipes/precision/mixed_precision.py L46-54 "
                           "bf16_with_fp8_mixed: fp8 'hybrid', amax history 1024, 'max' (delayed scaling; no fp8 "
                           "recipe field in nemo/lightning/pytorch/plugins/mixed_precision.py L54-62). This "
                           "Megatron-Core builds only TEDelayedScaling (" + mc + " transformer/transformer_block.py "
                           "L516; --fp8-recipe arrives in core_v0.12.0) and per-tensor current scaling arrived in "
                           "TE v2.2 (Float8CurrentScaling, NVIDIA/TransformerEngine@77fa1e59, 2025-03-07; not in "
                           "v2.1); the 25.02 performance page says only 'FP8 precision (using NeMo 2.0)'",
            "fp8_training": FP8_OFFERED,
            "fp8_params": "NeMo@v2.2.0rc3 nemo/lightning/pytorch/plugins/mixed_precision.py L88 fp8_params "
                          "default False (bf16_with_fp8_mixed turns it on: a flag of the run)",
            "tp_rs": _TE_UB.format(cb + " tp_comm_overlap_cfg None", "v2.0")}
    defaults = {"micro_batch": Setting(1, "NeMo@v2.2.0rc3 nemo/collections/llm/recipes/llama3_70b.py pretrain_recipe "
                                          "MockDataModule micro_batch_size=1"),
                "v": Setting(1, "no interleaving unless the recipe sets virtual_pipeline_model_parallel_size"),
                "recompute": Setting("none", mc + " --recompute-granularity default None"),
                "sp": Setting(False, mc + " --sequence-parallel (store_true: off)"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, mc + " --context-parallel-size default 1"),
                "distributed_optimizer": Setting(True, "NeMo@v2.2.0rc3 recipes' MegatronStrategy ddp: "
                                                       "DistributedDataParallelConfig(use_distributed_optimizer=True)"),
                "etp": Setting(0, mc + " model_parallel_config.py: expert_tensor_parallel_size None = tp"),
                "account_for_embedding": Setting(False, mc + " --account-for-embedding-in-pipeline-split off"),
                "account_for_loss": Setting(False, mc + " --account-for-loss-in-pipeline-split off")}
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "nemo-25.02", "2025-02-25",
                   "NeMo 25.02 container (NeMo 2.2.0rc3 llm recipes and scripts/llm/performance, Megatron-Core "
                   "core_r0.11.0 at 74428fda of 2025-02-24)", cite, defaults,
                   {**megatron_core_flags(11), **_ub_flag(_NEMO_2_2_UB, "NeMo@v2.2.0rc3 nemo/collections/llm/recipes/"
                                                          "tp_overlap_configs/userbuffers.py L79-181, L251-262"),
                    **nemo_grad_reduce_flag(nemo2_grad_reduce("v2.2.0rc3", "L369")),
                    "--moe-grouped-gemm": Flag("moe_fp8_padding", {"": True},
                                               mc + " training/arguments.py L2185 --moe-grouped-gemm: TEGroupedMLP, whose "
                                               "FP8 path pads each expert's rows (moe/experts.py L639)")})


def megatron_bridge_26_04_01(name: str) -> Release:
    """Megatron-Bridge 0.4.2 (NeMo 26.04.01): its recipes' common base and CommOverlapConfig defaults."""
    co = "MB@v0.4.2 src/megatron/bridge/training/comm_overlap.py"
    common = "MB@v0.4.2 src/megatron/bridge/recipes/common.py _pretrain_common"
    mc = "ML@2edffadb (core 0.17.1, Bridge v0.4.2's 3rdparty/Megatron-LM)"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8_AMAX, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False, moe_fp8_padding=True, moe_random_routing=True,
                   moe_combine_saves=False, loss_copy=LossCopy.NONE,
                   fp8_scaling=Fp8Scaling.CURRENT, fp8_params=True, reshard_after_forward=Reshard.ALWAYS,
                   defer_grad_sync=False, glu_clamp_eager=True, yarn_rope=YarnRope.MEGATRON)
    cite = {**_megatron_common(mc), **eager_cites(mc, "MB@v0.4.2", 221, 85),
            "norm_quantize": "MB@v0.4.2's TE@71bbefbf (uv.lock): " + TE_NORM_FP8_AMAX,
            "attention": mc + " " + _TE_ATTN,
            "dropout": "MB@v0.4.2 recipes build the models from their HF configs (AutoBridge.from_hf_pretrained): "
                       "Llama and Qwen3 have no dropout",
            "overlap_grad_reduce": co + " L576-579: on whenever dp > 1; " + common + " L83",
            "overlap_param_gather": co + " L576-579: on whenever dp > 1; " + common + " L84",
            "overlap_tp_comm": co + " L434: off unless the recipe turns it on (" + _UB + ")",
            "fused_grad_accumulation": mc + " gradient_accumulation_fusion on where TE/apex provide the fused wgrad",
            "overlap_p2p": co + " L455-456: on with vp > 1 (the interleaved case)",
            "uneven_pipeline": mc + " --account-for-embedding/loss-in-pipeline-split, --pipeline-model-parallel-layout",
            "interleave_min_pp": mc + " training/arguments.py: interleaving needs pipeline size > 1",
            "moe_dispatcher": "ML@core_v0.14.0 training/arguments.py L2869-2871 --moe-token-dispatcher-type default "
                              "allgather (the field is a config dataclass default in later releases)",
            "overlap_moe_a2a": "ML@core_v0.14.0 training/arguments.py L2889 --overlap-moe-expert-parallel-comm "
                               "(store_true: off)",
            "moe_fp8_padding": mc + " megatron/core/transformer/moe/experts.py L247: TEGroupedMLP under fp8 pads each "
                               "expert's rows (Fp8Padding); transformer_config.py L661 "
                               "moe_router_padding_for_quantization = False",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": mc + " megatron/core/transformer/moe/router.py L697-699: forced balancing replaces "
                                  "the logits with i.i.d. normal ones per token (moe_utils.py L1194 RandomSTE)",
            "moe_combine_saves": mc + " " + COMBINE_NO_PROBS,
            "loss_copy": "MB@v0.4.2 " + FUSED_CE,
            "fp8_scaling": "MB@v0.4.2 scripts/performance/utils/precision.py L26-31: the 'fp8' of the H100 tables is "
                           "fp8_cs, bf16_with_fp8_current_scaling_mixed (src/megatron/bridge/training/"
                           "mixed_precision.py L291-309: fp8_recipe 'tensorwise')",
            "fp8_training": FP8_OFFERED,
            "fp8_params": "MB@v0.4.2 src/megatron/bridge/training/mixed_precision.py L308 fp8_param_gather = True",
            "tp_rs": _TE_UB.format(co + " tp_comm_overlap_cfg None", "v2.x")}
    defaults = {"micro_batch": Setting(2, common + " L67 micro_batch_size=2"),
                "v": Setting(1, "no interleaving unless the recipe sets virtual_pipeline_model_parallel_size"),
                "recompute": Setting("none", mc + " --recompute-granularity default None"),
                "sp": Setting(False, "MB@v0.4.2 scripts/performance/utils/utils.py L68-71: sequence_parallel = tp > 1 "
                                     "(off at tp = 1)"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, mc + " --context-parallel-size default 1"),
                "distributed_optimizer": Setting(True, common + " L87 use_distributed_optimizer=True"),
                "etp": Setting(0, mc + " model_parallel_config.py: expert_tensor_parallel_size None = tp"),
                "account_for_embedding": Setting(False, mc + " --account-for-embedding-in-pipeline-split off"),
                "account_for_loss": Setting(False, mc + " --account-for-loss-in-pipeline-split off")}
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "megatron-bridge-26.04.01", "2026-05-28",
                   "Megatron-Bridge v0.4.2 (NeMo 26.04.01 container) recipes and scripts/performance configs",
                   cite, defaults, {**megatron_core_flags(17), **_ub_flag(_MB_0_4_2_UB, "MB@v0.4.2 src/megatron/"
                                                                           "bridge/training/comm_overlap.py L98-200"),
                                    **bridge_param_flags("v0.4.2", "L411-422")})


__all__ = ["eager_cites", "op_fuser_flag", "megatron_bridge_26_04_01", "megatron_core_flags", "nemo_24_07", "nemo_25_02"]
