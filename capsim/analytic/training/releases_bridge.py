"""Megatron-Bridge releases as the NeMo containers ship them, other than 26.04.01 (``releases_current.py``): 25.09,
25.11, 26.02, 26.02.01, 26.04, 26.06 and 26.06.01. Each is one :class:`Release` read at the Bridge tag its container
ships (docs/versions1.json: "0.2.0 · 25.11", "0.3.0 · 26.02", "0.3.1 · 26.02.01", "0.4.0 · 26.04", "0.5.0 · 26.06",
"0.5.1 · 26.06.01"; docs/releases/software-versions.md: 25.09 = "Megatron-Bridge 0.1.0rc3"), the same facts the
26.04.01 preset cites, at that tag's lines.

What every one of these tags shares (read at each): CommOverlapConfig turns the DP gradient reduce-scatter and
parameter all-gather overlap on whenever dp > 1, p2p overlap with vp > 1, and TP overlap off unless the recipe turns
it on; the userbuffers configs of the Llama perf scripts (``_ub_flag``) are the same TransformerLayerTPOverlapCfg
blocks at every tag from v0.1.0rc3 to v0.5.1 (``git diff`` of src/megatron/bridge/training/comm_overlap.py between
the tags touches only type hints, CUDA-graph asserts and the bootstrap backend); sequence parallel is on exactly at
tp > 1 (scripts/performance/utils: WorkloadBaseConfig.sequence_parallel, v0.1.0rc3 apply_perf_matrix_overrides);
Megatron-Core's MoE dispatcher default is allgather and overlap_moe_expert_parallel_comm is off. What differs: the
FP8 recipe of the perf scripts' "fp8" (from v0.2.0 ``fp8_cs``, bf16_with_fp8_current_scaling_mixed: fp8_recipe
"tensorwise", fp8_param_gather True, first/last BF16 layers off; v0.1.0rc3 --fp8_recipe default "ds", delayed
scaling, fp8_param_gather True), the Megatron-Core version, the micro-batch default (1 in the v0.1.0rc3-v0.3.0 Llama
recipes, 2 in recipes/common.py from v0.3.1), and the lines.

No preset covers another container: each tag pins a different Megatron-Core commit (a cited fact), so none is
described identically by another's citations. (NeMo 25.11's software-versions.md lists Megatron Core "dev:0.15.0";
the 25.11 preset cites the commit v0.2.0's 3rdparty/Megatron-LM pins, 0.16.0rc0.)

Citations: ``MB@<tag>`` github.com/NVIDIA-NeMo/Megatron-Bridge, ``ML@<commit>`` github.com/NVIDIA/Megatron-LM (the
commit 3rdparty/Megatron-LM points to at that tag; for 25.09 the core_v0.14.0 release tag).
"""

from __future__ import annotations

from dataclasses import dataclass

from capsim.analytic.eager import YarnRope
from capsim.analytic.fp8 import NormQuantize
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.core_flags import megatron_core_flags
from capsim.analytic.training.release import (
    COMBINE_NO_PROBS,
    FLEX_DEEPEP,
    FP8_OFFERED,
    FUSED_CE,
    ONE_SCHEDULE,
    SPREAD_EXPERTS,
    TE_NORM_FP8_AMAX,
    Framework,
    FrameworkFamily,
    LossCopy,
    MoeDispatcher,
    Release,
    Reshard,
    Setting,
)
from capsim.analytic.training.releases_current import (
    _MB_0_4_2_UB,
    _TE_ATTN,
    _TE_UB,
    _UB,
    _megatron_common,
    _ub_flag,
    bridge_param_flags,
    eager_cites,
    op_fuser_flag,
)
from capsim.specs.precision import Fp8Scaling


@dataclass(frozen=True)
class _Tag:
    """Where one Bridge tag states each fact the preset prices (file and lines at that tag)."""

    tag: str  # the Bridge tag, e.g. "v0.2.0"
    software: str  # the container as validation data name it
    date: str  # the tag's commit date
    core: str  # "ML@<commit> (core 0.x.y)", the 3rdparty/Megatron-LM submodule at this tag
    core_minor: int  # Megatron-Core 0.<minor>: which core flags exist
    tp_off: str  # comm_overlap.py: tp_comm_overlap off unless the recipe turns it on
    p2p: str  # comm_overlap.py: overlap_p2p_comm with vp > 1
    dp: str  # comm_overlap.py: grad-reduce / param-gather overlap with dp > 1
    ub: str  # comm_overlap.py: the userbuffers configs
    fp8: str  # mixed_precision.py: the FP8 config's lines (def, recipe, fp8_param_gather)
    fp8_cs: str  # which FP8 config the perf scripts' "fp8" runs, and where
    sp: str  # the perf scripts' sequence-parallel rule
    micro: tuple[int, str]  # the recipes' micro_batch_size and where
    dist_opt: str  # the recipes' use_distributed_optimizer=True and where
    dispatcher: str  # transformer_config.py moe_token_dispatcher_type default line
    a2a: str  # model_parallel_config.py overlap_moe_expert_parallel_comm default line
    scaling: Fp8Scaling = Fp8Scaling.CURRENT  # that FP8 config's recipe
    nvfp4: str = ""  # mixed_precision.py: bf16_with_nvfp4_mixed's lines (its param-gather settings)


