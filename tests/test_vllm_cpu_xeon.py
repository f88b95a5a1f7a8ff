"""vLLM 0.32.0's CPU backend on a 2-core Intel Xeon with AMX, replayed uncalibrated (device calibration measured there,
the vllm-cpu engine profile from facts): runs capsim was not tuned to, in fp32 and in bf16 (tests/data/vllm_cpu_xeon,
its README gives the commands, times and load). Issue 14's uncalibrated targets: one request at a time, TTFT and TPOT
within 15%; runs up to 80% of saturation, throughput and mean TTFT and TPOT within 20%. Known misses are strict
xfails with the measured reason."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from capsim.calibration import load_calibration, write_calibration
from capsim.cli.deploy import deployment
from capsim.data.bench import read_bench
from capsim.validation.bench import bench_report

DATA = Path(__file__).parent / "data" / "vllm_cpu_xeon"
CALIBRATION = DATA / "cpu-intel-r-xeon-r-processor-2c.json"
FLAGS = "max_model_len=2048;vllm_cpu_kvcache_space=1;vllm_cpu_omp_threads_bind=auto"
SATURATION = {"fp32": 7.38, "bf16": 13.83}  # burst.json's request throughput


def _deployment(dtype: str, calibration: Path, engine_file: Path | None = None, model: Path = DATA / "model"):
    """The deployment `capsim validate bench` builds for these runs: ``model`` on ``calibration``, with the catalog's
    vllm-cpu profile or ``engine_file``."""
    return deployment(None, model / "config.json", None, str(calibration), None,
                      None if engine_file else "vllm-cpu", engine_file, FLAGS, dtype)[0]


def _errors(paths: list[Path], dep) -> dict[tuple[str, str], float]:
    """Errors (%) of the runs at ``paths`` replayed on ``dep``, by (run, metric)."""
    return {(r.case, r.metric): r.error_pct for r in bench_report([read_bench(p) for p in paths], dep).rows}


def _report(dtype: str, names: list[str], calibration: Path = CALIBRATION, folder: Path = DATA,
            engine_file: Path | None = None) -> dict[tuple[str, str], float]:
    """Errors (%) of the runs ``names`` in ``folder``/``dtype`` replayed as `capsim validate bench` does, on
    ``calibration``, with the catalog's vllm-cpu profile or ``engine_file``."""
    return _errors([folder / dtype / n for n in names], _deployment(dtype, calibration, engine_file))


def _runs(dtype: str, folder: Path = DATA) -> list[dict]:
    return json.loads((folder / dtype / "manifest.json").read_text())["runs"]


def _low_load(dtype: str, folder: Path = DATA, saturation: dict[str, float] = SATURATION) -> list[str]:
    return [r["file"] for r in _runs(dtype, folder)
            if r["kind"] == "rate" and float(r["file"][5:-5]) <= 0.8 * saturation[dtype]]


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


# Pass 2 (tests/data/vllm_cpu_xeon/pass-2, README there): the same runs two hours later, bracketed by the engine's host
# time measured in place (host/: benchmarks/vllm_cpu_step_profile.py on the 768-wide model, not the suite's; its
# engine files hold the vllm-cpu profile with those terms), then a device calibration measured again at once.
PASS2 = DATA / "pass-2"
PASS2_CALIBRATION = PASS2 / "cpu-intel-r-xeon-r-processor-2c.json"
HOST_ENGINE = {"fp32": DATA / "host" / "engine-float32.yaml", "bf16": DATA / "host" / "engine-bfloat16.yaml"}
PASS2_SATURATION = {"fp32": 8.03, "bf16": 14.95}  # pass-2 burst.json's request throughput


@pytest.fixture(scope="module")
def pass2_errors():
    """Every pass-2 run's errors, on pass 2's calibration, with the catalog's vllm-cpu profile and the in-place one."""
    return {(dtype, which): _report(dtype, [r["file"] for r in _runs(dtype, PASS2)], PASS2_CALIBRATION, PASS2,
                                    HOST_ENGINE[dtype] if which == "host" else None)
            for dtype in ("fp32", "bf16") for which in ("catalog", "host")}


