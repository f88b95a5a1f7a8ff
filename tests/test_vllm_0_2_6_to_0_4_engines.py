"""vLLM 0.2.2-0.4.x by release (engines.yaml vllm-0.2, vllm-0.2.6, vllm-0.4, vllm-0.4.1, vllm-0.4.2, vllm-0.4.3, read
in the sdists and wheels of each release): which profile each release resolves to, what changed between them, and
that a validation row naming one of these releases is priced."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from capsim import ServePlan, SpecError, get_accelerator, get_model, load_calibration
from capsim.analytic.serving import StepShape, iteration_time
from capsim.cli import app
from capsim.specs.engine import engine_release, get_engine
from capsim.specs.engine_flags import apply_flags, parse_flags
from capsim.validation.harness import LINE
from capsim.validation.serving import REQUIRED, predict, row_software

A100 = get_accelerator("a100")
PERF = load_calibration("a100").perf()
META = {"name", "release", "covers", "description", "sources"}


@pytest.mark.parametrize(("version", "name"), [
    ("0.2.2", "vllm-0.2"), ("0.2.5", "vllm-0.2"), ("0.2.6", "vllm-0.2.6"), ("v0.2.7", "vllm-0.2.6"),
    ("0.3.0", "vllm-0.2.6"), ("0.3.2", "vllm-0.2.6"), ("0.3.3", "vllm-0.2.6"), ("0.4.0", "vllm-0.4"),
    ("0.4.0.post1", "vllm-0.4"), ("0.4.1", "vllm-0.4.1"), ("0.4.2", "vllm-0.4.2"), ("0.4.3", "vllm-0.4.3"),
    ("0.5.0", "vllm-v0"),
])
def test_every_release_from_0_2_2_to_0_5_has_its_profile(version, name):
    assert engine_release("vllm", version).name == name


@pytest.mark.parametrize("version", ["0.1.7", "0.2.0", "0.2.1.post1"])
def test_releases_before_0_2_2_are_refused(version):
    """0.2.0 and 0.2.1 pack prompts unpadded (vllm-0.2's covers): no profile read their code."""
    with pytest.raises(SpecError, match="capsim knows.*vllm >=0.2.2,<0.2.6 .vllm-0.2.*>=0.2.6,<0.4.0"):
        engine_release("vllm", version)


def _differ(a: str, b: str) -> set[str]:
    x, y = get_engine(a).to_dict(), get_engine(b).to_dict()
    return {k for k in x if x[k] != y[k]} - META


def test_what_changed_between_the_releases():
    """0.2.6 added CUDA graphs (vllm-project/vllm#1926); 0.4.0 packed prompts, cached the tokenizer's special-token ids
    (vllm-project/vllm#2879: a prompt's detokenization no longer rebuilds them per token) and left --engine-use-ray (its per-step and per-request calls) unpriced;
    0.4.1 and 0.4.2 gave the optional chunked prefill a 768- then 512-token budget; 0.4.3 decodes with
    FlashAttention, one read of a GQA group's cache. The profile of 0.2.6-0.3.3 (release 0.2.7) prices a TP1 Ray
    worker by Vidur's fit: from 0.2.7 the engine's process runs the driver worker, while 0.2.2-0.2.6 call a Ray worker
    actor every step (vllm-0.2: Ray's microbenchmark). Everything else (prefill-priority scheduling, 256 sequences,
    max(context, 2048) tokens, watermark 0.01, 0.9 of total memory, Vidur's host costs, Ray workers at TP > 1,
    no prefix caching) holds from 0.2.2 to 0.4.3."""
    # decode_grid: the launch grid and registers were read in the 0.2.3 sdist and wheel only (engines.yaml);
    # profile_sampler: 0.2.3's sampler was read for its profile-run peak, 0.2.6-0.3.3's was not
    assert _differ("vllm-0.2", "vllm-0.2.6") == {"cuda_graphs", "cuda_graph_sizes", "cuda_graph_padding",
                                                 "worker_comm", "decode_grid", "profile_sampler"}
    # decode_kv_read_fraction: flashinfer.ai timed v0.2.6's PagedAttention read (engines.yaml), not 0.4.x's
    assert _differ("vllm-0.2.6", "vllm-0.4") == {"max_paddings", "server_comm", "server_calls",
                                                 "decode_kv_read_fraction", "cpu"}
    assert get_engine("vllm-0.2.6").cpu["outputs"][2] == get_engine("vllm-0.2").cpu["outputs"][2] > 0
    assert get_engine("vllm-0.4").cpu["outputs"][2] == 0.0
    assert {k: v[:2] for k, v in get_engine("vllm-0.4").cpu.items()} == \
        {k: v[:2] for k, v in get_engine("vllm-0.2").cpu.items()}  # the same phases otherwise
    assert _differ("vllm-0.4", "vllm-0.4.1") == {"chunked_max_num_batched_tokens"}
    assert _differ("vllm-0.4.1", "vllm-0.4.2") == {"chunked_max_num_batched_tokens"}
    assert _differ("vllm-0.4.2", "vllm-0.4.3") == {"decode_kv_reads"}
    model = get_model("llama-2-7b")
    for name in ("vllm-0.2", "vllm-0.2.6", "vllm-0.4", "vllm-0.4.1", "vllm-0.4.2", "vllm-0.4.3"):
        eng = get_engine(name)
        assert eng.scheduler.value == "vllm" and not eng.prefix_caching and eng.watermark == 0.01
        assert eng.limits(model, A100) == (256, max(model.max_seq, 2048)) and eng.memory_fraction == 0.9
        assert (eng.workers.value, eng.workers_tp.value) == ("local", "ray")
        assert eng.host_cost(2).exposed[0] > eng.host_cost(1).exposed[0] > 1e-3  # Ray's per-step call at TP > 1
    assert [get_engine("vllm-0.2.6").max_paddings, get_engine("vllm-0.4").max_paddings] == [256, None]
    assert (get_engine("vllm-0.2").decode_kv_reads.value, get_engine("vllm-0.4.3").decode_kv_reads.value) == \
        ("per_query_head", "per_kv_head")


def test_cuda_graphs_from_0_2_6_pad_decode_batches_up_to_256():
    eager, graphs = get_engine("vllm-0.2"), engine_release("vllm", "0.3.3")
    assert [graphs.graph_batch(b) for b in (1, 2, 3, 5, 9, 256, 257)] == [1, 2, 4, 8, 16, 256, 0]
    assert eager.graph_batch(3) == 0 and graphs.cuda_graph_sizes == (1, 2, 4, *range(8, 257, 8))
    # A decode step of 9 runs the captured 16: its token kernels cost the same as 16's.
    model, plan = get_model("llama-2-7b"), ServePlan()
    t9, t16 = (float(iteration_time(model, plan, PERF, StepShape.decode(b, 500), graphs, A100).layers_s)
               for b in (9, 16))
    assert t9 == pytest.approx(t16, rel=1e-12)


def test_chunked_prefill_is_an_option_with_each_release_budget():
    model = get_model("llama-2-7b")
    for version, budget in (("0.4.1", 768), ("0.4.2", 512), ("0.4.3", 512)):
        eng = engine_release("vllm", version)
        assert eng.for_model(model).scheduler.value == "vllm"  # off by default at every context
        on = apply_flags(eng, {"chunked_prefill": "1"}, "fp16").engine
        assert on.limits(model, A100) == (256, budget), version


def test_engine_use_ray_is_priced_up_to_0_3_and_refused_from_0_4():
    assert apply_flags(engine_release("vllm", "0.3.3"), parse_flags("engine_use_ray=1"), "fp16").engine.server \
        .value == "ray"
    with pytest.raises(SpecError, match="engine_use_ray=1.*no source"):
        apply_flags(engine_release("vllm", "0.4.2"), parse_flags("engine_use_ray=1"), "fp16")


def _row(**cells: str) -> dict[str, str]:
    row = dict.fromkeys(REQUIRED, "")
    row.update(source="check", model="llama-2-7b", gpu="A100-SXM4-80GB", gpus="1", tp="1", precision="fp16",
               engine="vllm", workload="latency", batch="8", input_tokens="512", output_tokens="128",
               metric="e2e_latency_mean", value="1", unit="s", **{LINE: "2"})
    row.update(cells)
    return row


@pytest.mark.parametrize(("version", "tp", "name"), [("0.4.2", "1", "vllm-0.4.2"), ("0.3.3", "2", "vllm-0.2.6"),
                                                     ("0.2.5", "1", "vllm-0.2"), ("0.4.3", "4", "vllm-0.4.3")])
def test_a_validation_row_naming_one_of_these_releases_is_priced(version, tp, name):
    row = _row(engine_version=version, tp=tp, gpus=tp)
    sw = row_software(row)
    value, note, band = predict(row, PERF, sw)
    assert sw.engine.name == name and f"engine {name} (vllm " in note
    assert 0.5 < value < 20 and band is None  # 128 decode steps of a 7B model at batch 8: seconds, not ms or hours


def test_validate_serving_prices_a_vllm_0_4_2_row_on_an_a100(tmp_path):
    row = _row(engine_version="0.4.2", flags="max_num_seqs=64;dtype=fp16")
    header = [*REQUIRED]
    path = tmp_path / "rows.csv"
    path.write_text(",".join(header) + "\n" + ",".join(row[h] for h in header) + "\n")
    result = CliRunner().invoke(app, ["validate", "serving", "--json", "--file", str(path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["rows"][0]
    assert out["predicted"] is not None and out["predicted"] > 0 and "vllm-0.4.2 (vllm 0.4.2)" in out["note"]
