"""Layers of two kinds placed on the stages that hold them (DeepSeek's first dense-FFN layers among MoE ones), MLA's
context-parallel K/V bytes, and tensor-parallel checks against every FFN width TP splits."""

import numpy as np
import pytest

from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import training_memory
from capsim.analytic.params import layer_params_by_kind, param_counts
from capsim.analytic.training import comms, resolve_perf, stages, step_time
from capsim.analytic.training.collectives import send_s
from capsim.analytic.training.framework import get_framework
from capsim.calibration import load_calibration
from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.hardware import Cluster
from capsim.specs.pipeline_layout import LayerSplit, even, from_stages
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import Precision

H100 = get_accelerator("h100")
H100_DS = load_calibration("H100-SXM5-80GB").perf()  # the datasheet calibration these checks were written against
V2LITE = get_model("deepseek-v2-lite")  # 27 layers, layer 0 dense (FFN 10944), the others 64 experts
V3 = get_model("deepseek-v3")  # 61 layers, layers 0-2 dense
BF16 = Precision.preset("bf16")
FW = get_framework("megatron-bridge-26.04.01")


def test_dense_layers_fill_the_first_chunks_in_megatron_order():
    split = LayerSplit(((2, 2), (2, 2), (2, 2)))  # 12 layers, pp 3, v 2: rank 0 holds 0-1 and 6-7
    assert split.count_on_chunks((0, 1, 2)) == ((2, 0), (1, 0), (0, 0))
    assert split.count_on_stages((0, 1, 2, 7)) == (3, 1, 0)
    assert from_stages((3, 1, 2)).count_on_stages((2, 3)) == (1, 1, 0)


def test_layout_columns_count_the_dense_layers_of_each_stage():
    lay = Layouts.build(V3, splits=from_stages((16, 15, 15, 15)), pp=4, dp=2, global_batch=64)
    assert (lay.first_stage_dense[0], lay.middle_max_dense[0], lay.middle_dense[0], lay.last_stage_dense[0]) == \
        (3, 0, 0, 0)
    dense = Layouts.build(get_model("llama-3-8b"), pp=4, global_batch=64)
    assert dense.first_stage_dense[0] == 0 and dense.middle_dense[0] == 0


def test_stage_parameters_follow_their_own_layers():
    """The first stage holds the dense layer's 3 x 2048 x 10944 FFN, not the stack's mean layer."""
    lay = Layouts.build(V2LITE, splits=from_stages((7, 7, 7, 6)), pp=4, global_batch=64)
    layers = stages.StageLayers.of(V2LITE, lay)
    params = stages.stage_params(V2LITE, lay, layers)
    kinds = layer_params_by_kind(V2LITE)
    first = params["first"][0][0] - param_counts(V2LITE).embedding
    assert first == pytest.approx(kinds["dense"][0] + 6 * kinds["moe"][0])
    assert params["first"][1][0] == pytest.approx(6 * kinds["moe"][1])  # routed experts of its 6 MoE layers
    assert params["middle"][1][0] == pytest.approx(7 * kinds["moe"][1])
    pc = param_counts(V2LITE)
    assert kinds["dense"][0] + 26 * sum(kinds["moe"]) == pc.decoder  # the kinds add up to the stack


