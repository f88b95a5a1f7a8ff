"""capsim validate bench and capsim calibrate engine, end to end on runs of a known engine (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from bench_runs import TRUE, engine_run, write_json
from typer.testing import CliRunner

from capsim.calibration.engine_file import read_engine_file
from capsim.cli import app
from capsim.validation.bench_suites import deployment, load_suite

runner = CliRunner()
SUITE = load_suite("vllm-cpu")
MODEL = str(SUITE.folder / "model" / "config.json")
DEPLOY = ["--hf-config", MODEL, "-c", "cpu-amd-epyc-2c", "-e", "vllm-cpu", "--dtype", "fp32",
          "--flags", "vllm_cpu_kvcache_space=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two Poisson runs and one closed loop of 4 clients, served by an engine with the TRUE host terms on the
    shipped vLLM-CPU deployment's device."""
    tmp = tmp_path_factory.mktemp("runs")
    dev = deployment(SUITE.spec, SUITE.folder)[0].device_time()
    out = {}
    for name, seed, rate, clients in (("fit", 1, 3.0, 0), ("check", 2, 5.0, 0), ("closed", 3, 0.0, 4)):
        rng = np.random.default_rng(seed)
        n = 40
        prompts, outputs = rng.integers(64, 384, n), rng.integers(8, 48, n)
        arrivals = np.zeros(n) if clients else np.cumsum(rng.exponential(1 / rate, n))
        sent, ttft, gaps = engine_run(arrivals, prompts, outputs, TRUE, clients, dev)
        out[name] = write_json(tmp, name, sent, ttft, gaps, prompts, outputs, clients or None)
    return out


def _json(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_calibrate_engine_recovers_the_terms_and_writes_its_provenance(runs, tmp_path):
    out = tmp_path / "mine.yaml"
    report = _json(["calibrate", "engine", "--from", str(runs["fit"]), *DEPLOY, "--out", str(out), "--json"])
    for name, value in TRUE.items():
        assert report["fit"]["terms"][name] == pytest.approx(value, rel=0.1), name
    prof = read_engine_file(out)
    assert prof.cpu == {"step": pytest.approx((TRUE["step_s"], TRUE["sequence_s"], TRUE["prefill_token_s"]),
                                              rel=0.1)}
    raw = yaml.safe_load(out.read_text())["mine"]["provenance"]
    assert raw["files"][0]["sha256"] and raw["base"] == "vllm-cpu" and "residuals" in raw["fit"]


def test_validate_bench_scores_only_the_runs_it_did_not_fit(runs):
    rep = _json(["validate", "bench", str(runs["check"]), str(runs["closed"]), "--calibrate-on", str(runs["fit"]),
                 *DEPLOY, "--json"])
    assert {r["case"] for r in rep["rows"]} == {"check", "closed"}
    means = {(r["case"], r["metric"]): r["error_pct"] for r in rep["rows"]
             if r["metric"] in ("ttft_mean", "tpot_mean", "output_throughput")}
    assert len(means) == 6
    assert max(abs(e) for e in means.values()) < 10, means
    assert any("fitted on fit" in n for n in rep["notes"])


def test_the_fitted_engine_file_is_used_like_any_engine(runs, tmp_path):
    out = tmp_path / "mine.yaml"
    _json(["calibrate", "engine", "--from", str(runs["fit"]), *DEPLOY, "--out", str(out), "--json"])
    deploy = [x for x in DEPLOY if x not in ("-e", "vllm-cpu")]
    rep = _json(["validate", "bench", str(runs["check"]), *deploy, "--engine-file", str(out), "--json"])
    tpot = next(r for r in rep["rows"] if r["metric"] == "tpot_mean")
    assert abs(tpot["error_pct"]) < 10


@pytest.mark.parametrize("args, message", [
    (["-a", "a100"], "not the device of calibration cpu-amd-epyc-2c"),
    (["-e", "vllm"], "vllm-cpu for vLLM's CPU backend"),
    (["--suite", "distserve"], "cannot be combined"),
])
def test_bad_deployments_are_one_line(runs, args, message):
    base = [x for x in DEPLOY if not (args[0] == "-e" and x in ("-e", "vllm-cpu"))]
    result = runner.invoke(app, ["validate", "bench", str(runs["check"]), *base, *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_run_cannot_be_fit_and_scored(runs):
    result = runner.invoke(app, ["validate", "bench", str(runs["fit"]), "--calibrate-on", str(runs["fit"]), *DEPLOY])
    assert result.exit_code == 2 and "also a run to fit on" in result.output


def test_one_client_is_refused_with_the_run_that_would_separate(runs, tmp_path):
    single = tmp_path / "single.json"
    rng = np.random.default_rng(5)
    prompts, outputs = rng.integers(64, 384, 10), rng.integers(8, 48, 10)
    write_json(tmp_path, "single", *engine_run(np.zeros(10), prompts, outputs, TRUE, 1), prompts, outputs, 1)
    result = runner.invoke(app, ["calibrate", "engine", "--from", str(single), *DEPLOY, "--out",
                                 str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "--max-concurrency 16" in result.output
    assert not (tmp_path / "x.yaml").exists()
