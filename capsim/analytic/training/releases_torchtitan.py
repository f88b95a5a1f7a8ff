"""torchtitan releases: PyTorch FSDP2 per transformer block, torchao Float8Linear for FP8, and torchtitan's own
selective activation checkpointing. Each is a :class:`Release` like those of ``releases_current.py``; a run states
its torchtitan settings as that release's flags, spelled as its command line spells them.

Citations: ``TT@<commit>`` is github.com/pytorch/torchtitan, ``AO@<commit>`` github.com/pytorch/ao. What a
torchtitan run computes in FP8 (torchao, either release): every ``nn.Linear`` of the model that its
``filter_fqns`` does not name becomes a ``Float8Linear``; the Llama 3 recipe (llama3_8b.toml) names the LM head
``output``, so the blocks' seven projections run in FP8 and the head, attention and norms in bf16: the set capsim's
``capsim.analytic.fp8.FP8_GEMMS`` prices for a dense decoder. torchao scales dynamically from each tensor's own
amax (an amax pass before each cast): capsim's current scaling.
"""

from __future__ import annotations

from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training.release import (
    PER_REPLICA,
    WITH_TP,
    CpRotate,
    Flag,
    FrameworkFamily,
    MoeDispatcher,
    PipelineSplit,
    Release,
    Reshard,
    SacPolicy,
    SelectiveAc,
    Setting,
)
from capsim.analytic.training.releases_fsdp2 import _fsdp2, _fsdp2_cite, _fsdp2_defaults, fsdp2_flags
from capsim.specs.precision import Fp8Scaling

# torch SDPA's flash backend is FlashAttention-2 (PyTorch 2.2 release notes: "FlashAttention-2 ... in SDPA"), and it
# leads torch's default backend order flash, efficient, math, cuDNN (aten/src/ATen/native/transformers/cuda/
# sdp_utils.cpp priority_order, quoted in pytorch/pytorch#138907, 2024-10-25; cuDNN opt-in since pytorch#138522)
_SDPA_FA2 = ("torch SDPA's flash backend, FlashAttention-2's kernels (PyTorch 2.2 release notes), first in torch's "
             "default order flash, efficient, math, cuDNN (sdp_utils.cpp priority_order; pytorch/pytorch#138907)")
_E7 = "TT@e7c0cae"  # 2025-06-11, "Redefine lr_scheduler behavior (#1284)"
_E7_PAR = _E7 + " torchtitan/models/llama3/parallelize_llama.py"
_E7_CFG = _E7 + " torchtitan/config_manager.py"
_E7_TOML = _E7 + " torchtitan/models/llama3/train_configs/llama3_8b.toml"
# The op policy of both releases: what a checkpointed block saves (its outputs kept for the backward); every other
# forward op runs again in the backward. The matmuls are counted per block in forward order and every second one
# is recomputed: in torchtitan's Llama block wq, wk, wv, wo, w1, w3, w2 (TT@e7c0cae torchtitan/models/llama3/
# model.py L238, L263, L302), so wk, wo and w3 run again.
_OP_POLICY = (" L217-227 _save_list (aten.mm, flash and efficient SDPA, reduce_scatter_tensor, max), L254-267 "
              "_custom_policy: MUST_SAVE those ops' outputs 'except every second mm', PREFER_RECOMPUTE every other op")
# torchtitan's Llama expands K and V to every query head before SDPA (repeat_kv: expand + reshape, a copy), so
# the kernel and torch's context-parallel ring see n_heads heads of K and V
_REPEAT_KV = ("keys = repeat_kv(xk, n_rep), values = repeat_kv(xv, n_rep) before F.scaled_dot_product_attention: K "
              "and V copied to every query head (expand + reshape)")
# Without --training.compile the Llama block's pointwise ops run as torch eager's kernels (capsim.analytic.training.
# eager): RoPE in fp32 complex arithmetic and the SwiGLU product silu(w1 x) * w3 x, with the compile flag off by default
_EAGER_POINTWISE = (" apply_rotary_emb (xq.float(), view_as_complex, * freqs_cis, type_as) and FeedForward.forward "
                    "(F.silu(self.w1(x)) * self.w3(x)): separate kernels unless --training.compile (store_true: off)")
