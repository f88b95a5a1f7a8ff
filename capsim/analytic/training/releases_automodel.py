"""NeMo AutoModel releases after October 2025: PyTorch FSDP2 through AutoModel's ``FSDP2Manager`` (dense models on
its default parallelization strategy, MoE models on ``components/moe/parallelizer.py``). Each is a :class:`Release`
like ``nemo-automodel-2025-10`` of ``releases_current.py``; a run states its AutoModel settings as flags spelled as
its YAML config names them (``distributed.<key>`` -> ``--<key with dashes>``).

The published tables (docs/performance-summary.md, later docs/performance-summary.mdx, github.com/NVIDIA-NeMo/
Automodel): ce005dd86 (2025-10-06, "Last Updated 2025-10-02") and 364f600be (2025-10-08) are the MoE pre-training
table of ``nemo-automodel-2025-10``; 01926a5c4 .. 8c9823d42 (2025-11 to 2026-01) add LoRA fine-tuning rows;
651d08352 (2026-02-25) and fb1f51486 (2026-03-11) Nemotron V3 Nano/Super rows; dccd977aa (2026-04-10) the Llama 3.1
70B pre-training row with context parallelism (``nemo-automodel-2026-04``); cb9765441 (2026-06-12) a Nemotron V3
Ultra row. Every table is DGX-H100, BF16. Besides them, docs/deepep_vs_hybridep_benchmark.md (branch
huiyingl/deepep-hybridep-benchmark-report, 4e1e3d6cd, 2026-07-22, on main's 79378e626) measures Qwen3-30B-A3B
training on 8 and 16 H100 with each dispatcher (``nemo-automodel-2026-07``).

Citations: ``AM@<commit>`` is github.com/NVIDIA-NeMo/Automodel at that commit; line numbers are in that file there.
"""

from __future__ import annotations

from capsim.analytic.training.release import (
    PER_REPLICA,
    Flag,
    FlexBackend,
    FrameworkFamily,
    MoeDispatcher,
    PipelineSplit,
    Release,
    Reshard,
    Setting,
)
from capsim.analytic.training.releases_fsdp2 import (
    _fsdp2,
    _fsdp2_cite,
    _fsdp2_defaults,
    fake_gate_flag,
    fsdp2_flags,
)

_DC = "AM@dccd977aa"  # 2026-04-10, "feat: FSDP2 w weight prefetching and async TP optimization (#1711)"
_DC_CFG = _DC + " nemo_automodel/components/distributed/config.py"
_DC_PAR = _DC + " nemo_automodel/components/distributed/parallelizer.py"
_DC_UTILS = _DC + " nemo_automodel/components/models/common/utils.py"
_79 = "AM@79378e626"  # 2026-07-22 main, the base of the DeepEP/HybridEP report (4e1e3d6cd)
_79_CFG = _79 + " nemo_automodel/components/distributed/config.py"
_79_INFRA = _79 + " nemo_automodel/_transformers/infrastructure.py"


def _split_cite(at: str, fqn_lines: str, rank_lines: str) -> str:
    return (at + " nemo_automodel/components/distributed/pipelining/functional.py " + fqn_lines + " generate_hf_model_"
            "fqn_per_model_part: the first (layers mod stages) virtual stages one layer heavier; " + rank_lines +
            " stage_ids_this_rank 'loop': virtual stage i on rank i mod pp")


