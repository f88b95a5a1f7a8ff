"""Hybrid stacks (Mamba-2 and Gated DeltaNet layers beside attention): the Hugging Face import, a layer's FLOPs by
hand, serving memory (fixed recurrent state per sequence instead of a KV cache) and a training step end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import (
    ServePlan,
    SpecError,
    TrainPlan,
    from_hf_config,
    get_accelerator,
    load_calibration,
    param_counts,
)
from capsim.analytic.flops import oplist_training_flops, training_flops_per_token
from capsim.analytic.memory import kv_cache_bytes_per_token, serving_memory
from capsim.analytic.mixers import state_bytes_per_sequence
from capsim.analytic.ops import MATMUL_KINDS, Phase, StepBatch, serving_layer_ops, total, training_layer_ops
from capsim.analytic.serving import StepShape, iteration_time
from capsim.analytic.step_table import StepTable
from capsim.analytic.training import step_time
from capsim.cli import app
from capsim.specs.hardware import Cluster
from capsim.specs.model import Mixer

FIXTURES = Path(__file__).parent / "data" / "hf_configs"
REFERENCE = json.loads((FIXTURES.parent / "transformers_param_counts.json").read_text())
HYBRIDS = ["qwen3-next-defaults", "granitemoehybrid-defaults", "granitemoehybrid-interleaved", "bamba-hybrid"]
H100 = get_accelerator("h100")
PERF = load_calibration("h100").perf()
RUN = CliRunner()


def load(name: str):
    return from_hf_config(FIXTURES / f"{name}.json")


@pytest.mark.parametrize("name", HYBRIDS)
def test_hybrid_parameter_counts_equal_transformers(name):
    """Every Mamba-2 (in_proj, conv1d and its bias, dt_bias, A_log, D, gated norm, out_proj) and Gated DeltaNet
    parameter transformers 5.25.0 builds, and Qwen3-Next's gated q_proj, counted exactly (total and active)."""
    counts = param_counts(load(name))
    assert (counts.total, counts.active) == (REFERENCE["counts"][name], REFERENCE["active"][name])


def test_layer_kinds_are_read_from_each_familys_keys():
    qwen, granite, bamba = load("qwen3-next-defaults"), load("granitemoehybrid-interleaved"), load("bamba-hybrid")
    assert qwen.mixers[:4] == (Mixer.GATED_DELTANET,) * 3 + (Mixer.ATTENTION,) and qwen.attention_layers == 12
    assert (qwen.ssm_heads, qwen.ssm_head_dim, qwen.ssm_groups, qwen.ssm_state, qwen.ssm_chunk) == (32, 128, 16, 128, 64)
    assert qwen.attn_output_gate and qwen.shared_expert_gate and qwen.experts == 512
    # legacy names "mamba"/"attention" (transformers configuration_utils.py _LEGACY_LAYER_TYPE_REMAP)
    assert [i for i, m in enumerate(granite.mixers) if m is Mixer.ATTENTION] == [5, 15, 25, 35]
    assert (granite.ssm_heads, granite.ssm_head_dim, granite.ssm_state, granite.ssm_conv_bias) == (48, 64, 128, True)
    assert [i for i, m in enumerate(bamba.mixers) if m is Mixer.ATTENTION] == [9, 18, 27]
    assert load("granitemoehybrid-defaults").attention_layers == 0  # GraniteMoeHybridConfig: every layer Mamba-2


def test_a_mamba2_layers_flops_by_hand():
    """granitemoehybrid-interleaved, one sequence of 4096 tokens: hidden 1536, 48 heads x 64 (I = 3072), 1 group of
    state 128, chunk 256 (16 chunks). in_proj: 2 n h (I + I + 2 G N + H); SSD per chunk (Dao & Gu 2024, Sec. 6):
    C B^T 2 Q^2 N per group, diagonal block 2 Q^2 P per head, chunk state 2 Q N P and state output 2 Q N P per head;
    out_proj 2 n I h. Backward doubles each product (3x in all)."""
    model = load("granitemoehybrid-interleaved")
    n, h, heads, p, state, q = 4096, 1536, 48, 64, 128, 256
    chunks, inner = n // q, heads * p
    in_proj = 2 * n * h * (inner + inner + 2 * state + heads)
    scan = chunks * (2 * q * q * state + heads * (2 * q * q * p + 2 * q * state * p + 2 * q * p * state))
    out_proj = 2 * n * inner * h
    share = model.mixer_layers(Mixer.MAMBA2) / model.layers
    fwd = [o for o in training_layer_ops(model, 1, n) if o.name.startswith(("ssm_", "scan_"))]
    gemms = total(fwd, kinds=MATMUL_KINDS) / share
    assert gemms == pytest.approx(in_proj + scan + out_proj, rel=1e-12)
    assert total([o for o in fwd if o.name.startswith("scan_")], kinds=MATMUL_KINDS) / share == pytest.approx(scan)
    bwd = [o for o in training_layer_ops(model, 1, n, phase=Phase.BACKWARD) if o.name.startswith(("ssm_", "scan_"))]
    assert total(bwd, kinds=MATMUL_KINDS) == pytest.approx(2 * total(fwd, kinds=MATMUL_KINDS), rel=1e-12)


