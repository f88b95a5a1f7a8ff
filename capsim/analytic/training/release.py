"""The types of a training-framework preset: what the software does (``Framework``), which release that describes
and where each fact comes from (``Release``), the defaults of settings a run did not publish (``Setting``), and the
flags a run may state (``Flag``). The dated presets themselves live in ``framework.py``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from enum import StrEnum

import numpy as np

from capsim.analytic.cp_memory import CpRotate
from capsim.analytic.eager import Eager, YarnRope
from capsim.analytic.fp8 import NormQuantize
from capsim.analytic.loss import LossKernel
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.recompute import SacPolicy, SelectiveAc
from capsim.errors import SpecError
from capsim.specs.pipeline_layout import LayerSplit, default_uneven, front_loaded, middle_loaded
from capsim.specs.precision import DType, Fp8Scaling, Precision


class MoeDispatcher(StrEnum):
    """How MoE tokens reach their experts' ranks (megatron/core/transformer/moe/README.md, "Token Dispatching",
    NVIDIA/Megatron-LM@d98e8a6)."""

    ALLGATHER = "allgather"  # all-gather every token over the EP x ETP group, reduce-scatter the outputs
    ALLTOALL = "alltoall"  # NCCL all-to-all of every (token, expert) copy
    FLEX = "flex"  # DeepEP / HybridEP: "removes redundant tokens during cross-node communication"


class FlexBackend(StrEnum):
    """Which kernels the flex dispatcher runs (Megatron-Core ``moe_flex_dispatcher_backend``, transformer_config.py
    L682 at core_v0.16.0 (3bec9aa9), default "deepep"; NeMo AutoModel ``BackendConfig.dispatcher``)."""

    DEEPEP = "deepep"  # deepseek-ai/DeepEP V1 normal kernels (NVSHMEM; SM warp copies)
    HYBRIDEP = "hybridep"  # NVIDIA's HybridEP (DeepEP hybrid-ep branch: TMA copies, GPU-initiated RDMA)


class Reshard(StrEnum):
    """When FSDP2 frees a block's gathered parameters after its forward (``reshard_after_forward``)."""

    ALWAYS = "always"  # re-gather them for the backward (ZeRO-3)
    NEVER = "never"  # keep them gathered until the backward (ZeRO-2 traffic, ZeRO-3 memory between passes)
    NOT_WITH_PP = "not-with-pp"  # torchtitan's "default": always, except never when pipeline parallelism is on


class LossCopy(StrEnum):
    """What the loss keeps for its backward beside the LM head's 16-bit logits (per logit)."""

    FP32 = "fp32"  # an fp32 softmax of an fp32 copy of the logits (Megatron's vocab_parallel_cross_entropy)
    ACTIVATION = "activation"  # log_softmax's output in the logits' own format (torch cross_entropy, no upcast)
    NONE = "none"  # nothing: the kernel overwrites the logits with their gradient (TE parallel_cross_entropy)


# Megatron's unfused vocab-parallel cross-entropy (capsim.analytic.loss.MEGATRON_PASSES), the same kernels from
# Megatron-LM 2021 to Megatron-Core 0.14: megatron/mpu/cross_entropy.py L31-103 (ML@6985e58, ML@9aad920; the caller,
# model/gpt_model.py, passes output.float() unless --fp16-lm-cross-entropy); megatron/core/tensor_parallel/
# cross_entropy.py L27-113 (ML@core_v0.8.0), L28-117 (ML@core_v0.14.0): .float(), torch.max, -=, torch.exp(out=),
# .sum, div_; backward mul_ (and autograd's cast of the fp32 gradient back to the logits' dtype).
MEGATRON_CE_PASSES = ("Megatron's unfused vocab_parallel_cross_entropy, each step its own pass over the logits: "
                      "megatron/core/tensor_parallel/cross_entropy.py (core_v0.8.0 L27-113, core_v0.14.0 L28-117; "
                      "megatron/mpu/cross_entropy.py L31-103 before Megatron-Core): .float(), torch.max, -= max, "
                      "torch.exp(out=), .sum, div_; backward mul_ by the loss gradient, then the cast back")


def megatron_ce(where: str) -> dict[str, str]:
    """The ``loss_kernel`` citation of a release that runs Megatron's unfused vocab-parallel cross-entropy
    (``where``: the file, lines and why the fusion is off)."""
    return {"loss_kernel": f"{where}: {MEGATRON_CE_PASSES}"}


# Megatron-Core from core_v0.13.0 (2025-07-25): the router probabilities scale the experts' activation, so the
# combine's unpermute is a plain sum that saves nothing (core_v0.12.0 token_dispatcher.py L645 still merged them there).
COMBINE_NO_PROBS = ("megatron/core/transformer/moe/token_dispatcher.py combine_postprocess / "
                    "get_restored_hidden_states_by_experts: unpermute(...) without probs; experts.py TEGroupedMLP "
                    "bias_act_func: weighted_bias_swiglu_impl(..., permuted_probs) applies them (since core_v0.13.0)")
COMBINE_PROBS = ("megatron/core/transformer/moe/token_dispatcher.py: unpermute(..., probs=self.probs) merges the "
                 "router probabilities in the combine (moe_utils.unpermute multiplies the expert outputs by them, "
                 "keeping both for the backward; until core_v0.12.x)")