def automodel_flags(cfg: str, par: str, gate: str) -> dict[str, Flag]:
    """The FSDP2Config settings (``distributed:`` keys, in ``cfg``) capsim prices, on top of ``fsdp2_flags``; the
    release's citations give each default's line."""
    return {
        **fsdp2_flags(par),
        "--fake-balanced-gate": fake_gate_flag(gate),
        "--defer-fsdp-grad-sync": Flag("defer_grad_sync", {"true": True, "false": False},
                                       cfg + " defer_fsdp_grad_sync; nemo_automodel/components/distributed/utils.py "
                                       "get_sync_ctx: set_requires_gradient_sync(is_optim_step)"),
        # FSDP2 prefetches implicitly either way (its all-gathers run on their own stream ahead of the compute):
        # the explicit chains change the prefetch depth, not whether gathers overlap, so both values price alike.
        "--enable-fsdp2-prefetch": Flag("zero3_prefetch", {"true": True, "false": True},
                                        cfg + " enable_fsdp2_prefetch; " + par + " apply_fsdp2_sharding_recursively: "
                                        "explicit forward (depth 1) and backward (depth 2) prefetch chains"),
        "--enable-compile": Flag("torch_compile", {"true": True, "false": False},
                                 cfg + " enable_compile; " + par + " _apply_per_layer_compile"),
        "--enable-async-tensor-parallel": Flag("overlap_tp_comm", {"true": True, "false": False},
                                               cfg + " enable_async_tensor_parallel; " + par + ": Inductor "
                                               "micro-pipeline TP (requires sequence parallelism)"),
        "--sequence-parallel": Flag("layout.sp", {"true": True, "false": False}, cfg + " sequence_parallel"),
        # BackendConfig.dispatcher: DeepEP and HybridEP both send a token once per destination node (capsim's flex
        # dispatcher; the SMs either reserves are not priced); "torch" all-gathers the tokens over the EP group.
        # UCCL-EP is a drop-in of DeepEP's API (priced with DeepEP's kernel costs).
        "--dispatcher": Flag("framework", {
            "deepep": {"moe_dispatcher": MoeDispatcher.FLEX, "moe_flex_backend": FlexBackend.DEEPEP},
            "hybridep": {"moe_dispatcher": MoeDispatcher.FLEX, "moe_flex_backend": FlexBackend.HYBRIDEP},
            "uccl_ep": {"moe_dispatcher": MoeDispatcher.FLEX, "moe_flex_backend": FlexBackend.DEEPEP},
            "torch": {"moe_dispatcher": MoeDispatcher.ALLGATHER}},
            "nemo_automodel/components/models/common/utils.py BackendConfig.dispatcher ('torch': "
            "DTensor all-gather/reduce-scatter)"),
    }


