"""Engine profiles by release: every value sourced, the Vidur host-cost fit reproducible, release lookup, flags,
CUDA-graph padding, sampling kernels, and how each release's decode kernel reads the KV cache."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from capsim import ServePlan, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.serving import Sampling, StepShape, iteration_time
from capsim.analytic.step_table import StepTable
from capsim.specs.catalog import load_catalog
from capsim.specs.engine import (
    DEFAULTS,
    engine_release,
    engines,
    get_engine,
    parse_version,
    profile_from_dict,
)
from capsim.specs.engine_flags import apply_flags, parse_flags

A100, H100 = get_accelerator("a100"), get_accelerator("h100")
PERF_A100, PERF_H100 = load_calibration("a100").perf(), load_calibration("h100").perf()
UNSOURCED = {"engine", "description", "sources", "cuda_graph_sizes_padded"}


def test_every_profile_states_its_release_and_cites_every_value():
    for name, entry in load_catalog("engines").items():
        sources = entry["sources"]
        assert entry["release"] and entry["covers"][0] and "release" in sources and "covers" in sources, name
        assert parse_version(entry["covers"][0]) <= parse_version(entry["release"]), name
        for key in entry:
            if key in UNSOURCED or key in ("release", "covers"):
                continue
            cited = key in sources or any(key.startswith(k) for k in sources) or (
                key.startswith("cuda_graph_") and not entry.get("cuda_graphs") and "cuda_graphs" in sources)
            assert cited, (name, key)
        missing = [k for k in ("max_num_batched_tokens", "watermark", "kv_memory_of", "memory_fraction")
                   if k not in entry]
        assert not missing or "defaults" in sources, (name, missing)  # a default is named where it is used


def test_vllm_0_2_host_costs_are_the_vidur_fit():
    """vllm-0.2's cpu and worker_comm values are the least-squares lines of Vidur's 2024-01 A100 profile (shipped
    under capsim/data/engine-profiles) on batch size: TP1 rows for the phases, TP > 1 rows for Ray at TP > 1. Ray at
    TP1 is Vidur's TP1 fit only from 0.2.7 (vllm-0.2.6 and later: the engine's process runs the driver worker); 0.2.2-
    0.2.6 call a Ray worker actor every step, priced from Ray 2.8.0's microbenchmark of a threaded actor call."""
    path = resources.files("capsim.data").joinpath("engine-profiles", "vidur-cpu-overheads-a100-2024-01.csv")
    df = pd.read_csv(str(path), index_col=0)
    df.columns = [c.lower() for c in df.columns]

    def fit(rows: pd.DataFrame, col: str) -> np.ndarray:
        a = np.c_[np.ones(len(rows)), rows["batch_size"].to_numpy(float)]
        return np.linalg.lstsq(a, rows[col].to_numpy(float), rcond=None)[0] * 1e-3  # ms -> s

    eng = get_engine("vllm-0.2")
    tp1, tpn = df[df.tensor_parallel_degree == 1], df[df.tensor_parallel_degree > 1]
    for phase, col in (("schedule", "schedule_mean"), ("prepare", "prepare_inputs_e2e_mean"),
                       ("sampler", "sampler_e2e_mean"), ("outputs", "process_model_outputs_mean")):
        np.testing.assert_allclose(eng.cpu[phase][:2], fit(tp1, col), rtol=1e-4, atol=1e-9)
    # vllm-0.2 at TP > 1: on 1, batch, TP and TP x batch (the driver calls every worker, _run_workers_in_batch)
    b, tp = tpn["batch_size"].to_numpy(float), tpn["tensor_parallel_degree"].to_numpy(float)
    four = np.linalg.lstsq(np.c_[np.ones(len(b)), b, tp, tp * b], tpn["ray_comm_time_median"].to_numpy(float),
                           rcond=None)[0] * 1e-3
    np.testing.assert_allclose(eng.worker_comm["ray"]["tp2+"][:2], four[:2], rtol=1e-4)
    np.testing.assert_allclose(eng.worker_comm["ray"]["per_worker"][:2], four[2:], rtol=1e-4)
    # ray-project/ray release/release_logs/2.8.0/microbenchmark.json: 1_1_actor_calls_sync 2303.16 calls/s
    assert eng.worker_comm["ray"]["tp1"][0] == pytest.approx(1 / 2303.1605342983503, rel=1e-3)
    for later in ("vllm-0.2.6", "vllm-0.4", "vllm-0.4.3"):  # their code not re-read: the line on batch alone
        comm = get_engine(later).worker_comm["ray"]
        np.testing.assert_allclose(comm["tp1"][:2], fit(tp1, "ray_comm_time_median"), rtol=1e-4)
        np.testing.assert_allclose(comm["tp2+"][:2], fit(tpn, "ray_comm_time_median"), rtol=1e-4)
        assert "per_worker" not in comm


