"""The NeMo containers between 24.07 and 25.02 and after it (``releases_current.py`` holds those two): 24.09, 24.12,
25.04 and 25.07. Each is one :class:`Release` read at the NeMo code its container ships, with the Megatron-Core that
code pins, the same facts the 24.07 and 25.02 presets cite.

Which NeMo each container ships, and which of NeMo's two training front ends its performance runs used:
- 24.09 and 24.12: NeMo 1.0's MegatronGPTModel (mcore_gpt) driven by NeMo-Framework-Launcher, as 24.07. The launcher
  has tags 24.09 (2024-10-01) and 24.12 (2024-12-18, "recipe_update_improve_mfu"), while NeMo 2.0 had no performance
  scripts before v2.2.0 (scripts/llm/performance first appears at v2.2.0; at the 24.09 code there is no
  MegatronCommOverlapCallback either). The NeMo code: tag 24.09-alpha.rc0 (4068955b, 2024-09-16, package_info
  2.0.0rc2) and tag v2.1.0 (633cb602, 2025-01-03; "NeMo 24.12 ships v2.1.0"); their Dockerfile.ci pins Megatron-Core
  (MCORE_TAG 2fd6e2b7, core 0.9.0rc0; core_r0.10.0) and Transformer Engine (7d576ed2, 1.8.0.dev0).
- 25.04 and 25.07: NeMo 2's llm recipes and scripts/performance at tags v2.3.0 (2b03b748, 2025-05-08) and v2.4.0
  (2381f42f, 2025-07-25; its CHANGELOG "perf scripts 25.07 refactor"), Megatron-Core pinned in
  requirements/manifest.json (3cdfd613, core 0.12.0rc4; 03f77931, core 0.13.0rc1), Transformer Engine likewise
  (bee4649c, 2.2.0.dev0; f05f12c9, 2.5.0).

No preset covers another: each container pins a different Megatron-Core, and 25.04 / 25.07 differ in what the MoE
combine keeps and in forced balancing (core 0.13). The userbuffers configs capsim prices are those whose two
forward reduce-scatters (proj_fprop, fc2_fprop) are both pipelined on H100 or both ring-exchanged (``RsOverlap`` has
one chunking for both); the mixed ones (e.g. *_h100_h12288_tp4_* with a pipelined proj_fprop and a ring-exchanged
fc2_fprop) and the B200 BF16 pipelined ones (their SM margin is a share of B200's SMs, which capsim does not state)
are not flags: a run naming them is an error that lists the known ones.

Citations: ``NeMo@<ref>`` github.com/NVIDIA/NeMo, ``NFL@<tag>`` github.com/NVIDIA/NeMo-Framework-Launcher,
``ML@<commit>`` github.com/NVIDIA/Megatron-LM, ``TE@<commit>`` github.com/NVIDIA/TransformerEngine.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    FLEX_DEEPEP,
    FP8_OFFERED,
    ONE_SCHEDULE,
    SPREAD_EXPERTS,
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
from capsim.analytic.training.releases_current import (
    _RING,
    _TE_ATTN,
    _TE_UB,
    _UB,
    _megatron_common,
    _pipelined,
    _ub_flag,
)
from capsim.specs.precision import Fp8Scaling

# H100 SXM5 has 132 SMs (NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022, "H100 SXM5": 132 SMs).
_H100_SMS = 132

# NFL@24.09 launcher_scripts/conf/training/tp_overlap/*.yaml (the H100 ones whose proj_fprop and fc2_fprop are both
# "pipeline", 4 splits, set_sm_margin 1): (proj_fprop num_sm, fc2_fprop num_sm).
_NFL_PIPELINED = {"ub_cfg_h100_bf16_h16384_tp8_cp2_mbs1_seqlen8192": (24, 8),
                  "ub_cfg_h100_fp8_h16384_tp8_cp2_mbs1_seqlen8192": (24, 16),
                  "ub_cfg_h100_fp8_h8192_tp4_mbs1_seqlen8192": (24, 16),
                  "ub_cfg_h100_h12288_tp8_mbs2_seqlen2048": (16, 24),
                  "ub_cfg_h100_h5120_tp2_mbs1_seqlen4096": (24, 20),
                  "ub_cfg_h100_h6144_tp2_mbs2_seqlen2048": (16, 24),
                  "ub_cfg_h100_h8192_tp4_mbs1_seqlen4096": (24, 16),
                  "ub_cfg_h100_h8192_tp4_mbs1_seqlen8192": (24, 16)}
_NFL_24_09_UB = {name: _pipelined(p, f, _H100_SMS) for name, (p, f) in _NFL_PIPELINED.items()}
# NFL@24.12 adds ub_cfg_h100_h8192_tp2_mbs1_seqlen4096.yaml: both ring_exchange (num_sm 1); the others unchanged.
_NFL_24_12_UB = {**_NFL_24_09_UB, "ub_cfg_h100_h8192_tp2_mbs1_seqlen4096": _RING}

# NeMo@v2.3.0 nemo/collections/llm/recipes/tp_overlap_configs/userbuffers.py (the same lines at v2.4.0): the FP8
# H100 configs and every B200 FP8 config ring-exchange (RingExchangeOverlapCfg num_sm 1); the BF16 H100 ones pipeline.
_NEMO_2_3_UB = {
    "userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192": _pipelined(24, 16, _H100_SMS),  # L84-95
    "userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192": _RING,  # L97-108
    "userbuffers_fp8_b200_h8192_tp2_mbs1_seqlen8192": _RING,  # L123-134
    "userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192": _pipelined(24, 8, _H100_SMS),  # L137-148
    "userbuffers_fp8_h100_h16384_tp8_cp2_mbs1_seqlen8192": _RING,  # L150-161
    "userbuffers_fp8_b200_h16384_tp4_cp2_mbs1_seqlen8192": _RING,  # L176-187
    "userbuffers_bf16_h100_h6144_tp2_mbs2_seqlen2048": _pipelined(16, 24, _H100_SMS),  # L218-229
    "userbuffers_fp8_h100_h6144_tp2_mbs2_seqlen2048": _pipelined(16, 24, _H100_SMS),  # L231-242
    "userbuffers_fp8_h100_h12288_tp4_mbs1_seqlen2048": _RING,  # L258-269
    "userbuffers_bf16_b200_h12288_tp4_mbs1_seqlen2048": _RING,  # L271-282
    "userbuffers_fp8_b200_h12288_tp4_mbs1_seqlen2048": _RING,  # L284-295
    "userbuffers_bf16_b200_h6144_tp2_mbs1_seqlen4096": _RING,  # L298-309
    "userbuffers_fp8_b200_h18432_tp8_mbs1_seqlen4096": _RING}  # L325-336


def _grouped_flag(core: str, lines: str, pad: str) -> Flag:
    """--moe-grouped-gemm: TEGroupedMLP, whose FP8 path pads every expert's rows to the FP8 alignment."""
    return Flag("moe_fp8_padding", {"": True}, f"{core} {lines.split('; ')[1]} --moe-grouped-gemm (NeMo: "
                f"model.config.moe_grouped_gemm): TEGroupedMLP pads each expert's rows under fp8 (moe/experts.py {pad})")