# --model.norm_type: 'rmsnorm' is torchtitan's composite RMSNorm (eager kernels), 'fused_rmsnorm' its Triton kernel,
# 'layernorm' / 'np_layernorm' torch's LayerNorm (one kernel); the recipes name one each
_NORM_TYPES = {"rmsnorm": True, "fused_rmsnorm": False, "layernorm": False, "np_layernorm": False}
_SAC_BLOCKS = {str(n): SelectiveAc(SacPolicy.BLOCKS, n) for n in range(1, 17)}


# With context parallelism the block's F.scaled_dot_product_attention is torch's ring (context_parallel's patch,
# dispatched on DTensor), so a fullgraph compile traces the ring and its functional collectives into the graph
_CP_IN_GRAPH = ("with context parallelism torch's ring and its collectives are traced into each block's graph, where "
                "every functional collective is waited on right after it is issued (torch/distributed/"
                "_functional_collectives.py _maybe_wrap_tensor under tracing, pytorch@000f488) and Inductor reorders "
                "none (torch/_inductor/config.py reorder_for_compute_comm_overlap = False, pytorch@000091c)")


def _rotate_flag(where: str) -> Flag:
    """torchtitan's choice of torch's context-parallel K, V rotation (torch's _RotateMethod)."""
    return Flag("cp_rotate", {"allgather": CpRotate.ALLGATHER, "alltoall": CpRotate.ALLTOALL},
                where + ": set_rotate_method before context_parallel")


# torchtitan's --float8.recipe_name (torchao Float8LinearConfig.from_recipe_name): every recipe scales from the
# tensor's own amax, per tensor or per row (capsim's current scaling; the per-row amax priced as one pass like the
# per-tensor one, and torch._scaled_mm's rowwise-scaled GEMM at the per-tensor FP8 rate), and none gathers FP8
_RECIPES = (" torchtitan/components/quantization/float8.py L57-75: with recipe_name, Float8LinearConfig."
            "from_recipe_name and 'enable_fsdp_float8_all_gather together with recipe_name is not supported'")


def _recipe_flag(where: str) -> Flag:
    """torchtitan's float8 recipe by name: current scaling, FSDP2 gathering the 16-bit weights."""
    return Flag("fp8_scaling", {r: Fp8Scaling.CURRENT for r in ("tensorwise", "rowwise", "rowwise_with_gw_hp")},
                where, also={"fp8_params": False})


def _sp_with_tp(where: str) -> Setting:
    """torchtitan's TP shards the norms' sequence too (torch's SequenceParallel style): SP wherever TP is."""
    return Setting(WITH_TP, where + ": sequence parallelism wherever TP > 1")


def torchtitan_flags(where_cfg: str, where_par: str) -> dict[str, Flag]:
    """The torchtitan settings capsim prices, spelled as torchtitan's command line of mid-2025 spells them."""
    return {
        "--training.compile": Flag("torch_compile", {"": True, "true": True, "false": False},
                                   where_cfg + " Training.compile; parallelize_llama.py apply_compile per block"),
        "--activation_checkpoint.mode": Flag("layout.recompute", {"none": "none", "selective": "selective",
                                                                  "full": "full"},
                                             where_cfg + " ActivationCheckpoint.mode"),
        "--activation_checkpoint.selective_ac_option": Flag(
            "selective_ac", {"op": SelectiveAc(SacPolicy.OPS), **_SAC_BLOCKS},
            where_par + " L241-290: 'op' = the op policy, a number N = every N-th block fully checkpointed"),
        "--parallelism.fsdp_reshard_after_forward": Flag(
            "reshard_after_forward", {"default": Reshard.NOT_WITH_PP, "always": Reshard.ALWAYS,
                                      "never": Reshard.NEVER}, where_par + " L313-367 apply_fsdp"),
        "--float8.enable_fsdp_float8_all_gather": Flag("fp8_params", {"": True, "true": True, "false": False},
                                                       where_cfg + " Float8; torchtitan/components/quantization/"
                                                       "float8.py Float8LinearConfig(enable_fsdp_float8_all_gather)"),
        "--float8.precompute_float8_dynamic_scale_for_fsdp": Flag(
            "fp8_precompute_scales", {"": True, "true": True, "false": False},
            where_cfg + " Float8 (with the FP8 all-gather: precompute_float8_dynamic_scale_for_fsdp after the step)"),
        "--float8.force_recompute_fp8_weight_in_bwd": Flag(
            "fp8_recompute_weight_bwd", {"": True, "true": True, "false": False},
            where_cfg + " Float8; Float8LinearConfig(force_recompute_fp8_weight_in_bwd)"),
    }


