"""Communication of one training step, term by term (arrays over layouts). Each function returns seconds of one
instance (one layer, one hop, one reduction) on the link tier where its group lies; how much of it is exposed is
decided by the framework's overlap facts here or in ``stages``.
"""

from __future__ import annotations

import numpy as np

from capsim._types import Num
from capsim.analytic.fp8 import amax_reduced, sp_gather_bytes
from capsim.analytic.layouts import Layouts
from capsim.analytic.moe import busiest_rank, moe_tokens
from capsim.analytic.ops import optimizer_ops
from capsim.analytic.training.collectives import Placement, collective_s, placement, send_s
from capsim.analytic.training.compute import MicroBatchTimes
from capsim.analytic.training.flex import flex_s, holders
from capsim.analytic.training.release import CpRotate, Framework, MoeDispatcher
from capsim.perf import Perf
from capsim.specs.model import Arch, ModelSpec
from capsim.specs.precision import Precision


def _tokens(lay: Layouts) -> np.ndarray:
    return lay.micro_batch * lay.seq_len / lay.cp  # token rows of one micro-batch on one GPU


def recompute_passes(lay: Layouts) -> np.ndarray:
    """Extra forward passes of a layer in the backward: 1 with full recomputation, else 0."""
    return (lay.recompute == 2).astype(float)


def tp_layer_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int,
               t: MicroBatchTimes, fw: Framework) -> tuple[np.ndarray, np.ndarray]:
    """Exposed TP communication of one layer and micro-batch: (forward, backward with any full recomputation).

    Forward: an all-reduce of the [s, b, h] activation after each row-parallel linear (Megatron-LM, Shoeybi et al.
    2019, Fig. 4), or under sequence parallelism an all-gather before each column-parallel linear and a
    reduce-scatter after each row-parallel one, same bytes (Korthikanti et al. 2022, Sec. 4.2.2). Backward: the
    conjugates at the column-parallel inputs, and under SP the all-gather of the row-parallel output gradient plus
    a re-gather of the saved sharded input for the weight gradient. With async TP communication the column-parallel
    ones run during that linear's weight-gradient GEMM (and the re-gather during its data-gradient GEMM).
    Decoder layers of an encoder-decoder add one pair for cross-attention. With ``fw.tp_gather_quantized`` (TE) the
    all-gathers move the quantized copies (``fp8.sp_gather_bytes``) and amax all-reduces precede them.
    """
    values = _tokens(lay) * model.hidden
    nbytes = values * precision.activations.bytes
    where = placement(lay.tp, 1, gpn)
    ar = collective_s(perf, "all_reduce", nbytes, where)
    rs = collective_s(perf, "reduce_scatter", nbytes, where)
    widths = sp_gather_bytes(precision) if fw.tp_gather_quantized else (precision.activations.bytes,) * 2
    ag_in, ag_grad = (collective_s(perf, "all_gather", values * b, where) for b in widths)
    forward = 2.0 * np.where(lay.sp, ag_in + rs, ar)
    if fw.overlap_tp_wgrad:
        hidden = [(t.qkv_dgrad_s, t.qkv_wgrad_s), (t.up_dgrad_s, t.up_wgrad_s)]
        plain = sum(np.maximum(ar - wgrad, 0.0) for _, wgrad in hidden)
        seq = 2.0 * ag_grad + sum(np.maximum(rs - wgrad, 0.0) + np.maximum(ag_in - dgrad, 0.0)
                                  for dgrad, wgrad in hidden)
        backward = np.where(lay.sp, seq, plain)
    else:
        backward = np.where(lay.sp, 2.0 * (ag_grad + ag_in) + 2.0 * rs, 2.0 * ar)
    pairs = 1.0 + (0.5 * model.layers / model.total_layers if model.arch is Arch.ENCODER_DECODER else 0.0)
    fwd, bwd = pairs * forward, pairs * (forward * recompute_passes(lay) + backward)
    if fw.tp_micro_pipeline:  # torch's async TP: Inductor's micro-pipeline pass (``_torch_async_tp_s``)
        rec = recompute_passes(lay)
        f_exp, b_exp = _torch_async_tp_s(perf, lay, t, ag_in, ag_grad, rs, nbytes)
        fwd = np.where(lay.sp, pairs * f_exp, fwd)
        bwd = np.where(lay.sp, pairs * (f_exp * rec + b_exp), bwd)
    elif fw.overlap_tp_comm:  # chunks pipelined with the adjacent GEMMs (Wang et al. ASPLOS 2023, Sec. 4)
        # Transformer Engine userbuffers, which need sequence parallelism: the all-gathers run by ring exchange
        # behind the GEMM chunks; the reduce-scatters after the row-parallel GEMMs are pipelined in chunks (or
        # ring-exchanged, one chunk per TP rank) as the run's overlap config says (``fw.tp_rs``), and the last
        # chunk's share cannot hide; the backward's bulk overlaps hide behind its GEMMs (twice the forward's).
        rec = recompute_passes(lay)
        last = 2.0 * pairs * rs / np.where(fw.tp_rs.chunks > 0, fw.tp_rs.chunks, lay.tp)
        fwd = np.where(lay.sp, np.maximum(fwd - t.layer_gemm_fwd_s, last), fwd)
        bwd = np.where(lay.sp, np.maximum(bwd - t.layer_gemm_fwd_s * (2.0 + rec), last * rec), bwd)
        # With set_sm_margin the comm kernels keep their SMs for the whole GEMM, which runs on the rest
        # (TE@v1.8 csrc/comm_gemm_overlap.h L184: _math_sms = SMs - num_comm_sm): the GEMM's extra time.
        lent = sum(gemm * share / (1.0 - share) for gemm, share in
                   ((t.proj_fwd_s, fw.tp_rs.proj_sm_share), (t.fc2_fwd_s, fw.tp_rs.fc2_sm_share)))
        fwd = fwd + np.where(lay.sp, lent, 0.0)
        bwd = bwd + np.where(lay.sp, lent * rec, 0.0)
    amax = np.where(lay.sp & fw.tp_gather_quantized, 2.0 * pairs * _amax_reduce_s(perf, precision, where), 0.0)
    return fwd + amax, bwd + amax * (1.0 + recompute_passes(lay))


