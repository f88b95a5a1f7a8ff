"""Published serving runs capsim had not seen, fed to ``capsim validate serving`` as a new user would
(TensorRT-LLM docs/source/performance/perf-overview.md v1.0: the B200/GB200 FP4 columns)."""

import json

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.specs.engine import engine_release
from capsim.specs.engine_flags import apply_flags, parse_flags
from capsim.specs.plans import Quantization, ServePlan
from capsim.specs.precision import DType

HEADER = ("source,model,gpu,gpus,tp,precision,engine,workload,trace,batch,input_tokens,output_tokens,rate_rps,metric,"
          "value,unit,engine_version,flags")
TRT = "tensorrt-llm,{wl},,{b},{i},{o},,{metric},{v},{unit},1.0,backend=pytorch{extra}"


def _row(gpu="B200", prec="fp4", wl="single-batch", b=64, i=1024, o="", metric="decode_step_time", v=20, unit="ms",
         extra="", model="llama-3.3-70b", tp=1):
    return f"t,{model},{gpu},{tp},{tp},{prec}," + TRT.format(wl=wl, b=b, i=i, o=o, metric=metric, v=v, unit=unit,
                                                             extra=extra)


def _validate(tmp_path, *rows):
    path = tmp_path / "rows.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n")
    return CliRunner().invoke(app, ["validate", "serving", "--file", str(path), "--json"])


def test_nvfp4_quantizes_weights_and_math_to_nvfp4():
    plan = ServePlan(quantization="nvfp4")
    assert plan.quantization is Quantization.NVFP4
    assert plan.weight_dtype is DType.NVFP4 and plan.compute_dtype is DType.NVFP4


def test_an_fp4_row_is_priced_as_nvfp4_not_as_bf16(tmp_path):
    # Was: precision fp4 fell through to bf16 weights, silently (Llama-3.3-70B 1000/1000 on B200: -74%).
    out = _validate(tmp_path, _row(prec="fp4"), _row(prec="bf16"), _row(prec="nvfp4"))
    assert out.exit_code == 0, out.output[-600:]
    fp4, bf16, nvfp4 = (r["predicted"] for r in json.loads(out.stdout)["rows"])
    assert fp4 == nvfp4
    assert fp4 < 0.5 * bf16  # a decode step reads ~0.28x the weight bytes


def test_an_fp4_row_without_its_kv_format_carries_the_fp8_cache_as_its_band(tmp_path):
    out = _validate(tmp_path, _row(wl="max-load", b=200, i=1000, o=200, metric="output_tokens_per_s", v=7000,
                                   unit="tok/s"),
                    _row(wl="max-load", b=200, i=1000, o=200, metric="output_tokens_per_s", v=7000, unit="tok/s",
                         extra=";kv_cache_dtype=fp8"))
    assert out.exit_code == 0, out.output[-600:]
    unstated, fp8 = json.loads(out.stdout)["rows"]
    assert "KV-cache format not stated" in unstated["note"]
    assert unstated["band_low"] == unstated["predicted"] < unstated["band_high"]
    assert unstated["band_high"] == pytest.approx(fp8["predicted"])
    assert fp8.get("band_low") is None


def test_an_fp4_row_on_hopper_is_unpriced_with_the_reason(tmp_path):
    out = _validate(tmp_path, _row(gpu="H100-SXM5-80GB", tp=2))
    assert out.exit_code == 0, out.output[-600:]
    row = json.loads(out.stdout)["rows"][0]
    assert row["predicted"] is None and "needs Blackwell block-scaled tensor cores" in row["note"]


@pytest.mark.parametrize("prec", ["fp32", "awq", "w4a16"])
def test_a_precision_capsim_does_not_price_is_a_clear_error_not_bf16(tmp_path, prec):
    out = _validate(tmp_path, _row(prec=prec))
    assert out.exit_code == 2
    assert "precision" in out.output and f"unknown precision '{prec}'" in out.output


def test_kv_cache_dtype_flag_sets_the_cache_format():
    eng = engine_release("tensorrt-llm", "1.0")
    assert apply_flags(eng, parse_flags("kv_cache_dtype=fp8"), "bf16").plan == {"kv_cache_dtype": "fp8"}
    assert apply_flags(eng, parse_flags("kv_cache_dtype=auto"), "bf16").plan == {"kv_cache_dtype": None}
    with pytest.raises(Exception, match="kv_cache_dtype='int3' is not a KV-cache format"):
        apply_flags(eng, parse_flags("kv_cache_dtype=int3"), "bf16")


@pytest.mark.parametrize(("spelling", "name"), [("H100 80GB HBM3", "H100-SXM5-80GB"),  # perf-overview.md 0.17
                                                ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),  # CUDA's device name
                                                ("H100 SXM 80GB", "H100-SXM5-80GB"),  # perf-overview.md 1.0
                                                ("H200 141GB HBM3", "H200-SXM-141GB"),
                                                ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
                                                ("B200 180GB", "B200"), ("GB200 192GB", "GB200")])
def test_the_gpu_spellings_of_published_tables_name_catalog_accelerators(spelling, name):
    from capsim.specs.catalog import get_accelerator

    assert get_accelerator(spelling).name == name