_1E = "TT@1ea476e"  # 2024-04-24, "update readme.md and performance.md"
_1E_PAR = _1E + " torchtitan/parallelisms/parallelize_llama.py"
_1E_CFG = _1E + " torchtitan/config_manager.py"


def torchtitan_2024_04(name: str) -> Release:
    """torchtitan at 1ea476e (2024-04-24): the code of the 64-A100 runs of docs/performance.md (its Llama 2 rows
    were published at 395a526, 2024-04-18, with the same parallelize_llama.py)."""
    cite = _fsdp2_cite(
        _1E_PAR + " L142-214 (TP plan, SequenceParallel norms)",
        _1E_PAR + " L225-239: fully_shard per block, reshard_after_forward for every block but the last (no "
                  "pipeline parallelism in this code; the last block's kept gather: not priced)",
        "torchtitan's llama has no MoE (the field's generic value)",
        _1E + " torchtitan/models/llama/model.py L204: F.scaled_dot_product_attention(is_causal=True): " + _SDPA_FA2,
        _1E_PAR + " L219-222: MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32) over fp32 parameters",
        fp8_scaling="FP8 at this commit is --training.fp8_linear (config_manager.py L216, torchao Float8Linear, "
                    "dynamic scaling); none of the priced runs use it",
        fp8_params="no FP8 all-gather at this commit",
        selective_ac=_1E_CFG + " L289-291 --activation_checkpoint.selective_ac_option default '2' (every second "
                     "block, " + _1E_PAR + " L82-104); the recipes' 'op' is a flag of the run",
        torch_compile=_1E_CFG + " L211 --training.compile (store_true: off)",
        fp8_precompute_scales="no FP8 all-gather at this commit",
        fp8_recompute_weight_bwd="no force_recompute_fp8_weight_in_bwd option at this commit")
    fw = _fsdp2(name, Reshard.ALWAYS, MoeDispatcher.ALLTOALL, master=True, fp8_scaling=Fp8Scaling.CURRENT,
                selective_ac=SelectiveAc(SacPolicy.BLOCKS, 2), context_parallel=False, uneven_pipeline=False,
                attention=AttentionImpl.SDPA_FLASH, repeat_kv=True).with_(eager_norm=True, eager_pointwise=True)
    cite.update(context_parallel="no context parallelism at this commit",
                repeat_kv=_1E + " torchtitan/models/llama/model.py L196-197: " + _REPEAT_KV,
                eager_norm=_1E_CFG + " L131-134 --model.norm_type default 'rmsnorm': torchtitan/models/norms.py "
                           "L71-95 RMSNorm (x.float(), pow, mean, rsqrt, mul, type_as, * weight; the recipes' "
                           "'fused_rmsnorm' is a flag of the run)",
                eager_pointwise=_1E + " torchtitan/models/llama/model.py L105-110, L247-248:" + _EAGER_POINTWISE,
                cp_rotate="no context parallelism at this commit (the field's generic value)",
                uneven_pipeline=_1E_PAR + " L139-140: pipeline parallelism not implemented at this commit")
    defaults = _fsdp2_defaults(_1E_CFG, Setting(PER_REPLICA, _1E_CFG + " L163 --training.batch_size: the "
                                                             "per-replica batch, no gradient accumulation"))
    defaults["recompute"] = Setting("selective", _1E_CFG + " L283-285 --activation_checkpoint.mode default selective")
    defaults["sp"] = _sp_with_tp(_1E_PAR + " L142-200: with tp_enabled, SequenceParallel() on norm, attention_norm, "
                                 "ffn_norm")
    flags = torchtitan_flags(_1E_CFG, _1E_PAR + " L36-41 no_recompute_list (mm, flash/efficient SDPA, "
                                                "reduce_scatter_tensor), L46-60 'every second mm' recomputed")
    flags["--model.norm_type"] = Flag("eager_norm", _NORM_TYPES, _1E_CFG + " L131-134; torchtitan/models/norms.py "
                                      "create_norm: 'fused_rmsnorm' the Triton kernel of L216 TritonFusedRMSNorm")
    for key in ("--parallelism.fsdp_reshard_after_forward", "--float8.enable_fsdp_float8_all_gather",
                "--float8.precompute_float8_dynamic_scale_for_fsdp", "--float8.force_recompute_fp8_weight_in_bwd"):
        del flags[key]
    return Release(fw, FrameworkFamily.FSDP2, "torchtitan-2024-04", "2024-04-24",
                   "torchtitan at 1ea476e (2024-04-24)", cite, defaults, flags)


