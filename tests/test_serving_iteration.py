"""Iteration time of one serving step: the op-list pricing, the simulator's tables, engines and quantization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim import ServePlan, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.line_sums import reach
from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.step_table import (
    StepTable,
    envelope,
    max_lines,
    pieces_sum,
    steps_to_reach,
    sum_max_lines,
)
from capsim.specs.engine import get_engine

A100, H100 = get_accelerator("a100"), get_accelerator("h100")
PERF_A100, PERF_H100 = load_calibration("a100").perf(), load_calibration("h100").perf()

CASES = [("opt-13b", A100, PERF_A100, ServePlan(tp=1, dtype="fp16"), "vllm-v0"),
         ("opt-13b", A100, PERF_A100, ServePlan(tp=2, dtype="fp16"), "vllm-0.2"),
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


@pytest.mark.parametrize(("name", "acc", "perf"), [("llama-2-7b", A100, PERF_A100), ("deepseek-v2-lite", H100, PERF_H100),
                                                   ("gemma-2-9b", H100, PERF_H100)])
def test_step_times_are_python_floats(name, acc, perf):
    """The simulator adds step times to its clocks millions of times: a numpy scalar leaking from the model's
    dimensions (kernel_dims) or a table would make every clock a numpy scalar (several times slower)."""
    table = StepTable(get_model(name), ServePlan(), perf, "vllm", acc)
    pieces, total = table.decode_run(8, 8000.0, 50)
    values = [total, table.step_s(300, 1, 5e4, 300.0, 8, 8000.0, 9), table.step_s(0, 0, 0.0, 0.0, 8, 8000.0),
              *(x for piece in pieces for x in piece[2:])]
    assert all(type(v) is float for v in values), [type(v).__name__ for v in values]


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


def test_moe_decode_reads_only_the_experts_its_tokens_touch():
    """E (1 - (1 - k/E)^B) distinct experts for B tokens choosing top-k of E: Mixtral (8 experts, top 2) reads two
    experts' weights at batch 1, nearly all eight from a few dozen tokens on."""
    from capsim.analytic.ops import active_experts

    model = get_model("mixtral-8x7b")
    assert float(active_experts(model, 1)) == pytest.approx(2.0)
    assert float(active_experts(model, 4)) == pytest.approx(8 * (1 - 0.75**4))
    assert float(active_experts(model, 64)) == pytest.approx(8.0, rel=1e-6)
    times = [float(iteration_time(model, ServePlan(tp=2), PERF_H100, StepShape.decode(b, 1000), "vllm", H100)
                   .layers_s) for b in (1, 2, 64)]
    assert times[0] < times[1] < times[2] and times[0] < 0.5 * times[2]


def test_tp_tier_by_tp_alone_and_pp_sends_across_nodes():
    from capsim.analytic.serving import comm_tier, pp_sends

    model = get_model("llama-2-70b")  # 8-GPU nodes
    assert comm_tier(ServePlan(tp=8, pp=2), H100) == "intra" and comm_tier(ServePlan(tp=16), H100) == "inter"
    assert pp_sends(ServePlan(tp=8, pp=2), H100) == (0, 1)  # one stage per node
    assert pp_sends(ServePlan(tp=4, pp=4), H100) == (2, 1)  # two stages per node
    assert pp_sends(ServePlan(tp=2, pp=4), H100) == (3, 0)  # all in one node
    assert pp_sends(ServePlan(tp=16, pp=2), H100) == (0, 1)
    one = iteration_time(model, ServePlan(tp=8, pp=2), PERF_H100, StepShape.decode(32, 1000), "vllm", H100)
    flat = iteration_time(model, ServePlan(tp=8), PERF_H100, StepShape.decode(32, 1000), "vllm", H100)
    assert float(one.tp_comm_s) == pytest.approx(float(flat.tp_comm_s))  # the TP all-reduces stay in the node


