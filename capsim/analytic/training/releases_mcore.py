"""Megatron-Core run as itself: Megatron-LM's pretrain_gpt.py at a core release, with the defaults of its
training/arguments.py (no NeMo or Megatron-Bridge recipe on top). ``megatron-core-0.8.0`` is in ``framework.py``;
this module holds core_v0.14.0 (23e00ed0, 2025-10-08), the release whose argument lines ``releases_current.py``'s
flags already cite. Its defaults are Megatron-LM's own: dropout 0.1, no DP or TP communication overlap, no
distributed optimizer, gradient-accumulation fusion and (interleaved) p2p overlap on, FP8 delayed scaling.

Citations: ``ML@core_v0.14.0`` is github.com/NVIDIA/Megatron-LM at that tag; lines are in that file there.
"""

from __future__ import annotations

from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.release import (
    COMBINE_NO_PROBS,
    Flag,
    Framework,
    FrameworkFamily,
    LossCopy,
    MoeDispatcher,
    Release,
    Reshard,
    Setting,
)
from capsim.analytic.training.releases_current import _TE_ATTN, _TE_UB, _megatron_common, megatron_core_flags
from capsim.specs.precision import Fp8Scaling

_ML = "ML@core_v0.14.0"
_ARGS = _ML + " megatron/training/arguments.py"


def megatron_core_0_14(name: str) -> Release:
    """Megatron-LM pretrain_gpt.py at core_v0.14.0 with its flag defaults."""
    fw = Framework(name, AttentionImpl.FLASH, dropout=True, overlap_grad_reduce=False, overlap_param_gather=False,
                   overlap_tp_comm=False, overlap_tp_wgrad=True, fused_grad_accumulation=True, overlap_p2p=True,
                   zero3_prefetch=False, pp_scatter_gather=False, sequence_parallel=True, selective_recompute=True,
                   distributed_optimizer=True, zero=False, context_parallel=True, uneven_pipeline=True,
                   interleave_min_pp=2, moe_dispatcher=MoeDispatcher.ALLGATHER, overlap_moe_a2a=False,
                   moe_fp8_padding=False, moe_random_routing=True, moe_combine_saves=False, loss_copy=LossCopy.FP32,
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
            "moe_random_routing": f"{_ML} megatron/core/transformer/moe/moe_utils.py L874 RandomSTE: forced "
                                  f"balancing ({_ARGS} L2852 --moe-router-force-load-balancing) draws random logits",
            "moe_combine_saves": f"{_ML} {COMBINE_NO_PROBS}",
            "loss_copy": f"{_ARGS} L1954 --cross-entropy-loss-fusion (store_true: off): the unfused loss on an fp32 "
                         "copy of the logits, saving its fp32 softmax (tensor_parallel/cross_entropy.py)",
            "fp8_scaling": f"{_ARGS} L1224 --fp8-recipe default 'delayed'",
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
                   "ML@core_v0.14.0 (23e00ed0, 2025-10-08): Megatron-LM pretrain_gpt.py with its flag defaults",
                   cite, defaults,
                   {**megatron_core_flags(14),
                    "--moe-grouped-gemm": Flag("moe_fp8_padding", {"": True}, f"{_ARGS} L2802 --moe-grouped-gemm: "
                                               "TEGroupedMLP, whose fp8 path pads each expert's rows (experts.py L815)")})


__all__ = ["megatron_core_0_14"]
