"""``capsim train`` and ``capsim validate training`` through typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from capsim.calibration import default_calibration
from capsim.cli import app

runner = CliRunner()
KEYS = {"step_time_s", "tflops_per_gpu_model", "tflops_per_gpu_hw", "mfu", "memory_per_gpu_bytes", "feasible",
        "breakdown", "calibration", "framework", "train"}


def run(*args):
    return runner.invoke(app, list(args))


def test_train_json_has_the_contract():
    result = run("train", "-m", "gpt-175b", "-n", "64", "--tp", "8", "--pp", "8", "-v", "3", "--global-batch", "64",
                 "--sp", "--recompute", "selective", "--precision", "fp16", "--framework", "megatron-lm-2022",
                 "--tokens", "1e11", "--price", "2.0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) >= KEYS
    assert out["calibration"] == default_calibration("a100") and out["feasible"] is True  # the one default rule
    assert sum(out["breakdown"].values()) == pytest.approx(out["step_time_s"])
    assert out["train"]["cost_usd"] == pytest.approx(out["train"]["time_s"] / 3600 * 64 * 2.0)
    assert 0.3 < out["mfu"] < 0.7 and out["memory_per_gpu_bytes"] < 80e9


def test_train_table_and_infeasible_plan():
    result = run("train", "-m", "gpt-175b", "--tp", "8", "--global-batch", "8", "--precision", "fp16")
    assert result.exit_code == 1  # valid but infeasible: exit 1 with the reason, as every command
    assert "step time" in result.stdout and "infeasible: does not fit" in result.stderr
    result = run("train", "-m", "gpt-175b", "--tp", "8", "--global-batch", "8", "--json")
    out = json.loads(result.stdout)
    assert result.exit_code == 1 and out["feasible"] is False and out["reason"] == "does not fit in memory"


def test_train_auto_picks_the_fastest_feasible():
    result = run("train", "-m", "gpt-1.7b", "-n", "16", "--global-batch", "64", "--auto", "--top", "5",
                 "-c", "A100-SXM4-80GB-profile", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    steps = [r["step_s"] for r in out["top"]]
    assert len(steps) == 5 and steps == sorted(steps)
    assert out["step_time_s"] == pytest.approx(steps[0])
    assert out["calibration"] == "A100-SXM4-80GB-profile" and out["evaluated"] > 5
    table = run("train", "-m", "gpt-1.7b", "-n", "16", "--global-batch", "64", "--auto").stdout
    assert "fastest of" in table and "best plan" in table


@pytest.mark.parametrize("args, words", [
    (["train", "-m", "gpt-175", "--tp", "8"], "did you mean"),
    (["train", "-m", "llama-2-7b", "--tp", "3"], "plan.tp"),
    (["train", "-m", "llama-2-7b", "--dp", "2", "-n", "8"], "dp*tp*pp*cp"),
    (["train", "-m", "llama-2-7b", "--auto"], "--auto"),
    (["train", "-m", "llama-2-7b", "-c", "no-such-calibration"], "calibration"),
    (["validate", "training", "--file", "/nonexistent.csv"], "no file"),
])
def test_bad_input_is_one_line_exit_2(args, words):
    result = run(*args)
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0], result.output


def test_validate_training_json(priced):
    with priced.patched():  # the rows priced once in the session (tests/priced.py); the CLI's code all runs
        out = json.loads(run("validate", "training", "--json").stdout)
    # the 2021-22 file (18 rows, A100), training_modern.csv (15 rows, H100 and B200) and training_torchtitan.csv
    # (22 rows: A100, H200, and 12 on Meta's 500 W HBM2e H100, H100-96GB-HBM2e-500W, all priced),
    # training_fsdp2.csv (7 rows, H100, all priced: test_training_fsdp2.py),
    # training_bridge.csv (26 rows, H100 and B200) and training_nemo.csv (11 rows, H100, B200, GB200), all priced: their
    # Qwen3-30B (69.0 GB/GPU) and GPT3-20B (80.1 GB/GPU) layouts fit the 79.11 GiB an H100 reports to CUDA, as the
    # runs did (test_training_bridge.py, test_training_nemo.py); training_gptoss.csv (31 rows: H100, B200, B300,
    # GB200, GB300), all priced (the 25.11 H100 row at the release's micro-batch, its table's contradicting it:
    # test_training_gptoss.py); training_bridge_blackwell.csv (100 rows: GB200, GB300, B300, B200), all priced (the two
    # 26.02.01 GB300 Llama3 70B rows at their tag's config layout: test_training_bridge_blackwell.py);
    # training_deepspeed.csv (1 row, A100, priced: test_training_deepspeed.py); training_megatron_readme.csv (9 rows,
    # H100, all priced: test_megatron_readme.py); each on the calibration the one rule picks for its accelerator (GPU profile where
    # one ships, else datasheet)
    gpus = ("a100", "h100", "b200", "h200", "b300", "gb200", "gb300", "grand-teton-h100")
    names = " + ".join(sorted({default_calibration(a) for a in gpus}))
    assert out["suite"] == "training" and out["calibration"] == names
    assert len(out["rows"]) == 18 + 15 + 22 + 7 + 26 + 11 + 31 + 100 + 1 + 9 and out["rows_failed"] == 0
    assert all(r["predicted"] is not None for r in out["rows"])
    assert not any("unknown accelerator" in r["note"] for r in out["rows"])
    assert {"source", "case", "metric", "measured", "predicted", "error_pct"} <= set(out["rows"][0])


@pytest.mark.parametrize("rule, names", [("profile", "A100-SXM4-80GB-profile + B200 + B300 + GB200 + GB300 + "
                                                     "H100-96GB-HBM2e-500W + H100-SXM5-80GB-profile + H200-SXM-141GB"),
                                         ("datasheet", "A100-SXM4-80GB + B200 + B300 + GB200 + GB300 + "
                                                       "H100-96GB-HBM2e-500W + H100-SXM5-80GB + H200-SXM-141GB")])
def test_validate_training_by_calibration_rule(rule, names, priced):
    """``-c profile`` and ``-c datasheet`` are rules applied per row's accelerator, not calibration files."""
    given = rule.upper() if rule == "datasheet" else rule
    with priced.patched(given):
        out = json.loads(run("validate", "training", "-c", given, "--json").stdout)
    # every row priced (the 12 Grand Teton H100 rows on their own part, H100-96GB-HBM2e-500W)
    assert out["calibration"] == names and out["rows_failed"] == 0
    assert run("train", "-m", "llama-2-7b", "-a", "h100", "-n", "8", "--tp", "8", "-c", rule, "--json").exit_code == 0
