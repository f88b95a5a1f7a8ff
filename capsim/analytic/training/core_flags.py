"""The Megatron-Core flags capsim prices, each with the oldest core release whose ``megatron/training/arguments.py``
has it (read at every tag core_v0.8.0 ... core_v0.14.0 and cited at the first), and how NeMo's releases reach a
setting whose argparse flag their core lacks (NeMo builds Megatron-Core's config objects itself).

Citations: ``ML@<tag>`` is github.com/NVIDIA/Megatron-LM, ``NeMo@<ref>`` github.com/NVIDIA/NeMo.
"""

from __future__ import annotations

from itertools import combinations

from capsim.analytic.loss import LossKernel
from capsim.analytic.recompute import MODULE_OPS, SacPolicy, SelectiveAc
from capsim.analytic.training.megatron_fsdp import fsdp_flags
from capsim.analytic.training.release import Flag, FlexBackend, MoeDispatcher
from capsim.specs.precision import Fp8Scaling

# --cuda-graph-scope values capsim prices: Megatron-Core's single scopes and the lists the recipes state
# (moe_preprocess "is only supported with moe_router cuda graph", transformer_config.py L1747-1750 at core_v0.16.0)
_GRAPH_SCOPES = ("full", "attn", "full_iteration", "mlp", "moe_router", "attn,mlp", "attn,moe_router",
                 "moe_router,moe_preprocess", "attn,moe_router,moe_preprocess")


def _module_values() -> dict[str, SelectiveAc]:
    """``--recompute-modules`` values capsim prices: every comma-separated set of the modules of
    ``capsim.analytic.recompute.MODULE_OPS``, in that order ("core_attn" alone is the attention-core policy)."""
    names = tuple(MODULE_OPS)
    sets = (c for n in range(1, len(names) + 1) for c in combinations(names, n))
    return {",".join(c): SelectiveAc(SacPolicy.MODULES, modules=c) if c != ("core_attn",) else SelectiveAc()
            for c in sets}


# The DDP config field --overlap-grad-reduce sets (its =true/=false values state it either way)
DDP_OVERLAP_GRAD_REDUCE = ("megatron/core/distributed/distributed_data_parallel_config.py L14 "
                           "DistributedDataParallelConfig.overlap_grad_reduce (that line at every tag core_v0.8.0 ... "
                           "core_v0.16.0)")
