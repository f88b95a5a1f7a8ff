import json

import pytest
from typer.testing import CliRunner

from capsim.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, key", [
    (["whatif", "quantization", "-m", "llama-3-8b"], "quantization"),
    (["whatif", "sparsity", "-m", "llama-3-8b"], "pattern"),
    (["whatif", "precision", "-m", "llama-2-7b", "-n", "8", "--tp", "8"], "precision"),
    (["whatif", "batch", "-m", "llama-2-7b", "-n", "16", "--batches", "64,128"], "global_batch"),
    (["scale", "model-size"], "params"),
    (["scale", "train", "-m", "llama-2-7b", "--gpus", "8,64", "--global-batch", "128", "--seq-len", "2048"], "gpus"),
])
def test_whatif_and_scale_commands_print_json_rows(args, key):
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert rows and key in rows[0]


def test_whatif_bad_input_exits_2():
    out = runner.invoke(app, ["whatif", "quantization", "-m", "llama-3-8b", "--workload", "chatbt"])
    assert out.exit_code == 2 and "did you mean chatbot" in out.output