def _bridge_release(name: str, t: _Tag) -> Release:
    """A Megatron-Bridge release: the 26.04.01 preset's behaviour, every fact read at tag ``t``."""
    mb, co = f"MB@{t.tag}", f"MB@{t.tag} src/megatron/bridge/training/comm_overlap.py"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8_AMAX, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   moe_fp8_padding=True, moe_random_routing=True, moe_combine_saves=False, loss_copy=LossCopy.NONE,
                   fp8_scaling=t.scaling, fp8_params=True, reshard_after_forward=Reshard.ALWAYS,
                   defer_grad_sync=False, **({"glu_clamp_eager": True, "yarn_rope": YarnRope.MEGATRON}
                                             if t.software in _ROPE_FUSION_OFF else {}))
    cite = {**_megatron_common(t.core), **eager_cites(t.core, mb, *_ROPE_FUSION_OFF.get(t.software, (0, 0))),
            "norm_quantize": f"{mb} pyproject.toml / uv.lock: TE 2.9 or later (v0.2.0: >=2.9.0a0; v0.4.x: TE@71bbefbf): "
                             + TE_NORM_FP8_AMAX,
            "attention": t.core + " " + _TE_ATTN,
            "dropout": f"{mb} src/megatron/bridge/models/gpt_provider.py, llama/llama_provider.py, "
                       "qwen/qwen_provider.py: hidden_dropout and attention_dropout 0.0",
            "overlap_grad_reduce": f"{co} {t.dp}: on whenever dp > 1; {t.dist_opt}",
            "overlap_param_gather": f"{co} {t.dp}: on whenever dp > 1",
            "overlap_tp_comm": f"{co} {t.tp_off}: off unless the recipe turns it on ({_UB})",
            "fused_grad_accumulation": t.core + " gradient_accumulation_fusion on where TE/apex provide the fused wgrad",
            "overlap_p2p": f"{co} {t.p2p}: on with vp > 1 (the interleaved case)",
            "uneven_pipeline": t.core + " account_for_embedding/loss_in_pipeline_split, pipeline_model_parallel_layout",
            "interleave_min_pp": t.core + " interleaving needs pipeline size > 1",
            "moe_dispatcher": f"{t.core} megatron/core/transformer/transformer_config.py {t.dispatcher} "
                              "moe_token_dispatcher_type default 'allgather'",
            "overlap_moe_a2a": f"{t.core} megatron/core/model_parallel_config.py {t.a2a} "
                               "overlap_moe_expert_parallel_comm: bool = False",
            "moe_fp8_padding": f"{t.core} megatron/core/transformer/moe/experts.py L{_FP8_PAD_LINE[t.software]}: "
                               "TEGroupedMLP under fp8 pads each expert's rows (TE Fp8Padding); the Qwen3 and "
                               "GPT-OSS-120B perf configs leave moe_router_padding_for_quantization at False",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": f"{t.core} megatron/core/transformer/moe/moe_utils.py "
                                  f"L{_RANDOM_STE_LINE[t.software]} RandomSTE: forced balancing draws i.i.d. normal "
                                  "logits per token (router.py: apply_random_logits)",
            "moe_combine_saves": f"{t.core} {COMBINE_NO_PROBS}",
            "loss_copy": f"{mb} {FUSED_CE}",
            "fp8_scaling": f"{t.fp8_cs} ({mb} src/megatron/bridge/training/mixed_precision.py {t.fp8})",
            "fp8_training": FP8_OFFERED,
            "fp8_params": f"{mb} src/megatron/bridge/training/mixed_precision.py {t.fp8}: fp8_param_gather = True",
            "tp_rs": _TE_UB.format(co + " tp_comm_overlap_cfg None", "v2.x")}
    defaults = {"micro_batch": Setting(t.micro[0], t.micro[1]),
                "v": Setting(1, "no interleaving unless the recipe sets virtual_pipeline_model_parallel_size"),
                "recompute": Setting("none", t.core + " recompute_granularity default None"),
                "sp": Setting(False, f"{t.sp}: sequence_parallel = tp > 1 (off at tp = 1)"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, t.core + " context_parallel_size default 1"),
                "distributed_optimizer": Setting(True, t.dist_opt),
                "etp": Setting(0, t.core + " model_parallel_config.py: expert_tensor_parallel_size None = tp"),
                "account_for_embedding": Setting(False, t.core + " account_for_embedding_in_pipeline_split off"),
                "account_for_loss": Setting(False, t.core + " account_for_loss_in_pipeline_split off")}
    return Release(fw, FrameworkFamily.MEGATRON_CORE, t.software, t.date,
                   f"Megatron-Bridge {t.tag} ({t.software.removeprefix('megatron-bridge-')} NeMo container) recipes "
                   f"and scripts/performance configs, on {t.core}", cite, defaults,
                   {**megatron_core_flags(t.core_minor), **_ub_flag(_MB_0_4_2_UB, f"{co} {t.ub}"),
                    **bridge_param_flags(t.tag, t.nvfp4),
                    **(op_fuser_flag(t.core) if t.core_minor >= 18 else {})})


