"""GenAI-Perf's closed loop as perf_analyzer runs it (issue 13, item 5; capsim/validation/clients.py): all C clients
start at once and the start-up is counted; time windows of 12 s run back to back from the start until three in a
row have completions."""

from __future__ import annotations

import pandas as pd
import pytest

from capsim.errors import SpecError
from capsim.validation.clients import WINDOW_S, genai_perf_count, genai_perf_windows


def _loop(clients: int, duration_s: float, rounds: int, ttft_first_s: float = 5.0) -> pd.DataFrame:
    """C clients each sending back to back requests of fixed length from t = 0; the first round queues (TTFT
    ``ttft_first_s``), later ones do not (0.5 s)."""
    rows = []
    for _ in range(clients):
        t = 0.0
        for k in range(rounds):
            ttft = ttft_first_s if k == 0 else 0.5
            rows.append({"arrival_s": t, "finish_s": t + duration_s, "ttft_s": ttft, "tpot_s": 0.04,
                         "output_tokens": 100})
            t += duration_s
    return pd.DataFrame(rows)


def test_the_start_up_is_counted_and_windows_run_from_the_start():
    req = _loop(4, 7.0, 40)  # completions at 7, 14, 21, ...: every 12 s window has some
    m = genai_perf_windows(req)
    assert m.requests == 4 * 5  # three windows: completions at 7, 14, 21, 28, 35 s (< 36 s)
    assert m.ttft_mean_s == pytest.approx((5.0 + 4 * 0.5) / 5)  # the burst's first round is in it
    assert "3 windows" in m.note


def test_an_empty_first_window_is_not_stable():
    req = _loop(2, 13.0, 30)  # completions at 13, 26, 39, ...: [0, 12) is empty, [12, 48) stable
    m = genai_perf_windows(req)
    assert m.requests == 2 * 3 and "4 windows" in m.note
    assert m.ttft_mean_s == pytest.approx((5.0 + 2 * 0.5) / 3)  # the first round (TTFT 5 s) is still counted


def test_no_stable_windows_in_max_trials_is_an_error():
    req = _loop(2, 20.0, 30)  # completions at 20, 40, 60, ...: every other 12 s window is empty
    with pytest.raises(SpecError, match="no 3 stable windows"):
        genai_perf_windows(req)


def test_request_count_mode_counts_every_request():
    req = _loop(3, 7.0, 2)
    m = genai_perf_count(req)
    assert m.requests == 6 and m.ttft_mean_s == pytest.approx((5.0 + 0.5) / 2)
    assert m.output_tokens_per_s == pytest.approx(600 / 14.0)
    assert pytest.approx(12.0) == WINDOW_S