@dataclass(frozen=True)
class _Nemo1:
    """Where one NeMo 1.0 container states each fact (megatron_gpt_config.yaml lines at its NeMo code)."""

    software: str
    date: str
    nemo: str  # "NeMo@<ref> (<commit>, <date>)"
    core: str  # "ML@<commit> (core 0.x)"
    core_minor: int
    nfl: str  # the launcher tag
    ub: dict[str, RsOverlap]
    dropout: str
    optim: str
    ub_line: str
    fusion: str
    p2p: str
    fp8: str
    micro: str
    vp: str
    recompute: str
    sp: str
    dispatcher: str  # the core's --moe-token-dispatcher-type lines
    fp8_pad: str  # "" where the core has no TEGroupedMLP Fp8Padding
    fp8_params: str  # megatron_base_model.py: the line reading cfg fp8_params
    grouped: str  # core transformer_config.py moe_grouped_gemm default line, arguments.py --moe-grouped-gemm line
    grad_sync: str  # megatron_gpt_model.py: DistributedDataParallelConfig(grad_reduce_in_fp32=optim grad_sync_dtype)


def _nemo1_release(name: str, t: _Nemo1) -> Release:
    """A NeMo 1.0 container: MegatronGPTModel's base-config defaults (the 24.07 preset's behaviour) at ``t``."""
    conf = f"{t.nemo} examples/nlp/language_modeling/conf/megatron_gpt_config.yaml"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8, dropout=True, overlap_grad_reduce=False, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=False, overlap_p2p=False,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=False,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   moe_fp8_padding=False, fp8_scaling=Fp8Scaling.DELAYED, fp8_params=False,
                   reshard_after_forward=Reshard.ALWAYS, defer_grad_sync=False,
                   loss_kernel=LossKernel.MEGATRON_FP32)
    pad = (f"{t.core} transformer_config.py {t.grouped} moe_grouped_gemm default False ({conf} sets none): the "
           "experts are SequentialMLP; " + (f"--moe-grouped-gemm selects TEGroupedMLP, which pads each expert's rows "
                                            f"under fp8 (moe/experts.py {t.fp8_pad} Fp8Padding)" if t.fp8_pad else
                                            "TEGroupedMLP's Fp8Padding arrived only in core_v0.10.0"))
    cite = {**_megatron_common(t.core),
            **megatron_ce(f"{t.core} megatron/core/tensor_parallel/cross_entropy.py (ModelParallelConfig "
                          f"cross_entropy_loss_fusion default False; {conf} sets none)"),
            "attention": f"{t.core} {_TE_ATTN} (NeMo 1.0: transformer_engine, mcore_gpt)",
            "dropout": f"{conf} {t.dropout}: hidden_dropout and attention_dropout 0.1",
            "overlap_grad_reduce": f"{conf} {t.optim}: optim fused_adam (no distributed optimizer, no overlapped sync)",
            "overlap_param_gather": f"{conf} {t.optim}: optim fused_adam",
            "overlap_tp_comm": f"{conf} {t.ub_line} ub_tp_comm_overlap: False ({_UB} when on)",
            "fused_grad_accumulation": f"{conf} {t.fusion} gradient_accumulation_fusion: False",
            "overlap_p2p": f"{conf} {t.p2p} overlap_p2p_comm: False",
            "uneven_pipeline": f"{conf}: no first/last-stage layer counts (nemo/collections/nlp/models/language_"
                               "modeling/megatron_gpt_model.py passes no decoder_first/last_pipeline_num_layers): "
                               "layers divide the stages",
            "interleave_min_pp": f"{t.core} training/arguments.py: interleaving needs pipeline size > 1",
            "moe_dispatcher": f"{t.core} training/arguments.py {t.dispatcher} --moe-token-dispatcher-type default "
                              "allgather",
            "overlap_moe_a2a": "not in this Megatron-Core (--overlap-moe-expert-parallel-comm: core_v0.14.0)",
            "moe_fp8_padding": pad,
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": "no forced load balancing in this Megatron-Core (RandomSTE: core 0.13, "
                                  "ML@03f77931 moe_utils.py L820)",
            "fp8_scaling": f"{conf} {t.fp8}: fp8 with amax history 1024, 'max' (DelayedScaling, the only recipe of "
                           f"the TE its Dockerfile.ci pins, 7d576ed2 = 1.8.0.dev0)",
            "fp8_training": FP8_OFFERED,
            "fp8_params": f"{t.nemo} nemo/collections/nlp/models/language_modeling/megatron_base_model.py "
                          f"{t.fp8_params} cfg.get('fp8_params', False) and {conf} sets none (of the {t.nfl} "
                          "training configs only gpt3/{175b_mlperf,mlperf,mlperf-24n}.yaml do: a flag of the run)",
            "tp_rs": _TE_UB.format("NeMo 1.0 ub_tp_comm_overlap_cfg null", "v1.8")}
    defaults = {"micro_batch": Setting(4, f"{conf} {t.micro} micro_batch_size: 4"),
                "v": Setting(1, f"{conf} {t.vp} virtual_pipeline_model_parallel_size: null"),
                "recompute": Setting("none", f"{conf} {t.recompute} activations_checkpoint_granularity: null"),
                "sp": Setting(False, f"{conf} {t.sp} sequence_parallel: False"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, t.core + " --context-parallel-size default 1"),
                "distributed_optimizer": Setting(False, f"{conf} {t.optim} optim name: fused_adam"),
                "etp": Setting(0, t.core + ": the experts split like the attention (etp = tp)"),
                "account_for_embedding": Setting(False, "not exposed by NeMo 1.0's GPT config"),
                "account_for_loss": Setting(False, "not exposed by NeMo 1.0's GPT config")}
    return Release(fw, FrameworkFamily.MEGATRON_CORE, t.software, t.date,
                   f"{t.software.removeprefix('nemo-')} NeMo container: NeMo 1.0 MegatronGPTModel at {t.nemo} on "
                   f"{t.core}; per-model launcher settings: {t.nfl} launcher_scripts/conf/training/<model>.yaml",
                   cite, defaults,
                   {**megatron_core_flags(t.core_minor),
                    **({"--moe-grouped-gemm": _grouped_flag(t.core, t.grouped, t.fp8_pad)} if t.fp8_pad else {}),
                    "--fp8-params": Flag("fp8_params", {"": True}, f"NeMo 1.0 model.fp8_params ({t.nemo} nemo/"
                                         f"collections/nlp/models/language_modeling/megatron_base_model.py "
                                         f"{t.fp8_params}: FP8 weights, gathered in FP8)"),
                    **_ub_flag(t.ub, f"{t.nfl} launcher_scripts/conf/training/tp_overlap/<name>.yaml"),
                    **nemo_grad_reduce_flag(nemo1_grad_sync(t.nemo, t.grad_sync))})


_NEMO_24_09 = _Nemo1(
    "nemo-24.09", "2024-09-16", "NeMo@24.09-alpha.rc0 (4068955b, 2024-09-16)",
    "ML@2fd6e2b7 (core 0.9.0rc0, MCORE_TAG of NeMo@24.09-alpha.rc0 Dockerfile.ci)", 9, "NFL@24.09", _NFL_24_09_UB,
    "L94-95", "L301", "L232", "L152", "L116", "L223-229", "L77", "L82", "L193", "L219", "L1813-1815", "", "L804",
    "L235; arguments.py L1805", "L546")
_NEMO_24_12 = _Nemo1(
    "nemo-24.12", "2025-01-03", "NeMo@v2.1.0 (633cb602, 2025-01-03)",
    "ML@core_r0.10.0 (MCORE_TAG of NeMo@v2.1.0 Dockerfile.ci L57; core_v0.10.0)", 10, "NFL@24.12", _NFL_24_12_UB,
    "L98-99", "L306", "L237", "L157", "L120", "L228-234", "L81", "L86", "L198", "L224", "L2099-2101", "L638",
    "L808", "L272; arguments.py L2091", "L588")


@dataclass(frozen=True)
class _Nemo2:
    """Where one NeMo 2 container states each fact (files and lines at its NeMo tag and Megatron-Core)."""

    software: str
    tag: str  # the NeMo tag
    date: str
    core: str
    core_minor: int
    te: str  # "TE@<commit> (<version>)" of requirements/manifest.json
    fusion: str  # gpt/model/base.py: cross_entropy_loss_fusion and gradient_accumulation_fusion lines
    gpt175b_dropout: str  # gpt/model/base.py GPTConfig175B hidden/attention_dropout lines
    perf_fp8: str  # scripts/performance/argument_parser.py --fp8_recipe lines
    fp8_params: str  # plugins/mixed_precision.py: fp8_param_gather default
    perf_sp: str  # the perf scripts' sequence_parallel = tp > 1 (file and line)
    dispatcher: str  # core arguments.py --moe-token-dispatcher-type lines
    fp8_pad: str  # core moe/experts.py Fp8Padding line
    grouped: str  # core transformer_config.py moe_grouped_gemm default line, arguments.py --moe-grouped-gemm line
    combine: str  # core: what the MoE combine keeps
    combine_saves: bool
    random: str  # core: forced balancing's random logits ("" where the core has none)
    ddp_dtype: str  # megatron_strategy.py: the line copying the precision plugin's dtypes into the ddp config


# CPU activation offloading in a NeMo 2 container: its perf scripts' activation_offload_layers sets the model config's
# TransformerConfig fields directly (no argparse flag), checked by its core as capsim.analytic.training.offload reads
# core_v0.14.0: fewer layers than the model's, no pipeline parallelism, no recomputation.
_OFFLOAD = {"v2.3.0": ("scripts/performance/utils.py L335-337", "L667-683"),
            "v2.4.0": ("scripts/performance/helpers.py L257-260", "L751-767")}


def _offload_flag(nemo: str, tag: str, core: str) -> dict[str, Flag]:
    """--cpu-offloading-num-layers (capsim's name for the config field) where the container's perf scripts set it."""
    if tag not in _OFFLOAD:
        return {}
    script, checks = _OFFLOAD[tag]
    return {"--cpu-offloading-num-layers": Flag(
        "offload_layers", {str(n): n for n in range(1, 257)},
        f"{nemo} {script}: activation_offload_layers -> model.config.cpu_offloading True, cpu_offloading_weights "
        f"False, cpu_offloading_num_layers ({core} megatron/core/transformer/transformer_config.py {checks})")}


def _nemo2_release(name: str, t: _Nemo2) -> Release:
    """A NeMo 2 container: the llm recipes with MegatronCommOverlapCallback's defaults, read at ``t.tag``."""
    nemo = f"NeMo@{t.tag}"
    cb = f"{nemo} nemo/lightning/pytorch/callbacks/megatron_comm_overlap.py"
    gpt = f"{nemo} nemo/collections/llm/gpt/model/"
    prec = f"{nemo} nemo/collections/llm/recipes/precision/mixed_precision.py"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   moe_fp8_padding=False, moe_random_routing=bool(t.random), moe_combine_saves=t.combine_saves,
                   loss_copy=LossCopy.FP32, fp8_scaling=Fp8Scaling.DELAYED, fp8_params=False,
                   reshard_after_forward=Reshard.ALWAYS, defer_grad_sync=False)
    cite = {**_megatron_common(t.core),
            "attention": f"{t.core} {_TE_ATTN}",
            "dropout": f"{gpt}llama.py L73-74, mixtral.py L54-55, nemotron.py L50-51 and base.py {t.gpt175b_dropout} "
                       "(GPTConfig175B): attention and hidden dropout 0.0",
            "overlap_grad_reduce": f"{cb} L185-188: on whenever dp > 1",
            "overlap_param_gather": f"{cb} L185-188: on whenever dp > 1",
            "overlap_tp_comm": f"{cb} L135-136: off unless a recipe turns it on ({_UB})",
            "fused_grad_accumulation": f"{gpt}base.py {t.fusion.split(',')[1]} gradient_accumulation_fusion = "
                                       "_grad_accum_fusion_available (apex is in the container)",
            "overlap_p2p": f"{cb} L154-156: on with pp > 1 and vp > 1 (the interleaved case)",
            "uneven_pipeline": f"{nemo} nemo/collections/llm/recipes/llama31_405b.py L72-73, L118 pass "
                               "account_for_embedding/loss_in_pipeline_split to Megatron-Core",
            "interleave_min_pp": f"{t.core} training/arguments.py: interleaving needs pipeline size > 1",
            "moe_dispatcher": f"{t.core} training/arguments.py {t.dispatcher} --moe-token-dispatcher-type default "
                              "allgather",
            "overlap_moe_a2a": "not in this Megatron-Core (--overlap-moe-expert-parallel-comm: core_v0.14.0)",
            "moe_fp8_padding": f"{t.core} transformer_config.py {t.grouped} moe_grouped_gemm default False (NeMo's "
                               "MixtralConfig and perf scripts leave it): the experts are SequentialMLP; "
                               "--moe-grouped-gemm selects TEGroupedMLP, which pads each expert's rows under fp8 "
                               f"(moe/experts.py {t.fp8_pad} Fp8Padding)",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": t.random or f"no forced load balancing in {t.core} (moe_router_force_load_"
                                              "balancing and RandomSTE arrive in core 0.13)",
            "moe_combine_saves": f"{t.core} {t.combine}",
            "loss_copy": f"{gpt}base.py {t.fusion.split(',')[0]} cross_entropy_loss_fusion = True with {t.core} "
                         "megatron/core/model_parallel_config.py L220 cross_entropy_fusion_impl = 'native': "
                         "fusions/fused_cross_entropy.py L119 saves the fp32 exp_logits of an fp32 upcast "
                         "(tensor_parallel/cross_entropy.py L28); the perf scripts' 'te' is a flag of the run",
            "fp8_scaling": f"{nemo} nemo/lightning/pytorch/plugins/mixed_precision.py L71 fp8_recipe = 'delayed'; "
                           f"{prec} L56-70 bf16_with_fp8_mixed L66 'delayed'; the perf scripts' --fp8_recipe default "
                           f"'ds' (per-tensor delayed scaling, scripts/performance/argument_parser.py {t.perf_fp8}); "
                           "'cs' (tensorwise) is a flag of the run",
            "fp8_training": FP8_OFFERED,
            "fp8_params": f"{nemo} nemo/lightning/pytorch/plugins/mixed_precision.py {t.fp8_params} "
                          f"(bf16_with_fp8_mixed turns it on, {prec} L70: a flag of the run)",
            "tp_rs": _TE_UB.format(cb + " tp_comm_overlap_cfg None", "v2.x")}
    defaults = {"micro_batch": Setting(1, f"{nemo} nemo/collections/llm/recipes/llama3_70b.py L192 pretrain_recipe "
                                          "MockDataModule micro_batch_size=1"),
                "v": Setting(1, "no interleaving unless the recipe sets virtual_pipeline_model_parallel_size"),
                "recompute": Setting("none", t.core + " --recompute-granularity default None"),
                "sp": Setting(False, f"{t.core} --sequence-parallel (store_true: off); the perf scripts turn it on "
                                     f"at tp > 1 ({t.perf_sp}: a flag of the run)"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, t.core + " --context-parallel-size default 1"),
                "distributed_optimizer": Setting(True, f"{nemo} nemo/collections/llm/recipes/optim/adam.py L47 "
                                                       "use_distributed_optimizer=True"),
                "etp": Setting(0, t.core + " model_parallel_config.py: expert_tensor_parallel_size None = tp"),
                "account_for_embedding": Setting(False, t.core + " --account-for-embedding-in-pipeline-split off"),
                "account_for_loss": Setting(False, t.core + " --account-for-loss-in-pipeline-split off")}
    ce = Flag("loss_copy", {"native": LossCopy.FP32, "te": LossCopy.NONE},
              f"{t.core} training/arguments.py --cross-entropy-fusion-impl (NeMo: model.config.cross_entropy_fusion_"
              f"impl; the perf scripts set 'te'): TE parallel_cross_entropy overwrites the logits with their gradient "
              f"and saves only them ({t.te} transformer_engine/pytorch/cross_entropy.py)")
    return Release(fw, FrameworkFamily.MEGATRON_CORE, t.software, t.date,
                   f"{t.software.removeprefix('nemo-')} NeMo container: NeMo {t.tag} llm recipes and "
                   f"scripts/performance on {t.core}", cite, defaults,
                   {**megatron_core_flags(t.core_minor), "--cross-entropy-fusion-impl": ce,
                    "--moe-grouped-gemm": _grouped_flag(t.core, t.grouped, t.fp8_pad),
                    **_ub_flag(_NEMO_2_3_UB, f"{nemo} nemo/collections/llm/recipes/tp_overlap_configs/userbuffers.py "
                                             "L84-336"),
                    **nemo_grad_reduce_flag(nemo2_grad_reduce(t.tag, t.ddp_dtype)),
                    **_offload_flag(f"NeMo@{t.tag}", t.tag, t.core)})


_COMBINE_0_12 = ("token_dispatcher.py L641-645 " + COMBINE_PROBS)
_COMBINE_0_13 = ("token_dispatcher.py L788 unpermute(...) without probs; experts.py L779 weighted_bias_swiglu_impl: "
                 + COMBINE_NO_PROBS)
_NEMO_25_04 = _Nemo2(
    "nemo-25.04", "v2.3.0", "2025-05-08", "ML@3cdfd613 (core 0.12.0rc4, NeMo@v2.3.0 requirements/manifest.json)", 12,
    "TE@bee4649c (2.2.0.dev0) L42-46", "L290,L291", "L514-515", "L80-91", "L116 fp8_param_gather: bool = False",
    "scripts/performance/utils.py L279", "L2546-2548", "L698", "L397; arguments.py L2489", _COMBINE_0_12, True, "", "L423")
_NEMO_25_07 = _Nemo2(
    "nemo-25.07", "v2.4.0", "2025-07-25", "ML@03f77931 (core 0.13.0rc1, NeMo@v2.4.0 requirements/manifest.json)", 13,
    "TE@f05f12c9 (2.5.0) L49-53", "L301,L302", "L543-544", "L88-100",
    "L117, L135-136 fp8_param_gather None -> False", "scripts/performance/helpers.py L395", "L2790-2792", "L729", "L455; arguments.py L2725",
    _COMBINE_0_13, False,
    "ML@03f77931 (core 0.13.0rc1) megatron/core/transformer/moe/moe_utils.py L820 RandomSTE: forced balancing "
    "(router.py L444 moe_router_force_load_balancing) draws random logits per token", "L450")

NEMO1_TAGS = {t.software: t for t in (_NEMO_24_09, _NEMO_24_12)}
NEMO2_TAGS = {t.software: t for t in (_NEMO_25_04, _NEMO_25_07)}


def nemo_release(name: str, software: str) -> Release:
    """The preset of one NeMo container in ``NEMO1_TAGS`` or ``NEMO2_TAGS`` (by its software name)."""
    if software in NEMO1_TAGS:
        return _nemo1_release(name, NEMO1_TAGS[software])
    return _nemo2_release(name, NEMO2_TAGS[software])


__all__ = ["NEMO1_TAGS", "NEMO2_TAGS", "nemo_release"]
