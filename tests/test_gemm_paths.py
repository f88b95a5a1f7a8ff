"""GEMM kernel paths (issue 14, vLLM-CPU at 2-8 sequences): `capsim calibrate` times linears on oneDNN-prepacked
weights apart from torch's linear (bench gemm_packed), the fit gives that path its own residual table against the
same curve, and an engine that runs that path (engines.yaml gemm_path) is priced on it; nothing else changes."""

from dataclasses import replace

import numpy as np
import pytest

from capsim.analytic.serving import engine_perf
from capsim.calibration import load_calibration
from capsim.calibration.measured import fit_device
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.specs.engine import GemmPath, get_engine, profile_from_dict

torch = pytest.importorskip("torch")

from capsim.calibration import runner as run_mod  # noqa: E402
from kernels.gemm import WARM_ROWS, packed_gemm_cases, run_packed_gemm  # noqa: E402


def _samples(packed_speedup: float) -> list[dict]:
    """A device whose torch linear runs at 50 GFLOP/s x m/(m+8), and whose packed path is ``packed_speedup`` x faster
    below 16 rows (where decode runs) and the same above."""
    out = []
    for m in (1, 2, 4, 8, 16, 64, 256):
        for n, k in ((256, 256), (1024, 256), (256, 1024)):
            flops = 2.0 * m * n * k
            t = 1e-6 + flops / (50e9 * m / (m + 8.0))
            base = {"dtype": "fp32", "pass": "fwd", "m": m, "n": n, "k": k, "flops": flops,
                    "bytes": 4.0 * (m * k + k * n + m * n), "threads": 1}
            out.append({**base, "bench": "gemm", "time_s": t})
            out.append({**base, "bench": "gemm_packed", "path": "onednn_packed",
                        "time_s": t / (packed_speedup if m < 16 else 1.0)})
    out += [{"bench": "memory", "category": "stream", "bytes": b, "time_s": 2e-6 + b / 20e9, "threads": 1}
            for b in (1e4, 1e5, 1e6, 1e7)]
    return out


def test_each_path_reproduces_its_own_samples_and_the_main_fit_is_unchanged():
    samples = _samples(packed_speedup=2.0)
    params, _ = fit_device(samples, "synthetic", "test-device", threads=1)
    alone, _ = fit_device([s for s in samples if s["bench"] != "gemm_packed"], "synthetic", "test-device", threads=1)
    assert params.gemm.efficiency == alone.gemm.efficiency and params.peak_flops_per_s == alone.peak_flops_per_s
    assert set(params.gemm.table) == {"fp32", "fp32@onednn_packed"} and "gemm@onednn_packed" in params.memory.kind_scale
    torch_perf = Perf(params)
    packed = Perf(replace(params, gemm=replace(params.gemm, path="onednn_packed")))
    for s in samples:
        if s["bench"].startswith("gemm"):
            perf = packed if s["bench"] == "gemm_packed" else torch_perf
            got = perf.gemm_s(s["m"], s["n"], s["k"], "fp32", 1, s["bytes"])
            assert got == pytest.approx(s["time_s"], rel=0.02), s
    # the main path prices exactly as a calibration that never timed the packed one
    m = np.array([1.0, 3.0, 100.0])
    assert np.allclose(torch_perf.gemm_s(m, 512, 512, "fp32"), Perf(alone).gemm_s(m, 512, 512, "fp32"))


def test_an_engine_is_priced_on_its_path_and_a_path_never_timed_is_an_error():
    params, _ = fit_device(_samples(packed_speedup=2.0), "synthetic", "test-device", threads=1)
    cpu = get_engine("vllm-cpu")
    assert cpu.gemm_path is GemmPath.ONEDNN_PACKED and get_engine("vllm").gemm_path is GemmPath.TORCH
    main, dec = engine_perf(Perf(params), cpu)
    plain, _ = engine_perf(Perf(params), get_engine("vllm"))
    assert main.params.gemm.path == dec.params.gemm.path == "onednn_packed" and plain.params.gemm.path == ""
    assert main.gemm_s(4, 1024, 256, "fp32") == pytest.approx(plain.gemm_s(4, 1024, 256, "fp32") / 2, rel=0.05)
    no_path, _ = fit_device([s for s in _samples(2.0) if s["bench"] != "gemm_packed"], "old", "test-device", 1)
    with pytest.raises(SpecError, match="old has no fp32 GEMM timings on the onednn_packed path"):
        engine_perf(Perf(no_path), cpu)[0].gemm_s(4, 1024, 256, "fp32")


