"""vLLM 0.32.0's CPU backend on a 2-core Intel Xeon with AMX, replayed uncalibrated (device calibration measured there,
the vllm-cpu engine profile from facts): runs capsim was not tuned to, in fp32 and in bf16 (tests/data/vllm_cpu_xeon,
its README gives the commands, times and load). Issue 14's uncalibrated targets: one request at a time, TTFT and TPOT
within 15%; runs up to 80% of saturation, throughput and mean TTFT and TPOT within 20%. Known misses are strict
xfails with the measured reason."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from capsim.calibration import load_calibration, write_calibration
from capsim.data.bench import read_bench
from capsim.validation.bench import bench_report
from capsim.validation.bench_suites import deployment

DATA = Path(__file__).parent / "data" / "vllm_cpu_xeon"
CALIBRATION = DATA / "cpu-intel-r-xeon-r-processor-2c.json"
FLAGS = "max_model_len=2048;vllm_cpu_kvcache_space=1;vllm_cpu_omp_threads_bind=auto"
SATURATION = {"fp32": 7.38, "bf16": 13.83}  # burst.json's request throughput


def _report(dtype: str, names: list[str], calibration: Path = CALIBRATION) -> dict[tuple[str, str], float]:
    spec = {"model_config": "model/config.json", "model_name": "vllm-cpu-tiny-llama", "engine": "vllm",
            "engine_version": "0.32.0", "device_type": "cpu", "flags": FLAGS, "precision": dtype, "tp": 1}
    dep, _ = deployment(spec, DATA, str(calibration))
    report = bench_report([read_bench(DATA / dtype / n) for n in names], dep)
    return {(r.case, r.metric): r.error_pct for r in report.rows}


def _low_load(dtype: str) -> list[str]:
    runs = json.loads((DATA / dtype / "manifest.json").read_text())["runs"]
    return [r["file"] for r in runs if r["kind"] == "rate" and float(r["file"][5:-5]) <= 0.8 * SATURATION[dtype]]


# fp32 one request at a time: TPOT +26.7% (TTFT +9.7%). The engine's host terms were measured on the EPYC (2.95 ms
# + 0.17 ms a sequence a step); in place on this Xeon its host time per decode step is 1.8 ms at one sequence
# (benchmarks/vllm_cpu_step_profile.py, 17:46 UTC), and the machine ran 11.28 ms decode steps during the served run
# against 13.65 ms in place half an hour later (drift). bf16: TPOT +6.7%, TTFT -16.3% (-41.0% before the first
# calls of new GEMM shapes were priced).
MISSES = {
    ("fp32", "tpot_mean"): "+26.7%: the vllm-cpu engine profile's host terms were measured on the EPYC; on this Xeon "
                           "the engine's host time per decode step is ~1 ms less",
    ("bf16", "ttft_mean"): "-16.3%: the served prompt pays more than its step and the first calls of its shapes "
                           "(in place, vLLM's 256-token bf16 prefill step took 23.8 ms, capsim 25.9 ms); unexplained",
}


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("metric", ["ttft_mean", "tpot_mean"])
def test_one_request_at_a_time_within_15_pct(dtype, metric, request):
    if (dtype, metric) in MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=MISSES[(dtype, metric)]))
    err = _report(dtype, ["single.json"])[("single", metric)]
    assert abs(err) <= 15.0, f"{dtype} single {metric} {err:+.1f}%"


def test_bf16_first_calls_of_new_shapes_are_most_of_what_the_single_request_ttft_was_missing(tmp_path):
    """Without the calibration's first-call costs the bf16 prompt is priced 41% fast; with them, 16%."""
    cal = load_calibration(CALIBRATION)
    bare = write_calibration(replace(cal, fitted=replace(cal.fitted, gemm=replace(cal.fitted.gemm, first_call={}))),
                             tmp_path / "bare.json")
    without = _report("bf16", ["single.json"], bare)[("single", "ttft_mean")]
    with_first_calls = _report("bf16", ["single.json"])[("single", "ttft_mean")]
    assert without < -35.0 and abs(with_first_calls) < abs(without) / 2, (without, with_first_calls)


# Up to 80% of saturation. fp32: 1.5 req/s TPOT +22.2% (3 req/s +19.3%), 2-8 clients within 20%. bf16: every TPOT
# within 9%; 2.8 req/s TTFT -20.9% (the single request's miss, at low load).
LOW_LOAD_MISSES = {
    ("fp32", "rate-1.5", "tpot_mean"): "+22.2%: the engine host terms measured on the EPYC (see MISSES)",
    ("bf16", "rate-2.8", "ttft_mean"): "-20.9%: as the single request's TTFT (see MISSES)",
}
LOW_LOAD = [(dtype, name, metric) for dtype in ("fp32", "bf16") for name in _low_load(dtype)
            for metric in ("ttft_mean", "tpot_mean", "request_throughput")]


@pytest.fixture(scope="module")
def low_load_errors():
    return {dtype: _report(dtype, _low_load(dtype)) for dtype in ("fp32", "bf16")}


@pytest.mark.parametrize(("dtype", "name", "metric"), LOW_LOAD)
def test_runs_up_to_80_pct_of_saturation_within_20_pct(dtype, name, metric, low_load_errors, request):
    case = name[:-5]
    if (dtype, case, metric) in LOW_LOAD_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=LOW_LOAD_MISSES[(dtype, case, metric)]))
    err = low_load_errors[dtype][(case, metric)]
    assert abs(err) <= 20.0, f"{dtype} {case} {metric} {err:+.1f}%"
