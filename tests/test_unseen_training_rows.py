"""Training rows of runs capsim has not seen, in the shipped CSV format: uneven pipelines stated by Megatron-Core's
own flags, a blank dp, and the errors a row that cannot run gets (found by feeding such rows to
``capsim validate training``)."""

import json

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.errors import SpecError
from capsim.validation.harness import DataError
from capsim.validation.training import predict_row

HEADER = ["source", "model", "hidden", "layers", "heads", "kv_heads", "head_dim", "ffn_hidden", "mlp", "experts", "top_k", "moe_ffn_hidden", "seq", "vocab", "gpu", "gpus", "tp", "pp", "pp_interleave", "cp", "ep", "dp", "fsdp", "zero_stage", "global_batch", "micro_batch", "recompute", "seq_parallel", "precision", "framework", "software", "metric", "value", "flags"]
L405 = dict(source="t", model="llama-3.1-405b", hidden="16384", layers="126", heads="128", kv_heads="8",
            ffn_hidden="53248", mlp="swiglu", seq="8192", vocab="128256", gpu="H100-SXM5-80GB", gpus="1024", tp="8",
            pp="8", cp="1", ep="1", dp="16", global_batch="512", micro_batch="1", recompute="full",
            seq_parallel="yes", precision="bf16", framework="megatron-core", software="megatron-core-0.14.0",
            metric="tflops_per_gpu_model", value="400")
DSV3 = dict(source="t", model="deepseek-v3", hidden="7168", layers="61", heads="128", kv_heads="128", head_dim="192",
            ffn_hidden="18432", mlp="swiglu", experts="256", top_k="8", moe_ffn_hidden="2048", seq="4096",
            vocab="129280", gpu="B200", gpus="256", tp="1", pp="16", cp="1", ep="8", dp="16", global_batch="2048",
            micro_batch="1", recompute="full", precision="bf16", framework="megatron-core",
            software="megatron-bridge-26.02", metric="tokens_per_s_per_gpu", value="3000")


def _row(base: dict[str, str], **cells: str) -> dict[str, str]:
    return {**{k: "" for k in HEADER}, **base, **cells}


def test_a_pipeline_layout_flag_states_the_split():
    flags = "--pipeline-model-parallel-layout=Et*15|t*16|t*16|t*16|t*16|t*16|t*16|t*15L --use-distributed-optimizer"
    pred = predict_row(_row(L405, flags=flags))
    assert pred.value > 0 and "bottleneck" in pred.note


def test_a_pipeline_layout_gives_v_where_the_row_leaves_it_blank():
    pred = predict_row(_row(DSV3, flags="--moe-token-dispatcher-type=alltoall "
                                        "--pipeline-model-parallel-layout=Et*3|(tt|)*29|L"))
    assert pred.value > 0 and "v=2" in pred.note


@pytest.mark.parametrize("software", ["megatron-core-0.13.0", "megatron-core-0.14.0", "nemo-25.02"])
def test_first_and_last_stage_layer_flags_state_the_split(software):
    flags = "--decoder-first-pipeline-num-layers=7 --decoder-last-pipeline-num-layers=7"
    pred = predict_row(_row(L405, software=software, pp="16", gpus="2048", flags=flags))
    assert pred.value > 0
    uneven = predict_row(_row(L405, software=software, pp="16", gpus="2048", pp_interleave="2",
                              flags="--decoder-first-pipeline-num-layers=6 --decoder-last-pipeline-num-layers=8"))
    assert uneven.value > 0


def test_a_layout_that_places_the_wrong_number_of_layers_is_a_clear_error():
    with pytest.raises(SpecError, match="places 127 decoder layers, the model has 126"):
        predict_row(_row(L405, flags="--pipeline-model-parallel-layout=Et*15|(t*16|)*6t*16L"))


def test_a_layout_on_a_release_without_it_names_the_release_that_has_it():
    with pytest.raises(DataError, match="from 0.13.0"):
        predict_row(_row(L405, software="megatron-core-0.12.0",
                         flags="--pipeline-model-parallel-layout=Et*15|(t*16|)*6t*15L"))


def test_an_unsplittable_interleaved_row_says_why_not_where_the_search_failed():
    row = _row(DSV3, gpu="H100-SXM5-80GB", gpus="1024", tp="2", pp="8", pp_interleave="4", ep="64", dp="64",
               software="megatron-bridge-25.11", flags="--account-for-embedding-in-pipeline-split "
               "--account-for-loss-in-pipeline-split")
    with pytest.raises(SpecError, match=r"63 do not divide over pp=8 \(no pp splits") as err:
        predict_row(row)
    assert "pp in []" not in str(err.value)