def test_all_to_alls_and_compute_only_where_the_moe_layers_are():
    """Moving the dense layer from the first stage to the last moves its cheaper FFN and drops the first
    stage's missing all-to-all: per stage, (layers - dense) MoE layers pay the dispatch and combine."""
    plan = TrainPlan(pp=3, dp=8, ep=8, global_batch=96, seq_len=4096, layer_split=(9, 9, 9))
    cluster = Cluster(H100, 24)
    perf = resolve_perf(H100_DS, cluster)
    lay = Layouts.from_plans(V2LITE, [plan])
    times = stages.LayerTimes.of(V2LITE, lay, BF16, perf, FW)
    assert times.dense is not times.moe and times.dense.layer_fwd_s[0] != times.moe.layer_fwd_s[0]
    layers = stages.StageLayers.of(V2LITE, lay)
    dp = stages.dp_costs(V2LITE, lay, BF16, perf, 8, FW, layers)
    costs = stages.micro_batch_costs(V2LITE, lay, BF16, perf, 8, FW, times, layers, dp)
    ep = sum(comms.ep_layer_s(perf, V2LITE, lay, BF16, 8, times.moe, FW))[0]
    assert costs["first"]["ep_comm_s"][0] == pytest.approx(8 * ep)
    assert costs["last"]["ep_comm_s"][0] == pytest.approx(9 * ep)
    # each kind's GPU time plus the host's issue time beyond it (the MoE forward from one dispatcher wait to the next)
    ep_f, ep_b = comms.ep_layer_s(perf, V2LITE, lay, BF16, 8, times.moe, FW)
    wait = stages.host_wait_s(times.moe, ep_f, ep_b, stages.sync_point(FW))[0]
    layer = times.moe.layer_fwd_s[0] + times.moe.layer_bwd_s[0] + wait
    dense_layer = (times.dense.layer_fwd_s[0] + times.dense.layer_bwd_s[0]
                   + stages.host_wait_s(times.dense, 0.0, 0.0)[0])
    last_ends = times.moe.head_fwd_s[0] + times.moe.head_bwd_s[0]
    assert costs["last"]["compute_s"][0] == pytest.approx(9 * layer + last_ends)
    first_ends = times.moe.embed_fwd_s[0] + times.moe.embed_bwd_s[0]
    assert costs["first"]["compute_s"][0] == pytest.approx(8 * layer + dense_layer + first_ends)
    r = step_time(V2LITE, plan, cluster, H100_DS, BF16, FW)
    assert r.feasible and r.ep_comm_s > 0


def test_memory_prices_each_stage_with_its_dense_layers():
    """With one stage per layer kind mix, the stage holding the dense layer keeps that layer's weights."""
    plan = TrainPlan(pp=3, dp=8, ep=8, global_batch=96, seq_len=4096, layer_split=(9, 9, 9), distributed_optimizer=True)
    mem = training_memory(V2LITE, plan.with_(precision=BF16), accelerator=H100)
    moved = training_memory(V2LITE.with_(dense_layers=(26,)), plan.with_(precision=BF16), accelerator=H100)
    assert mem.total_bytes != pytest.approx(moved.total_bytes)  # the dense layer's place changes the peak stage


def test_mla_context_parallel_sends_k_of_192_and_v_of_128_dims():
    """MLA rebuilds K (qk_nope 128 + qk_rope 64 = 192 dims) and V (v_head_dim 128) for every head; ring attention
    passes those, not 2 x 192."""
    plan = TrainPlan(tp=8, cp=2, dp=1, ep=1, global_batch=2, seq_len=8192, sequence_parallel=True)
    cluster = Cluster(H100, 16)
    perf = resolve_perf(H100_DS, cluster)
    lay = Layouts.from_plans(V3, [plan])
    times = stages.LayerTimes.of(V3, lay, BF16, perf, FW)
    zero = times.moe.mix(times.moe, np.zeros(1))  # the same layer, its attention compute set to zero below
    no_compute = type(zero)(**{**zero.__dict__, "layer_attn_fwd_s": np.zeros(1), "layer_attn_bwd_s": np.zeros(1)})
    fwd, _ = comms.cp_layer_s(perf, V3, lay, BF16, 8, no_compute, FW)
    tokens, heads = 8192 / 2, 128 / 8
    inter = bool((lay.tp * lay.cp > 8)[0])
    expected = send_s(perf, tokens * heads * (192 + 128) * 2.0, inter)
    assert fwd[0] == pytest.approx(float(np.asarray(expected).reshape(-1)[0]))


def test_tp_must_divide_every_ffn_width_it_splits():
    """DeepSeek-V2-Lite: dense layers 10944 wide, shared experts 2 x 1408; tp = 16 divides both, the routed experts
    split by etp. A model whose dense FFN tp does not divide is refused, naming dense_ffn_hidden."""
    odd = V2LITE.with_(dense_ffn_hidden=10948)  # 4 x 2737
    with pytest.raises(SpecError, match="dense_ffn_hidden=10948"):
        TrainPlan(tp=8, dp=2, global_batch=16).check(odd)
    TrainPlan(tp=4, dp=4, global_batch=16).check(odd)
    assert V2LITE.tp_widths == {"dense_ffn_hidden": 10944, "ffn_hidden": 1408}
    assert get_model("llama-3-8b").tp_widths == {"ffn_hidden": 14336}
    with pytest.raises(SpecError, match="plan.etp"):
        TrainPlan(tp=8, dp=2, global_batch=16).check(V2LITE.with_(ffn_hidden=1412, shared_experts=0))
    TrainPlan(tp=8, etp=4, ep=2, dp=2, global_batch=16).check(V2LITE.with_(ffn_hidden=1412, shared_experts=0))
    lay = Layouts.build(odd, tp=np.array([4, 8]), dp=np.array([4, 2]), global_batch=16, sp=True)
    res = step_time(odd, lay, Cluster(H100, 16), H100_DS, BF16, FW)
    assert res.reason.tolist() == ["", "tp does not divide dense_ffn_hidden"]


