import numpy as np
import pytest

from capsim import Cluster, TrainPlan, get_accelerator, get_model
from capsim.calibration import perf_for
from capsim.plan.whatif_train import batch_size_whatif, critical_batch_tokens, precision_whatif


@pytest.fixture(scope="module")
def setup():
    model = get_model("llama-2-7b")
    cluster = Cluster(get_accelerator("h100"), 16)
    plan = TrainPlan(dp=4, tp=4, global_batch=64, seq_len=4096, recompute="selective", sequence_parallel=True)
    return model, cluster, plan


def test_precision_recipes_order_speed_and_memory(setup):
    df = precision_whatif(*setup, perf=perf_for("h100", "H100-SXM5-80GB")).set_index("precision")
    assert df.loc["fp8", "step_s"] < df.loc["bf16", "step_s"] < df.loc["tf32", "step_s"] < df.loc["fp32", "step_s"]
    assert df.loc["fp16", "loss_scaling"] and not df.loc["bf16", "loss_scaling"]
    assert df.loc["fp32", "bytes_per_param"] == 16 and df.loc["bf16", "bytes_per_param"] == 18


def test_fp8_is_reported_unavailable_on_a100():
    model, _, plan = (get_model("llama-2-7b"), None, TrainPlan(dp=2, tp=4, global_batch=16, seq_len=2048))
    df = precision_whatif(model, Cluster(get_accelerator("a100"), 8), plan, ("bf16", "fp8"),
                          perf=perf_for("a100", "A100-SXM4-80GB")).set_index("precision")
    assert not df.loc["fp8", "feasible"] and "fp8" in df.loc["fp8", "reason"]


def test_batch_size_tradeoff_follows_mccandlish(setup):
    model, cluster, _ = setup
    df = batch_size_whatif(model, cluster, 1e11, [32, 64, 128, 256], 4096, critical_batch=4 * 4096 * 64,
                           perf=perf_for("h100", "H100-SXM5-80GB"))
    e_min = 1e11 / (1 + 32 * 4096 / (4 * 4096 * 64))
    assert df["tokens_needed"].to_numpy() == pytest.approx(e_min * (1 + df["batch_tokens"] / (4 * 4096 * 64)))
    assert np.all(np.diff(df["steps"]) < 0) and np.all(np.diff(df["tokens_needed"]) > 0)
    assert critical_batch_tokens(2.0) == pytest.approx(2e8 / 2 ** (1 / 0.21))
