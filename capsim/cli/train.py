"""``capsim train``: step time, its breakdown, MFU, memory and the cost of training N tokens, for one plan or
the best of every valid plan (``--auto``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from capsim.analytic.training import BREAKDOWN, DEFAULT_FRAMEWORK, FrameworkName, StepTime, step_time
from capsim.analytic.training.framework import get_release
from capsim.analytic.training.release import Framework, PipelineSplit
from capsim.analytic.training.step import as_released
from capsim.calibration import perf_for
from capsim.calibration.fp8 import band_ends, fp8_rates, rates_note, split_by_role
from capsim.cli import options as o
from capsim.cli.calibrate import warn_if_other_machine
from capsim.cli.common import JsonOpt, console, emit_json, gb, infeasible, table
from capsim.cli.deploy import DEFAULT_ACCELERATOR, AccelOpt, ThreadsOpt, resolve_device
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.plan.train_layouts import plan_of_row, search_layouts
from capsim.plan.training import why_none
from capsim.specs.hardware import Cluster
from capsim.specs.pipeline_layout import LayerSplit
from capsim.specs.plans import Recompute
from capsim.specs.precision import DType, Precision

Tokens = Annotated[float | None, typer.Option("--tokens", help="Tokens to train, for time, energy and cost totals "
                                                                "(e.g. 300e9).", min=1)]
Auto = Annotated[bool, typer.Option("--auto", help="Search tp, pp, v, micro-batch, recompute, SP and ZeRO for the "
                                                   "fastest plan that fits; print the top ones. Those options, when "
                                                   "given, stay fixed, as do --cp and --ep. With --fsdp-group N "
                                                   "the search keeps that hybrid sharding group; FSDP2 releases "
                                                   "with HSDP (torchtitan from 2024-12, NeMo AutoModel) also "
                                                   "search hybrid groups.")]
Calib = Annotated[str | None, typer.Option("--calibration", "-c", help="Calibration name or file (default: the "
                                                                       "accelerator's GPU-profile one, else datasheet); "
                                                                       "a measured one is a device of its own: leave -a "
                                                                       "out.")]
Fw = o.FrameworkOpt
Top = Annotated[int, typer.Option("--top", help="Plans to list with --auto.", min=1)]
GlobalBatch = Annotated[int | None, typer.Option("--global-batch", help="Sequences per optimizer step "
                                                                        "(default: dp x micro-batch x pp).", min=1)]


def _result_dict(result: StepTime, extra: dict[str, Any]) -> dict[str, Any]:
    d = result.to_dict()
    out = {**extra, "calibration": result.calibration, "framework": result.framework,
           "step_time_s": d["step_s"], "tflops_per_gpu_model": d["tflops_per_gpu_model"],
           "tflops_per_gpu_hw": d["tflops_per_gpu_hw"], "mfu": d["mfu"], "hfu": d["hfu"],
           "tokens_per_s": d["tokens_per_s"], "memory_per_gpu_bytes": d["memory_per_gpu_bytes"],
           "feasible": d["feasible"], "reason": d["reason"], "breakdown": d["breakdown"],
           "dp_hidden_s": d["dp_hidden_s"], "bottleneck_stage": d["bottleneck_stage"],
           "micro_batches": d["micro_batches"], "memory": d["memory"],
           "train": {"tokens": d["train_tokens"], "time_s": d["train_time_s"], "energy_j": d["train_energy_j"],
                     "cost_usd": d["train_cost_usd"]}}
    return out


def _fp8_band(spec: Any, plan: Any, cluster: Cluster, perf: Perf, fw: Framework) -> dict[str, Any] | None:
    """Where the plan's GEMMs run per-tensor FP8 at a rate not measured on the accelerator
    (capsim.calibration.fp8.fp8_rates): the rates assumed (by GEMM role where the calibration prices roles apart),
    and the step with every FP8 GEMM at each published FP8/BF16 ratio (``ends``; ``*_at_other`` the other's)."""
    rates = fp8_rates(perf) if plan.precision.compute is DType.FP8 else None
    if rates is None:
        return None
    ends = []
    for _words, rate, alt in band_ends(perf, rates):
        at = step_time(spec, plan, cluster, alt, framework=fw)
        ends.append({"rate": rate.to_dict(), "step_s": at.step_s, "tokens_per_s": at.tokens_per_s})
    by_role = split_by_role(perf)
    return {"assumed": rates[0].to_dict(), "other": rates[1].to_dict(), "by_role": by_role, "ends": ends,
            "step_s_at_other": ends[-1]["step_s"], "tokens_per_s_at_other": ends[-1]["tokens_per_s"],
            "note": rates_note(rates, cluster.accelerator.name, by_role)}


def _print_fp8(band: dict[str, Any] | None) -> None:
    if band is not None:
        at = ", ".join(f"all at {e['rate']['over_bf16']:.2f}x: step {e['step_s']:.4g} s, {e['tokens_per_s']:,.0f} "
                       "tokens/s" for e in band["ends"])
        console.print(f"{band['note']}; {at}")


def _print(result: StepTime, title: str, split: LayerSplit | None = None, implicit: bool = False,
           own: str | None = None, fp8: dict[str, Any] | None = None) -> None:
    step = result.step_s
    rows = [[k.removesuffix("_s").replace("_", " "), getattr(result, k), f"{100 * getattr(result, k) / step:.1f}%"]
            for k in BREAKDOWN if getattr(result, k) > 0]
    rows.append(["step", step, "100%"])
    console.print(table(f"{title}: step time (calibration {result.calibration}, framework {result.framework})",
                        ["part", "time_s", "share"], rows))
    if result.dp_hidden_s > 0:
        console.print(f"gradient reduction hidden behind backward: {result.dp_hidden_s:.4g} s of "
                      f"{result.dp_total_s:.4g} s")
    console.print(f"MFU {100 * result.mfu:.1f}%   HFU {100 * result.hfu:.1f}%   model {result.tflops_per_gpu_model:.1f} / "
                  f"hardware {result.tflops_per_gpu_hw:.1f} TFLOP/s per GPU   {result.tokens_per_s:,.0f} tokens/s")
    _print_fp8(fp8)
    if split is not None and split.pp > 1:
        console.print(f"pipeline: {split.pp} stages x {split.v} chunks, layers per stage {list(split.stages)} "
                      f"({split.rule.value}; Megatron-Core layout '{split.layout}')")
        if own is not None:
            console.print(f"  pp x v does not divide the layers: priced with {own}")
        elif implicit and split.rule.value != "even":
            console.print("  pp x v does not divide the layers: priced with the uneven split a layout search uses "
                          "(capsim.specs.pipeline_layout.default_uneven); state another with --layer-split, "
                          "--pipeline-layout or Megatron's first/last/account-for options")
    mem = result.memory
    console.print(table(f"Memory per GPU (peak pipeline stage: {mem.to_dict()['peak_stage']})", ["part", "size"],
                        [[k.replace("_bytes", ""), gb(getattr(mem, k))] for k in
                         ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                          "temporary_bytes", "total_bytes")]))
    if result.feasible:
        console.print(f"[green]feasible[/]: {gb(mem.total_bytes)} of {gb(mem.capacity_bytes)}")
    if result.train_tokens == result.train_tokens:  # asked for
        console.print(f"train {result.train_tokens:.4g} tokens: {result.train_time_s / 86400:,.2f} days, "
                      f"{result.train_energy_j / 3.6e9:,.1f} MWh at accelerator TDP (host, network and cooling "
                      f"excluded), ${result.train_cost_usd:,.0f} at ${result.price_usd_per_gpu_hour}/GPU-hour")


