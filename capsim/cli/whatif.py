"""``capsim whatif ...`` (compression and precision) and ``capsim scale ...`` (small to large deployment)."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from capsim.analytic.serving import Sampling
from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.calibration import perf_for, perfs_for
from capsim.cli import options as o
from capsim.cli.common import JsonOpt, console, emit_json, infeasible, pairs, table
from capsim.errors import SpecError
from capsim.plan.confirm import ConfirmRule
from capsim.plan.scaling import compute_optimal
from capsim.plan.scaling_study import (
    SERVE_RATES,
    TRAIN_GPUS,
    model_size_study,
    serving_scaling,
    training_scaling,
)
from capsim.plan.serving import QUANTIZATIONS, Slo, Traffic
from capsim.plan.whatif_serve import distillation_whatif, quantization_whatif, sparsity_whatif
from capsim.plan.whatif_train import batch_size_whatif, precision_whatif
from capsim.sim.serving.presets import get_preset
from capsim.specs.catalog import get_model
from capsim.specs.hardware import Cluster
from capsim.specs.plans import Quantization, ServePlan
from capsim.specs.precision import Precision

whatif_app = typer.Typer(help="Compression and precision what-ifs: quantization, sparsity, distillation, mixed "
                              "precision, batch size.", no_args_is_help=True)
scale_app = typer.Typer(help="Scaling studies: serving from 1 to 10,000 req/s, training from 8 to 16,384 GPUs, "
                             "model size for a compute budget.", no_args_is_help=True)

Rate = Annotated[float, typer.Option("--rate", help="Peak requests per second.", min=0)]
Workload = Annotated[str, typer.Option("--workload", "-w", help="Preset whose lengths to use.")]
Ttft = Annotated[float, typer.Option("--ttft-p99", help="p99 TTFT target, s.")]
Tpot = Annotated[float, typer.Option("--tpot-p99", help="p99 TPOT target, s.")]
Calib = Annotated[str | None, typer.Option("--calibration", "-c")]


def _traffic(rate: float, workload: str, requests: int | None = None, sampling: str = "random") -> Traffic:
    _positive(("--rate", rate))
    lengths = get_preset(workload).lengths
    sampled = Sampling.parse(sampling, "--sampling")
    return Traffic(rate, None, lengths, requests=requests, sampling=sampled) if isinstance(lengths, str) else \
        Traffic(rate, lengths, requests=requests, sampling=sampled)


def _positive(*values: tuple[str, float | None]) -> None:
    for name, value in values:
        if value is not None and value <= 0:
            raise SpecError(name, f"must be > 0, got {value:g}", "give a positive value")


def _slo(ttft_p99: float, tpot_p99: float) -> Slo:
    _positive(("--ttft-p99", ttft_p99), ("--tpot-p99", tpot_p99))
    return Slo(ttft_p99, tpot_p99)


def _show(df: pd.DataFrame, title: str, as_json: bool, columns: list[str] | None = None) -> None:
    """The table (or JSON); rows that cannot work show their reason, and when none can the command is infeasible
    (exit 1, the reasons on the terminal), as every command does."""
    if as_json:
        emit_json(df.to_dict("records"))
    else:
        cols = [c for c in (columns or list(df.columns)) if c in df.columns]
        if "reason" in df and "reason" not in cols and df["reason"].fillna("").astype(bool).any():
            cols.append("reason")
        console.print(table(title, cols, [[r[c] for c in cols] for r in df.to_dict("records")]))
    if "feasible" in df and not df["feasible"].astype(bool).any():
        reasons = df["reason"].fillna("").astype(str).value_counts()
        infeasible("no row is feasible: " + "; ".join(f"{n} of {len(df)}: {why}" for why, n in reasons.items()))


def _gpus(tp: int, pp: int) -> str:
    """A replica's GPUs as a title names them: ``4`` or ``8 (tp4 pp2)``."""
    return str(tp) if pp == 1 else f"{tp * pp} (tp{tp} pp{pp})"


