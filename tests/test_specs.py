import json

import pytest

from capsim import SpecError, UnknownNameError, from_hf_config, get_accelerator, get_model, param_counts
from capsim.specs import ModelSpec, Precision, ServePlan, TrainPlan


def test_catalog_resolves_aliases_and_common_spellings():
    assert get_model("meta-llama/Llama-2-70b-hf").name == "llama-2-70b"
    assert get_model("Meta-Llama-3-8B").name == "llama-3-8b"
    assert get_model("llama-3.3-70b").name == "llama-3.1-70b"
    # Llama 3.1 has Llama 3's shape and a 128K context (the served context decides vLLM's scheduling defaults)
    assert get_model("meta-llama/Llama-3.1-8B").max_seq == 131072 and get_model("llama-3-8b").max_seq == 8192
    assert get_model("llama-3.1-405b").name == "llama-3-405b"
    assert get_model("facebook/opt-13b").name == "opt-13b"
    assert get_accelerator("h100").name == "H100-SXM5-80GB"
    # the part names of datasheets and papers ('H100 SXM5', 'H200 SXM', 'A100 80GB SXM') name one catalog part each
    assert get_accelerator("H100 SXM5").name == "H100-SXM5-80GB"
    assert get_accelerator("H200 SXM").name == get_accelerator("H200 141GB").name == "H200-SXM-141GB"
    assert get_accelerator("A100 80GB SXM").name == "A100-SXM4-80GB"


def test_every_accelerator_row_is_in_the_catalog():
    import csv
    from importlib import resources

    from capsim.specs.catalog import accelerators
    names = {a for a in accelerators()}
    text = resources.files("capsim.specs").joinpath("catalog", "accelerators.yaml").read_text()
    assert len(names) == 25 and {"B300", "GB300"} <= names and "TPU-v5p" in names and "MI300X" in names
    del csv, text


def test_mistyped_names_suggest_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean llama-2-7b"):
        get_model("lama-2-7b")
    with pytest.raises(UnknownNameError, match="H100"):
        get_accelerator("H1OO")


def test_catalog_price_is_median_and_overridable():
    assert get_accelerator("H100-SXM5-80GB").price_usd_per_hour == pytest.approx(6.16)  # median of 6.88, 3.78, 6.16
    assert get_accelerator("h100", price_usd_per_hour=2.0).price_usd_per_hour == 2.0
    assert get_accelerator("V100-SXM2-32GB").price_usd_per_hour is None


@pytest.mark.parametrize("kwargs, field, words", [
    (dict(tp=3), "plan.tp", "does not divide"),
    (dict(tp=16), "plan.tp", "KV heads"),
    (dict(pp=64), "plan.pp", "--pipeline-layout"),
])
def test_train_plan_errors_name_field_and_fix(kwargs, field, words):
    with pytest.raises(SpecError) as err:
        TrainPlan(**kwargs).check(get_model("llama-3-8b"))
    assert err.value.field == field and words in str(err.value) and err.value.fix


def test_plan_gpu_count_and_batch_split_are_checked():
    model = get_model("gpt-7.5b")
    with pytest.raises(SpecError, match="dp\\*tp\\*pp\\*cp"):
        TrainPlan(dp=2, tp=4, global_batch=8).check(model, num_gpus=16)
    with pytest.raises(SpecError, match="global_batch") as err:
        TrainPlan(dp=32, micro_batch=3, global_batch=512)
    assert "micro_batch in" in str(err.value)
    with pytest.raises(SpecError, match="sequence parallelism"):
        TrainPlan(sequence_parallel=True)
    with pytest.raises(SpecError, match="interleav"):
        TrainPlan(pp=4, pp_interleave=2, global_batch=6)
    uneven = TrainPlan(pp=5, layer_split=(8, 7, 7, 7, 7), global_batch=5).check(model)
    assert uneven.split(model).stages == (8, 7, 7, 7, 7)


def test_serve_plan_allows_kv_replication_but_not_head_splits():
    model = get_model("llama-3-70b")  # 64 heads, 8 KV heads
    assert ServePlan(tp=16).check(model).kv_replication(model) == 2
    with pytest.raises(SpecError, match="plan.tp"):
        ServePlan(tp=3).check(model)
    with pytest.raises(SpecError, match="quantization"):
        ServePlan(quantization="int3")


def test_model_spec_checks_its_fields():
    with pytest.raises(SpecError, match="model.kv_heads"):
        ModelSpec("x", hidden=512, layers=2, heads=8, vocab=100, kv_heads=3)
    with pytest.raises(SpecError, match="model.top_k"):
        ModelSpec("x", hidden=512, layers=2, heads=8, vocab=100, experts=2, top_k=3)
    with pytest.raises(SpecError, match="model.hidden"):
        ModelSpec("x", hidden=0, layers=2, heads=8, vocab=100)


def test_precision_presets_give_published_bytes_per_param():
    megatron = Precision.preset("fp16")  # fp16 weights, fp32 grads, fp32 master + Adam: 18 B/param
    assert megatron.weights.bytes + megatron.gradients.bytes + megatron.optimizer_bytes_per_param == 18
    zero = Precision.preset("fp16-zero")  # ZeRO paper: 2 + 2 + K(=12)
    assert zero.weights.bytes + zero.gradients.bytes + zero.optimizer_bytes_per_param == 16
    with pytest.raises(SpecError, match="precision"):
        Precision.preset("fp12")


HF_CONFIGS = {
    "llama-2-7b": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False, "hidden_act": "silu"},
    "mixtral-8x7b": {"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                     "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2,
                     "max_position_embeddings": 32768},
    "gpt2-124m": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
                  "n_positions": 1024, "n_inner": None},
    "opt-13b": {"model_type": "opt", "hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
                "ffn_dim": 20480, "vocab_size": 50272, "max_position_embeddings": 2048,
                "activation_function": "relu", "word_embed_proj_dim": 5120},
    "bert-base": {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512,
                  "type_vocab_size": 2},
    "t5-base": {"model_type": "t5", "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12,
                "num_decoder_layers": 12, "num_heads": 12, "vocab_size": 32128,
                "relative_attention_num_buckets": 32, "feed_forward_proj": "relu"},
}


@pytest.mark.parametrize("name", sorted(HF_CONFIGS))
def test_hf_config_import_matches_catalog(tmp_path, name):
    path = tmp_path / name / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(HF_CONFIGS[name]))
    spec = from_hf_config(path)
    assert spec.name == name
    assert param_counts(spec).total == param_counts(get_model(name)).total
    assert param_counts(spec).active == param_counts(get_model(name)).active


def test_hf_config_errors_are_clear(tmp_path):
    with pytest.raises(SpecError, match="model_type"):
        from_hf_config({"model_type": "mamba"})
    with pytest.raises(SpecError, match="no file"):
        from_hf_config(tmp_path / "missing.json")
    with pytest.raises(SpecError, match="hidden_size"):
        from_hf_config({"model_type": "llama", "num_hidden_layers": 2})
