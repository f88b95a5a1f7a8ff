"""The training suite's rules (issue 11): software is a column, presets are dated releases, unpublished settings
take documented defaults with a band, rows never abort a suite, and a malformed file is one line and exit 2.
The per-row error bounds are in test_validation_bounds.py."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.analytic.training import RELEASES, FrameworkFamily, get_framework, get_release, release_for
from capsim.analytic.training.release import BEHAVIOUR, LAYOUT_SETTINGS, RUN_SETTINGS
from capsim.cli import app
from capsim.errors import SpecError
from capsim.validation import run_suite
from capsim.validation.harness import read_csv
from capsim.validation.training import REQUIRED, predict_row

AS_PUBLISHED = Path(__file__).parent / "data" / "training_sc21_as_published.csv"
HEADER = ",".join(REQUIRED)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def _csv(tmp_path: Path, *rows: str, header: str = HEADER) -> str:
    path = tmp_path / "runs.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


# SC21's 1.7B run: the authors' launcher values (micro-batch 16) and the release it ran.
ROW = ("mine,gpt-1.7B,2304,24,24,,,gelu,2048,51200,A100-SXM4-80GB,32,1,1,1,1,32,0,512,16,full,no,fp16,"
       "tflops_per_gpu_hw,137,megatron-lm,megatron-lm-2021")


def test_every_release_cites_every_field_and_documents_every_default():
    for name, rel in RELEASES.items():
        assert rel.name == name.value and rel.framework.name == name.value
        assert set(rel.cite) == set(BEHAVIOUR), name
        assert all(len(source) > 20 for source in rel.cite.values()), name
        assert set(rel.defaults) == set(LAYOUT_SETTINGS), name
        assert rel.date[:2] == "20" and rel.code, name
        for flag in rel.flags.values():  # a flag sets a real field (field "layout": several layout settings;
            if flag.field == "layout":  # field "framework": several Framework fields)
                assert all(set(v) <= set(LAYOUT_SETTINGS) for v in flag.values.values()), name
            elif flag.field == "framework":
                assert all(v and set(v) <= set(BEHAVIOUR) for v in flag.values.values()), name
            else:
                assert flag.field.removeprefix("layout.") in set(BEHAVIOUR) | set(LAYOUT_SETTINGS) | set(RUN_SETTINGS)


def test_releases_are_looked_up_by_family_and_release():
    assert release_for("megatron-lm", "megatron-lm-2021").name == "megatron-lm-2021"
    assert release_for("Megatron-LM", "megatron-lm-2021.06").name == "megatron-lm-2021"  # inside its stated range
    assert release_for("megatron-lm", "megatron-lm-2022.05.30").name == "megatron-lm-2022"
    for family, software, field in (("megatron-lm", "megatron-lm-2021.09", "software"),  # straddles its end
                                    ("megatron-lm", "megatron-lm-2023", "software"),
                                    ("megatron-lm", "", "software"), ("", "megatron-lm-2021", "framework"),
                                    ("colossalai", "0.9", "framework")):
        with pytest.raises(SpecError) as err:
            release_for(family, software)
        assert err.value.field == field and "megatron" in str(err.value)
    assert {r.family for r in RELEASES.values()} == set(FrameworkFamily)
    assert get_framework("megatron-2021") == get_release("megatron-lm-2021").framework  # names before issue 11


def test_flags_change_only_what_they_name():
    base = get_framework("megatron-lm-2021")
    torch_ddp = get_framework("megatron-lm-2021", "--DDP-impl=torch")
    assert torch_ddp.overlap_grad_reduce and not base.overlap_grad_reduce
    assert torch_ddp.with_(overlap_grad_reduce=False) == base
    fw, layout = get_release("megatron-core-0.8.0").configure("--use-distributed-optimizer --overlap-grad-reduce")
    assert layout["distributed_optimizer"] is True and fw.overlap_grad_reduce
    for bad in ("--DDP-impl=fast", "--sequence-parallel"):
        with pytest.raises(SpecError, match="flags"):
            get_framework("megatron-lm-2021", bad)


def test_blanks_take_documented_defaults_and_report_the_band():
    row = read_csv(AS_PUBLISHED, "", REQUIRED)[0]  # SC21 1.7B with micro_batch blank
    pred = predict_row(row, "A100-SXM4-80GB")
    assert pred.settings == {"micro_batch": 4}  # Megatron-LM 2021's examples/pretrain_gpt.sh
    assert "defaults micro_batch=4" in pred.note and "band over micro_batch in {1,2,4,8,16}" in pred.note
    low, high = pred.band
    assert low <= pred.value <= high and low < high
    assert pred.value < high  # the default, not the fastest value
    filled = predict_row({**row, "micro_batch": "4"}, "A100-SXM4-80GB")
    assert filled.value == pytest.approx(pred.value) and filled.band is None


def test_defaults_that_cannot_run_price_the_band_median_and_say_so():
    # The 1008B run publishes no micro-batch: Megatron-LM 2021's default 4 needs 110 GB/GPU of the 85.1e9 B an A100
    # 80GB reports, so the run used another plausible value: priced at the feasible layout of the band's median
    # prediction (neither end), and the note says so
    report = run_suite("training", str(AS_PUBLISHED), "A100-SXM4-80GB")
    assert report.rows_failed == 0 and len(report.rows) == 10
    row = read_csv(AS_PUBLISHED, "", REQUIRED)[9]
    assert row["model"] == "gpt-1008B" and row["micro_batch"] == ""
    pred = predict_row(row, "A100-SXM4-80GB")
    assert "the defaults cannot run (does not fit in memory (110.0 GB/GPU" in pred.note
    assert "priced at the band's median feasible layout, micro_batch=1 v=1" in pred.note
    assert pred.settings == {"micro_batch": 1, "v": 1} and pred.memory_bytes <= pred.capacity_bytes
    low, high = pred.band
    assert low < pred.value < high  # 3 feasible layouts: the middle one


def test_a_row_no_plausible_setting_runs_is_a_reported_miss(tmp_path):
    published = read_csv(AS_PUBLISHED, "", REQUIRED)[9]
    header = ",".join(k for k in published if k in REQUIRED)
    line = ",".join({**published, "micro_batch": "4", "pp_interleave": "1"}[k] for k in header.split(","))
    report = run_suite("training", _csv(tmp_path, line, header=header), "A100-SXM4-80GB")
    (r,) = report.rows
    assert report.rows_failed == 1 and r.error_pct is None and "does not fit in memory" in r.note
    assert r.band_low is None and "band over" not in r.note  # nothing left blank: no other plausible layout


def test_rows_never_abort_and_json_is_always_printed(tmp_path):
    odd = ROW.replace("mine,gpt-1.7B,2304,24", "odd,gpt-126l,2304,126").replace(",32,1,1,1,1,32,", ",32,1,8,1,1,4,")
    unknown_gpu = ROW.replace("A100-SXM4-80GB", "Z100")
    result = run("validate", "training", "--file", _csv(tmp_path, ROW, odd, unknown_gpu), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows_priced"] == 1 and out["rows_failed"] == 2 and len(out["rows"]) == 3
    priced, layers, gpu = out["rows"]
    assert priced["predicted"] > 0 and priced["band_low"] is None
    assert layers["predicted"] is None and layers["error_pct"] is None and "layers" in layers["note"]
    assert gpu["predicted"] is None and "Z100" in gpu["note"]
    assert out["median_abs_error_pct"] == pytest.approx(abs(priced["error_pct"]))
    table = run("validate", "training", "--file", _csv(tmp_path, ROW, odd))
    assert table.exit_code == 0 and "1 of 2 rows not priced (misses)" in " ".join(table.output.split())


@pytest.mark.parametrize("edit, words", [
    (lambda r: r.replace(",megatron-lm,megatron-lm-2021", ",,megatron-lm-2021"), "framework: line 3: blank"),
    (lambda r: r.replace(",megatron-lm,megatron-lm-2021", ",colossalai,megatron-lm-2021"), "capsim knows megatron-lm"),
    (lambda r: r.replace("megatron-lm-2021", "megatron-lm-2019"), "software: line 3: unknown megatron-lm release"),
    (lambda r: r.replace("tflops_per_gpu_hw", "tokens_per_day"), "metric: line 3: unknown metric"),
    (lambda r: r.replace(",137,", ",abc,"), "value: line 3: 'abc' is not a number"),
    (lambda r: r.replace(",137,", ",0,"), "finite and positive"),
    (lambda r: r.replace(",137,", ",inf,"), "finite and positive"),
    (lambda r: r.replace(",137,", ",-137,"), "finite and positive"),
    (lambda r: r.replace(",32,1,1,1,1,32,", ",32,x,1,1,1,32,"), "tp: line 3: 'x' is not an integer"),
    (lambda r: r.replace(",full,no,", ",lots,no,"), "recompute: line 3"),
])
def test_a_malformed_file_is_one_line_and_exit_2(tmp_path, edit, words):
    result = run("validate", "training", "--file", _csv(tmp_path, ROW, edit(ROW)), "--json")
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in " ".join(lines), result.output


def test_a_layout_the_release_did_not_offer_is_not_priced(tmp_path):
    sp_2021 = ("k,gpt-22B,6144,48,64,,,gelu,2048,51200,A100-SXM4-80GB,8,8,1,1,1,1,0,4,4,selective,yes,fp16,"
               "iteration_s,1.10,megatron-lm,megatron-lm-2021")  # sequence parallelism arrived in 2022
    report = run_suite("training", _csv(tmp_path, sp_2021, sp_2021.replace("lm-2021", "lm-2022")), "A100-SXM4-80GB")
    old, new = report.rows
    assert not old.priced and "megatron-lm-2021 does not offer sp=yes" in old.note
    assert new.priced and abs(new.error_pct) < 12
    pp2_v2 = ROW.replace(",32,1,1,1,1,32,0,512,16,", ",32,1,2,2,1,16,0,512,16,")  # 2021: interleaving needs pp > 2
    row = run_suite("training", _csv(tmp_path, pp2_v2), "A100-SXM4-80GB").rows[0]
    assert not row.priced and "interleaves only with pp >= 3" in row.note


def test_the_band_holds_only_layouts_the_release_runs():
    row = read_csv(AS_PUBLISHED, "", REQUIRED)[4]  # SC21 39.1B: pp=2, so Megatron-LM 2021 cannot interleave
    assert row["model"] == "gpt-39.1B" and row["pp_interleave"] == ""
    assert "v in {1}" in predict_row(row, "A100-SXM4-80GB").note


def test_flags_column_is_read_and_unknown_flags_are_errors(tmp_path):
    header = HEADER + ",flags"
    local = run_suite("training", _csv(tmp_path, ROW + ",", header=header), "A100-SXM4-80GB").rows[0]
    torch_ddp = run_suite("training", _csv(tmp_path, ROW + ",--DDP-impl=torch", header=header),
                          "A100-SXM4-80GB").rows[0]
    assert torch_ddp.predicted > local.predicted and "--DDP-impl=torch" in torch_ddp.note
    result = run("validate", "training", "--file", _csv(tmp_path, ROW + ",--no-such-flag", header=header))
    assert result.exit_code == 2 and "flags" in result.output and "--DDP-impl" in result.output


def test_missing_columns_name_them(tmp_path):
    result = run("validate", "training", "--file", _csv(tmp_path, ROW.rsplit(",", 2)[0],
                                                         header=HEADER.rsplit(",", 2)[0]))
    assert result.exit_code == 2 and "['framework', 'software']" in result.output


def test_every_shipped_row_fits_in_what_an_a100_80gb_reports_to_cuda():
    for r in read_csv(None, "training_published.csv", REQUIRED):
        pred = predict_row(r, "A100-SXM4-80GB")
        assert pred.memory_bytes <= pred.capacity_bytes == 79.25 * 2**30, r["model"]  # accelerators.yaml's cited figure


def test_memory_rows_name_their_software_or_need_none(tmp_path):
    header = "source,model,config,metric,value,unit,precision,seq,micro_batch,global_batch,framework,software"
    act = "mine,gpt-22b,tp8 no recompute no sp,activations_per_gpu,59.25,GiB,fp16,2048,4,4"
    path = tmp_path / "mem.csv"
    path.write_text(f"{header}\n{act},,\n")
    result = run("validate", "memory", "--file", str(path))
    assert result.exit_code == 2 and "framework" in result.output
    path.write_text(f"{header}\n{act},megatron-lm,megatron-lm-2022\nmine,no-such-model,tp8,activations_per_gpu,1,GiB,"
                    "fp16,,,,megatron-lm,megatron-lm-2022\n")
    out = json.loads(run("validate", "memory", "--file", str(path), "--json").stdout)
    assert out["rows_failed"] == 1 and abs(out["rows"][0]["error_pct"]) < 1