@whatif_app.command("quantization")
def wi_quantization(model: o.Model = "", accelerator: o.Accel = "H100-SXM5-80GB", tp: o.Tp = 1, pp: o.Pp = 1,
                    rate: Rate = 10.0, workload: Workload = "chatbot", ttft_p99: Ttft = 2.0, tpot_p99: Tpot = 0.1,
                    sampling: o.SamplingOpt = "random", calibration: Calib = None, as_json: JsonOpt = False) -> None:
    """Weight schemes x KV formats: memory, prefill/decode time, capacity and cost."""
    ServePlan(tp=tp, pp=pp).check(get_model(model))
    df = quantization_whatif(get_model(model), accelerator, _traffic(rate, workload, sampling=sampling), _slo(ttft_p99, tpot_p99), tp,
                             perf=perf_for(accelerator, calibration), pp=pp)
    _show(df, f"{model}: quantization on {_gpus(tp, pp)} x {accelerator}", as_json,
          ["quantization", "kv_cache_dtype", "weights_per_gpu_bytes", "kv_tokens", "prefill_s", "step_s",
           "capacity_rps", "replicas_min", "cost_per_hour_min", "cost_vs_baseline", "reason"])


@whatif_app.command("sparsity")
def wi_sparsity(model: o.Model = "", accelerator: o.Accel = "H100-SXM5-80GB", tp: o.Tp = 1, pp: o.Pp = 1,
                rate: Rate = 10.0,
                workload: Workload = "chatbot", ttft_p99: Ttft = 2.0, tpot_p99: Tpot = 0.1,
                gemm_speedup: Annotated[float | None, typer.Option(help="Override the sparse GEMM speed-up.")] = None,
                sampling: o.SamplingOpt = "random", calibration: Calib = None, as_json: JsonOpt = False) -> None:
    """Pruning: dense, 2:4 structured and unstructured sparsity (speed-ups are documented parameters)."""
    ServePlan(tp=tp, pp=pp).check(get_model(model))
    _positive(("--gemm-speedup", gemm_speedup))
    df = sparsity_whatif(get_model(model), accelerator, _traffic(rate, workload, sampling=sampling), _slo(ttft_p99, tpot_p99), tp,
                         gemm_speedup=gemm_speedup, perf=perf_for(accelerator, calibration), pp=pp)
    _show(df, f"{model}: sparsity on {_gpus(tp, pp)} x {accelerator}", as_json,
          ["pattern", "gemm_speedup", "weights_per_gpu_bytes", "prefill_s", "step_s", "capacity_rps",
           "replicas_min", "cost_per_hour_min", "cost_vs_baseline"])


@whatif_app.command("distill")
def wi_distill(teacher: Annotated[str, typer.Option("--teacher")] = "llama-3-70b",
               student: Annotated[str, typer.Option("--student")] = "llama-3-8b",
               tokens: Annotated[float, typer.Option("--tokens", help="Distillation tokens.")] = 1e11,
               accelerator: o.Accel = "H100-SXM5-80GB",
               gpus: Annotated[int, typer.Option("--gpus", "-n", min=1)] = 64, rate: Rate = 50.0,
               workload: Workload = "chatbot", ttft_p99: Ttft = 2.0, tpot_p99: Tpot = 0.1,
               sampling: o.SamplingOpt = "random", calibration: Calib = None,
               framework: o.FrameworkOpt = DEFAULT_FRAMEWORK, as_json: JsonOpt = False) -> None:
    """Cost to produce a student (its training as the --framework release runs it), its serving savings, and the
    break-even point in requests."""
    _positive(("--tokens", tokens))
    d = distillation_whatif(get_model(teacher), get_model(student), tokens, accelerator, gpus,
                            _traffic(rate, workload, sampling=sampling), _slo(ttft_p99, tpot_p99), [accelerator],
                            perfs=perfs_for([accelerator], calibration), framework=framework)
    if as_json:
        emit_json(d.to_dict())
        return None if d.feasible else infeasible(d.reason)
    if not d.feasible:
        return infeasible(d.reason)
    console.print(pairs(f"Distil {teacher} into {student}", [
        ["teacher_forward_s", d.teacher_forward_s], ["student_training_s", d.student_train_s],
        ["cost_to_produce_usd", d.produce_cost_usd], ["teacher_fleet_cost_per_hour_usd", d.teacher_serve_cost_per_hour],
        ["student_fleet_cost_per_hour_usd", d.student_serve_cost_per_hour],
        ["saving_per_request_usd", d.saving_per_request_usd], ["break_even_requests", d.break_even_requests],
        ["break_even_time_s", d.break_even_days * 86400]], ("quantity", "value")))
    for note in d.notes:
        console.print(f"- {note}")
    return None