def test_a_decode_token_runs_the_recurrent_step():
    """A decoding sequence is a chunk of one token: its scan is O(heads x P x N) per token, not O(chunk)."""
    model = load("granitemoehybrid-interleaved")
    ops = serving_layer_ops(model, StepBatch.decode(64, 30000))
    scan = total([o for o in ops if o.name.startswith("scan_")], kinds=MATMUL_KINDS) / (36 / 40)
    per_token = 2 * 128 + 48 * (2 * 64 + 2 * 128 * 64 + 2 * 64 * 128)  # Q = 1
    assert scan == pytest.approx(64 * per_token, rel=1e-12)
    state = [o for o in ops if o.name == "scan_state"][0]  # each sequence reads and writes its bf16 cached state
    conv = 3 * (48 * 64 + 2 * 128)
    assert state.bytes_read == state.bytes_written == 64 * (48 * 64 * 128 + conv) * 2


def test_training_flops_per_token_equal_the_op_list():
    for name in HYBRIDS[:1] + HYBRIDS[2:]:
        model = load(name)
        assert training_flops_per_token(model, 4096) * 4096 == pytest.approx(
            oplist_training_flops(model, 1, 4096), rel=1e-9)


def test_hybrid_serving_memory_is_below_the_same_shape_all_attention_model_at_long_context():
    """KV only for the attention layers (12 of Qwen3-Next's 48), plus a fixed state per sequence that does not grow
    with the context (vLLM V1: MambaSpec pages, conv state (d_conv - 1, conv_dim / tp) + (v_heads / tp, dk, dv))."""
    hybrid = load("qwen3-next-defaults")
    attention = hybrid.with_(mixers=())
    plan = ServePlan(tp=4, max_batch=64)
    hy, att = (serving_memory(m, plan, H100, context_tokens=32768) for m in (hybrid, attention))
    assert hy.total_bytes < att.total_bytes
    assert hy.kv_bytes_per_token == pytest.approx(att.kv_bytes_per_token * 12 / 48)
    per_seq = 36 * 2 * (3 * (2 * 4 * 128 + 8 * 128) + 8 * 128 * 128)  # bf16, tp 4: 16/4 key and 32/4 value heads
    assert float(state_bytes_per_sequence(hybrid, 2, 4)) == per_seq and hy.state_bytes == 64 * per_seq
    short = serving_memory(hybrid, plan, H100, context_tokens=1024)
    assert short.state_bytes == hy.state_bytes  # the state does not grow with the context; the KV does
    assert float(kv_cache_bytes_per_token(hybrid, 2, 4)) == pytest.approx(12 * 1 * 512 * 2)


def test_a_model_without_attention_layers_is_refused_for_serving():
    with pytest.raises(SpecError, match="model.mixers"):
        serving_memory(load("granitemoehybrid-defaults"), ServePlan(tp=4), H100)


@pytest.mark.parametrize(("name", "plan"), [("qwen3-next-defaults", ServePlan(tp=4)),
                                            ("bamba-hybrid", ServePlan(tp=2))])