# comm_overlap.py lines: identical file v0.2.0-v0.3.1, and v0.4.0-v0.4.2, and v0.5.0-v0.5.1 (git diff empty).
_CO_0_2 = {"tp_off": "L431-432", "p2p": "L452-453", "dp": "L539-542", "ub": "L95-197"}
_CO_0_4 = {"tp_off": "L434-435", "p2p": "L455-456", "dp": "L576-579", "ub": "L98-200"}
_CO_0_5 = {"tp_off": "L434-435", "p2p": "L455-456", "dp": "L563-566", "ub": "L98-200"}


def _fp8_cs(tag: str) -> str:
    where = "helpers.py L37-41" if tag == "v0.2.0" else "precision.py L28-32"
    return (f"MB@{tag} scripts/performance/utils/{where} get_precision_config: the perf scripts' fp8 is fp8_cs, "
            "bf16_with_fp8_current_scaling_mixed: fp8_recipe 'tensorwise'")


def _recipe_micro(tag: str, mbs_line: int, opt_line: int) -> tuple[tuple[int, str], str]:
    """v0.2.0 / v0.3.0: no recipes/common.py; the Llama recipes' own defaults."""
    where = f"MB@{tag} src/megatron/bridge/recipes/llama/llama3.py"
    return ((1, f"{where} L{mbs_line} micro_batch_size: int = 1"),
            f"{where} L{opt_line} use_distributed_optimizer=True")


def _common_micro(tag: str, mbs_line: int, opt_line: int) -> tuple[tuple[int, str], str]:
    where = f"MB@{tag} src/megatron/bridge/recipes/common.py _pretrain_common"
    return (2, f"{where} L{mbs_line} micro_batch_size=2"), f"{where} L{opt_line} use_distributed_optimizer=True"


def _tag(tag: str, software: str, date: str, core: str, minor: int, co: dict[str, str], fp8: str, sp: str,
         micro: tuple[tuple[int, str], str], dispatcher: str, a2a: str, nvfp4: str) -> _Tag:
    return _Tag(tag, software, date, core, minor, co["tp_off"], co["p2p"], co["dp"], co["ub"], fp8, _fp8_cs(tag),
                f"MB@{tag} scripts/performance/utils/utils.py {sp}", micro[0], micro[1], dispatcher, a2a,
                nvfp4=nvfp4)


# 25.09 ships Megatron-Bridge 0.1.0rc3 and Megatron Core 0.14.0 (docs/releases/software-versions.md at v0.2.0,
# "NeMo Framework 25.09"); v0.1.0rc3 has no 3rdparty submodule, so the core is its release tag. Its perf scripts
# (run_script.py + per-model YAML perf_matrix) take --compute_dtype fp8 with --fp8_recipe, default "ds".
_RC3 = "MB@v0.1.0rc3"
_TAG_25_09 = _Tag(
    "v0.1.0rc3", "megatron-bridge-25.09", "2025-10-08", "ML@core_v0.14.0 (23e00ed0)", 14,
    "L433-434", "L455-456", "L542-545", "L95-197", "L183-197 (L193 fp8_recipe 'delayed', L195-196 amax history "
    "1024 'max', L197 fp8_param_gather = True)",
    f"{_RC3} scripts/performance/argument_parser.py L95-107: --fp8_recipe default 'ds' (per-tensor delayed "
    "scaling); utils/helpers.py L92-96 get_precision_config: bf16_with_fp8_delayed_scaling_mixed",
    f"{_RC3} scripts/performance/utils/helpers.py L169 apply_perf_matrix_overrides",
    (1, f"{_RC3} src/megatron/bridge/recipes/llama/llama3_70b.py L91 micro_batch_size: int = 1"),
    f"{_RC3} src/megatron/bridge/recipes/llama/llama3_70b.py L184 use_distributed_optimizer=True",
    "L509", "L240", Fp8Scaling.DELAYED, "(no bf16_with_nvfp4_mixed at this tag)")


