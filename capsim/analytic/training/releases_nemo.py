"""NeMo containers of late 2025 and early 2026, whose LLM recipes are Megatron-Bridge's: the 25.11 container
(Megatron-Bridge v0.2.0 on Megatron-Core 0.16.0rc0) and, described identically, the 26.02 container (v0.3.0 on
Megatron-Core 0.16.0); the 26.02.01 (v0.3.1) and 26.04 (v0.4.0) containers, described as 26.04.01 (v0.4.2,
``releases_current.py``) and their citations read again at their own tags. Each is a :class:`Release` like those of ``releases_current.py``: a cited value for every
behaviour field, the documented defaults of unpublished layout settings, and the flags a run's recipe states.

Citations: ``MB@<tag>`` is github.com/NVIDIA-NeMo/Megatron-Bridge (docs/versions1.json: "0.2.0 · 25.11",
"0.3.0 · 26.02"); ``ML@<commit>`` github.com/NVIDIA/Megatron-LM at the commit each Bridge tag pins as
3rdparty/Megatron-LM (v0.2.0: 0d8e0714 of 2025-11-17, core 0.16.0rc0; v0.3.0: b0cc2706 of 2026-02-23, core 0.16.0).

Checked for the 26.02 container (one function, two releases): comm_overlap.py and mixed_precision.py are the same files at v0.2.0
and v0.3.0 (``git diff v0.2.0 v0.3.0`` is empty for both); recipes/llama/llama3.py keeps micro_batch_size=1 and
use_distributed_optimizer=True (L453, L560 at v0.3.0); scripts/performance/utils/precision.py L28-31 maps fp8_cs to
the same current-scaling recipe; utils.py L68-71 keeps sequence_parallel = tp > 1; the userbuffers configs the
recipes pick are the same (L95-199 at both tags); Megatron-Core b0cc2706 keeps the allgather dispatcher default
(transformer/transformer_config.py L675) and overlap_moe_expert_parallel_comm off (model_parallel_config.py L264).
The 26.04.01 container (``megatron-bridge-26.04.01``) differs: its recipes' micro-batch default is 2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.release import (
    Flag,
    Framework,
    FrameworkFamily,
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
    megatron_bridge_26_04_01,
    megatron_core_flags,
)
from capsim.specs.precision import Fp8Scaling

# The userbuffers configs are the same at v0.2.0 and v0.3.0 L95-199 as at v0.4.2 L98-200 (proj_fprop and fc2_fprop:
# the BF16 H100 configs pipelined, 4 splits, num_sm 24 and 16 (8 at h16384), set_sm_margin; the FP8 ones ring-exchange).
_MB_0_2_UB = dict(_MB_0_4_2_UB)


@dataclass(frozen=True)
class _BridgeTag:
    """Where one Megatron-Bridge tag states the facts of ``_bridge_0_2`` (the lines that moved between tags)."""

    tag: str  # MB@<tag>
    core: str  # the Megatron-Core it pins, as cited
    precision: str  # scripts/performance: where fp8_cs maps to the current-scaling recipe
    sp_lines: str  # scripts/performance/utils/utils.py: sequence_parallel = tp > 1
    micro_line: int  # recipes/llama/llama3.py _llama3_common micro_batch_size=1
    distopt_line: int  # recipes/llama/llama3.py use_distributed_optimizer=True
    dispatcher: str  # Megatron-Core: moe_token_dispatcher_type default
    moe_overlap: str  # Megatron-Core: overlap_moe_expert_parallel_comm default


_V0_2_0 = _BridgeTag("v0.2.0", "ML@0d8e0714 (core 0.16.0rc0, 2025-11-17, Bridge v0.2.0's 3rdparty/Megatron-LM)",
                     "scripts/performance/utils/helpers.py L37-41", "L59-62", 452, 559,
                     "training/arguments.py L3217-3219 --moe-token-dispatcher-type default allgather "
                     "(transformer/transformer_config.py L596)",
                     "training/arguments.py L3243 --overlap-moe-expert-parallel-comm (store_true: off)")
_V0_3_0 = _BridgeTag("v0.3.0", "ML@b0cc2706 (core 0.16.0, 2026-02-23, Bridge v0.3.0's 3rdparty/Megatron-LM)",
                     "scripts/performance/utils/precision.py L28-31", "L68-71", 453, 560,
                     "transformer/transformer_config.py L675 moe_token_dispatcher_type = 'allgather'",
                     "model_parallel_config.py L264 overlap_moe_expert_parallel_comm = False")


def _bridge_0_2(name: str, at: _BridgeTag) -> tuple[Framework, dict[str, str], dict[str, Setting]]:
    """The behaviour, citations and defaults Megatron-Bridge v0.2.0 and v0.3.0 share (comm_overlap.py and
    mixed_precision.py are the same file at both tags: ``git diff v0.2.0 v0.3.0`` is empty for them)."""
    mb = f"MB@{at.tag} "
    co = mb + "src/megatron/bridge/training/comm_overlap.py"
    llama = mb + "src/megatron/bridge/recipes/llama/llama3.py"
    mp = mb + "src/megatron/bridge/training/mixed_precision.py"
    mc = at.core.split(" ")[0]
    fw = Framework(name, AttentionImpl.FLASH, dropout=False, overlap_grad_reduce=True, overlap_param_gather=True,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   fp8_scaling=Fp8Scaling.CURRENT, fp8_params=True, reshard_after_forward=Reshard.ALWAYS,
                   defer_grad_sync=False)
    cite = {**_megatron_common(at.core),
            "attention": at.core + " " + _TE_ATTN,
            "dropout": mb + "src/megatron/bridge/models/llama/llama_provider.py L48-49, L115-116 and models/qwen/"
                            "qwen_provider.py L58-59: attention and hidden dropout 0.0",
            "overlap_grad_reduce": co + " L539-542: on whenever dp > 1",
            "overlap_param_gather": co + " L539-542: on whenever dp > 1",
            "overlap_tp_comm": co + " L431: off unless the recipe turns it on (" + _UB + ")",
            "fused_grad_accumulation": mc + " gradient_accumulation_fusion on where TE/apex provide the fused wgrad",
            "overlap_p2p": co + " L451-453: on with pp > 1 and vp > 1 (the interleaved case)",
            "uneven_pipeline": llama + " L413-414 (405B) pass account_for_embedding/loss_in_pipeline_split to "
                                       "Megatron-Core",
            "interleave_min_pp": mc + " training/arguments.py: interleaving needs pipeline size > 1",
            "moe_dispatcher": mc + " " + at.dispatcher,
            "overlap_moe_a2a": mc + " " + at.moe_overlap,
            "fp8_scaling": mb + at.precision + ": the tables' FP8-CS is fp8_cs, bf16_with_fp8_current_scaling_mixed "
                           "(" + mp + " L272-289: fp8_recipe 'tensorwise')",
            "fp8_params": mp + " L289 fp8_param_gather = True",
            "tp_rs": _TE_UB.format(co + " L432 tp_comm_overlap_cfg None", "v2.x")}
    defaults = {"micro_batch": Setting(1, f"{llama} _llama3_common L{at.micro_line} micro_batch_size=1"),
                "v": Setting(1, "no interleaving unless the recipe sets virtual_pipeline_model_parallel_size"),
                "recompute": Setting("none", mc + " --recompute-granularity default None"),
                "sp": Setting(False, f"{mb}scripts/performance/utils/utils.py {at.sp_lines}: sequence_parallel = "
                                     "tp > 1 (off at tp = 1)"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, mc + " --context-parallel-size default 1"),
                "distributed_optimizer": Setting(True, f"{llama} L{at.distopt_line} use_distributed_optimizer=True"),
                "etp": Setting(0, mc + " model_parallel_config.py: expert_tensor_parallel_size None = tp"),
                "account_for_embedding": Setting(False, mc + " --account-for-embedding-in-pipeline-split off"),
                "account_for_loss": Setting(False, mc + " --account-for-loss-in-pipeline-split off")}
    return fw, cite, defaults


def _flags(at: _BridgeTag) -> dict[str, object]:
    return {**megatron_core_flags(16), **_ub_flag(_MB_0_2_UB, f"MB@{at.tag} src/megatron/bridge/training/"
                                                               "comm_overlap.py L95-199")}


def megatron_bridge_25_11(name: str) -> Release:
    """Megatron-Bridge v0.2.0 (the NeMo 25.11 container)."""
    fw, cite, defaults = _bridge_0_2(name, _V0_2_0)
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "megatron-bridge-25.11", "2025-11-26",
                   "Megatron-Bridge v0.2.0 (7af9601c, 2025-11-26; NeMo 25.11 container) recipes and "
                   "scripts/performance configs", cite, defaults, _flags(_V0_2_0))


def megatron_bridge_26_02(name: str) -> Release:
    """Megatron-Bridge v0.3.0 (the NeMo 26.02 container): 25.11's facts at the same or shifted lines. Not a
    ``covers`` range of 25.11: a range ending at "megatron-bridge-26.02" also covers 26.02.01 (Release.covers_release
    reads "26.02" as every 26.02.x), and v0.3.1 (26.02.01) rewrote recipes/llama/llama3.py."""
    fw, cite, defaults = _bridge_0_2(name, _V0_3_0)
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "megatron-bridge-26.02", "2026-02-26",
                   "Megatron-Bridge v0.3.0 (21b02e0c, 2026-02-26; NeMo 26.02 container) recipes and "
                   "scripts/performance configs", cite, defaults, _flags(_V0_3_0))


# Megatron-Bridge v0.4.0 (NeMo 26.04) against v0.4.2 (26.04.01), at every line megatron_bridge_26_04_01 cites:
# comm_overlap.py, recipes/common.py, recipes/llama, recipes/qwen, scripts/performance/utils/{precision,utils}.py are
# the same files (``git diff v0.4.0 v0.4.2`` is empty for them); mixed_precision.py adds FP4 fields above
# bf16_with_fp8_current_scaling_mixed, which moves from L291-309 to L277-295 unchanged; the H100 workload configs of
# scripts/performance/configs/{llama,qwen} are the same (the diff touches LoRA and B300 configs only). The
# Megatron-Core it pins differs: d7288711 (core 0.17.0rc0, 2026-04-09), whose transformer_config.py L750 keeps the
# allgather dispatcher default and model_parallel_config.py L256 overlap_moe_expert_parallel_comm off.
_V0_4_0_TEXT = (("MB@v0.4.2", "MB@v0.4.0"), ("mixed_precision.py L291-309", "mixed_precision.py L277-295"),
                ("mixed_precision.py L308", "mixed_precision.py L294"),
                ("ML@2edffadb (core 0.17.1, Bridge v0.4.2's", "ML@d7288711 (core 0.17.0rc0, Bridge v0.4.0's"))
# Megatron-Bridge v0.3.1 (NeMo 26.02.01) against v0.4.2: recipes/common.py _pretrain_common sets the same micro-batch
# (2), DDP overlaps and distributed optimizer at L66, L78-79, L82 (v0.4.2: L67, L83-84, L87), and the Llama recipes
# build on it as v0.4.2's do (recipes/llama/llama3.py L47, AutoBridge.from_hf_pretrained L50); comm_overlap.py and
# mixed_precision.py are v0.3.0's (``git diff v0.3.0 v0.3.1`` is empty for both): the same logic and userbuffers
# configs 3 lines up (L95-199 against v0.4.2's L98-202, identical text), bf16_with_fp8_current_scaling_mixed at
# L272-289; scripts/performance/utils/precision.py L26-31 and utils.py L68-71 read as at v0.4.2. Megatron-Core
# 55ac7082 (core 0.16.1, 2026-03-16): transformer_config.py L675 allgather default, model_parallel_config.py L264
# overlap_moe_expert_parallel_comm off.
_V0_3_1_TEXT = (("MB@v0.4.2", "MB@v0.3.1"), ("comm_overlap.py L576-579", "comm_overlap.py L539-542"),
                ("comm_overlap.py L434", "comm_overlap.py L431"), ("comm_overlap.py L455-456", "comm_overlap.py L452-453"),
                ("comm_overlap.py L98-200", "comm_overlap.py L95-199"),
                ("_pretrain_common L83", "_pretrain_common L78"), ("_pretrain_common L84", "_pretrain_common L79"),
                ("_pretrain_common L67", "_pretrain_common L66"), ("_pretrain_common L87", "_pretrain_common L82"),
                ("mixed_precision.py L291-309", "mixed_precision.py L272-289"),
                ("mixed_precision.py L308", "mixed_precision.py L289"),
                ("ML@2edffadb (core 0.17.1, Bridge v0.4.2's", "ML@55ac7082 (core 0.16.1, Bridge v0.3.1's"))


def _reread(name: str, text: tuple[tuple[str, str], ...], core: str, **release: str) -> Release:
    """megatron_bridge_26_04_01's Release with every citation moved to another tag by ``text`` (old, new) pairs,
    the dispatcher and MoE-overlap defaults of the Megatron-Core that tag pins (``core``: commit and two lines)."""

    def moved(source: str) -> str:
        for old, new in text:
            source = source.replace(old, new)
        return source

    ref = megatron_bridge_26_04_01(name)
    commit, dispatcher, overlap = core.split("|")
    cite = {k: moved(v) for k, v in ref.cite.items()}
    cite["moe_dispatcher"] += f"; ML@{commit} transformer/transformer_config.py {dispatcher} default 'allgather'"
    cite["overlap_moe_a2a"] += f"; ML@{commit} model_parallel_config.py {overlap} default False"
    return replace(ref, cite=cite, defaults={k: replace(s, source=moved(s.source)) for k, s in ref.defaults.items()},
                   flags={k: Flag(f.field, f.values, moved(f.source)) for k, f in ref.flags.items()}, **release)


def megatron_bridge_26_04(name: str) -> Release:
    """Megatron-Bridge v0.4.0 (the NeMo 26.04 container): 26.04.01's facts, read again at v0.4.0 (``_V0_4_0_TEXT``).
    Not a ``covers`` range: "megatron-bridge-26.04" stands for every 26.04.x, which no range ending at 26.04.01
    holds whole."""
    return _reread(name, _V0_4_0_TEXT, "d7288711|L750|L256", software="megatron-bridge-26.04", date="2026-04-16",
                   code="Megatron-Bridge v0.4.0 (0fbfe7d3, 2026-04-16; NeMo 26.04 container) recipes and "
                        "scripts/performance configs, the same as v0.4.2's at every cited line")


def megatron_bridge_26_02_01(name: str) -> Release:
    """Megatron-Bridge v0.3.1 (the NeMo 26.02.01 container): its recipes moved to 26.04.01's common base (micro-batch
    2), so it is 26.04.01's facts read at v0.3.1 (``_V0_3_1_TEXT``), not 26.02's."""
    return _reread(name, _V0_3_1_TEXT, "55ac7082|L675|L264", software="megatron-bridge-26.02.01", date="2026-03-20",
                   code="Megatron-Bridge v0.3.1 (9c9dd848, 2026-03-20; NeMo 26.02.01 container) recipes and "
                        "scripts/performance configs, the same facts as v0.4.2's at the cited lines")


__all__ = ["megatron_bridge_25_11", "megatron_bridge_26_02", "megatron_bridge_26_02_01", "megatron_bridge_26_04"]