def _torch_async_tp_s(perf: Perf, lay: Layouts, t: MicroBatchTimes, ag_in: np.ndarray, ag_grad: np.ndarray,
                      rs: np.ndarray, nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exposed sequence-parallel TP communication of one layer under torch's async TP: (forward, backward without
    recomputation).

    Inductor's micro_pipeline_tp pass (torch/_inductor/fx_passes/micro_pipeline_tp.py, pytorch/pytorch@5f65158a)
    fuses only an all-gather whose output is the left operand of the matmuls after it (``_find_consumer_matmuls``:
    the QKV and the w1/w3 inputs in the forward, the attention-output and w2 data gradients in the backward, whose
    weight-gradient matmuls take the gathered gradient transposed) and a reduce-scatter whose input is one matmul
    (``_find_producer_matmul``: mm, _scaled_mm or reshape-mm-reshape; the attention output and w2 in the forward).
    The backward's reduce-scatters of the QKV and w1/w3 input gradients take a sum of matmuls, so they run as
    plain collectives, exposed whole, as does the re-gather capsim prices for the weight gradients.
    A fused all-gather (torch/distributed/_symmetric_memory/__init__.py ``_pipelined_multi_all_gather_and_consume``)
    first copies the rank's shard into its symmetric buffer and barriers before any matmul ("giving up the chance
    to overlap mv and b with the first shard_consumer"), then runs the matmul on the local shard and, for each of
    the tp-1 remote shards, a copy then that shard's matmul (M/tp rows): the copies hide behind all the chunks but
    the last, so max(0, AG - GEMM (tp-1)/tp) stays exposed. A fused reduce-scatter (``_fused_matmul_reduce_scatter_
    impl`` over ``_pipelined_produce_and_all2all``) computes each destination's M/tp rows and copies them while the
    next is computed, the first chunk uncovered, then sums the tp partials (``reduce_fn = torch.sum(dim=0)``), a
    memory-bound kernel reading tp shards and writing one. The chunks' matmuls cost what ``chunk_fwd_s`` /
    ``chunk_bwd_s`` add to the whole GEMMs (``compute.chunked_extra_s``); what they hide is taken at the whole GEMMs'
    time, the backward data-gradient GEMMs at their forward GEMMs' (same FLOPs)."""
    tp = np.asarray(lay.tp, float)
    hidden = (tp - 1.0) / tp  # the chunks the copies can run behind
    shard = nbytes / tp
    mv = np.asarray(perf.memory_s(2.0 * shard), float)  # the local shard's copy into the symmetric buffer
    reduce = np.asarray(perf.memory_s((tp + 1.0) * shard), float)  # the partial sums' reduction

    def gather(comm: np.ndarray, gemm: np.ndarray) -> np.ndarray:
        return mv + np.maximum(comm - hidden * gemm, 0.0)

    def scatter(gemm: np.ndarray) -> np.ndarray:
        return reduce + np.maximum(rs - hidden * gemm, 0.0)

    qkv_fwd, up_fwd = t.qkv_dgrad_s, t.up_dgrad_s  # a column-parallel GEMM's forward (its data gradient's FLOPs)
    fwd = gather(ag_in, qkv_fwd) + gather(ag_in, up_fwd) + scatter(t.proj_fwd_s) + scatter(t.fc2_fwd_s)
    bwd = gather(ag_grad, t.proj_fwd_s) + gather(ag_grad, t.fc2_fwd_s) + 2.0 * ag_in + 2.0 * rs
    return fwd + t.chunk_fwd_s, bwd + t.chunk_bwd_s  # the decomposed GEMMs' extra time (compute.chunked_extra_s)