# Megatron-Core flags capsim prices: flag -> (field, values, where training/arguments.py first defines it (NeMo's
# config key where it differs), the oldest core minor release that has it). Each was looked up at every tag
# core_v0.8.0 ... core_v0.14.0 (``git show core_v0.N.0:megatron/training/arguments.py | grep -n -- "'FLAG'"``); the
# line is the one at core_v0.<since>.0. Since 8: present at core_v0.8.0 (baf94af3, 2024-08-12), the oldest core capsim
# prices (all ten are already in core_v0.6.0, the first tag with megatron/training/). NeMo sets Megatron-Core's config
# objects, not these flags; their fields arrive with the flags (DistributedDataParallelConfig.fp8_param_gather in 0.9,
# ModelParallelConfig.expert_tensor_parallel_size in 0.10, TransformerConfig.account_for_*_in_pipeline_split in 0.11),
# all but DistributedDataParallelConfig.grad_reduce_in_fp32, older than --grad-reduce-in-bf16 (nemo_grad_reduce_flag).
_MC_FLAGS: dict[str, tuple[str, dict[str, object], str, int]] = {
    "--tp-comm-overlap": ("overlap_tp_comm", {"": True}, "L1053 (NeMo: ub_tp_comm_overlap)", 8),
    # =true/=false state the DDP config field (DDP_OVERLAP_GRAD_REDUCE), which arguments.py only turns on (store_true)
    # but Megatron-Bridge sets either way: ddp.overlap_grad_reduce, or comm_overlap.overlap_grad_reduce, which
    # MB@v0.1.0rc3 comm_overlap.py L560-566 and L650 copy into it (scripts/performance/run_script.py L94-95: False on
    # H100). Off, ML@core_v0.14.0 param_and_grad_buffer.py finish_grad_sync L457-459 reduces after the last backward.
    "--overlap-grad-reduce": ("overlap_grad_reduce", {"": True, "true": True, "false": False},
                              "L1413 (NeMo 1.0: optim overlap_grad_sync; Megatron-Bridge: ddp.overlap_grad_reduce); "
                              f"=true/=false: {DDP_OVERLAP_GRAD_REDUCE}", 8),
    "--overlap-param-gather": ("overlap_param_gather", {"": True}, "L1429 (NeMo 1.0: optim overlap_param_sync)", 8),
    "--overlap-p2p-communication": ("overlap_p2p", {"": True}, "L1405 is its negation (NeMo: overlap_p2p_comm)", 8),
    "--no-overlap-p2p-communication": ("overlap_p2p", {"": False}, "L1405", 8),
    "--hidden-dropout": ("dropout", {"0": False, "0.1": True}, "L947-950 (recipes set attention dropout alike)", 8),
    "--no-gradient-accumulation-fusion": ("fused_grad_accumulation", {"": False},
                                          "L1163 (Megatron-Bridge: model.gradient_accumulation_fusion = False)", 8),
    "--gradient-accumulation-fusion": ("fused_grad_accumulation", {"": True},
                                       "L1163 is its negation (NeMo: gradient_accumulation_fusion)", 8),
    "--sequence-parallel": ("layout.sp", {"": True}, "L1161", 8),
    "--recompute-granularity": ("layout.recompute", {"none": "none", "selective": "selective", "full": "full"},
                                "L1008", 8),
    "--use-distributed-optimizer": ("layout.distributed_optimizer", {"": True},
                                    "L1453 (NeMo 1.0: optim distributed_fused_adam)", 8),
    # the fused loss (fusions/fused_cross_entropy.py: the same steps in torch.compile'd functions, megatron/core/
    # jit.py jit_fuser) is not read pass by pass: priced as the op list's one-pass loss (capsim.analytic.loss)
    "--cross-entropy-loss-fusion": ("loss_kernel", {"": LossKernel.FUSED},
                                    "L1134 (NeMo: the model config's cross_entropy_loss_fusion, copied into "
                                    "TransformerConfig by megatron_base_model.py build_transformer_config)", 8),
    "--moe-token-dispatcher-type": ("moe_dispatcher", {d.value: d for d in MoeDispatcher},
                                    "L1748-1750 (choices allgather, alltoall; flex, the DeepEP/HybridEP backends, "
                                    "from core_v0.12.0 L2547)", 8),
    # not in core_v0.9.0's arguments.py
    # not in arguments.py: TransformerConfig.moe_flex_dispatcher_backend (default 'deepep'), which Megatron-Bridge sets
    "--moe-flex-dispatcher-backend": ("moe_flex_backend", {b.value: b for b in FlexBackend},
                                      "(not there: core/transformer/transformer_config.py L682 "
                                      "moe_flex_dispatcher_backend default 'deepep')", 16),
    "--expert-tensor-parallel-size": ("layout.etp", {str(n): n for n in (1, 2, 4, 8)}, "L2060", 10),
    # not in core_v0.10.0's arguments.py, nor TransformerConfig's fields there (both arrive in core_v0.11.0,
    # aa6207e2, 2025-03-14: transformer_config.py L37, L41)
    "--account-for-embedding-in-pipeline-split": ("layout.account_for_embedding", {"": True}, "L1833", 11),
    "--account-for-loss-in-pipeline-split": ("layout.account_for_loss", {"": True}, "L1836", 11),
    # not in core_v0.11.0's arguments.py; a list (nargs='*') stated comma-separated, as the Megatron-Bridge perf
    # configs' recompute_modules=["layernorm", "moe_act"] (with recompute_granularity "selective")
    "--recompute-modules": ("selective_ac", _module_values(),
                            "L1568 (choices core_attn, moe_act, layernorm, mla_up_proj, mlp, moe; transformer_config.py "
                            "L240-249: 'layernorm' the input and pre-MLP norms, 'mla_up_proj' MLA's up projections "
                            "and RoPE; 'shared_experts' from core_v0.14.0 transformer_config.py L869-877; 'moe' not "
                            "priced: its replay re-runs the expert all-to-alls)", 12),
    "--fp8-recipe": ("fp8_scaling", {"delayed": Fp8Scaling.DELAYED, "tensorwise": Fp8Scaling.CURRENT}, "L1057", 12),
    # not in core_v0.8.0's arguments.py
    "--fp8-param-gather": ("fp8_params", {"": True}, "L724 (NeMo 2.0: fp8_params)", 9),
    "--overlap-moe-expert-parallel-comm": ("overlap_moe_a2a", {"": True}, "L2889", 14),
    # not in core_v0.11.0's arguments.py: before it, bf16 forces accumulate_allreduce_grads_in_fp32 = True
    # (core_v0.11.0 L472). NeMo sets DistributedDataParallelConfig.grad_reduce_in_fp32 directly (a field since
    # before core_v0.8.0): ``nemo_grad_reduce_flag`` gives its NeMo releases the flag by that key.
    "--grad-reduce-in-bf16": ("grads_fp32", {"": False}, "L1999 (Megatron-Bridge: grad_reduce_in_fp32=False)", 12),
    # CUDA graphs (capsim.analytic.training.host.graphed_ops prices the captured scopes). --enable-cuda-graph is
    # the local capture, --external-cuda-graph Transformer Engine's make_graphed_callables (both "Deprecated" for
    # --cuda-graph-impl at core_v0.15.0 L1396-1404 and converted to it, arguments.py L442-454 at core_v0.16.0)
    "--enable-cuda-graph": ("cuda_graph_impl", {"": "local"}, "L946", 11),
    "--external-cuda-graph": ("cuda_graph_impl", {"": "transformer_engine"}, "L1125", 12),
    "--cuda-graph-impl": ("cuda_graph_impl", {v: v for v in ("none", "local", "transformer_engine")},
                          "L1405 (choices none, local, transformer_engine)", 15),
    # a list from core_v0.16.0 (nargs='+') stated comma-separated, as --recompute-modules. Not accepted: "moe"
    # ("moe cuda graph is only supported with drop-padding MoE", core_v0.16.0 transformer_config.py L1757-1763;
    # capsim prices dropless experts) and "mamba" (host.SCOPE_OPS does not name the Mamba mixer's ops)
    "--cuda-graph-scope": ("cuda_graph_scope", {v: v for v in _GRAPH_SCOPES},
                           "L1128 (choices full, attn; full_iteration from core_v0.14.0 L1297; a list of attn, mlp, "
                           "moe, moe_router, moe_preprocess, mamba, full_iteration from core_v0.16.0 L1430-1443)", 12),
    # full recomputation's method and layer count (with --recompute-granularity full; capsim.analytic.recompute.
    # full_replay_share): 'uniform' checkpoints groups of N layers, 'block' only the first N layers of each chunk
    # (ML@core_v0.14.0 megatron/core/transformer/transformer_block.py L429-461 _checkpointed_forward)
    "--recompute-method": ("recompute_method", {"uniform": "uniform", "block": "block"}, "L1023", 8),
    "--recompute-num-layers": ("recompute_layers", {str(n): n for n in range(1, 129)}, "L1032", 8),
    # not in core_v0.11.0's arguments.py: multi-token prediction (megatron/core/transformer/multi_token_prediction.py
    # arrives in core_v0.12.0; capsim.analytic.mtp)
    "--mtp-num-layers": ("mtp_layers", {str(n): n for n in range(1, 9)}, "L1311", 12),
    # the MTP loss weight (gpt_model.py: mtp_loss_scaling_factor / mtp_num_layers on each MTP loss): prices nothing;
    # 0.1 the default, 0.3 DeepSeek-V3's first 10T tokens (arXiv:2412.19437 Sec. 4.2)
    "--mtp-loss-scaling-factor": ("mtp_loss_scale", {"0.1": 0.1, "0.3": 0.3}, "L1316", 12),
}
# Values a flag's choices gain later: (flag, value) -> the oldest core minor that accepts it.
_MC_VALUES_SINCE = {("--moe-token-dispatcher-type", MoeDispatcher.FLEX.value): 12,
                    # not in core_v0.13.0's TransformerConfig allowed_modules (transformer_config.py)
                    **{("--recompute-modules", v): 14 for v in _module_values() if "shared_experts" in v},
                    ("--cuda-graph-scope", "full_iteration"): 14,
                    **{("--cuda-graph-scope", v): 16 for v in _GRAPH_SCOPES if v not in ("full", "attn",
                                                                                         "full_iteration")}}
