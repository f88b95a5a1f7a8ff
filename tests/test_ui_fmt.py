"""Numbers for people: durations, counts, axis labels, column headers, and tables whose infeasible rows show no
results (capsim.ui.fmt)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from capsim.ui import fmt


@pytest.mark.parametrize("s,text", [(3e-5, "30.0 us"), (0.331, "331 ms"), (11.6, "11.6 s"), (250, "4.17 min"),
                                    (9000, "2.50 h"), (381 * 86400, "381 days"), (math.inf, "-")])
def test_durations_read_as_people_say_them(s, text):
    assert fmt.seconds(s) == text


@pytest.mark.parametrize("x,text", [(3.32, "3.32"), (627, "627"), (30404.3, "30,404"), (2.5e6, "2.50M"),
                                    (1139466248058.1465, "1.14T")])
def test_counts_have_separators_or_si_letters(x, text):
    assert fmt.count(x) == text


def test_headers_name_the_unit():
    assert fmt.label("ttft_p99_s") == "TTFT p99 (s)"
    assert fmt.label("cost_per_hour_usd") == "cost ($/h)"
    assert fmt.label("tokens_per_s") == "tokens/s"
    assert fmt.label("weights_per_gpu_bytes") == "weights per GPU (GB)"


def test_markdown_is_escaped_to_plain_text():
    assert fmt.plain_md("tp*pp*cp = 3, $5") == r"tp\*pp\*cp \= 3\, \$5"


def test_tables_show_people_units_and_no_results_for_infeasible_rows():
    df = pd.DataFrame({"option": ["a", "b"], "feasible": [True, False], "reason": ["", "does not fit"],
                       "cost_per_hour_min": [12.5, 0.0], "replicas_min": [2, 0], "weights_per_gpu_bytes": [3.5e10, 7e10],
                       "time_to_train_s": [9e6, 1e7], "mfu": [0.41, 0.0], "tokens_needed": [1139466248058.1465, 2e12],
                       "tokens_per_s": [1.2e6, 3e5], "steps": [953674.316, 12.5]})
    shown, specs = fmt.display_table(df)
    assert np.isnan(shown.loc[1, "cost_per_hour_min"]) and np.isnan(shown.loc[1, "replicas_min"])
    assert np.isnan(shown.loc[1, "mfu"]) and shown.loc[1, "weights_per_gpu_bytes"] == pytest.approx(70.0)
    assert shown.loc[0, "time_to_train_s"] == pytest.approx(9e6 / 86400)
    assert specs["time_to_train_s"]["label"] == "time to train (days)"
    assert specs["mfu"]["format"] == "percent" and specs["cost_per_hour_min"]["format"] == "dollar"
    assert specs["tokens_needed"]["format"] == "compact" and shown.loc[0, "tokens_needed"] == 1139466248058.0
    assert shown.loc[0, "tokens_per_s"] == 1.2e6, "a rate per second is not a duration"
    assert specs["steps"]["format"] == "localized" and list(shown["steps"]) == [953674.0, 12.5]
    assert df.loc[1, "cost_per_hour_min"] == 0.0, "the caller's frame (the downloads) is left as it was"
