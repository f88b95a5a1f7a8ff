"""How an engine's decode attention kernel reads a GQA group's KV cache (engines.yaml decode_kv_reads): the bytes
the attention op moves, the decode step it prices, and nothing else."""

from __future__ import annotations

import pytest

from capsim import ServePlan, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.attention import kernel_dims, kv_elems_per_token
from capsim.analytic.ops import OpKind, Phase, StepBatch
from capsim.analytic.serving import StepShape, attention_ops, iteration_time
from capsim.analytic.step_table import StepTable
from capsim.specs.catalog import load_catalog
from capsim.specs.engine import DecodeKvReads, get_engine, profile_from_dict

H100 = get_accelerator("h100")
PERF = load_calibration("h100").perf()
PER_Q, PER_KV = DecodeKvReads.PER_QUERY_HEAD, DecodeKvReads.PER_KV_HEAD


def test_per_query_head_reads_each_kv_head_once_per_query_head():
    llama70 = get_model("llama-2-70b")  # 64 query heads over 8 KV heads: TP4 leaves 16 over 2 per GPU
    once = kernel_dims(llama70, 4, Phase.DECODE, PER_KV)
    per_q = kernel_dims(llama70, 4, Phase.DECODE, PER_Q)
    assert once.kv_elems == pytest.approx(2 * 2 * 128)  # K and V of 2 heads of 128
    assert kernel_dims(llama70, 4, Phase.DECODE) == once  # the default: once per KV head
    assert per_q.kv_elems == pytest.approx(16 * 2 * 128)
    assert (per_q.heads, per_q.qk_dim, per_q.v_dim) == (once.heads, once.qk_dim, once.v_dim)
    # TP past the KV heads replicates one per GPU: 64/16 = 4 query heads read it
    assert kernel_dims(llama70, 16, Phase.DECODE, PER_Q).kv_elems == pytest.approx(4 * 2 * 128)
    # prefill kernels and multi-head models (one query head per KV head) are untouched
    assert kernel_dims(llama70, 4, Phase.PREFILL, PER_Q) == kernel_dims(llama70, 4, Phase.PREFILL, PER_KV)
    mha = get_model("llama-2-7b")
    assert kernel_dims(mha, 2, Phase.DECODE, PER_Q) == kernel_dims(mha, 2, Phase.DECODE, PER_KV)


def test_the_field_changes_the_decode_attention_bytes_and_nothing_else():
    model = get_model("llama-2-70b")
    plan = ServePlan(tp=4, quantization="fp8", kv_cache_dtype="fp8")
    trt05 = get_engine("tensorrt-llm-0.5")
    assert trt05.decode_kv_reads is PER_Q
    once = trt05.with_(decode_kv_reads=PER_KV)
    seqs, ctx = 64, 3000.0
    batch = StepBatch(seqs, seqs, seqs * ctx, seqs * ctx)
    [a_q] = [o for o in attention_ops(model, plan, batch, Phase.DECODE, PER_Q) if o.kind is OpKind.ATTENTION]
    [a_kv] = [o for o in attention_ops(model, plan, batch, Phase.DECODE, PER_KV) if o.kind is OpKind.ATTENTION]
    extra = seqs * ctx * (16 - 2) * 2 * 128 * 1.0  # FP8 cache: one byte per element
    assert a_q.bytes_read - a_kv.bytes_read == pytest.approx(extra)
    assert (a_q.flops, a_q.bytes_written) == (a_kv.flops, a_kv.bytes_written)

    decode = StepShape.decode(seqs, ctx)  # each sequence reads its context and the token it appends
    slow = iteration_time(model, plan, PERF, decode, trt05, H100)
    fast = iteration_time(model, plan, PERF, decode, once, H100)
    assert float(slow.attention_s) > float(fast.attention_s)
    for part in ("layers_s", "head_s", "tp_comm_s", "pp_comm_s", "overhead_s"):
        assert getattr(slow, part) == getattr(fast, part), part
    # the extra bytes at the decode attention's memory rate, every layer (both kernels memory-bound here)
    icpt, slope = StepTable(model, plan, PERF, trt05, H100).dec_mem
    step_extra = extra * (ctx + 1) / ctx
    assert float(slow.attention_s - fast.attention_s) == pytest.approx(model.layers * slope * step_extra, rel=1e-9)
    prefill = StepShape.prefill(64, 2048)
    assert iteration_time(model, plan, PERF, prefill, trt05, H100).total_s == \
        iteration_time(model, plan, PERF, prefill, once, H100).total_s