def test_a_blank_dp_is_gpus_over_the_model_parallel_sizes(tmp_path):
    row = _row(L405, dp="", flags="--use-distributed-optimizer --account-for-embedding-in-pipeline-split "
               "--account-for-loss-in-pipeline-split")
    assert predict_row(row).value == pytest.approx(predict_row({**row, "dp": "16"}).value)
    path = tmp_path / "t.csv"
    path.write_text(",".join(HEADER) + "\n" + ",".join(_row(row, tp="")[k] for k in HEADER) + "\n")
    out = CliRunner().invoke(app, ["validate", "training", "--file", str(path), "--json"])
    assert out.exit_code == 2 and "tp: line 2: blank" in out.output and "Traceback" not in out.output
    path.write_text(",".join(HEADER) + "\n" + ",".join(row[k] for k in HEADER) + "\n")
    out = CliRunner().invoke(app, ["validate", "training", "--file", str(path), "--json"])
    assert out.exit_code in (0, 1) and json.loads(out.stdout)["rows"][0]["predicted"] > 0


@pytest.mark.parametrize(("given", "preset"), [("deepspeed-0.15.1", "deepspeed-0.14"), ("pytorch-2.3", "fsdp-pytorch-2.3"),
                                               ("megatron-core-0.15.0", "megatron-core-0.14.0"),
                                               ("fsdp", "fsdp-pytorch-2.3")])
def test_framework_takes_a_release_a_preset_covers(given, preset):
    args = ["-m", "llama-2-7b", "-a", "A100-SXM4-80GB", "-n", "8", "--framework", given, "--global-batch", "8",
            "--seq-len", "2048", "--json"]
    out = CliRunner().invoke(app, ["train", *args])
    assert out.exit_code in (0, 1) and json.loads(out.stdout)["framework"] == preset, out.output[-400:]
    out = CliRunner().invoke(app, ["train", *args[:7], "megatron-core-0.7.0"])
    assert out.exit_code == 2 and "'megatron-core-0.7.0' is not one of" in out.output


def test_hugging_face_qwen2_moe_and_llama4_configs_import_with_shared_experts_and_dense_layers(tmp_path):
    from capsim.analytic.params import param_counts
    from capsim.specs.hf import from_hf_config

    qwen2 = {"model_type": "qwen2_moe", "hidden_size": 3584, "intermediate_size": 18944,
             "moe_intermediate_size": 2560, "shared_expert_intermediate_size": 20480, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "num_experts": 64, "num_experts_per_tok": 8,
             "vocab_size": 151936, "max_position_embeddings": 131072, "hidden_act": "silu"}
    m = from_hf_config(qwen2, "qwen2-57b-a14b")
    p = param_counts(m)
    assert (m.shared_experts, m.shared_ffn, m.shared_expert_gate, m.qkv_bias) == (1, 20480, True, True)
    assert p.total / 1e9 == pytest.approx(57.4, abs=0.1) and p.active / 1e9 == pytest.approx(14.2, abs=0.1)
    text = {"hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_hidden_layers": 48,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "num_local_experts": 128,
            "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "vocab_size": 202048,
            "attention_chunk_size": 8192, "hidden_act": "silu"}
    m = from_hf_config({"model_type": "llama4", "text_config": text}, "llama-4-maverick")
    p = param_counts(m)  # Meta's model card: 400B total, 17B active (with the vision tower)
    assert len(m.dense_layers) == 24 and m.dense_layers[0] == 0 and m.shared_experts == 1
    assert p.total / 1e9 == pytest.approx(400.7, abs=0.5) and p.active / 1e9 == pytest.approx(17.2, abs=0.2)
    # a shared expert of its own width (not a multiple of the routed width) is priced as that one FFN
    assert from_hf_config({**qwen2, "shared_expert_intermediate_size": 5000}).shared_ffn == 5000


def test_a_row_stating_no_split_runs_the_one_megatron_core_accepts():
    # 126 layers over pp 8 x v 8: only the embedding and loss counted as layers split them (128 = 64 x 2)
    row = _row(L405, software="megatron-bridge-26.04.01", pp_interleave="8", gpus="1024", dp="16", recompute="",
               seq_parallel="")
    pred = predict_row(row)
    assert pred.value > 0
    assert ("priced at --account-for-embedding-in-pipeline-split --account-for-loss-in-pipeline-split "
            "(default_uneven's choice), the only one") in pred.note
    stated = predict_row({**row, "flags": "--account-for-embedding-in-pipeline-split "
                                          "--account-for-loss-in-pipeline-split --use-distributed-optimizer"})
    assert "states no split" not in stated.note