def nemo_automodel_2026_04(name: str) -> Release:
    """NeMo AutoModel main at dccd977aa (2026-04-10): the code of the Llama 3.1 70B pre-training row its
    performance summary added that day (examples/llm_pretrain/custom_llama3_1_70b_pretrain_benchmark_8nodes.yaml)."""
    cite = _fsdp2_cite(
        _DC_PAR + " DefaultParallelizationStrategy",
        _DC_PAR + " L792-798 apply_fsdp2_sharding_recursively: every block but the last resharded after its forward "
                  "without pipeline parallelism, none with it (the last block's kept gather: not priced); the MoE "
                  "parallelizer keeps its own default reshard_after_forward=False (" + _DC + " nemo_automodel/"
                  "components/moe/parallelizer.py L345; --reshard-after-forward=never)",
        _DC_UTILS + " L174-180 BackendConfig.dispatcher: 'deepep' where DeepEP is installed (one copy per "
                    "destination node)",
        _DC + " attention through PyTorch SDPA (the recipes' attn_implementation: sdpa, required for cp > 1; "
              "nemo_automodel/_transformers/auto_model.py L464) or TE DotProductAttention (" + _DC_UTILS + " L168): "
              "fused flash kernels either way",
        _DC_CFG + " L117-123 FSDP2Config mp_policy: param_dtype and reduce_dtype bfloat16 (gradients reduced in "
                  "bf16); models load in their checkpoint's dtype (nemo_automodel/_transformers/auto_model.py L463 "
                  "torch_dtype='auto'; bf16 for Llama 3.1), so the optimizer steps bf16 parameters: no fp32 copy",
        defer_grad_sync=_DC_CFG + " L108 defer_fsdp_grad_sync = True: no reduce-scatter and no resharding until "
                                  "the step's last micro-batch (" + _DC + " nemo_automodel/components/distributed/"
                                  "utils.py L240-244 set_requires_gradient_sync(is_optim_step))",
        zero3_prefetch="FSDP2's implicit prefetching overlaps each block's all-gather with the previous block's "
                       "compute; " + _DC_CFG + " L112 enable_fsdp2_prefetch=False adds no explicit chains by default",
        selective_recompute=_DC_CFG + " L107 activation_checkpointing is a bool: whole attention and MLP modules "
                                      "are checkpointed (" + _DC_PAR + " L215-280), no selective policy",
        overlap_tp_comm=_DC_CFG + " L110 enable_async_tensor_parallel=False (a flag of the run)",
        torch_compile=_DC_CFG + " L111 enable_compile=False (a flag of the run)",
        cp_in_graph=_DC + " nemo_automodel/components/distributed/cp_utils.py L127-151 attach_cp_sdpa_hooks: the "
                          "CP SDPA swapped for a @torch._dynamo.disable wrapper, so torch's ring runs eagerly outside "
                          "the compiled layers (" + _DC_PAR + " L684-727)",
        pipeline_split=_split_cite(_DC, "L123-134", "L70-75"))
    # Fused pointwise ops whatever the compile flag says but the dense MLP's: the field stays off (a model whose
    # RoPE is fused but whose silu * up runs eager is not stated; the Llama 3.1 70B row compiles its blocks).
    cite.update(eager_norm=_DC_UTILS + " L170 BackendConfig.rms_norm 'torch_fp32' (the Llama 3.1 70B recipe's too): "
                                       "L237-243 _float32_rms_norm_fwd @torch.compile(fullgraph=True), one fused "
                                       "kernel in and out of the blocks; 'te': TE RMSNorm",
                eager_pointwise=_DC_UTILS + " L171 rope_fusion = HAVE_TE: " + _DC + " nemo_automodel/components/"
                                            "models/llama/model.py L121-123 TE's fused RoPE (llama/rope_utils.py "
                                            "L70-90 fused=True); L167-170 LlamaMLP act_fn(gate_proj(x)) * up_proj(x) "
                                            "is eager torch, fused only under enable_compile (not priced eager "
                                            "here: it would need a field apart from RoPE's)")
    fw = _fsdp2(name, Reshard.NOT_WITH_PP, MoeDispatcher.FLEX, master=False, defer_grad_sync=True,
                selective_recompute=False, pipeline_split=PipelineSplit.FRONT_LOADED)
    defaults = _fsdp2_defaults(_DC_CFG + " FSDP2Config", Setting(PER_REPLICA, "step_scheduler local_batch_size has "
                                                                              "no default: the per-replica batch"))
    return Release(fw, FrameworkFamily.FSDP2, "nemo-automodel-2026-04", "2026-04-10",
                   "NeMo AutoModel main at dccd977aa (2026-04-10; docs/performance-summary.md of that commit)",
                   cite, defaults, automodel_flags(_DC_CFG, _DC_PAR, _DC + " nemo_automodel/components/moe/layers.py L188-190"))