# Megatron-Bridge pre-training: cross_entropy_loss_fusion True with cross_entropy_fusion_impl "te" (Megatron-Core
# language_module.py compute_language_model_loss -> te_parallel_cross_entropy), whose kernel writes the gradient
# into the logits in place and saves only them (TE@v2.8 transformer_engine/pytorch/cross_entropy.py L50-59,
# triton/cross_entropy.py L187).
FUSED_CE = ("src/megatron/bridge/models/gpt_provider.py cross_entropy_loss_fusion: bool = True; the perf scripts and "
            "recipes set cross_entropy_fusion_impl = 'te' (TE parallel_cross_entropy overwrites the bf16 logits with "
            "their gradient in place, TE@v2.8 transformer_engine/pytorch/cross_entropy.py L50-59, "
            "triton/cross_entropy.py L187: no fp32 copy)")
UNFUSED_CE = ("the loss runs on an fp32 copy of the logits and saves its fp32 softmax (Megatron-Core "
              "tensor_parallel/cross_entropy.py: vocab_parallel_logits.float(), save_for_backward(exp_logits); "
              "cross_entropy_loss_fusion default False, and its 'native' impl keeps the same fp32 exp_logits)")

# Megatron-Core's context parallelism: Transformer Engine's ring attention (as ``comms.cp_layer_s`` cites it).
TE_RING = ("Transformer Engine's ring attention (AttnFuncWithCP, cp_comm_type 'p2p', TE v1.8 transformer_engine/"
           "pytorch/attention.py L535): each step's K, V send overlaps that step's attention")
# The generic citation of ``cp_in_graph``: no torch context-parallel ring inside a compiled graph.
CP_NOT_IN_GRAPH = ("no torch context-parallel ring inside a compiled graph in this release (the field's generic "
                   "value)")
# The generic value of ``tp_gather_quantized`` for a release whose GEMMs are never quantized under TP here.
# The generic value of ``fp8_training`` for a release that trains in FP8: its recipe and that recipe's source are
# cited under ``fp8_scaling`` (Transformer Engine or torchao Float8Linear).
FP8_OFFERED = "FP8 training offered: its recipe and source are cited under fp8_scaling (the field's generic value)"
NO_TE_GATHER = "no Transformer Engine FP8 modules under tensor parallelism in this release (the field's generic value)"
# The generic value of ``norm_quantize`` for a release without Transformer Engine's LayerNormLinear under FP8.
KV_OWN_HEADS = ("K and V reach the attention kernel with the model's own KV heads (grouped-query attention in the "
                "kernel; the field's generic value)")
# The generic citation of ``eager_norm`` and ``eager_pointwise`` (and, with them off, of ``compiled_expert_act``).
FUSED_POINTWISE = ("the norm, RoPE and MLP activation run as one fused kernel each way (the op list's kernels; the "
                   "field's generic value)")
# The generic citation of ``compiled_expert_act`` (it matters only under eager_pointwise).
GENERIC_EAGER = {"compiled_expert_act": "the routed experts' activation priced as the dense MLP's (eager under "
                                        "eager_pointwise, else fused; the field's generic value)"}
NO_TE_NORM = ("no Transformer Engine LayerNormLinear under FP8 in this release: the cast after the norm is its own "
              "kernel (the field's generic value)")
# Megatron-Core's TE spec: the QKV and a dense fc1 are TELayerNormColumnParallelLinear (capsim.analytic.fp8).
_TE_NORM_SPEC = ("ML@core_v0.8.0 megatron/core/models/gpt/gpt_layer_specs.py L59, L69, L119: linear_qkv and a dense "
                 "linear_fc1 are TELayerNormColumnParallelLinear (input_layernorm / pre_mlp_layernorm IdentityOp)")
# TE 1.x to 2.7: the norm kernel writes the delayed-scaling FP8 copy; current scaling and MXFP8 quantize after.
TE_NORM_FP8 = (_TE_NORM_SPEC + "; TE@v1.8 module/layernorm_linear.py L126-137 (the norm writes FP8: "
               "_apply_normalization(..., fp8 and not return_layernorm_output)), L584 tex.fp8_transpose of the "
               "gathered norm output for the wgrad; TE@v2.2 csrc/extensions/normalization.cpp "
               "force_unfused_kernel for every quantizer but Float8Quantizer (current scaling: norm, then cast)")
# TE v2.8 onward: the same, and under current scaling the norm kernel finds the amax (the cast stays its own kernel).
TE_NORM_FP8_AMAX = (_TE_NORM_SPEC + "; TE@v2.8 and TE@71bbefbf csrc/extensions/normalization.cpp rmsnorm_fwd Impl: "
                    "Float8Quantizer FULLY_FUSED, Float8CurrentScalingQuantizer FUSED_NORM_AMAX_FP8 (norm + amax, "
                    "then quantize_with_amax), MXFP8 UNFUSED unless NVTE_NORM_FWD_USE_CUDNN, NVFP4 UNFUSED with the "
                    "inputs' post-RHT amax; common/normalization/rmsnorm/rmsnorm_api.cpp: a columnwise copy is a "
                    "separate nvte_transpose; Float8 quantizers gather rowwise only")