def _bench(name: str):
    """The script ``benchmarks/<name>.py`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, DATA.parents[2] / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_host_engine_files_hold_the_in_place_host_terms():
    """host/engine-*.yaml: the catalog's vllm-cpu profile with cpu.step as the saved in-place profiles fit it."""
    import numpy as np

    from capsim.calibration.engine_file import read_engine_file
    from capsim.specs.engine import get_engine

    prof = _bench("vllm_cpu_step_profile")
    prof.CALIBRATION.append(str(CALIBRATION))  # as --report --calibration: the EPYC's has no bf16
    for dtype, name in (("fp32", "float32"), ("bf16", "bfloat16")):
        paths = sorted((DATA / "host").glob(f"large-{name}*.json"))
        step, seq, _ = prof.host_fit(paths)
        per_token, *_ = prof.prefill_fit(paths, step, seq)
        engine = read_engine_file(HOST_ENGINE[dtype])
        assert engine.cpu["step"] == pytest.approx((step, seq, per_token), rel=1e-6)
        catalog = get_engine("vllm-cpu")
        assert engine.cpu["step"][0] < 0.6 * catalog.cpu["step"][0]  # this Xeon's engine host: about half the EPYC's
        assert engine.sampler_s == catalog.sampler_s and engine.kv_write_s == catalog.kv_write_s
    # the serving path measured in place (host/serving-path: vllm_cpu_bench.py --plan host), 9.5 ms to the EPYC's 5.1
    path = float(np.median(_bench("vllm_cpu_serving_path").serving_path_s(DATA / "host" / "serving-path" /
                                                                         "single.json")))
    for dtype in ("fp32", "bf16"):
        assert read_engine_file(HOST_ENGINE[dtype]).ttft_offset_s == pytest.approx(path)
    assert path > 1.5 * get_engine("vllm-cpu").ttft_offset_s
    # bf16 decode attention: the line through vLLM's attention backend timed in place on the two unseen shapes' models
    # (step-profile-shape-{768,1024}-bfloat16.json, --report --attention); fp32's was not timed in place: the
    # calibration's price
    kv_dtype, (per_call, per_byte, rms, _worst) = prof.attention_report(
        [DATA / "host" / f"step-profile-shape-{w}-bfloat16.json" for w in (768, 1024)], str(PASS2_CALIBRATION))
    assert kv_dtype == "bf16" and rms < 0.05
    # not in the engine files (test_the_in_place_attention_line_prices_served_steps_fast): the calibration's price
    assert not any(read_engine_file(HOST_ENGINE[d]).decode_attention_s for d in ("fp32", "bf16"))
    assert not get_engine("vllm-cpu").decode_attention_s


PASS3 = DATA / "pass-3"


