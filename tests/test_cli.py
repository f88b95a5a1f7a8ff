import json

import pytest
from typer.testing import CliRunner

from capsim.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_catalog_models_json_lists_counts():
    result = run("catalog", "models", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["mixtral-8x7b"]["params_active"] < by_name["mixtral-8x7b"]["params_total"]
    assert {"name", "params_total", "params_active"} <= set(rows[0])


@pytest.mark.parametrize("kind", ["accelerators", "prices"])
def test_catalog_tables(kind):
    assert run("catalog", kind).exit_code == 0
    assert json.loads(run("catalog", kind, "--json").stdout)


def test_memory_train_json_and_verdict():
    result = run("memory", "train", "-m", "gpt-175b", "--tp", "8", "--pp", "8", "-v", "3", "--global-batch", "64",
                 "--sp", "--recompute", "selective", "--precision", "fp16", "-n", "64", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["fits"] is True and out["total_bytes"] < 80e9
    result = run("memory", "train", "-m", "gpt-175b", "--tp", "8", "--global-batch", "8", "--precision", "fp16")
    assert result.exit_code == 1 and "does not fit" in result.stderr


def test_memory_serve_json():
    out = json.loads(run("memory", "serve", "-m", "llama-3-8b", "-a", "l4", "--max-batch", "8", "--json").stdout)
    assert out["kv_bytes_per_token"] == 2 * 32 * 8 * 128 * 2
    assert "max_kv_tokens" in out


def test_flops_json():
    out = json.loads(run("flops", "-m", "gpt-22b", "--seq-len", "2048", "--json").stdout)
    assert out["training_flops_per_token"] == pytest.approx(out["six_n"] + 12 * 48 * 2048 * 6144)
    assert out["layer_forward_ops"][1]["name"] == "qkv"


@pytest.mark.parametrize("args, words", [
    (["memory", "train", "-m", "llama-2-7", "--tp", "2"], "did you mean"),
    (["memory", "train", "-m", "llama-2-7b", "--tp", "3"], "plan.tp"),
    (["memory", "train", "-m", "llama-2-7b", "--dp", "2", "-n", "8"], "dp*tp*pp*cp"),
    (["memory", "serve", "-m", "llama-2-7b", "-a", "H1000"], "accelerator"),
    (["validate", "memory", "--file", "/nonexistent.csv"], "no file"),
])
def test_bad_input_is_one_line_exit_2(args, words):
    result = run(*args)
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2


def test_validate_json_schema():
    out = json.loads(run("validate", "memory", "--json").stdout)
    assert set(out) >= {"suite", "calibration", "rows", "median_abs_error_pct", "max_abs_error_pct"}
    assert set(out["rows"][0]) >= {"source", "case", "metric", "measured", "predicted", "error_pct"}


def test_validate_accepts_any_csv_with_the_columns(tmp_path):
    path = tmp_path / "mem.csv"
    path.write_text("source,model,config,metric,value,unit,precision,seq,micro_batch,global_batch,framework,software\n"
                    "mine,gpt-22b,tp8 sp + selective recompute,activations_per_gpu,9.5,GiB,fp16,2048,4,4,megatron-lm,"
                    "megatron-lm-2022\n")
    out = json.loads(run("validate", "memory", "--file", str(path), "--json").stdout)
    assert len(out["rows"]) == 1 and abs(out["rows"][0]["error_pct"]) < 2
    bad = tmp_path / "bad.csv"
    bad.write_text("source,model\nx,y\n")
    result = run("validate", "memory", "--file", str(bad))
    assert result.exit_code == 2 and "lacks the columns" in result.output