def _amax_reduce_s(perf: Perf, precision: Precision, where: Placement) -> np.ndarray:
    """One amax all-reduce (MAX) over the TP group before a sequence-parallel quantize: FP8 current scaling and
    NVFP4 need the whole tensor's amax, so TE all-reduces each rank's on the compute stream and waits for it
    (TE@71bbefbf csrc/quantizer.cpp L882-887 Float8CurrentScalingQuantizer, L2333-2351 NVFP4Quantizer, rowwise and
    columnwise amax coalesced), set for the column-parallel inputs and the row-parallel output gradients under SP
    (module/layernorm_linear.py L1743-1791, layernorm_mlp.py L2420-2468, linear.py L1619); 0 for the others."""
    if not amax_reduced(precision):
        return np.zeros(np.shape(where.size))
    return np.asarray(collective_s(perf, "all_reduce", 8.0, where), float)


def tp_ends_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP communication of the vocabulary-parallel ends per micro-batch: (embedding forward, LM head and loss
    forward, LM head backward).

    The embedding all-reduces its output; the LM head all-reduces its input gradient (all-gathers its input and
    reduce-scatters the gradient under SP); the vocab-parallel cross-entropy all-reduces three [b, s] fp32 tensors
    (max, sum of exponentials, target logit) (Megatron-LM, tensor_parallel/cross_entropy.py).
    """
    tokens = _tokens(lay)
    nbytes = tokens * model.hidden * precision.activations.bytes
    where = placement(lay.tp, 1, gpn)
    ar = collective_s(perf, "all_reduce", nbytes, where)
    rs = collective_s(perf, "reduce_scatter", nbytes, where)
    ag = collective_s(perf, "all_gather", nbytes, where)
    loss = 3.0 * collective_s(perf, "all_reduce", tokens * 4.0, where)
    return np.where(lay.sp, rs, ar), np.where(lay.sp, ag, 0.0) + loss, np.where(lay.sp, rs, ar)


def mtp_proj_tp_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int) -> np.ndarray:
    """TP communication of one MTP layer's projection per micro-batch, both passes (ML@core_v0.14.0
    megatron/core/transformer/multi_token_prediction.py L511-532): eh_proj is column-parallel over [s, b, 2h] (under
    SP its input all-gathered, its input gradient reduce-scattered; else the gradient all-reduced), its [s, b, h/t]
    output all-gathered (gather_from_tensor_model_parallel_region; backward a split) and, under SP, scattered again
    (scatter_to_sequence_parallel_region; backward an all-gather)."""
    n = _tokens(lay) * model.hidden * precision.activations.bytes
    where = placement(lay.tp, 1, gpn)
    ag, ag2 = collective_s(perf, "all_gather", n, where), collective_s(perf, "all_gather", 2 * n, where)
    sp = ag2 + ag + collective_s(perf, "reduce_scatter", 2 * n, where) + ag
    return np.where(lay.tp > 1, np.where(lay.sp, sp, ag + collective_s(perf, "all_reduce", 2 * n, where)), 0.0)


def cp_layer_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int,
               t: MicroBatchTimes, fw: Framework) -> tuple[np.ndarray, np.ndarray]:
    """Exposed context-parallel traffic of one layer and micro-batch: (forward, backward with recomputation).

    Both implementations hold chunks r and 2cp-1-r of 2cp on rank r (causal load balancing) and run cp attention
    steps per pass, each 1/cp of the layer's attention (as ``compute`` prices it). ``fw.cp_rotate`` says how K, V
    move: P2P, Megatron-Core's Transformer Engine ring (``AttnFuncWithCP``, transformer_engine/pytorch/attention.py
    L535, TE v1.8; Liu et al. 2023, Ring Attention, Sec. 3): K, V sent on during each of the first cp-1 steps; in
    the backward one exchange per step, K, V at the first, dK, dV at the last and both (twice the bytes) between,
    each hiding behind its step. ALLGATHER / ALLTOALL, torch's experimental ``context_parallel``
    (torch/distributed/tensor/experimental/_attention.py): the all-gather rotater gathers every rank's K, V once per
    pass, started before step 0 and awaited by step 1, so it hides behind step 0 alone (pytorch/pytorch#132820); the
    all-to-all one passes them on each step like the ring. Its backward gathers or passes K, V again and passes the
    fp32 dK, dV (``convert_to_f32``) after every step, each awaited after the next step's attention, the last right
    after the loop (exposed whole). Where the ring runs inside a compiled block's graph (``fw.cp_in_graph`` under
    ``fw.torch_compile``) each collective is waited on as soon as it is issued and none of them hides. A group that
    leaves the node waits on its network hop; MLA rebuilds K and V per query head, and a model that expands them
    before attention (``fw.repeat_kv``) passes the expanded ones, so both send all heads.
    """
    heads = np.maximum((model.heads if model.is_mla or fw.repeat_kv else model.kv_heads) / lay.tp, 1.0)
    kv_elems = _tokens(lay) * heads * (model.head_dim + model.v_dim)
    kv_bytes = kv_elems * precision.activations.bytes
    where = placement(lay.cp, lay.tp, gpn)
    inter = where.nodes > 1
    steps = lay.cp - 1.0
    block_f, block_b = t.layer_attn_fwd_s / lay.cp, t.layer_attn_bwd_s / lay.cp
    send = send_s(perf, kv_bytes, inter)
    if fw.cp_rotate is CpRotate.GATHER_KV:
        # Dubey et al. 2024 (arXiv 2407.21783 v3) Sec. 3.3.2 p. 12: "we first all-gather the key (K) and value (V)
        # tensors, and then compute attention output for the local query (Q) tensor chunk ... the all-gather
        # communication latency is exposed in the critical path"; the backward's dK, dV reduce-scatter (the gather's
        # adjoint) waits for the attention backward that makes them and feeds the K, V projections' backward
        fwd = collective_s(perf, "all_gather", lay.cp * kv_bytes, where)
        bwd = collective_s(perf, "reduce_scatter", lay.cp * kv_bytes, where)
    elif fw.cp_rotate is CpRotate.P2P:
        fwd = steps * np.maximum(send - block_f, 0.0)
        # The backward exchanges once per step, each waited right after that step's attention: step 0 sends K, V
        # alone, steps 1..cp-2 K, V with the dK, dV accumulated so far, the last step dK, dV alone (TE v1.8
        # attention.py L1164-1169 send_tensor[0] / [1], L1553-1555 "wait until dKV is received"; v2.8
        # dot_product_attention/context_parallel.py L2099-2104, L2313-2315)
        pair = send_s(perf, 2.0 * kv_bytes, inter)
        bwd = 2.0 * np.maximum(send - block_b, 0.0) + np.maximum(steps - 1.0, 0.0) * np.maximum(pair - block_b, 0.0)
    else:
        # Traced (torch.compile), a functional collective is followed at once by its wait_tensor (torch/distributed/
        # _functional_collectives.py _maybe_wrap_tensor, pytorch@000f488 module docstring: "wait_tensor() op is
        # immediately called"), and Inductor moves no wait (torch/_inductor/config.py reorder_for_compute_comm_overlap
        # = False, pytorch@000091c): no transfer of the ring overlaps its attention
        if fw.torch_compile and fw.cp_in_graph:
            block_f, block_b = 0.0, 0.0
        if fw.cp_rotate is CpRotate.ALLGATHER:
            gather = collective_s(perf, "all_gather", lay.cp * kv_bytes, where)
            fwd, kv_b = np.maximum(gather - block_f, 0.0), np.maximum(gather - block_b, 0.0)
        else:
            fwd, kv_b = steps * np.maximum(send - block_f, 0.0), steps * np.maximum(send - block_b, 0.0)
        dkv = send_s(perf, kv_elems * 4.0, inter)  # fp32 dK, dV
        bwd = kv_b + steps * np.maximum(dkv - block_b, 0.0) + dkv
    replays = recompute_passes(lay) + ((lay.recompute == 1) & (t.layer_core_s > 0))
    on = lay.cp > 1
    return np.where(on, fwd, 0.0), np.where(on, fwd * replays + bwd, 0.0)


def ep_layer_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int, t: MicroBatchTimes,
               fw: Framework) -> tuple[np.ndarray, np.ndarray]:
    """Exposed expert-parallel communication of one MoE layer and micro-batch, (forward, backward with
    recomputation); a model's dense-FFN layers have none (``stages`` counts the MoE layers of each stage).

    Each pass dispatches the GPU's top_k token copies over its EP group (ranks etp apart) and combines them back
    (Lepikhin et al. 2021, GShard, Sec. 3.2; Megatron-Core's all-to-all token dispatcher); the all-to-all crosses the
    network once the group spans nodes (``collective_s`` prices it per tier). With etp > 1 the received copies are
    all-gathered over the ETP group before the experts and reduce-scattered after (``capsim.analytic.moe``). With
    Megatron-Core's ``--overlap-moe-expert-parallel-comm`` (``fw.overlap_moe_a2a``) a micro-batch's forward of a
    layer runs alongside another's backward of it, each all-to-all hiding only behind the compute of the phase it
    shares (``_paired_exposed_s``), and the passes the schedule runs alone expose theirs (``overlapped_share``).
    The all-to-all dispatcher also all-gathers the routing counts before each forward dispatch and (core >= 0.13)
    sends the router probabilities in their own all-to-all (``_alltoall_extras_s``). Megatron-Core's
    default all-gather dispatcher instead all-gathers every token over the EP x ETP group and reduce-scatters the
    outputs (megatron/core/transformer/moe/token_dispatcher.py, MoEAllGatherTokenDispatcher).
    """
    zero = np.zeros(len(lay))
    if not model.is_moe:
        return zero, zero
    local, gathered = moe_tokens(_tokens(lay), lay.tp, lay.etp, lay.sp)
    # under random forced balancing the all-to-all waits for the busiest rank's copies
    busiest = busiest_rank(model, local, lay.ep) if fw.moe_random_routing else 1.0
    row = model.top_k * model.hidden * precision.activations.bytes * busiest
    where = placement(lay.ep, lay.etp, gpn)
    a2a = (_dispatch_s(perf, model, local * row, where, fw, local * busiest)
           + _dispatch_s(perf, model, local * row, where, fw, local * busiest, "combine"))
    around = placement(lay.etp, 1, gpn)
    etp = (collective_s(perf, "all_gather", gathered * row, around)
           + collective_s(perf, "reduce_scatter", gathered * row, around))
    one_pass = np.where(lay.ep > 1, a2a, 0.0) + np.where(lay.etp > 1, etp, 0.0)
    if fw.moe_dispatcher is MoeDispatcher.ALLGATHER:  # every token gathered over EP x ETP, outputs reduce-scattered
        group = lay.ep * lay.etp
        gathered_bytes = local * group * model.hidden * precision.activations.bytes
        where = placement(group, 1, gpn)
        both = (collective_s(perf, "all_gather", gathered_bytes, where)
                + collective_s(perf, "reduce_scatter", gathered_bytes, where))
        one_pass = np.where(group > 1, both, 0.0)
    meta, probs = _alltoall_extras_s(perf, model, lay, precision, gpn, fw, local, busiest)
    replays = recompute_passes(lay)
    fwd, bwd = one_pass + probs, (one_pass + probs) * (1.0 + replays)  # probs travel with the dispatch only
    if fw.overlap_moe_a2a:  # the probs ride the comm stream with the tokens; the metadata gather stays on compute
        paired = _paired_exposed_s(t, fwd / 2.0, bwd / 2.0)  # the mean of a dispatch and a combine
        share = overlapped_share(lay)
        return share * paired + (1.0 - share) * fwd + meta, (1.0 - share) * bwd + meta * replays
    return fwd + meta, bwd + meta * replays


def _alltoall_extras_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int, fw: Framework,
                       local: np.ndarray, busiest: Num) -> tuple[np.ndarray, np.ndarray]:
    """(routing-metadata all-gather of one forward pass, probabilities all-to-all of one pass) that Megatron-Core's
    all-to-all dispatcher issues besides the tokens' all-to-all; zeros for the other dispatchers and without EP.

    ``preprocess`` all-gathers each rank's per-expert token counts (``num_experts`` int64) over the expert TP x EP
    group before every dispatch, on the compute stream, to size the all-to-all (megatron/core/transformer/moe/
    token_dispatcher.py L539-540 ``gather_from_sequence_parallel_region(num_local_tokens_per_expert,
    group=self.tp_ep_group)``, NVIDIA/Megatron-LM@b0cc2706; L498-499 at core_v0.14.0, L547-548 at 0d8e0714, L541-542
    at d7288711, L545-546 at d0b3b775; L410 at core_v0.10.0): a count tensor, not differentiated, so only forward
    passes (and their recomputation) run it. Where the router probabilities scale the experts' activation
    (``not fw.moe_combine_saves``, core >= 0.13) ``token_dispatch`` sends them in a second all-to-all beside the
    tokens (L669-671 at b0cc2706 ``global_probs = all_to_all(self.ep_group, permuted_probs, ...)``; L624 at
    core_v0.13.0, absent at core_v0.12.0), one per token copy in the router's dtype (router.py L95-100: the input's
    unless --moe-router-dtype; the activations' here), and its gradient returns in the backward."""
    zero = np.zeros(len(lay))
    if fw.moe_dispatcher is not MoeDispatcher.ALLTOALL or not np.any(lay.ep * lay.etp > 1):
        return zero, zero
    group = lay.ep * lay.etp
    counts = collective_s(perf, "all_gather", model.experts * 8.0 * group, placement(group, 1, gpn))
    meta = np.where(group > 1, counts, 0.0)
    if fw.moe_combine_saves:
        return meta, zero
    nbytes = local * model.top_k * precision.activations.bytes * busiest
    return meta, np.where(lay.ep > 1, collective_s(perf, "all_to_all", nbytes, placement(lay.ep, lay.etp, gpn)), 0.0)


def _paired_exposed_s(t: MicroBatchTimes, fwd_a2a: np.ndarray, bwd_a2a: np.ndarray) -> np.ndarray:
    """Exposed all-to-all of one MoE layer's forward run together with another micro-batch's backward of it,
    Megatron-Core's EP A2A overlap (TransformerLayerSchedulePlan.run, megatron/core/models/common/
    model_chunk_schedule_plan.py L176-232, NVIDIA/Megatron-LM@0d8e0714; the same three phases at b0cc2706, 55ac7082,
    d7288711, d0b3b775): a comm stream and a compute stream in three phases, each waiting on the one before,
        comm: combine_bwd       | dispatch_fwd -> dispatch_bwd | combine_fwd
        comp: attn_fwd (+router) | mlp_bwd -> mlp_fwd          | attn_bwd (+router);
    mlp_fwd waits for dispatch_fwd and dispatch_bwd for mlp_bwd. ``fwd_a2a``/``bwd_a2a``: one dispatch (= one
    combine) of each pass; "mlp" is the expert node (``experts_*_s``), "attn" the rest of the layer."""
    attn_f, attn_b = t.layer_fwd_s - t.experts_fwd_s, t.layer_bwd_s - t.experts_bwd_s
    mlp_f, mlp_b = t.experts_fwd_s, t.experts_bwd_s
    phases = (np.maximum(bwd_a2a, attn_f) + np.maximum(mlp_b, fwd_a2a) + np.maximum(mlp_f, bwd_a2a)
              + np.maximum(fwd_a2a, attn_b))
    return np.maximum(phases - (t.layer_fwd_s + t.layer_bwd_s), 0.0)


def overlapped_share(lay: Layouts) -> np.ndarray:
    """Share of a stage's (chunk) forward passes that EP A2A overlap pairs with a backward. Without a pipeline the
    first micro-batch's forward and the last one's backward run alone (combined_1f1b_schedule_for_no_pipelining,
    megatron/core/pipeline_parallel/combined_1f1b.py L19-58, NVIDIA/Megatron-LM@0d8e0714); with one (it needs
    virtual stages, transformer_config.py L1670-1674) the interleaved schedule's warmup forwards and cooldown
    backwards do, (pp - rank - 1) 2 + (v - 1) pp + 1 of the m v chunk passes, the +1 for the overlap
    (schedules.py L720-735; microbatch_group_size_per_vp_stage defaults to pp, model_parallel_config.py L303-307),
    here at the mean rank (pp - 1)."""
    pp, v = np.asarray(lay.pp, float), np.asarray(lay.v, float)
    alone = np.where(pp > 1, (pp - 1.0) + (v - 1.0) * pp + 1.0, 1.0)
    return np.clip(1.0 - alone / (np.asarray(lay.micro_batches, float) * v), 0.0, 1.0)


def remote_nodes(experts: int, top_k: int, nodes: np.ndarray) -> np.ndarray:
    """Expected number of other nodes a token's top_k distinct experts land on: (N - 1) (1 - C(E - E/N, k) / C(E, k))
    (``holders`` over the nodes, less the token's own)."""
    n = np.maximum(np.asarray(nodes, float), 1.0)
    return holders(experts, top_k, n) * (n - 1.0) / n


def _dispatch_s(perf: Perf, model: ModelSpec, nbytes: np.ndarray, where: Placement, fw: Framework,
                tokens: np.ndarray, direction: str = "dispatch") -> np.ndarray:
    """One dispatch (or combine) of ``nbytes`` of token copies (one per chosen expert) of ``tokens`` tokens over the
    EP group.

    The all-to-all dispatcher sends every copy (hierarchically across nodes, ``collective_s``). The flex dispatcher
    sends a token once to each rank holding any of its experts and permutes it into per-expert copies there (DeepEP
    ``Buffer.get_dispatch_layout``: ``num_tokens_per_rank``, ``is_token_in_rank``, deepseek-ai/DeepEP@4151890
    deep_ep/buffer.py L284-310; Megatron-Core's HybridEP backend ``dispatch_with_permute``,
    megatron/core/transformer/moe/fused_a2a.py L348-413, NVIDIA/Megatron-LM@2edffadb), and across nodes once to
    each node holding one (RDMA to the same local rank there), fanning out over NVLink there; the combine returns
    one row per rank the same way (``capsim.analytic.training.flex``: the slower tier, at the backend's kernel rate
    plus a time per row, fit to DeepEP's and HybridEP's published microbenchmarks).
    The ranks and nodes a token reaches: ``holders`` for experts spread at random, ``consecutive_holders`` for
    NeMo AutoModel's fake balanced gate (``fw.moe_consecutive_experts``).
    """
    if fw.moe_dispatcher is not MoeDispatcher.FLEX:
        return collective_s(perf, "all_to_all", nbytes, where)
    return flex_s(perf, model, nbytes, tokens, where, fw, direction)


def p2p_hop_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int, fw: Framework
              ) -> np.ndarray:
    """One pipeline send of a micro-batch's activation (or its gradient) between adjacent stages.

    Stages are tp*cp*dp ranks apart: once the pipeline spans nodes its slowest hop crosses the network. With the
    scatter/gather optimisation each TP rank sends 1/t of the tensor on its own NIC and the receiver all-gathers it
    over NVLink (Narayanan et al. SC21, Sec. 4.1); with sequence parallelism the tensor is already split by t.
    """
    nbytes = _tokens(lay) * model.hidden * precision.activations.bytes
    stride = lay.tp * lay.cp * lay.dp
    inter = (stride * lay.pp > gpn) & (lay.pp > 1)
    split = lay.sp | (fw.pp_scatter_gather & (lay.tp > 1))
    gather = np.where(split & ~lay.sp, collective_s(perf, "all_gather", nbytes, placement(lay.tp, 1, gpn)), 0.0)
    hop = send_s(perf, np.where(split, nbytes / lay.tp, nbytes), inter) + gather
    return np.where(lay.pp > 1, hop, 0.0)


