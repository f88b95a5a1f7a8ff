"""Context parallelism and attention as each framework's code runs them: Transformer Engine's ring (Megatron-Core)
against torch's experimental context_parallel rotaters (torchtitan), and torch SDPA's flash backend
(FlashAttention-2) priced at its own Hopper rate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from capsim.analytic.layouts import Layouts
from capsim.analytic.ops import AttentionImpl
from capsim.analytic.training import comms
from capsim.analytic.training.collectives import collective_s, placement, send_s
from capsim.analytic.training.compute import micro_batch_times
from capsim.analytic.training.framework import get_framework, get_release
from capsim.analytic.training.release import CpRotate
from capsim.calibration import perf_for
from capsim.calibration.datasheet import HOPPER
from capsim.calibration.published_attention import sdpa_flash_kernels
from capsim.calibration.published_attention_cudnn import hopper_cudnn_kernels
from capsim.calibration.schema import load_calibration
from capsim.perf.params import DeviceParams
from capsim.specs.catalog import get_model
from capsim.specs.precision import Precision

LLAMA = get_model("llama-3-8b")
BF16 = Precision.preset("bf16")
H100 = perf_for("H100-SXM5-80GB", "datasheet")
TE = get_framework("megatron-core")
TORCH = TORCH_RELEASE = get_release("torchtitan-2024-12").framework


def _cp(cp: int, attn_fwd_s: float, attn_bwd_s: float):
    """(layout, times) of one 8k-token Llama 3 8B micro-batch over ``cp`` GPUs of one node, its attention compute set
    to the given seconds (how much each step can hide)."""
    lay = Layouts.build(LLAMA, cp=cp, dp=1, seq_len=8192, global_batch=1, micro_batch=1)
    t = micro_batch_times(LLAMA, lay, BF16, H100)
    return lay, replace(t, layer_attn_fwd_s=np.array([attn_fwd_s]), layer_attn_bwd_s=np.array([attn_bwd_s]))


def _kv_bytes(cp: int) -> float:
    return 8192 / cp * LLAMA.kv_heads * (LLAMA.head_dim + LLAMA.v_dim) * 2.0


def test_torch_allgather_rotater_hides_behind_the_first_step_only() -> None:
    TORCH = TORCH_RELEASE.with_(repeat_kv=False)  # noqa: N806 (the rotater alone; repeat_kv has its own test)
    cp = 8
    kv = _kv_bytes(cp)
    send, dkv = send_s(H100, kv, False), send_s(H100, 2.0 * kv, False)  # dK, dV in fp32: twice the bf16 bytes
    gather = collective_s(H100, "all_gather", cp * kv, placement(cp, 1, 8))
    lay, bare = _cp(cp, 0.0, 0.0)  # nothing to hide behind: every transfer whole
    assert comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, bare, TE)[0][0] == pytest.approx((cp - 1) * float(send))
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, bare, TORCH)
    assert fwd[0] == pytest.approx(float(gather))  # one all-gather of every rank's K, V per pass
    assert bwd[0] == pytest.approx(float(gather) + cp * float(dkv))  # gathered again, dK/dV passed after each step
    # each step's attention long enough to hide one ring transfer (bf16 K,V forward, 2x in the backward), shorter
    # than the whole gather: the ring hides all, the all-gather only behind step 0, the last dK/dV pass never
    block = 1.5 * float(dkv)
    lay, t = _cp(cp, cp * block, cp * block)
    assert float(gather) > block
    assert sum(comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, TE))[0] == 0.0
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, TORCH)
    assert fwd[0] == pytest.approx(float(gather) - block)
    assert bwd[0] == pytest.approx(float(gather) - block + float(dkv))
    a2a = TORCH.with_(cp_rotate=CpRotate.ALLTOALL)
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, a2a)
    assert fwd[0] == 0.0 and bwd[0] == pytest.approx(float(dkv))  # K, V hide like the ring; the last dK/dV does not


def test_transformer_engines_backward_exchanges_once_per_step() -> None:
    """TE's ring backward (v1.8 attention.py L1164-1169, L1553-1555; v2.8 context_parallel.py L2099-2104,
    L2313-2315): step 0 sends K, V, steps 1..cp-2 K, V with dK, dV, the last step dK, dV; each waited after its own
    step's attention. So cp exchanges (two of one K/V size, cp - 2 of two), each hiding behind one step."""
    for cp in (2, 4, 8):
        kv = _kv_bytes(cp)
        send, pair = float(send_s(H100, kv, False)), float(send_s(H100, 2.0 * kv, False))
        lay, bare = _cp(cp, 0.0, 0.0)  # nothing to hide behind: every exchange whole
        assert comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, bare, TE)[1][0] == pytest.approx(2 * send + (cp - 2) * pair)
        block = 0.5 * (send + pair)  # each step hides a K/V-sized exchange, not a K/V + dK/dV one
        lay, t = _cp(cp, cp * block, cp * block)
        assert comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, TE)[1][0] == pytest.approx((cp - 2) * (pair - block))