def test_a_row_stating_no_split_is_banded_over_every_split_megatron_core_accepts():
    # 31 layers over 4 stages: first/last counts (8, 8, 8, 7; default_uneven's choice), or the embedding or the loss
    # counted alone (32 = 4 x 8); the band spans all three
    row = _row(L405, model="t-31", hidden="4096", layers="31", heads="32", kv_heads="8", ffn_hidden="14336",
               gpus="32", tp="1", pp="4", dp="8", software="megatron-core-0.14.0", recompute="", seq_parallel="",
               global_batch="128", seq="4096", flags="")
    pred = predict_row(row)
    assert "priced at --decoder-first-pipeline-num-layers=8 --decoder-last-pipeline-num-layers=7" in pred.note
    assert ("band over the other splits Megatron-Core accepts (--account-for-embedding-in-pipeline-split; "
            "--account-for-loss-in-pipeline-split)") in pred.note
    alone = [predict_row({**row, "flags": f"--account-for-{part}-in-pipeline-split --use-distributed-optimizer"})
             for part in ("embedding", "loss")]
    assert pred.band is not None
    for other in alone:
        assert pred.band[0] <= other.value <= pred.band[1]


def test_a_release_without_uneven_splits_still_says_the_row_states_none():
    row = _row(L405, model="t-31", hidden="4096", layers="31", heads="32", kv_heads="8", ffn_hidden="14336",
               gpus="32", tp="1", pp="4", dp="8", software="nemo-24.07", global_batch="128", seq="4096")
    with pytest.raises(SpecError, match="states no layer split"):
        predict_row(row)


def test_a_row_stating_no_flags_leaves_the_optimizer_sharding_and_the_experts_tp_open():
    moe = _row(DSV3, gpus="256", tp="2", pp="16", ep="8", dp="8", software="megatron-bridge-26.04.01",
               pp_interleave="", recompute="full")
    note = predict_row({**moe, "flags": ""}).note
    assert "distributed_optimizer in {" in note and "etp in {" in note
    stated = predict_row({**moe, "flags": "--use-distributed-optimizer"}).note
    assert "distributed_optimizer in {" not in stated and "etp in {" not in stated


def test_a_squared_relu_model_runs_gelus_gemms_and_two_activation_passes():
    # Nemotron-4's FFN: two matrices like GELU's, relu then pow as two eager kernels (Mlp.act_passes)
    from dataclasses import replace

    from capsim.analytic.ops import training_layer_ops
    from capsim.specs.catalog import get_model
    from capsim.specs.model import Mlp
    gelu = replace(get_model("gpt3-175b"), mlp=Mlp.GELU)
    ops = {m: {o.name: o for o in training_layer_ops(replace(gelu, mlp=m), 1, 2048)} for m in (Mlp.GELU,
                                                                                              Mlp.SQUARED_RELU)}
    for name in ("mlp_up", "mlp_down"):
        assert ops[Mlp.SQUARED_RELU][name].flops == ops[Mlp.GELU][name].flops
    act, one = ops[Mlp.SQUARED_RELU]["mlp_act"], ops[Mlp.GELU]["mlp_act"]
    assert act.bytes == pytest.approx(2 * one.bytes)
    row = _row(L405, model="nemotron-4-15b", hidden="6144", layers="32", heads="48", kv_heads="8",
               ffn_hidden="24576", mlp="squared-relu", seq="4096", vocab="256000", gpus="64", tp="2", pp="1",
               dp="32", global_batch="256", micro_batch="2", recompute="", seq_parallel="", precision="fp8",
               software="nemo-25.04")
    assert predict_row(row).value > 0


@pytest.mark.parametrize("cells", [
    # Llama-3-70B on 64 GPUs, no flags: fits only with the distributed optimizer (open in the band)
    dict(model="llama-3-70b", hidden="8192", layers="80", heads="64", ffn_hidden="28672", vocab="128256", gpus="64",
         tp="4", pp="4", dp="4", global_batch="128", recompute="", seq_parallel="", flags=""),
    # Qwen3-235B-A22B over 4 stages of B200s: 94 layers split with the embedding and loss counted (96 = 4 x 24)
    dict(model="qwen3-235b-a22b", hidden="4096", layers="94", heads="64", kv_heads="4", head_dim="128",
         ffn_hidden="", experts="128", top_k="8", moe_ffn_hidden="1536", seq="4096", vocab="151936", gpu="B200",
         gpus="256", tp="1", pp="4", ep="8", dp="64", global_batch="2048", recompute="", seq_parallel="",
         software="megatron-bridge-26.02", flags=""),
    # 405B on GB200 with cp 2, v blank: the band's median layout interleaves (v=8) where the first/last split does not
    dict(gpu="GB200", gpus="256", tp="4", pp="8", cp="2", dp="4", global_batch="256", recompute="", seq_parallel="",
         software="megatron-bridge-26.04", flags=""),
], ids=["dist-opt-open", "qwen3-235b-pp4", "405b-gb200-v-blank"])
def test_rows_stating_no_flags_are_priced(cells):
    pred = predict_row(_row(L405, **cells))
    assert pred.value > 0 and pred.band is not None and pred.band[0] <= pred.value <= pred.band[1]