@pytest.mark.parametrize(("checkpoint", "name"), [("nvidia/Llama-3.1-8B-Instruct-FP8", "llama-3.1-8b"),
                                                  ("nvidia/Qwen3-235B-A22B-FP8", "qwen3-235b-a22b"),
                                                  ("nvidia/Qwen3-30B-A3B-FP4", "qwen3-30b-a3b")])
def test_a_quantized_checkpoint_name_is_its_models_shape(checkpoint, name):
    from capsim.specs.catalog import get_model

    assert get_model(checkpoint).name == name


def test_an_unknown_gpu_or_model_leaves_its_row_unpriced_and_the_others_priced(tmp_path):
    # Was: "accelerator: unknown accelerator 'GH200 480GB'" stopped the run (exit 2) after pricing the rows before it,
    # naming neither the column nor the line; a training row with that GPU was already an unpriced row.
    out = _validate(tmp_path, _row(), _row(gpu="GH200 480GB"), _row(model="llama-9-1b"))
    assert out.exit_code == 0, out.output[-600:]
    ok, gpu, model = json.loads(out.stdout)["rows"]
    assert ok["predicted"] is not None
    assert gpu["predicted"] is None and "unknown accelerator 'GH200 480GB'" in gpu["note"]
    assert model["predicted"] is None and "unknown model 'llama-9-1b'" in model["note"]


def test_aiperf_is_a_client_counted_as_vllm_bench_counts():
    from capsim.validation.clients import Client, client

    assert client("aiperf") is Client.AIPERF and Client.AIPERF.counts_every_request
    assert not Client.GENAI_PERF.counts_every_request


def test_gptj_and_falcon_configs_import():
    # Were "unsupported family": GPT-J-6B (MLPerf inference, TensorRT-LLM perf tables) and Falcon (TensorRT-LLM's
    # Falcon-180B tables). Shapes from the models' Hugging Face config.json files.
    from capsim.analytic.params import param_counts
    from capsim.specs.hf import from_hf_config

    gptj = from_hf_config({"model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_layer": 28, "n_positions": 2048,
                           "rotary_dim": 64, "vocab_size": 50400, "n_inner": None, "tie_word_embeddings": False})
    assert (gptj.head_dim, gptj.ffn_hidden, gptj.tied_embeddings) == (256, 16384, False)
    # EleutherAI/gpt-j-6b: 6,053,381,344 parameters; capsim leaves out the MLP and LM-head biases (0.6M)
    assert param_counts(gptj).total == pytest.approx(6_053_381_344, rel=1e-3)
    f180 = from_hf_config({"model_type": "falcon", "hidden_size": 14848, "num_attention_heads": 232,
                           "num_hidden_layers": 80, "num_kv_heads": 8, "new_decoder_architecture": True,
                           "parallel_attn": True, "bias": False, "vocab_size": 65024, "alibi": False})
    assert (f180.kv_heads, f180.head_dim, f180.ffn_hidden) == (8, 64, 59392)
    assert "in parallel" in f180.source
    f7 = from_hf_config({"model_type": "falcon", "hidden_size": 4544, "num_attention_heads": 71,
                         "num_hidden_layers": 32, "multi_query": True, "parallel_attn": True, "vocab_size": 65024})
    assert f7.kv_heads == 1
    with pytest.raises(Exception, match="ALiBi"):
        from_hf_config({"model_type": "falcon", "hidden_size": 2048, "num_attention_heads": 32,
                        "num_hidden_layers": 24, "alibi": True, "vocab_size": 65024})


def test_a_poisson_row_replays_the_request_count_its_source_states(tmp_path):
    # TensorRT-LLM perf-overview.md (0.17) 'Online Serving Measurements': "500 requests"; was always 1000.
    row = "t,llama-3.1-8b,H100-SXM5-80GB,1,1,bf16,tensorrt-llm,poisson,,{b},467,256,2,ttft_mean,23,ms,0.14.0,"
    out = _validate(tmp_path, row.format(b=200), row.format(b=""))
    assert out.exit_code == 0, out.output[-600:]
    stated, blank = json.loads(out.stdout)["rows"]
    assert "200 Poisson requests" in stated["note"] and "1000 Poisson requests" in blank["note"]


def test_an_optional_pp_column_states_pipeline_parallel_replicas(tmp_path):
    # TensorRT-LLM perf-overview.md (1.0) publishes TP x PP layouts; the CSV could state only TP (gpus / tp replicas).
    head = HEADER + ",pp"
    row = ("t,llama-3.1-70b,H100-SXM5-80GB,{g},{tp},fp8,tensorrt-llm,max-load,,200,1000,200,,output_tokens_per_s,"
           "4000,tok/s,1.0,backend=pytorch,{pp}")
    path = tmp_path / "pp.csv"
    path.write_text("\n".join((head, row.format(g=2, tp=2, pp=""), row.format(g=2, tp=1, pp=2),
                               row.format(g=3, tp=1, pp=2))) + "\n")
    out = CliRunner().invoke(app, ["validate", "serving", "--file", str(path), "--json"])
    assert out.exit_code == 0, out.output[-600:]
    tp2, pp2, bad = json.loads(out.stdout)["rows"]
    assert tp2["predicted"] and pp2["predicted"] and tp2["predicted"] != pp2["predicted"]
    assert " pp2 " in pp2["case"]
    assert bad["predicted"] is None and "do not split into replicas of TP 1 x PP 2" in bad["note"]