_9D = "TT@9dec370"  # 2024-12-26
_9D_PAR = _9D + " torchtitan/parallelisms/parallelize_llama.py"
_9D_CFG = _9D + " torchtitan/config_manager.py"


def torchtitan_2024_12(name: str) -> Release:
    """torchtitan at 9dec370 (2024-12-26): the code of the torchtitan team's H100 benchmarks
    (benchmarks/llama3_h100_202412_torchtitan.md, "Versions and Dates")."""
    cite = _fsdp2_cite(
        _9D_PAR + " apply_tp",
        _9D_PAR + " L309-339 apply_fsdp: reshard every block but the last unless pipeline parallelism is on",
        "torchtitan's llama has no MoE (the field's generic value)",
        "torch scaled_dot_product_attention at torch 1963fc8: " + _SDPA_FA2 + "; with context parallelism " + _9D
        + " torchtitan/utils.py L208-217 allows only sdpa_kernel([FLASH_ATTENTION, EFFICIENT_ATTENTION])",
        _9D_CFG + " L379, L389: --training.mixed_precision_param bfloat16, --training.mixed_precision_reduce float32",
        fp8_scaling=_9D + " docs/float8.md L18: 'tensor-wise scaling with dynamic scales' (torchao Float8Linear): "
                    "each tensor's scale from its own amax, capsim's current scaling",
        fp8_params=_9D_CFG + " L542 --float8.enable_fsdp_float8_all_gather (store_true: off)",
        overlap_tp_comm=_9D_CFG + " L288 --experimental.enable_async_tensor_parallel (off): a flag of the run",
        selective_ac=_9D_CFG + " L522-524 --activation_checkpoint.selective_ac_option default '2' (every other "
                     "block fully checkpointed, " + _9D_PAR + " L278-282)",
        torch_compile=_9D_CFG + " L399 --training.compile (store_true: off); " + _9D_PAR + " L303 "
                      "torch.compile(transformer_block, fullgraph=True): with context parallelism torch's ring "
                      "(its fp32 merge passes included) is traced into each block's graph; priced as eager",
        fp8_precompute_scales=_9D_CFG + " L547 (store_true: off)",
        fp8_recompute_weight_bwd="not an option at 9dec370 (the field's generic value)",
        cp_rotate=_9D_CFG + " L365-377 --experimental.context_parallel_rotate_method default 'allgather', passed "
                  "to torch's set_rotate_method (" + _9D + " torchtitan/utils.py L171-193; pytorch/pytorch#142093)",
        repeat_kv=_9D + " torchtitan/models/llama/model.py L201-202: " + _REPEAT_KV,
        cp_in_graph=_9D_PAR + " L303 torch.compile(transformer_block, fullgraph=True): " + _CP_IN_GRAPH)
    cite.update(eager_norm=_9D_CFG + " L174-177 --model.norm_type default 'rmsnorm' (train_configs/llama3_8b.toml, "
                           "llama3_70b.toml L21 too): torchtitan/models/norms.py L96-101 RMSNorm (x.float(), pow, "
                           "mean, rsqrt, mul, type_as, * weight)",
                eager_pointwise=_9D + " torchtitan/models/llama/model.py L108-113, L253 FeedForward.forward:"
                                + _EAGER_POINTWISE)
    cite["pipeline_split"] = (_9D + " torchtitan/parallelisms/pipeline_llama.py L70-72: without --experimental."
                              "pipeline_parallel_split_points, pipelining_utils.py L18-57 generate_split_points (the "
                              "first stage base layers, the middle ones one heavier while the remainder lasts, the "
                              "last the rest; 2 stages per rank for looped schedules)")
    fw = _fsdp2(name, Reshard.NOT_WITH_PP, MoeDispatcher.ALLTOALL, master=True, fp8_scaling=Fp8Scaling.CURRENT,
                selective_ac=SelectiveAc(SacPolicy.BLOCKS, 2), attention=AttentionImpl.SDPA_FLASH, repeat_kv=True,
                pipeline_split=PipelineSplit.MIDDLE_LOADED).with_(eager_norm=True, eager_pointwise=True, cp_in_graph=True)
    defaults = _fsdp2_defaults(_9D_CFG, Setting(PER_REPLICA, _9D_CFG + " L219 --training.batch_size: the "
                                                             "per-replica batch, no gradient accumulation"))
    defaults["recompute"] = Setting("selective", _9D_CFG + " L516-518 --activation_checkpoint.mode default selective")
    defaults["sp"] = _sp_with_tp(_9D_PAR + " L117-191 apply_tp: SequenceParallel() on norm (L137), attention_norm "
                                 "(L176), ffn_norm (L185)")
    flags = torchtitan_flags(_9D_CFG, _9D_PAR + " L214-222 _save_list (mm, flash/efficient SDPA, abs, max), "
                                                "L254-258 'except every second mm'")
    del flags["--float8.force_recompute_fp8_weight_in_bwd"]
    flags["--experimental.context_parallel_rotate_method"] = _rotate_flag(_9D_CFG + " L365-377")
    flags["--model.norm_type"] = Flag("eager_norm", _NORM_TYPES, _9D_CFG + " L174-177; torchtitan/models/norms.py "
                                      "build_norm ('fused_rmsnorm': the Triton FusedRMSNorm)")
    flags["--experimental.enable_async_tensor_parallel"] = Flag(
        "overlap_tp_comm", {"": True}, _9D_CFG + " L288; micro-pipelined TP collectives under torch.compile")
    return Release(fw, FrameworkFamily.FSDP2, "torchtitan-2024-12", "2024-12-26",
                   "torchtitan at 9dec370 (2024-12-26) with torchao eab345c (2024-12-23)", cite, defaults, flags)


