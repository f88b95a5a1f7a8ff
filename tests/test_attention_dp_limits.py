"""TensorRT-LLM applies max_batch_size / max_num_tokens to each attention-DP rank (every rank runs its own executor:
executor_request_queue.py _fetch_new_requests_attention_dp, total_max_num_active_requests = tp_size x
max_num_active_requests), so a replica under enable_attention_dp holds tp times the engine's limits; SGLang's
--max-running-requests / --chunked-prefill-size are the whole server's (server_args.py _handle_data_parallelism
divides them among the DP ranks). One place makes the engine's settings the plan's: engine_plan."""

from capsim.sim.serving import engine_plan
from capsim.sim.serving.fleet import attention_dp_ranks
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.engine import get_engine
from capsim.validation.serving import _plan, row_software

MODEL, ACC = get_model("qwen3-235b-a22b"), get_accelerator("B200")
MOE = {"tp": 4, "ep": 4, "quantization": "nvfp4", "kv_cache_dtype": "fp8"}


def test_attention_dp_gives_a_tensorrt_llm_replica_tp_times_the_per_rank_defaults():
    seqs, tokens = get_engine("tensorrt-llm").limits(MODEL, ACC)
    assert (seqs, tokens) == (2048, 8192)  # the LLM API's defaults, per rank
    plan = engine_plan("tensorrt-llm", MODEL, ACC, dp_attention=True, **MOE)
    assert (plan.max_batch, plan.max_batched_tokens) == (4 * 2048, 4 * 8192)


def test_a_stated_max_batch_size_is_per_rank():
    plan = engine_plan("tensorrt-llm", MODEL, ACC, dp_attention=True, max_batch=64, max_batched_tokens=1024, **MOE)
    assert (plan.max_batch, plan.max_batched_tokens) == (256, 4096)


def test_without_attention_dp_the_limits_are_the_replicas():
    plan = engine_plan("tensorrt-llm", MODEL, ACC, **MOE)
    assert (plan.max_batch, plan.max_batched_tokens) == get_engine("tensorrt-llm").limits(MODEL, ACC)
    assert engine_plan("tensorrt-llm", MODEL, ACC, max_batch=64, **MOE).max_batch == 64


def test_sglangs_dp_attention_limits_stay_the_servers():
    eng = get_engine("sglang")
    assert attention_dp_ranks(eng, 4, True) == 1
    plan = engine_plan(eng, MODEL, ACC, dp_attention=True, max_batch=64, **MOE)
    assert (plan.max_batch, plan.max_batched_tokens) == (64, eng.limits(MODEL, ACC)[1])


ROW = {"source": "t", "model": "qwen3-235b-a22b", "gpu": "B200", "gpus": "4", "tp": "4", "precision": "fp4",
       "engine": "tensorrt-llm", "engine_version": "1.2", "workload": "max-load", "trace": "", "batch": "3000",
       "input_tokens": "1024", "output_tokens": "1024", "rate_rps": "", "metric": "output_tokens_per_s",
       "value": "1", "unit": "tok/s",
       "flags": "backend=pytorch;enable_attention_dp=1;moe_expert_parallel_size=4;max_batch_size=64"}


def test_a_rows_max_batch_size_flag_is_per_rank():
    assert _plan(ROW, row_software(ROW)).max_batch == 256
    plain = {**ROW, "flags": "backend=pytorch;moe_expert_parallel_size=4;max_batch_size=64"}
    assert _plan(plain, row_software(plain)).max_batch == 64


def test_a_static_runs_batch_is_the_replicas():
    assert _plan(ROW, row_software(ROW), max_batch=96).max_batch == 96  # the row's batch column, not a flag
