"""Pipeline-parallel serving on the dashboard: the serving page's PP input maps to the ServePlan `capsim serve --pp`
builds (same engine_plan, same check, same simulate), a PP the model cannot take is one clear error, results name
each replica's virtual engines, the nearest replica may add stages, the capacity planner shows the PP it chose, and
the serving what-ifs (quantization, sparsity) take PP as `capsim whatif quantization --pp` does."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from ui_helpers import errors, page, param, shown

from capsim.cli import app
from capsim.sim.serving import engine_plan
from capsim.specs.catalog import get_accelerator, get_model
from capsim.ui import serving
from capsim.ui.nearest import nearest_replica, serving_fit


@pytest.fixture
def plans(monkeypatch):
    """The ServePlans the serving page hands to the simulator."""
    seen = []
    real = serving.simulate
    monkeypatch.setattr(serving, "simulate", lambda model, plan, *a, **k: seen.append(plan) or real(model, plan, *a, **k))
    serving.run_serving.clear()
    return seen


def test_pp_input_maps_to_the_plan_the_cli_builds(plans):
    at = page("serving", requests="60", loads="1")
    assert not at.exception and not at.error
    assert [p.pp for p in plans] == [1]
    at.number_input(key="pp").set_value(2).run()
    assert not at.exception and not at.error
    assert param(at, "pp") == "2"
    model, acc = get_model("llama-3-8b"), get_accelerator("A100-SXM4-80GB")
    assert plans[-1] == engine_plan("vllm", model, acc, tp=1, pp=2, replicas=1, quantization="none")
    assert "TP 1 x PP 2" in shown(at.subheader[0].value) and "1 x 2 A100-SXM4-80GB" in shown(at.subheader[0].value)
    table = at.dataframe[0].value  # one row per virtual engine, named by its replica
    assert list(table["replica"]) == [0, 0] and list(table["virtual_engine"]) == [0, 1]


def test_pp_and_replicas_name_every_virtual_engine(plans):
    at = page("serving", requests="60", loads="1", pp="2", replicas="2")
    assert not at.exception and not at.error
    assert (plans[-1].pp, plans[-1].replicas, plans[-1].num_gpus) == (2, 2, 4)
    table = at.dataframe[0].value
    assert list(zip(table["replica"], table["virtual_engine"], strict=True)) == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("pp", ["3", "64"])
def test_a_pp_that_does_not_divide_the_layers_is_one_clear_error(plans, pp):
    at = page("serving", requests="60", loads="1", pp=pp)  # llama-3-8b has 32 layers
    assert not at.exception and not at.metric and not plans
    assert len(at.error) == 1
    assert errors(at) == (f"**plan.pp**: pp={pp} does not divide 32 layers  \nFix: use pp in [1, 2, 4, 8, 16, 32]")
    assert param(at, "pp") == pp, "the value is kept as given, not clamped"


def test_a_pp_below_one_in_a_link_is_named_and_not_used(plans):
    at = page("serving", requests="60", loads="1", pp="0")
    assert not at.exception and "pp=0" in shown(at.warning[0].value)
    assert [p.pp for p in plans] == [1]


def test_a_pipeline_replica_fits_what_one_stage_could_not():
    model, acc = get_model("llama-3-70b"), get_accelerator("A100-SXM4-80GB")  # 141 GB of bf16 weights
    assert "leaves no memory for the KV cache" in serving_fit(model, acc, "vllm", 1, "none")
    assert serving_fit(model, acc, "vllm", 1, "none", pp=4) is None
    why = serving_fit(model, acc, "vllm", 1, "none", need_tokens=10**7, pp=4)
    assert "4 x A100-SXM4-80GB (TP 1 x PP 4)" in why and "per virtual engine" in why


def test_nearest_replica_adds_stages_where_tp_cannot_grow():
    # qwen3-235b-a22b has 4 KV heads: TP stops at 4; int8 weights are 58.8 GB per GPU on a 48 GB L40S
    model, acc = get_model("qwen3-235b-a22b"), get_accelerator("L40S")
    fix = nearest_replica(model, acc, "vllm", 4, "int8")
    assert fix == {"tp": 4, "pp": 2, "quantization": "int8", "change": "PP 1 -> 2"}
    assert serving_fit(model, acc, "vllm", fix["tp"], fix["quantization"], pp=fix["pp"]) is None


def test_the_nearest_replica_button_sets_pp():
    at = page("serving", requests="60", loads="1", model="qwen3-235b-a22b", acc="L40S", tp="4", quant="int8")
    assert not at.exception and not at.metric
    assert "Infeasible" in errors(at) and "PP 1 -> 2" in errors(at)
    at.button[0].click().run()
    assert not at.exception and not at.error and at.metric
    assert (param(at, "tp"), param(at, "pp"), param(at, "quant")) == ("4", "2", "int8")
    assert "TP 4 x PP 2" in shown(at.subheader[0].value)


def test_capacity_planner_shows_the_pp_it_chose():
    # 810 GB of bf16 weights: one 8-GPU A100 node cannot hold llama-3-405b, so every fleet is pipelined
    at = page("capacity", model="llama-3-405b", accs="A100-SXM4-80GB", quants="none", rate="1", ttft="5",
              tpot="0.2", requests="200", timeout=300)
    assert not at.exception and not at.error
    head = shown(at.subheader[0].value)
    confirmed, candidates = at.dataframe[0].value, at.dataframe[-1].value
    assert "pp" in confirmed.columns and "pp" in candidates.columns
    best = confirmed.iloc[0]
    assert best["pp"] > 1 and f"tp{best['tp']} pp{best['pp']}" in head
    viable = candidates[candidates["viable"]] if "viable" in candidates else candidates
    assert len(viable) and (viable["tp"] * viable["pp"] > 8).all()


@pytest.mark.parametrize("study", ["quantization", "sparsity"])
def test_whatif_serving_studies_take_pp_as_the_cli_does(study):
    at = page("whatif", study=study, pp="2")  # llama-3-70b, tp 4, H100
    assert not at.exception and not at.error and param(at, "pp") == "2"
    from capsim.ui import whatif
    table = {"quantization": whatif.quantization_table, "sparsity": whatif.sparsity_table}[study]
    args = (get_model("llama-3-70b"), "H100-SXM5-80GB", 4, "chatbot", 20.0, 2.0, 0.1) + \
        ((None,) if study == "sparsity" else ())
    one, two = table(*args), table(*args, 2)
    ratio = one.iloc[0]["weights_per_gpu_bytes"] / two.iloc[0]["weights_per_gpu_bytes"]
    assert ratio == pytest.approx(2.0, rel=0.05), "two stages hold half the weights each"
    ok = two[two["feasible"]]
    assert len(ok) and (ok["gpus_min"] == 8 * ok["replicas_min"]).all(), "a replica is tp 4 x pp 2 GPUs"
    out = CliRunner().invoke(app, ["whatif", study, "-m", "llama-3-70b", "-a", "H100-SXM5-80GB", "--tp",
                                   "4", "--pp", "2", "--rate", "20", "--ttft-p99", "2", "--tpot-p99", "0.1", "--json"])
    assert out.exit_code == 0, out.output
    cli = json.loads(out.output)
    rows = cli if isinstance(cli, list) else cli.get("rows", cli)
    assert [r["weights_per_gpu_bytes"] for r in rows] == list(two["weights_per_gpu_bytes"])


def test_whatif_pp_that_does_not_divide_the_layers_is_one_clear_error():
    at = page("whatif", study="quantization", pp="3")  # llama-3-70b has 80 layers
    assert not at.exception and len(at.error) == 1
    assert "plan.pp" in errors(at) and "pp=3 does not divide 80 layers" in errors(at)
    out = CliRunner().invoke(app, ["whatif", "quantization", "-m", "llama-3-70b", "--tp", "4", "--pp", "3"])
    assert out.exit_code == 2 and "pp=3 does not divide 80 layers" in out.output


def test_virtual_engines_are_named_by_replica():
    import pandas as pd
    df = pd.DataFrame({"replica": [0, 1, 2, 3], "busy_s": [1.0, 2.0, 3.0, 4.0]})
    assert serving.virtual_engines(df, 1) is df
    named = serving.virtual_engines(df, 2)
    assert list(named.columns) == ["replica", "virtual_engine", "busy_s"]
    assert list(named["replica"]) == [0, 0, 1, 1] and list(named["virtual_engine"]) == [0, 1, 0, 1]
    assert list(serving.virtual_engines(df, 2, label=True)["replica"]) == [
        "0, virtual engine 0", "0, virtual engine 1", "1, virtual engine 0", "1, virtual engine 1"]
    assert list(df["replica"]) == [0, 1, 2, 3], "the simulator's frame is left as it was"
