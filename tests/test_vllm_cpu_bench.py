"""The vLLM-CPU benchmark driver's own logic (the runs themselves need vLLM's CPU build: optional in CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LOG = """(EngineCore pid=9199) INFO 12-05 22:41:25 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='/m', enable_prefix_caching=True, enable_chunked_prefill=True, ...
(EngineCore pid=9199) INFO 12-05 22:41:26 [ompmultiprocessing.py:185] \tlocal_rank=0, core ids=[0]
(EngineCore pid=9199) INFO 12-05 22:41:26 [ompmultiprocessing.py:185] \treserved_cpus=[1]
(EngineCore pid=9199) INFO 12-05 22:44:36 [kv_cache_utils.py:2327] CPU KV cache size: 65,536 tokens, Maximum concurrency for 2,048 tokens per request: 32.00x
"""


def test_server_facts_read_from_its_log():
    bench = _module("vllm_cpu_bench")
    facts = bench.server_facts(LOG, {"VLLM_CPU_KVCACHE_SPACE": "1"}, ["py", "shim", "serve", "/m", "--dtype", "float32"])
    assert facts["kv_cache_tokens"] == 65536 and facts["worker_cores"] == [0] and facts["reserved_cores"] == [1]
    assert facts["engine"] == "vLLM V1 engine v0.32.0" and facts["chunked_prefill"] and facts["prefix_caching"]
    assert facts["server_command"] == "serve /m --dtype float32"


def test_the_shim_runs_the_cli_only_in_the_parent_and_keeps_the_cpu_platform():
    bench = _module("vllm_cpu_bench")
    compile(bench.SHIM, "vllm_cli.py", "exec")
    assert 'if __name__ == "__main__":' in bench.SHIM  # spawned workers import it again
    assert '"+cpu"' in bench.SHIM  # vLLM detects its CPU platform from the version string


def test_the_full_plan_reaches_saturation_and_fixed_concurrencies():
    plan = _module("vllm_cpu_bench").PLANS["full"]
    kinds = [k for k, _, _ in plan["runs"]]
    assert kinds[:2] == ["single", "burst"]  # the burst sets the rates of the Poisson runs that follow
    assert max(v for k, v, _ in plan["runs"] if k == "rate") > 1.0
    assert {v for k, v, _ in plan["runs"] if k == "concurrency"} >= {2, 4, 8, 16, 32}


def test_the_client_writes_vllm_bench_serve_keys():
    text = (ROOT / "benchmarks" / "vllm_cpu_client.py").read_text()
    for key in ("load_avg_before", "load_avg_after", "seed", "request_rate", "burstiness", "max_concurrency"):
        assert f'"{key}"' in text
    pytest.importorskip("vllm")  # with vLLM here, its client still takes the arguments this script passes
    import inspect

    from vllm.benchmarks.serve import benchmark

    assert {"ready_check_timeout_sec", "max_concurrency", "burstiness"} <= set(inspect.signature(benchmark).parameters)


def test_layers_rewrites_only_the_layer_count_of_the_served_config():
    bench = _module("vllm_cpu_bench")
    path = ROOT / "capsim" / "data" / "vllm-cpu-host" / "model" / "config.json"
    base = bench.model_config(path)
    deep = bench.model_config(path, 8)
    assert deep["num_hidden_layers"] == 8 and base["num_hidden_layers"] == 1
    assert {k: v for k, v in deep.items() if k != "num_hidden_layers"} == \
        {k: v for k, v in base.items() if k != "num_hidden_layers"}
    with pytest.raises(ValueError, match="--layers must be >= 1"):
        bench.model_config(path, 0)


def test_lengths_override_the_plans_within_the_servers_context():
    bench = _module("vllm_cpu_bench")
    assert bench.parse_lengths(None) is None
    assert bench.parse_lengths("512,128,0.5") == (512, 128, 0.5)
    for bad, words in (("512,128", "IN,OUT,RANGE"), ("a,1,0", "IN,OUT,RANGE"), ("0,1,0", ">= 1"),
                       ("512,128,1", "RANGE < 1"), ("1500,200,0.5", "over the server's --max-model-len 2048")):
        with pytest.raises(ValueError, match=words):
            bench.parse_lengths(bad)


def test_the_host_fit_separates_step_sequence_and_layer_terms():
    host = _module("vllm_cpu_host")
    rows = [(c, n, 1e-3 + 1e-4 * c - 2e-4 * n) for n in (1, 2, 4, 8) for c in (1, 2, 4, 8, 16, 32)]
    terms, rms = host.fit(rows)
    assert terms == pytest.approx([1e-3, 1e-4, -2e-4]) and rms < 1e-12


def test_each_depth_run_served_the_layer_count_its_folder_names():
    import json

    depth = ROOT / "capsim" / "data" / "vllm-cpu-host" / "depth"
    folders = sorted(depth.glob("pass-*/layers-*"))
    assert len(folders) == 8  # two passes of 1, 2, 4 and 8 layers
    for f in folders:
        n = int(f.name.removeprefix("layers-"))
        assert json.loads((f / "model" / "config.json").read_text())["num_hidden_layers"] == n, f
        manifest = json.loads((f / "manifest.json").read_text())
        assert f"--layers {n} " in manifest["command"] and len(manifest["runs"]) == 6, f


def test_worker_steps_split_a_step_into_its_phases():
    prof = _module("vllm_cpu_step_profile")
    calls = [["execute_model", 0.0, 0.010, 1, 1], ["_prepare_inputs", 0.001, 0.001, 1, 1],
             ["_model_forward", 0.002, 0.006, 1, 1], ["compute_logits", 0.008, 0.001, 1, 1],
             ["sample_tokens", 0.011, 0.002, 1, 1], ["_sample", 0.0115, 0.001, 1, 1],
             ["execute_model", 0.015, 0.010, 1, 1]]
    (row,) = prof.worker_steps(calls)  # the last step has no successor, so no period: left out
    assert row["period"] == pytest.approx(0.015) and row["_model_forward"] == pytest.approx(0.006)
    assert row["wait_for_engine_core"] == pytest.approx(0.015 - 0.010 - 0.002) and row["_sample"] == 0.001


def test_the_shipped_step_profile_gives_the_vllm_cpu_host_terms():
    """engines.yaml vllm-cpu cpu.step is what the saved in-place profile of the large model fits to."""
    from capsim.specs.engine import get_engine

    prof = _module("vllm_cpu_step_profile")
    step, seq, rms = prof.host_fit(sorted((ROOT / "capsim/data/vllm-cpu-host/step-profile").glob("large*.json")))
    assert get_engine("vllm-cpu").cpu["step"][:2] == pytest.approx((step, seq), rel=2e-3)
    assert rms < 0.3e-3


def test_the_shipped_step_profile_gives_the_vllm_cpu_prompt_token_term():
    """engines.yaml vllm-cpu cpu.step's third term (host seconds per prompt token) is what the same profile's prompt
    steps fit to, and its data hold no term per prompt step (the intercept is below the residual)."""
    from capsim.specs.engine import get_engine

    prof = _module("vllm_cpu_step_profile")
    paths = sorted((ROOT / "capsim/data/vllm-cpu-host/step-profile").glob("large*.json"))
    step, seq, _ = prof.host_fit(paths)
    per_token, rms, intercept, slope = prof.prefill_fit(paths, step, seq)
    assert get_engine("vllm-cpu").cpu["step"][2] == pytest.approx(per_token, rel=2e-3)
    assert 0 < per_token < 5e-6 and abs(intercept) < rms and slope > 0


def test_the_step_profile_report_writes_the_host_terms_as_an_engine_file(tmp_path, capsys):
    """``--report ... --engine-out``: the catalog's vllm-cpu profile with cpu.step replaced by what the profiles fit
    to, readable with --engine-file, citing each file. On the shipped EPYC profiles that is the catalog's own terms."""
    from capsim.calibration.engine_file import read_engine_file
    from capsim.specs.engine import get_engine

    prof = _module("vllm_cpu_step_profile")
    paths = sorted((ROOT / "capsim/data/vllm-cpu-host/step-profile").glob("large*.json"))
    step, seq, rms = prof.host_fit(paths)
    per_token, prefill_rms, _, _ = prof.prefill_fit(paths, step, seq)
    out = prof.engine_file(paths, tmp_path / "host.yaml", (step, seq, per_token), (rms, prefill_rms))
    engine, catalog = read_engine_file(out), get_engine("vllm-cpu")
    assert engine.cpu["step"] == pytest.approx(catalog.cpu["step"], rel=2e-3)
    assert engine.sampler_s == catalog.sampler_s and engine.ttft_offset_s == catalog.ttft_offset_s
    assert all(p.name in engine.sources["cpu"] for p in paths) and engine.name == "vllm-cpu-host-measured"
    assert prof._dtype({"command": "x --dtype bfloat16 --out y"}) == "bfloat16"
    assert prof._dtype({"command": "x --out y"}) == "float32" and prof._dtype({"dtype": "bfloat16"}) == "bfloat16"


