"""A GEMM shape's first call: a CPU's oneDNN creates (JIT-compiles) a primitive the first time it meets a problem
shape and reuses it after (measured on an Intel Xeon with AMX: a prompt of a length vLLM 0.32.0 had not run cost
8-20 ms more in bf16 than the same length again). The calibration records each packed GEMM's first call; the fit
keeps a line over rows; the simulator pays it once per new step token count and logit row count per replica."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim.analytic.step_table import StepTable
from capsim.calibration import load_calibration, write_calibration
from capsim.calibration.measured import first_call_fit
from capsim.cli import app
from capsim.perf import Perf
from capsim.perf.params import DeviceParams
from capsim.sim.serving.fleet import engine_plan
from capsim.specs.hf import from_hf_config

CONFIG = "capsim/data/vllm-cpu/model/config.json"
# s per call, per input element, per weight element: the bf16 fit on the Intel Xeon with AMX (tests/data/vllm_cpu_xeon)
LINE = (1.8e-3, 3.4e-9, 8.9e-10)


def test_the_fit_recovers_the_first_call_costs_through_a_long_tail():
    rng = np.random.default_rng(0)
    m = np.tile([1, 4, 16, 64, 256, 512], 20).astype(float)
    n = rng.choice([512, 1536, 2816, 8192], m.size).astype(float)
    k = rng.choice([512, 1408, 2048], m.size).astype(float)
    extra = LINE[0] + LINE[1] * m * k + LINE[2] * n * k + rng.normal(0, 2e-4, m.size)
    extra[::10] += 0.02  # one draw in ten hit by something else (a page fault storm, another job)
    a, b, c = first_call_fit(m, n, k, extra)
    assert a == pytest.approx(LINE[0], rel=0.2) and b == pytest.approx(LINE[1], rel=0.2)
    assert c == pytest.approx(LINE[2], rel=0.2)
    assert max(first_call_fit(m, n, k, -1e-5 * np.ones_like(m))) < 1e-9  # no cost measured: none priced (< 1 ns)


@pytest.fixture(scope="module")
def with_first_calls(tmp_path_factory):
    """The shipped 2-core EPYC calibration with a first-call line on its packed fp32 path."""
    cal = load_calibration("cpu-amd-epyc-2c")
    fitted = replace(cal.fitted, gemm=replace(cal.fitted.gemm, first_call={"fp32@onednn_packed": LINE}))
    return write_calibration(replace(cal, name="cpu-first-calls", fitted=fitted),
                             tmp_path_factory.mktemp("cal") / "cpu-first-calls.json")


def test_perf_prices_a_first_call_only_where_measured(with_first_calls):
    plain = load_calibration("cpu-amd-epyc-2c").perf()
    assert not plain.params.gemm.first_call and float(plain.gemm_first_call_s(64, 512, 512, "fp32")) == 0.0
    params = load_calibration(with_first_calls).perf().params
    assert DeviceParams.from_dict(params.to_dict()).gemm.first_call == params.gemm.first_call  # round trip
    perf = Perf(replace(params, gemm=replace(params.gemm, path="onednn_packed")))
    assert float(perf.gemm_first_call_s(64, 1536, 512, "fp32")) == pytest.approx(
        LINE[0] + 64 * 512 * LINE[1] + 1536 * 512 * LINE[2])


def test_a_replica_pays_each_new_shape_once(with_first_calls):
    model = from_hf_config(CONFIG)
    perf = load_calibration(with_first_calls).perf()
    plan = engine_plan("vllm-cpu", model, None, tp=1, dtype="fp32")
    table = StepTable(model, plan, perf, "vllm-cpu")
    tokens, rows = set(), set()
    linears = {"qkv": (1536, 512), "o": (512, 512), "gate_up": (2816, 512), "down": (512, 1408)}  # (n, k)

    def layer(m):  # one primitive per distinct linear, shared by every layer
        return sum(LINE[0] + LINE[1] * m * k + LINE[2] * n * k for n, k in linears.values())

    head = LINE[0] + LINE[1] * 1 * 512 + LINE[2] * 32000 * 512
    assert table.first_call_s(300, 1, tokens, rows) == pytest.approx(layer(300) + head)
    assert table.first_call_s(300, 1, tokens, rows) == 0.0  # seen: the cached primitive
    assert table.first_call_s(301, 1, tokens, rows) == pytest.approx(layer(301))
    assert not StepTable(model, plan, load_calibration("cpu-amd-epyc-2c").perf(), "vllm-cpu").first_calls


def test_serving_on_a_calibration_with_first_calls_pays_them(with_first_calls):
    args = ["serve", "--hf-config", CONFIG, "-e", "vllm-cpu", "--dtype", "fp32", "--rate", "1", "--prompt-tokens",
            "128", "--output-tokens", "16", "-n", "20", "--json", "--calibration"]
    runner = CliRunner()
    out = {}
    for name in ("cpu-amd-epyc-2c", str(with_first_calls)):
        result = runner.invoke(app, [*args, name])
        assert result.exit_code == 0, result.output
        out[name] = json.loads(result.stdout)
    base, paid = out["cpu-amd-epyc-2c"], out[str(with_first_calls)]
    assert paid["ttft_mean_s"] > base["ttft_mean_s"]  # the first prompt of each length pays its primitives
    # every prompt is 128 tokens: the layers' primitives are paid once, not once per request
    once = sum(LINE[0] + LINE[1] * 128 * k + LINE[2] * n * k for n, k in ((1536, 512), (512, 512), (2816, 512),
                                                                       (512, 1408)))
    assert paid["ttft_mean_s"] - base["ttft_mean_s"] < once


def test_a_placeholder_step_is_never_first_and_raises_no_warning():
    """engine_obs._first_seen: requests that did not run alone are placed at an infinite time (no step of theirs to
    charge); they are never first, and the comparison must not warn (inf - inf) on the user's terminal."""
    import warnings

    from capsim.calibration.engine_obs import _first_seen

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _first_seen(np.array([1.0, 1.0005, 2.0, np.inf, np.inf]), np.array([5.0, 5.0, 5.0, -1.0, -1.0]))
    assert got.tolist() == [True, True, False, False, False]  # within the clustering tolerance of the first: same step