def test_an_unknown_gemm_path_in_an_engine_file_is_refused():
    entry = {k: v for k, v in get_engine("vllm-cpu").to_dict().items() if k != "name"}
    assert profile_from_dict("mine", entry).gemm_path is GemmPath.ONEDNN_PACKED  # to_dict round-trips
    with pytest.raises(SpecError, match="gemm_path"):
        profile_from_dict("mine", {**entry, "gemm_path": "cublas"})


def test_the_packed_kernel_computes_the_linear_and_records_its_shape():
    case = {"bench": "gemm_packed", "path": "onednn_packed", "op": "qkv", "pass": "fwd", "M": 2, "N": 64, "K": 32,
            "dtype": "fp32"}
    w, x = torch.rand(64, 32), torch.rand(2, 32)
    packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
    got = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    assert torch.allclose(got, torch.nn.functional.linear(x, w), atol=1e-5)
    sample = run_packed_gemm(case, repeats=1, min_repeat_s=1e-4)
    assert (sample["m"], sample["n"], sample["k"]) == (2, 64, 32) and sample["time_s"] > 0
    assert sample["flops"] == 2.0 * 2 * 64 * 32 and sample["bytes"] == 4.0 * (2 * 32 + 32 * 64 + 2 * 64)


def test_the_packed_grid_covers_decode_batches_and_is_a_cpu_bench():
    cases = packed_gemm_cases("quick")
    assert {1, 2, 4, 8} <= {c["M"] for c in cases} and {c["pass"] for c in cases} == {"fwd"}
    # each case's weight runs first at a row count no case times: its timed first call is a new row count's alone
    assert WARM_ROWS not in {c["M"] for mode in ("quick", "full") for c in packed_gemm_cases(mode)}
    assert {c["path"] for c in cases} == set(GemmPath) - {GemmPath.TORCH}  # every engine path has a bench
    assert len({(c["M"], c["N"], c["K"]) for c in cases}) == len(cases)
    assert "gemm_packed" in run_mod.resolve(run_mod.RunConfig()).ops
    assert "gemm_packed" not in run_mod.default_ops("cuda")
    with pytest.raises(SpecError, match="gemm_packed only runs on a CPU"):
        run_mod.resolve(run_mod.RunConfig(device="cuda", ops=("gemm_packed",)))


def test_the_shipped_cpu_calibration_times_the_path_vllm_cpu_runs():
    cal = load_calibration("cpu-amd-epyc-2c")
    assert "fp32@onednn_packed" in cal.fitted.gemm.table and cal.samples.get("gemm_packed")
    assert {1, 2, 4, 8} <= {s["m"] for s in cal.samples["gemm_packed"]}
    assert "gemm_packed" in cal.provenance


def test_a_run_that_keeps_benches_says_when_and_carries_their_provenance():
    previous = load_calibration("cpu-amd-epyc-2c")
    config = run_mod.resolve(run_mod.RunConfig(quick=True, ops=("gemm_packed",)))
    samples = [s for rows in previous.samples.values() for s in rows]
    device = {"name": "AMD EPYC", "type": "cpu", "cores": 2}
    cal = run_mod.build_calibration(samples, config, device, "t", [1.0, 1.0, 0.0], previous, "2026-01-02T03:04:05")
    assert cal.created == "2026-01-02T03:04:05" and cal.provenance.startswith("Measured 2026-01-02T03:04:05 by")
    assert f"kept from the previous file, created {previous.created}" in cal.provenance
    assert cal.provenance.endswith(previous.provenance)