def test_the_in_place_attention_line_prices_served_steps_fast(capsys):
    """pass-3 (2026-12-08 01:12-01:32 UTC): the GEMMs re-measured (capsim calibrate --ops gemm_packed over pass 2's
    calibration) and the 768-wide bf16 set served again at once. On the fresh GEMMs the bf16 engine file with the in-place
    decode attention line prices the worker's decode-only steps of both unseen shapes within 1-8% of their in-place
    periods (host/step-profile-shape-*-bfloat16.json), where the calibration's SDPA price is 1.1-1.2x at 32
    sequences; yet replaying the served set, that line puts 2-32 clients' TPOT 8-14% fast and the set's median |error|
    at 13.8%, the calibration's price 1-8% and 6.5%. So served steps hold time the decode-only steps do not (the steps
    that admit prompts: new GEMM row counts past vLLM's 32-entry cache of them, not modelled), which the over-priced
    attention stands in for; the engine files keep the calibration's price."""
    from capsim.calibration.engine_file import read_engine_file

    prof = _bench("vllm_cpu_step_profile")
    prof.CALIBRATION.append(str(CALIBRATION))
    with_line = read_engine_file(HOST_ENGINE["bf16"])
    _kv, (per_call, per_byte, _rms, _worst) = prof.attention_report(
        [DATA / "host" / f"step-profile-shape-{w}-bfloat16.json" for w in (768, 1024)], str(PASS2_CALIBRATION))
    with_line = replace(with_line, decode_attention_s={"bf16": (per_call, per_byte)})
    runs = [PASS3 / "shape-768-bf16" / r["file"] for r in json.loads((PASS3 / "shape-768-bf16" /
                                                                      "manifest.json").read_text())["runs"]]
    cal = PASS3 / "cpu-intel-r-xeon-r-processor-2c.json"
    dep = _deployment("bf16", cal, HOST_ENGINE["bf16"], SHAPE / "model")
    plain = _errors(runs, dep)
    line = _errors(runs, dep.with_engine(with_line))
    from capsim.analytic.serving import Sampling, StepShape, iteration_time
    greedy = Sampling.parse("greedy")
    for width, ctx, model in ((768, 288, SHAPE / "model"), (1024, 1056, DATA / "shape-1024" / "model")):
        capsys.readouterr()
        prof.attention_report([DATA / "host" / f"step-profile-shape-{width}-bfloat16.json"], str(cal))
        periods = {int(b): float(p) * 1e-3 for b, p in re.findall(
            r"attention_in_place_ms\[batch=(\d+)\]: .*, worker period ([\d.]+) ms", capsys.readouterr().out)}
        d = _deployment("bf16", cal, HOST_ENGINE["bf16"], model)
        for b in (1, 8, 16, 32):
            shape = StepShape(decode_seqs=float(b), decode_kv_tokens=float(b * ctx))
            priced = float(iteration_time(d.model, d.plan, d.perf, shape, with_line, d.accelerator, greedy).total_s)
            assert abs(priced / periods[b] - 1) < 0.09, (width, b, priced, periods[b])
        sdpa = float(iteration_time(d.model, d.plan, d.perf, StepShape(decode_seqs=32.0, decode_kv_tokens=32.0 * ctx),
                                    d.engine, d.accelerator, greedy).total_s)
        assert sdpa / periods[32] > 1.08
    clients = [f"concurrency-{c}" for c in (2, 4, 8, 16, 32)]
    assert all(abs(plain[(c, "tpot_mean")]) < 9 for c in clients)
    assert all(-15 < line[(c, "tpot_mean")] < -8 for c in clients)
    assert np.median([abs(v) for v in line.values()]) > 1.5 * np.median([abs(v) for v in plain.values()])


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_in_place_host_terms_bring_pass_2_closer(dtype, pass2_errors):
    """Over all 196 rows of pass 2: the in-place host terms and serving path (host/) leave a lower median |error| and more rows within
    15% than the catalog's, measured on the EPYC (fp32 8.1% -> 6.1%, bf16 31.2% -> 10.8%)."""
    import statistics

    med = {w: statistics.median(abs(v) for v in pass2_errors[(dtype, w)].values()) for w in ("catalog", "host")}
    within = {w: sum(abs(v) <= 15.0 for v in pass2_errors[(dtype, w)].values()) for w in ("catalog", "host")}
    assert med["host"] < med["catalog"] and within["host"] > within["catalog"], (med, within)


# Pass 2 with the in-place host terms against issue 14's uncalibrated targets. bf16: decode at one request priced
# 1.26x slow (7.64 against 6.06 ms). From pass 1 to pass 2 the served single-request TPOT fell 37% (9.55 -> 6.06 ms)
# while the device part of that step as each pass's calibration prices it fell 12% (7.07 -> 6.24 ms): the VM's bf16
# speed moves with time by more than a calibration measured 20-70 min after the runs follows.
PASS2_MISSES = {
    ("bf16", "single", "tpot_mean"): "+26.1%: the served bf16 decode step fell 37% from pass 1, the calibration "
                                     "measured after the runs prices its device part 12% lower (the VM drifts)",
}
PASS2_TARGETS = ([(d, "single.json", m, 15.0) for d in ("fp32", "bf16") for m in ("ttft_mean", "tpot_mean")]
                 + [(d, n, m, 20.0) for d in ("fp32", "bf16") for n in _low_load(d, PASS2, PASS2_SATURATION)
                    for m in ("ttft_mean", "tpot_mean", "request_throughput")])


@pytest.mark.parametrize(("dtype", "name", "metric", "bound"), PASS2_TARGETS)
def test_pass_2_with_the_in_place_host_terms_meets_the_uncalibrated_targets(dtype, name, metric, bound, pass2_errors,
                                                                           request):
    """One request at a time within 15%; Poisson runs up to 80% of saturation within 20% (TTFT, TPOT, throughput)."""
    case = name[:-5]
    if (dtype, case, metric) in PASS2_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=PASS2_MISSES[(dtype, case, metric)]))
    err = pass2_errors[(dtype, "host")][(case, metric)]
    assert abs(err) <= bound, f"{dtype} {case} {metric} {err:+.1f}%"