def test_the_simulators_table_equals_op_list_pricing_on_hybrids(name, plan):
    model = load(name)
    table = StepTable(model, plan, PERF, "vllm", H100)
    rng = np.random.default_rng(3)
    for _ in range(30):
        pt = int(rng.integers(0, 3000))
        ps = int(rng.integers(1, 4)) if pt else 0
        pairs = float(pt * rng.integers(1, 2000)) if pt else 0.0
        kvp = float(pt + rng.integers(0, 2000)) if pt else 0.0
        ds = int(rng.integers(0 if pt else 1, 300))
        dkv = float(ds * rng.integers(1, 3000))
        direct = iteration_time(model, plan, PERF, StepShape(pt, ps, pairs, kvp, ds, dkv), "vllm", H100)
        assert table.step_s(pt, ps, pairs, kvp, ds, dkv) == pytest.approx(float(direct.total_s), rel=1e-12)
    steps = [table.step_s(decode_seqs=37, decode_kv_tokens=float(37 * 700 + 37 * (j + 1))) for j in range(40)]
    assert table.decode_run(37, 37 * 700.0, 40)[1] == pytest.approx(sum(steps), rel=1e-12)


def test_hybrid_decode_grows_slower_with_context_than_all_attention():
    """Decode of a hybrid reads KV in its attention layers only: from 4k to 32k of context its step grows less."""
    hybrid = load("qwen3-next-defaults")
    plan = ServePlan(tp=4)
    def step(model, ctx):
        return float(iteration_time(model, plan, PERF, StepShape.decode(64, ctx), "vllm", H100).total_s)
    growth = {m.name + str(bool(m.mixers)): step(m, 32000) - step(m, 4000) for m in (hybrid, hybrid.with_(mixers=()))}
    assert growth["qwen3-next-defaultsTrue"] < 0.5 * growth["qwen3-next-defaultsFalse"]


def test_a_hybrid_training_step_is_priced_end_to_end():
    model = load("bamba-hybrid")
    plan = TrainPlan(dp=8, global_batch=64, micro_batch=1, seq_len=4096, distributed_optimizer=True,
                     recompute="full")
    step = step_time(model, plan, Cluster(H100, 8), PERF, framework="megatron-core")
    assert step.feasible, step
    assert 0.05 < float(step.mfu) < 1.0
    # the recurrent layers' time is in the step: replacing them by attention layers changes it
    same = step_time(model.with_(mixers=()), plan, Cluster(H100, 8), PERF, framework="megatron-core")
    assert float(step.compute_s) != pytest.approx(float(same.compute_s), rel=1e-3)


@pytest.mark.parametrize("command", [["train", "-a", "h100", "-n", "8"],
                                     ["memory", "serve", "-a", "h100", "--tp", "4", "--context", "2048"],
                                     ["serve", "-a", "h100", "--tp", "4", "--rate", "2", "--prompt-tokens", "500",
                                      "--output-tokens", "50", "--requests", "40"]])
@pytest.mark.parametrize("name", ["qwen3-next-defaults", "granitemoehybrid-interleaved"])
def test_the_cli_prices_hybrids(command, name):
    result = RUN.invoke(app, [*command, "--hf-config", str(FIXTURES / f"{name}.json")])
    assert result.exit_code in (0, 1) and "error" not in result.output.lower(), result.output


def test_an_unknown_layer_kind_is_refused_in_one_line_naming_the_key():
    cfg = json.loads((FIXTURES / "qwen3-next-defaults.json").read_text())
    cfg["layer_types"] = ["sliding_attention"] * 48
    with pytest.raises(SpecError, match="config.layer_types"):
        from_hf_config(cfg)


def test_context_parallelism_of_a_hybrid_is_refused_not_mispriced():
    model = load("bamba-hybrid")
    with pytest.raises(SpecError, match="plan.cp"):
        TrainPlan(dp=2, cp=2, seq_len=4096, global_batch=8).check(model)


def test_megatron_cores_mamba_mixer_refuses_tp_that_does_not_divide_its_groups():
    model = load("bamba-hybrid")  # 1 group: MambaMixer asserts ngroups % tp_size == 0
    step = step_time(model, TrainPlan(dp=4, tp=2, global_batch=64, seq_len=4096), Cluster(H100, 8), PERF,
                     framework="megatron-core")
    assert not step.feasible and "group" in step.reason


def test_serving_tp_must_divide_the_recurrent_heads():
    model = load("bamba-hybrid").with_(ssm_heads=48)  # 48 recurrent heads beside 32 attention heads
    with pytest.raises(SpecError, match="recurrent heads"):
        ServePlan(tp=32).check(model)
    ServePlan(tp=16).check(model)
