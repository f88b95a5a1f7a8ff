"""One planning answer: the README's serving example gives the same fleet through the Python API, the CLI and the
dashboard's capacity planner, because all three call one search with the same inputs.

The search itself runs once here: every call goes through a recorder that keys it by its bound arguments (the
worker count left out: the answer does not depend on it, tests/test_plan_confirm.py) and computes each distinct
key once. Three faces, one key: one search with one set of inputs; each face then reports the fleet itself.
"""

import inspect
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

import capsim.cli.plan
import capsim.plan.serving
import capsim.ui.capacity
from capsim import get_model
from capsim.calibration import perfs_for
from capsim.cli import app
from capsim.plan.serving import QUANTIZATIONS, Slo, Traffic, plan_serving
from capsim.sim.serving.presets import get_preset

README = Path(__file__).resolve().parents[1] / "README.md"
FLEET = ("accelerator", "tp", "pp", "quantization", "max_batch", "replicas", "gpus", "cost_per_hour_usd",
         "cost_per_million_output_tokens")


def readme_command() -> list[str]:
    """The README's `capsim plan serve` example, as its words."""
    text = README.read_text()
    found = re.search(r"^capsim plan serve -m llama-3-70b .*?(?<!\\)$", text, re.M | re.S)
    assert found, "the README's serving-plan example is gone"
    return shlex.split(found.group(0).replace("\\\n", " "))[1:]


@pytest.fixture
def recorder(monkeypatch):
    keys, results = [], {}
    signature = inspect.signature(plan_serving)

    def recording(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = repr({k: ({a: p.name for a, p in v.items()} if k == "perfs" else v)  # a Perf by its calibration
                    for k, v in bound.arguments.items() if k != "workers"})
        keys.append(key)
        if key not in results:
            results[key] = plan_serving(*args, **kwargs)
        return results[key]

    for module in (capsim.plan.serving, capsim.cli.plan, capsim.ui.capacity):
        monkeypatch.setattr(module, "plan_serving", recording)
    return keys


def test_readme_example_gives_one_fleet_through_api_cli_and_dashboard(recorder):
    args = readme_command()
    assert args[:2] == ["plan", "serve"] and "--price" in args and "--limit" in args
    accs = ["H100-SXM5-80GB", "A100-SXM4-80GB", "H200-SXM-141GB", "L40S", "B200", "MI300X"]

    api = capsim.plan.serving.plan_serving(get_model("llama-3-70b"), Traffic(200.0, get_preset("chatbot").lengths),
                                           Slo(ttft_p99_s=2.0, tpot_p99_s=0.1), accs, perfs_for(accs), {"MI300X": 2.5},
                                           {"B200": 64})
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    cli = json.loads(out.stdout)["best"]
    dash = capsim.ui.capacity.capacity_plan(get_model("llama-3-70b"), "chatbot", 200.0, 2.0, 0.1, None, tuple(accs),
                                            QUANTIZATIONS, "vllm", 0, None, (("MI300X", 2.5),), (("B200", 64),))["best"]

    assert len(recorder) == 3 and len(set(recorder)) == 1, "the three faces asked different questions"
    assert api.feasible and api.best
    for key in FLEET:
        assert cli[key] == pytest.approx(api.best[key]) if isinstance(cli[key], float) else cli[key] == api.best[key]
        assert dash[key] == api.best[key], key
    assert api.best["precise"] or any("less precise" in n for n in api.notes)
