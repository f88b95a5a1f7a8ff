"""The simulator's step table prices a measured CPU calibration's steps exactly as iteration_time does: attention's
memory branch at the calibration's "attention" bandwidth, its compute branch over keys per sequence, and its
measured residuals (issue 14: before, decode attention on the CPU calibration came out ~5x too fast)."""

import pytest

from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.step_table import StepTable
from capsim.validation.bench_suites import deployment, load_suite

SUITE = load_suite("vllm-cpu")


@pytest.mark.parametrize("shape", [
    dict(decode_seqs=1, decode_kv_tokens=301.0), dict(decode_seqs=8, decode_kv_tokens=2400.0),
    dict(decode_seqs=64, decode_kv_tokens=40000.0),
    dict(prefill_tokens=100, prefill_seqs=1, prefill_pairs=5050.0, prefill_kv_tokens=100.0),
    dict(prefill_tokens=700, prefill_seqs=3, prefill_pairs=90000.0, prefill_kv_tokens=700.0, decode_seqs=5,
         decode_kv_tokens=1500.0),
])
def test_step_table_equals_iteration_time_on_a_measured_cpu_calibration(shape):
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    engine = dep.engine.with_(cpu={"step": (1e-3, 2e-4, 1e-5)})
    table = StepTable(dep.model, dep.plan, dep.perf, engine, dep.accelerator)
    it = iteration_time(dep.model, dep.plan, dep.perf, StepShape(**shape), engine, dep.accelerator)
    assert table.step_s(**shape) == pytest.approx(float(it.total_s), rel=1e-9)
