"""What enters capsim from files: errors survive process pools, data paths stay in their folder, no pickle."""

from __future__ import annotations

import pickle  # only to prove that errors survive a process pool, which pickles them
import re
from pathlib import Path

import pytest

from capsim.data.loaders import SHIPPED, data_dir, data_file, load_trace
from capsim.errors import SpecError, UnknownNameError
from capsim.inputs import inside, json_object, read_json_object

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("err", [SpecError("--rate", "must be > 0", "give a rate"),
                                 UnknownNameError("engine", "vlm", ["vllm", "sglang"])])
def test_spec_errors_survive_pickling(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)
    assert (back.field, back.problem, back.fix) == (err.field, err.problem, err.fix)


def test_an_input_error_in_a_worker_process_stays_an_input_error():
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool, pytest.raises(SpecError, match="trace: no file"):
        pool.submit(read_json_object, "/nonexistent/trace.json", "trace").result()


@pytest.mark.parametrize("name", ["../loaders.py", "../../capsim/errors.py", "traces/../../inputs.py", "/etc/passwd",
                                  "../../../../../../../../etc/passwd", ".."])
def test_data_names_cannot_leave_the_data_folder(name):
    with pytest.raises(SpecError, match="outside|unknown trace"):
        data_file(name)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "secret.csv"
    root.mkdir()
    outside.write_text("x")
    (root / "link.csv").symlink_to(outside)
    (root / "ok.csv").write_text("y")
    assert inside(root, "ok.csv", "trace") == (root / "ok.csv").resolve()
    with pytest.raises(SpecError, match="points outside"):
        inside(root, "link.csv", "trace")


def test_shipped_traces_load_by_name_and_by_relative_path():
    for name, rel in SHIPPED.items():
        assert data_file(rel).is_relative_to(data_dir())
        assert len(load_trace(name)) > 1000
    assert len(load_trace("distserve-vllm-opt13b/vllm-100-1.csv")) > 10


@pytest.mark.parametrize(("text", "words"), [("[1]", "a list"), ('"x"', "a string"), ("null", "null"), ("3", "a number"),
                                             ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"), ("{", "not valid JSON")])
def test_json_that_is_not_a_finite_object_is_refused(text, words):
    with pytest.raises(SpecError, match=re.escape(words)):
        json_object(text, "config", "c.json")


def test_no_pickle_anywhere():
    """Loading data never runs code from a file: no pickle, joblib, shelve, marshal or pickled numpy/pandas/torch."""
    banned = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle|joblib|shelve|marshal)\b|"
                        r"pickle\.loads?\(|read_pickle\(|allow_pickle\s*=\s*True|torch\.load\(", re.M)
    files = [ROOT / "app.py", *ROOT.glob("capsim/**/*.py"), *ROOT.glob("kernels/**/*.py"),
             *ROOT.glob("benchmarks/**/*.py")]
    offenders = [str(f.relative_to(ROOT)) for f in files if banned.search(f.read_text())]
    # Timing what Ray does to an actor's return value (pickle protocol 5) needs pickle: the benchmark round-trips
    # objects it built in memory and reads no file.
    timing = {"benchmarks/vllm02_engine_rpc.py"}
    assert not any(re.search(r"open\(|read_bytes\(|read_text\(|np\.load|read_csv", (ROOT / f).read_text())
                   for f in timing)
    assert len(files) > 50 and sorted(set(offenders) - timing) == []
