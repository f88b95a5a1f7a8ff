"""Measured serving runs read from vllm bench serve JSON and per-request CSV files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from capsim.data.bench import measured_summary, read_bench
from capsim.errors import SpecError
from capsim.validation.harness import data_path


def _json(tmp_path, name="run", **changes):
    d = {"date": "20261205-120000", "request_rate": 2.0, "burstiness": 1.0, "max_concurrency": None,
         "duration": 10.0, "input_lens": [100, 200, 300], "output_lens": [3, 1, 4],
         "ttfts": [0.1, 0.2, 0.3], "itls": [[0.02, 0.03], [], [0.01, 0.01, 0.02]],
         "latencies": [0.15, 0.2, 0.34], "start_times": [100.0, 100.5, 101.0], "queue_times": [0.0, 0.0, 0.0],
         "errors": ["", "", ""]}
    d.update(changes)
    d = {k: v for k, v in d.items() if v is not ...}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(d))
    return path


def test_distserve_csv_figures_equal_its_published_summary():
    folder = data_path("distserve-vllm-opt13b")
    with open(folder / "summary.csv") as fh:
        summary = {row["file"]: row for row in csv.DictReader(fh)}
    for name, row in summary.items():
        m = measured_summary(read_bench(folder / name))
        assert m["ttft_mean_s"] * 1e3 == pytest.approx(float(row["ttft_ms_mean"]), rel=1e-6)
        assert m["tpot_mean_s"] * 1e3 == pytest.approx(float(row["tpot_ms_mean"]), rel=1e-6)
        assert m["e2e_p99_s"] * 1e3 == pytest.approx(float(row["latency_ms_p99"]), rel=1e-6)


def test_vllm_json_lengths_times_and_metrics(tmp_path):
    run = read_bench(_json(tmp_path))
    assert run.size == 3 and run.format == "vllm-bench-json"
    np.testing.assert_allclose(run.arrival_s, [0.0, 0.5, 1.0])
    m = measured_summary(run)
    assert m["ttft_mean_s"] == pytest.approx(0.2)
    assert m["tpot_mean_s"] == pytest.approx(np.mean([0.05 / 2, 0.04 / 3]))  # requests of more than one token
    assert m["itl_mean_s"] == pytest.approx(np.mean([0.02, 0.03, 0.01, 0.01, 0.02]))
    assert m["output_tokens_per_s"] == pytest.approx(8 / 10.0)


def test_failed_requests_are_left_out_and_counted(tmp_path):
    run = read_bench(_json(tmp_path, errors=["", "timeout", ""]))
    assert run.size == 2 and run.failed == 1
    assert list(run.prompt_tokens) == [100, 300]


def test_queue_time_is_taken_off_the_send_time(tmp_path):
    run = read_bench(_json(tmp_path, max_concurrency=1, request_rate="inf", queue_times=[0.0, 0.4, 0.8]))
    np.testing.assert_allclose(run.arrival_s, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(run.sent_s, [0.0, 0.5, 1.0])
    assert run.closed_loop


def test_older_client_without_send_times_or_latencies(tmp_path):
    run = read_bench(_json(tmp_path, start_times=..., latencies=..., queue_times=...))
    assert run.arrival_s is None
    np.testing.assert_allclose(run.e2e_s, [0.15, 0.2, 0.34])  # TTFT + sum(ITL), as that client measured E2E


def test_a_result_saved_without_save_detailed_is_refused(tmp_path):
    with pytest.raises(SpecError, match="--save-detailed"):
        read_bench(_json(tmp_path, input_lens=..., output_lens=..., ttfts=..., itls=...))


@pytest.mark.parametrize("change, field", [({"output_lens": [3, 1]}, "output_lens"),
                                           ({"ttfts": [0.1, "x", 0.3]}, "ttfts"),
                                           ({"output_lens": [3, 0, 4]}, "fewer than 1")])
def test_bad_json_names_the_field(tmp_path, change, field):
    with pytest.raises(SpecError, match=field):
        read_bench(_json(tmp_path, **change))


def test_bad_csv_names_the_column(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens,ttft_ms,tpot_ms\n0,10,2,5,1\n")
    with pytest.raises(SpecError, match="latency_ms"):
        read_bench(path)
    path.write_text("# a comment\narrived_at,num_prefill_tokens,num_decode_tokens,ttft_ms,tpot_ms,latency_ms\n"
                    "0.5,10,2,5,1,6\n0,20,3,4,1,6\n")
    run = read_bench(path)
    assert list(run.prompt_tokens) == [20, 10]  # sorted by arrival
    assert run.sent_s is not None and run.itl_s is None
