"""A calibration knows its machine, and `capsim calibrate` can be waited for: the machine fingerprint and the warning
on another machine, the user's calibration directory (a shipped file is never overwritten), progress lines without
a terminal, and one clear line where torch is missing."""

import dataclasses
import importlib
import sys

import pytest
from typer.testing import CliRunner

from capsim.calibration import available, calibrations_dir, load_calibration, write_calibration
from capsim.calibration.machine import cpu_fingerprint, fingerprint_differences, machine_mismatch
from capsim.calibration.schema import user_calibrations_dir
from capsim.cli import app
from capsim.validation.harness import Report, Row

cli = CliRunner()
SHIPPED_CPU = "cpu-amd-epyc-2c"


def _cpu_calibration(tmp_path, name: str, fingerprint: dict | None):
    cal = load_calibration(SHIPPED_CPU)
    device = {**cal.device, **({"fingerprint": fingerprint} if fingerprint is not None else {})}
    path = tmp_path / f"{name}.json"
    write_calibration(dataclasses.replace(cal, name=name, device=device), path)
    return path


def test_fingerprint_names_what_differs():
    here = cpu_fingerprint()
    assert here["cpu_model"] and here["cores"] >= 1 and isinstance(here["flags"], list)
    assert fingerprint_differences(here, here) == []
    # the flags differ whatever this host has: the recorded side has amx_tile, this side has not
    flags = [f for f in here["flags"] if f != "amx_tile"]
    other = {**here, "cpu_model": "Other CPU 9000", "cores": 64, "flags": [*flags, "amx_tile"],
             "gemm_probe_flops_per_s": 1e12}
    diff = fingerprint_differences(other, {**here, "flags": flags, "gemm_probe_flops_per_s": 1e11})
    assert len(diff) == 4 and "Other CPU 9000" in diff[0] and "64 cores" in diff[1] and "-amx_tile" in diff[2]
    assert "GEMM probe" in diff[3]
    assert fingerprint_differences({**here, "gemm_probe_flops_per_s": 1e11},
                                   {**here, "gemm_probe_flops_per_s": 1.1e11}) == []  # within the tolerance
    assert machine_mismatch({"type": "cuda", "name": "H100"}) is None  # GPU calibrations are not checked here
    assert "no machine fingerprint" in machine_mismatch({"type": "cpu", "name": "x"})


TINY = ["--hf-config", "capsim/data/vllm-cpu/model/config.json"]


@pytest.mark.parametrize("command", [  # a measured calibration is a device of its own (no -a: issue 14)
    ["serve", *TINY, "-e", "vllm-cpu", "--dtype", "fp32", "--rate", "2", "--prompt-tokens", "128",
     "--output-tokens", "16", "-n", "20"],
    ["train", *TINY, "--global-batch", "4", "--seq-len", "512", "--precision", "fp32"],
])
def test_serve_and_train_warn_once_on_another_machine(tmp_path, command):
    foreign = _cpu_calibration(tmp_path, "foreign", {**cpu_fingerprint(), "cpu_model": "Other CPU 9000"})
    out = cli.invoke(app, [*command, "-c", str(foreign)])
    assert out.exit_code == 0, out.output
    warning = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "Other CPU 9000" in warning[0] and "capsim calibrate --quick" in warning[0]
    mine = _cpu_calibration(tmp_path, "mine", cpu_fingerprint())
    out = cli.invoke(app, [*command, "-c", str(mine)])
    assert out.exit_code == 0 and "warning" not in out.stderr


def test_validate_local_warns_after_probing_this_machine(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    module = importlib.import_module("capsim.cli.validate")  # the package's `validate` is the command
    report = Report("local", "slow", (Row("slow", "gpt tiny", "step_s", 0.01, 0.011, "s"),))
    monkeypatch.setattr(module, "run_suite", lambda *a, **k: report)
    slow = _cpu_calibration(tmp_path, "slow", {**cpu_fingerprint(), "gemm_probe_flops_per_s": 1e15})
    out = cli.invoke(app, ["validate", "local", "-c", str(slow)])
    assert "GEMM probe" in out.stderr and "capsim calibrate --quick" in out.stderr


def test_calibrate_writes_to_the_user_directory_and_never_over_a_shipped_file(tmp_path):
    pytest.importorskip("torch")
    from capsim.calibration import runner

    assert runner.default_out("cpu-x-2c").parent == user_calibrations_dir()
    shipped = next(calibrations_dir().glob("*/*.json"))
    before = shipped.read_bytes()
    out = cli.invoke(app, ["calibrate", "--quick", "--ops", "memory", "--out", str(shipped)])
    assert out.exit_code == 2 and "shipped calibration" in out.output and len(out.output.strip().splitlines()) == 1
    assert shipped.read_bytes() == before
    # a calibration in the user directory is found by name, and wins the name it shares with a shipped file
    user = user_calibrations_dir()
    path = _cpu_calibration(tmp_path, SHIPPED_CPU, cpu_fingerprint())
    user.mkdir(parents=True, exist_ok=True)
    (user / path.name).write_bytes(path.read_bytes())
    try:
        assert available()[SHIPPED_CPU] == user / path.name
        assert load_calibration(SHIPPED_CPU).device["fingerprint"] == cpu_fingerprint()
    finally:
        (user / path.name).unlink()


def test_calibrate_prints_a_line_per_benchmark_group_without_a_terminal(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from capsim.calibration import runner

    tiny = [{"bench": "gemm", "op": "x", "pass": "fwd", "M": m, "N": 64, "K": 64, "dtype": "fp32", "threads": 1}
            for m in (1, 4, 16)] + [{"bench": "memory", "op": "add", "pass": "fwd", "category": "stream",
                                     "elements": n, "dtype": "fp32", "threads": 1} for n in (4096, 65536)]
    monkeypatch.setattr(runner, "plan", lambda config: [dict(c) for c in tiny])
    out = cli.invoke(app, ["calibrate", "--quick", "--ops", "gemm,memory", "--out", str(tmp_path / "c.json")])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stderr.splitlines() if line.startswith("calibrate:")]
    assert lines[0] == "calibrate: 5 samples planned"
    assert lines[1].startswith("calibrate: gemm fp32 t1: 3 samples in ") and "(3/5 done" in lines[1]
    assert lines[2].startswith("calibrate: memory fp32 t1: 2 samples in ") and "(5/5 done" in lines[2]
    assert "fingerprint" in load_calibration(tmp_path / "c.json").device


@pytest.mark.parametrize("command", [["calibrate", "--quick"], ["validate", "local"]])
def test_without_torch_one_line_with_the_install_command_and_exit_2(command, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if it were not installed
    out = cli.invoke(app, command)
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "needs torch" in lines[0] and "pip install 'torch" in lines[0]
