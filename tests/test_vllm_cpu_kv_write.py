"""vLLM-CPU's own KV-cache write kernel (engines.yaml vllm-cpu kv_write_s): the profile holds the line fitted to the
saved microbenchmark passes, it replaces the generic copy in every layer of a step (iteration_time and the step
table alike), and a malformed term is refused with the field named."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from capsim import SpecError
from capsim.analytic.attention import kv_elems_per_token
from capsim.analytic.serving import StepShape, engine_perf, iteration_time, kv_write_s, layer_token_ops
from capsim.analytic.step_table import StepTable
from capsim.specs.catalog import load_catalog
from capsim.specs.engine import profile_from_dict
from capsim.validation.bench_suites import deployment, load_suite

ROOT = Path(__file__).resolve().parents[1]
PASSES = sorted((ROOT / "capsim" / "data" / "vllm-cpu-host" / "prefill-ops").glob("pass-*.txt"))
SUITE = load_suite("vllm-cpu")
DEP = deployment(SUITE.spec, SUITE.folder)[0]


def _bench():
    spec = importlib.util.spec_from_file_location("vllm_cpu_prefill_ops", ROOT / "benchmarks" / "vllm_cpu_prefill_ops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _measured(pattern: str) -> list[float]:
    return [float(x) * 1e-3 for p in PASSES for x in re.findall(pattern, p.read_text())]


def test_profile_holds_the_line_fitted_to_the_saved_passes(capsys):
    assert len(PASSES) >= 2
    _bench().report([str(p) for p in PASSES])
    per_call, per_byte = map(float, re.search(r"kv_write_s: \[([\d.e+-]+), ([\d.e+-]+)\]", capsys.readouterr().out)
                             .groups())
    assert DEP.engine.kv_write_s == pytest.approx((per_call, per_byte), rel=1e-3)


def test_the_report_reads_each_output_s_element_size(capsys):
    """A bf16 output's points are in 2-byte elements (the Xeon's AMX pass, tests/data/vllm_cpu_xeon/host): the same
    times over half the bytes, so twice the per-byte cost of reading them as fp32 (0.19 ns, not 0.10); outputs of two
    dtypes are refused."""
    bench = _bench()
    host = ROOT / "tests" / "data" / "vllm_cpu_xeon" / "host"
    bench.report([str(host / "prefill-ops-bfloat16.txt")])
    per_byte = float(re.search(r"kv_write_s: \[[\d.e+-]+, ([\d.e+-]+)\]", capsys.readouterr().out).group(1))
    assert per_byte == pytest.approx(1.94e-10, rel=0.02)
    with pytest.raises(SystemExit, match="mix dtypes"):
        bench.report([str(host / "prefill-ops-bfloat16.txt"), str(host / "prefill-ops-float32.txt")])


def test_the_line_prices_the_suite_prompt_within_what_the_kernel_measured():
    """A 256-token prompt of the suite's model (8 KV heads of 64, fp32): alone and in a prefill's order."""
    alone = _measured(r"kv_write_ms\[heads=8,T=256\]: ([\d.]+)")
    in_step = [t / DEP.model.layers for t in _measured(r"\w+_ms\[kv_cache_write,T=256\]: ([\d.]+)")]
    priced = float(kv_write_s(DEP.engine, DEP.model, DEP.plan, 256))
    assert min(alone) * 0.9 <= priced <= max(in_step) * 1.1
    generic = engine_perf(DEP.perf, DEP.engine)[0].ops_s(
        [o for o in layer_token_ops(DEP.model, DEP.plan, 256, 1) if o.name == "kv_cache_write"])
    assert float(generic) < 0.25 * min(alone)  # the generic copy the profile replaces: a fifth of the kernel or less


def test_it_replaces_the_generic_copy_in_every_layer():
    shape = StepShape.prefill(1, 256)
    plain = DEP.engine.with_(kv_write_s=())
    with_k = iteration_time(DEP.model, DEP.plan, DEP.perf, shape, DEP.engine, DEP.accelerator)
    without = iteration_time(DEP.model, DEP.plan, DEP.perf, shape, plain, DEP.accelerator)
    main = engine_perf(DEP.perf, plain)[0]
    generic = float(main.ops_s([o for o in layer_token_ops(DEP.model, DEP.plan, 256, 1) if o.name == "kv_cache_write"]))
    measured = float(kv_write_s(DEP.engine, DEP.model, DEP.plan, 256))
    assert float(with_k.layers_s - without.layers_s) == pytest.approx(DEP.model.layers * (measured - generic), rel=1e-9)
    assert with_k.attention_s == without.attention_s and with_k.head_s == without.head_s
    assert kv_write_s(plain, DEP.model, DEP.plan, 256) is None


def test_it_scales_with_the_bytes_written_and_is_zero_without_tokens():
    per_call, per_byte = DEP.engine.kv_write_s
    n = np.array([0.0, 1.0, 64.0])
    got = kv_write_s(DEP.engine, DEP.model, DEP.plan, n)
    nbytes = n * kv_elems_per_token(DEP.model, 1) * DEP.plan.kv_cache_dtype.bytes
    assert got.tolist() == pytest.approx([0.0, *(per_call + per_byte * nbytes[1:])], rel=1e-12)


@pytest.mark.parametrize("shape", [dict(prefill_tokens=256, prefill_seqs=1, prefill_pairs=32896.0,
                                        prefill_kv_tokens=256.0),
                                   dict(decode_seqs=8, decode_kv_tokens=2400.0)])
def test_step_table_prices_it_as_iteration_time(shape):
    table = StepTable(DEP.model, DEP.plan, DEP.perf, DEP.engine, DEP.accelerator)
    it = iteration_time(DEP.model, DEP.plan, DEP.perf, StepShape(**shape), DEP.engine, DEP.accelerator)
    plain = DEP.engine.with_(kv_write_s=())
    assert table.step_s(**shape) == pytest.approx(float(it.total_s), rel=1e-9)
    assert table.step_s(**shape) > StepTable(DEP.model, DEP.plan, DEP.perf, plain, DEP.accelerator).step_s(**shape)


@pytest.mark.parametrize("bad", [[1e-6], [1e-6, 1e-9, 0.0], [-1e-6, 1e-9]])
def test_a_malformed_term_names_the_field(bad):
    entry = dict(load_catalog("engines")["vllm-cpu"], kv_write_s=bad)
    with pytest.raises(SpecError, match="kv_write_s"):
        profile_from_dict("x", entry)


def test_an_engine_file_keeps_the_measured_kernel(tmp_path):
    """``capsim calibrate engine`` writes the base profile's fields: a fitted vllm-cpu profile still prices vLLM's
    own KV-cache write."""
    from capsim.calibration.engine_file import read_engine_file, write_engine_file
    back = read_engine_file(write_engine_file(DEP.engine.with_(name="mine"), tmp_path / "mine.yaml"))
    assert back.kv_write_s == DEP.engine.kv_write_s
    assert read_engine_file(write_engine_file(DEP.engine.with_(name="g", kv_write_s=()), tmp_path / "g.yaml")) \
        .kv_write_s == ()
