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


@pytest.mark.parametrize("shape", [
    dict(decode_seqs=1, decode_kv_tokens=301.0), dict(decode_seqs=8, decode_kv_tokens=2400.0),
    dict(decode_seqs=64, decode_kv_tokens=40000.0),
    dict(prefill_tokens=700, prefill_seqs=3, prefill_pairs=90000.0, prefill_kv_tokens=700.0, decode_seqs=5,
         decode_kv_tokens=1500.0),
])
@pytest.mark.parametrize("line", [(5.6e-5, 8.3e-11), (1e-7, 8.3e-11)])  # per call above and below the launch
def test_step_table_equals_iteration_time_on_the_engines_measured_decode_kernel(shape, line):
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    engine = dep.engine.with_(decode_attention_s={dep.plan.kv_cache_dtype.value: line})
    table = StepTable(dep.model, dep.plan, dep.perf, engine, dep.accelerator)
    it = iteration_time(dep.model, dep.plan, dep.perf, StepShape(**shape), engine, dep.accelerator)
    assert table.step_s(**shape) == pytest.approx(float(it.total_s), rel=1e-9)
    plain = iteration_time(dep.model, dep.plan, dep.perf, StepShape(**shape), dep.engine, dep.accelerator)
    assert float(it.attention_s) != pytest.approx(float(plain.attention_s), rel=1e-3)  # the line is what priced it


def test_the_measured_decode_kernel_prices_only_its_kv_dtype():
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    other = "bf16" if dep.plan.kv_cache_dtype.value != "bf16" else "fp32"
    engine = dep.engine.with_(decode_attention_s={other: (5.6e-5, 8.3e-11)})
    shape = StepShape(decode_seqs=8, decode_kv_tokens=2400.0)
    assert float(iteration_time(dep.model, dep.plan, dep.perf, shape, engine, dep.accelerator).total_s) == \
        float(iteration_time(dep.model, dep.plan, dep.perf, shape, dep.engine, dep.accelerator).total_s)


def test_a_malformed_decode_attention_line_names_the_field():
    from capsim.errors import SpecError
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    with pytest.raises(SpecError, match="decode_attention_s.fp12"):
        dep.engine.with_(decode_attention_s={"fp12": (1e-5, 1e-10)})
    with pytest.raises(SpecError, match="decode_attention_s.bf16"):
        dep.engine.with_(decode_attention_s={"bf16": (1e-5,)})


def test_an_engine_file_keeps_its_measured_decode_kernel(tmp_path):
    from capsim.calibration.engine_file import read_engine_file, write_engine_file
    dep = deployment(SUITE.spec, SUITE.folder)[0]
    engine = dep.engine.with_(name="with-line", decode_attention_s={"bf16": (3.67e-5, 9.16e-11)})
    back = read_engine_file(write_engine_file(engine, tmp_path / "engine.yaml"))
    assert back.decode_attention_s == {"bf16": (3.67e-5, 9.16e-11)}