# the generic citation of ``moe_consecutive_experts`` (a router, learned or randomly forced, spreads a token's experts)
SPREAD_EXPERTS = ("a token's k experts are spread over the experts (a learned router or randomly forced balancing; "
                  "the field's generic value)")

# the generic citation of ``moe_flex_backend``
FLEX_DEEPEP = ("DeepEP's kernels: Megatron-Core's moe_flex_dispatcher_backend default 'deepep' (ML@core_v0.16.0 "
               "megatron/core/transformer/transformer_config.py L682; the only flex backend before it), NeMo AutoModel's "
               "BackendConfig dispatcher 'deepep'; the field's generic value where the release has no flex dispatcher")

# the generic citation of ``pp_schedule_sequences``
ONE_SCHEDULE = ("one pipeline schedule runs every micro-batch of the step (the field's generic value; where the "
                "release has no pipeline it is unused)")

# The DeepSpeed-only gradient fields of every release that is not DeepSpeed (their generic values).
# The generic values of the eager-path fields, for releases whose code path for those model features capsim has not
# read: the fused forms the op list holds.
FUSED_FORMS = {
    "glu_clamp_eager": "not read for this release: a clamped GLU is priced with its clamp inside the activation "
                       "kernel (the field's generic value; capsim.analytic.eager)",
    "yarn_rope": "not read for this release: a YaRN model's RoPE is priced as one fused kernel (the "
                           "field's generic value; capsim.analytic.eager)",
    "loss_kernel": "not read for this release, or a fused loss kernel: one softmax pass over the logits each way "
                   "(the op list's logits_softmax; the field's generic value)",
    "moe_fc1_bias_eager": "a biased model's expert fc1 bias in the grouped GEMM's epilogue (Transformer Engine "
                          "GroupedLinear bias; the field's generic value where the release's expert code is not read)"}
NOT_DEEPSPEED = {
    "zero_grad_allreduce": "not DeepSpeed's ZeRO-1/2: sharded gradients are reduce-scattered (this release's zero / "
                           "distributed_optimizer citation; the field's generic value)",
    "overlap_grad_reduce_min_zero": "not DeepSpeed: this release's overlap_grad_reduce holds at every sharding level "
                                    "(the field's generic value)",
    "zero3_reuse_elements": "not DeepSpeed: no reuse-distance rule; a block stays gathered only as its "
                            "reshard_after_forward policy says (the field's generic value)",
    "grad_bucket_elements": "not DeepSpeed: ZeRO-2/3 gradients are reduced per sharding unit, one transformer block "
                            "(the field's generic value)"}


class PipelineSplit(StrEnum):
    """Where a release puts the layers when pp x v does not divide them."""

    MEGATRON = "megatron"  # the options Megatron-Core states (capsim.specs.pipeline_layout.default_uneven)
    FRONT_LOADED = "front-loaded"  # torch.distributed.pipelining as NeMo AutoModel builds it (front_loaded)
    MIDDLE_LOADED = "middle-loaded"  # torchtitan's generate_split_points of late 2024 (middle_loaded)


@dataclass(frozen=True)
class RsOverlap:
    """How Transformer Engine's userbuffers overlap the reduce-scatter after each row-parallel forward GEMM (the
    attention output projection, ``proj_fprop``, and the MLP's fc2, ``fc2_fprop``), as a run's overlap config
    states it (transformer_engine/pytorch/module/base.py ``initialize_ub``; its defaults: method "pipeline",
    num_splits 4, set_sm_margin 0, TE@v1.8 L99-102, L228-232)."""

    chunks: int = 4  # pipelined in this many chunks; 0: ring exchange, one chunk per TP rank
    # Fractions of the SMs the communication kernels reserve away from those two GEMMs (num_sm / SMs where the
    # config sets set_sm_margin: the GEMM runs on the rest, TE@v1.8 csrc/comm_gemm_overlap.h L184, L260, L325).
    proj_sm_share: float = 0.0
    fc2_sm_share: float = 0.0