def dp_groups(lay: Layouts, gpn: int):  # noqa: ANN201
    """(dense, expert) gradient-reduction (sharding) groups: the ``shard`` ranks of dp*cp, tp apart; each expert
    slice's ``expert_shard`` expert-data-parallel ranks, etp*ep apart (Megatron-Core's expert rank order tp-ep-dp,
    parallel_state.py). Without hybrid sharding these are the whole dp*cp and expert-data-parallel groups."""
    dense = placement(lay.shard, lay.tp, gpn)
    expert = placement(lay.expert_shard, lay.etp * lay.ep, gpn)
    return dense, expert


def replica_groups(lay: Layouts, gpn: int):  # noqa: ANN201
    """(dense, expert) replica groups of hybrid sharding: one rank of each sharding group, shard groups apart (the
    shard dimension innermost: torchtitan's ["pp", "dp_replicate", "dp_shard", "cp", "tp"] storage mesh,
    pytorch/torchtitan@b5bcd76 torchtitan/distributed/parallel_dims.py L239, HSDP applied in distributed/fsdp.py
    L376-378; Megatron-FSDP's inner FSDP group inside its outer, inter-instance group)."""
    dense = placement(lay.replicas, lay.tp * lay.shard, gpn)
    expert = placement(lay.replicas, lay.etp * lay.ep * lay.expert_shard, gpn)
    return dense, expert


