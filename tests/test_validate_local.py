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
    report = local_suite(size="small", repeats=3, quiet_wait_s=0.0)  # one load probe per phase, no wait
    d = report.to_dict()
    assert d["suite"] == "local" and d["calibration"] == cal.name
    assert [r["case"] for r in d["rows"]] == [c.name for c in SIZES["small"]]
    assert {r["metric"] for r in d["rows"]} == {"train_step_s", "prefill_s", "decode_step_s", "ddp_train_step_s",
                                                "pp_train_step_s"}
    for r in d["rows"]:
        assert r["measured"] > 0 and r["predicted"] > 0 and np.isfinite(r["error_pct"])
    assert any("other processes" in n for n in d["notes"])  # the load it ran under is on record
    # No timing bound here: how close real timings come is what `capsim validate local` reports, not a unit test.


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


def test_pipeline_order_is_megatrons_one_f_one_b():
    from kernels.local_bench import one_f_one_b

    assert one_f_one_b(0, 2, 4) == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("F", 3), ("B", 2), ("B", 3)]
    assert one_f_one_b(1, 2, 4) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2), ("F", 3), ("B", 3)]


def test_pipeline_prediction_adds_the_bubble_to_the_stages():
    from capsim.validation.local import predict, predict_pp

    perf = default_calibration().perf()
    case = next(c for c in SIZES["default"] if c.phase == "pp")
    step, bubble = predict_pp(perf, case)
    whole = predict(perf, next(c for c in SIZES["default"] if c.phase == "train" and c.family == case.family
                               and c.hidden == case.hidden))
    # 4 micro-batches over 2 stages: about 4 half-models of work per stage, plus the fill/drain bubble
    assert 0.3 * 4 * whole / 2 < step - bubble < 1.5 * 4 * whole / 2 and bubble > 0