def test_expert_parallel_and_attention_data_parallel():
    """Attention DP replicates what every token uses and gives each GPU every KV head of its own sequences; EP
    keeps the step's expert work; DP attention trades the attention all-reduce for the MoE token exchange."""
    from capsim.analytic.memory import serving_memory
    from capsim.analytic.params import param_counts
    from capsim.analytic.serving_moe import layer_comm_s
    from capsim.perf import Collective

    model = get_model("mixtral-8x7b")
    tp, dp = ServePlan(tp=4), ServePlan(tp=4, dp_attention=True)
    m_tp, m_dp = serving_memory(model, tp, H100), serving_memory(model, dp, H100)
    dense = param_counts(model).dense_per_layer * model.layers * 2.0
    assert m_dp.weights_bytes - m_tp.weights_bytes == pytest.approx(dense * 3 / 4)
    assert m_dp.kv_bytes_per_token == pytest.approx(m_tp.kv_bytes_per_token * 4)  # every KV head, own sequences
    n = 64.0
    a2a = PERF_H100.collective_s(Collective.ALL_TO_ALL, n / 4 * model.top_k * model.hidden * 2, 4, "intra")
    assert float(layer_comm_s(PERF_H100, model, ServePlan(tp=4, ep=4, dp_attention=True), n, "intra")) == \
        pytest.approx(2 * a2a)
    ar = PERF_H100.collective_s(Collective.ALL_REDUCE, n * model.hidden * 2, 4, "intra")
    assert float(layer_comm_s(PERF_H100, model, ServePlan(tp=4, ep=4), n, "intra")) == pytest.approx(2 * ar)
    shape = StepShape.decode(256, 1000)
    for plan in (ServePlan(tp=4, ep=4), dp, ServePlan(tp=4, ep=2, dp_attention=True)):
        table = StepTable(model, plan, PERF_H100, "vllm", H100)
        direct = iteration_time(model, plan, PERF_H100, shape, "vllm", H100)
        assert table.step_s(decode_seqs=256, decode_kv_tokens=256 * 1001.0) == pytest.approx(float(direct.total_s))
    mla = get_model("deepseek-v2-lite")  # MLA: with attention DP each GPU caches its own sequences' latents
    for plan in (ServePlan(tp=2, ep=2, dp_attention=True), ServePlan(tp=2, dp_attention=True)):
        table = StepTable(mla, plan, PERF_H100, "vllm", H100)
        for shape, step in ((StepShape.decode(64, 1000), dict(decode_seqs=64, decode_kv_tokens=64 * 1001.0)),
                            (StepShape.prefill(2, 1000), dict(prefill_tokens=2000, prefill_seqs=2,
                                                              prefill_pairs=1000 * 1001.0, prefill_kv_tokens=2000.0))):
            direct = iteration_time(mla, plan, PERF_H100, shape, "vllm", H100)
            assert table.step_s(**step) == pytest.approx(float(direct.total_s), rel=1e-12)
    for bad, field in ((dict(tp=4, ep=3), "plan.ep"), (dict(tp=2, ep=2), "plan.ep")):
        with pytest.raises(SpecError, match=field):
            ServePlan(**bad).check(get_model("llama-2-7b"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-4, 1e-1), st.floats(0.0, 1e-5)), min_size=1, max_size=3),
       st.integers(1, 5000), st.floats(0.0, 1.2))
def test_reach_is_steps_to_reach_and_pieces_sum_bit_for_bit(lines, k, share):
    """reach() (one pass, as the simulator cuts a decode run at an arrival) gives the same step and the same float
    seconds as steps_to_reach() then pieces_sum() over those steps."""
    pieces = envelope(tuple(lines), k)
    target = share * pieces_sum(pieces)
    m, seconds = reach(pieces, target)
    assert m == steps_to_reach(pieces, target)
    assert seconds == pieces_sum(pieces, m)  # exactly: the same sums in the same order
    assert 1 <= m <= k and (seconds >= target or m == k)


def test_envelope_survives_a_subnormal_slope_difference():
    """Two lines whose slopes differ by a subnormal cross far beyond any run (the quotient overflows a float):
    the envelope is the line that is higher at step 0, whole, as for any crossing past the range."""
    tiny = 5e-324
    for lines in (((1e-3, 0.0), (2e-3, tiny)), ((2e-3, 0.0), (1e-3, tiny)),
                  ((1e-3, 0.0), (2e-3, tiny), (3e-4, 1e-6))):
        pieces = envelope(lines, 4000)
        assert pieces[0][0] == 0 and pieces[-1][1] == 4000
        assert pieces_sum(pieces) == pytest.approx(sum(max(a + b * j for a, b in lines) for j in range(4000)))


def test_reach_survives_a_subnormal_slope():
    """Degenerate pieces: a zero intercept with a subnormal slope (the quadratic's root divides by the slope and
    overflows) or with none (the first step takes no time): reach() still gives a step in [1, n] whose summed
    time pieces_sum() agrees with, bit for bit."""
    for line in ((0.0, 5e-324), (0.0, 0.0), (1e-3, 5e-324)):
        pieces = envelope((line,), 3000)
        for share in (0.0, 0.3, 1.0, 1.2):
            target = share * pieces_sum(pieces)
            m, seconds = reach(pieces, target)
            assert 1 <= m <= 3000 and seconds == pieces_sum(pieces, m)
            assert seconds >= target or m == 3000
