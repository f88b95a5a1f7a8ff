"""NIM for LLMs releases capsim has no profile for (issue 13, fourth round of unseen serving runs).

NVIDIA's NIM benchmarking 'Performance' page (https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance) also
publishes concurrency sweeps measured with NIM 1.5.0 (Llama-3.3-70b-instruct) and 1.3.0 (Llama-3.1-8b-instruct,
Llama-3.1-70b-instruct). They are not transcribed and capsim has no ``nim-1.3`` / ``nim-1.5`` profile, because:

- the engine inside is not published for either release. The NIM docs of those releases say only that optimized
  profiles run pre-compiled TensorRT-LLM engines and are preferred over generic (vLLM / local-build) profiles
  (docs.nvidia.com/nim/large-language-models/1.5.0/profiles.html 'Model Profiles'; 1.0.0/optimization.html
  'Automatic Profile Selection'; 1.3.0 release notes: 'tensorrt_llm-local_build profiles'); none of the pages read
  (release notes 1.1.0, 1.2.0, 1.3.0; support matrix 1.2.0; model profiles 1.1.0, 1.5.0; KV cache reuse 1.4.0,
  which says reuse is on only with NIM_ENABLE_KV_CACHE_REUSE=1, as for 1.8; optimization 1.0.0) names the
  TensorRT-LLM release, its max batch size / max num tokens, or its capacity-scheduler policy. NIM builds its own
  engines, so trtllm-build's defaults (max_batch_size 2048, max_num_tokens 8192, which ``nim-1.8`` takes) need not
  be theirs: a June-2024 NIM container's TensorRT-LLM profile (A10G) logs 'TRTGptModel maxNumSequences: 32' and
  'TRTGptModel maxBatchSize: 32' (NVIDIA/nim-deploy issue #24, log of 2024-06-28; the tag is not in it), and its
  server is ``vllm_nvext`` (the same log), so which scheduler admits requests is not settled from a source either;
- the tables' configuration cannot be read: the page's markdown gives the GPU count, precision, TP and input/output
  lengths as tab headings ('2 x H100 80G', 'fp8 TP2', '5000 Input Tokens / 500 Output Tokens') and only those of the
  1.8.0 70B table were readable here; the 1.5.0 and 1.3.0 tables were read without their tab headings, and a row
  without them cannot be priced without guessing (never done).

So a NIM release other than 1.8.x stays an error naming the releases capsim knows, through every path a user takes:
the engine lookup, ``capsim serve --engine`` and ``capsim validate serving`` rows."""

import json

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.errors import SpecError
from capsim.specs.engine import engine_release, engines, get_engine

KNOWN_NIM = "nim >=1.8.0,<1.9.0 (nim-1.8)"  # as known_releases() names the one NIM profile
UNPROFILED = ["1.2.0", "1.3.0", "1.5.0", "1.7.3", "1.9.0"]  # 1.3.0 and 1.5.0: the page's other sweeps
SERVE = ["serve", "-m", "llama-3.3-70b", "-a", "H100-SXM5-80GB", "--tp", "2", "-q", "fp8", "--arrival", "closed",
         "--clients", "5", "--prompt-tokens", "5000", "--output-tokens", "500", "-n", "10", "--json"]


def test_nim_1_8_is_the_only_nim_profile():
    # A NIM profile is added only with its engine facts cited and its rows transcribed (see the module docstring).
    assert sorted(p.name for p in engines().values() if p.engine == "nim") == ["nim-1.8"]


@pytest.mark.parametrize("version", UNPROFILED)
def test_an_unknown_nim_release_is_an_error_naming_the_known_ones(version):
    with pytest.raises(SpecError) as err:
        engine_release("nim", version)
    assert err.value.field == "engine_version"
    assert f"nim {version} on a gpu is a release capsim has no profile for" in str(err.value)
    assert KNOWN_NIM in str(err.value)


@pytest.mark.parametrize("name", ["nim-1.5", "nim-1.3.0", "nim-1.2", "NIM_1.5.0", "nvidia-nim-1.3"])
def test_an_engine_name_of_a_nim_release_without_a_profile_is_refused(name):
    with pytest.raises(SpecError) as err:
        get_engine(name)
    assert err.value.field == "engine_version" and KNOWN_NIM in str(err.value)


@pytest.mark.parametrize("name", ["nim", "nvidia-nim", "nim-1.8", "nim-1.8.0", "NIM_1.8.1", "nim@1.8.5"])
def test_the_names_of_nim_1_8_resolve(name):
    assert get_engine(name).name == "nim-1.8"


def test_capsim_serve_refuses_nim_1_5_and_names_the_known_releases():
    out = CliRunner().invoke(app, [*SERVE, "--engine", "nim-1.5"])
    assert out.exit_code == 2, out.output[-600:]
    assert "nim 1.5 on a gpu is a release capsim has no profile for" in out.output and KNOWN_NIM in out.output


def test_capsim_serve_takes_nim_1_8_by_its_release():
    out = CliRunner().invoke(app, [*SERVE, "--engine", "nim-1.8.0"])
    assert out.exit_code == 0, out.output[-600:]
    summary = json.loads(out.stdout)
    assert summary["engine"] == "nim-1.8" and summary["completed"] == 10


HEADER = ("source,model,gpu,gpus,tp,precision,engine,workload,trace,batch,input_tokens,output_tokens,rate_rps,metric,"
          "value,unit,engine_version,flags")


def test_a_validation_row_measured_on_nim_1_5_is_refused_with_its_line(tmp_path):
    # A synthetic row (not a transcription): the 1.8.0 sweep's layout under another NIM release.
    path = tmp_path / "rows.csv"
    path.write_text("\n".join([HEADER, "t,llama-3.3-70b,H100-SXM5-80GB,2,2,fp8,nim,concurrency,,5,5000,500,,"
                                       "itl_mean,20,ms,1.5.0,"]) + "\n")
    out = CliRunner().invoke(app, ["validate", "serving", "--file", str(path), "--json"])
    assert out.exit_code == 2, out.output[-600:]
    assert "engine_version: line 2: nim 1.5.0 on a gpu" in out.output and KNOWN_NIM in out.output
