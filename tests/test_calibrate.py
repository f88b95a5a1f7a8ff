"""`capsim calibrate`: timing harness, fits on synthetic data with known parameters, atomic writes, resume after
an interrupt, collective-worker failures, and the command's errors."""

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from capsim.analytic.ops import Op, OpKind  # noqa: E402
from capsim.calibration import available, load_calibration, write_calibration  # noqa: E402
from capsim.calibration import comm as comm_mod  # noqa: E402
from capsim.calibration import runner as run_mod  # noqa: E402
from capsim.calibration.comm import CommError, run_local  # noqa: E402
from capsim.calibration.fit import _attention_time, fit_attention, residual_grid  # noqa: E402
from capsim.calibration.measured import fit_device  # noqa: E402
from capsim.cli import app  # noqa: E402
from capsim.perf import Collective  # noqa: E402
from kernels.comm import FAULT_ENV  # noqa: E402
from kernels.harness import time_fn, timer_resolution_s  # noqa: E402

cli = CliRunner()


# --- harness ------------------------------------------------------------------------------------------------
def test_timer_resolution_is_fine_and_positive():
    for clock in ("wall", "thread"):
        assert 0 < timer_resolution_s(clock=clock) < 1e-4


def test_time_fn_reports_median_and_spread_of_a_known_duration():
    t = time_fn(lambda: time.sleep(0.002), repeats=5, clock="wall", min_repeat_s=0.004)
    assert t.min_s <= t.q1_s <= t.median_s <= t.q3_s <= t.max_s
    # a sleep lasts at least what was asked; a busy machine may stretch it, not shorten it
    assert t.min_s >= 0.002 and t.median_s < 0.02 and t.inner in (1, 2) and t.repeats == 5 and t.clock == "wall"


def test_thread_clock_excludes_time_off_the_cpu():
    # sleeping holds no core: the thread clock sees (almost) nothing, the wall clock sees the sleep
    assert time_fn(lambda: time.sleep(0.002), repeats=3, clock="thread", min_repeat_s=0.004).median_s < 0.0005


def test_fast_kernels_repeat_until_a_repeat_outlasts_the_clock():
    t = time_fn(lambda: None, repeats=3, clock="wall", min_repeat_s=0.001)
    assert t.inner > 100 and t.median_s < 1e-5


# --- fits ---------------------------------------------------------------------------------------------------
def test_attention_fit_recovers_known_parameters():
    rng = np.random.default_rng(0)
    rows = rng.choice([64, 512, 4096, 16384], 60).astype(float)
    keys = rng.choice([32, 128, 512, 2048], 60).astype(float)
    flops = 4.0 * rows * keys * 64
    nbytes = flops * rng.choice([0.01, 1.0, 3.0], 60)  # compute-bound prefill to memory-bound decode
    truth = np.array([0.6, 200.0, 100.0, 2e-5, 2e10])
    t = _attention_time(truth, flops, nbytes, rows, keys, 1e11)
    fit = fit_attention(flops, nbytes, rows, keys, t, 1e11, 5e10)
    assert fit.rms_log_error < 0.02
    assert fit.launch_s == pytest.approx(2e-5, rel=0.1)
    assert fit.bandwidth_bytes_per_s == pytest.approx(2e10, rel=0.05)


def test_residual_grid_is_exact_at_samples_and_interpolates_between():
    m, n = np.array([1.0, 4.0, 1.0, 4.0]), np.array([8.0, 8.0, 32.0, 32.0])
    factor = np.array([1.0, 2.0, 4.0, 8.0])
    g = residual_grid((m, n), ("log2_m", "log2_n"), factor)
    assert np.allclose(np.exp(np.array(g["log_factor"])), [[1.0, 4.0], [2.0, 8.0]], rtol=1e-3)
    from capsim.perf.model import _grid_factor

    mid = _grid_factor(g, ("log2_m", "log2_n"), (2.0, 16.0))  # half way in log2 on both axes
    assert float(mid) == pytest.approx((1 * 2 * 4 * 8) ** 0.25, rel=1e-3)


def _synthetic_samples():
    """Samples from known devices: GEMM at 50 GFLOP/s peak with a shape curve, memory at known bandwidths,
    all-reduce with alpha 100 us and 1 GB/s bus bandwidth."""
    rng = np.random.default_rng(1)
    out = []
    for m in (1, 16, 256, 1024):
        for n, k in ((256, 256), (1024, 256), (256, 1024)):
            flops = 2.0 * m * n * k
            t = 1e-6 + flops / (50e9 * m / (m + 8.0))
            out.append({"bench": "gemm", "dtype": "fp32", "pass": "fwd", "m": m, "n": n, "k": k, "flops": flops,
                        "bytes": 4.0 * (m * k + k * n + m * n), "time_s": t, "threads": 1})
    for key, bw in (("stream", 20e9), ("norm:rmsnorm", 5e9), ("activation:gelu", 2e9)):
        for nbytes in (1e4, 1e5, 1e6, 1e7):
            out.append({"bench": "memory", "category": key, "bytes": nbytes, "time_s": 2e-6 + nbytes / bw,
                        "threads": 1})
    for nbytes in np.logspace(1, 8, 12):
        t = 1e-4 + nbytes / 1e9
        out.append({"bench": "comm", "collective": "all_reduce", "group": 2, "tier": "intra", "bytes": nbytes,
                    "time_s": t * rng.uniform(0.98, 1.02)})
    return out


