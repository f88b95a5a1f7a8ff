"""The mixture-of-experts block of one layer as Megatron-Core runs it with its all-to-all token dispatcher.

Per MoE layer and GPU (megatron/core/transformer/moe/{router,token_dispatcher,experts}.py, NVIDIA/Megatron-LM@
core_v0.10.0, "MoE parallel folding": the experts' tensor-parallel size ETP and expert-parallel size EP are laid over
the same ranks as the attention's TP x CP x DP, in the order tp-ep-dp, parallel_state.py L643-662):
1. the router scores the GPU's own tokens (its sequence-parallel shard: Megatron-Core refuses MoE with TP but no
   sequence parallelism, moe_layer.py L130-139) and keeps the top k experts of each;
2. ``permute`` copies each token once per chosen expert, grouped by destination;
3. an all-to-all over the EP group sends each copy to the rank holding its expert (priced in ``training.comms``);
4. with ETP > 1 the received tokens are all-gathered over the ETP group (each ETP rank holds a slice of every
   expert's FFN), and with several local experts they are sorted by expert (``sort_chunks_by_idxs``);
5. the local experts run as one grouped GEMM each for fc1 and fc2 (TEGroupedMLP), on the tokens routed to them;
6. everything in reverse: unsort, reduce-scatter over ETP, all-to-all back, ``unpermute`` (the weighted sum of each
   token's k expert outputs).
Shared experts (DeepSeek-MoE style) run as a dense FFN on every token, split by TP like any MLP.

Routing is balanced: each expert receives ``tokens * top_k / experts`` of the tokens, as the published benchmarks
force it (Megatron-Core ``--moe-router-force-load-balancing``; NeMo AutoModel's ``fake_balanced_gate``). Imbalance
would slow the busiest rank; capsim does not price it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.stats import norm

from capsim._types import Num
from capsim.analytic.primitives import Op, OpKind, Saved, elementwise, gemm
from capsim.specs.model import ModelSpec
from capsim.specs.precision import DType

# The routed experts' GEMMs: one grouped GEMM over the local experts (TEGroupedMLP's GroupedLinear), whose FP8
# input Transformer Engine pads per expert (``capsim.analytic.fp8.grouped_padding``).
GROUPED = "grouped"
# The combine's unpermute op (its saved expert outputs are dropped where the release applies the router
# probabilities in the experts instead: capsim.analytic.memory.saved_by_class).
COMBINE = "moe_unpermute"


def mlp_act(model: ModelSpec, rows: Num, f: Num, dt: DType, ab: float, count: Num, share: float) -> Op:
    """The FFN's activation over ``rows`` tokens of inner width ``f`` (per GPU): it reads the up projection's
    output (both halves of a gated one) and writes ``f`` columns, once per memory pass (``Mlp.act_passes``); it
    saves its input for the backward."""
    cols = model.mlp.matrices - 1  # the up projection's outputs per inner column: 2 gated, 1 not
    passes = model.mlp.act_passes
    return Op("mlp_act", OpKind.ELEMENTWISE, 8.0 * rows * f, (cols + passes - 1) * rows * f * ab,
              passes * rows * f * ab, (rows * f,), dt, count, ((Saved.TP, cols * rows * f * ab),), share=share)

def moe_tokens(tokens: Num, tp: Num, etp: Num, sp: Num) -> tuple[Num, Num]:
    """(tokens a GPU routes, tokens each of its expert slices computes on before the top-k copies).

    Under sequence parallelism a GPU routes its 1/tp shard and all-gathers the routed tokens over its ETP group;
    without it (serving) every TP rank holds all tokens and the experts are split by TP."""
    n = np.asarray(tokens, float)
    local = np.where(sp, n / np.asarray(tp, float), n)
    return local, local * np.where(sp, np.asarray(etp, float), 1.0)


def busiest_rank(model: ModelSpec, routed: Num, ep: Num) -> Num:
    """Expected token copies the busiest of ``ep`` ranks receives, over the mean, when each rank routes ``routed``
    tokens. Megatron-Core's ``--moe-router-force-load-balancing`` (what the benchmarks run) replaces the router's
    logits with i.i.d. normal ones per token (RandomSTE, megatron/core/transformer/moe/moe_utils.py L901-935,
    NVIDIA/Megatron-LM@0d8e0714), so each token's top_k experts are uniform without replacement: the copies one
    rank's E/ep experts get from one token are hypergeometric, variance k (1/ep)(1 - 1/ep)(E - k)/(E - 1), summed
    over the ep x routed tokens of the group; the busiest of ep such sums sits about Blom's normal score
    Phi^-1((ep - 0.375)/(ep + 0.25)) standard deviations above the mean (Blom 1958). Every rank waits for it at the
    layer's all-to-all, fresh each layer and micro-batch."""
    e, k = float(model.experts), float(model.top_k)
    g = np.maximum(np.asarray(ep, float), 1.0)
    n = np.asarray(routed, float) * g
    var = n * k * (1.0 / g) * (1.0 - 1.0 / g) * (e - k) / max(e - 1.0, 1.0)
    score = np.where(g > 1, norm.ppf(np.clip((g - 0.375) / (g + 0.25), 0.5, 1.0)), 0.0)
    return 1.0 + score * np.sqrt(var) / np.maximum(np.asarray(routed, float) * k, 1e-30)


