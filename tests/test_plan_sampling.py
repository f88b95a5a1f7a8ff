"""The requests' sampling in the planners: Traffic carries it, the capacity bound and every confirming
simulation price the sampler it needs, and the CLI, the what-ifs and the dashboard take it."""

import json

import pytest
from typer.testing import CliRunner

from capsim import SpecError, get_accelerator, get_model
from capsim.analytic.serving import Sampling
from capsim.calibration import perf_for, perfs_for
from capsim.cli import app
from capsim.plan import confirm
from capsim.plan.serving import Slo, Traffic, bound_table, candidates, capacity_bound, plan_serving
from capsim.sim.serving.fleet import engine_plan
from capsim.sim.serving.workload import Lengths
from capsim.specs.plans import Quantization

MODEL = get_model("llama-3-8b")  # a 128k vocabulary: the sampler's passes are visible in the step
LENGTHS = Lengths.fixed(512, 128)
ORDER = ("greedy", "random", "top-p", "top-p+penalties")  # each adds passes over the logits to the one before


def test_traffic_takes_a_sampling_name_and_refuses_a_bad_one():
    assert Traffic(1.0, LENGTHS).sampling == Sampling()  # vLLM's SamplingParams default: random
    assert Traffic(1.0, LENGTHS, sampling="top-k+penalties").sampling == Sampling.parse("top-k+penalties")
    with pytest.raises(SpecError, match="traffic.sampling"):
        Traffic(1.0, LENGTHS, sampling="beam")


def test_capacity_bound_prices_the_requests_sampler():
    acc = get_accelerator("h100")
    plan, perf = engine_plan("vllm", MODEL, acc, max_batch=64), perf_for(acc)
    bound = {s: capacity_bound(MODEL, plan, acc, perf, "vllm", 512, 128, Slo(tpot_p99_s=10.0), Sampling.parse(s))
             for s in ORDER}
    assert len({b["batch"] for b in bound.values()}) == 1  # the same batch: only the step time differs
    steps = [bound[s]["step_s"] for s in ORDER]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    caps = [bound[s]["capacity_rps"] for s in ORDER]
    assert caps == sorted(caps, reverse=True)


def test_bound_table_uses_the_traffics_sampling():
    cands = candidates(MODEL, [get_accelerator("h100")], (Quantization.NONE,), tps=(1,), pps=(1,))
    slo, perfs = Slo(tpot_p99_s=10.0), perfs_for(["h100"])
    greedy = bound_table(MODEL, cands, Traffic(10.0, LENGTHS, sampling="greedy"), slo, perfs)
    top_p = bound_table(MODEL, cands, Traffic(10.0, LENGTHS, sampling="top-p+penalties"), slo, perfs)
    assert (top_p["step_s"].to_numpy() > greedy["step_s"].to_numpy()).all()


def test_confirming_simulations_run_the_traffics_sampling(monkeypatch):
    seen = []
    real = confirm.simulate
    monkeypatch.setattr(confirm, "simulate", lambda *a, **k: seen.append(a[5].sampling) or real(*a, **k))
    plan = plan_serving(MODEL, Traffic(4.0, LENGTHS, requests=200, sampling="top-p"),
                        Slo(ttft_p99_s=2.0, tpot_p99_s=0.1), ["h100"], perfs_for(["h100"]),
                        quantizations=("none",), workers=1, max_candidates=1)
    assert seen and set(seen) == {Sampling.parse("top-p")}
    out = plan.to_dict()
    assert out["sampling"] == "top-p" and any(n.startswith("sampling top-p") for n in out["notes"])


def test_cli_takes_sampling_and_names_a_bad_one():
    runner = CliRunner()
    bad = runner.invoke(app, ["plan", "serve", "-m", "llama-3-8b", "--sampling", "beam", "--ttft-p99", "2"])
    assert bad.exit_code == 2 and "--sampling" in bad.output
    caps = {}
    for s in ("greedy", "top-p+penalties"):
        r = runner.invoke(app, ["whatif", "quantization", "-m", "llama-3-8b", "--sampling", s, "--json"])
        assert r.exit_code == 0, r.output
        rows = json.loads(r.output)
        caps[s] = {(x["quantization"], x["kv_cache_dtype"]): x["step_s"] for x in rows}
    assert all(caps["top-p+penalties"][k] > caps["greedy"][k] for k in caps["greedy"])


def test_dashboard_pages_take_the_sampling_from_the_link(monkeypatch):
    from ui_helpers import page, param

    from capsim.ui import capacity, serving
    seen = []
    real = capacity.plan_serving
    monkeypatch.setattr(capacity, "plan_serving", lambda m, t, *a, **k: seen.append(t.sampling) or real(m, t, *a, **k))
    capacity.capacity_plan.clear()
    at = page("capacity", accs="A100-SXM4-80GB", quants="none", requests="100", sampling="greedy+penalties")
    assert not at.exception and not at.error and param(at, "sampling") == "greedy+penalties"
    assert seen == [Sampling.parse("greedy+penalties")]
    cfgs = []
    real_sim = serving.simulate
    monkeypatch.setattr(serving, "simulate", lambda *a, **k: cfgs.append(a[5].sampling) or real_sim(*a, **k))
    serving.run_serving.clear()
    at = page("serving", requests="40", loads="1", sampling="top-k")
    assert not at.exception and not at.error
    assert cfgs and {Sampling.parse(c) for c in cfgs} == {Sampling.parse("top-k")}