@dataclass(frozen=True)
class Framework:
    """How a training framework schedules kernels and communication (one per release in ``RELEASES``)."""

    name: str
    attention: AttentionImpl = AttentionImpl.FLASH  # fused kernel (torch SDPA flash: FA2), or bmm + softmax + bmm
    dropout: bool = False  # dropout on attention probabilities and residuals (kept masks, extra passes)
    overlap_grad_reduce: bool = True  # DP gradient reduction overlapped with the backward pass (bucketed)
    overlap_param_gather: bool = False  # post-step parameter all-gather overlapped with the next forward
    overlap_tp_comm: bool = False  # TP all-gather/reduce-scatter pipelined with the adjacent GEMMs
    # Column-parallel backward: the grad-input all-reduce (SP: reduce-scatter) runs during the weight-gradient
    # GEMM, and under SP the input all-gather during the data-gradient GEMM.
    overlap_tp_wgrad: bool = True
    # Weight-gradient GEMMs accumulate straight into the fp32 main-grad buffer; otherwise every micro-batch adds
    # its gradients in a separate pass.
    fused_grad_accumulation: bool = True
    overlap_p2p: bool = False  # pipeline sends/receives run asynchronously, off the compute stream (``overlaps_p2p``)
    zero3_prefetch: bool = True  # ZeRO-3/FSDP gathers layer i+1 while layer i computes
    pp_scatter_gather: bool = True  # split a pipeline send over the TP ranks, all-gather on arrival (SC21 4.1)
    # Layout features the software offers; a layout search does not try the others.
    sequence_parallel: bool = True
    selective_recompute: bool = True
    distributed_optimizer: bool = True
    zero: bool = True  # ZeRO stages 1-3 / FSDP sharding
    context_parallel: bool = True
    fp8_training: bool = True  # FP8 (and block-scaled) GEMMs offered in training at all
    # The block-scaled formats (MXFP8, NVFP4) among them: the release's own recipe for each (Megatron-Core's
    # --fp8-recipe mxfp8 and --fp4-format, Transformer Engine's MXFP8BlockScaling / NVFP4BlockScaling, torchao's
    # MX and NVFP4 linears); a format not listed is refused. A Framework that is no preset's offers both.
    block_scaled: tuple[DType, ...] = (DType.MXFP8, DType.NVFP4)
    cp_rotate: CpRotate = CpRotate.P2P  # how context parallelism exchanges K and V (``comms.cp_layer_s``)
    # torch's context-parallel ring runs inside each block's compiled graph under ``torch_compile`` (a fullgraph
    # compile: nothing breaks out of it), where every functional collective is waited on right after it is issued,
    # so none of its K, V or dK, dV transfers overlaps attention; False: outside any graph (eager overlap)
    cp_in_graph: bool = False
    # K and V expanded to every query head before the attention kernel (torchtitan's Llama ``repeat_kv``): a copy
    # each pass, and context parallelism moves and accumulates the expanded heads; False: the kernel takes the
    # model's KV heads (grouped-query attention inside the kernel)
    repeat_kv: bool = False
    uneven_pipeline: bool = True  # stages (and model chunks) may hold different layer counts
    pipeline_split: PipelineSplit = PipelineSplit.MEGATRON  # how the release splits layers pp x v does not divide
    interleave_min_pp: int = 2  # the interleaved schedule needs at least this many pipeline stages
    moe_dispatcher: MoeDispatcher = MoeDispatcher.ALLTOALL  # how MoE tokens reach their experts
    moe_flex_backend: FlexBackend = FlexBackend.DEEPEP  # the flex dispatcher's kernels (priced per row, flex.py)
    # With a pipeline, sequences per pipeline schedule: the step runs (per-replica batch / this) schedules, each with
    # its own fill and drain (NeMo AutoModel: step_scheduler.local_batch_size); 0: one schedule over the whole batch
    pp_schedule_sequences: int = 0
    overlap_moe_a2a: bool = False  # MoE all-to-alls of one micro-batch run during another's compute
    # FP8: the grouped experts copy their rows into a buffer padded per expert to the quantization alignment and
    # back (Megatron-Core TEGroupedMLP with TE Fp8Padding/Fp8Unpadding; unpadded: --moe-router-padding-for-quantization)
    moe_fp8_padding: bool = False
    # forced balancing (--moe-router-force-load-balancing) draws each token's experts at random, so the busiest EP
    # rank gets a few percent over the mean (capsim.analytic.moe.busiest_rank); False: exactly balanced
    moe_random_routing: bool = False
    # each token's k experts are k consecutive ones, (t k + j) mod E (NeMo AutoModel's FakeBalancedGate at noise 0),
    # so it reaches only the one or two EP ranks (and nodes) they span; False: k distinct experts spread at random
    moe_consecutive_experts: bool = False
    # the MoE combine (unpermute) merges each token's k expert outputs with its router probabilities and keeps them
    # for the probabilities' gradient; False: the probabilities scale the experts' activation instead and the
    # combine is a plain sum that keeps nothing
    moe_combine_saves: bool = True
    loss_copy: LossCopy = LossCopy.FP32  # what the loss keeps beside the 16-bit logits
    loss_kernel: LossKernel = LossKernel.FUSED  # the passes the loss runs over the logits (capsim.analytic.loss)
    fp8_scaling: Fp8Scaling = Fp8Scaling.DELAYED  # the FP8 recipe a run with precision "fp8" uses
    fp8_params: bool = False  # weights kept in FP8 (parameter all-gathers and weight memory in FP8)
    reshard_after_forward: Reshard = Reshard.ALWAYS  # ZeRO-3/FSDP: free gathered parameters after the forward
    # ZeRO-3/FSDP with gradient accumulation: reduce-scatter only after the step's last micro-batch, keeping the
    # gathered parameters and unsharded gradients in between (FSDP2 set_requires_gradient_sync(False))
    defer_grad_sync: bool = False
    # Under pipeline parallelism the pipeline stage itself defers the sync: torch.distributed.pipelining's stage
    # sets set_requires_gradient_sync(False) and set_reshard_after_backward(False) on its FSDP2 module for every
    # backward and reduce-scatters once after the step's last, so the stage's unsharded gradients (and gathered
    # parameters) stay resident across the step whatever defer_grad_sync says; its micro-batches reduce nothing
    # and, with the parameters kept gathered after the forward, gather nothing after the step's first forward
    pp_defer_grad_sync: bool = False
    # Where that stage's one reduction runs: False: inside its last backward, the compute stream waiting for the
    # reduce-scatters before the input-gradient send, so every stage's reduction lies on the pipeline's drain
    # (torch 2.4-2.9); True: after the stage's schedule (torch >= 2.10 REDUCE_GRAD), behind the later stages' drain
    pp_reduce_at_step_end: bool = False
    # Hybrid sharding (HSDP): each gradient shard is all-reduced over the replica groups after every micro-batch's
    # reduce-scatter (FSDP2); False: once per step, after the last micro-batch's (Megatron-FSDP)
    replica_reduce_every_micro_batch: bool = True
    # CPU activation offloading (Transformer Engine's cpu_offload through Megatron-Core's cpu_offloading_num_layers):
    # the activations of this many layers go to host memory in the forward and come back in the backward
    offload_layers: int = 0
    grads_fp32: bool = True  # gradients accumulated and reduced in fp32 (else in the 16-bit format)
    # ZeRO-1/2: the gradients are all-reduced whole and each rank keeps its shard (DeepSpeed's multi-rank bucket
    # all-reduce and BF16_Optimizer), instead of reduce-scattered; ZeRO-3 and the distributed optimizer still
    # reduce-scatter
    zero_grad_allreduce: bool = False
    # overlap_grad_reduce holds only on layouts of at least this ZeRO stage (DeepSpeed's overlap_comm defaults to
    # stage == 3); below it the gradients are reduced after (ZeRO-0/1) or inside (ZeRO-2) the backward, blocking
    overlap_grad_reduce_min_zero: int = 0
    # ZeRO-3: a block's parameters stay gathered from its forward to its backward when the trace uses them again
    # within this many parameter elements (DeepSpeed stage3_max_reuse_distance); 0: per reshard_after_forward only
    zero3_reuse_elements: float = 0.0
    # ZeRO-2/3: gradients reduced in buckets of this many elements (DeepSpeed reduce_bucket_size), so the last
    # bucket's reduce is exposed whole; 0: each block (FSDP unit) reduced on its own
    grad_bucket_elements: float = 0.0
    fp32_master: bool = True  # an fp32 master copy and fp32 Adam moments (else both in the parameters' format)
    tp_rs: RsOverlap = RsOverlap()  # with overlap_tp_comm: how the forward reduce-scatters overlap their GEMMs
    # Under SP with quantized GEMMs (Transformer Engine): a column-parallel input and a row-parallel output gradient
    # are quantized on the rank's own rows and all-gathered quantized (``capsim.analytic.fp8.sp_gather_bytes``),
    # after an amax all-reduce over the TP group for current scaling and NVFP4; False: 16-bit gathers, casts of
    # the gathered rows
    tp_gather_quantized: bool = False
    # What the norm kernel of TE's LayerNormLinear (the QKV and a dense fc1) does of its output's quantize, by the
    # release's TE (``capsim.analytic.fp8.NormQuantize``): NONE prices a cast kernel after the norm
    norm_quantize: NormQuantize = NormQuantize.NONE
    selective_ac: SelectiveAc = SelectiveAc()  # what selective recomputation replays
    # torch.compile of each block: Inductor fuses its pointwise ops, so ``eager_norm`` and ``eager_pointwise`` no
    # longer apply inside the blocks (the op list's fused kernels are priced)
    torch_compile: bool = False
    # The model's RMSNorm is a composite of torch ops (x.float(), pow, mean, rsqrt, mul, type_as, * weight) run as
    # separate kernels with fp32 intermediates when not compiled (``capsim.analytic.eager``); False: one
    # fused kernel each way (Transformer Engine, Apex, a Triton kernel, torch's LayerNorm)
    eager_norm: bool = False
    # RoPE and the SwiGLU product are the model's torch ops (fp32 complex RoPE, silu then mul) run as separate
    # kernels when not compiled; False: the fused kernels the op list prices
    eager_pointwise: bool = False
    # Under ``eager_pointwise``: the routed experts' activation is its own torch.compile'd function (one fused
    # kernel, NeMo AutoModel's moe/layers.py) while the dense MLPs' silu * up stays eager
    compiled_expert_act: bool = False
    # FP8 weights (torchao Float8Linear with FSDP2's FP8 all-gather): the weights' scales precomputed in one pass
    # after the optimizer step, and the FP8 weight re-cast in the backward instead of saved. Recorded; neither
    # changes what capsim prices (one weight cast per step, FP8 parameters in ``fp8_params``).
    fp8_precompute_scales: bool = False
    fp8_recompute_weight_bwd: bool = False
    # A clamped GLU's clamp (ModelSpec.glu_clamp, gpt-oss) runs as eager torch ops before the fused activation: two
    # clamps and a concatenation over fc1's output (capsim.analytic.eager); False: inside the activation kernel
    glu_clamp_eager: bool = False
    # How RoPE runs: one fused kernel, or the release's eager torch ops over the queries and keys (Megatron-Core's
    # for a YaRN model, ModelSpec.yarn_factor; AutoModel's rotate-half for any but MLA: capsim.analytic.eager.YarnRope)
    yarn_rope: YarnRope = YarnRope.FUSED
    # A biased model's routed experts add fc1's bias outside the grouped GEMM, one eager add per local expert and a
    # concatenation (NeMo AutoModel's GroupedExpertsDeepEP._apply_bias; capsim.analytic.eager); False: in the
    # grouped GEMM's epilogue (Transformer Engine GroupedLinear)
    moe_fc1_bias_eager: bool = False
    # Run settings a Megatron-Core run states by flag (``RUN_SETTINGS``: not release behaviour, so not cited per
    # release; each flag cites its argparse line, core_flags._MC_FLAGS). Defaults are Megatron's own: no MTP
    # (ML@core_v0.14.0 training/arguments.py L1509 --mtp-num-layers default None), and full recomputation as one
    # checkpoint per layer (--recompute-method uniform --recompute-num-layers 1; TransformerConfig requires both
    # with granularity full, ML@core_v0.14.0 megatron/core/transformer/transformer_config.py L832-849)
    mtp_layers: int = 0  # multi-token-prediction layers on the last pipeline stage (capsim.analytic.mtp)
    mtp_loss_scale: float = 0.1  # --mtp-loss-scaling-factor: scales the MTP loss; prices nothing
    recompute_method: str = "uniform"  # full recomputation: "uniform" groups, or "block" (first N layers only)
    recompute_layers: int = 1  # uniform: layers per checkpoint; block: checkpointed layers per model chunk
    # Megatron-Core CUDA graphs (host.graphed_ops prices them): the capture ("none", "local", "transformer_engine")
    # and its scopes, comma-separated; Megatron's defaults: none (ML@core_v0.15.0 training/arguments.py L1405
    # --cuda-graph-impl default 'none') and "full", the whole layer (L1411 --cuda-graph-scope default 'full')
    cuda_graph_impl: str = "none"
    cuda_graph_scope: str = "full"

    def with_(self, **changes: object) -> Framework:
        return replace(self, **changes)

    def cuda_graph_scopes(self) -> str:
        """The scopes a CUDA graph captures ("" without one; ``host.graphed_ops`` prices them)."""
        return "" if self.cuda_graph_impl == "none" else self.cuda_graph_scope

    def eager(self) -> Eager:
        """Which pointwise ops run as torch eager's separate kernels: none inside compiled blocks; the final norm
        is outside them (torchtitan compiles each TransformerBlock)."""
        return Eager(self.eager_norm and not self.torch_compile, self.eager_pointwise and not self.torch_compile,
                     self.eager_norm, self.glu_clamp_eager, self.yarn_rope, self.moe_fc1_bias_eager,
                     not self.compiled_expert_act)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        for key in ("attention", "moe_dispatcher", "moe_flex_backend", "fp8_scaling", "reshard_after_forward",
                    "pipeline_split", "loss_copy", "loss_kernel", "cp_rotate", "norm_quantize", "yarn_rope"):
            out[key] = getattr(self, key).value
        out["block_scaled"] = [d.value for d in self.block_scaled]
        out["selective_ac"] = {"policy": self.selective_ac.policy.value, "every": self.selective_ac.every,
                               "modules": list(self.selective_ac.modules)}
        return out

    def run_precision(self, precision: Precision) -> Precision:
        """A precision preset as this release runs it: FP8 with the release's recipe (its scaling where the
        precision names none, ``fp8`` as against ``fp8-delayed``/``fp8-current``; FP8 parameters;
        MXFP8/NVFP4 parameters where the release keeps FP8 ones), gradients reduced in 16 bits where it says so, no
        fp32 master copy where it keeps none (FSDP2 may still reduce the gradients of bf16 parameters in fp32:
        NeMo AutoModel 2026-07). Applying it twice changes nothing."""
        half = precision.activations
        if not self.grads_fp32:
            precision = precision.with_(gradients=half)
        if not self.fp32_master and precision.master_weights is not None:  # gradients as grads_fp32 left them
            precision = precision.with_(master_weights=None, optimizer_states=precision.weights)
        if precision.compute.block_scaled:
            # Megatron-Bridge's block-scaled recipes gather and keep the weights in their format as its FP8 one
            # does (MB@v0.4.2 training/mixed_precision.py L270 bf16_with_mxfp8_mixed fp8_param_gather, L422
            # bf16_with_nvfp4_mixed fp4_param_gather); no other release sets FP8 parameters.
            return precision.with_(weights=precision.compute) if self.fp8_params else precision
        if precision.compute is not DType.FP8:
            return precision
        return precision.with_(fp8_scaling=precision.fp8_scaling or self.fp8_scaling,
                               weights=DType.FP8 if self.fp8_params else precision.weights)

    @property
    def tp_micro_pipeline(self) -> bool:
        """Async TP is torch's Inductor micro-pipeline pass rather than Transformer Engine's userbuffers: it exists
        only in compiled graphs (torchtitan@e7c0cae config_manager.py L301-302 enable_async_tensor_parallel, "only
        effective when compile is enabled"), and no release capsim prices runs userbuffers under torch.compile."""
        return self.overlap_tp_comm and self.torch_compile

    def split(self, layers: int, pp: int, v: int) -> LayerSplit | None:
        """The split this release builds for ``layers`` over ``pp`` stages of ``v`` chunks (None: it has none)."""
        if self.pipeline_split is PipelineSplit.FRONT_LOADED:
            return front_loaded(layers, pp, v)
        if self.pipeline_split is PipelineSplit.MIDDLE_LOADED:
            return middle_loaded(layers, pp, v)
        return default_uneven(layers, pp, v)

    def loss_copy_bytes(self, activation_bytes: float) -> float:
        """Bytes per logit the loss keeps beside the logits (``loss_copy``)."""
        return {LossCopy.FP32: 4.0, LossCopy.ACTIVATION: activation_bytes, LossCopy.NONE: 0.0}[self.loss_copy]

    def overlaps_p2p(self, v: object) -> object:
        """Whether the pipeline's sends/receives run off the critical path on layouts of ``v`` model chunks per stage
        (arrays): ``overlap_p2p`` for the interleaved schedule only (every preset that sets it cites it for that
        schedule); without interleaving Megatron-Core's 1F1B refuses the overlap and waits on every send/receive
        (NVIDIA/Megatron-LM@b0cc2706 megatron/core/pipeline_parallel/schedules.py L2004-2007; p2p_communication.py
        L390-398: req.wait(), then torch.cuda.synchronize() under batch_p2p_comm)."""
        return np.asarray(v) > 1 if self.overlap_p2p else np.zeros(np.shape(v), bool)

    def overlaps_grad_reduce(self, zero_stage: object) -> object:
        """Whether DP gradient reduction overlaps the backward on layouts of ZeRO stage ``zero_stage`` (arrays)."""
        return np.asarray(zero_stage) >= self.overlap_grad_reduce_min_zero if self.overlap_grad_reduce \
            else np.zeros(np.shape(zero_stage), bool)

    def defers_grad_sync(self, pp: object) -> object:
        """Whether ZeRO-2/3 gradients stay unsharded until the step's last backward (arrays over pipeline depths
        ``pp``): the release's own deferral, or its pipeline stage's where pp > 1."""
        return np.asarray(self.defer_grad_sync) | self.stage_defers(pp)

    def stage_defers(self, pp: object) -> object:
        """Whether the pipeline stage defers the FSDP2 gradient sync to the step's last backward (arrays over
        pipeline depths ``pp``): ``pp_defer_grad_sync`` where pp > 1."""
        return (np.asarray(pp) > 1) & self.pp_defer_grad_sync

    def keeps_gathered(self, pp: object) -> object:
        """Whether ZeRO-3/FSDP keeps a block's parameters gathered from its forward to its backward (arrays over
        pipeline depths ``pp``)."""
        return np.where(np.asarray(pp) > 1, self.reshard_after_forward is not Reshard.ALWAYS,
                        self.reshard_after_forward is Reshard.NEVER)