def grad_reduce_s(perf: Perf, dense_params: np.ndarray, expert_params: np.ndarray, lay: Layouts,
                  precision: Precision, gpn: int, replicas: bool = True, zero_allreduce: bool = False) -> np.ndarray:
    """One reduction of a stage's gradients over its data-parallel group: an all-reduce, or a reduce-scatter
    when the optimizer (ZeRO >= 1, the distributed optimizer) or the gradients are sharded (Rajbhandari et al.
    2020, Sec. 5; Megatron-LM distributed optimizer); with ``zero_allreduce`` ZeRO-1/2 all-reduce them whole and
    keep their shard (Framework.zero_grad_allreduce: DeepSpeed's multi-rank bucket all-reduce, BF16_Optimizer).
    Under hybrid sharding the reduction runs over the sharding group and (``replicas``) its shard is then
    all-reduced over the replica group (``replica_reduce_s``)."""
    dense, expert = dp_groups(lay, gpn)
    g = precision.gradients.bytes
    sharded = (lay.zero_stage >= 1) | lay.distributed_optimizer
    if zero_allreduce:
        sharded = sharded & ~((lay.zero_stage == 1) | (lay.zero_stage == 2))
    out = np.zeros(len(lay))
    for params, where in ((dense_params, dense), (expert_params, expert)):
        if np.any(params > 0):  # a dense model issues no expert collective
            ar = collective_s(perf, "all_reduce", params * g, where)
            rs = collective_s(perf, "reduce_scatter", params * g, where)
            out = out + np.where(params > 0, np.where(sharded, rs, ar), 0.0)
    return out + replica_reduce_s(perf, dense_params, expert_params, lay, precision, gpn) if replicas else out