def torchtitan_2025_06(name: str) -> Release:
    """torchtitan at e7c0cae (2025-06-11): the code of the Trainy/WhiteFiber H200 benchmark
    (benchmarks/llama3-8b_h200_202506_trainy-whitefiber.md, "Versions and Dates")."""
    cite = _fsdp2_cite(
        _E7_PAR + " apply_tp",
        _E7_PAR + " L313-367 apply_fsdp: reshard_after_forward_policy 'default' (config_manager.py L282) = reshard "
                  "every block but the last unless pipeline parallelism is on (the last block's kept gather: "
                  "not priced)",
        "torchtitan's llama3 has no MoE (the field's generic value)",
        _E7 + " torchtitan/models/attention.py L183-214: F.scaled_dot_product_attention with the flash backend "
              "first (cuDNN first only on sm100): " + _SDPA_FA2,
        _E7_CFG + " L221, L227: mixed_precision_param bfloat16, mixed_precision_reduce float32 over fp32 parameters",
        fp8_scaling=_E7 + " torchtitan/components/quantization/float8.py: with no recipe_name, torchao "
                    "Float8LinearConfig(), 'Float8 tensorwise scaled training' (docs/float8.md L12: tensorwise "
                    "scaling, 'the overhead of dynamic quantization'): each tensor's scale from its own amax, "
                    "capsim's current scaling",
        fp8_params=_E7_CFG + " L449 enable_fsdp_float8_all_gather default False (a flag of the run)",
        selective_ac=_E7_CFG + " L440 selective_ac_option default '2': every second block fully checkpointed "
                     "(" + _E7_PAR + " L281-290); the recipe's 'op' is a flag of the run",
        torch_compile=_E7_CFG + " L233 compile default False",
        fp8_precompute_scales=_E7_CFG + " L452 default False (docs/float8.md L18: the weights' amax all-reduced once "
                              "for all parameters instead of once each; neither priced)",
        fp8_recompute_weight_bwd=_E7_CFG + " L455 default False",
        cp_rotate=_E7_CFG + " L356 Parallelism.context_parallel_rotate_method default 'allgather' (torchtitan/"
                  "distributed/utils.py L158-169 set_rotate_method)",
        repeat_kv=_E7 + " torchtitan/models/llama3/model.py L250-251: " + _REPEAT_KV,
        cp_in_graph=_E7_PAR + " L307 torch.compile(transformer_block, fullgraph=True): " + _CP_IN_GRAPH,
        overlap_tp_comm=_E7_CFG + " L301-302 --parallelism.enable_async_tensor_parallel default False (a flag of "
                        "the run; 'only effective when compile is enabled')")
    cite.update(eager_norm=_E7 + " torchtitan/models/llama3/model.py L341-342: torch's nn.RMSNorm, whose kernels at "
                           "torch 2.8.0a0 are not read here: priced as one fused kernel (the field's generic value; "
                           "the benchmark's runs are compiled)",
                eager_pointwise=_E7 + " torchtitan/models/llama3/model.py L155-160, L302:" + _EAGER_POINTWISE)
    fw = _fsdp2(name, Reshard.NOT_WITH_PP, MoeDispatcher.ALLTOALL, master=True, fp8_scaling=Fp8Scaling.CURRENT,
                selective_ac=SelectiveAc(SacPolicy.BLOCKS, 2), attention=AttentionImpl.SDPA_FLASH, repeat_kv=True
                ).with_(eager_pointwise=True, cp_in_graph=True)
    defaults = _fsdp2_defaults(_E7_CFG, Setting(PER_REPLICA, _E7_CFG + " training.local_batch_size, no gradient "
                                                             "accumulation: the per-replica batch"))
    defaults["recompute"] = Setting("selective", _E7_CFG + " L437 ActivationCheckpoint.mode default 'selective' "
                                                 "(" + _E7_TOML + " sets it too)")
    defaults["sp"] = _sp_with_tp(_E7_PAR + " L123 apply_tp: SequenceParallel() on norm (L143), attention_norm "
                                 "(L180), ffn_norm (L189)")
    return Release(fw, FrameworkFamily.FSDP2, "torchtitan-2025-06", "2025-06-11",
                   "torchtitan at e7c0cae (2025-06-11) with torchao 0afa4c1 (2025-06-13)", cite, defaults,
                   {**torchtitan_flags(_E7_CFG, _E7_PAR + _OP_POLICY),
                    "--parallelism.context_parallel_rotate_method": _rotate_flag(_E7_CFG + " L356"),
                    "--parallelism.enable_async_tensor_parallel": Flag(
                        "overlap_tp_comm", {"": True, "true": True, "false": False},
                        _E7_CFG + " L301-302; micro-pipelined TP collectives under torch.compile"),
                    "--float8.recipe_name": _recipe_flag(_E7_CFG + " L463-464; " + _E7 + _RECIPES)})