def test_vllm_0_2_driver_pays_a_ray_call_per_worker():
    """vLLM 0.2.3's driver submits one Ray call per worker and compares every worker's output (llm_engine.py
    _run_workers_in_batch, _run_workers): its host time per step grows with TP, by the per-worker term each."""
    eng = get_engine("vllm-0.2")
    per = eng.worker_comm["ray"]["per_worker"]
    for seqs in (1.0, 64.0):
        t = {tp: eng.host_cost(tp).exposed_s(seqs) for tp in (2, 4, 8)}
        assert t[8] - t[2] == pytest.approx(6 * (per[0] + per[1] * seqs))
        assert t[4] - t[2] == pytest.approx(2 * (per[0] + per[1] * seqs))
    assert eng.host_cost(1).exposed == get_engine("vllm-0.2").with_(worker_comm={}).host_cost(1).exposed  # TP1: local


def test_a_fitted_profile_keeps_the_per_worker_calls():
    """Fitting at TP2 replaces the host phases but keeps the sourced per-worker calls, so the fitted profile's host
    time still grows with TP (and the fit's device time holds them, so they are not counted twice)."""
    from capsim.calibration.engine_cal import fitted_profile, without_host
    from capsim.calibration.engine_fit import EngineFit

    base = get_engine("vllm-0.2")
    per = base.worker_comm["ray"]["per_worker"]
    assert without_host(base).worker_comm == {"ray": {"per_worker": per}}
    terms = {"step_s": 1e-3, "sequence_s": 1e-4, "prefill_token_s": 0.0, "ttft_offset_s": 0.0}
    fit = EngineFit(terms, tuple(terms), (), 1.0, {"steps": 3}, {})
    prof = fitted_profile(base, fit, "f", {})
    assert prof.host_cost(8).exposed_s(16.0) - prof.host_cost(2).exposed_s(16.0) == pytest.approx(
        6 * (per[0] + 16 * per[1]))


def test_an_unknown_worker_comm_tier_is_refused():
    entry = {**load_catalog("engines")["vllm-0.2"], "worker_comm": {"ray": {"tp1": [1e-3, 0], "tp4": [1e-3, 0]}}}
    with pytest.raises(SpecError, match="unknown tier tp4"):
        profile_from_dict("x", entry)


def test_release_lookup():
    assert engine_release("vllm", "0.2.3").name == "vllm-0.2"
    assert engine_release("vllm", "v0.2.4").name == "vllm-0.2"
    assert engine_release("vllm", "0.5.3").name == "vllm-v0"
    assert engine_release("vllm", "0.11.0").name == "vllm"
    assert engine_release("trtllm", "1.0.0rc4").name == "tensorrt-llm"
    assert engine_release("TensorRT-LLM", "0.5.0").name == "tensorrt-llm-0.5"
    assert engine_release("nim", "1.8.0").name == "nim-1.8"
    assert engine_release("sglang", "0.3.6.post3").name == "sglang" == engine_release("sglang", "0.4.3").name
    for engine, version, field in (("vllm", "0.2.1", "engine_version"), ("vllm", "0.1.7", "engine_version"),
                                   ("tensorrt-llm", "0.7.1", "engine_version"), ("vllm", "", "engine_version"),
                                   ("sglang", "0.3.3", "engine_version"),
                                   ("tgi", "2.0", "engine")):
        with pytest.raises(SpecError) as err:
            engine_release(engine, version)
        assert err.value.field == field and ("capsim knows" in str(err.value) or field == "engine")


