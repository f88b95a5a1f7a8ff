"""A bench suite's flag variants (suite.yaml ``flag_variants``): launch flags no source tells apart from the suite's
own. Each variant is a complete prediction (replayed with its flags, the engine's host terms fitted again on the
suite's fit runs) and every row's band spans the point and the variants; the point itself does not move.

DistServe's runs (capsim/data/distserve-vllm-opt13b/SOURCE.md): the launcher revisions of the week before the data
give 4,059 KV blocks (8f13114, the point), 3,499 (36306b0 .. 99e10b2) and 3,694 (bde5424); the cache's size decides
whether the 3-4 req/s runs queue.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from capsim.cli import app
from capsim.errors import SpecError
from capsim.validation import bench_suites as bs
from capsim.validation.bench_suites import Suite, run_bench_suite


def test_every_band_holds_its_point(distserve_report):
    priced = [r for r in distserve_report.rows if r.priced]
    assert len(priced) == len(distserve_report.rows) == 167
    assert all(r.band_low <= r.predicted <= r.band_high for r in priced)
    assert sum(r.band_low < r.band_high for r in priced) > 100  # the variants move most rows


# (case, measured, point, band low, band high), mean TTFT in ms, fitted on vllm-100-1 (2026-12-07)
QUEUEING = [("vllm-300-3", 461.58, 223.74, 223.74, 661.53),
            ("vllm-350-3.5", 2904.69, 2541.47, 2541.47, 5098.67),
            ("vllm-400-4", 10685.14, 8345.23, 8345.23, 12954.65)]


@pytest.mark.parametrize("case, measured, point, low, high", QUEUEING)
def test_the_queueing_runs_ttft_band_reaches_the_measured_value(distserve, case, measured, point, low, high):
    """At 3-4 req/s the point (4,059 blocks) queues less than the runs; the earlier launchers' smaller caches
    (3,499 and 3,694 blocks) queue more, so the band over the three launchers holds the measured mean TTFT."""
    row = distserve[("fitted on vllm-100-1", case, "ttft_mean")]
    assert row.measured == pytest.approx(measured, rel=1e-4)
    assert (row.predicted, row.band_low, row.band_high) == pytest.approx((point, low, high), rel=0.02)
    assert row.band_low < row.measured < row.band_high


def test_the_uncalibrated_3_req_s_band_stays_below_the_run(distserve):
    """Uncalibrated, 3 req/s queues under none of the launchers' caches: 179-238 ms against 462 measured."""
    row = distserve[("uncalibrated", "vllm-300-3", "ttft_mean")]
    assert (row.band_low, row.band_high) == pytest.approx((179.37, 237.98), rel=0.02)
    assert row.band_high < 0.6 * row.measured
    row = distserve[("uncalibrated", "vllm-350-3.5", "ttft_mean")]
    assert (row.band_low, row.band_high) == pytest.approx((595.32, 2088.33), rel=0.02)


def test_the_saturation_band_spans_the_launchers(distserve):
    row = distserve[("fitted on vllm-100-1", "distserve rate sweep", "saturation_rate")]
    assert (row.predicted, row.band_low, row.band_high) == pytest.approx((3.33, 3.08, 3.33), rel=0.02)
    assert row.band_low < row.measured < row.band_high


def test_the_note_names_each_variant_its_source_and_kv_cache(distserve_report):
    [note] = [n for n in distserve_report.notes if n.startswith("band:")]
    assert "fitted again on vllm-100-1.csv" in note
    for source, blocks in (("DistServe 8f13114", "4,059"), ("DistServe 36306b0 .. 99e10b2", "3,499"),
                           ("DistServe bde5424", "3,694")):
        assert f"({source}" in note and f"KV cache {blocks} blocks" in note.split(f"({source}", 1)[1][:400], note


def test_without_variants_the_rows_are_the_point_and_carry_no_band(distserve_report):
    """The serving convention: no band where the suite leaves nothing open. The point is the same prediction with
    or without variants."""
    s = bs.load_suite("distserve")
    alone = bs._bench_suite(Suite(s.name, s.folder, {k: v for k, v in s.spec.items() if k != "flag_variants"}), None)
    assert all(r.band_low is None and r.band_high is None for r in alone.rows)
    assert [(r.source, r.case, r.metric, r.predicted) for r in alone.rows] == \
        [(r.source, r.case, r.metric, r.predicted) for r in distserve_report.rows]
    assert not [n for n in alone.notes if n.startswith("band:")]


def _suite_with(tmp_path, monkeypatch, variants) -> None:
    shipped = bs.load_suite("distserve")
    shutil.copy(shipped.folder / "suite.yaml", tmp_path / "suite.yaml")
    spec = yaml.safe_load((tmp_path / "suite.yaml").read_text())
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**spec, "flag_variants": variants}))
    monkeypatch.setattr(bs, "data_path", lambda *parts: tmp_path / parts[-1])  # no runs: refused before any replay


@pytest.mark.parametrize("variants, message", [
    ([{"flags": "block_size=16;bogus=1", "source": "x"}], r"flag_variants\[0\]\.flags: distserve: unknown flag 'bogus'"),
    ([{"flags": "block_size=16", "source": "x"}, {"flags": "gpu_memory_utilization=1.5", "source": "y"}],
     r"flag_variants\[1\]\.flags: distserve: gpu_memory_utilization=1.5 must be in \(0, 1\]"),
    ([{"flags": "block_size=16"}], r"flag_variants\[0\]: distserve: .* is not \{flags: \.\.\., source: \.\.\.\}"),
    ("block_size=16", r"flag_variants: distserve: 'block_size=16' is not a list"),
])
def test_a_bad_variant_is_refused_naming_the_field(tmp_path, monkeypatch, variants, message):
    _suite_with(tmp_path, monkeypatch, variants)
    with pytest.raises(SpecError, match=message) as err:
        run_bench_suite("distserve")
    assert "\n" not in str(err.value)


def test_a_variant_equal_to_the_point_is_refused(tmp_path, monkeypatch):
    flags = bs.load_suite("distserve").spec["flags"]
    _suite_with(tmp_path, monkeypatch, [{"flags": flags.replace(";", " ; "), "source": "the same"}])
    with pytest.raises(SpecError, match=r"flag_variants\[0\]\.flags: distserve: the suite's own flags"):
        run_bench_suite("distserve")


def test_the_cli_refuses_a_bad_variant_in_one_line(tmp_path, monkeypatch):
    _suite_with(tmp_path, monkeypatch, [{"flags": "bogus=1", "source": "x"}])
    result = CliRunner().invoke(app, ["validate", "bench", "--suite", "distserve"])
    assert result.exit_code == 2 and "flag_variants[0].flags" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_step_time_suite_refuses_variants(tmp_path, monkeypatch):
    shipped = bs.load_suite("splitwise")
    (tmp_path / "splitwise.yaml").write_text(yaml.safe_dump(
        {**shipped.spec, "flag_variants": [{"flags": "max_num_seqs=8", "source": "x"}]}))
    monkeypatch.setattr(bs, "data_path", lambda *parts: tmp_path / parts[-1])
    with pytest.raises(SpecError, match="flag_variants: splitwise: a step-time suite replays no runs to vary"):
        run_bench_suite("splitwise")
