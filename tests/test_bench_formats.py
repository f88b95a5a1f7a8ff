"""Benchmark results of SGLang's, NVIDIA's (GenAI-Perf, AIPerf) and older vLLM clients read, replayed and fitted
(issue 14): the fixtures in tests/fixtures/bench are written with the fields each client's code writes (cited in
capsim/data/bench_clients.py and bench_nvidia.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_runs import TRUE, engine_run, write_aiperf, write_genai_perf, write_json, write_sglang
from typer.testing import CliRunner

from capsim.analytic.serving import Sampling
from capsim.cli import app
from capsim.data.bench import FORMATS, read_bench, read_bench_runs, run_sampling
from capsim.data.bench_clients import closed_loop_sends
from capsim.errors import SpecError
from capsim.validation.bench_suites import deployment, load_suite

FIX = Path(__file__).parent / "fixtures" / "bench"
runner = CliRunner()
SUITE = load_suite("vllm-cpu")
DEPLOY = ["--hf-config", str(SUITE.folder / "model" / "config.json"), "-c", "cpu-amd-epyc-2c", "-e", "vllm-cpu",
          "--dtype", "fp32", "--flags", "vllm_cpu_kvcache_space=1"]


def test_sglang_output_details_one_run_per_line():
    runs = read_bench_runs(FIX / "sglang-0.5.23-output-details.jsonl")
    assert [r.name for r in runs] == ["sglang-0.5.23-output-details:1", "sglang-0.5.23-output-details:2"]
    rated, closed = runs
    assert rated.format == "sglang-bench-jsonl" and rated.failed == 1 and rated.size == 2
    assert rated.request_rate == 2.0 and rated.sent_s is None and not rated.closed_loop
    np.testing.assert_allclose(rated.e2e_s, [0.1 + 0.07, 0.2 + 0.02])  # TTFT + sum(ITL): no latencies saved
    assert any("Poisson" in n for n in rated.notes)
    assert closed.closed_loop and closed.max_concurrency == 2  # request_rate Infinity, max_concurrency 2
    np.testing.assert_allclose(closed.sent_s, [0.0, 0.0, 0.17, 0.18])  # the two clients' next sends
    assert run_sampling(closed)[0].name == "greedy"  # sglang.bench_serving sends temperature 0.0
    with pytest.raises(SpecError, match="holds 2 runs"):
        read_bench(FIX / "sglang-0.5.23-output-details.jsonl")


def test_sglang_without_output_details_names_the_flag():
    with pytest.raises(SpecError, match="aggregates only, no per-request data.*--output-details"):
        read_bench_runs(FIX / "sglang-0.5.23-no-details.jsonl")


def test_sglang_trace_timestamps_are_refused(tmp_path):
    line = json.loads((FIX / "sglang-0.5.23-output-details.jsonl").read_text().splitlines()[0])
    (tmp_path / "t.jsonl").write_text(json.dumps(line | {"request_rate": "trace", "dataset_name": "mooncake"}))
    with pytest.raises(SpecError, match="Mooncake trace"):
        read_bench(tmp_path / "t.jsonl")


def test_vllm_0_4_benchmark_serving_states_what_it_lacks():
    run = read_bench(FIX / "vllm-0.4.0-benchmark_serving.json")
    assert run.format == "vllm-bench-json" and run.request_rate == 4.0 and run.max_concurrency is None
    assert run.arrival_s is None and run.sent_s is None  # drawn at replay, never placed in time for a fit
    notes = " ".join(run.notes)
    assert "no burstiness" in notes and "no max_concurrency" in notes and "TTFT + sum(ITL)" in notes
    sampling, why = run_sampling(run)
    assert sampling.name == "greedy" and "temperature 0.0" in why


def test_vllm_0_3_aggregates_and_a_missing_rate_are_errors(tmp_path):
    with pytest.raises(SpecError, match="aggregates only.*from vLLM 0.4.0"):
        read_bench(FIX / "vllm-0.3.2-benchmark_serving.json")
    d = json.loads((FIX / "vllm-0.4.0-benchmark_serving.json").read_text())
    del d["request_rate"]
    (tmp_path / "r.json").write_text(json.dumps(d))
    with pytest.raises(SpecError, match="names no request_rate"):  # never taken as inf
        read_bench(tmp_path / "r.json")


def test_genai_perf_times_from_the_responses_with_text_and_counts_from_usage():
    run = read_bench(FIX / "genai-perf-0.0.16-profile_export.json")
    assert run.format == "genai-perf-profile-export" and run.request_rate == 2.0
    assert list(run.prompt_tokens) == [100, 200] and list(run.output_tokens) == [3, 2]
    np.testing.assert_allclose(run.ttft_s, [0.1, 0.2])  # not the role-only first chunk at half the TTFT
    np.testing.assert_allclose(run.e2e_s, [0.15, 0.225])  # not the usage chunk after the last token
    np.testing.assert_allclose(run.sent_s, [0.0, 0.5])
    assert list(run.itl_counts) == [2, 1]
    assert run.sampling_params == {"temperature": 0.7}
    assert any("measurement windows" in n for n in run.notes)


def test_genai_perf_without_usage_says_it_has_no_token_counts():
    with pytest.raises(SpecError, match="2 of 2 requests have no prompt token count.*include_usage"):
        read_bench(FIX / "genai-perf-0.0.16-no-usage-profile_export.json")


def test_aiperf_records_of_the_profiling_phase():
    run = read_bench(FIX / "aiperf-0.13.0-profile_export.jsonl")
    assert run.format == "aiperf-profile-export" and run.size == 2 and run.failed == 1  # warmup out, cancel failed
    np.testing.assert_allclose(run.ttft_s, [0.1, 0.2])
    np.testing.assert_allclose(run.e2e_s, [0.15, 0.225])
    np.testing.assert_allclose(run.itl_s, [0.02, 0.03, 0.025])
    np.testing.assert_allclose(run.arrival_s, [0.0, 0.5])  # credit issued
    np.testing.assert_allclose(run.sent_s, [0.001, 0.501])  # request started
    assert np.isnan(run.request_rate) and not run.closed_loop
    assert "load mode not recorded" in run.describe() and "1 warmup records left out" in run.describe()


@pytest.mark.parametrize("content", ['{"foo": 1}', "hello,world\n1,2\n", "[1, 2]", '{"a": 1}\n{"b": 2}\n'])
def test_an_unknown_file_is_one_line_naming_the_formats(tmp_path, content):
    path = tmp_path / "mystery.json"
    path.write_text(content)
    result = runner.invoke(app, ["validate", "bench", str(path), *DEPLOY])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "mystery.json is not a benchmark result capsim reads" in line
    for cmd in ("vllm bench serve", "sglang.bench_serving", "profile_export.json", "AIPerf", "per-request CSV"):
        assert cmd in line, cmd
    assert len(FORMATS) == 5


@pytest.fixture(scope="module")
def engine_runs():
    """Runs of an engine with the TRUE host terms on the vLLM-CPU deployment's device: two Poisson runs and two
    closed loops (as (sent, ttft, gaps, prompts, outputs, clients))."""
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    out = {}
    for name, seed, rate, clients in (("fit", 1, 3.0, 0), ("check", 2, 5.0, 0), ("c4", 3, 0.0, 4),
                                      ("c8", 4, 0.0, 8), ("c4-greedy", 3, 0.0, 4), ("c8-greedy", 4, 0.0, 8)):
        # SGLang's client samples greedily (its files record no sampling, and it sends temperature 0.0)
        dev = dep.device_time(Sampling.parse("greedy" if name.endswith("greedy") else "random"))
        rng = np.random.default_rng(seed)
        n = 40
        prompts, outputs = rng.integers(64, 384, n), rng.integers(8, 48, n)
        arrivals = np.zeros(n) if clients else np.cumsum(rng.exponential(1 / rate, n))
        sent, ttft, gaps = engine_run(arrivals, prompts, outputs, TRUE, clients, dev)
        out[name] = (sent, ttft, gaps, prompts, outputs, clients or None)
    return out


def test_closed_loop_sends_are_the_clients_sends(engine_runs):
    sent, ttft, gaps, _, _, clients = engine_runs["c4"]
    e2e = ttft + np.array([sum(g) for g in gaps])
    np.testing.assert_allclose(closed_loop_sends(e2e, clients), sent, atol=1e-9)
    assert not np.allclose(closed_loop_sends(e2e, clients + 1), sent)


def test_every_format_reads_the_same_requests(engine_runs, tmp_path):
    sent, ttft, gaps, prompts, outputs, _ = engine_runs["fit"]
    ref = read_bench(write_json(tmp_path, "v", sent, ttft, gaps, prompts, outputs))
    for path in (write_genai_perf(tmp_path, "g", sent, ttft, gaps, prompts, outputs, rate=3.0),
                 write_aiperf(tmp_path, "a", sent, ttft, gaps, prompts, outputs)):
        run = read_bench(path)
        np.testing.assert_array_equal(run.prompt_tokens, ref.prompt_tokens)
        np.testing.assert_array_equal(run.output_tokens, ref.output_tokens)
        for f in ("ttft_s", "e2e_s", "sent_s", "itl_s"):
            np.testing.assert_allclose(getattr(run, f), getattr(ref, f), atol=2e-9, err_msg=f"{path.name} {f}")


def _json(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("fmt", ["sglang", "genai-perf", "aiperf"])
def test_calibrate_engine_recovers_the_terms_from_each_format(engine_runs, tmp_path, fmt):
    if fmt == "sglang":  # no send times: the closed loops' follow from the client's semaphore
        files = [write_sglang(tmp_path, "runs", [engine_runs["c4-greedy"], engine_runs["c8-greedy"]])]
    elif fmt == "genai-perf":
        files = [write_genai_perf(tmp_path, "fit", *engine_runs["fit"][:5], rate=3.0),
                 write_genai_perf(tmp_path, "c4", *engine_runs["c4"][:5], concurrency=4)]
    else:
        files = [write_aiperf(tmp_path, "fit", *engine_runs["fit"][:5]),
                 write_aiperf(tmp_path, "c4", *engine_runs["c4"][:5])]
    args = [x for f in files for x in ("--from", str(f))]
    report = _json(["calibrate", "engine", *args, *DEPLOY, "--out", str(tmp_path / "e.yaml"), "--json"])
    # Closed loops alone never leave the engine idle, so the TTFT constant is not in SGLang's data (said, left 0).
    hidden = {"ttft_offset_s"} if fmt == "sglang" else set()
    assert set(report["fit"]["not_in_data"]) == hidden
    for name, value in TRUE.items():
        if name not in hidden:
            assert report["fit"]["terms"][name] == pytest.approx(value, rel=0.1), (fmt, name)


@pytest.mark.parametrize("fmt", ["sglang", "genai-perf", "aiperf", "vllm-0.4"])
def test_validate_bench_replays_each_format_fitted_on_another(engine_runs, tmp_path, fmt):
    sent, ttft, gaps, prompts, outputs, _ = engine_runs["check"]
    if fmt == "sglang":
        check = write_sglang(tmp_path, "check", [engine_runs["c8-greedy"]])
        case = "check"
    elif fmt == "genai-perf":
        check = write_genai_perf(tmp_path, "check", sent, ttft, gaps, prompts, outputs, rate=5.0)
        case = "check"
    elif fmt == "aiperf":
        check = write_aiperf(tmp_path, "check", sent, ttft, gaps, prompts, outputs)
        case = "check"
    else:  # benchmark_serving.py v0.4-v0.6: no send times, arrivals drawn from its rate (Poisson, said)
        path = write_json(tmp_path, "check", sent, ttft, gaps, prompts, outputs)
        d = json.loads(path.read_text())
        for k in ("burstiness", "max_concurrency", "start_times", "latencies"):
            d.pop(k, None)
        d["request_rate"] = 5.0
        path.write_text(json.dumps(d))
        check, case = path, "check"
    fit = write_json(tmp_path, "fit", *engine_runs["fit"][:5])
    rep = _json(["validate", "bench", str(check), "--calibrate-on", str(fit), *DEPLOY, "--json"])
    rows = {r["metric"]: r for r in rep["rows"] if r["case"] == case}
    assert {"ttft_mean", "tpot_mean", "e2e_mean", "output_throughput"} <= set(rows), rows.keys()
    if fmt != "vllm-0.4":  # the same arrivals (or clients) as measured: the fitted engine matches
        assert abs(rows["tpot_mean"]["error_pct"]) < 10, rows["tpot_mean"]
    notes = " ".join(rep["notes"])
    assert ("arrivals drawn" in notes) == (fmt == "vllm-0.4")


def test_a_rate_run_without_send_times_cannot_be_fitted(engine_runs, tmp_path):
    path = write_json(tmp_path, "old", *engine_runs["fit"][:5])
    d = json.loads(path.read_text())
    for k in ("burstiness", "max_concurrency", "start_times", "latencies"):
        d.pop(k)
    d["request_rate"] = 3.0
    path.write_text(json.dumps(d))
    result = runner.invoke(app, ["calibrate", "engine", "--from", str(path), *DEPLOY, "--out",
                                 str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "records no send times" in result.output


@pytest.mark.parametrize("event", [
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "\"hi"}}]},
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]},
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": None}}]},
    {"object": "text_completion", "choices": [{"index": 0, "text": " the"}]},
    {"object": "text_completion", "choices": [{"index": 0, "text": ""}]},
])
def test_the_raw_text_check_agrees_with_parsing(event):
    from capsim.data.bench_nvidia import HAS_TEXT, _text

    raw = "data: " + json.dumps(event) + "\n\n"
    assert bool(HAS_TEXT.search(raw)) == bool(_text(event))


def test_a_run_is_not_fit_and_scored_under_another_name(tmp_path):
    src = FIX / "sglang-0.5.23-output-details.jsonl"
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes(src.read_bytes())
    result = runner.invoke(app, ["validate", "bench", str(copy), "--calibrate-on", str(src), *DEPLOY])
    assert result.exit_code == 2 and "also a run to fit on" in result.output, result.output