def nemo_automodel_2026_07(name: str) -> Release:
    """NeMo AutoModel main at 79378e626 (2026-07-22): FSDP2Config now reduces gradients in fp32; models with
    expert parallelism go through the MoE parallelizer, which keeps gathered parameters until the backward."""
    cite = _fsdp2_cite(
        _79 + " nemo_automodel/components/distributed/parallelizer.py DefaultParallelizationStrategy",
        _79 + " nemo_automodel/components/distributed/parallelizer.py L634-639: FSDP2Config.reshard_after_forward "
              "(" + _79_CFG + " L271, None) else every block but the last without pipeline parallelism, none with "
              "it; with ep > 1 the MoE parallelizer replaces it (" + _79_INFRA + " L385-407) with "
              "MoEParallelizerConfig.reshard_after_forward=False (" + _79_CFG + " L175; --reshard-after-forward=never)",
        _79 + " nemo_automodel/components/models/common/utils.py L203-209 BackendConfig.dispatcher: 'deepep' where "
              "DeepEP is installed (one copy per destination node)",
        _79 + " nemo_automodel/components/models/common/utils.py L196 BackendConfig.attn 'te': TE DotProductAttention "
              "(flash/fused kernels)",
        _79_CFG + " L258-262 FSDP2Config mp_policy default: bf16 compute, float32 gradient reduction; the resident "
                  "parameters stay in the checkpoint's bf16 where torch_dtype is unset or 'auto' (" + _79 + " docs/"
                  "guides/mixed-precision-training.mdx L104: torch.optim.Adam then keeps bf16 state): no fp32 copy",
        grads_fp32=_79_CFG + " L261 reduce_dtype=torch.float32: gradients reduce-scattered in fp32",
        defer_grad_sync=_79_CFG + " L270 defer_fsdp_grad_sync = True (" + _79 + " nemo_automodel/components/"
                                  "distributed/utils.py L254-258 set_requires_gradient_sync(is_optim_step))",
        zero3_prefetch="FSDP2's implicit prefetching overlaps each block's all-gather with the previous block's "
                       "compute; " + _79_CFG + " L274 enable_fsdp2_prefetch=False adds no explicit chains",
        selective_recompute=_79_CFG + " L51, L221-223: activation_checkpointing True/'full' or 'selective' (PyTorch "
                                      "selective activation checkpointing of each block)",
        overlap_tp_comm=_79_CFG + " L272 enable_async_tensor_parallel=False (a flag of the run)",
        torch_compile=_79_CFG + " L273 enable_compile=False (a flag of the run)",
        pipeline_split=_split_cite(_79, "L139-150", "L86-91"))
    # The Qwen3-30B-A3B recipe (qwen3_moe_30b_te_deepep.yaml @4e1e3d6cd backend rms_norm: te, rope_fusion: true,
    # experts: gmm): TE's RMSNorm, TE's fused RoPE and the compiled expert activation; the fields stay off.
    cite.update(eager_norm=_79 + " nemo_automodel/components/models/common/utils.py L309-338 "
                                 "initialize_rms_norm_module 'te': TransformerEngine RMSNorm (the recipe's backend)",
                eager_pointwise=_79 + " nemo_automodel/components/models/gpt_oss/rope_utils.py L137-171 "
                                      "apply_rotary_emb_qk rope_fusion: TE apply_rotary_pos_emb (qwen3_moe/layers.py "
                                      "L156-161); nemo_automodel/components/moe/experts.py L622-628 "
                                      "weighted_bias_swiglu_impl (moe/megatron/moe_utils.py @torch.compile)")
    fw = _fsdp2(name, Reshard.NOT_WITH_PP, MoeDispatcher.FLEX, master=False, grads_fp32=True, defer_grad_sync=True,
                pipeline_split=PipelineSplit.FRONT_LOADED)
    defaults = _fsdp2_defaults(_79_CFG + " FSDP2Config", Setting(PER_REPLICA, "step_scheduler local_batch_size has "
                                                                               "no default: the per-replica batch"))
    return Release(fw, FrameworkFamily.FSDP2, "nemo-automodel-2026-07", "2026-07-22",
                   "NeMo AutoModel main at 79378e626 (2026-07-22; the DeepEP/HybridEP report 4e1e3d6cd adds only "
                   "docs/deepep_vs_hybridep_benchmark.md to it)", cite, defaults,
                   automodel_flags(_79_CFG, _79 + " nemo_automodel/components/distributed/parallelizer.py",
                                   _79 + " nemo_automodel/components/moe/layers.py L199-201"))


__all__ = ["automodel_flags", "nemo_automodel_2026_04", "nemo_automodel_2026_07"]
