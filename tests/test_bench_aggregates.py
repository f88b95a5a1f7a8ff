"""Aggregate-only results (issue 14, item 3): a SGLang 0.4.6 random-dataset run is redrawn exactly as its client drew
it and its aggregates are scored; runs whose requests the file does not determine are refused naming what is
missing (tests/data/bench_formats, written with each release's fields)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.data.bench import measured_summary, read_bench_runs
from capsim.data.bench_aggregates import draw_046
from capsim.errors import SpecError
from capsim.validation.bench_suites import load_suite

DATA = Path(__file__).parent / "data" / "bench_formats"
SUITE = load_suite("vllm-cpu")
DEPLOY = ["--hf-config", str(SUITE.folder / "model" / "config.json"), "-c", "cpu-amd-epyc-2c", "-e", "vllm-cpu",
          "--dtype", "fp32", "--flags", "vllm_cpu_kvcache_space=1"]
runner = CliRunner()


def _as_sglang_046(input_len, output_len, ratio, n, rate, seed):
    """sglang/bench_serving.py 0.4.6 itself: np.random.seed (L1282), sample_random_requests (L693-702), then
    get_request's gap after every request but the last is sent (L868-884), on the global generator."""
    np.random.seed(seed)
    inputs = np.random.randint(max(int(input_len * ratio), 1), input_len + 1, size=n)
    outputs = np.random.randint(int(output_len * ratio), output_len + 1, size=n)
    t, sends = 0.0, []
    for _ in range(n):
        sends.append(t)
        t += np.random.exponential(1.0 / rate)
    return inputs, outputs, np.array(sends)


@pytest.mark.parametrize(("args"), [(64, 8, 0.5, 20, 4.0, 1), (1024, 1024, 0.0, 300, 2.5, 1), (512, 128, 0.9, 50, 8.0, 42)])
def test_the_redraw_is_the_clients_own(args):
    want = _as_sglang_046(*args)
    got = draw_046(*args[:5], ids=False, seed=args[5])
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_a_046_random_run_is_redrawn_and_its_aggregates_are_measured():
    rated, closed = read_bench_runs(DATA / "sglang-0.4.6-random.jsonl")
    d = json.loads((DATA / "sglang-0.4.6-random.jsonl").read_text().splitlines()[0])
    assert rated.size == 20 and int(rated.prompt_tokens.sum()) == d["total_input_tokens"]
    assert int(rated.output_tokens.sum()) == d["total_output_tokens"]
    np.testing.assert_array_equal(rated.arrival_s, _as_sglang_046(64, 8, 0.5, 20, 4.0, 1)[2])
    m = measured_summary(rated)
    assert m["ttft_mean_s"] == pytest.approx(0.040) and m["e2e_p99_s"] == pytest.approx(0.180)
    assert m["request_throughput_rps"] == pytest.approx(d["request_throughput"])
    assert any("seed 1" in n and "aggregates only" in n for n in rated.notes)
    assert closed.closed_loop and closed.max_concurrency == 4 and closed.arrival_s is None


def test_what_the_file_does_not_determine_is_refused():
    with pytest.raises(SpecError, match="seed 1 gives 907 prompt and 107 output tokens.*922 and 115"):
        read_bench_runs(DATA / "sglang-0.4.6-other-seed.jsonl")
    with pytest.raises(SpecError, match="'sharegpt' dataset.*tokenizer"):
        read_bench_runs(DATA / "sglang-0.4.6-sharegpt.jsonl")
    with pytest.raises(SpecError, match="aggregates only.*v0.3.x.*not determined"):
        read_bench_runs(DATA / "vllm-0.3.3-aggregates.json")


def test_validate_bench_scores_the_aggregates_and_calibrate_engine_refuses_them(tmp_path):
    path = DATA / "sglang-0.4.6-random.jsonl"
    out = runner.invoke(app, ["validate", "bench", str(path), "--json", *DEPLOY])
    assert out.exit_code == 0, out.output[-600:]
    rows = json.loads(out.stdout)["rows"]
    first = [r for r in rows if r["case"].endswith(":1")]
    assert {r["metric"] for r in first} >= {"ttft_mean", "tpot_p99", "itl_median", "e2e_mean", "request_throughput"}
    assert all(r["predicted"] > 0 for r in rows)
    assert first[0]["note"].startswith("the client's own draw of its send times")
    fit = runner.invoke(app, ["calibrate", "engine", "--from", str(path), "--out", str(tmp_path / "e.yaml"), *DEPLOY])
    assert fit.exit_code == 2 and "aggregates only" in fit.output
