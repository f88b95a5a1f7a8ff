"""``capsim plan train|serve``: search layouts and fleets for the fastest or cheapest way to meet a goal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from capsim.analytic.serving import Sampling
from capsim.analytic.training import DEFAULT_FRAMEWORK
from capsim.calibration import perf_for, perfs_for
from capsim.cli import options as o
from capsim.cli.common import JsonOpt, console, emit_json, infeasible, table
from capsim.cli.render import money
from capsim.errors import SpecError
from capsim.plan.confirm import ConfirmRule
from capsim.plan.serving import Slo, Traffic, plan_serving
from capsim.plan.training import RankBy, plan_training
from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS
from capsim.sim.serving.presets import get_preset
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import get_engine
from capsim.specs.plans import Quantization, Recompute
from capsim.specs.precision import Precision

plan_app = typer.Typer(help="Search layouts (training) and fleets (serving) for the best way to meet a goal.",
                       no_args_is_help=True)

DAY_S = 86400.0


@plan_app.command("train")
def plan_train(model: o.Model = "", accelerator: o.Accel = "H100-SXM5-80GB",
               tokens: Annotated[float, typer.Option("--tokens", help="Tokens to train (e.g. 15e12).", min=1)] = 1e12,
               gpus: Annotated[int | None, typer.Option("--gpus", "-n", help="A fixed GPU count.", min=1)] = None,
               deadline_days: Annotated[float | None, typer.Option("--deadline", help="Finish within this many days "
                                                                   "(searches GPU counts; ranks by cost).", min=0)] = None,
               budget_usd: Annotated[float | None, typer.Option("--budget", help="Spend at most this many USD "
                                                                "(searches GPU counts; ranks by time).", min=0)] = None,
               rank_by: Annotated[RankBy | None, typer.Option("--rank-by", help="time or cost.")] = None,
               global_batch: Annotated[int, typer.Option("--global-batch", help="Sequences per step.", min=1)] = 1024,
               seq_len: o.Seq = 8192, precision: o.Prec = "bf16",
               framework: o.FrameworkOpt = DEFAULT_FRAMEWORK,
               calibration: Annotated[str | None, typer.Option("--calibration", "-c")] = None,
               price: o.Price = None,
               max_gpus: Annotated[int, typer.Option("--max-gpus", help="Largest count tried.", min=1)] = 16384,
               usable_memory: Annotated[float, typer.Option("--usable-memory", help="Fraction of device memory a "
                                                             "layout may use (headroom for CUDA context, NCCL, "
                                                             "fragmentation).", min=0.1, max=1.0)] = 0.9,
               top: Annotated[int, typer.Option("--top", min=1)] = 10,
               hf_config: o.HfConfig = None, as_json: JsonOpt = False,
               fsdp_group: Annotated[int | None, typer.Option(
                   "--fsdp-group", help="Keep this hybrid sharding group (ZeRO/FSDP state sharded over N of the dp x "
                   "cp ranks, replicated over the rest) and search the rest of the layout; GPU counts it does not "
                   "divide are skipped. FSDP2 releases with HSDP (torchtitan from 2024-12, NeMo AutoModel) search "
                   "hybrid groups without it.", min=1)] = None) -> None:
    """The fastest (or cheapest) training layout and GPU count for a model and token budget."""
    spec = o.resolve_model(model, hf_config)
    acc = o.get_accelerator(accelerator, price)
    for name, value in (("--deadline", deadline_days), ("--budget", budget_usd)):
        if value is not None and value <= 0:
            raise SpecError(name, f"must be > 0, got {value:g}", "give a positive limit, or leave it out")
    if fsdp_group is not None and gpus is not None and gpus % fsdp_group:
        raise SpecError("--fsdp-group", f"{fsdp_group} does not divide the {gpus} GPUs: no layout's dp x cp "
                        f"splits into sharding groups of {fsdp_group}", f"use a divisor of {gpus}")
    with o.fsdp_group_errors():
        plan = plan_training(spec, acc, tokens, global_batch, seq_len, gpus,
                             deadline_days * DAY_S if deadline_days is not None else None, budget_usd, rank_by,
                             perf=perf_for(acc, calibration),
                             precision=Precision.preset(precision),  # run as the release runs it (step_time)
                             framework=framework, fixed={"shard": fsdp_group} if fsdp_group else None,
                             max_gpus=max_gpus, usable_memory_fraction=usable_memory)
    if as_json:
        emit_json(plan.to_dict(top))
        return None if plan.feasible else infeasible(plan.reason)
    if not plan.feasible:
        infeasible(plan.reason)
    cols = ["gpus", "dp", "tp", "pp", "v", "cp", "micro_batch", "recompute", "sp", "zero_stage", "shard", "step_s",
            "mfu", "time_to_train_s", "cost_usd"]
    console.print(table(f"{spec.name} on {acc.name}: {tokens:.3g} tokens, ranked by {plan.rank_by} "
                        f"({plan.evaluated:,} layouts priced; calibration {plan.calibration}, {plan.framework})",
                        cols, [[Recompute(list(Recompute)[r[c]]).value if c == "recompute" else r[c] for c in cols]
                               for r in plan.table.head(top).to_dict("records")]))
    for line in plan.explanation:
        console.print(f"- {line}")
    return None


def best_line(b: dict) -> str:
    """The chosen fleet in one sentence, with its confidence intervals."""
    return (f"best: {b['replicas']:.0f} x {b['accelerator']} (tp{b['tp']} pp{b['pp']}, {b['quantization']}, max batch "
            f"{b['max_batch']}), {money(b['cost_per_hour_usd'])}/h, {money(b['cost_per_million_output_tokens'])} "
            f"± {money(b['cost_per_million_halfwidth'])} per M output tokens, p99 TTFT "
            f"{b['ttft_p99_s'] * 1e3:,.0f} ± {b['ttft_p99_halfwidth_s'] * 1e3:,.0f} ms, p99 TPOT "
            f"{b['tpot_p99_s'] * 1e3:,.1f} ± {b['tpot_p99_halfwidth_s'] * 1e3:,.1f} ms (95% intervals; "
            f"{b['requests']:,.0f} requests simulated on {b['simulated_replicas']:.0f} replicas)")


@plan_app.command("serve")
def plan_serve(model: o.Model = "",
               rate: Annotated[float, typer.Option("--rate", help="Peak requests per second to carry.", min=0)] = 10.0,
               workload: Annotated[str | None, typer.Option("--workload", "-w", help="A preset's lengths "
                                                             "(chatbot, recommendation, rag-qa, azure-conv, ...).")] = "chatbot",
               trace: Annotated[str | None, typer.Option("--trace", help="A trace CSV whose lengths to sample.")] = None,
               diurnal: Annotated[str | None, typer.Option("--diurnal", help="Comma-separated hourly rates; the fleet "
                                                           "is sized for the peak.")] = None,
               ttft_p99: Annotated[float | None, typer.Option("--ttft-p99", help="p99 TTFT target, seconds.")] = None,
               tpot_p99: Annotated[float | None, typer.Option("--tpot-p99", help="p99 TPOT target, seconds.")] = None,
               goodput: Annotated[float | None, typer.Option("--goodput", help="Instead of p99s: this fraction of "
                                                             "requests must meet both targets.")] = None,
               accelerators: Annotated[str, typer.Option("--accelerators", "-a", help="Comma-separated candidates.")] =
               "H100-SXM5-80GB,A100-SXM4-80GB,H200-SXM-141GB,L40S",
               price: Annotated[list[str], typer.Option("--price", help="NAME=USD per GPU-hour (repeatable).")] = [],  # noqa: B006
               limit: Annotated[list[str], typer.Option("--limit", help="NAME=most GPUs of that kind.")] = [],  # noqa: B006
               quantizations: Annotated[str, typer.Option("--quantizations", help="Comma-separated schemes to try.")] =
               "none,int8,int4,fp8",
               engine: Annotated[str, typer.Option("--engine")] = "vllm", sampling: o.SamplingOpt = "random",
               calibration: Annotated[str | None, typer.Option("--calibration", "-c")] = None,
               requests: o.PlanRequests = None, precision: o.PlanPrecision = ConfirmRule.rel_precision,
               max_events: o.MaxEvents = DEFAULT_MAX_EVENTS,
               top: Annotated[int, typer.Option("--top", min=1)] = 10,
               hf_config: o.HfConfig = None, as_json: JsonOpt = False) -> None:
    """The cheapest fleet (accelerator, TP, quantization, batch limit, replicas) that carries the traffic
    within the SLOs: candidates priced by the analytic capacity bound, sized by the simulator cheapest first
    until none left can be cheaper, each simulation as long as its p99s and cost need to be known to --precision."""
    spec = o.resolve_model(model, hf_config)
    if trace is not None:
        if o.given("workload"):
            raise SpecError("--trace", "a trace and a preset (--workload) both give the request lengths",
                            "give one of them")
        workload = None
    lengths = get_preset(workload).lengths if workload else None
    if isinstance(lengths, str):  # a trace preset: sample its lengths
        trace, lengths = lengths, None
    for name, value in (("--rate", rate), ("--ttft-p99", ttft_p99), ("--tpot-p99", tpot_p99)):
        if value is not None and value <= 0:
            raise SpecError(name, f"must be > 0, got {value:g}", "give a positive value")
    rates = o.floats(diurnal, "--diurnal", low=0.0, low_open=False) if diurnal is not None else ()
    if rates and max(rates) <= 0:
        raise SpecError("--diurnal", "every rate is 0", "give the traffic of each hour")
    traffic = Traffic(rate, lengths, trace, rates, requests, Sampling.parse(sampling, "--sampling"))
    slo = Slo(ttft_p99, tpot_p99, goodput)
    get_engine(engine)
    names = [get_accelerator(a.strip()).name for a in accelerators.split(",") if a.strip()]
    plan = plan_serving(spec, traffic, slo, names, perfs_for(names, calibration),
                        o.pairs(price, "--price", _candidate(names)),
                        o.pairs(limit, "--limit", _candidate(names), int, low=1),
                        o.names(quantizations, "--quantizations", [q.value for q in Quantization]), engine,
                        rule=ConfirmRule(rel_precision=precision), max_events=max_events)
    if as_json:
        emit_json(plan.to_dict(top))
        return None if plan.feasible else infeasible(plan.reason)
    cols = ["accelerator", "tp", "pp", "quantization", "max_batch", "replicas", "gpus", "cost_per_hour_usd",
            "cost_per_million_output_tokens", "ttft_p99_s", "tpot_p99_s", "capacity_rps", "requests"]
    shown = plan.table[plan.table["confirmed"]].head(top)
    console.print(table(f"{spec.name} at {plan.rate_rps:g} req/s: fleets that meet the SLOs, cheapest first",
                        cols, [[r[c] for c in cols] for r in shown.to_dict("records")]))
    front = ["accelerator", "tp", "pp", "quantization", "max_batch", "replicas", "cost_per_hour_usd", "ttft_p99_s"]
    console.print(table("Pareto front: cost per hour against p99 TTFT", front,
                        [[r[c] for c in front] for r in plan.pareto.to_dict("records")]))
    if plan.feasible:
        console.print(best_line(plan.best))
    for note in plan.notes:
        console.print(f"note: {note}")
    if not plan.feasible:
        infeasible(plan.reason)
    return None


def _candidate(names: list[str]) -> Callable[[str], str]:
    """NAME of a --price/--limit option -> the candidate accelerator it means; one that is not a candidate is an
    error (it would be ignored)."""
    def canonical(name: str) -> str:
        full = get_accelerator(name).name
        if full not in names:
            raise SpecError("--accelerators", f"{full} has a price or limit but is not a candidate",
                            f"add it to -a ({', '.join(names)}) or drop its price/limit")
        return full
    return canonical