_MC_DATES = {8: "baf94af3, 2024-08-12", 9: "1afee592, 2024-10-24", 10: "7ee599a2, 2025-02-17",
             11: "aa6207e2, 2025-03-14", 12: "d580efc6, 2025-05-06", 14: "23e00ed0, 2025-10-08",
             15: "0d7e02bd, 2025-12-05", 16: "3bec9aa9, 2026-02-26"}


def _mc_where(since: int, where: str) -> str:
    """The citation of a ``_MC_FLAGS`` entry: the core tag that first has the flag and its line there."""
    return f"ML@core_v0.{since}.0 ({_MC_DATES[since]}) training/arguments.py {where}"


def core_flag_arrived(flag: str) -> str | None:
    """Since which Megatron-Core release a flag of ``_MC_FLAGS`` exists, with its line there (None: not one)."""
    entry = _MC_FLAGS.get(flag)
    return None if entry is None else f"Megatron-Core 0.{entry[3]} ({_mc_where(entry[3], entry[2])})"


def nemo_grad_reduce_flag(where: str) -> dict[str, Flag]:
    """``--grad-reduce-in-bf16`` for a NeMo release, whatever its core's argparse has: NeMo builds Megatron-Core's
    DistributedDataParallelConfig itself and sets its ``grad_reduce_in_fp32`` field (in it at core_v0.8.0,
    megatron/core/distributed/distributed_data_parallel_config.py L11) from its own config key (``where``)."""
    return {"--grad-reduce-in-bf16": Flag("grads_fp32", {"": False}, where + " -> Megatron-Core "
                                          "DistributedDataParallelConfig.grad_reduce_in_fp32 = False")}


