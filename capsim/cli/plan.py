"""``capsim plan train|serve``: search layouts and fleets for the fastest or cheapest way to meet a goal."""

from __future__ import annotations

from typing import Annotated

import typer

from capsim.analytic.training import FrameworkName
from capsim.cli import options as o
from capsim.cli.common import JsonOpt, console, emit_json, guarded, table
from capsim.plan.training import RankBy, plan_training
from capsim.specs.precision import Precision

plan_app = typer.Typer(help="Search layouts (training) and fleets (serving) for the best way to meet a goal.",
                       no_args_is_help=True)

DAY_S = 86400.0


@plan_app.command("train")
@guarded
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
               framework: Annotated[FrameworkName, typer.Option("--framework")] = FrameworkName.MEGATRON_CORE,
               calibration: Annotated[str | None, typer.Option("--calibration", "-c")] = None,
               price: o.Price = None,
               max_gpus: Annotated[int, typer.Option("--max-gpus", help="Largest count tried.", min=1)] = 16384,
               usable_memory: Annotated[float, typer.Option("--usable-memory", help="Fraction of device memory a "
                                                             "layout may use (headroom for CUDA context, NCCL, "
                                                             "fragmentation).", min=0.1, max=1.0)] = 0.9,
               top: Annotated[int, typer.Option("--top", min=1)] = 10,
               hf_config: o.HfConfig = None, as_json: JsonOpt = False) -> None:
    """The fastest (or cheapest) training layout and GPU count for a model and token budget."""
    spec = o.resolve_model(model, hf_config)
    acc = o.get_accelerator(accelerator, price)
    plan = plan_training(spec, acc, tokens, global_batch, seq_len, gpus,
                         deadline_days * DAY_S if deadline_days is not None else None, budget_usd, rank_by,
                         calibration, Precision.preset(precision), framework, max_gpus=max_gpus,
                         usable_memory_fraction=usable_memory)
    if as_json:
        return emit_json(plan.to_dict(top))
    if not plan.feasible:
        console.print(f"[red]infeasible[/]: {plan.reason}")
        raise typer.Exit(1)
    cols = ["gpus", "dp", "tp", "pp", "v", "cp", "micro_batch", "recompute", "sp", "zero_stage", "step_s", "mfu",
            "time_to_train_s", "cost_usd"]
    rows = [[*(r[c] for c in cols[:-2]), r["time_to_train_s"] / DAY_S, r["cost_usd"]]
            for r in plan.table.head(top).to_dict("records")]
    console.print(table(f"{spec.name} on {acc.name}: {tokens:.3g} tokens, ranked by {plan.rank_by} "
                        f"({plan.evaluated:,} layouts priced; calibration {plan.calibration}, {plan.framework})",
                        [*cols[:-2], "days", "USD"], rows))
    for line in plan.explanation:
        console.print(f"- {line}")
    return None