def test_even_split_of_a_dense_model_is_unchanged():
    """A model without dense-FFN layers prices its stages exactly as before (one kind of layer)."""
    model = get_model("llama-3-8b")
    lay = Layouts.build(model, splits=even(32, 4), pp=4, dp=2, global_batch=64)
    perf = resolve_perf(H100_DS, Cluster(H100, 8))
    times = stages.LayerTimes.of(model, lay, BF16, perf, FW)
    assert times.dense is times.moe


def test_ring_attention_merge_passes_cost_only_with_context_parallelism():
    """TE's ring attention merges each later step's output (3 O, 3/4 of the size on average over the ranks) and
    dQ/dKV; none of it without CP (share 0: no kernel launched)."""
    from capsim.analytic.ops import layer_shape
    from capsim.analytic.training.compute import ring_attention_ops

    model = get_model("llama-3-8b")  # 32 heads x 128, 8 KV heads
    cp = np.array([1, 2, 4])
    tokens = 8192 / cp
    shape = layer_shape(model, tokens, 1, 1, 1, False)
    fwd, bwd = ring_attention_ops(model, shape, cp, BF16.activations)
    assert fwd.share.tolist() == [0.0, 1.0, 1.0] and bwd.share.tolist() == [0.0, 1.0, 1.0]
    q = o = tokens[1] * 32 * 128
    kv = tokens[1] * 8 * 256
    assert fwd.bytes[1] == pytest.approx(2 * (2 * kv + 2 * o + 0.75 * 3 * o + 0.5 * kv + 0.5 * q))
    per_token = fwd.bytes / tokens
    assert per_token[2] > per_token[1]  # more ring steps, more merges per local token
    perf = resolve_perf(H100_DS, Cluster(H100, 8))
    assert perf.op_s(fwd)[0] == 0.0 and perf.op_s(bwd)[1] > perf.op_s(fwd)[1] > 0


def test_flex_dispatch_sends_each_token_once_per_rank():
    """DeepEP/HybridEP send a token once to each rank holding any of its experts: with 128 experts on 8 ranks and
    top-8, 8 (1 - C(112, 8) / C(128, 8)) = 5.34 rows, the token's own rank's included (DeepEP moves them through the
    same buffers), against the all-to-all's 7 copies that leave the rank."""
    from capsim.analytic.training.collectives import placement
    from capsim.analytic.training.flex import flex_legs

    assert comms.holders(128, 8, np.array([1.0]))[0] == pytest.approx(1.0)
    assert comms.holders(128, 1, np.array([8.0]))[0] == pytest.approx(1.0)
    assert comms.holders(16, 16, np.array([8.0]))[0] == pytest.approx(8.0)
    ranks = comms.holders(128, 8, np.array([8.0]))[0]
    assert ranks == pytest.approx(5.34, abs=0.01)
    model = get_model("qwen3-30b-a3b")
    perf = resolve_perf(H100_DS, Cluster(H100, 8))
    where = placement(np.array([8]), np.array([1]), 8)
    copies = np.array([16384 * 8 * 2048 * 2.0])
    link_s, rows = flex_legs(perf, model, copies, np.array([16384.0]), where, get_framework("nemo-automodel-2025-10"))[
        "intra"]
    a2a = comms._dispatch_s(perf, model, copies, where, get_framework("megatron-bridge-26.04.01"), np.array([16384.0]))
    assert link_s[0] / a2a[0] == pytest.approx(ranks / 7, rel=0.02)
    assert rows[0] == pytest.approx(16384 * ranks)


