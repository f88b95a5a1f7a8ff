"""Bounded work (issue 15, item 2): a simulation's events and memory are estimated before anything is built, and a
request over the limit is refused with the estimate and the option that lowers it, in seconds."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import SpecError, get_accelerator, get_model, load_calibration
from capsim.cli import app
from capsim.plan.serving import Slo, Traffic, plan_serving
from capsim.sim.serving import DEFAULT_MAX_EVENTS, Lengths, ServeConfig, Workload, engine_plan, simulate
from capsim.sim.serving.budget import (
    BYTES_PER_LIMIT_EVENT,
    EVENTS_PER_REPLICA,
    EVENTS_PER_REQUEST,
    check_work,
    estimate_work,
)
from capsim.sim.serving.presets import WorkloadSpec, preset_spec
from capsim.sim.serving.workload import ArrivalKind

MODEL, ACC = get_model("llama-2-7b"), get_accelerator("A100-SXM4-80GB")
PERF = load_calibration("A100-SXM4-80GB").perf()


def test_estimate_counts_requests_prompt_steps_replicas_and_decode_steps_in_step_mode():
    fast = estimate_work(1000, 4, prompt_tokens_mean=3000, output_tokens_mean=200, step_tokens=2048)
    assert fast.events == 1000 * (EVENTS_PER_REQUEST + 2) + 4 * EVENTS_PER_REPLICA  # 3000 tokens: two prompt steps
    step = estimate_work(1000, 4, 3000, 200, 2048, fast=False)
    assert step.events == fast.events + 1000 * 199  # at most one decode step per output token after the first
    assert estimate_work(2000, 4, 3000, 200, 2048).memory_bytes > fast.memory_bytes > 0
    check_work(fast, 1e6)  # under the limit: nothing to say
    with pytest.raises(SpecError, match="--max-events.*1,000 requests on 4 replicas.*raise --max-events"):
        check_work(fast, 1000)
    many_replicas = estimate_work(10, 10**7)  # few events per replica, but their memory is over what 1e7 allow
    assert many_replicas.events < 1e8 and many_replicas.memory_bytes > 1e8 * BYTES_PER_LIMIT_EVENT
    with pytest.raises(SpecError, match="--max-events"):
        check_work(many_replicas, 1e8)


def test_a_simulation_over_the_limit_is_refused_before_it_is_built():
    rng = np.random.default_rng(0)
    p, o = Lengths.fixed(500, 50).draw(200, rng)
    wl = Workload("w", p, o, np.arange(200) * 0.1)
    plan = engine_plan("vllm", MODEL, ACC)
    with pytest.raises(SpecError, match="--max-events.*200 requests"):
        simulate(MODEL, plan, ACC, PERF, wl, ServeConfig(max_events=100))
    assert simulate(MODEL, plan, ACC, PERF, wl, ServeConfig(max_events=1000)).summary["completed"] == 200
    assert ServeConfig().max_events == DEFAULT_MAX_EVENTS


def test_a_workload_spec_is_estimated_before_its_requests_are_drawn():
    spec = WorkloadSpec(ArrivalKind.POISSON, lengths=Lengths.fixed(100, 10), rate_rps=1e6, duration_s=3600)
    assert spec.expected_requests() == pytest.approx(3.6e9)
    assert spec.estimate(1, 2048).events > 1e10
    assert preset_spec("chatbot", requests=500).expected_requests() == 500
    assert preset_spec("azure-conv").estimate(4, 2048) is None  # a replay: the trace's rows bound it


@pytest.mark.parametrize("args", [
    ["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "100000000"],
    ["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "50", "-r", "100000000"],
    ["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "300", "--max-events", "100"],
    ["plan", "serve", "-m", "llama-2-7b", "--rate", "1e12", "--ttft-p99", "1", "-a", "A100-SXM4-80GB,L4"],
])
def test_cli_refuses_work_over_the_limit_in_one_line(args):
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "--max-events" in lines[0] and "events" in lines[0] and "GB" in lines[0], out.output


@pytest.mark.parametrize("value", ["inf", "nan", "0"])
@pytest.mark.parametrize("command", [["serve", "-w", "chatbot", "-n", "30"],
                                     ["plan", "serve", "--rate", "5", "--ttft-p99", "1", "-a", "A100-SXM4-80GB"]])
def test_cli_max_events_is_a_finite_positive_number(command, value):
    out = CliRunner().invoke(app, [*command, "-m", "llama-2-7b", "--max-events", value])
    lines = out.output.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1 and "--max-events" in lines[0], out.output


def test_cli_max_events_raises_the_limit():
    out = CliRunner().invoke(app, ["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "30", "--max-events", "1000",
                                   "--json"])
    assert out.exit_code == 0, out.output


def test_planner_refuses_fleets_it_cannot_simulate():
    with pytest.raises(SpecError, match="--max-events.*replicas"):
        plan_serving(MODEL, Traffic(1e9, Lengths.fixed(512, 128), requests=500), Slo(ttft_p99_s=1.0),
                     ["A100-SXM4-80GB"], {"A100-SXM4-80GB": PERF}, quantizations=("none",), workers=1)


@pytest.mark.parametrize("fast", [True, False])
def test_the_estimate_counts_what_a_run_does(fast):
    """The estimate is of the right size: at least the scheduling decisions a run makes (its timeline rows, one per
    decision of each replica) and, in fast mode, not many times more (the step reference's one event per output
    token is a bound: batching shares a step among sequences)."""
    rng = np.random.default_rng(3)
    p, o = Lengths.lognormal(700, 0.8, 120, 0.8).draw(300, rng)
    wl = Workload("w", p, o, np.cumsum(rng.exponential(1 / 8.0, 300)))
    plan = engine_plan("vllm", MODEL, ACC, replicas=2)
    res = simulate(MODEL, plan, ACC, PERF, wl, ServeConfig(fast=fast))
    assert res.summary["preemptions"] == 0  # the estimate counts no recomputation
    est = estimate_work(wl.size, plan.replicas, float(np.mean(p)), float(np.mean(o)), plan.max_batched_tokens, fast)
    decisions = len(res.timeline)
    assert decisions <= est.events <= (4 if fast else 20) * decisions, (decisions, est.events)


def test_planner_skips_only_the_fleets_over_the_limit():
    """Candidate fleets are capped like a single simulation (their confirming run's requests on the fleet's
    replicas): a fleet over --max-events is not sized (its row says why, with its estimate), the others are, and
    the plan stands on them."""
    from capsim.plan.serving import DEFAULT_RULE
    from capsim.plan.serving_search import _work

    traffic, slo = Traffic(30.0, Lengths.fixed(512, 128), requests=400), Slo(ttft_p99_s=2.0)
    names = ["A100-SXM4-80GB", "L4"]
    perfs = {n: load_calibration(n).perf() for n in names}
    free = plan_serving(MODEL, traffic, slo, names, perfs, quantizations=("none",), workers=1)
    viable = free.table[free.table["viable"]]
    need = {i: _work(MODEL, r, traffic, "vllm", DEFAULT_RULE).limit_needed for i, r in viable.iterrows()}
    cut = float(np.median(sorted(set(need.values()))))  # some candidates over it, some not
    over = {i for i, n in need.items() if n > cut}
    assert over and len(over) < len(need)
    capped = plan_serving(MODEL, traffic, slo, names, perfs, quantizations=("none",), workers=1, max_events=cut)
    key = ["accelerator", "tp", "pp", "quantization", "max_batch"]
    reasons = capped.table.set_index(key)["reason"]
    for i in over:
        reason = reasons.loc[tuple(viable.loc[i, key])]
        assert reason.startswith("not simulated: about") and "over --max-events" in reason, reason
    assert capped.feasible
    sized = capped.table[capped.table["sized"]]
    assert not set(map(tuple, sized[key].to_numpy())) & {tuple(viable.loc[i, key]) for i in over}
