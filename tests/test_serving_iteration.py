"""Iteration time of one serving step: the op-list pricing, the simulator's tables, engines and quantization."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import ServePlan, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.step_table import (
    StepTable,
    envelope,
    max_lines,
    pieces_sum,
    steps_to_reach,
    sum_max_lines,
)
from capsim.specs.engine import engines, get_engine

A100, H100 = get_accelerator("a100"), get_accelerator("h100")
PERF_A100, PERF_H100 = load_calibration("a100").perf(), load_calibration("h100").perf()

CASES = [("opt-13b", A100, PERF_A100, ServePlan(tp=1, dtype="fp16"), "vllm-v0"),
         ("llama-2-70b", H100, PERF_H100, ServePlan(tp=8), "vllm"),
         ("llama-3-8b", H100, PERF_H100, ServePlan(quantization="fp8", kv_cache_dtype="fp8"), "tensorrt-llm"),
         ("llama-2-7b", A100, PERF_A100, ServePlan(tp=2, pp=2, quantization="int4"), "sglang"),
         ("llama-2-70b", H100, PERF_H100, ServePlan(tp=4, quantization="fp8", kv_cache_dtype="fp8"),
          "tensorrt-llm-0.5")]


@pytest.mark.parametrize(("name", "acc", "perf", "plan", "engine"), CASES)
def test_table_equals_op_list_pricing(name, acc, perf, plan, engine):
    model = get_model(name)
    table = StepTable(model, plan, perf, engine, acc)
    rng = np.random.default_rng(1)
    for _ in range(60):
        pt = int(rng.integers(0, 3000))
        ps = int(rng.integers(1, 4)) if pt else 0
        pairs = float(pt * rng.integers(1, 2000)) if pt else 0.0
        kvp = float(pt + rng.integers(0, 2000)) if pt else 0.0
        ds = int(rng.integers(0 if pt else 1, 300))
        dkv = float(ds * rng.integers(1, 3000))
        direct = iteration_time(model, plan, perf, StepShape(pt, ps, pairs, kvp, ds, dkv), engine, acc)
        assert table.step_s(pt, ps, pairs, kvp, ds, dkv) == pytest.approx(float(direct.total_s), rel=1e-12)


def test_iteration_time_is_vectorised():
    model, plan = get_model("llama-2-7b"), ServePlan()
    batch = np.array([1, 8, 64, 256])
    ctx = np.array([100, 1000, 2000, 4000])
    many = iteration_time(model, plan, PERF_A100, StepShape.decode(batch, ctx), "vllm", A100).total_s
    one = [float(iteration_time(model, plan, PERF_A100, StepShape.decode(b, c), "vllm", A100).total_s)
           for b, c in zip(batch, ctx, strict=True)]
    np.testing.assert_allclose(many, one, rtol=1e-12)
    assert np.all(np.diff(many) > 0)  # more sequences and context take longer


def test_decode_run_closed_form_equals_step_by_step_sum():
    model = get_model("llama-2-7b")
    for engine, graphs in (("vllm", True), ("vllm-v0", False)):
        table = StepTable(model, ServePlan(), PERF_A100, get_engine(engine, cuda_graphs=graphs), A100)
        b, s0, k = 37, 37 * 700, 333
        steps = [table.step_s(decode_seqs=b, decode_kv_tokens=float(s0 + b * (j + 1))) for j in range(k)]
        lines = table.decode_lines(b, s0)
        assert len(lines) == (2 if graphs else 3)
        assert [max_lines(lines, j) for j in range(k)] == pytest.approx(steps, rel=1e-12)
        assert sum_max_lines(lines, 0, k) == pytest.approx(sum(steps), rel=1e-12)
        assert sum_max_lines(lines, 10, 50) == pytest.approx(sum(steps[10:50]), rel=1e-12)
        pieces = envelope(lines, k)
        cum = np.cumsum(steps)
        eps = 1e-9  # targets away from step ends (an arrival exactly at a step end has probability zero)
        for target in (1e-9, steps[0] * (1 - eps), steps[0] * (1 + eps), cum[40] * (1 + eps), cum[-1] * 0.77,
                       cum[-1] * 2):
            want = min(int(np.searchsorted(cum, target)) + 1, k)
            assert steps_to_reach(pieces, target) == want
            assert pieces_sum(pieces, want) >= min(target, cum[-1]) * (1 - 1e-12)


def test_envelope_of_crossing_lines():
    lines = ((1.0, 0.0), (0.0, 0.25))  # constant 1, then the rising line wins from j = 4 on
    assert envelope(lines, 10) == [(0, 4, 1.0, 0.0), (4, 10, 0.0, 0.25)]
    assert sum_max_lines(lines, 0, 10) == pytest.approx(sum(max(1.0, 0.25 * j) for j in range(10)))


def test_weight_quantization_speeds_up_decode_and_fp8_needs_a_rate():
    model = get_model("llama-2-7b")
    shape = StepShape.decode(1, 500)

    def layers(q: str) -> float:
        return float(iteration_time(model, ServePlan(quantization=q), PERF_H100, shape, "vllm", H100).layers_s)

    # Batch-1 decode reads the weights: fewer bytes, less time (int4 reaches the GEMM compute floor).
    assert layers("int4") <= layers("int8") < 0.7 * layers("none")
    kv8 = iteration_time(model, ServePlan(kv_cache_dtype="fp8"), PERF_A100, StepShape.decode(64, 4000), "vllm", A100)
    kv16 = iteration_time(model, ServePlan(), PERF_A100, StepShape.decode(64, 4000), "vllm", A100)
    assert float(kv8.attention_s) < float(kv16.attention_s)
    with pytest.raises(SpecError, match="precision"):  # the A100 has no fp8 tensor cores
        iteration_time(model, ServePlan(quantization="fp8"), PERF_A100, StepShape.prefill(1, 512), "vllm", A100)


def test_tp_all_reduces_pp_sends_and_logits():
    model = get_model("llama-2-70b")
    one = iteration_time(model, ServePlan(tp=1), PERF_H100, StepShape.prefill(1, 512), "vllm", H100)
    eight = iteration_time(model, ServePlan(tp=8), PERF_H100, StepShape.prefill(1, 512), "vllm", H100)
    assert float(one.tp_comm_s) == 0 and float(eight.tp_comm_s) > 0
    assert float(eight.layers_s) < float(one.layers_s) / 5  # GEMMs split eight ways
    pp = iteration_time(model, ServePlan(tp=4, pp=2), PERF_H100, StepShape.prefill(1, 512), "vllm", H100)
    assert float(pp.pp_comm_s) > 0
    chunk = StepShape(512, 1, 512 * 513 / 2, 512, logits=0)  # a prefill chunk that emits no token
    full = StepShape(512, 1, 512 * 513 / 2, 512)
    t_chunk = iteration_time(model, ServePlan(tp=8), PERF_H100, chunk, "vllm", H100)
    t_full = iteration_time(model, ServePlan(tp=8), PERF_H100, full, "vllm", H100)
    assert float(t_chunk.head_s) < float(t_full.head_s)


def test_engine_overheads_and_cuda_graphs():
    model, plan = get_model("gpt2-355m"), ServePlan()  # small kernels: dispatch outruns the GPU
    shape = StepShape.decode(4, 300)
    graphs = iteration_time(model, plan, PERF_H100, shape, get_engine("vllm-v0"), H100)
    eager = iteration_time(model, plan, PERF_H100, shape, get_engine("vllm-v0", cuda_graphs=False), H100)
    assert float(graphs.cpu_dispatch_s) == 0 and float(eager.cpu_dispatch_s) > 0
    assert float(eager.total_s) > float(graphs.total_s)  # small decode steps are bound by kernel dispatch
    v0 = float(graphs.overhead_s)
    assert v0 == pytest.approx(4.0e-3 + 4 * 1.0e-4)  # engines.yaml vllm-v0: 4 ms + 0.1 ms per sequence
    assert float(iteration_time(model, plan, PERF_H100, shape, "sglang", H100).overhead_s) == 0.0


def test_decode_kv_read_per_query_head():
    """A kernel with one block per query head streams a GQA group's cache once per query head: the decode
    attention's KV bytes grow by heads / kv_heads (per rank); multi-head attention is unchanged."""
    shared, per_head = get_engine("tensorrt-llm"), get_engine("tensorrt-llm-0.5")
    assert per_head.decode_kv_per_query_head and not shared.decode_kv_per_query_head
    for name, tp, group in (("llama-2-70b", 4, 8), ("llama-2-70b", 16, 4), ("llama-2-7b", 1, 1)):
        model, plan = get_model(name), ServePlan(tp=tp)
        kv_tokens = 64 * 3000.0
        times = {}
        for eng in (shared, per_head):
            table = StepTable(model, plan, PERF_H100, eng, H100)
            icpt, slope = table.dec_mem
            times[eng.name] = table.decode_attention_s(64, kv_tokens) - table.attn_launch_s - icpt
        q_bytes = 2.0 * 64 * model.heads / tp * model.head_dim * table.act_bytes  # Q read, output written
        kv_bytes = 2.0 * kv_tokens * max(model.kv_heads / tp, 1) * model.head_dim * table.kv_bytes  # K and V
        assert times["tensorrt-llm"] == pytest.approx(slope * (q_bytes + kv_bytes), rel=1e-12)
        assert times["tensorrt-llm-0.5"] == pytest.approx(slope * (q_bytes + group * kv_bytes), rel=1e-12)


def test_every_engine_value_has_a_source():
    for name, eng in engines().items():
        assert eng.sources, name
        for key in ("step_overhead_s", "scheduler", "max_num_seqs", "cuda_graphs"):
            assert any(k.startswith(key.split("_s")[0]) or k == key for k in eng.sources), (name, key)
    with pytest.raises(SpecError, match="engine"):
        get_engine("vllm-v9")
    assert get_engine("TRT-LLM").name == "tensorrt-llm"
    seqs, tokens = get_engine("vllm").limits(get_model("llama-2-7b"), H100)
    assert (seqs, tokens) == (1024, 8192)  # vLLM's defaults on >= 70 GiB GPUs that are not A100s
    assert get_engine("vllm").limits(get_model("llama-2-7b"), A100) == (256, 2048)