def replica_reduce_s(perf: Perf, dense_params: np.ndarray, expert_params: np.ndarray, lay: Layouts,
                     precision: Precision, gpn: int) -> np.ndarray:
    """Hybrid sharding's all-reduce of each gradient shard over the replica group (PyTorch FSDP2 HSDP: the
    reduce-scatter over the shard mesh dimension, then an all-reduce of its output over the replicate one; Megatron-FSDP's
    outer-DP gradient reduce); 0 where every rank of dp*cp shards (one replica)."""
    out = np.zeros(np.broadcast_shapes(np.shape(dense_params), np.shape(expert_params), (len(lay),)))
    if not np.any(lay.replicas > 1):
        return out
    g = precision.gradients.bytes
    for params, shard, where in ((dense_params, lay.shard, replica_groups(lay, gpn)[0]),
                                 (expert_params, lay.expert_shard, replica_groups(lay, gpn)[1])):
        if np.any(params > 0):
            ar = collective_s(perf, "all_reduce", params / shard * g, where)
            out = out + np.where((params > 0) & (lay.replicas > 1), ar, 0.0)
    return out


def param_gather_s(perf: Perf, dense_params: np.ndarray, expert_params: np.ndarray, lay: Layouts,
                   precision: Precision, gpn: int) -> np.ndarray:
    """All-gather of a stage's (or one layer's) 16-bit parameters over its data-parallel (sharding) group."""
    out = np.zeros(len(lay))
    for params, where in zip((dense_params, expert_params), dp_groups(lay, gpn), strict=True):
        if np.any(params > 0):
            ag = collective_s(perf, "all_gather", params * precision.weights.bytes, where)
            out = out + np.where(params > 0, ag, 0.0)
    return out