def _framework(name: FrameworkName, flags: str) -> Framework:
    """The release's behaviour under ``flags``; a flag that sets a layout setting is refused (the plan's options
    state the layout), never dropped."""
    release = get_release(name)
    for token in flags.split():
        flag = release.flags.get(token.partition("=")[0])
        if flag is not None and flag.field.startswith("layout."):
            raise SpecError("--flags", f"{token} sets the layout ({flag.field.removeprefix('layout.')})",
                            "state it with the plan's own option (--sp, --recompute, --etp, ...)")
    return release.configure(flags)[0]


def train(model: o.Model = "", accelerator: AccelOpt = None, gpus: o.Gpus = None, dp: o.Dp = None,
          tp: o.Tp = 1, pp: o.Pp = 1, v: o.V = 1, cp: o.Cp = 1, ep: o.Ep = 1, sp: o.SpRelease = False, zero: o.Zero = 0,
          distributed_optimizer: o.DistOpt = False, recompute: o.Rec = Recompute.NONE, micro_batch: o.Mb = 1,
          global_batch: GlobalBatch = None, seq_len: o.Seq = 2048, precision: o.Prec = "bf16",
          layer_split: o.StageSplit = None, pipeline_layout: o.Layout = None, first_layers: o.FirstLayers = None,
          last_layers: o.LastLayers = None, account_embedding: o.AccountEmbedding = False,
          account_loss: o.AccountLoss = False, auto: Auto = False, top: Top = 10, tokens: Tokens = None,
          price: o.Price = None, calibration: Calib = None, framework: Fw = DEFAULT_FRAMEWORK,
          hf_config: o.HfConfig = None, etp: o.Etp = None, flags: o.Flags = "", threads: ThreadsOpt = None,
          as_json: JsonOpt = False, fsdp_group: o.FsdpGroup = None) -> None:
    """Training step time of a plan on a cluster: breakdown, MFU/HFU, memory, and time/energy/cost for N tokens.
    --dp defaults to gpus / (tp*pp*cp); an uneven pipeline is stated one of Megatron-Core's ways, or is the
    release's own where it has one (NeMo AutoModel: the first virtual stages one layer heavier; torchtitan 2024-12:
    the middle ones). --sp defaults to the release's (torchtitan: on wherever TP is)."""
    spec = o.resolve_model(model, hf_config)
    warn_if_other_machine(calibration)
    if calibration is None and threads is None:  # the accelerator's default calibration (capsim.calibration)
        acc = o.get_accelerator(accelerator or DEFAULT_ACCELERATOR, price)
        perf = perf_for(acc)
    else:  # a measured calibration without -a is a device of its own
        acc, perf, _kv, _kind = resolve_device(accelerator, calibration, threads, price)
    if auto:
        if gpus is None or global_batch is None:
            raise SpecError("--auto", "a search needs the GPU count and the global batch",
                            "pass --gpus N and --global-batch B")
        if fsdp_group is not None and gpus % fsdp_group:
            raise SpecError("--fsdp-group", f"{fsdp_group} does not divide the {gpus} GPUs: no layout's dp x cp "
                            f"splits into sharding groups of {fsdp_group}", f"use a divisor of {gpus}")
        o.inapplicable((name, False, "without --auto (the search picks dp and the pipeline split)") for name in
                       ("dp", "layer_split", "pipeline_layout", "first_layers", "last_layers", "account_embedding",
                        "account_loss"))
        given = {"tp": tp, "pp": pp, "v": v, "micro_batch": micro_batch, "recompute": recompute.code, "sp": sp,
                 "zero": zero, "distributed_optimizer": distributed_optimizer, "etp": etp}
        pins = {_AXIS.get(k, k): value for k, value in given.items() if o.given(k)}
        fw = _framework(framework, flags)  # step_time runs the preset as the release does (as_released)
        return _auto(spec, Cluster(acc, gpus), global_batch, seq_len, Precision.preset(precision),
                     perf, fw, top, tokens, {"cp": cp, "ep": ep, "shard": fsdp_group, **pins}, as_json)
    split = o.split_options(pp, layer_split, pipeline_layout, first_layers, last_layers, account_embedding,
                            account_loss)
    dp = o.infer_dp(dp, gpus, tp, pp, cp)
    o.check_fsdp_group(fsdp_group, dp, cp, zero, distributed_optimizer)
    plan = o.train_plan(dp, tp, pp, v, cp, ep, sp if o.given("sp") else None, zero, distributed_optimizer,
                        recompute, micro_batch, global_batch, seq_len, precision, split, etp, fsdp_group)
    cluster = Cluster(acc, gpus if gpus is not None else plan.num_gpus)
    fw = _framework(framework, flags)
    # as the release runs it: its FP8 recipe, its --sp default (torchtitan: SP wherever TP is), its own split
    stated = as_released(spec, plan, fw)
    own = f"{fw.name}'s own split ({_OWN_SPLIT[fw.pipeline_split]})" if stated.pipeline_layout != \
        plan.pipeline_layout else None
    plan = stated
    with o.fsdp_group_errors():
        result = step_time(spec, plan, cluster, perf, framework=fw, train_tokens=tokens)
    fp8 = _fp8_band(spec, plan, cluster, perf, fw)
    extra = {"model": spec.name, "accelerator": acc.name, "num_gpus": cluster.num_gpus, "plan": plan.to_dict(),
             "pipeline": plan.split(spec).to_dict(), **({"fp8_rate": fp8} if fp8 else {})}
    if as_json:
        emit_json(_result_dict(result, extra))
    else:
        _print(result, f"{spec.name} on {cluster.num_gpus} x {acc.name}", plan.split(spec), implicit=not split,
               own=own, fp8=fp8)
    _exit_if_infeasible(result)


