"""Serving inputs capsim has not seen: an engine named with its release, as validation rows name it (found by
feeding such commands to ``capsim serve``)."""

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.errors import SpecError
from capsim.specs.engine import engine_release, get_engine


@pytest.mark.parametrize(("name", "family", "version"), [("vllm-0.10.1", "vllm", "0.10.1"),
                                                         ("sglang-0.5.2", "sglang", "0.5.2"),
                                                         ("tensorrt-llm-1.1.0", "tensorrt-llm", "1.1.0"),
                                                         ("trtllm-0.16.0", "tensorrt-llm", "0.16.0"),
                                                         ("vllm-0.6.3", "vllm", "0.6.3")])
def test_an_engine_named_with_its_release_is_the_profile_covering_it(name, family, version):
    assert get_engine(name) == engine_release(family, version)


def test_a_profile_name_stays_that_profile_and_an_unknown_release_names_the_known_ones():
    assert get_engine("vllm-0.4.1").name == "vllm-0.4.1"
    with pytest.raises(SpecError, match="vllm 0.1.4 on a gpu is a release capsim has no profile for"):
        get_engine("vllm-0.1.4")
    with pytest.raises(SpecError, match="unknown engine 'foo-1.0'"):
        get_engine("foo-1.0")


def test_serve_takes_an_engine_release():
    out = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "-a", "H200-SXM-141GB", "-e", "vllm-0.10.1",
                                   "--rate", "2", "--prompt-tokens", "512", "--output-tokens", "64", "-n", "50"])
    assert out.exit_code == 0, out.output[-400:]


def _bench_file(tmp_path, name="run.json", **changes):
    import json
    from pathlib import Path

    d = json.loads(Path("capsim/data/vllm-cpu/concurrency-4.json").read_text())
    d.update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path, d


def test_a_completed_request_without_its_gaps_is_a_clear_error(tmp_path):
    from capsim.data.bench import read_bench

    path, d = _bench_file(tmp_path)
    d["itls"][2] = None
    path.write_text(__import__("json").dumps(d))
    with pytest.raises(SpecError, match="request 2 completed .* its itls is None"):
        read_bench(path)
    d["itls"][2] = [0.02, "x"]
    path.write_text(__import__("json").dumps(d))
    with pytest.raises(SpecError, match="'x' is not a number"):
        read_bench(path)


def test_a_run_longer_than_the_served_context_is_not_replayed(tmp_path):
    import json

    path, d = _bench_file(tmp_path)
    d["input_lens"] = [2100] * len(d["input_lens"])
    path.write_text(json.dumps(d))
    args = ["validate", "bench", str(path), "--hf-config", "capsim/data/vllm-cpu/model/config.json", "-c",
            "cpu-amd-epyc-2c", "-e", "vllm-cpu", "--dtype", "fp32", "--flags", "max_model_len=2048", "--json"]
    out = CliRunner().invoke(app, args)
    rows = json.loads(out.stdout)["rows"]
    assert rows and all(r["predicted"] is None for r in rows)
    assert "more than the served context of 2048" in rows[0]["note"]
