"""`capsim validate local`: real torch decoders on this machine against capsim's predictions (small version)."""

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from capsim.analytic.params import param_counts  # noqa: E402
from capsim.cli import app  # noqa: E402
from capsim.validation.local import SIZES, Case, ddp_buckets, default_calibration, local_suite, predict, spec  # noqa: E402

cli = CliRunner()


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_the_torch_models_are_the_models_capsim_prices(family):
    from kernels.local_bench import build_model
    from kernels.models import DecoderConfig

    case = Case(family, 256, 2, "train", 1, 64)
    model = build_model(DecoderConfig(**case.config()))
    assert sum(p.numel() for p in model.parameters()) == param_counts(spec(case)).total
    assert (spec(case).kv_heads < spec(case).heads) == (family == "llama")


def test_predictions_grow_with_the_work():
    perf = default_calibration().perf()
    small, big = Case("gpt", 256, 2, "train", 1, 128), Case("gpt", 512, 2, "train", 1, 128)
    assert 0 < predict(perf, small) < predict(perf, big)
    decode = [predict(perf, Case("llama", 256, 2, "decode", 4, n)) for n in (64, 1024)]
    assert decode[0] < decode[1]
    assert ddp_buckets(30e6).sum() == pytest.approx(30e6) and ddp_buckets(30e6)[0] == 2**20


def test_validate_local_small_runs_real_models_and_reports_every_row():
    cal = default_calibration()
    report = local_suite(size="small", repeats=3, quiet_wait_s=5.0)
    d = report.to_dict()
    assert d["suite"] == "local" and d["calibration"] == cal.name
    assert [r["case"] for r in d["rows"]] == [c.name for c in SIZES["small"]]
    assert {r["metric"] for r in d["rows"]} == {"train_step_s", "prefill_s", "decode_step_s", "ddp_train_step_s"}
    for r in d["rows"]:
        assert r["measured"] > 0 and r["predicted"] > 0 and np.isfinite(r["error_pct"])
    from kernels.harness import device_name

    assert any("other processes" in n for n in d["notes"])  # the load it ran under is on record
    if cal.device.get("name") == device_name("cpu"):  # the committed calibration describes this CPU
        # Loose bounds (a shared machine is noisy; the full suite's figures are in the report): single-process
        # rows use the thread CPU clock; data-parallel rows the wall clock, which other tenants can stretch.
        single = [r for r in report.rows if r.metric != "ddp_train_step_s"]
        assert np.median([abs(r.error_pct) for r in single]) <= 25.0, report.rows
        assert all(0.5 < r.predicted / r.measured < 2.0 for r in single), report.rows


def test_validate_local_input_errors_exit_2():
    result = cli.invoke(app, ["validate", "local", "--file", "x.csv"])
    assert result.exit_code == 2 and "drop --file" in result.output
    result = cli.invoke(app, ["validate", "local", "--calibration", "no-such-calibration"])
    assert result.exit_code == 2 and "calibration" in result.output


def test_data_parallel_timing_keeps_the_undisturbed_steps():
    from kernels.local_bench import undisturbed

    steps, others = [1.0, 5.0, 1.2, 1.1, 6.0], [0.0, 1.5, 0.1, 0.2, 2.0]
    timing, kept = undisturbed(steps, others)
    assert kept == 3 and timing.median_s == 1.1
    timing, kept = undisturbed(steps, [1.0] * 5)  # never quiet: every step, and say so
    assert kept == 0 and timing.median_s == 1.2