# A shape the suite never ran (shape-768, README there): 768 wide, 6 layers, 12 query heads over 4 KV heads, measured
# 1.5-3.3 h after pass 2's calibration: fp32 at the suite's lengths (256/64 tokens) and at longer ones (fp32-512:
# 512/128), bf16 at the suite's. Replayed on that calibration, nothing fitted, with each engine profile from facts:
# the catalog's vllm-cpu (host terms measured in place on the EPYC) and this machine's in-place engine file (host/);
# and fitted on the Poisson run at 0.6 of saturation (the suites' calibrate_on) to score the others.
SHAPE = DATA / "shape-768"
# folder -> (its dtype, its burst.json's request throughput, the run fitted on). "1024-bf16": a second unseen shape
# (shape-1024: 1,024 wide, 8 layers, 16/8 heads, 1,024/128 tokens, bf16), measured 2026-12-08 00:04-00:30 UTC.
SHAPE_SETS = {"fp32": ("fp32", 3.38, "rate-2.json"), "fp32-512": ("fp32", 1.517, "rate-0.91.json"),
              "bf16": ("bf16", 10.585, "rate-6.4.json"), "1024-bf16": ("bf16", 1.371, "rate-0.82.json")}


def _set_dir(folder: str) -> Path:
    return DATA / "shape-1024" / "bf16" if folder == "1024-bf16" else SHAPE / folder


def _set_model(folder: str) -> Path:
    return (DATA / "shape-1024" if folder == "1024-bf16" else SHAPE) / "model"
ENGINES = ("catalog", "host")


def _shape_runs(folder: str) -> list[dict]:
    return json.loads((_set_dir(folder) / "manifest.json").read_text())["runs"]


def _shape_report(folder: str, engine: str) -> dict[tuple[str, str], float]:
    """Errors (%) of a set's runs with the catalog's profile ("catalog"), this machine's in-place engine file
    ("host"), or the catalog's fitted on the set's 0.6-saturation run and scored on the others ("fitted")."""
    from capsim.calibration.engine_cal import calibrate_engine

    dtype, _sat, fit = SHAPE_SETS[folder]
    dep = _deployment(dtype, PASS2_CALIBRATION, HOST_ENGINE[dtype] if engine == "host" else None, _set_model(folder))
    names = [r["file"] for r in _shape_runs(folder)]
    if engine == "fitted":
        profile, _fit = calibrate_engine([read_bench(_set_dir(folder) / fit)], dep, "vllm-cpu-fitted")
        dep, names = dep.with_engine(profile), [n for n in names if n != fit]
    return _errors([_set_dir(folder) / n for n in names], dep)


@pytest.fixture(scope="module")
def shape_errors():
    return {(folder, engine): _shape_report(folder, engine) for folder in SHAPE_SETS
            for engine in (*ENGINES, "fitted")}


def _shape_low(folder: str, kinds: tuple[str, ...]) -> list[str]:
    """The runs of ``kinds`` whose measured request rate is at most 80% of saturation (less the fitted run)."""
    _dtype, sat, fit = SHAPE_SETS[folder]
    return [r["file"][:-5] for r in _shape_runs(folder) if r["kind"] in kinds and r["file"] != fit
            and r["requests"] / r["duration_s"] <= 0.8 * sat]


# Uncalibrated misses. bf16 with the catalog's host terms (the EPYC's, about twice this machine's): the Poisson runs
# at 0.4-0.8 of saturation come out slow in TPOT (+20.7% to +44.5%); with this machine's in-place terms they are
# within 15.4%. fp32 the other way: the in-place terms price the 512/128 runs' decode steps fast.
SHAPE_MISSES = {
    ("bf16", "catalog", "rate-4.2", "tpot_mean"): "+20.7%",
    ("bf16", "catalog", "rate-6.4", "ttft_mean"): "+21.4%",
    ("bf16", "catalog", "rate-6.4", "tpot_mean"): "+38.8%",
    ("bf16", "catalog", "rate-8.5", "tpot_mean"): "+44.5%",
    ("fp32-512", "host", "rate-1.2", "tpot_mean"): "-20.1%",
    ("1024-bf16", "catalog", "rate-1.1", "tpot_mean"): "+35.0%",
    ("1024-bf16", "catalog", "rate-1.2", "ttft_mean"): "+20.5%",
    ("1024-bf16", "catalog", "rate-1.2", "tpot_mean"): "+54.2%",
    ("1024-bf16", "host", "rate-1.1", "tpot_mean"): "+22.2%",
    ("1024-bf16", "host", "rate-1.2", "tpot_mean"): "+40.3%",
}
# The 1,024-wide shape near 0.8 of saturation: its steps mix 1,024-token prompts with 10-20 decodes of ~1,100-token
# contexts, and the replica is priced slow when saturated (burst throughput -17.3% catalog, -15.3% in place), so
# the Poisson runs that approach it queue more than measured. Decode attention is the suspect: capsim prices it at
# torch SDPA's rates, which grow with the query heads, where vLLM's kernel reads each KV head once (alone on this
# machine at 16/8 heads 0.55-0.65x capsim's price: benchmarks/vllm_cpu_decode_attention.py); but on that kernel's
# line the decode steps of 2-32 clients come out 10-29% fast, so the kernel alone is not what a served step pays.
_1024 = ": the 1,024-wide shape's replica near saturation is priced slow (the burst's throughput -15% to -17%); " \
        "decode attention priced at SDPA's per-query-head rates where vLLM's kernel reads each KV head once, " \
        "though that kernel's isolated line prices the served decode steps 10-29% fast"