def test_host_cost_by_transport_and_tp():
    eng = get_engine("vllm-0.2")
    local, ray = eng.host_cost(1), eng.with_(workers=eng.workers_tp).host_cost(1)
    phases = sum(v[0] for v in eng.cpu.values())
    assert local.exposed[0] == pytest.approx(phases)  # TP1 runs the worker in-process: no Ray
    assert ray.exposed[0] == pytest.approx(phases + eng.worker_comm["ray"]["tp1"][0])
    assert eng.host_cost(2).exposed[0] == pytest.approx(phases + eng.worker_comm["ray"]["tp2+"][0]
                                                        + 2 * eng.worker_comm["ray"]["per_worker"][0])
    for name in ("sglang", "tensorrt-llm"):  # overlap schedulers: nothing exposed
        assert get_engine(name).host_cost(4).exposed == (0.0, 0.0, 0.0)


def test_cuda_graph_padding_and_eager_sizes():
    v1, trt = get_engine("vllm"), get_engine("tensorrt-llm")
    assert [v1.graph_batch(b) for b in (1, 3, 5, 9, 512, 513)] == [1, 4, 8, 16, 512, 0]
    assert [trt.graph_batch(b) for b in (5, 31, 33, 64, 100, 129)] == [5, 31, 0, 64, 0, 0]  # no padding: eager
    padded = apply_flags(trt, {"cuda_graph_padding": "1"}, "fp8").engine
    assert [padded.graph_batch(b) for b in (3, 5, 33, 100, 128, 129)] == [4, 8, 40, 104, 128, 0]
    assert get_engine("vllm-0.2").graph_batch(4) == 0  # 0.2.3 has no CUDA graphs
    # A padded decode step runs its token kernels at the captured size: slower than the unpadded eager-free cost.
    model, plan = get_model("llama-3-8b"), ServePlan()
    t9 = float(iteration_time(model, plan, PERF_H100, StepShape.decode(9, 500), v1, H100).layers_s)
    t16 = float(iteration_time(model, plan, PERF_H100, StepShape.decode(16, 500), v1, H100).layers_s)
    assert t9 == pytest.approx(t16, rel=1e-12)


def test_sampling_parameters_price_the_sort_and_penalties():
    model, plan = get_model("llama-3-8b"), ServePlan()
    shape = StepShape.decode(256, 1000)
    names = ("greedy", "random", "random+penalties", "top-p", "top-p+penalties")
    times = {s: float(iteration_time(model, plan, PERF_H100, shape, "vllm", H100, Sampling.parse(s)).head_s)
             for s in names}
    greedy, rand, pen, topp, both = times.values()
    assert greedy < rand < pen < topp < both
    # The sort over 256 rows of a 128k vocabulary moves 128 bytes per logit: ~4 GB, about 1.5 ms at H100 bandwidth.
    assert 0.5e-3 < topp - rand < 5e-3
    top_p = Sampling.parse("top-p")
    table = StepTable(model, plan, PERF_H100, "vllm", H100, sampling=top_p)
    direct = iteration_time(model, plan, PERF_H100, shape, "vllm", H100, top_p)
    assert table.step_s(decode_seqs=256, decode_kv_tokens=256 * 1001.0) == pytest.approx(float(direct.total_s))