# Framework fields a run sets by flag, not the release's behaviour (their flags cite where they are defined).
RUN_SETTINGS = ("mtp_layers", "mtp_loss_scale", "recompute_method", "recompute_layers",
                "cuda_graph_impl", "cuda_graph_scope")
# The behaviour fields every release must cite (all of Framework but its name and the run settings).
BEHAVIOUR = tuple(f.name for f in fields(Framework) if f.name != "name" and f.name not in RUN_SETTINGS)
# Layout settings a run may leave unpublished, as training validation rows and TrainPlan name them.
LAYOUT_SETTINGS = ("micro_batch", "v", "recompute", "sp", "zero_stage", "cp", "distributed_optimizer", "etp",
                   "account_for_embedding", "account_for_loss")
PER_REPLICA = "global/dp"  # a micro-batch default meaning "the whole per-replica batch: no gradient accumulation"
WITH_TP = "tp>1"  # a sequence-parallel default meaning "on wherever TP is": the release's TP shards the sequence too


def default_sp(value: object, tp: int) -> bool:
    """A release's sequence-parallel default (``Release.defaults['sp'].value``) for a run at ``tp``."""
    return tp > 1 if value == WITH_TP else bool(value)


class FrameworkFamily(StrEnum):
    """The software a training row names in its ``framework`` column."""

    MEGATRON_LM = "megatron-lm"  # NVIDIA/Megatron-LM before Megatron-Core
    MEGATRON_CORE = "megatron-core"  # Megatron-Core (megatron/core), alone or through NeMo / Megatron-Bridge
    FSDP = "fsdp"  # PyTorch FullyShardedDataParallel (FSDP1)
    FSDP2 = "fsdp2"  # PyTorch fully_shard (FSDP2), through NeMo AutoModel or torchtitan
    DEEPSPEED = "deepspeed"  # microsoft/DeepSpeed ZeRO stages 1-3, alone or under Megatron-DeepSpeed
    # Meta's 4D-parallel (TP, CP, PP, FSDP) PyTorch stack as the Llama 3 paper describes it (releases_meta.py)
    META_4D = "meta-4d"


