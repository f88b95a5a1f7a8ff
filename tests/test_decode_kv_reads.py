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