def test_the_step_table_prices_the_same_reads_as_the_op_list():
    model = get_model("llama-2-70b")
    plan = ServePlan(tp=4, quantization="fp8", kv_cache_dtype="fp8")
    for eng in (get_engine("tensorrt-llm-0.5"), get_engine("tensorrt-llm-0.5").with_(decode_kv_reads=PER_KV)):
        table = StepTable(model, plan, PERF, eng, H100)
        for seqs, ctx in ((1, 100.0), (64, 2100.0), (64, 4000.0)):
            shape = StepShape.decode(seqs, ctx)
            direct = iteration_time(model, plan, PERF, shape, eng, H100)
            got = table.step_s(decode_seqs=seqs, decode_kv_tokens=float(shape.decode_kv_tokens))
            assert got == pytest.approx(float(direct.total_s), rel=1e-12), (eng.decode_kv_reads, seqs)
    ratio = StepTable(model, plan, PERF, "tensorrt-llm-0.5", H100).dec_kv / kv_elems_per_token(model, 4)
    assert ratio == pytest.approx(8.0)


def test_an_unknown_read_pattern_is_refused():
    entry = dict(load_catalog("engines")["tensorrt-llm-0.5"], decode_kv_reads="twice")
    with pytest.raises(SpecError, match="decode_kv_reads"):
        profile_from_dict("bad", entry)


def test_trtllm_0_10_reads_per_kv_head_only_for_the_groups_its_xqa_gate_admits():
    # TensorRT-LLM 0.10 decoderXQARunner.h shouldUse: XQA only for 8 query heads per KV head (engines.yaml)
    from capsim.analytic.serving_moe import decode_kv_reads
    v010 = get_engine("tensorrt-llm-0.10")
    assert v010.decode_kv_groups == (8,) and v010.decode_kv_reads is PER_KV
    cases = {("llama-2-70b", 4): PER_KV, ("llama-3-70b", 4): PER_KV, ("llama-2-70b", 1): PER_KV,
             ("llama-3-8b", 1): PER_Q, ("mixtral-8x7b", 2): PER_Q,
             ("llama-2-70b", 16): PER_Q}  # one replicated KV head per GPU for 4 query heads: a group of 4
    for (name, tp), want in cases.items():
        assert decode_kv_reads(get_model(name), ServePlan(tp=tp), v010) is want, (name, tp)
    everyone = v010.with_(decode_kv_groups=())  # no list: every group as the profile's pattern
    assert decode_kv_reads(get_model("llama-3-8b"), ServePlan(), everyone) is PER_KV
    assert get_engine("tensorrt-llm-0.14").decode_kv_groups == ()  # later releases keep their single pattern
    assert v010.to_dict()["decode_kv_groups"] == [8]


