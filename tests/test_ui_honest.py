"""The dashboard never presents what cannot run as a result: infeasible plans get a box with the reason and the
nearest feasible change (no metrics, no cost); every page's defaults are feasible and free of warnings; messages
are shown as text; uploaded traces replay as recorded, from a private temporary folder that is then deleted."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import charts, errors, page, param, shown

from capsim.ui import serving
from capsim.ui.menu import MENU

TRACE = "arrived_at,num_prefill_tokens,num_decode_tokens\n" + "\n".join(
    f"{0.5 * i},{200 + 10 * i},{20 + i}" for i in range(40))  # 2 req/s as recorded


@pytest.mark.parametrize("module", [e.url_path for e in MENU])
def test_every_page_default_is_feasible_and_quiet(module, default_page):
    at = default_page(module)
    assert not at.exception
    assert not at.error, [shown(e.value) for e in at.error]
    assert not at.warning, [shown(w.value) for w in at.warning]


def test_scaling_serving_renders_the_default(default_page):
    # here, beside the default-page test above, so that under xdist's --dist loadfile both read the one Scaling run
    # of this worker's session cache (conftest.default_page) instead of each worker searching the four rates again
    at = default_page("scaling")  # four rates, each the planner's full search and confirmation
    assert not at.exception and not at.error
    assert charts(at) == 3
    assert list(at.dataframe[0].value["rate_rps"]) == [1, 10, 100, 1000]


def test_overview_and_registry_do_not_import_each_other():
    code = ("import sys, capsim.ui.overview\n"
            "assert 'capsim.ui.registry' not in sys.modules, 'overview pulled in the registry'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --- training: an infeasible plan ----------------------------------------------------------------

def test_an_infeasible_manual_plan_shows_why_and_the_nearest_fix_not_its_numbers():
    at = page("training", mode="manual")  # llama-2-70b, tp1 pp1 on 64 x A100: 1,332 GB per GPU
    assert not at.exception
    box = errors(at)
    assert "Infeasible" in box and "Nearest feasible change" in box
    need = float(re.search(r"needs ([\d,.]+) GB per GPU", box).group(1).replace(",", ""))
    assert need > 1000  # weights, gradients and Adam states of 70B parameters on every GPU
    assert not at.metric, "an infeasible plan shows no step time, MFU, days or cost"
    assert not any("$" in shown(m.value) for m in at.markdown)
    at.button[0].click().run()  # "Use the nearest layout"
    assert not at.exception and not at.error
    labels = {m.label for m in at.metric}
    assert {"Step time", "Cost to train"} <= labels
    assert int(param(at, "tp")) * int(param(at, "pp")) > 1


def test_auto_search_with_too_few_gpus_names_the_fewest_that_work():
    at = page("training", gpus="2")
    assert not at.exception and not at.metric
    box = errors(at)
    assert "Infeasible" in box and "GPUs:" in box
    at.button[0].click().run()
    assert not at.exception and not at.error and at.metric
    assert int(param(at, "gpus")) > 2


def test_errors_are_shown_as_written_not_as_markdown():
    at = page("training", mode="manual", tp="3")
    raw = " ".join(e.value for e in at.error)
    assert r"tp\*pp\*cp" in raw  # escaped, so the browser shows tp*pp*cp and not italics
    assert "tp*pp*cp = 3 does not divide the 64 GPUs" in errors(at)


def test_a_replica_that_cannot_hold_the_model_is_infeasible_with_the_nearest_replica():
    at = page("serving", model="llama-3-70b", requests="60", loads="1")  # 141 GB of weights on one 80 GB GPU
    assert not at.exception and not at.metric
    box = errors(at)
    assert "Infeasible" in box and "141.1 GB" in box and "Nearest feasible change" in box
    at.button[0].click().run()
    assert not at.exception and not at.error and at.metric
    assert (param(at, "tp"), param(at, "quant")) != ("1", "none")


# --- serving: uploads and SLOs -------------------------------------------------------------------

def test_an_uploaded_trace_replays_as_recorded_by_default(upload):
    upload("trace.csv", TRACE)
    at = page("serving", wl_src="trace CSV", loads="1")
    assert not at.exception and not at.error
    caption = shown(at.caption[1].value)
    assert "40 requests" in caption and "recorded arrivals x1" in caption and "no SLO set" in caption
    slo = next(m for m in at.metric if m.label == "SLO attainment")
    assert slo.value == "no SLO", "no SLO was set, so nothing can be attained"
    at.selectbox(key="arrivals").select(serving.POISSON).run()
    assert "Poisson arrivals at 4 req/s" in shown(at.caption[1].value)


def test_replay_keeps_the_recorded_rate():
    wl = serving.build(None, TRACE, None, 1000, 0, 1.0, 1.0)
    assert len(wl.prompt_tokens) == 40
    assert wl.arrival_s[-1] == pytest.approx(19.5)  # 39 gaps of 0.5 s: 2 req/s, as recorded
    faster = serving.build(None, TRACE, None, 1000, 0, 2.0, 1.0)
    assert faster.arrival_s[-1] == pytest.approx(19.5 / 2)


def test_uploads_live_in_a_private_folder_only_while_read(monkeypatch, tmp_path):
    seen = {}
    real = serving.build_workload

    def spy(spec):
        path = Path(spec.trace)
        seen["path"], seen["file_mode"] = path, stat.S_IMODE(path.stat().st_mode)
        seen["dir_mode"] = stat.S_IMODE(path.parent.stat().st_mode)
        return real(spec)

    monkeypatch.setattr(serving, "build_workload", spy)
    planted = tmp_path / "capsim-ui-traces"  # the old fixed folder, with a planted file: never read
    planted.mkdir()
    (planted / "x.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    wl = serving.build(None, TRACE, None, 1000, 0, 1.0, 1.0)
    assert len(wl.prompt_tokens) == 40
    assert seen["dir_mode"] == 0o700 and seen["file_mode"] == 0o600
    assert seen["path"].parent.parent == tmp_path and seen["path"].parent != planted
    assert not seen["path"].exists() and not seen["path"].parent.exists(), "the upload is deleted after reading"
    assert os.listdir(tmp_path) == ["capsim-ui-traces"]


# --- what-ifs ------------------------------------------------------------------------------------

def test_the_quantization_default_answers_the_question():
    at = page("whatif")
    assert not at.exception and not at.error
    answer = " ".join(shown(m.value) for m in at.markdown)
    assert "Cheapest:" in answer and "x the cost of bf16 weights, bf16 KV cache" in answer
    ratio = float(answer.split("x the cost")[0].rsplit(", ", 1)[-1])
    assert ratio < 1.0


def test_infeasible_options_show_no_cost():
    at = page("whatif", model="llama-3-70b", tp="1")  # 141 GB of bf16 weights on one GPU of 85 GB
    assert not at.exception
    table = at.dataframe[0].value
    bad = table[~table["reason"].isna() & (table["reason"] != "")]
    assert len(bad) and bad[["replicas_min", "cost_per_hour_min", "capacity_rps"]].isna().all().all()


def test_app_script_runs_every_page_through_the_registry():
    at = AppTest.from_file(str(Path(serving.__file__).parent / "script" / "dashboard.py"), default_timeout=60).run()
    assert not at.exception