@dataclass(frozen=True)
class Setting:
    """A layout setting's documented default and where it is documented."""

    value: object
    source: str


@dataclass(frozen=True)
class Flag:
    """A command-line flag of a release: which field it sets (a Framework field, or ``layout.<setting>``) to what,
    by the flag's value ("" for a bare switch); field ``layout`` sets several layout settings at once (each value a
    mapping of LAYOUT_SETTINGS keys), field ``framework`` several Framework fields (each value a mapping of them)."""

    field: str
    values: Mapping[str, object]
    source: str
    # Further fields the same switch sets whatever its value (a Framework field, or ``layout.<setting>``), e.g.
    # Megatron-Core's --use-megatron-fsdp, which swaps the distributed optimizer for Megatron-FSDP's sharding
    also: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """One framework release: its behaviour, the code it describes, a source for every behaviour field, the
    documented defaults of unpublished settings, and the flags a run may state."""

    framework: Framework
    family: FrameworkFamily
    software: str  # the release as validation data name it in their ``software`` column
    date: str  # ISO date of the code described
    code: str  # repository@commit, tag or documentation the facts were read from
    cite: Mapping[str, str]  # every BEHAVIOUR field -> its source
    defaults: Mapping[str, Setting]  # every LAYOUT_SETTINGS key -> documented default
    flags: Mapping[str, Flag]
    # Other releases described identically: (first, last) release names, inclusive, with the dates in ``code``.
    covers: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return self.framework.name

    def covers_release(self, software: str) -> bool:
        """Whether ``software`` lies wholly inside this preset's stated release range."""
        if software == self.software:
            return True
        if self.covers is None:
            return False
        prefix, parts = _version(software)
        lo, hi = (_version(v) for v in self.covers)
        if not parts or prefix != lo[0] or prefix != hi[0]:
            return False
        # "2021.06" stands for every release of June 2021: its whole span must lie in the range.
        return _pad(lo[1], 0) <= _pad(parts, 0) and _pad(parts, 99) <= _pad(hi[1], 99)

    def configure(self, flags: str = "") -> tuple[Framework, dict[str, object]]:
        """The Framework and layout defaults of a run of this release with ``flags`` (``--name`` or
        ``--name=value``, whitespace-separated); an unknown flag or value is an error that lists the known ones."""
        fw_changes: dict[str, object] = {}
        layout = {k: s.value for k, s in self.defaults.items()}
        for token in flags.split():
            name, _, value = token.partition("=")
            flag = self.flags.get(name)
            if flag is None:
                # both import this module
                from capsim.analytic.training.core_flags import core_flag_arrived  # noqa: PLC0415
                from capsim.analytic.training.megatron_fsdp import arrived  # noqa: PLC0415
                since = ((arrived(name) or core_flag_arrived(name)) if self.family is FrameworkFamily.MEGATRON_CORE
                         else None)
                who = self.name if self.software == self.name else f"{self.name} ({self.software})"
                raise SpecError("flags", f"{who} has no flag {name!r} capsim prices"
                                + (f": it exists from {since}" if since else ""),
                                f"known: {', '.join(self.flags) or 'none'}")
            if value not in flag.values:
                shown = ", ".join(f"{name}={v}" if v else name for v in flag.values)
                raise SpecError("flags", f"unknown value in {token!r}", f"use {shown}")
            for name_, set_to in ((flag.field, flag.values[value]), *flag.also.items()):
                if name_ == "layout":
                    layout.update(set_to)  # type: ignore[arg-type]
                elif name_ == "framework":  # one value sets several Framework fields
                    fw_changes.update(set_to)  # type: ignore[arg-type]
                elif name_.startswith("layout."):
                    layout[name_.removeprefix("layout.")] = set_to
                else:
                    fw_changes[name_] = set_to
        return self.framework.with_(**fw_changes), layout

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "family": self.family.value, "software": self.software, "date": self.date,
                "code": self.code, "covers": list(self.covers) if self.covers else None,
                "framework": self.framework.to_dict(), "cite": dict(self.cite),
                "defaults": {k: {"value": s.value, "source": s.source} for k, s in self.defaults.items()},
                "flags": {k: {"field": f.field, "values": {n: asdict(v) if is_dataclass(v) else v
                                                            for n, v in f.values.items()}, "source": f.source,
                              "also": {n: getattr(v, "value", v) for n, v in f.also.items()}}
                          for k, f in self.flags.items()}}