def embedding_sync_s(perf: Perf, model: ModelSpec, lay: Layouts, precision: Precision, gpn: int,
                     mtp: bool = False) -> np.ndarray:
    """All-reduce of the tied word-embedding gradient between the first and last stage (Megatron-LM keeps a copy
    on both when pp > 1; Shoeybi et al. 2019, Sec. 3), or of the embedding the last stage builds for MTP layers
    (``mtp``: ML@core_v0.14.0 megatron/core/distributed/finalize_model_grads.py L146)."""
    if not (model.tied_embeddings or mtp):
        return np.zeros(len(lay))
    nbytes = model.vocab * model.hidden / lay.tp * precision.gradients.bytes
    apart = lay.tp * lay.cp * lay.dp * (lay.pp - 1)
    where = placement(np.where(lay.pp > 1, 2, 1), np.maximum(apart, 1), gpn)
    return collective_s(perf, "all_reduce", nbytes, where)


def grad_accumulation_s(perf: Perf, local_params: np.ndarray, precision: Precision, fw: Framework) -> np.ndarray:
    """Adding one micro-batch's weight gradients into the accumulation buffer, a separate memory-bound pass unless
    the weight-gradient GEMM accumulates in place: read and write the buffer, read the fresh 16-bit gradient
    (Megatron-LM distributed.py main_grad hook before gradient_accumulation_fusion)."""
    if fw.fused_grad_accumulation:
        return np.zeros(np.shape(local_params))
    nbytes = local_params * (2.0 * precision.gradients.bytes + precision.activations.bytes)
    return np.asarray(perf.memory_s(nbytes, "stream"), float)


def optimizer_s(perf: Perf, local_params: np.ndarray, precision: Precision) -> np.ndarray:
    """The optimizer step on this GPU's parameters, all memory bound: with loss scaling, unscale the gradients and
    check them for inf/NaN (read + write); their norm for clipping (read); Adam (``ops.optimizer_ops``); zero the
    gradient buffer for the next step (write) (Megatron-LM optimizer.py MixedPrecisionOptimizer.step, zero_grad)."""
    passes = 2.0 * precision.loss_scaling + 1.0 + 1.0
    extra = perf.memory_s(local_params * precision.gradients.bytes * passes, "stream")
    return np.asarray(perf.ops_s(optimizer_ops(local_params, precision)) + extra, float)


__all__ = ["cp_layer_s", "dp_groups", "embedding_sync_s", "ep_layer_s", "grad_reduce_s", "mtp_proj_tp_s", "optimizer_s",
           "grad_accumulation_s", "p2p_hop_s", "param_gather_s", "recompute_passes", "replica_groups",
           "replica_reduce_s", "tp_ends_s", "tp_layer_s"]