def test_each_engine_reads_the_kv_cache_as_its_decode_kernel_does():
    """The decode attention kernel reads the queries plus each KV head's cache once, except where the release's
    kernel reads it per query head (TensorRT-LLM 0.5's masked multi-head attention and vLLM 0.2.2-0.4.2's
    PagedAttention, one thread block per query head; 0.4.3 decodes with FlashAttention: Llama-2-70B at TP4 has 16 query heads over 2 KV heads per GPU, so 8 times the
    cache bytes)."""
    from capsim.analytic.attention import kv_elems_per_token

    model, plan = get_model("llama-2-70b"), ServePlan(tp=4)
    per_query = {n for n, e in engines().items() if e.decode_kv_reads == "per_query_head"}
    assert per_query == {"tensorrt-llm-0.5", "tensorrt-llm-0.6", "tensorrt-llm-0.8", "vllm-0.2", "vllm-0.2.6",
                         "vllm-0.4", "vllm-0.4.1", "vllm-0.4.2"}
    for eng in (e for e in engines().values() if e.device_type == "gpu"):  # a CPU build is refused on a GPU
        table = StepTable(model, plan, PERF_H100, eng, H100)
        reads = 8 if eng.name in per_query else 1
        assert table.dec_kv == pytest.approx(reads * kv_elems_per_token(model, 4) * table.kv_bytes), eng.name
        icpt, slope = table.dec_mem
        t = table.decode_attention_s(64, 64 * 3000.0) - table.attn_launch_s - icpt
        assert t == pytest.approx(slope * (64 * table.dec_q + 64 * 3000.0 * table.dec_kv), rel=1e-12), eng.name


def test_flags_parse_and_apply():
    flags = parse_flags("workers=ray; max_num_seqs=8;gpu_memory_utilization=0.95;swap_space_gb=16;dtype=fp16")
    out = apply_flags(get_engine("vllm-0.2"), flags, "fp16")
    assert out.plan == {"max_batch": 8, "gpu_memory_utilization": 0.95}
    assert out.engine.workers.value == "ray" and len(out.notes) == 1 and "recomputation" in out.notes[0]
    assert parse_flags("") == {} and parse_flags(" ; ") == {}
    for text in ("a", "a=", "=1", "a=1;a=2"):
        with pytest.raises(SpecError, match="flags"):
            parse_flags(text)
    assert apply_flags(get_engine("vllm"), {"async_scheduling": "1"}, "bf16").engine.host_cost().exposed == (0, 0, 0)
    assert DEFAULTS["memory_fraction"] == 0.9


def test_an_engine_gemm_path_the_calibration_did_not_time_is_an_error():
    """vLLM's CPU backend runs its linears on oneDNN-prepacked weights (engines.yaml gemm_path); a calibration that
    never timed that path cannot price them, and says how to measure it, instead of pricing torch's matmul."""
    model, plan = get_model("llama-2-7b"), ServePlan(tp=1)
    with pytest.raises(SpecError, match="no bf16 GEMM timings on the onednn_packed path.*--ops gemm_packed"):
        StepTable(model, plan, PERF_H100, get_engine("vllm-cpu"), H100).step_s(decode_seqs=4,
                                                                               decode_kv_tokens=4 * 100.0)