@whatif_app.command("precision")
def wi_precision(model: o.Model = "", accelerator: o.Accel = "H100-SXM5-80GB", gpus: o.Gpus = None, dp: o.Dp = 1,
                 tp: o.Tp = 8, pp: o.Pp = 1, micro_batch: o.Mb = 1,
                 global_batch: Annotated[int, typer.Option("--global-batch", min=1)] = 64, seq_len: o.Seq = 4096,
                 calibration: Calib = None, framework: o.FrameworkOpt = DEFAULT_FRAMEWORK,
                 as_json: JsonOpt = False) -> None:
    """Training under fp32, tf32, fp16 (loss scaling), bf16, fp8, mxfp8 and nvfp4 (Blackwell): step time, MFU, memory,
    each recipe as the --framework release runs it (a recipe the release or the accelerator cannot run: its reason)."""
    from capsim.specs.catalog import get_accelerator
    from capsim.specs.plans import TrainPlan
    spec = get_model(model)
    plan = TrainPlan(dp=dp, tp=tp, pp=pp, micro_batch=micro_batch, global_batch=global_batch,
                     seq_len=seq_len).check(spec, gpus)
    df = precision_whatif(spec, Cluster(get_accelerator(accelerator), plan.num_gpus), plan,
                          perf=perf_for(accelerator, calibration), framework=framework)
    _show(df, f"{model}: mixed precision on {plan.num_gpus} x {accelerator} ({framework.value})", as_json)


@whatif_app.command("batch")
def wi_batch(model: o.Model = "", accelerator: o.Accel = "H100-SXM5-80GB",
             gpus: Annotated[int, typer.Option("--gpus", "-n", min=1)] = 64,
             tokens: Annotated[float, typer.Option("--tokens")] = 1e12,
             batches: Annotated[str, typer.Option("--batches", help="Comma-separated global batches.")] =
             "256,512,1024,2048,4096", seq_len: o.Seq = 4096,
             critical_batch: Annotated[float | None, typer.Option(help="B_crit in tokens (default: Kaplan fit).")] = None,
             precision: o.Prec = "bf16", calibration: Calib = None, framework: o.FrameworkOpt = DEFAULT_FRAMEWORK,
             as_json: JsonOpt = False) -> None:
    """Time to the same loss at each global batch: gradient accumulation against the critical batch size, each
    batch's fastest layout as the --framework release runs it."""
    from capsim.specs.catalog import get_accelerator
    _positive(("--tokens", tokens), ("--critical-batch", critical_batch))
    df = batch_size_whatif(get_model(model), Cluster(get_accelerator(accelerator), gpus), tokens,
                           list(o.ints(batches, "--batches")), seq_len, critical_batch,
                           perf=perf_for(accelerator, calibration), framework=framework,
                           precision=Precision.preset(precision))
    _show(df, f"{model}: batch size on {gpus} x {accelerator} ({framework.value})", as_json)