def test_no_context_parallelism_no_exchange() -> None:
    lay, t = _cp(1, 0.0, 0.0)
    for fw in (TE, TORCH):
        assert sum(comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, fw))[0] == 0.0


def test_releases_name_their_context_parallel_implementation() -> None:
    assert TE.cp_rotate is CpRotate.P2P and TORCH.cp_rotate is CpRotate.ALLGATHER
    assert "'allgather'" in get_release("torchtitan-2024-12").cite["cp_rotate"]
    fw, _ = get_release("torchtitan-2024-12").configure("--experimental.context_parallel_rotate_method=alltoall")
    assert fw.cp_rotate is CpRotate.ALLTOALL
    fw, _ = get_release("torchtitan-2025-06").configure("--parallelism.context_parallel_rotate_method=alltoall")
    assert fw.cp_rotate is CpRotate.ALLTOALL
    for name in ("torchtitan-2024-04", "torchtitan-2024-12", "torchtitan-2025-06"):
        assert get_release(name).framework.attention is AttentionImpl.SDPA_FLASH
        assert "FlashAttention-2" in get_release(name).cite["attention"]


def test_sdpa_flash_runs_at_flashattention2s_hopper_rate_and_at_the_main_rate_elsewhere() -> None:
    flops, rows = 1e15, 1e9  # large: every curve at its plateau
    h100 = perf_for("H100-SXM5-80GB", "datasheet")
    fa2 = h100.params.attention.kernels
    for name, perf, causal in (("H100-SXM5-80GB", h100, False), ("H100-SXM5-80GB", h100, True),
                               ("A100-SXM4-80GB", perf_for("A100-SXM4-80GB", "datasheet"), True)):
        launch, main = perf.params.attention.launch_s, perf.params.attention
        own = fa2["sdpa-flash@causal" if causal else "sdpa-flash"] if name in HOPPER else None
        # the main kernel on Hopper: cuDNN's rates, under the mask its "@causal" ones (published_attention_cudnn)
        mains = dict(zip(("forward", "backward"), main.curves("", causal), strict=True))
        for backward, phase in ((False, "forward"), (True, "backward")):
            plain, sdpa = (perf.attention_s(flops, 0.0, rows, backward=backward, kernel=k, causal=causal) - launch
                           for k in ("", "sdpa-flash"))
            ratio = (mains[phase].peak_fraction / own[phase].peak_fraction) if own else 1.0
            assert sdpa / plain == pytest.approx(ratio, rel=1e-3), (name, causal, backward)


def test_the_fa2_kernel_curves_ship_in_hopper_calibrations_and_round_trip() -> None:
    # and the main kernel's (cuDNN's) causal curves beside them (published_attention_cudnn.hopper_cudnn_kernels)
    expected = {**sdpa_flash_kernels(4096.0), "@causal": hopper_cudnn_kernels(4096.0)["@causal"]}
    for name in HOPPER:
        params = load_calibration(name).perf().params
        assert params.attention.kernels == expected
        assert DeviceParams.from_dict(params.to_dict()) == params
    assert load_calibration("H100-SXM5-80GB-profile").perf().params.attention.kernels == expected
    assert load_calibration("A100-SXM4-80GB").perf().params.attention.kernels is None


def test_sdpa_flash_is_fused_like_flash() -> None:
    lay = Layouts.build(LLAMA, dp=1, seq_len=8192, global_batch=1, micro_batch=1)
    flash, sdpa = (micro_batch_times(LLAMA, lay, BF16, perf_for("A100-SXM4-80GB", "datasheet"), impl)
                   for impl in (AttentionImpl.FLASH, AttentionImpl.SDPA_FLASH))
    assert flash.layer_fwd_s[0] == sdpa.layer_fwd_s[0]  # no Hopper rate on an A100: the same kernel time
    hopper = [micro_batch_times(LLAMA, lay, BF16, H100, impl) for impl in (AttentionImpl.FLASH, AttentionImpl.SDPA_FLASH)]
    assert hopper[1].layer_attn_fwd_s[0] > hopper[0].layer_attn_fwd_s[0]
    assert hopper[1].layer_gemm_fwd_s[0] == hopper[0].layer_gemm_fwd_s[0]