def test_vllm_0_6_to_0_7_runs_v0_with_output_processing_overlapped():
    """vLLM 0.6.0-0.7.x (engines.yaml vllm-v0.6, read in the 0.6.0, 0.6.6.post1 and 0.7.3 wheels): the V0 engine
    with the asynchronous output processor (vllm-project/vllm#7049): the per-sequence output processing hides
    behind the next forward pass while scheduling and input preparation stay exposed; prefill-priority batching,
    no prefix caching, padded CUDA graphs up to 256, the worker in-process at TP1 and multiprocessing at TP > 1."""
    for version, name in (("0.6.0", "vllm-v0.6"), ("0.6.3.post1", "vllm-v0.6"), ("0.6.4.post1", "vllm-v0.6"),
                          ("0.6.5", "vllm-v0.6.5"), ("0.6.6.post1", "vllm-v0.6.5"), ("v0.7.3", "vllm-v0.6.5"),
                          ("0.5.4", "vllm-v0"), ("0.8.0", "vllm-v1-0.8")):
        assert engine_release("vllm", version).name == name, version
    # 0.6.5 changed only the chunked-prefill token budget (test below).
    differ = {k for k, v in get_engine("vllm-v0.6").to_dict().items() if get_engine("vllm-v0.6.5").to_dict()[k] != v}
    assert differ == {"name", "release", "covers", "description", "chunked_max_num_batched_tokens", "sources"}
    eng, v0 = get_engine("vllm-v0.6"), get_engine("vllm-v0")
    assert eng.scheduler.value == "vllm" and not eng.prefix_caching and eng.watermark == 0.01
    assert eng.host_cost(1).exposed == pytest.approx((4.0e-3, 0.0, 0.0))
    assert eng.host_cost(1).overlapped == pytest.approx((0.0, 1.0e-4, 0.0))
    # 0.5.x processed the outputs on the critical path: the same terms, all exposed.
    assert v0.host_cost(1).exposed == pytest.approx((4.0e-3, 1.0e-4, 0.0)) and v0.host_cost(1).overlapped == (0, 0, 0)
    assert (eng.workers.value, eng.workers_tp.value) == ("local", "mp")
    assert eng.cuda_graph_sizes == (1, 2, 4, *range(8, 257, 8)) and eng.graph_batch(9) == 16
    model = get_model("llama-3-8b")
    assert eng.limits(model, H100) == (256, max(model.max_seq, 2048)) == eng.limits(model, A100)
    # A decode-heavy step costs less with the outputs overlapped than 0.5.x's exposed processing.
    plan, shape = ServePlan(), StepShape.decode(64, 500)
    t06 = float(iteration_time(model, plan, PERF_H100, shape, eng, H100).total_s)
    t05 = float(iteration_time(model, plan, PERF_H100, shape, v0, H100).total_s)
    assert t05 - t06 == pytest.approx(64 * 1.0e-4, rel=1e-6)
    # --enforce-eager turns the asynchronous output processor off (config.verify_async_output_proc): all exposed.
    for eager in (apply_flags(eng, {"cuda_graphs": "0"}, "bf16").engine, get_engine("vllm-v0.6", cuda_graphs=False)):
        assert eager.host_cost(1).exposed == pytest.approx((4.0e-3, 1.0e-4, 0.0)) and not eager.cuda_graphs
    assert get_engine("sglang", cuda_graphs=False).overlapped == ("all",)  # its overlap does not need graphs


@pytest.mark.parametrize(("version", "name", "a100", "h100", "l40s", "b200"), [
    ("0.8.0", "vllm-v1-0.8", (1024, 2048), (1024, 8192), (1024, 2048), (1024, 2048)),
    ("0.8.3", "vllm-v1-0.8", (1024, 2048), (1024, 8192), (1024, 2048), (1024, 2048)),
    ("0.8.4", "vllm-v1-0.8.4", (256, 2048), (1024, 8192), (256, 2048), (256, 2048)),
    ("0.8.5.post1", "vllm-v1-0.8.5", (1024, 8192), (1024, 8192), (256, 2048), (1024, 8192)),
    ("0.9.0", "vllm", (256, 2048), (1024, 8192), (256, 2048), (1024, 8192)),
])
def test_vllm_v1_batching_defaults_by_release(version, name, a100, h100, l40s, b200):
    """V1 is the default from 0.8.0; its batching defaults (arg_utils._set_default_args_v1 of each wheel) changed
    twice within 0.8.x: 1024 sequences everywhere and 8192 tokens on H100/H200 by name (0.8.0-0.8.3), 256/2048
    with 1024/8192 on H100/H200 (0.8.4), 1024/8192 on any GPU with >= 70 GiB (0.8.5), then A100s excluded
    (0.9.0+). The other V1 facts are the `vllm` profile's."""
    eng, model = engine_release("vllm", version), get_model("llama-3-8b")
    assert eng.name == name
    got = [eng.limits(model, get_accelerator(a)) for a in ("a100", "h100", "l40s", "b200")]
    assert got == [a100, h100, l40s, b200]
    v1 = get_engine("vllm")
    for key in ("scheduler", "watermark", "kv_memory_of", "memory_fraction", "reserved_bytes", "cpu", "overlapped",
                "workers", "cuda_graph_sizes", "cuda_graph_padding", "prefix_caching", "block_size"):
        assert getattr(eng, key) == getattr(v1, key), (name, key)


