"""Megatron-Core run as itself: Megatron-LM's pretrain_gpt.py at a core release, with the defaults of its
training/arguments.py (no NeMo or Megatron-Bridge recipe on top). ``megatron-core-0.8.0`` is in
``releases_legacy.py``; this module holds core_v0.14.0 (23e00ed0, 2025-10-08), the release whose argument lines
``releases_current.py``'s flags already cite, and the releases between them (``megatron_core_release``). Their
defaults are Megatron-LM's own: dropout 0.1, no DP or TP communication overlap, no distributed optimizer,
gradient-accumulation fusion and (interleaved) p2p overlap on, FP8 delayed scaling.

Coverage, read from the code at every core tag (github.com/NVIDIA/Megatron-LM, ``git show core_vX:...``):
- core_v0.5.0-0.7.0 are not covered: pretrain_gpt.py builds the legacy (non-core) GPT model unless
  --use-mcore-models is given (core_v0.6.0 pretrain_gpt.py L57, core_v0.7.0 L61; core_v0.5.0 also defaults
  --transformer-impl to 'local', arguments.py L510), and interleaving needs pp > 2 whatever the p2p overlap
  (core_v0.7.0 training/arguments.py L242); capsim has no preset for that code.
- core_v0.9.0 to 0.13.1: one preset per set of facts (``_CORES``): uneven first/last stages from 0.9.0
  (--decoder-first-pipeline-num-layers), TEGroupedMLP's Fp8Padding from 0.10.0, --account-for-*-in-pipeline-split
  from 0.11.0, --fp8-recipe and Megatron-FSDP (--use-custom-fsdp) from 0.12.0, router probabilities applied in the
  experts (the combine saves nothing) from 0.12.1 (cherry-pick d5d00fd, "llama4 required moe fix"), forced load
  balancing (RandomSTE) and --pipeline-model-parallel-layout from 0.13.0.
- core_v0.14.0 covers 0.15.0-0.15.3: every flag above has the same action and default there (core_v0.15.0 and
  core_v0.15.3 training/arguments.py: --overlap-grad-reduce L2605, --overlap-param-gather L2629, --tp-comm-overlap
  L2090, --no-overlap-p2p-communication L2591, --no-gradient-accumulation-fusion L2226, --transformer-impl L1339
  'transformer_engine', --moe-token-dispatcher-type L3131 'allgather', --fp8-recipe L1318 'delayed',
  --fp8-param-gather L1342, --overlap-moe-expert-parallel-comm L3151, --moe-router-force-load-balancing L3114,
  --cross-entropy-loss-fusion L2182, --use-megatron-fsdp L2674), RandomSTE (moe/moe_utils.py L899), Fp8Padding
  (moe/experts.py L819) and the probability-free combine unchanged.
- core_v0.14.0 also covers 0.16.0-0.16.1, whose training/arguments.py generates the model flags from the config
  dataclasses (ArgumentGroupFactory(TransformerConfig), core_v0.16.0 L1621; bools default False become store_true
  --kebab-case flags, megatron/training/argument_utils.py) with the same defaults: core/transformer/transformer_config.py
  hidden_dropout / attention_dropout 0.1 (L137, L140), fp8_recipe "delayed" (L436), moe_grouped_gemm False (L649),
  moe_router_force_load_balancing False (L645), moe_token_dispatcher_type "allgather" (L675), transformer_impl
  "transformer_engine" (L880), account_for_embedding_in_pipeline_split False (L96); core/model_parallel_config.py
  tp_comm_overlap False (L186), cross_entropy_loss_fusion False (L241), overlap_moe_expert_parallel_comm False (L264);
  gradient_accumulation_fusion is excluded from the factory and stays --no-gradient-accumulation-fusion (arguments.py
  L2083, on by default); --overlap-grad-reduce L2243, --overlap-param-gather L2264, --use-megatron-fsdp L2305 as before;
  RandomSTE (moe/moe_utils.py L1110), Fp8Padding (moe/experts.py L605) and the probability-free combine unchanged
  (the same lines at core_v0.16.1).
- core_v0.17.0 and later are not covered: not read (its MoE experts and router were reorganised, moe/experts.py,
  moe/moe_utils.py RandomSTEShared).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from capsim.analytic.fp8 import NormQuantize
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.core_flags import _MC_FLAGS, DDP_OVERLAP_GRAD_REDUCE, megatron_core_flags
from capsim.analytic.training.megatron_fsdp import fsdp_flags
from capsim.analytic.training.release import (
    COMBINE_NO_PROBS,
    COMBINE_PROBS,
    FLEX_DEEPEP,
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
    Setting,
    megatron_ce,
)
from capsim.analytic.training.releases_current import _TE_ATTN, _TE_UB, _megatron_common
from capsim.specs.precision import Fp8Scaling

_ML = "ML@core_v0.14.0"
_ARGS = _ML + " megatron/training/arguments.py"


def megatron_core_0_14(name: str) -> Release:
    """Megatron-LM pretrain_gpt.py at core_v0.14.0 with its flag defaults."""
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8, dropout=True, overlap_grad_reduce=False, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   moe_fp8_padding=False, moe_random_routing=True, moe_combine_saves=False, loss_copy=LossCopy.FP32, loss_kernel=LossKernel.MEGATRON_FP32,
                   fp8_scaling=Fp8Scaling.DELAYED, fp8_params=False, reshard_after_forward=Reshard.ALWAYS,
                   defer_grad_sync=False)
    cite = {**_megatron_common(_ML),
            "attention": f"{_ARGS} L1245 --transformer-impl default transformer_engine; {_ML} {_TE_ATTN}",
            "dropout": f"{_ARGS} L1714-1716: --attention-dropout and --hidden-dropout default 0.1",
            "overlap_grad_reduce": f"{_ARGS} L2359 --overlap-grad-reduce (store_true: off)",
            "overlap_param_gather": f"{_ARGS} L2383 --overlap-param-gather (store_true: off)",
            "overlap_tp_comm": f"{_ARGS} L1862 --tp-comm-overlap (store_true: off)",
            "fused_grad_accumulation": f"{_ARGS} L1998 --no-gradient-accumulation-fusion (on by default)",
            "overlap_p2p": f"{_ARGS} L2348 --no-overlap-p2p-communication (store_false: on); L536-548 keep it only "
                           "for the interleaved schedule",
            "uneven_pipeline": f"{_ARGS} L2322 --decoder-first-pipeline-num-layers, L2330 "
                               "--pipeline-model-parallel-layout, L2406 --account-for-embedding-in-pipeline-split",
            "interleave_min_pp": f"{_ARGS} L536-545: with p2p overlap (the default) pipeline size > 1, without it > 2",
            "moe_dispatcher": f"{_ARGS} L2869-2871 --moe-token-dispatcher-type default allgather",
            "overlap_moe_a2a": f"{_ARGS} L2889 --overlap-moe-expert-parallel-comm (store_true: off)",
            "moe_fp8_padding": f"{_ML} megatron/core/transformer/transformer_config.py L483 moe_grouped_gemm "
                               f"default False ({_ARGS} L2802 --moe-grouped-gemm, store_true): SequentialMLP experts; "
                               "TEGroupedMLP (moe/experts.py L815 Fp8Padding) pads each expert's rows under fp8",
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": f"{_ML} megatron/core/transformer/moe/moe_utils.py L874 RandomSTE: forced "
                                  f"balancing ({_ARGS} L2852 --moe-router-force-load-balancing) draws random logits",
            "moe_combine_saves": f"{_ML} {COMBINE_NO_PROBS}",
            "loss_copy": f"{_ARGS} L1954 --cross-entropy-loss-fusion (store_true: off): the unfused loss on an fp32 "
                         "copy of the logits, saving its fp32 softmax (tensor_parallel/cross_entropy.py)",
            **megatron_ce(f"{_ML} megatron/core/tensor_parallel/cross_entropy.py L28-117 (--cross-entropy-loss-fusion "
                          "off)"),
            "fp8_scaling": f"{_ARGS} L1224 --fp8-recipe default 'delayed'",
            "fp8_training": f"{_ARGS} L1219 --fp8-format (Transformer Engine FP8)",
            "fp8_params": f"{_ARGS} L1248 --fp8-param-gather (store_true: off)",
            "tp_rs": _TE_UB.format(f"{_ARGS} --tp-comm-overlap-cfg default None", "v2.x")}
    defaults = {"micro_batch": Setting(1, f"{_ARGS} L1746 --micro-batch-size default None; the release's "
                                          "examples/gpt3/train_gpt3_175b_distributed.sh L38 sets 1"),
                "v": Setting(1, f"{_ARGS} L2341 --num-layers-per-virtual-pipeline-stage default None"),
                "recompute": Setting("none", f"{_ARGS} L1782 --recompute-granularity default None"),
                "sp": Setting(False, f"{_ARGS} L1996 --sequence-parallel (store_true: off)"),
                "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
                "cp": Setting(1, f"{_ARGS} L2455 --context-parallel-size default 1"),
                "distributed_optimizer": Setting(False, f"{_ARGS} L2412 --use-distributed-optimizer (store_true: off)"),
                "etp": Setting(0, f"{_ARGS} L2779 --expert-tensor-parallel-size default None = tp"),
                "account_for_embedding": Setting(False, f"{_ARGS} L2406 (store_true: off)"),
                "account_for_loss": Setting(False, f"{_ARGS} L2409 (store_true: off)")}
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "megatron-core-0.14.0", "2025-10-08",
                   "ML@core_v0.14.0 (23e00ed0, 2025-10-08): Megatron-LM pretrain_gpt.py with its flag defaults; "
                   "the same flags, defaults and MoE code at core_v0.15.0-0.16.1 (0d7e02bd 2025-12-05 to 55ac7082 "
                   "2026-03-16; module docstring)",
                   cite, defaults,
                   {**megatron_core_flags(14),
                    "--moe-grouped-gemm": Flag("moe_fp8_padding", {"": True}, f"{_ARGS} L2802 --moe-grouped-gemm: "
                                               "TEGroupedMLP, whose fp8 path pads each expert's rows (experts.py L815)")},
                   covers=("megatron-core-0.14.0", "megatron-core-0.16.1"))


# The arguments.py lines ``_Core.lines`` holds, in this order (0: the tag has no such flag); "interleave" is the
# assert that the interleaved schedule needs pp > 1 (with p2p overlap) or > 2 (without), "fp8pad" TEGroupedMLP's
# Fp8Padding in moe/experts.py, "randomste" moe/moe_utils.py's class RandomSTE. Read at each tag with
# ``git show core_vX:megatron/training/arguments.py`` (the add_argument call's first line).
_KEYS = ("--transformer-impl", "--attention-dropout", "--hidden-dropout", "--overlap-grad-reduce",
         "--overlap-param-gather", "--tp-comm-overlap", "--no-gradient-accumulation-fusion",
         "--no-overlap-p2p-communication", "--decoder-first-pipeline-num-layers", "--pipeline-model-parallel-layout",
         "--moe-token-dispatcher-type", "--cross-entropy-loss-fusion", "--fp8-recipe", "--fp8-param-gather",
         "--moe-router-force-load-balancing", "--moe-grouped-gemm", "--micro-batch-size",
         "--num-layers-per-virtual-pipeline-stage", "--recompute-granularity", "--sequence-parallel",
         "--context-parallel-size", "--use-distributed-optimizer", "--expert-tensor-parallel-size",
         "--account-for-embedding-in-pipeline-split", "--account-for-loss-in-pipeline-split", "--grad-reduce-in-bf16",
         "interleave", "fp8pad", "randomste", "--recompute-method", "--recompute-num-layers", "--mtp-num-layers",
         "--mtp-loss-scaling-factor")


@dataclass(frozen=True)
class _Core:
    """Where one Megatron-Core tag states each fact a preset needs."""

    tag: str  # core_vX.Y.Z
    commit: str
    date: str
    lines: tuple[int, ...]  # by _KEYS
    te_recipe: str  # where the FP8 recipe comes from
    example_mbs: int  # examples/gpt3/train_gpt3_175b_distributed.sh: the --micro-batch-size line (sets 1)
    combine: str  # "" where the combine merges the router probabilities (COMBINE_PROBS), else where they go instead
    dispatchers: tuple[str, ...]  # --moe-token-dispatcher-type choices capsim prices
    covers: tuple[str, str] | None = None
    covers_note: str = ""

    def line(self, key: str) -> int:
        return self.lines[_KEYS.index(key)]

    @property
    def minor(self) -> int:
        return int(self.tag.split(".")[1])


_EXT = "megatron/core/extensions/transformer_engine.py"
_DELAYED_ONLY = _EXT + " L{} TEDelayedScaling: Transformer Engine's DelayedScaling is the only recipe (no --fp8-recipe)"
_NO_PROBS = ("megatron/core/transformer/moe/token_dispatcher.py: unpermute(...) without probs in the allgather and "
             "alltoall combines; moe/experts.py TEGroupedMLP weighted_bias_swiglu_impl(..., permuted_probs) L{}")
_CORES = {c.tag: c for c in (
    _Core("core_v0.9.0", "1afee592", "2024-10-24",
          (721, 1016, 1018, 1539, 1556, 1133, 1245, 1531, 1518, 0, 1882, 1216, 0, 724, 0, 1874, 1048, 1529, 1084,
           1243, 1586, 1584, 0, 0, 0, 0, 271, 0, 0, 1099, 1108, 0, 0),
          _DELAYED_ONLY.format(842),
          37, "", ("allgather", "alltoall")),
    _Core("core_v0.10.0", "7ee599a2", "2025-02-17",
          (837, 1140, 1142, 1701, 1718, 1264, 1379, 1690, 1674, 0, 2099, 1350, 0, 840, 0, 2091, 1172, 1685, 1208,
           1377, 1753, 1746, 2060, 0, 0, 0, 336, 638, 0, 1226, 1235, 0, 0),
          _DELAYED_ONLY.format(1099),
          37, "", ("allgather", "alltoall")),
    _Core("core_v0.11.0", "aa6207e2", "2025-03-14",
          (909, 1231, 1233, 1793, 1810, 1355, 1470, 1782, 1764, 0, 2220, 1441, 0, 912, 0, 2181, 1263, 1775, 1299,
           1468, 1846, 1839, 2158, 1833, 1836, 0, 342, 639, 0, 1317, 1326, 0, 0),
          _DELAYED_ONLY.format(1162),
          38, "", ("allgather", "alltoall")),
    _Core("core_v0.12.0", "d580efc6", "2025-05-06",
          (1078, 1465, 1467, 2078, 2102, 1611, 1741, 2067, 2049, 0, 2546, 1697, 1057, 1081, 0, 2489, 1497, 2060,
           1533, 1739, 2153, 2131, 2466, 2125, 2128, 1999, 434, 698, 0, 1554, 1563, 1311, 1316),
          "training/arguments.py L1057 --fp8-recipe default 'delayed'", 38, "", ("allgather", "alltoall", "flex")),
    _Core("core_v0.12.1", "a845aa7e", "2025-05-20",
          (1078, 1465, 1467, 2078, 2102, 1611, 1741, 2067, 2049, 0, 2546, 1697, 1057, 1081, 0, 2489, 1497, 2060,
           1533, 1739, 2153, 2131, 2466, 2125, 2128, 1999, 434, 718, 0, 1554, 1563, 1311, 1316),
          "training/arguments.py L1057 --fp8-recipe default 'delayed'", 38, _NO_PROBS.format(768),
          ("allgather", "alltoall", "flex"), ("megatron-core-0.12.1", "megatron-core-0.12.3"),
          "core_v0.12.2 (64cb6bd7) and core_v0.12.3 (3ea68ad6) change no moe/ or pipeline file and in "
          "training/arguments.py only add _eval_pattern (every flag 10 lines lower, same actions and defaults)"),
    _Core("core_v0.13.0", "c550cf6c", "2025-07-25",
          (1205, 1665, 1667, 2295, 2319, 1811, 1941, 2284, 2258, 2266, 2790, 1897, 1184, 1208, 2773, 2725, 1697,
           2277, 1733, 1939, 2384, 2348, 2702, 2342, 2345, 2204, 566, 730, 826, 1754, 1763, 1460, 1465),
          "training/arguments.py L1184 --fp8-recipe default 'delayed'", 38, _NO_PROBS.format(258),
          ("allgather", "alltoall", "flex"), ("megatron-core-0.13.0", "megatron-core-0.13.1"),
          "core_v0.13.1 (ea651a3b) changes nothing under megatron/core/transformer, distributed, pipeline_parallel, "
          "extensions or training/arguments.py"),
)}


def megatron_core_release(name: str, tag: str) -> Release:
    """Megatron-LM pretrain_gpt.py at ``tag`` (one of ``_CORES``) with its flag defaults."""
    c = _CORES[tag]
    ml, args = f"ML@{tag}", f"ML@{tag} training/arguments.py"
    fw = Framework(name, AttentionImpl.FLASH, tp_gather_quantized=True, norm_quantize=NormQuantize.FP8, dropout=True, overlap_grad_reduce=False, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   moe_fp8_padding=False, moe_random_routing=bool(c.line("randomste")),
                   moe_combine_saves=not c.combine, loss_copy=LossCopy.FP32, loss_kernel=LossKernel.MEGATRON_FP32, fp8_scaling=Fp8Scaling.DELAYED,
                   fp8_params=False, reshard_after_forward=Reshard.ALWAYS, defer_grad_sync=False)
    return Release(fw, FrameworkFamily.MEGATRON_CORE, "megatron-core-" + tag.removeprefix("core_v"), c.date,
                   f"{ml} ({c.commit}, {c.date}): Megatron-LM pretrain_gpt.py with its flag defaults"
                   + (f"; {c.covers_note}" if c.covers_note else ""),
                   _core_cite(c, ml, args), _core_defaults(c, args), _core_flags(c, args), covers=c.covers)


def _core_cite(c: _Core, ml: str, args: str) -> dict[str, str]:
    """The behaviour citations of ``c``: its own arguments.py lines and MoE code."""
    first = c.line("--decoder-first-pipeline-num-layers")
    layout = c.line("--pipeline-model-parallel-layout")
    pad, ste, il = c.line("fp8pad"), c.line("randomste"), c.line("interleave")
    return {**_megatron_common(ml),
            "attention": f"{args} L{c.line('--transformer-impl')} --transformer-impl default transformer_engine; "
                         f"{ml} {_TE_ATTN}",
            "dropout": f"{args} L{c.line('--attention-dropout')}-{c.line('--hidden-dropout')}: "
                       "--attention-dropout and --hidden-dropout default 0.1",
            "overlap_grad_reduce": f"{args} L{c.line('--overlap-grad-reduce')} --overlap-grad-reduce (store_true: off)",
            "overlap_param_gather": f"{args} L{c.line('--overlap-param-gather')} --overlap-param-gather "
                                    "(store_true: off)",
            "overlap_tp_comm": f"{args} L{c.line('--tp-comm-overlap')} --tp-comm-overlap (store_true: off)",
            "fused_grad_accumulation": f"{args} L{c.line('--no-gradient-accumulation-fusion')} "
                                       "--no-gradient-accumulation-fusion (on by default)",
            "overlap_p2p": f"{args} L{c.line('--no-overlap-p2p-communication')} --no-overlap-p2p-communication "
                           "(store_false: on), kept for the interleaved schedule",
            "uneven_pipeline": f"{args} L{first} --decoder-first-pipeline-num-layers"
                               + (f", L{layout} --pipeline-model-parallel-layout" if layout else ""),
            "interleave_min_pp": f"{args} L{il}-{il + 4}: with p2p overlap (the default) pipeline size > 1, "
                                 "without it > 2",
            "moe_dispatcher": f"{args} L{c.line('--moe-token-dispatcher-type')} --moe-token-dispatcher-type "
                              "default allgather",
            "overlap_moe_a2a": "not in this release: --overlap-moe-expert-parallel-comm arrived in core_v0.14.0",
            "moe_fp8_padding": (f"{args} L{c.line('--moe-grouped-gemm')} --moe-grouped-gemm (store_true: off): "
                                f"SequentialMLP experts; TEGroupedMLP (moe/experts.py L{pad} Fp8Padding) pads "
                                "under fp8" if pad else "not in this release: TEGroupedMLP's Fp8Padding arrived in "
                                "core_v0.10.0 (megatron/core/transformer/moe/experts.py L638)"),
            "moe_consecutive_experts": SPREAD_EXPERTS, "moe_flex_backend": FLEX_DEEPEP, "pp_schedule_sequences": ONE_SCHEDULE, "moe_random_routing": (f"{ml} megatron/core/transformer/moe/moe_utils.py L{ste} RandomSTE: forced "
                                   f"balancing ({args} L{c.line('--moe-router-force-load-balancing')}) draws "
                                   "random logits" if ste else "not in this release: forced balancing "
                                   "(--moe-router-force-load-balancing, RandomSTE) arrived in core_v0.13.0"),
            "moe_combine_saves": f"{ml} " + (c.combine or COMBINE_PROBS),
            "loss_copy": f"{args} L{c.line('--cross-entropy-loss-fusion')} --cross-entropy-loss-fusion (store_true: "
                         "off): the unfused loss on an fp32 copy of the logits, saving its fp32 softmax",
            **megatron_ce(f"{ml} megatron/core/tensor_parallel/cross_entropy.py (--cross-entropy-loss-fusion off)"),
            "fp8_scaling": f"{ml} {c.te_recipe}",
            "fp8_training": f"{args} --fp8-format (Transformer Engine FP8)",
            "fp8_params": f"{args} L{c.line('--fp8-param-gather')} --fp8-param-gather (store_true: off)",
            "grads_fp32": (f"{args} L{c.line('--grad-reduce-in-bf16')} --grad-reduce-in-bf16 (store_true: off)"
                           if c.line("--grad-reduce-in-bf16") else f"{args}: bf16 sets "
                           "accumulate_allreduce_grads_in_fp32 = True (no --grad-reduce-in-bf16 yet)"),
            "tp_rs": _TE_UB.format(f"{args} --tp-comm-overlap with no overlap config", "v1.x/v2.x")}


def _core_defaults(c: _Core, args: str) -> dict[str, Setting]:
    acc = c.line("--account-for-embedding-in-pipeline-split")
    etp = c.line("--expert-tensor-parallel-size")
    return {"micro_batch": Setting(1, f"{args} L{c.line('--micro-batch-size')} --micro-batch-size default None; "
                                      f"the release's examples/gpt3/train_gpt3_175b_distributed.sh L{c.example_mbs} "
                                      "sets 1"),
            "v": Setting(1, f"{args} L{c.line('--num-layers-per-virtual-pipeline-stage')} default None"),
            "recompute": Setting("none", f"{args} L{c.line('--recompute-granularity')} default None"),
            "sp": Setting(False, f"{args} L{c.line('--sequence-parallel')} (store_true: off)"),
            "zero_stage": Setting(0, "no ZeRO stages in Megatron-Core"),
            "cp": Setting(1, f"{args} L{c.line('--context-parallel-size')} default 1"),
            "distributed_optimizer": Setting(False, f"{args} L{c.line('--use-distributed-optimizer')} "
                                                    "(store_true: off)"),
            "etp": Setting(0, f"{args} L{etp} --expert-tensor-parallel-size default None = tp" if etp else
                           "no --expert-tensor-parallel-size in this release: the experts split like the attention"),
            "account_for_embedding": Setting(False, f"{args} L{acc} (store_true: off)" if acc else
                                             "not in this release (arrived in core_v0.11.0)"),
            "account_for_loss": Setting(False, f"{args} L{acc + 3} (store_true: off)" if acc else
                                        "not in this release (arrived in core_v0.11.0)")}


def _core_flags(c: _Core, args: str) -> dict[str, Flag]:
    """The flags of ``_MC_FLAGS`` that ``c``'s arguments.py declares, cited there, and its Megatron-FSDP flags."""
    flags = {name: Flag(field, values, f"{args} L{c.line(name)}") for name, (field, values, _, _) in _MC_FLAGS.items()
             if name in _KEYS and c.line(name)}
    # store_true in arguments.py; =true/=false state the DDP config field (core_flags._MC_FLAGS)
    flags["--overlap-grad-reduce"] = replace(flags["--overlap-grad-reduce"], source=(
        f"{args} L{c.line('--overlap-grad-reduce')}; =true/=false: ML@{c.tag} {DDP_OVERLAP_GRAD_REDUCE.split(' (')[0]}"))
    flags["--moe-token-dispatcher-type"] = Flag("moe_dispatcher", {d: MoeDispatcher(d) for d in c.dispatchers},
                                                f"{args} L{c.line('--moe-token-dispatcher-type')} (its choices)")
    if "--fp8-recipe" in flags:  # choices 'tensorwise', 'delayed', 'mxfp8'(, 'blockwise'): capsim prices two
        flags["--fp8-recipe"] = Flag("fp8_scaling", {"delayed": Fp8Scaling.DELAYED, "tensorwise": Fp8Scaling.CURRENT},
                                     f"{args} L{c.line('--fp8-recipe')}")
    if c.line("fp8pad"):
        flags["--moe-grouped-gemm"] = Flag("moe_fp8_padding", {"": True}, f"{args} L{c.line('--moe-grouped-gemm')} "
                                           f"--moe-grouped-gemm: TEGroupedMLP, whose fp8 path pads each expert's rows "
                                           f"(experts.py L{c.line('fp8pad')})")
    return {**flags, **fsdp_flags(c.minor)}


CORE_TAGS = tuple(_CORES)

__all__ = ["CORE_TAGS", "megatron_core_0_14", "megatron_core_release"]