def test_torch_cp_merges_in_fp32_and_costs_more_than_transformer_engines() -> None:
    """torch's _SDPAMerger: step 0's output cast to fp32 (6 bytes per element), each later step cast and merged
    (3/4 of O on average: 6 + 32 bytes) and half of them cat'ed back (8 bytes of the whole O each), the result cast back
    (6); K, V contiguous + concatenated per later step (4 bytes per element each)."""
    from capsim.analytic.ops import layer_shape
    from capsim.analytic.training.compute import ring_attention_ops

    cp = np.array([1, 2, 8])
    tokens = 8192 / cp
    shape = layer_shape(LLAMA, tokens, 1, 1, 1, False)
    te_f, te_b = ring_attention_ops(LLAMA, shape, cp, BF16.activations)
    pt_f, pt_b = ring_attention_ops(LLAMA, shape, cp, BF16.activations, torch_cp=True)
    assert pt_f.share.tolist() == [0.0, 1.0, 1.0] == pt_b.share.tolist()
    o = tokens * 32 * 128
    kv = tokens * 8 * 256
    later = cp - 1
    expected = 4 * kv * (1 + later) + 6 * o + later * o * (0.75 * 6 + 0.75 * 32 + 0.5 * 8) + 6 * o
    assert np.asarray(pt_f.bytes)[1:] == pytest.approx(expected[1:])
    assert np.all(np.asarray(pt_f.bytes)[1:] > np.asarray(te_f.bytes)[1:])
    assert np.all(np.asarray(pt_b.bytes)[1:] > np.asarray(te_b.bytes)[1:])
    lay = Layouts.build(LLAMA, cp=8, dp=1, seq_len=65536, global_batch=1, micro_batch=1)
    te, pt = (micro_batch_times(LLAMA, lay, BF16, H100, torch_cp=flag) for flag in (False, True))
    assert pt.layer_fwd_s[0] > te.layer_fwd_s[0] and pt.layer_attn_fwd_s[0] == te.layer_attn_fwd_s[0]


def test_torch_ring_in_a_compiled_graph_hides_nothing() -> None:
    """torchtitan compiles each block with fullgraph=True, so torch's ring is traced into the graph, where every
    functional collective is waited on right after it is issued: the all-gather and every dK/dV pass are exposed
    whole however long the attention steps run; the same release run eager hides them as before, and Transformer
    Engine's ring (no functional collectives) is the same compiled or not."""
    fw = TORCH_RELEASE.with_(repeat_kv=False)
    cp = 8
    kv = _kv_bytes(cp)
    dkv = float(send_s(H100, 2.0 * kv, False))
    gather = float(collective_s(H100, "all_gather", cp * kv, placement(cp, 1, 8)))
    lay, t = _cp(cp, cp * 100.0 * gather, cp * 100.0 * gather)  # steps far longer than any transfer
    compiled = fw.with_(torch_compile=True)
    assert fw.cp_in_graph and not fw.torch_compile  # the release's code; compile is a flag of the run
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, compiled)
    assert fwd[0] == pytest.approx(gather) and bwd[0] == pytest.approx(gather + cp * dkv)
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, fw)
    assert fwd[0] == 0.0 and bwd[0] == pytest.approx(dkv)  # eager: only the last dK/dV pass
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, compiled.with_(cp_in_graph=False))
    assert fwd[0] == 0.0 and bwd[0] == pytest.approx(dkv)  # a ring outside the graph keeps its overlap
    a2a = compiled.with_(cp_rotate=CpRotate.ALLTOALL)
    fwd, bwd = comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, a2a)
    send = float(send_s(H100, kv, False))
    assert fwd[0] == pytest.approx((cp - 1) * send) and bwd[0] == pytest.approx((cp - 1) * send + cp * dkv)
    for te in (TE, TE.with_(torch_compile=True, cp_in_graph=True)):
        assert sum(comms.cp_layer_s(H100, LLAMA, lay, BF16, 8, t, te))[0] == 0.0


def test_which_releases_trace_torchs_ring_into_a_compiled_graph() -> None:
    for name in ("torchtitan-2024-12", "torchtitan-2025-06"):
        rel = get_release(name)
        assert rel.framework.cp_in_graph and "fullgraph=True" in rel.cite["cp_in_graph"]
        assert "_maybe_wrap_tensor" in rel.cite["cp_in_graph"]
    for name in ("torchtitan-2024-04", "torchtitan-2026-08", "nemo-automodel-2026-04", "megatron-core"):
        assert not get_release(name).framework.cp_in_graph