def _version(name: str) -> tuple[str, tuple[int, ...]]:
    """('megatron-lm-', (2021, 6)) for 'megatron-lm-2021.06': the name's text before its first digit, then its
    numbers."""
    m = re.match(r"(\D*)(.*)", name.strip().lower())
    prefix, rest = (m.group(1), m.group(2)) if m else ("", "")
    return prefix, tuple(int(x) for x in re.findall(r"\d+", rest))


def _pad(parts: tuple[int, ...], fill: int, width: int = 4) -> tuple[int, ...]:
    return parts + (fill,) * (width - len(parts))


__all__ = ["BEHAVIOUR", "CP_NOT_IN_GRAPH", "FLEX_DEEPEP", "FP8_OFFERED", "FUSED_FORMS", "FUSED_POINTWISE", "GENERIC_EAGER", "KV_OWN_HEADS", "LAYOUT_SETTINGS", "NO_TE_GATHER", "NOT_DEEPSPEED", "ONE_SCHEDULE",
           "RUN_SETTINGS", "SPREAD_EXPERTS", "PER_REPLICA", "TE_RING", "WITH_TP", "default_sp", "CpRotate", "Flag", "FlexBackend", "Framework",
           "FrameworkFamily", "LossCopy", "LossKernel", "MEGATRON_CE_PASSES", "MoeDispatcher", "megatron_ce", "PipelineSplit", "Release", "Reshard", "RsOverlap",
           "SacPolicy", "SelectiveAc", "Setting"]
