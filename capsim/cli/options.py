"""Option types shared by the commands that take a model, an accelerator and a layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.hf import from_hf_config
from capsim.specs.model import ModelSpec
from capsim.specs.plans import Recompute, ServePlan, TrainPlan
from capsim.specs.precision import Precision

Model = Annotated[str, typer.Option("--model", "-m", help="Catalog model name or alias (see `capsim catalog models`).")]
HfConfig = Annotated[Path | None, typer.Option("--hf-config", help="A local Hugging Face config.json instead of --model.")]
Accel = Annotated[str, typer.Option("--accelerator", "-a", help="Catalog accelerator (see `capsim catalog accelerators`).")]
Price = Annotated[float | None, typer.Option("--price", help="USD per GPU-hour; overrides the catalog price.", min=0)]
Gpus = Annotated[int | None, typer.Option("--gpus", "-n", help="GPUs in the job; checked against dp*tp*pp*cp.", min=1)]
Dp = Annotated[int, typer.Option("--dp", help="Data-parallel replicas.", min=1)]
Tp = Annotated[int, typer.Option("--tp", help="Tensor-parallel width.", min=1)]
Pp = Annotated[int, typer.Option("--pp", help="Pipeline stages.", min=1)]
V = Annotated[int, typer.Option("--pp-interleave", "-v", help="Model chunks per stage (interleaved 1F1B).", min=1)]
Cp = Annotated[int, typer.Option("--cp", help="Context-parallel ranks.", min=1)]
Ep = Annotated[int, typer.Option("--ep", help="Expert-parallel ranks (MoE).", min=1)]
Sp = Annotated[bool, typer.Option("--sp/--no-sp", help="Sequence parallelism over the TP group.")]
Zero = Annotated[int, typer.Option("--zero", help="ZeRO stage 0-3.", min=0, max=3)]
DistOpt = Annotated[bool, typer.Option("--distributed-optimizer", help="Megatron's distributed optimizer (ZeRO-1).")]
Rec = Annotated[Recompute, typer.Option("--recompute", help="Activation recomputation.")]
Mb = Annotated[int, typer.Option("--micro-batch", help="Sequences per micro-batch.", min=1)]
Gb = Annotated[int, typer.Option("--global-batch", help="Sequences per optimizer step.", min=1)]
Seq = Annotated[int, typer.Option("--seq-len", help="Tokens per sequence.", min=1)]
Prec = Annotated[str, typer.Option("--precision", help="fp32, tf32, fp16, bf16, fp8 or fp16-zero.")]
MaxEvents = Annotated[float, typer.Option("--max-events", help="Refuse a serving simulation estimated to take more "
                                                               "events (about requests x (prompt steps + 3)) or more "
                                                               "memory than that many events allow (350 bytes each).",
                                           min=1)]


def resolve_model(model: str | None, hf_config: Path | None = None) -> ModelSpec:
    if hf_config is not None:
        return from_hf_config(hf_config)
    if not model:
        from capsim.errors import SpecError
        raise SpecError("--model", "no model given", "pass --model NAME or --hf-config PATH")
    return get_model(model)


def train_plan(dp: int, tp: int, pp: int, v: int, cp: int, ep: int, sp: bool, zero: int, dist_opt: bool,
               recompute: Recompute, micro_batch: int, global_batch: int | None, seq_len: int,
               precision: str) -> TrainPlan:
    gb = global_batch if global_batch is not None else dp * micro_batch * max(pp, 1)
    return TrainPlan(dp=dp, tp=tp, pp=pp, pp_interleave=v, cp=cp, ep=ep, sequence_parallel=sp, zero_stage=zero,
                     distributed_optimizer=dist_opt, recompute=recompute, micro_batch=micro_batch, global_batch=gb,
                     seq_len=seq_len, precision=Precision.preset(precision))


__all__ = ["ServePlan", "get_accelerator", "resolve_model", "train_plan"]