def test_measured_fit_reproduces_its_samples_and_recovers_alpha_beta():
    samples = _synthetic_samples()
    params, quality = fit_device(samples, "synthetic", "test-device", threads=1)
    from capsim.perf import Perf

    perf = Perf(params)
    for s in samples:
        if s["bench"] == "gemm":
            got = perf.gemm_s(s["m"], s["n"], s["k"], "fp32", 1, s["bytes"])
        elif s["bench"] == "memory":
            got = perf.memory_s(s["bytes"], s["category"])
        else:
            continue
        assert got == pytest.approx(s["time_s"], rel=0.02), s
    (link,) = params.comm.links["intra"]["all_reduce"]["2"]
    assert link.alpha_s == pytest.approx(1e-4, rel=0.1)
    assert link.bus_bw_bytes_per_s == pytest.approx(1e9, rel=0.05)  # 2 ranks: bus factor 2(n-1)/n = 1
    assert params.kind == "measured" and params.peak_flops_per_s["fp32"] > 0


def test_memory_kind_prefers_the_variant_the_calibration_measured():
    params, _ = fit_device(_synthetic_samples(), "synthetic", "test-device", threads=1)
    from capsim.perf import Perf

    perf = Perf(params)
    norm = Op("norm_attn", OpKind.NORM, 0, 1e6, 1e6, (1,), impl="rmsnorm")
    assert perf.memory_kind(norm) == "norm:rmsnorm"
    assert perf.memory_kind(Op("norm_attn.bwd", OpKind.NORM, 0, 1, 1, (1,), impl="rmsnorm")) == "norm:rmsnorm"
    assert perf.memory_kind(Op("norm_attn", OpKind.NORM, 0, 1, 1, (1,), impl="layernorm")) == "norm"
    assert perf.op_s(norm) == pytest.approx(perf.memory_s(2e6, "norm:rmsnorm"))
    assert perf.memory_s(1e7, "norm:rmsnorm") > 2 * perf.memory_s(1e7, "stream")  # 5 vs 20 GB/s
    # below the smallest measured size (1e4 bytes) a kernel costs what that size cost, not less
    assert perf.memory_s(10.0, "stream") == pytest.approx(perf.memory_s(1e4, "stream"), rel=1e-3)


# --- writing, interrupting and resuming -----------------------------------------------------------------------
def test_write_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    cal = load_calibration("A100-SXM4-80GB")
    path = tmp_path / "cal.json"
    write_calibration(cal, path)
    before = path.read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(RuntimeError):
        write_calibration(cal, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]  # no temporary left behind


TINY = [{"bench": "gemm", "op": "x", "pass": "fwd", "M": m, "N": 64, "K": 64, "dtype": "fp32", "threads": 1}
        for m in (1, 4, 16, 64)] + \
       [{"bench": "memory", "op": "add", "pass": "fwd", "category": "stream", "elements": n, "dtype": "fp32",
         "threads": 1} for n in (4096, 65536)]


def test_an_interrupted_run_keeps_its_samples_and_resumes(tmp_path, monkeypatch):
    import kernels.gemm

    monkeypatch.setattr(run_mod, "plan", lambda config: [dict(c) for c in TINY])
    out = tmp_path / "cpu.json"
    previous = available()["L4"].read_text()
    out.write_text(previous)
    real, calls = kernels.gemm.run_gemm, []

    def flaky(case, *args, **kwargs):
        calls.append(case["M"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(case, *args, **kwargs)

    monkeypatch.setattr(kernels.gemm, "run_gemm", flaky)
    config = run_mod.RunConfig(quick=True, ops=("gemm", "memory"))
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(config, out)
    assert out.read_text() == previous  # untouched
    partial = run_mod.partial_path(out)
    assert len(json.loads(partial.read_text())["samples"]) == 2
    assert calls == [1, 4, 16]

    calls.clear()
    monkeypatch.setattr(kernels.gemm, "run_gemm", lambda case, *a, **k: (calls.append(case["M"]), real(case, *a, **k))[1])
    cal, path = run_mod.run(config, out)
    assert path == out and not partial.exists()
    assert calls == [16, 64]  # only what the interrupted run had not finished
    assert len(cal.samples["gemm"]) == 4 and len(cal.samples["memory"]) == 2
    assert load_calibration(out).kind == "measured"


# --- collective workers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fault", "message"), [("die", r"rank 1 died \(exit code 3\)"),
                                              ("hang", r"hung: no result for 4 s|rank 0: .*time")])
