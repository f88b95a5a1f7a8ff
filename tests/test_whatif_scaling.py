import math

import numpy as np
import pytest
from typer.testing import CliRunner

from capsim import get_accelerator, get_model
from capsim.analytic.serving import StepShape, iteration_time
from capsim.calibration import perf_for, perfs_for
from capsim.cli import app
from capsim.plan.scaling_study import model_size_study, serving_scaling, training_scaling
from capsim.plan.serving import Slo, Traffic
from capsim.plan.whatif_serve import (
    SPARSITY,
    distillation_whatif,
    quantization_whatif,
    sparse_perf,
    sparsity_whatif,
)
from capsim.sim.serving.fleet import engine_plan
from capsim.sim.serving.workload import Lengths

MODEL = get_model("llama-3-8b")
TRAFFIC = Traffic(20.0, Lengths.fixed(1000, 200), requests=800)
SLO = Slo(ttft_p99_s=1.0, tpot_p99_s=0.05)
DATASHEET_A100 = perf_for("a100", "A100-SXM4-80GB")  # what these checks were written against


def test_quantization_shrinks_weights_and_kv_and_fp8_speeds_prefill():
    df = quantization_whatif(MODEL, "h100", TRAFFIC, SLO, schemes=("none", "int4", "fp8"), kv_dtypes=(None, "fp8"),
                             perf=perf_for("h100"))
    d = df.set_index(["quantization", "kv_cache_dtype"])
    assert d.loc[("int4", "bf16"), "weights_per_gpu_bytes"] == pytest.approx(d.loc[("none", "bf16"),
                                                                                   "weights_per_gpu_bytes"] / 4)
    assert d.loc[("none", "fp8"), "kv_bytes_per_token"] == d.loc[("none", "bf16"), "kv_bytes_per_token"] / 2
    assert d.loc[("fp8", "bf16"), "prefill_s"] < d.loc[("none", "bf16"), "prefill_s"]  # fp8 math
    assert d.loc[("int4", "bf16"), "prefill_s"] == pytest.approx(d.loc[("none", "bf16"), "prefill_s"], rel=0.05)
    assert d.loc[("none", "bf16"), "cost_vs_baseline"] == 1.0


def test_fp8_is_unavailable_on_a100_with_a_reason():
    df = quantization_whatif(MODEL, "a100", TRAFFIC, SLO, schemes=("none", "fp8"), kv_dtypes=(None,),
                             perf=perf_for("a100"))
    row = df.set_index("quantization").loc["fp8"]
    assert not row["feasible"] and "fp8" in row["reason"]


def test_sparse_gemms_speed_compute_bound_steps_only():
    acc = get_accelerator("h100")
    plan = engine_plan("vllm", MODEL, acc)
    dense, sparse = perf_for(acc), sparse_perf(perf_for(acc), 1.5)
    pre = [float(iteration_time(MODEL, plan, p, StepShape.prefill(1, 4096), "vllm", acc).gpu_s) for p in (dense, sparse)]
    dec = [float(iteration_time(MODEL, plan, p, StepShape.decode(1, 500), "vllm", acc).gpu_s) for p in (dense, sparse)]
    assert pre[1] < pre[0] * 0.8  # prefill GEMMs are compute bound
    assert dec[1] == pytest.approx(dec[0], rel=0.02)  # batch-1 decode streams weights: no gain by default
    df = sparsity_whatif(MODEL, "h100", TRAFFIC, SLO, perf=perf_for("h100")).set_index("pattern")
    assert df.loc["2:4", "weights_per_gpu_bytes"] == pytest.approx(SPARSITY["2:4"]["weight_fraction"]
                                                                   * df.loc["dense", "weights_per_gpu_bytes"])
    assert df.loc["unstructured", "capacity_rps"] == df.loc["dense", "capacity_rps"]


def test_distillation_break_even():
    d = distillation_whatif(get_model("llama-3-70b"), MODEL, 1e10, "h100", 16, TRAFFIC, SLO, ["h100"],
                            perfs=perfs_for(["h100"]))
    assert d.produce_cost_usd > 0 and d.teacher_serve_cost_per_hour > d.student_serve_cost_per_hour
    assert d.break_even_requests == pytest.approx(d.produce_cost_usd / d.saving_per_request_usd)
    same = distillation_whatif(MODEL, MODEL, 1e9, "h100", 8, TRAFFIC, SLO, ["h100"], perfs=perfs_for(["h100"]))
    assert math.isinf(same.break_even_requests)


def test_distillation_that_cannot_run_is_infeasible_not_an_input_error():
    big = get_model("llama-3-405b")
    d = distillation_whatif(big, MODEL, 1e10, "L4", 8, TRAFFIC, SLO, ["L4"], perfs=perfs_for(["L4"]))
    assert not d.feasible and "does not fit a TP group of up to 8 x L4" in d.reason
    assert math.isnan(d.produce_cost_usd) and d.to_dict()["feasible"] is False
    few = distillation_whatif(get_model("llama-3-70b"), big, 1e10, "h100", 1, TRAFFIC, SLO, ["h100"],
                              perfs=perfs_for(["h100"]))
    assert not few.feasible and few.reason.startswith("no layout trains llama-3-405b on 1 x H100")
    out = CliRunner().invoke(app, ["whatif", "distill", "--teacher", "llama-3-405b", "-a", "L4", "--json"])
    assert out.exit_code == 1 and "infeasible: llama-3-405b does not fit" in out.output


def test_serving_scaling_grows_fleet_with_rate_and_meets_slos():
    df = serving_scaling(MODEL, TRAFFIC, SLO, ["h100"], rates=(2, 20, 200), quantizations=("none",), requests=600,
                         perfs=perfs_for(["h100"]))
    assert df["feasible"].all() and list(df["gpus"]) == sorted(df["gpus"])
    assert (df["ttft_p99_s"] <= 1.0).all() and (df["tpot_p99_s"] <= 0.05).all()
    assert df["cost_per_million_output_tokens"].iloc[-1] < df["cost_per_million_output_tokens"].iloc[0]


def test_training_scaling_reports_infeasible_counts_and_efficiency():
    df = training_scaling(get_model("llama-2-13b"), "a100", 1e11, 256, 4096, gpu_counts=(1, 8, 64, 256),
                          perf=DATASHEET_A100)
    assert not df.iloc[0]["feasible"]  # 13B does not train on one 80 GB GPU
    fit = df[df["feasible"]]
    assert fit["scaling_efficiency"].iloc[0] == 1.0 and np.all(np.diff(fit["step_s"]) < 0)


def test_model_size_study_is_monotone():
    df = model_size_study([1e21, 1e23, 1e25])
    assert np.all(np.diff(df["params"]) > 0) and np.all(np.diff(df["loss"]) < 0)
