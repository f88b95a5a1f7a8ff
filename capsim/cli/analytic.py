"""``capsim memory train|serve`` and ``capsim flops``: the analytical model from the command line."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import typer

from capsim.analytic.flops import matmul_params, serving_step_flops, training_flops_per_token
from capsim.analytic.memory import serving_memory
from capsim.analytic.ops import Phase, StepBatch, training_layer_ops
from capsim.analytic.params import param_counts
from capsim.analytic.training import DEFAULT_FRAMEWORK, release_memory, release_refusal
from capsim.analytic.training.step import as_released
from capsim.cli import options as o
from capsim.cli.common import JsonOpt, console, emit_json, gb, infeasible, table
from capsim.cli.deploy import AccelOpt, CalibOpt, resolve_device
from capsim.specs.hardware import Accelerator
from capsim.specs.plans import Quantization, Recompute

memory_app = typer.Typer(help="Per-GPU memory of a training or serving plan, and whether it fits.", no_args_is_help=True)


def _verdict(total: float, capacity: float) -> str:
    return f"[green]fits[/]: {gb(total)} of {gb(capacity)} ({gb(capacity - total)} free)"


def device_of(accelerator: str | None, calibration: str | None, default: str) -> Accelerator:
    """The accelerator named, or the device a measured calibration describes (memory needs no timing)."""
    if calibration is None:
        return o.get_accelerator(accelerator or default)
    return resolve_device(accelerator, calibration, default=default)[0]


@memory_app.command("train")
def memory_train(model: o.Model = "", accelerator: AccelOpt = None, gpus: o.Gpus = None,
                 dp: o.Dp = None, tp: o.Tp = 1, pp: o.Pp = 1, v: o.V = 1, cp: o.Cp = 1, ep: o.Ep = 1, sp: o.SpRelease = False,
                 zero: o.Zero = 0, distributed_optimizer: o.DistOpt = False, recompute: o.Rec = Recompute.NONE,
                 micro_batch: o.Mb = 1, global_batch: Annotated[int | None, typer.Option(help="Sequences per step.")] = None,
                 seq_len: o.Seq = 2048, precision: o.Prec = "bf16", layer_split: o.StageSplit = None,
                 pipeline_layout: o.Layout = None, first_layers: o.FirstLayers = None,
                 last_layers: o.LastLayers = None, account_embedding: o.AccountEmbedding = False,
                 account_loss: o.AccountLoss = False, hf_config: o.HfConfig = None, calibration: CalibOpt = None,
                 framework: o.FrameworkOpt = DEFAULT_FRAMEWORK, as_json: JsonOpt = False) -> None:
    """Memory per GPU of a training layout (its heaviest pipeline stage): weights, gradients, optimizer,
    activations, buffers (a measured calibration without -a: its device's memory), as the framework release runs
    the plan (its precision recipe, --sp default, kernels), the memory `capsim train` reports."""
    spec = o.resolve_model(model, hf_config)
    split = o.split_options(pp, layer_split, pipeline_layout, first_layers, last_layers, account_embedding,
                            account_loss)
    plan = o.train_plan(o.infer_dp(dp, gpus, tp, pp, cp), tp, pp, v, cp, ep, sp if o.given("sp") else None, zero,
                        distributed_optimizer, recompute, micro_batch, global_batch, seq_len, precision, split)
    plan = as_released(spec, plan, framework).check(spec, gpus)
    acc = device_of(accelerator, calibration, "A100-SXM4-80GB")
    mem = release_memory(spec, plan, acc, framework)
    refusal = release_refusal(spec, plan, framework)  # what `capsim train` refuses, memory aside
    out = {"model": spec.name, "accelerator": acc.name, "plan": plan.to_dict(), **mem.to_dict()}
    if as_json:
        emit_json(out)
        if refusal:
            return infeasible(refusal)
        return None if mem.fits else infeasible(f"does not fit: {gb(mem.total_bytes)} of {gb(acc.memory_bytes)}")
    rows = [[k.replace("_bytes", ""), gb(out[k])] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes",
                                                            "activations_bytes", "temporary_bytes", "total_bytes")]
    console.print(table(f"{spec.name} training on {acc.name}: memory per GPU ({out['peak_stage']} pipeline stage)",
                        ["part", "bytes"], rows))
    if refusal:
        return infeasible(refusal)
    if mem.fits:
        console.print(_verdict(mem.total_bytes, acc.memory_bytes))
        return None
    return infeasible(f"does not fit: {gb(mem.total_bytes)} of {gb(acc.memory_bytes)}, {gb(mem.shortfall_bytes)} over")


@memory_app.command("serve")
def memory_serve(model: o.Model = "", accelerator: AccelOpt = None, tp: o.Tp = 1, pp: o.Pp = 1,
                 quantization: Annotated[Quantization, typer.Option("--quantization", "-q")] = Quantization.NONE,
                 dtype: Annotated[str, typer.Option(help="Serving dtype of weights and activations.")] = "bf16",
                 kv_dtype: Annotated[str | None, typer.Option(help="KV-cache dtype (default: dtype).")] = None,
                 max_batch: Annotated[int, typer.Option(help="Concurrent sequences (vLLM max_num_seqs).", min=1)] = 256,
                 max_batched_tokens: Annotated[int, typer.Option(help="Tokens per engine step.", min=1)] = 8192,
                 context: Annotated[int, typer.Option(help="Tokens each sequence holds (prompt + output).", min=0)] = 2048,
                 gpu_memory_utilization: Annotated[float, typer.Option(min=0.01, max=1.0)] = 0.9,
                 hf_config: o.HfConfig = None, calibration: CalibOpt = None, as_json: JsonOpt = False) -> None:
    """Memory per GPU of a serving replica and how many KV-cache tokens fit (a measured calibration without -a:
    its device's memory)."""
    spec = o.resolve_model(model, hf_config)
    plan = o.ServePlan(tp=tp, pp=pp, max_batch=max_batch, max_batched_tokens=max_batched_tokens,
                       quantization=quantization, dtype=dtype, kv_cache_dtype=kv_dtype,
                       gpu_memory_utilization=gpu_memory_utilization).check(spec)
    o.within_context(spec, context, "--context")
    acc = device_of(accelerator, calibration, "H100-SXM5-80GB")
    mem = serving_memory(spec, plan, acc, context_tokens=context)
    out = {"model": spec.name, "accelerator": acc.name, "plan": plan.to_dict(), **mem.to_dict()}
    why = (f"does not fit: {mem.requested_kv_tokens:,} KV tokens asked, room for {mem.max_kv_tokens:,} "
           f"({gb(mem.shortfall_bytes)} over the usable memory)")
    if as_json:
        emit_json(out)
        return None if mem.fits else infeasible(why)
    console.print(table(f"{spec.name} serving on {acc.name} (tp={tp}, pp={pp}): memory per GPU", ["part", "value"], [
        ["weights", gb(mem.weights_bytes)], ["activation peak", gb(mem.activations_bytes)],
        *([["recurrent states (max_batch seqs)", gb(mem.state_bytes)]] if mem.state_bytes else []),
        ["KV cache budget", gb(mem.kv_cache_bytes)], ["KV bytes per token", f"{mem.kv_bytes_per_token:,.0f}"],
        ["max KV tokens per replica", f"{mem.max_kv_tokens:,}"],
        ["requested (max_batch x context)", f"{mem.requested_kv_tokens:,}"]]))
    if not mem.fits:
        return infeasible(why)
    console.print(f"[green]fits[/]: room for {mem.max_kv_tokens:,} KV tokens, {mem.requested_kv_tokens:,} asked")
    return None


def flops(model: o.Model = "",
          seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per sequence (default: 2048, or the "
                                                      "model's context if shorter).", min=1)] = None,
          batch: Annotated[int, typer.Option(help="Sequences in the batch.", min=1)] = 1,
          context: Annotated[int | None, typer.Option(help="Context length for the decode step (default: 1024, "
                                                      "or the model's context if shorter).", min=0)] = None,
          tp: o.Tp = 1, hf_config: o.HfConfig = None, as_json: JsonOpt = False) -> None:
    """FLOPs per token and per step for training, prefill and decode, and one layer's op list."""
    spec = o.resolve_model(model, hf_config)
    o.ServePlan(tp=tp).check(spec)  # the op list splits heads and FFN over tp
    seq_len = min(2048, spec.max_seq) if seq_len is None else o.within_context(spec, seq_len, "--seq-len")
    context = min(1024, spec.max_seq) if context is None else o.within_context(spec, context, "--context")
    pc = param_counts(spec)
    n = matmul_params(spec)
    train_tok = float(training_flops_per_token(spec, seq_len))
    prefill = float(serving_step_flops(spec, StepBatch.prefill(batch, seq_len), tp))
    decode = float(serving_step_flops(spec, StepBatch.decode(batch, context), tp, Phase.DECODE))
    ops = training_layer_ops(spec, batch, seq_len, tp=tp)
    op_rows = [{"name": op.name, "kind": op.kind.value, "flops": float(op.total_flops),
                "bytes_read": float(op.bytes_read * op.count * op.share),
                "bytes_written": float(op.bytes_written * op.count * op.share), "share_of_layers": float(op.share),
                "shape": [float(x) for x in np.atleast_1d(op.shape)]} for op in ops]
    out = {"model": spec.name, "params_total": pc.total, "params_active": pc.active, "matmul_params": n,
           "training_flops_per_token": train_tok, "six_n": 6 * n, "attention_flops_per_token": train_tok - 6 * n,
           "training_flops_per_step": train_tok * batch * seq_len, "prefill_flops_per_gpu": prefill,
           "decode_step_flops_per_gpu": decode, "layer_forward_ops": op_rows, "seq_len": seq_len, "batch": batch,
           "context": context, "tp": tp}
    if as_json:
        return emit_json(out)
    console.print(table(f"{spec.name}: FLOPs (seq_len={seq_len}, batch={batch}, tp={tp})", ["quantity", "value"], [
        ["matmul parameters N", f"{n:.4g}"], ["training FLOPs/token (6N + attention)", f"{train_tok:.4g}"],
        ["  6N", f"{6 * n:.4g}"], ["  attention QK^T and PV (12 l s q for GPT)", f"{train_tok - 6 * n:.4g}"],
        ["training FLOPs per step", f"{train_tok * batch * seq_len:.4g}"],
        ["prefill FLOPs per GPU", f"{prefill:.4g}"], [f"decode step FLOPs per GPU (context {context})", f"{decode:.4g}"]]))
    console.print(table("One layer, forward, per GPU", ["op", "kind", "GFLOP", "MB read", "MB written"],
                        [[r["name"], r["kind"], r["flops"] / 1e9, r["bytes_read"] / 1e6, r["bytes_written"] / 1e6]
                         for r in op_rows]))
    return None


__all__ = ["flops", "memory_app"]