def test_userbuffers_reduce_scatter_config_prices_its_chunks_and_lent_sms():
    """A pipelined reduce-scatter (4 chunks) whose comm kernels keep 24 and 16 of H100's 132 SMs slows the
    attention-output and fc2 forward GEMMs by 132/108 and 132/116 (set_sm_margin); a ring exchange leaves one
    TP rank's chunk exposed and lends no SMs (NeMo 2.2 / Megatron-Bridge overlap configs)."""
    from capsim.analytic.training.compute import micro_batch_times

    release = get_framework("nemo-25.02")
    model = get_model("llama-3-70b")
    plan = TrainPlan(tp=4, dp=2, global_batch=16, seq_len=8192, sequence_parallel=True)
    lay = Layouts.from_plans(model, [plan])
    perf = resolve_perf(H100_DS, Cluster(H100, 8))
    t = micro_batch_times(model, lay, BF16, perf, release.attention)
    base = release.with_(overlap_tp_comm=True)
    pipelined = base.with_(tp_rs=get_release_flag("nemo-25.02", "userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192"))
    assert pipelined.tp_rs.chunks == 4 and pipelined.tp_rs.proj_sm_share == pytest.approx(24 / 132)
    plain = base.with_(tp_rs=pipelined.tp_rs.__class__(4))
    f_sm, _ = comms.tp_layer_s(perf, model, lay, BF16, 8, t, pipelined)
    f_plain, _ = comms.tp_layer_s(perf, model, lay, BF16, 8, t, plain)
    lent = t.proj_fwd_s * 24 / 108 + t.fc2_fwd_s * 16 / 116
    assert (f_sm - f_plain)[0] == pytest.approx(lent[0])
    ring = base.with_(tp_rs=get_release_flag("megatron-bridge-26.04.01",
                                             "userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192"))
    assert ring.tp_rs.chunks == 0 and ring.tp_rs.proj_sm_share == 0.0
    f_ring, _ = comms.tp_layer_s(perf, model, lay, BF16, 8, t, ring)
    assert f_ring[0] == pytest.approx(f_plain[0])  # tp = 4: a ring's 4 chunks leave what 4 pipelined ones do
    lay8 = Layouts.from_plans(model, [plan.with_(tp=8, dp=1)])
    t8 = micro_batch_times(model, lay8, BF16, perf, release.attention)
    assert comms.tp_layer_s(perf, model, lay8, BF16, 8, t8, ring)[0][0] < \
        comms.tp_layer_s(perf, model, lay8, BF16, 8, t8, plain)[0][0]  # 8 ring chunks expose less than 4


def get_release_flag(release: str, config: str):
    """The RsOverlap a release's --tp-comm-overlap-cfg flag sets for ``config``."""
    from capsim.analytic.training.framework import get_release

    return get_release(release).configure(f"--tp-comm-overlap-cfg={config}")[0].tp_rs


def test_pipeline_sends_block_without_interleaving():
    """Megatron-Bridge turns overlap_p2p_comm on only with vp > 1 (MB@v0.3.0 comm_overlap.py, 'PP overlap') and
    Megatron-Core's 1F1B schedule refuses it and waits on every send/receive: at v = 1 each micro-batch pays a send
    and a receive of its activation on the stage's critical path, at v = 2 none (only the fill and drain)."""
    llama = get_model("llama-3-8b")  # 32 layers: 8 per stage
    cluster = Cluster(H100, 64)
    one, two = (TrainPlan(pp=4, pp_interleave=v, dp=16, global_batch=64, seq_len=4096) for v in (1, 2))
    assert not FW.overlaps_p2p(1) and FW.overlaps_p2p(2)
    lay = Layouts.from_plans(llama, [one])
    hop = comms.p2p_hop_s(resolve_perf(H100_DS, cluster), llama, lay, BF16, 8, FW)[0]
    # stages 16 ranks apart: each hop crosses the network
    assert hop == pytest.approx(send_s(resolve_perf(H100_DS, cluster), 4096 * llama.hidden * 2.0, True))
    a, b = (step_time(llama, p, cluster, H100_DS, BF16, FW) for p in (one, two))
    assert a.pp_comm_s == pytest.approx(one.micro_batches * 2 * hop) and b.pp_comm_s == 0