@scale_app.command("serve")
def sc_serve(model: o.Model = "", workload: Workload = "chatbot",
             accelerators: Annotated[str, typer.Option("--accelerators", "-a")] = "H100-SXM5-80GB,L4,A100-SXM4-80GB",
             rates: Annotated[str, typer.Option("--rates")] = ",".join(str(r) for r in SERVE_RATES),
             ttft_p99: Ttft = 1.0, tpot_p99: Tpot = 0.05,
             quantizations: Annotated[str, typer.Option("--quantizations", help="Comma-separated schemes to try.")] =
             ",".join(QUANTIZATIONS), engine: Annotated[str, typer.Option("--engine")] = "vllm",
             sampling: o.SamplingOpt = "random", calibration: Calib = None, requests: o.PlanRequests = None, precision: o.PlanPrecision = ConfirmRule.rel_precision,
             as_json: JsonOpt = False) -> None:
    """Fleet, cost per million tokens and p99 latency from small to large traffic: at each rate, the fleet
    `capsim plan serve` picks (the same search and confirmation rule)."""
    accs = [a.strip() for a in accelerators.split(",") if a.strip()]
    df = serving_scaling(get_model(model), _traffic(1.0, workload, sampling=sampling), _slo(ttft_p99, tpot_p99), accs,
                         list(o.floats(rates, "--rates")),
                         o.names(quantizations, "--quantizations", [q.value for q in Quantization]), engine,
                         requests, ConfirmRule(rel_precision=precision), perfs=perfs_for(accs, calibration))
    _show(df, f"{model}: serving from {rates.split(',')[0]} to {rates.split(',')[-1]} req/s", as_json,
          ["rate_rps", "accelerator", "tp", "pp", "quantization", "max_batch", "replicas", "gpus",
           "cost_per_hour_usd", "cost_per_million_output_tokens", "ttft_p99_s", "tpot_p99_s", "reason"])


@scale_app.command("train")
def sc_train(model: o.Model = "", accelerator: o.Accel = "H100-SXM5-80GB",
             tokens: Annotated[float, typer.Option("--tokens")] = 1e12,
             global_batch: Annotated[int, typer.Option("--global-batch", min=1)] = 1024, seq_len: o.Seq = 8192,
             gpus: Annotated[str, typer.Option("--gpus", help="Comma-separated GPU counts.")] =
             ",".join(str(g) for g in TRAIN_GPUS), precision: o.Prec = "bf16", calibration: Calib = None,
             framework: o.FrameworkOpt = DEFAULT_FRAMEWORK, as_json: JsonOpt = False) -> None:
    """Step time, MFU, scaling efficiency, time and cost to train from 8 to 16,384 GPUs, each count's best layout
    as the --framework release runs it (`capsim plan train`'s search)."""
    _positive(("--tokens", tokens))
    df = training_scaling(get_model(model), accelerator, tokens, global_batch, seq_len,
                          list(o.ints(gpus, "--gpus")), perf=perf_for(accelerator, calibration), framework=framework,
                          precision=Precision.preset(precision))
    _show(df, f"{model}: training on {accelerator} ({framework.value})", as_json,
          ["gpus", "dp", "tp", "pp", "cp", "step_s", "mfu", "scaling_efficiency", "time_to_train_s", "cost_usd",
           "reason"])


@scale_app.command("model-size")
def sc_model(budgets: Annotated[str, typer.Option("--flops", help="Comma-separated FLOP budgets.")] =
             "1e21,1e22,1e23,1e24,1e25", as_json: JsonOpt = False) -> None:
    """Compute-optimal parameters and tokens for each budget (Chinchilla, Approach 3)."""
    flops = o.floats(budgets, "--flops")
    smallest = model_size_study([min(flops)]).iloc[0]
    if smallest["params"] < MIN_FIT_PARAMS:
        raise SpecError("--flops", f"{min(flops):g} FLOPs gives a {smallest['params']:.3g}-parameter model, below "
                        f"the {MIN_FIT_PARAMS:.0e}-parameter models the Chinchilla fit was made on",
                        f"give budgets of at least {_min_budget():.2g} FLOPs")
    _show(model_size_study(list(flops)), "Compute-optimal model size", as_json)


# Hoffmann et al. 2022 (arXiv:2203.15556), abstract: "over 400 language models ranging from 70 million to over
# 16 billion parameters"; below that the fitted law is an extrapolation into models it never saw.
MIN_FIT_PARAMS = 7e7


def _min_budget() -> float:
    """The budget whose compute-optimal model has MIN_FIT_PARAMS parameters (N grows monotonically with C)."""
    low, high = 1.0, 1e30
    for _ in range(100):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if compute_optimal(mid).params < MIN_FIT_PARAMS else (low, mid)
    return high
