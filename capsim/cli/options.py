"""Option types shared by the commands that take a model, an accelerator and a layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.hf import from_hf_config
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import parse_stage_list
from capsim.specs.plans import Recompute, ServePlan, TrainPlan
from capsim.specs.precision import Precision

Model = Annotated[str, typer.Option("--model", "-m", help="Catalog model name or alias (see `capsim catalog models`).")]
HfConfig = Annotated[Path | None, typer.Option("--hf-config", help="A local Hugging Face config.json instead of --model.")]
Accel = Annotated[str, typer.Option("--accelerator", "-a", help="Catalog accelerator (see `capsim catalog accelerators`).")]
Price = Annotated[float | None, typer.Option("--price", help="USD per GPU-hour; overrides the catalog price.", min=0)]
Gpus = Annotated[int | None, typer.Option("--gpus", "-n", help="GPUs in the job; checked against dp*tp*pp*cp.", min=1)]
Dp = Annotated[int | None, typer.Option("--dp", help="Data-parallel replicas (default: gpus / (tp*pp*cp), as "
                                                    "every framework derives it; 1 without --gpus).", min=1)]
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
# An uneven pipeline, stated one of Megatron-Core's ways (at most one).
StageSplit = Annotated[str | None, typer.Option("--layer-split", help="Layers per pipeline stage, e.g. 7,8,...,7 "
                                                "('...' repeats the count before it up to pp stages; 8*14 repeats "
                                                "too).")]
Layout = Annotated[str | None, typer.Option("--pipeline-layout", "--pipeline-model-parallel-layout",
                                            help="Megatron-Core's layout string: stages split by '|', E embedding, "
                                                 "t layer, L loss, e.g. 'Et*7|(t*8|)*14,t*7L' (sets -v).")]
FirstLayers = Annotated[int | None, typer.Option("--decoder-first-pipeline-num-layers", min=1,
                                                 help="Layers on the first stage; the rest split evenly.")]
LastLayers = Annotated[int | None, typer.Option("--decoder-last-pipeline-num-layers", min=1,
                                                help="Layers on the last stage; the rest split evenly.")]
AccountEmbedding = Annotated[bool, typer.Option("--account-for-embedding-in-pipeline-split",
                                                help="Count the embedding as a layer when splitting.")]
AccountLoss = Annotated[bool, typer.Option("--account-for-loss-in-pipeline-split",
                                           help="Count the loss (LM head) as a layer when splitting.")]


def resolve_model(model: str | None, hf_config: Path | None = None) -> ModelSpec:
    if hf_config is not None:
        return from_hf_config(hf_config)
    if not model:
        raise SpecError("--model", "no model given", "pass --model NAME or --hf-config PATH")
    return get_model(model)


def infer_dp(dp: int | None, gpus: int | None, tp: int, pp: int, cp: int) -> int:
    """--dp as given, else gpus / (tp*pp*cp) (Megatron-LM and torchrun jobs derive it from the world size), else 1."""
    if dp is not None or gpus is None:
        return dp or 1
    model_parallel = tp * pp * cp
    if gpus % model_parallel:
        raise SpecError("--dp", f"--gpus {gpus} is not a multiple of tp*pp*cp = {tp}*{pp}*{cp} = {model_parallel}",
                        f"use --gpus a multiple of {model_parallel}, or change --tp/--pp/--cp")
    return gpus // model_parallel


def split_options(pp: int, layer_split: str | None = None, layout: str | None = None, first: int | None = None,
                  last: int | None = None, embedding: bool = False, loss: bool = False) -> dict[str, object]:
    """The TrainPlan fields of the pipeline-split options that were given."""
    out: dict[str, object] = {}
    if layer_split is not None:
        out["layer_split"] = parse_stage_list(layer_split, pp)
    if layout is not None:
        out["pipeline_layout"] = layout
    if first is not None or last is not None:
        out.update(first_stage_layers=first, last_stage_layers=last)
    if embedding or loss:
        out.update(account_for_embedding=embedding, account_for_loss=loss)
    return out


def train_plan(dp: int, tp: int, pp: int, v: int, cp: int, ep: int, sp: bool, zero: int, dist_opt: bool,
               recompute: Recompute, micro_batch: int, global_batch: int | None, seq_len: int,
               precision: str, split: dict[str, object] | None = None) -> TrainPlan:
    gb = global_batch if global_batch is not None else dp * micro_batch * max(pp, 1)
    return TrainPlan(dp=dp, tp=tp, pp=pp, pp_interleave=v, cp=cp, ep=ep, sequence_parallel=sp, zero_stage=zero,
                     distributed_optimizer=dist_opt, recompute=recompute, micro_batch=micro_batch, global_batch=gb,
                     seq_len=seq_len, precision=Precision.preset(precision), **(split or {}))


__all__ = ["ServePlan", "get_accelerator", "infer_dp", "resolve_model", "split_options", "train_plan"]