def torchtitan_2026_08(name: str) -> Release:
    """torchtitan at b5bcd76 (2026-08-21): FSDP2 per transformer block, reshard policy 'default'."""
    fsdp = "TT@b5bcd76 torchtitan/distributed/fsdp.py"
    ac = "TT@b5bcd76 torchtitan/distributed/activation_checkpoint.py"
    cite = _fsdp2_cite(
        "TT@b5bcd76 torchtitan/models/llama3/parallelize.py",
        fsdp + " L112-136 get_fsdp_reshard_after_forward_policy: 'default' (torchtitan/config/configs.py L145) = "
               "reshard unless pipeline parallelism is on",
        "torchtitan's MoE dispatches with all-to-all collectives (the field's generic value)",
        "torch scaled_dot_product_attention (flash backend on sm80+)",
        "TT@b5bcd76 torchtitan/config/configs.py L94, L102: mixed_precision_param bfloat16, "
        "mixed_precision_reduce float32 (fsdp.py L223: MixedPrecisionPolicy over fp32 parameters)",
        fp8_scaling="TT@b5bcd76 torchtitan/components/quantization/float8.py L58, L113: torchao Float8LinearConfig."
                    "from_recipe_name('rowwise'): dynamic scaling from each row's own amax (capsim's current scaling; "
                    "its per-row amax priced as one pass like the per-tensor one)",
        fp8_params="TT@b5bcd76 torchtitan/components/quantization/float8.py: the rowwise recipes have no FP8 "
                   "all-gather; FSDP2 gathers bf16",
        selective_ac=ac + " L185-281 SelectiveAC: saves SDPA, max, linear/mm 'except every second mm/linear' and "
                     "recomputes every other op",
        fp8_precompute_scales="TT@b5bcd76 has no FP8 all-gather, so no precomputed scales",
        fp8_recompute_weight_bwd="TT@b5bcd76 rowwise recipes: not an option",
        cp_rotate="torchtitan#3086 (2026-04-24): context_parallel_rotate_method unused since #2555, context "
                  "parallelism unified on all-gather (torch/distributed/tensor/experimental/_attention.py); priced as "
                  "torch's all-gather rotater",
        repeat_kv="TT@b5bcd76 torchtitan/models/common/attention.py L901: enable_gqa = n_heads > n_kv_heads, K and V "
                  "passed to SDPA with their own heads",
        cp_in_graph="TT@b5bcd76 torchtitan/distributed/compile.py L70 compiles each block fullgraph, but how this "
                    "commit's context parallelism dispatches attention is not read: priced outside the graph (the "
                    "field's generic value)",
        pp_reduce_at_step_end="TT@b5bcd76 README.md L105, L117: the PyTorch nightly, after pytorch#165106 (2025-10): "
                              "torch 2.13.0 torch/distributed/pipelining/schedules.py L1172-1177 Schedule1F1B calls "
                              "stage.perform_reduce_grad (stage.py L1164-1191) after its last backward send is waited "
                              "for; L1252-1282 _add_reduce_grad puts REDUCE_GRAD after a stage's last backward action")
    fw = _fsdp2(name, Reshard.NOT_WITH_PP, MoeDispatcher.ALLTOALL, master=True, fp8_scaling=Fp8Scaling.CURRENT,
                selective_ac=SelectiveAc(SacPolicy.OPS), pp_reduce_at_step_end=True)
    defaults = _fsdp2_defaults("TT@b5bcd76 torchtitan/config/configs.py",
                               Setting(PER_REPLICA, "training.local_batch_size: the per-replica batch, no accumulation"))
    defaults["sp"] = _sp_with_tp("TT@b5bcd76 torchtitan/config/configs.py L169-170 enable_sequence_parallel: bool = "
                                 "True ('Enabled by default')")
    return Release(fw, FrameworkFamily.FSDP2, "torchtitan-2026-08", "2026-08-21",
                   "torchtitan main at b5bcd76 (2026-08-21)", cite, defaults, fsdp2_flags(fsdp))


__all__ = ["torchtitan_2024_04", "torchtitan_2024_12", "torchtitan_2025_06", "torchtitan_2026_08", "torchtitan_flags"]