def test_an_unknown_large_gpu_rule_is_refused():
    from capsim.specs.engine import profile_from_dict

    entry = dict(load_catalog("engines")["vllm-v1-0.8"], large_gpu_when="big")
    with pytest.raises(SpecError, match="large_gpu_when"):
        profile_from_dict("x", entry)


def test_tensorrt_llm_0_11_to_0_21_runs_trtllm_build_engines_under_the_executor():
    """TensorRT-LLM 0.11-0.21 (release notes of each release): TensorRT engines under the C++ executor with
    in-flight batching, trtllm-build's defaults (max_num_tokens 8192 from 0.11, max_batch_size 256 from 0.11 and
    2048 from 0.14, 64-token blocks), KV cache in 0.9 of the free memory, no CUDA graphs, no KV reuse unless the
    engine is built for it, no host time priced; 1.0 switched to the PyTorch backend."""
    for version, name in (("0.11.0", "tensorrt-llm-0.11"), ("0.13.0", "tensorrt-llm-0.11"),
                          ("0.14.0", "tensorrt-llm-0.14"), ("0.17.0.post1", "tensorrt-llm-0.14"),
                          ("0.21.0", "tensorrt-llm-0.14"), ("1.0.0rc4", "tensorrt-llm")):
        assert engine_release("TensorRT-LLM", version).name == name, version
    for version in ("0.7.0", "0.7.1"):  # 0.7.1 changed the GQA decode kernels; no performance page of 0.7 read
        with pytest.raises(SpecError, match="capsim knows"):
            engine_release("trtllm", version)
    model = get_model("llama-3-8b")
    old, new = get_engine("tensorrt-llm-0.11"), get_engine("tensorrt-llm-0.14")
    assert old.limits(model, H100) == (256, 8192) and new.limits(model, A100) == (2048, 8192)
    for eng in (old, new):
        assert (eng.scheduler.value, eng.kv_memory_of, eng.memory_fraction, eng.block_size) == ("sarathi", "free",
                                                                                               0.9, 64)
        assert not eng.cuda_graphs and not eng.prefix_caching and eng.graph_batch(8) == 0
        assert eng.host_cost(4) == eng.host_cost(1) and eng.host_cost(1).exposed == (0.0, 0.0, 0.0)
        assert eng.backend == "tensorrt" and eng.workers.value == "mp"


