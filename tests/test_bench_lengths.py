"""GenAI-Perf exports without usage (issue 14, item 3): the token counts the file fixes without a tokenizer are read,
the rest are refused in one line naming what is missing and the flag that supplies it (tests/data/bench_formats)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.data.bench import read_bench_runs
from capsim.data.bench_lengths import GivenLengths, capped_output
from capsim.errors import SpecError
from capsim.validation.bench_suites import load_suite

DATA = Path(__file__).parent / "data" / "bench_formats"
FIX = Path(__file__).parent / "fixtures" / "bench"
SUITE = load_suite("vllm-cpu")
DEPLOY = ["--hf-config", str(SUITE.folder / "model" / "config.json"), "-c", "cpu-amd-epyc-2c", "-e", "vllm-cpu",
          "--dtype", "fp32", "--flags", "vllm_cpu_kvcache_space=1"]


def test_the_cap_fixes_the_output_but_the_text_prompt_needs_input_len():
    path = DATA / "genai-perf-0.0.16-capped-no-usage.json"
    with pytest.raises(SpecError, match=r"2 of 2 requests have no prompt token count.*--input-len") as err:
        read_bench_runs(path)
    assert "no output token count" not in str(err.value)  # max_tokens with ignore_eos / finish_reason length
    run = read_bench_runs(path, GivenLengths(input_len=100))[0]
    assert list(run.output_tokens) == [4, 3] and list(run.prompt_tokens) == [100, 100]
    assert any("--input-len 100 given" in n for n in run.notes)
    assert any("max_tokens" in n for n in run.notes)
    run = read_bench_runs(path, GivenLengths(input_len=100, output_len=9))[0]
    assert list(run.output_tokens) == [4, 3]  # the file's own cap wins over a stated length


def test_token_id_prompts_and_ignore_eos_need_no_flag():
    run = read_bench_runs(DATA / "genai-perf-0.0.16-token-ids-no-usage.json")[0]
    assert list(run.prompt_tokens) == [120, 120] and list(run.output_tokens) == [3, 3]
    assert run.closed_loop and run.max_concurrency == 2


def test_an_eos_stop_is_not_counted_from_its_chunks():
    path = DATA / "genai-perf-0.0.16-eos-no-usage.json"
    with pytest.raises(SpecError, match=r"1 of 1 requests have no output token count.*--output-len"):
        read_bench_runs(path, GivenLengths(input_len=100))  # three chunks, but chunks are not tokens
    assert list(read_bench_runs(path, GivenLengths(100, 5))[0].output_tokens) == [5]


def test_a_triton_text_run_needs_both_lengths():
    path = DATA / "genai-perf-0.0.16-triton-text.json"
    with pytest.raises(SpecError, match="no prompt token count.*no output token count"):
        read_bench_runs(path)
    run = read_bench_runs(path, GivenLengths(50, 3))[0]
    assert run.size == 2 and list(run.output_tokens) == [3, 3]


@pytest.mark.parametrize(("payload", "raws", "want"), [
    ({"max_tokens": 8, "ignore_eos": True}, [], 8),
    ({"max_tokens": 8, "min_tokens": 8}, [], 8),
    ({"max_tokens": 8, "min_tokens": 4}, [], None),
    ({"max_tokens": 8, "ignore_eos": True, "stop": ["\n"]}, [], None),  # a stop string can end it first
    ({"max_tokens": 8}, ['"finish_reason": "length"'], 8),
    ({"max_tokens": 8}, ['"finish_reason": "stop"'], None),
    ({"ignore_eos": True}, [], None),
    ({"max_completion_tokens": 6, "ignore_eos": True}, [], 6),
])
def test_capped_output(payload, raws, want):
    assert capped_output(payload, raws) == want


def test_the_cli_takes_input_len_and_refuses_it_for_files_with_counts():
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", "bench", str(DATA / "genai-perf-0.0.16-capped-no-usage.json"),
                             "--input-len", "100", "--json", *DEPLOY])
    assert ok.exit_code == 0, ok.output[-600:]
    bad = runner.invoke(app, ["validate", "bench", str(FIX / "sglang-0.5.23-output-details.jsonl"), "--input-len",
                              "100", *DEPLOY])
    assert bad.exit_code == 2 and "records its own token counts" in bad.output