# Megatron-Bridge's GPTModelProvider.provide turns RoPE fusion off where fusions.validate_rope_fusion_compatibility
# fails (position type not "rope"): (the provide line, the check's line in src/megatron/bridge/utils/fusions.py).
# Not at v0.1.0rc3 (25.09), whose core (core_v0.14.0) has neither the clamped GLU nor the mscale check.
_ROPE_FUSION_OFF = {"megatron-bridge-25.11": (199, 67), "megatron-bridge-26.02": (212, 67),
                    "megatron-bridge-26.02.01": (210, 67), "megatron-bridge-26.04": (221, 85),
                    "megatron-bridge-26.06": (225, 85), "megatron-bridge-26.06.01": (225, 85)}

# The line of TEGroupedMLP.__init__ that builds Fp8Padding(num_local_experts) at each container's Megatron-Core.
_FP8_PAD_LINE = {"megatron-bridge-25.09": 815, "megatron-bridge-25.11": 839, "megatron-bridge-26.02": 605,
                 "megatron-bridge-26.02.01": 605, "megatron-bridge-26.04": 247, "megatron-bridge-26.06": 290,
                 "megatron-bridge-26.06.01": 290}

# The line of moe_utils.py's RandomSTE (forced balancing's random logits) at each container's Megatron-Core.
_RANDOM_STE_LINE = {"megatron-bridge-25.09": 874, "megatron-bridge-25.11": 901, "megatron-bridge-26.02": 1112,
                    "megatron-bridge-26.02.01": 1110, "megatron-bridge-26.04": 1194, "megatron-bridge-26.06": 1138,
                    "megatron-bridge-26.06.01": 1138}

TAGS: dict[str, _Tag] = {t.software: t for t in (
    _TAG_25_09,
    _tag("v0.2.0", "megatron-bridge-25.11", "2025-11-26", "ML@0d8e0714 (core 0.16.0rc0)", 16, _CO_0_2,
         "L272-289 (L285, L289)", "L59-62 (applied by helpers.py L63)", _recipe_micro("v0.2.0", 452, 559),
         "L596", "L240", "L392-402"),
    _tag("v0.3.0", "megatron-bridge-26.02", "2026-02-26", "ML@b0cc2706 (core 0.16.0)", 16, _CO_0_2,
         "L272-289 (L285, L289)", "L68-71", _recipe_micro("v0.3.0", 453, 560), "L675", "L264", "L392-402"),
    _tag("v0.3.1", "megatron-bridge-26.02.01", "2026-03-20", "ML@55ac7082 (core 0.16.1)", 16, _CO_0_2,
         "L272-289 (L285, L289)", "L68-71", _common_micro("v0.3.1", 66, 82), "L675", "L264", "L392-402"),
    _tag("v0.4.0", "megatron-bridge-26.04", "2026-04-16", "ML@d7288711 (core 0.17.0rc0)", 17, _CO_0_4,
         "L277-294 (L290, L294)", "L68-71", _common_micro("v0.4.0", 67, 87), "L750", "L256", "L397-407"),
    _tag("v0.5.0", "megatron-bridge-26.06", "2026-06-16", "ML@d0b3b775 (core 0.18.0)", 18, _CO_0_5,
         "L285-302 (L298, L302)", "L73-76", _common_micro("v0.5.0", 67, 87), "L792", "L256", "L405-416"),
    _tag("v0.5.1", "megatron-bridge-26.06.01", "2026-07-20", "ML@458c8d0e (core 0.18.2)", 18, _CO_0_5,
         "L285-302 (L298, L302)", "L73-76", _common_micro("v0.5.1", 67, 87), "L792", "L256", "L405-416"),
)}


def megatron_bridge(name: str, software: str) -> Release:
    """The preset of one Megatron-Bridge container in ``TAGS`` (by its software name)."""
    return _bridge_release(name, TAGS[software])


__all__ = ["TAGS", "megatron_bridge"]
