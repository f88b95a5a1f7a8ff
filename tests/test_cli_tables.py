"""Terminal tables people can read: at 80 and 100 columns no value is cut ("…") and no line is wider than the
terminal; quantities in human units (ms, GB, days, $, k/M) while --json keeps SI."""

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from capsim.cli import app, common
from capsim.cli.render import Grid, kind_of, pairs, table, value_with_unit

COMMANDS = {
    "plan train": ["plan", "train", "-m", "llama-3-70b", "--tokens", "15e12", "-n", "1024", "--global-batch", "1024",
                   "--top", "5"],
    "plan serve": ["plan", "serve", "-m", "llama-3-8b", "--rate", "4", "--ttft-p99", "1", "--tpot-p99", "0.06",
                   "-a", "h100,l4", "--quantizations", "none,fp8", "--requests", "400"],
    "whatif quantization": ["whatif", "quantization", "-m", "llama-3-70b", "-a", "h100", "--tp", "4", "--rate", "50"],
    "whatif sparsity": ["whatif", "sparsity", "-m", "llama-3-70b", "-a", "h100", "--tp", "4"],
    "whatif distill": ["whatif", "distill", "--tokens", "1e11", "--rate", "50"],
    "whatif precision": ["whatif", "precision", "-m", "llama-2-7b", "-n", "8", "--tp", "8"],
    "whatif batch": ["whatif", "batch", "-m", "llama-2-7b", "-n", "64", "--tokens", "1e12"],
    "scale serve": ["scale", "serve", "-m", "llama-3-8b", "--rates", "2,20", "-a", "H100-SXM5-80GB",
                    "--quantizations", "none", "--requests", "400"],
    "scale train": ["scale", "train", "-m", "llama-3-70b", "--tokens", "15e12", "--gpus", "64,512,4096"],
    "scale model-size": ["scale", "model-size"],
    "train": ["train", "-m", "gpt-175b", "-n", "64", "--tp", "8", "--pp", "8", "-v", "3", "--global-batch", "64",
              "--sp", "--recompute", "selective", "--precision", "fp16", "--tokens", "300e9"],
    "train auto": ["train", "-m", "llama-2-70b", "-n", "64", "--global-batch", "512", "--seq-len", "4096", "--auto",
                   "--tokens", "2e12", "--top", "5"],
    "serve": ["serve", "-m", "llama-2-7b", "-a", "a100", "-r", "2", "-w", "chatbot", "--rate", "4", "-n", "200"],
    "validate memory": ["validate", "memory"],
    "validate params": ["validate", "params"],
}


@pytest.fixture(scope="module", params=list(COMMANDS))
def command(request):
    return request.param


@pytest.mark.parametrize("width", [80, 100])
def test_no_value_is_cut_at_80_and_100_columns(command, width, monkeypatch):
    printed = []
    real = Grid.__rich_console__

    def recording(self, console, options):
        printed.append([[c for c, wraps in zip(row, self.wrap, strict=True) if not wraps] for row in self.cells])
        return real(self, console, options)

    monkeypatch.setattr(Grid, "__rich_console__", recording)
    monkeypatch.setattr(common.console, "_width", width)
    out = CliRunner().invoke(app, COMMANDS[command])
    assert out.exit_code == 0, out.output
    assert "…" not in out.stdout, out.stdout
    too_wide = [line for line in out.stdout.splitlines() if len(line.rstrip()) > width]
    assert not too_wide, too_wide
    assert printed, "no table printed"
    lines = out.stdout.splitlines()
    for rows in printed:  # every value of every table appears whole on one line of the output
        for row in rows:
            for value in row:
                assert any(value in line for line in lines), f"{value!r} is not shown whole:\n{out.stdout}"


def test_tables_use_human_units_and_json_keeps_si():
    args = COMMANDS["plan train"]
    text = CliRunner().invoke(app, args).stdout
    assert "days" in text and "$" in text and "%" in text and "e+0" not in text
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    best = data["top"][0]
    assert best["time_to_train_s"] > 1e5 and 0 < best["mfu"] < 1  # seconds and a fraction, as computed


def render(grid: Grid, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(grid)
    return console.export_text()


def test_units_follow_the_column_name_and_one_unit_serves_a_column():
    assert [kind_of(k) for k in ("ttft_p99_s", "weights_bytes", "cost_usd", "mfu", "output_tokens_per_s",
                                 "kv_tokens", "energy_j", "cost_vs_baseline")] == \
        ["time", "bytes", "money", "percent", "rate", "count", "energy", "plain"]
    text = render(table("t", ["name", "step_s", "memory_per_gpu_bytes", "cost_usd", "mfu"],
                        [["a", 0.0123, 61.2e9, 1.58e6, 0.677], ["b", 0.45, 7.1e9, 912.0, 0.5]]), 100)
    assert "step (ms)" in text and "12.3" in text and "450" in text
    assert "memory per gpu (GB)" in text and "61.2" in text
    assert "$1.58M" in text and "$912" in text and "67.7%" in text
    assert value_with_unit("time_to_train_s", 1.051e6) == "12.2 days"
    assert "12.2 days" in render(pairs("p", [["time_to_train_s", 1.051e6]]), 80)


def test_a_table_too_wide_is_split_with_row_numbers_and_keeps_every_value():
    cols = [f"column_number_{i}_s" for i in range(12)]
    rows = [[1.23456 * (i + j) for j in range(12)] for i in range(3)]
    text = render(table("wide", ["name", *cols], [[f"row{i}", *r] for i, r in enumerate(rows)]), 80)
    assert "(1/" in text and "…" not in text
    assert text.count("row2") >= 2  # the key column repeats in every part
    assert all(len(line) <= 80 for line in text.splitlines())