def test_a_dead_or_hung_collective_worker_is_stopped_and_reported(monkeypatch, fault, message):
    monkeypatch.setenv(FAULT_ENV, fault)
    cases = [{"bench": "comm", "collective": "all_reduce", "bytes": 1024, "group": 2}]
    start = time.monotonic()
    with pytest.raises(CommError, match=message):
        run_local(cases, "cpu", timeout_s=4.0, repeats=2, on_sample=lambda c, s: None)
    # Stopped within the watcher's own limits (start-up allowance, then the 4 s silence, then terminate/kill joins),
    # not waited on forever; a fixed 40 s failed when two torch imports shared a loaded 2-core machine.
    assert time.monotonic() - start < comm_mod.STARTUP_S + 4.0 + 15.0


def test_collectives_measure_every_size(monkeypatch):
    got = []
    cases = [{"bench": "comm", "collective": c, "bytes": b, "group": 2}
             for c in ("all_reduce", "send_recv") for b in (64, 65536)]
    run_local(cases, "cpu", timeout_s=60.0, repeats=2, on_sample=lambda c, s: got.append(s))
    assert sorted((s["collective"], s["bytes"]) for s in got) == sorted((c["collective"], c["bytes"]) for c in cases)
    assert all(s["time_s"] > 0 and s["tier"] == "intra" for s in got)
    assert Collective("send_recv").bus_factor(2) == 1.0


# --- the command's errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "text"), [
    (["--device", "cuda"], "CUDA is not available"),
    (["--device", "tpu"], "unknown device"),
    (["--ops", "gemm,flux"], "unknown benchmarks"),
    (["--threads", "two"], "not a comma-separated list"),
])
def test_calibrate_errors_are_one_line_and_exit_2(args, text):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli.invoke(app, ["calibrate", *args])
    assert result.exit_code == 2
    assert text in result.output and len(result.output.strip().splitlines()) == 1


def test_thread_variants_are_fitted_and_selectable():
    one = [s for s in _synthetic_samples()]
    two = [{**s, "threads": 2, "time_s": s["time_s"] / 1.8} for s in one if s["bench"] != "comm"]
    config = run_mod.resolve(run_mod.RunConfig(quick=True, threads=(2, 1), ops=("gemm", "memory", "comm")))
    cal = run_mod.build_calibration(one + two, config, {"name": "test-cpu", "type": "cpu", "cores": 2}, "t", [1, 1, 0])
    assert cal.host["threads"] == 2 and list(cal.variants) == ["threads=1"]
    fast, slow = cal.perf(), cal.perf("threads=1")
    assert fast.gemm_s(1024, 1024, 256, "fp32") < slow.gemm_s(1024, 1024, 256, "fp32")
    with pytest.raises(ValueError, match="no variant"):
        cal.perf("threads=4")


# --- calibration files a user hands in --------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["[1, 2]", '"cpu"', "null", '{"schema": "capsim.calibration/1"}', "not json"])
def test_an_out_that_is_not_a_calibration_is_refused_before_measuring(tmp_path, monkeypatch, content):
    measured = []
    monkeypatch.setattr(run_mod, "_run_compute", lambda *a, **k: measured.append(1))
    out = tmp_path / "mine.json"
    out.write_text(content)
    result = CliRunner().invoke(app, ["calibrate", "--quick", "--ops", "gemm", "--out", str(out)])
    assert result.exit_code == 2 and measured == [], result.output
    assert len(result.output.strip().splitlines()) == 1 and "--out" in result.output
    assert out.read_text() == content  # the user's file is untouched


@pytest.mark.parametrize("content", ["[1, 2]", '"x"', "null", "{}", '{"schema": "capsim.calibration/1", '
                                     '"kind": "measured", "name": "x", "device": {}, "fitted": {"gemm": 1}}'])
def test_a_bad_calibration_file_is_one_line_exit_2(tmp_path, content):
    path = tmp_path / "cal.json"
    path.write_text(content)
    result = CliRunner().invoke(app, ["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "5", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "calibration" in result.output


def test_a_partial_run_is_never_listed_as_a_calibration(monkeypatch, tmp_path):
    (tmp_path / "measured").mkdir()
    (tmp_path / "measured" / "box.json").write_text(available()["L4"].read_text())
    (tmp_path / "measured" / ".calibrate-partial-box.json").write_text('{"fingerprint": {}, "samples": {}}')
    monkeypatch.setenv("CAPSIM_CALIBRATIONS", str(tmp_path))
    assert list(available()) == ["box"]
    with pytest.raises(Exception, match="unknown calibration"):
        load_calibration(".calibrate-partial-box")