def test_tensorrt_llm_0_6_0_8_and_0_10_profiles_follow_their_releases():
    """0.6.x (performance.md 'updated for v0.6.1') and 0.8-0.9 (performance.md of 0.8.0 and 0.9.0): gptSession
    static batches, masked multi-head decode per query head (0.8-0.9: XQA 'not enabled by default', the flag
    trtllm_enable_xqa=1 turns it on); 0.10.x (release notes 0.10.0, perf-overview.md of 0.10): in-flight batching,
    trtllm-build's batch-1 engine (256/8192 only from 0.11), 64-token blocks, KV cache in 0.9 of the free memory
    reserved to completion, no CUDA graphs or KV reuse. 0.7 stays refused."""
    for version, name in (("0.6.0", "tensorrt-llm-0.6"), ("v0.6.1", "tensorrt-llm-0.6"),
                          ("0.8.0", "tensorrt-llm-0.8"), ("0.9.0", "tensorrt-llm-0.8"),
                          ("0.10.0", "tensorrt-llm-0.10"), ("0.10.1", "tensorrt-llm-0.10"),
                          ("0.5.0", "tensorrt-llm-0.5"), ("0.11.0", "tensorrt-llm-0.11")):
        assert engine_release("TensorRT-LLM", version).name == name, version
    for version in ("0.4.0", "0.7.0", "0.7.1"):
        with pytest.raises(SpecError, match="no profile for"):
            engine_release("tensorrt-llm", version)
    model = get_model("llama-2-70b")
    v06, v08, v010 = get_engine("tensorrt-llm-0.6"), get_engine("tensorrt-llm-0.8"), get_engine("tensorrt-llm-0.10")
    for eng in (v06, v08):
        assert eng.scheduler.value == "static" and eng.decode_kv_reads == "per_query_head"
        assert eng.backend == "tensorrt" and eng.workers.value == "mp"
        assert not eng.cuda_graphs and not eng.prefix_caching and eng.host_cost(8).exposed == (0.0, 0.0, 0.0)
    assert apply_flags(v08, {"trtllm_enable_xqa": "1"}, "fp8").engine.decode_kv_reads == "per_kv_head"
    assert apply_flags(v08, {"trtllm_enable_xqa": "0"}, "fp8").engine.decode_kv_reads == "per_query_head"
    with pytest.raises(SpecError, match="trtllm_enable_xqa"):
        apply_flags(get_engine("vllm-0.2"), {"trtllm_enable_xqa": "1"}, "fp16")
    assert v010.scheduler.value == "sarathi" and v010.limits(model, H100) == (1, 1024) == v010.limits(model, A100)
    assert (v010.block_size, v010.kv_memory_of, v010.memory_fraction, v010.kv_reservation) == \
        (64, "free", 0.9, "whole_sequence")
    assert v010.decode_kv_reads == "per_kv_head" and not v010.cuda_graphs and not v010.prefix_caching
    flagged = apply_flags(v010, {"max_batch_size": "2048", "max_num_tokens": "2048",
                                 "capacity_scheduler_policy": "max_utilization"}, "fp8")
    assert flagged.engine.kv_reservation == "per_step"
    assert flagged.plan["max_batch"] == 2048 and flagged.plan["max_batched_tokens"] == 2048


def test_a_backend_flag_must_name_the_release_default_runtime():
    assert apply_flags(get_engine("tensorrt-llm-0.14"), {"backend": "tensorrt"}, "fp8").engine.name == \
        "tensorrt-llm-0.14"
    assert apply_flags(get_engine("tensorrt-llm"), {"backend": "pytorch"}, "fp8").engine.name == "tensorrt-llm"
    for name, backend in (("tensorrt-llm-0.14", "pytorch"), ("tensorrt-llm", "tensorrt"),
                          ("tensorrt-llm-0.5", "tensorrt")):
        with pytest.raises(SpecError, match="backend"):
            apply_flags(get_engine(name), {"backend": backend}, "fp8")


@pytest.mark.parametrize("engine", ["vllm-0.2.6", "vllm-0.4", "vllm-0.4.3", "vllm-v0.6", "vllm-v0.6.5", "vllm-v1-0.8",
                                    "vllm-v1-0.8.4", "vllm-v1-0.8.5", "tensorrt-llm-0.11", "tensorrt-llm-0.14",
                                    "tensorrt-llm-0.10", "tensorrt-llm-0.8", "tensorrt-llm-0.6", "sglang-0.3.4"])