def _exit_if_infeasible(result: StepTime) -> None:
    if not result.feasible:
        mem = result.memory
        infeasible(f"{result.reason} ({gb(mem.total_bytes)} of {gb(mem.capacity_bytes)})")


# How each release's own uneven split places the layers (capsim.specs.pipeline_layout front_loaded, middle_loaded).
_OWN_SPLIT = {PipelineSplit.FRONT_LOADED: "the first virtual stages one layer heavier",
              PipelineSplit.MIDDLE_LOADED: "the first virtual stage lightest, the next ones one layer heavier while "
                                           "the remainder lasts, the last what is left"}

# The search axis of each plan option --auto keeps where given (capsim.plan.train_layouts.SEARCH_AXES).
_AXIS = {"zero": "zero_stage"}


def _auto(spec: Any, cluster: Cluster, global_batch: int, seq_len: int, precision: Precision,
          perf: Perf, framework: Framework, top: int, tokens: float | None, fixed: dict[str, Any],
          as_json: bool) -> None:
    """The layout search under the release as the run's flags configure it: ``fixed`` pins cp, ep, the hybrid
    sharding group and every layout option the user gave (tp, pp, v, micro-batch, recompute, SP, ZeRO, ...)."""
    with o.fsdp_group_errors():
        frame = search_layouts(spec, cluster, global_batch, seq_len, perf, precision, framework, fixed=fixed,
                               top=top)
    if frame.empty and not frame.attrs.get("runnable", 1):  # none could run at all: the release's reasons
        infeasible(why_none(spec, cluster.accelerator, [cluster.num_gpus], [frame.attrs], 1.0))
    if frame.empty:
        group = f" and sharding group {fixed['shard']}" if fixed.get("shard") else ""
        infeasible(f"no plan of {spec.name} fits {cluster.num_gpus} x {cluster.accelerator.name} with global batch "
                   f"{global_batch}{group} (add GPUs, lower the global batch or the sequence"
                   + (", or widen --fsdp-group)" if group else ")"))
    plan = as_released(spec, plan_of_row(frame.iloc[0].to_dict(), global_batch, seq_len, precision), framework)
    result = step_time(spec, plan, cluster, perf, framework=framework, train_tokens=tokens)
    records = frame.to_dict(orient="records")
    fp8 = _fp8_band(spec, plan, cluster, perf, framework)
    if as_json:
        return emit_json(_result_dict(result, {"model": spec.name, "accelerator": cluster.accelerator.name,
                                               "num_gpus": cluster.num_gpus, "plan": plan.to_dict(),
                                               "evaluated": frame.attrs["evaluated"], "top": records,
                                               **({"fp8_rate": fp8} if fp8 else {})}))
    console.print(table(f"{spec.name} on {cluster.num_gpus} x {cluster.accelerator.name}: fastest of "
                        f"{frame.attrs['evaluated']:,} layouts", ["dp", "tp", "pp", "v", "split", "mb", "recompute",
                                                                   "sp", "zero", "dist-opt", "fsdp-group", "step_s",
                                                                   "mfu", "memory_per_gpu_bytes"],
                        [[r["dp"], r["tp"], r["pp"], r["v"], r["split"], r["micro_batch"],
                          list(Recompute)[r["recompute"]].value, r["sp"], r["zero_stage"],
                          r["distributed_optimizer"], _group(r), r["step_s"], r["mfu"], r["memory_per_gpu_bytes"]]
                         for r in records]))
    hsdp = f" fsdp-group {plan.shard_group}" if plan.shard_group else ""
    _print(result, f"best plan (dp{plan.dp} tp{plan.tp} pp{plan.pp} v{plan.pp_interleave}{hsdp})", plan.split(spec),
           fp8=fp8)
    return None


def _group(row: dict[str, Any]) -> str:
    """A search row's sharding group: "-" unsharded, "all" over dp x cp, else the hybrid group size."""
    if not (row["zero_stage"] or row["distributed_optimizer"]):
        return "-"
    return "all" if int(row["shard"]) == int(row["dp"]) * int(row["cp"]) else str(int(row["shard"]))


__all__ = ["train"]
