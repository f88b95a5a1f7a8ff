"""Any calibrated device is a device: serve, train and memory take a measured calibration without -a, at the
thread count asked for, with the KV space it carries; -a with another device's calibration is an error (issue 14)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from capsim.calibration import load_calibration, write_calibration
from capsim.calibration.device import calibrated_device
from capsim.cli import app
from capsim.errors import SpecError

runner = CliRunner()
MODEL = ["--hf-config", "capsim/data/vllm-cpu/model/config.json"]
SERVE = ["serve", *MODEL, "-e", "vllm-cpu", "--dtype", "fp32", "--rate", "2", "--prompt-tokens", "128",
         "--output-tokens", "16", "-n", "20", "--json"]


@pytest.fixture(scope="module")
def two_threads(tmp_path_factory):
    """The shipped CPU calibration with a 2-thread setting twice as fast, a KV space, power and a price."""
    cal = load_calibration("cpu-amd-epyc-2c")
    p = cal.fitted
    fast = replace(p, name=f"{p.name}@threads=2", peak_flops_per_s={k: 2 * v for k, v in p.peak_flops_per_s.items()})
    device = {**cal.device, "kv_cache_bytes": 2**30, "power_w": 120.0, "price_usd_per_hour": 0.05}
    cal2 = replace(cal, name="cpu-two-threads", device=device, variants={"threads=2": fast},
                   host={**cal.host, "variant_threads": [2]})
    return write_calibration(cal2, tmp_path_factory.mktemp("cal") / "cpu-two-threads.json")


def _run(args):
    result = runner.invoke(app, args)  # stdout alone on success: a calibration without a machine fingerprint warns
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_serve_on_a_measured_cpu_calibration_alone(two_threads):
    code, out = _run([*SERVE, "-c", str(two_threads)])
    assert code == 0, out
    d = json.loads(out)
    assert d["accelerator"] == "cpu-two-threads@threads=1" and d["engine"] == "vllm-cpu"
    assert d["kv_tokens_per_replica"] == 2**30 // (4 * 2 * 512 * 4) // 128 * 128  # the calibration's KV space
    assert d["cost_per_hour_usd"] == pytest.approx(0.05)


def test_the_thread_setting_asked_for_is_the_one_priced(two_threads):
    one = json.loads(_run([*SERVE, "-c", str(two_threads)])[1])
    two = json.loads(_run([*SERVE, "-c", str(two_threads), "--threads", "2"])[1])
    assert two["accelerator"].endswith("@threads=2")
    assert two["ttft_mean_s"] < one["ttft_mean_s"]
    code, out = _run([*SERVE, "-c", str(two_threads), "--threads", "3"])
    assert code == 2 and "measured 1, 2 thread(s), not 3" in out


def test_a_calibration_of_another_device_with_a_is_refused():
    code, out = _run(["serve", "-m", "llama-2-7b", "-a", "h100", "-c", "A100-SXM4-80GB-profile", "--rate", "1",
                      "--prompt-tokens", "100", "--output-tokens", "10", "-n", "5"])
    assert code == 2 and "H100-SXM5-80GB is not the device of calibration A100-SXM4-80GB-profile" in out
    code, out = _run(["train", *MODEL, "-a", "a100", "-c", "cpu-amd-epyc-2c", "--global-batch", "4"])
    assert code == 2 and "not the device of calibration cpu-amd-epyc-2c" in out


def test_a_gpu_engine_on_a_cpu_device_is_refused():
    code, out = _run(["serve", *MODEL, "-c", "cpu-amd-epyc-2c", "--dtype", "fp32", "--rate", "1",
                      "--prompt-tokens", "100", "--output-tokens", "10", "-n", "5"])
    assert code == 2 and "vllm-cpu" in out


def test_train_and_memory_on_the_calibrated_device():
    code, out = _run(["train", *MODEL, "-c", "cpu-amd-epyc-2c", "--global-batch", "4", "--seq-len", "512",
                      "--precision", "fp32", "--json"])
    assert code == 0, out
    d = json.loads(out)
    assert d["accelerator"] == "cpu-amd-epyc-2c@threads=1" and d["calibration"] == "cpu-amd-epyc-2c"
    code, out = _run(["memory", "serve", *MODEL, "-c", "cpu-amd-epyc-2c", "--dtype", "fp32", "--json"])
    assert code == 0 and json.loads(out)["accelerator"] == "cpu-amd-epyc-2c@threads=1"
    cal = load_calibration("cpu-amd-epyc-2c")
    assert calibrated_device(cal).accelerator.memory_bytes == cal.device["memory_bytes"]


def test_a_datasheet_calibration_is_not_a_device_of_its_own():
    with pytest.raises(SpecError, match="pass -a A100-SXM4-80GB"):
        calibrated_device("A100-SXM4-80GB")