def test_capsim_serve_runs_on_the_release_profile(engine):
    import json

    from typer.testing import CliRunner

    from capsim.cli import app

    out = CliRunner().invoke(app, ["serve", "-m", "llama-3-8b", "-a", "h100", "-e", engine, "--rate", "5",
                                   "--prompt-tokens", "200", "--output-tokens", "20", "-n", "20", "--json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["completed"] == 20 and res["tpot_mean_s"] > 0
    assert res["plan"]["max_batch"] == get_engine(engine).limits(get_model("llama-3-8b"), H100)[0]


@pytest.mark.parametrize(("version", "budget"), [("0.5.3", 512), ("0.6.0", 512), ("0.6.4", 512), ("0.6.5", 2048),
                                                 ("0.7.3", 2048)])
def test_vllm_v0_turns_chunked_prefill_on_for_long_contexts(version, budget):
    """vLLM V0 (0.5-0.7, arg_utils of each wheel) turns chunked prefill on by default when max_model_len > 32768
    and the model slides no window, with a 512-token budget up to 0.6.4 and 2048 from 0.6.5 (SchedulerConfig); a
    stated max_model_len or chunked_prefill flag replaces the model's context or the rule."""
    eng = engine_release("vllm", version)
    long, short, window = get_model("qwen3-8b"), get_model("llama-3-8b"), get_model("mistral-7b")
    assert long.max_seq > 32768 and long.sliding_window is None and window.max_seq <= 32768
    assert eng.for_model(long).scheduler.value == "sarathi" and eng.limits(long, H100) == (256, budget)
    assert eng.for_model(short).scheduler.value == "vllm" and eng.limits(short, H100) == (256, 8192)
    assert eng.limits(window, H100) == (256, 32768)
    served = apply_flags(eng, {"max_model_len": "16384"}, "bf16")
    assert served.engine.for_model(long).scheduler.value == "vllm" and served.engine.limits(long, H100) == (256, 16384)
    assert "max_model_len=16384" in served.notes[0]
    off = apply_flags(eng, {"chunked_prefill": "0"}, "bf16").engine
    assert off.for_model(long).scheduler.value == "vllm" and off.limits(long, H100) == (256, long.max_seq)
    on = apply_flags(eng, {"chunked_prefill": "1"}, "bf16").engine
    assert on.for_model(short).scheduler.value == "sarathi" and on.limits(short, H100) == (256, budget)


def test_the_simulator_runs_the_release_set_up_for_the_model():
    """A long-context model on vLLM 0.6.5 is served with chunked prefill and a 2048-token budget, as the release
    sets itself up; V1 profiles, which always chunk, are unchanged by the rule."""
    import json

    from typer.testing import CliRunner

    from capsim.cli import app

    out = CliRunner().invoke(app, ["serve", "-m", "qwen3-8b", "-a", "h100", "-e", "vllm-v0.6.5", "--rate", "5",
                                   "--prompt-tokens", "3000", "--output-tokens", "10", "-n", "10", "--json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["scheduler"] == "sarathi" and res["plan"]["max_batched_tokens"] == 2048 and res["completed"] == 10
    assert get_engine("vllm").for_model(get_model("qwen3-8b")) == get_engine("vllm")


@pytest.mark.parametrize(("version", "name"), [("0.3.4", "sglang-0.3.4"), ("0.3.4.post2", "sglang-0.3.4"),
                                               ("0.3.5", "sglang-0.3.4"), ("0.3.5.post2", "sglang-0.3.4"),
                                               ("0.3.6", "sglang"), ("0.4.0", "sglang")])
def test_sglang_0_3_4_to_0_3_5_runs_without_the_overlap_scheduler(version, name):
    """SGLang 0.3.4-0.3.5.x (server_args and scheduler of each sdist): 0.3.6's batching, CUDA graphs, radix cache
    and memory fraction, but enable_overlap_schedule = False: the host work is exposed, not hidden behind the GPU.
    0.3.0-0.3.3 ran up to 10 decode steps before looking at waiting prompts: refused."""
    eng = engine_release("sglang", version)
    assert eng.name == name
    differ = {k for k, v in get_engine("sglang").to_dict().items() if get_engine("sglang-0.3.4").to_dict()[k] != v}
    assert differ == {"name", "release", "covers", "description", "overlapped", "sources"}
    assert eng.overlapped == (() if name == "sglang-0.3.4" else ("all",)) and eng.prefix_caching
    assert eng.limits(get_model("llama-3-8b"), H100) == (4096, 8192) and eng.memory_fraction == 0.88
    # A run with --enable-overlap-schedule says so: its host work hides behind the GPU as in 0.3.6.
    assert apply_flags(eng, {"enable_overlap_schedule": "1"}, "bf16").engine.overlapped == ("all",)
    for old in ("0.3.3", "0.3.3.post1", "0.3.0", "0.2.15"):
        with pytest.raises(SpecError, match="capsim knows"):
            engine_release("sglang", old)