_BF16_EPYC = ": bf16 decode priced with the EPYC's host terms (2.95 ms + 0.17 ms a sequence a step), this Xeon's " \
             "in place are 1.35 ms + 0.05 ms"
_FP32_HOST = ": the in-place host terms (1.58 ms + 0.10 ms a sequence) price these decode steps fast, as on pass 2's " \
             "fp32 closed loops"


@pytest.mark.parametrize(("folder", "engine", "name", "metric", "bound"),
                         [(f, e, "single", m, 15.0) for f in SHAPE_SETS for e in ENGINES
                          for m in ("ttft_mean", "tpot_mean")]
                         + [(f, e, n, m, 20.0) for f in SHAPE_SETS for e in ENGINES for n in _shape_low(f, ("rate",))
                            for m in ("ttft_mean", "tpot_mean", "request_throughput")])
def test_an_unseen_shape_meets_the_uncalibrated_targets(folder, engine, name, metric, bound, shape_errors, request):
    """One request at a time within 15%, Poisson up to 80% of saturation within 20%. Measured, catalog / in place:
    fp32 256/64 one request TTFT -2.0% / -0.6%, TPOT +1.5% / -4.6%; fp32 512/128 +0.8% / +1.5%, +3.1% / -2.9%; bf16
    -0.1% / +3.8%, +4.9% / -6.9%."""
    miss = SHAPE_MISSES.get((folder, engine, name, metric))
    if miss:
        why = _1024 if folder == "1024-bf16" else _BF16_EPYC if folder == "bf16" else _FP32_HOST
        request.applymarker(pytest.mark.xfail(strict=True, reason=miss + why))
    err = shape_errors[(folder, engine)][(name, metric)]
    assert abs(err) <= bound, f"{folder} {engine} {name} {metric} {err:+.1f}%"


# Fitted on one run. Each set's 0.6-saturation run has one request that found the engine idle, the only kind of row
# that holds the TTFT offset, so the offset is not fitted but kept at the base profile's (vllm-cpu's 5.14 ms, measured
# on the EPYC; engine_fit.MIN_ROWS): fitted on that one row, 512/128's rate-0.91 put it at 60.6 ms (the serving path
# measured in place is 9.5 ms) and its lighter runs' TTFT came out +15.9% to +18.5%, bf16's rate-6.4 at 0 ms (closed
# loops -25% to -29%). 512/128 on rate-0.91: step 4.74 ms, 0.243 ms a sequence, 0.022 ms a prompt token; fits on its
# other runs spread as wide (0.61 req/s: 3.30 ms, 0.12 ms, 0; 1.2 req/s: 6.10 ms, 0.17 ms, 0.020 ms; 4 clients:
# 3.41 ms, 0.67 ms, 0.031 ms). bf16 on rate-6.4: every host term but the step at zero (1.04 ms a step): the closed
# loops come out 11-31% off. Uncalibrated, with the in-place terms, the bf16 one-request and Poisson rows are within
# 15.4%, and the fp32 512/128 ones within 13.7% with the catalog's.
FIT_512 = ": fitted on the 0.91 req/s run alone (4.74 ms a step, 0.243 ms a sequence) the one-request decode step is " \
          "priced slow; one run leaves the fit's terms loose"
FIT_BF16 = ": fitted on the 6.4 req/s run alone, every host term but 1.04 ms a step goes to zero (non-negative least " \
           "squares at its bound): the lighter and closed-loop runs come out fast"