def consecutive_holders(experts: int, top_k: int, groups: Num) -> np.ndarray:
    """Mean number of ``groups`` (EP ranks or nodes, each holding a contiguous block of E/G experts) a token reaches
    when its k experts are the consecutive (t k + j) mod E, j < k, of NeMo AutoModel's FakeBalancedGate at noise 0
    (nemo_automodel/components/moe/layers.py L199-201 @79378e626): the mean over the cycle of starts t k mod E."""
    g = np.maximum(np.asarray(groups, np.int64), 1)
    starts = (np.arange(experts // np.gcd(experts, top_k)) * top_k) % experts
    ids = (starts[:, None] + np.arange(top_k)[None, :]) % experts
    out = np.ones(g.shape, float)
    for size in np.unique(g):
        owner = np.sort(ids * int(size) // experts, axis=1)  # the group holding each chosen expert
        out[g == size] = float(np.mean(1 + np.count_nonzero(np.diff(owner, axis=1), axis=1)))
    return out


def _experts(model: ModelSpec, rows: Num, etp: Num, count: Num, dt: DType, ab: float, wb: float,
             share: float) -> list[Op]:
    """The local experts' FFNs: ``count`` experts of ``rows`` tokens each, their width split by ETP."""
    h, gated = model.hidden, model.mlp.matrices == 3
    f = model.ffn_hidden / np.asarray(etp, float)
    up = (2 if gated else 1) * f
    return [replace(gemm("mlp_up", rows, up, h, dt, ab, wb, ((Saved.TP, rows * h * ab),), count, share),
                    impl=GROUPED),
            mlp_act(model, rows, f, dt, ab, count, share),
            replace(gemm("mlp_down", rows, h, f, dt, ab, wb, ((Saved.TP, rows * f * ab),), count, share),
                    impl=GROUPED)]


def _expert_bias(model: ModelSpec, rows: Num, count: Num, copies: Num, dt: DType, share: float) -> list[Op]:
    """fc2's bias in Megatron-Core's TEGroupedMLP, which runs it eagerly outside the grouped GEMM (a biased model's
    experts only; the fc1 bias is the GEMM's own and the clamped GLU one fused kernel). ``TEGroupedMLP._apply_bias``
    (megatron/core/transformer/moe/experts.py L843-860, NVIDIA/Megatron-LM@0d8e0714; the same code at every
    Megatron-Bridge pin from 0d8e0714 to 2edffadb) builds ``torch.cat([t + b * p for t, b, p in zip(split(out),
    biases, split(probs))])``: per local expert one ``b * p`` (writes the expert's rows) and one add (reads them and
    the GEMM output, writes the sum), then one concatenation of all the rows; the probabilities are in the router's
    16-bit format (router.py L93-98 without ``moe_router_dtype``, which the GPT-OSS bridge leaves unset; TE's fused
    top-k returns the logits' dtype, transformer_engine/pytorch/csrc/extensions/router.cpp L42 at v2.9), so the
    closing ``.to`` copies nothing. Backward by the generic rule of a memory-bound op.
    NeMo AutoModel's DeepEP experts copy this ``_apply_bias`` (nemo_automodel/components/moe/layers.py L356-383,
    NVIDIA-NeMo/Automodel@89e3a9fdd) and run fc1's bias through it too (L487): priced where the release says so
    (``Framework.moe_fc1_bias_eager``, capsim.analytic.eager.fc1_bias_ops)."""
    if not model.bias:
        return []
    h = model.hidden
    return [replace(elementwise("moe_bias_scale", rows * h, dt, 0, 1, 1, share=share), count=count),
            replace(elementwise("moe_bias_add", rows * h, dt, 2, 1, 1, share=share), count=count),
            elementwise("moe_bias_cat", copies * h, dt, 1, 1, 0, share=share)]


def moe_ops(model: ModelSpec, tokens: Num, tp: Num, etp: Num, ep: Num, sp: Num, dt: DType, ab: float, wb: float,
            share: float, dispatcher: bool = True, touched: Num | None = None, busiest: Num = 1.0) -> list[Op]:
    """Forward ops of one MoE block over ``tokens`` token rows of a TP group (see the module docstring);
    ``dispatcher=False`` leaves out Megatron-Core's top-k, permutations and sorts (serving engines fuse routing
    into their MoE kernels). ``touched``: the local experts a serving step's tokens reach (the others' weights are
    not read; capsim.analytic.ops.active_experts), else every local expert runs. ``busiest``: the busiest EP
    rank's copies over the mean (``busiest_rank``; 1 = exactly balanced)."""
    h, k, experts = model.hidden, model.top_k, model.experts
    local, gathered = moe_tokens(tokens, tp, etp, sp)
    copies = gathered * k * busiest  # token copies this GPU's expert slices compute on (the busiest rank's)
    count = experts / np.asarray(ep, float) if touched is None else np.maximum(touched, 1e-30)
    per_expert = copies / count  # the copies this GPU's experts receive from the EP group, over its experts
    gate = 1 if model.shared_expert_gate else 0  # Qwen2-MoE's shared-expert gate: one more output column
    router = gemm("router", local, experts + gate, h, dt, ab, wb, ((Saved.SP, np.asarray(tokens, float) * h * ab),),
                  share=share)
    experts_ops = _experts(model, per_expert, etp, count, dt, ab, wb, share)
    if not dispatcher:
        return [router, *experts_ops, *_shared(model, tokens, tp, dt, ab, wb, share)]
    ops = [router,
           elementwise("moe_router_topk", local * experts, dt, 1, 1, 5, share=share),
           Op("moe_permute", OpKind.ELEMENTWISE, 0.0, local * h * ab, local * k * h * ab, (local * k * h,), dt,
              share=share)]
    several = np.asarray(count) > 1  # tokens sorted by local expert (and back) only when a GPU holds several
    sort = Op("moe_sort", OpKind.ELEMENTWISE, 0.0, copies * h * ab * several, copies * h * ab * several,
              (copies * h,), dt, share=share)
    ops += [sort, *experts_ops, *_expert_bias(model, per_expert, count, copies, dt, share), sort]
    # unpermute: the weighted sum of each token's k outputs; it keeps them for the gradient of the weights
    ops.append(Op(COMBINE, OpKind.ELEMENTWISE, 2.0 * local * k * h, local * k * h * ab, local * h * ab,
                  (local * k * h,), dt, saved=((Saved.TP, local * k * h * ab),), share=share))
    return ops + _shared(model, tokens, tp, dt, ab, wb, share)


def _shared(model: ModelSpec, tokens: Num, tp: Num, dt: DType, ab: float, wb: float, share: float) -> list[Op]:
    """Shared experts: a dense FFN of ``shared_experts`` shared-expert widths on every token, split by TP."""
    if not model.shared_experts:
        return []
    h, n = model.hidden, np.asarray(tokens, float)
    f = model.shared_ffn * model.shared_experts / np.asarray(tp, float)
    return [gemm("shared_up", n, (model.mlp.matrices - 1) * f, h, dt, ab, wb, share=share),
            gemm("shared_down", n, h, f, dt, ab, wb, ((Saved.TP, 2 * n * f * ab),), share=share)]


__all__ = ["consecutive_holders", "COMBINE", "GROUPED", "busiest_rank", "moe_ops", "moe_tokens"]