def test_an_uncovered_group_prices_the_masked_mha_bytes_in_both_step_paths():
    v010 = get_engine("tensorrt-llm-0.10")
    everyone = v010.with_(decode_kv_groups=())
    plan = ServePlan(quantization="fp8", kv_cache_dtype="fp8")
    decode = StepShape.decode(64, 2000.0)
    llama3 = get_model("llama-3-8b")  # 32 query heads over 8 KV heads
    slow = iteration_time(llama3, plan, PERF, decode, v010, H100)
    fast = iteration_time(llama3, plan, PERF, decode, everyone, H100)
    assert float(slow.attention_s) > float(fast.attention_s) and slow.layers_s == fast.layers_s
    assert StepTable(llama3, plan, PERF, v010, H100).dec_kv == pytest.approx(4 * kv_elems_per_token(llama3, 1))
    table = StepTable(llama3, plan, PERF, v010, H100)
    got = table.step_s(decode_seqs=64, decode_kv_tokens=float(decode.decode_kv_tokens))
    assert got == pytest.approx(float(slow.total_s), rel=1e-12)
    llama70 = get_model("llama-2-70b")  # a group of 8: XQA, as before
    plan4 = ServePlan(tp=4, quantization="fp8", kv_cache_dtype="fp8")
    assert iteration_time(llama70, plan4, PERF, decode, v010, H100).total_s == \
        iteration_time(llama70, plan4, PERF, decode, everyone, H100).total_s


@pytest.mark.parametrize("groups", [[0], ["8"], 8])
def test_bad_group_sizes_are_refused(groups):
    entry = dict(load_catalog("engines")["tensorrt-llm-0.10"], decode_kv_groups=groups)
    with pytest.raises(SpecError, match="decode_kv_groups"):
        profile_from_dict("bad", entry)


def test_trtllm_0_8_xqa_covers_a_group_of_8_only_and_only_when_switched_on():
    # 0.8.0's decoderXQARunner.h shouldUse (engines.yaml tensorrt-llm-0.8 decode_kv_groups): XQA for 8 query heads per
    # KV head; TRTLLM_ENABLE_XQA=1 (flag trtllm_enable_xqa) switches it on, else every group runs the masked MHA
    from capsim.analytic.serving_moe import decode_kv_reads
    from capsim.specs.engine_flags import apply_flags
    v08 = get_engine("tensorrt-llm-0.8")
    assert v08.decode_kv_groups == (8,)
    on = apply_flags(v08, {"trtllm_enable_xqa": "1"}, "fp8").engine
    assert on.decode_kv_groups == (8,)  # the flag switches the kernel on, not its coverage
    cases = {("llama-2-70b", 2): PER_KV, ("llama-2-70b", 4): PER_KV, ("llama-3-70b", 8): PER_KV,
             ("llama-3-8b", 1): PER_Q, ("mixtral-8x7b", 2): PER_Q}
    for (name, tp), want in cases.items():
        assert decode_kv_reads(get_model(name), ServePlan(tp=tp), on) is want, (name, tp)
        assert decode_kv_reads(get_model(name), ServePlan(tp=tp), v08) is PER_Q, (name, tp)  # off by default


def test_every_trtllm_profile_states_its_xqa_group_coverage_with_a_source():
    # 0.5/0.6 have no XQA (per query head at every group); 0.8 and 0.10 cover a group of 8; 0.11 onwards and the
    # PyTorch backend's JIT path every group (group x beam <= 32): each profile that can read per KV head says which
    from capsim.analytic.serving_moe import decode_kv_reads
    llama3 = get_model("llama-3-8b")  # a group of 4
    for name in ("tensorrt-llm-0.5", "tensorrt-llm-0.6"):
        assert decode_kv_reads(llama3, ServePlan(), get_engine(name)) is PER_Q, name
    for name, groups in (("tensorrt-llm-0.8", (8,)), ("tensorrt-llm-0.10", (8,)), ("tensorrt-llm-0.11", ()),
                         ("tensorrt-llm-0.14", ()), ("tensorrt-llm", ())):
        eng = get_engine(name)
        assert eng.decode_kv_groups == groups, name
        assert "decoderXQA" in eng.sources["decode_kv_groups"], name
    for name in ("tensorrt-llm-0.11", "tensorrt-llm-0.14", "tensorrt-llm"):
        assert decode_kv_reads(llama3, ServePlan(), get_engine(name)) is PER_KV, name