FIT_1024 = ": fitted on the 0.82 req/s run alone; the lighter runs' decode comes out fast and those near 0.8 of " \
           "saturation slow" + _1024.replace(": the", ", as uncalibrated: the", 1)
SHAPE_FITTED_MISSES = {("fp32-512", "single", "tpot_mean"): "+11.0%" + FIT_512,
                       ("bf16", "rate-2.1", "ttft_mean"): "-13.6%" + FIT_BF16,
                       ("bf16", "rate-2.1", "tpot_mean"): "-12.9%" + FIT_BF16,
                       **{("bf16", f"concurrency-{c}", m): f"{v:+.1f}%" + FIT_BF16
                          for c, m, v in ((2, "ttft_mean", -15.7), (2, "tpot_mean", -17.8),
                                          (2, "request_throughput", 21.2), (4, "ttft_mean", -16.8),
                                          (4, "tpot_mean", -23.8), (4, "request_throughput", 30.7),
                                          (8, "ttft_mean", -12.4), (8, "tpot_mean", -21.1),
                                          (8, "request_throughput", 25.4), (16, "ttft_mean", -11.5),
                                          (16, "tpot_mean", -16.0), (16, "request_throughput", 19.1))},
                       **{("1024-bf16", n, m): f"{v:+.1f}%" + FIT_1024
                          for n, m, v in (("single", "tpot_mean", -14.0), ("single", "request_throughput", 15.0),
                                          ("rate-1.1", "ttft_mean", 11.7), ("rate-1.1", "tpot_mean", 15.5),
                                          ("rate-1.2", "ttft_mean", 14.2), ("rate-1.2", "tpot_mean", 31.1),
                                          ("concurrency-2", "tpot_mean", -10.1))}}


@pytest.mark.parametrize(("folder", "name", "metric"),
                         [(f, n, m) for f in SHAPE_SETS for n in _shape_low(f, ("single", "rate", "concurrency"))
                          for m in ("ttft_mean", "tpot_mean", "request_throughput")])
def test_an_unseen_shape_calibrated_on_one_run_predicts_the_others_within_10_pct(folder, name, metric,
                                                                                shape_errors, request):
    """`--calibrate-on <the 0.6-saturation run> --check` the rest: the runs up to 80% of saturation (one request,
    Poisson, closed loops) within 10%. fp32 256/64: 7.2% at worst (8 clients' TPOT)."""
    if (folder, name, metric) in SHAPE_FITTED_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SHAPE_FITTED_MISSES[(folder, name, metric)]))
    err = shape_errors[(folder, "fitted")][(name, metric)]
    assert abs(err) <= 10.0, f"{folder} {name} {metric} {err:+.1f}%"


@pytest.mark.parametrize("folder", [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=why)) if why else f
                                    for f, why in (
    ("fp32", "+11.3%: the burst's throughput (the saturation) with the engine fitted on rate-2 (+13.3% uncalibrated): "
             "capsim's saturated replica runs faster than the measured one; not investigated"),
    ("fp32-512", ""), ("bf16", "+18.3%" + FIT_BF16), ("1024-bf16", "-14.2%" + FIT_1024))])
def test_an_unseen_shape_calibrated_saturation_within_10_pct(folder, shape_errors):
    """fp32 512/128: +4.4% fitted (+8.3% uncalibrated)."""
    assert abs(shape_errors[(folder, "fitted")][("burst", "request_throughput")]) <= 10.0


def test_vllms_decode_kernel_follows_the_kv_bytes_where_capsims_price_follows_the_query_heads(capsys):
    """benchmarks/vllm_cpu_decode_attention.py on this Xeon (host/decode-attention-bfloat16*.txt): vLLM's bf16 decode
    kernel is a line in the bytes it reads, capsim's SDPA-based price is right at one query head per KV head and up
    to 2.2x slow with query groups of 3. Not adopted (the module docstring): served runs replayed on that line come
    out fast, so the kernel alone is not what a served step pays."""
    bench = _bench("vllm_cpu_decode_attention")
    dtype, (per_call, per_byte, rms, _worst) = bench.report(
        [str(p) for p in sorted((DATA / "host").glob("decode-attention-bfloat16*.txt"))], str(PASS2_CALIBRATION))
    out = capsys.readouterr().out
    ratio = {tuple(map(int, k)): float(v) for *k, v in
             re.findall(r"decode_attention_ratio\[q=(\d+),kv=(\d+),b=(\d+),ctx=(\d+)\]: ([\d.]+)", out)}
    assert dtype == "bf16" and rms < 0.1 and 5e-5 < per_call < 6e-5 and 1 / per_byte == pytest.approx(12.4e9, rel=0.05)
    many = [(k, v) for k, v in ratio.items() if k[2] >= 4]
    assert all(0.9 < v < 1.05 for k, v in many if k[:2] == (8, 8))
    assert all(0.44 < v < 0.51 for k, v in many if k[:2] == (12, 4))
    assert all(0.54 < v < 0.66 for k, v in many if k[:2] == (16, 8))