def test_the_saved_host_runs_give_the_vllm_cpu_serving_path():
    """engines.yaml vllm-cpu ttft_offset_s is the idle host run's serving path (TTFT less the request's own median
    gap, median over requests), the lower end of the band the suite-width runs under load bound from above."""
    from capsim.specs.engine import get_engine

    path = _module("vllm_cpu_serving_path")
    offset = get_engine("vllm-cpu").ttft_offset_s
    assert offset == pytest.approx(path.ttft_offset_s(), rel=2e-3)
    assert 2e-3 < offset < min(float(np.median(path.serving_path_s(path.HOST / f))) for f in path.FILES[1:])


def test_every_closed_loop_replacement_waited_for_a_step_of_the_others():
    """The check the offset reproduces: in each saved closed-loop run of the vLLM-CPU suite, no request sent after
    another finished reached its prompt step before at least one step of the running requests had ended."""
    path = _module("vllm_cpu_serving_path")
    for c in (2, 4, 8, 16, 32):
        counts = path.closed_loop_wait(path.SUITE / f"concurrency-{c}.json")
        assert min(counts) >= 1 and sum(counts.values()) > 30, (c, counts)


def test_the_served_dtype_is_a_flag_of_the_server_command():
    bench = _module("vllm_cpu_bench")
    flags = bench.server_flags("bfloat16")
    assert flags[flags.index("--dtype") + 1] == "bfloat16"
    assert bench.server_flags()[bench.server_flags().index("--dtype") + 1] == "float32"  # the shipped suite's


@pytest.mark.parametrize(("script", "args", "says"), [
    ("vllm_cpu_step_profile", ["--engine-out", "x.yaml"], "give the profiles with --report"),
    ("vllm_cpu_step_profile", ["--calibration", "cpu.json"], "give the profiles with --report"),
    ("vllm_cpu_step_profile", ["--report", "p.json", "--serving-path", "s.json"], "give --engine-out FILE"),
    ("vllm_cpu_prefill_ops", ["--report", "a.txt", "--dtype", "bfloat16"], "drop --dtype"),
])
def test_an_option_the_run_would_not_use_is_refused(script, args, says):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], capture_output=True,
                          text=True)
    assert done.returncode == 2 and says in done.stderr.strip().splitlines()[-1]
