"""``capsim serve`` and ``capsim validate serving`` through typer's CliRunner; presets and workloads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from capsim import SpecError
from capsim.cli import app
from capsim.data.loaders import load_trace
from capsim.sim.serving.presets import PRESETS, WorkloadSpec, build_workload, preset_spec
from capsim.sim.serving.workload import ArrivalKind, Lengths, diurnal

runner = CliRunner()
KEYS = {"ttft_mean_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_p99_s", "request_throughput_rps",
        "output_tokens_per_s", "goodput", "cost_per_million_output_tokens", "calibration"}


def run(*args: str):
    return runner.invoke(app, list(args))


def test_serve_json_has_the_contract_and_csv_has_every_request(tmp_path):
    path = tmp_path / "req.csv"
    result = run("serve", "-m", "llama-2-7b", "-a", "a100", "-r", "2", "--rate", "3", "--prompt-tokens", "400",
                 "--output-tokens", "80", "-n", "120", "--slo-ttft", "0.5", "--slo-tpot", "0.05", "--price", "2",
                 "--csv", str(path), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) >= KEYS
    assert out["calibration"] == "A100-SXM4-80GB-profile" and out["completed"] == 120
    assert out["cost_per_hour_usd"] == pytest.approx(4.0) and 0 <= out["goodput"] <= 1
    df = pd.read_csv(path)
    assert len(df) == 120 and {"ttft_s", "tpot_s", "e2e_s", "replica"} <= set(df.columns)
    assert df["ttft_s"].mean() == pytest.approx(out["ttft_mean_s"])


def test_serve_table_preset_engines_and_schedulers():
    result = run("serve", "-m", "llama-3-8b", "-a", "h100", "-w", "rag-qa", "-n", "60", "--engine", "tensorrt-llm",
                 "-q", "fp8", "--kv-cache-dtype", "fp8")
    assert result.exit_code == 0, result.output
    assert "TTFT" in result.stdout and "tensorrt-llm" in result.stdout
    for extra in (["--scheduler", "static", "--max-seqs", "4"], ["--engine", "vllm-v0", "--no-cuda-graphs"],
                  ["--chunk-size", "512", "--scheduler", "sarathi"], ["-r", "3", "--prefill-replicas", "1"],
                  ["--arrival", "closed", "--clients", "4"], ["--arrival", "gamma", "--cv", "3"]):
        out = run("serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "40", "--json", *extra)
        assert out.exit_code == 0, (extra, out.output)
        assert json.loads(out.stdout)["completed"] == 40


def test_serve_bad_inputs_exit_2_with_one_line():
    for args in (["-m", "llama-2-7b"],  # no workload
                 ["-m", "llama-2-7b", "-w", "chatbott"],
                 ["-m", "llama-2-7b", "-w", "chatbot", "--engine", "vllm9"],
                 ["-m", "llama-2-7b", "--rate", "2", "--prompt-tokens", "10"]):
        result = run("serve", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "error" in result.output and "Traceback" not in result.output


def test_serve_a_model_that_leaves_no_kv_cache_is_infeasible_exit_1():
    """A valid request whose layout cannot hold any KV cache is infeasible (exit 1) with its reason, not an
    input error."""
    result = run("serve", "-m", "llama-2-70b", "-w", "chatbot", "-n", "5")  # 138 GB of weights on one A100
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("infeasible: plan: llama-2-70b leaves no memory for the KV cache on 1x1 A100")


def test_presets_and_traces():
    assert set(PRESETS) >= {"chatbot", "recommendation", "rag-qa", "azure-conv", "azure-code", "arxiv-summarization"}
    conv = build_workload(preset_spec("azure-conv"))
    assert conv.size == 19366 and conv.arrival_s[0] == 0 and np.all(np.diff(conv.arrival_s) >= 0)
    assert build_workload(preset_spec("azure-code")).size == 8819
    arxiv = build_workload(preset_spec("arxiv-summarization", rate_rps=2.0, requests=500))
    assert arxiv.size == 500 and arxiv.prompt_tokens.max() <= 4096
    for name, p in PRESETS.items():
        assert p.source and p.slo_ttft_s > 0, name
    with pytest.raises(SpecError, match="--trace"):
        build_workload(WorkloadSpec(ArrivalKind.TRACE, trace="arxiv-summarization"))
    assert len(load_trace("distserve-vllm-opt13b/vllm-100-1.csv")) == 100


def test_arrival_processes():
    rng = np.random.default_rng(0)
    wl = build_workload(WorkloadSpec(ArrivalKind.GAMMA, Lengths.fixed(10, 10), rate_rps=5.0, cv=2.0, requests=20000))
    gaps = np.diff(wl.arrival_s)
    assert gaps.mean() == pytest.approx(0.2, rel=0.05) and gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.05)
    t = diurnal(np.array([1.0, 3.0]), 100.0, None, 10_000.0, rng)  # rate 1/s then 3/s, each half of 100 s
    first = np.sum((t % 100) < 50)
    assert first / len(t) == pytest.approx(0.25, abs=0.02)
    p, o = Lengths.lognormal(1000, 0.5, 200, 0.5).draw(50_000, rng)
    assert p.mean() == pytest.approx(1000, rel=0.02) and o.std() / o.mean() == pytest.approx(0.5, rel=0.05)
    u, _ = Lengths.uniform((10, 20), (1, 1)).draw(1000, rng)
    assert u.min() == 10 and u.max() == 20
    batch = build_workload(WorkloadSpec(ArrivalKind.BATCH, Lengths.fixed(5, 5), requests=7))
    assert (batch.arrival_s == 0).all()
    closed = build_workload(WorkloadSpec(ArrivalKind.CLOSED, Lengths.fixed(5, 5), requests=7, clients=3))
    assert closed.closed and closed.clients == 3