def nemo1_grad_sync(nemo: str, line: str) -> str:
    """Where a NeMo 1.0 release reduces gradients in bf16: its distributed optimizers' ``optim.grad_sync_dtype``."""
    return (f"{nemo} NeMo 1.0 optim.grad_sync_dtype=bf16 (nemo/collections/nlp/models/language_modeling/"
            f"megatron_gpt_model.py {line} for mcore_distributed_optim; nemo/core/optim/distributed_adam.py for "
            "distributed_fused_adam)")


def nemo2_grad_reduce(tag: str, line: str) -> str:
    """Where a NeMo 2 release reduces gradients in bf16: ``trainer.plugins.grad_reduce_in_fp32 = False``, which
    its MegatronStrategy copies into the DistributedDataParallelConfig (megatron_strategy.py ``line``)."""
    return (f"NeMo@{tag} MegatronMixedPrecision grad_reduce_in_fp32=False (recipe trainer.plugins.grad_reduce_in_fp32; "
            f"nemo/lightning/pytorch/strategies/megatron_strategy.py {line} update_config_with_dtype_overrides on "
            "the ddp config)")


def megatron_core_flags(core_minor: int) -> dict[str, Flag]:
    """The Megatron-Core flags capsim prices that exist in core 0.``core_minor``."""
    return {**{name: Flag(field, {v: x for v, x in values.items() if _MC_VALUES_SINCE.get((name, v), 0) <= core_minor},
                          _mc_where(since, where))
               for name, (field, values, where, since) in _MC_FLAGS.items() if since <= core_minor},
            **fsdp_flags(core_minor)}



__all__ = ["DDP_OVERLAP_GRAD_REDUCE", "core_flag_arrived", "megatron_core_flags", "nemo1_grad_sync", "nemo2_grad_reduce", "nemo_grad_reduce_flag"]