def test_in_place_the_1024_shapes_decode_attention_is_two_thirds_of_capsims_price(capsys):
    """vLLM's attention backend timed inside the worker (benchmarks/vllm_cpu_step_profile.py --attention,
    host/step-profile-shape-1024-bfloat16.json: 16/8 heads, 1,024-token prompts, bf16): 0.19-0.21 ms a sequence a
    layer at 2-32 sequences, 0.64-0.69x capsim's price of the call. capsim keeps its price (the module docstring of
    benchmarks/vllm_cpu_decode_attention.py and the data README say why). Served, the same call takes 0.21-0.22 ms
    (host/served-step-profile-shape-1024-bfloat16.json), and the client's median gap equals the worker's period."""
    mod = _bench("vllm_cpu_step_profile")
    mod.attention_report([DATA / "host" / "step-profile-shape-1024-bfloat16.json"], str(PASS2_CALIBRATION))
    out = capsys.readouterr().out
    rows = {int(b): (float(per_seq), float(x)) for b, per_seq, x in
            re.findall(r"attention_in_place_ms\[batch=(\d+)\]: [\d.]+ \(([\d.]+) a sequence\), capsim [\d.]+ "
                       r"\(([\d.]+)x\)", out)}
    assert {2, 4, 8, 16, 32} <= set(rows)
    assert all(0.19 < rows[b][0] < 0.21 and 0.63 < rows[b][1] < 0.70 for b in (2, 4, 8, 16, 32))
    served = DATA / "host" / "served-step-profile-shape-1024-bfloat16.json"
    mod.attention_report([served], str(PASS2_CALIBRATION))
    out = capsys.readouterr().out
    rows = {int(b): (float(per_seq), float(x), float(period)) for b, per_seq, x, period in
            re.findall(r"attention_in_place_ms\[batch=(\d+)\]: [\d.]+ \(([\d.]+) a sequence\), capsim [\d.]+ "
                       r"\(([\d.]+)x\), worker period ([\d.]+) ms", out)}
    assert 0.2 < rows[32][0] < 0.23 and 0.66 < rows[32][1] < 0.75 and 90 < rows[32][2] < 100
    client = json.loads((DATA / "host" / "served-step-profile-client-c32.json").read_text())  # the same run's client
    gap = float(np.median([g for itls in client["itls"] for g in itls]))
    assert gap * 1e3 == pytest.approx(rows[32][2], rel=0.03)  # a served step is the worker's step



def test_served_steps_that_admit_prompts_are_where_the_in_place_attention_line_leaves_time_unpriced(capsys):
    """vllm_cpu_step_profile.py --report SERVED --steps --calibration pass-3 (served with the hook: 32 clients; the
    768-wide set at 256/64 tokens, 02:00 UTC, and the 1,024-wide one): on the calibration's price the decode-only steps
    of 24-32 sequences are priced 1.17-1.18x their worker periods and the steps that admit a prompt 0.95-0.99x; with
    every prompt step paying its token count's first call, 1.09-1.24x. The prompt steps pay some first calls (vLLM keeps
    32 row counts per weight, capsim charges a count once a run), so the over-priced decode attention stands in for
    part of them."""
    prof = _bench("vllm_cpu_step_profile")
    served = [DATA / "host" / f"served-step-profile-shape-{w}-bfloat16.json" for w in (768, 1024)]
    for path in served:
        ratio = prof.steps_report([path], str(PASS3 / "cpu-intel-r-xeon-r-processor-2c.json"), HOST_ENGINE["bf16"])
        assert 1.12 < ratio["decode"]["priced"] < 1.25
        assert 0.9 < ratio["prompt"]["priced"] < 1.02
        assert 1.05 < ratio["prompt"]["with_first_call"] < 1.3
