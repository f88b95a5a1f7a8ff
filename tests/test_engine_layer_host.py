"""The engine's host time per decoder layer (EngineProfile.layer_host_s): vLLM's CPU runner spends Python per layer
(its attention custom ops) on the thread that computes, so the term adds to a CPU step once per layer; on a GPU
engine it is overlapped host work like kernel dispatch; the step table prices it exactly as iteration_time does."""

import pytest

from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.step_table import StepTable
from capsim.calibration.engine_cal import without_host
from capsim.specs.engine import get_engine
from capsim.errors import SpecError
from capsim.validation.bench_suites import deployment, load_suite

SUITE = load_suite("vllm-cpu")
SHAPES = [dict(decode_seqs=1, decode_kv_tokens=301.0), dict(decode_seqs=8, decode_kv_tokens=2400.0),
          dict(prefill_tokens=700, prefill_seqs=3, prefill_pairs=90000.0, prefill_kv_tokens=700.0, decode_seqs=5,
               decode_kv_tokens=1500.0)]


def test_host_cost_adds_the_per_layer_term_exposed_on_a_cpu_and_overlapped_on_a_gpu():
    cpu = get_engine("vllm-cpu").with_(cpu={"step": (1e-3, 2e-4, 0.0)}, layer_host_s=5e-4)
    assert cpu.host_cost(1, 4).exposed == pytest.approx((1e-3 + 4 * 5e-4, 2e-4, 0.0))
    assert cpu.host_cost(1, 4).overlapped == (0.0, 0.0, 0.0)
    assert cpu.host_cost(1).exposed == pytest.approx((1e-3, 2e-4, 0.0))  # no layers given: no per-layer term
    gpu = get_engine("vllm").with_(layer_host_s=5e-4)
    assert gpu.host_cost(1, 4).overlapped[0] == pytest.approx(get_engine("vllm").host_cost(1).overlapped[0] + 2e-3)
    assert gpu.host_cost(1, 4).exposed == get_engine("vllm").host_cost(1).exposed


def test_no_gpu_profile_prices_a_per_layer_host_term():
    from capsim.specs.engine import engines

    assert [e.name for e in engines().values() if e.layer_host_s and e.device_type == "gpu"] == []


def test_a_negative_per_layer_host_time_is_refused_naming_the_field():
    with pytest.raises(SpecError, match="layer_host_s"):
        get_engine("vllm-cpu").with_(layer_host_s=-1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_cpu_step_grows_by_the_per_layer_term_times_the_layers(shape):
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    a, b = (dep.engine.with_(layer_host_s=x) for x in (0.0, 7e-4))
    ta, tb = (float(iteration_time(dep.model, dep.plan, dep.perf, StepShape(**shape), e, dep.accelerator).total_s)
              for e in (a, b))
    assert tb - ta == pytest.approx(dep.model.layers * 7e-4, rel=1e-9)
    table = StepTable(dep.model, dep.plan, dep.perf, b, dep.accelerator)
    assert table.step_s(**shape) == pytest.approx(tb, rel=1e-9)


def test_the_engine_fit_holds_the_measured_per_layer_term_fixed():
    """calibrate engine fits per step, sequence and prompt token on the user's runs of one model: the per-layer
    term, measured over several depths, stays in the device time the fit adds to (so the profile carries to
    models of other depths)."""
    eng = get_engine("vllm-cpu")
    assert eng.layer_host_s > 0
    assert without_host(eng).layer_host_s == eng.layer_host_s and without_host(eng).cpu == {}
