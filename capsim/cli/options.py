"""Option types shared by the commands, and the validators every command's input goes through.

Every number a user types is checked where it enters: floats must be finite (``inf`` and ``nan`` are errors), and
integers have a ceiling (:data:`MAX_INT`) so a typo cannot overflow a C long deep in numpy. :func:`harden` applies
both to every option of the app, including options added later, so no command can forget them. Comma lists and
``NAME=VALUE`` pairs are parsed by :func:`floats`, :func:`ints` and :func:`pairs`, which name the option at fault,
and :func:`inapplicable` turns an option that does not apply to the chosen mode into an error instead of ignoring it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

try:  # typer >= 0.2x runs on its own copy of Click
    from typer._click import exceptions as click_exceptions
    from typer._click.globals import get_current_context
except ImportError:  # older typer runs on Click
    from click import exceptions as click_exceptions
    from click import get_current_context

from capsim.analytic.training.framework import ALIASES, FrameworkName
from capsim.calibration import is_rule, load_calibration
from capsim.errors import SpecError
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.hf import from_hf_config
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import parse_stage_list
from capsim.specs.plans import Recompute, ServePlan, TrainPlan
from capsim.specs.precision import PRESET_NAMES, Precision

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
Etp = Annotated[int | None, typer.Option("--etp", help="Tensor-parallel width of the routed experts (MoE; default: "
                                         "tp, Megatron-Core's --expert-tensor-parallel-size).", min=1)]
Flags = Annotated[str, typer.Option("--flags", help="The framework release's flags the run uses, e.g. "
                                    "'--tp-comm-overlap --overlap-grad-reduce' (capsim lists the known ones).")]
SpRelease = Annotated[bool, typer.Option("--sp/--no-sp", show_default=False, help=(
    "Sequence parallelism over the TP group (default: the framework release's: off, except torchtitan's, whose TP "
    "always shards the sequence too)."))]
Zero = Annotated[int, typer.Option("--zero", help="ZeRO stage 0-3.", min=0, max=3)]
FsdpGroup = Annotated[int | None, typer.Option("--fsdp-group", help="ZeRO/FSDP sharding group: shard over this many "
                                                "of the dp x cp ranks and replicate over the rest (hybrid sharding, "
                                                "HSDP; default: all of dp x cp). Needs --zero 1-3 and a release "
                                                "with hybrid sharding (capsim.analytic.training.hybrid).", min=1)]
DistOpt = Annotated[bool, typer.Option("--distributed-optimizer", help="Megatron's distributed optimizer (ZeRO-1).")]
Rec = Annotated[Recompute, typer.Option("--recompute", help="Activation recomputation.")]
Mb = Annotated[int, typer.Option("--micro-batch", help="Sequences per micro-batch.", min=1)]
Gb = Annotated[int, typer.Option("--global-batch", help="Sequences per optimizer step.", min=1)]
Seq = Annotated[int, typer.Option("--seq-len", help="Tokens per sequence.", min=1)]
SamplingOpt = Annotated[str, typer.Option("--sampling", help="Requests' sampling: greedy (temperature 0), random "
                                                          "(temperature > 0; vLLM's default), top-k, top-p; add "
                                                          "+penalties for repetition/frequency/presence penalties.")]
PlanRequests = Annotated[int | None, typer.Option("--requests", help="A fixed number of requests per confirming "
                                                 "simulation (default: adaptive, see --precision).", min=20)]
PlanPrecision = Annotated[float, typer.Option("--precision", help="Confirming simulations run until the 95% confidence "
                                              "intervals of each SLO statistic and of the cost per token are within "
                                              "this fraction of the target and of the cost (or 16,000 requests).",
                                              min=0.005, max=0.5)]
Prec = Annotated[str, typer.Option("--precision", help=f"{', '.join(PRESET_NAMES)} (mxfp8 and nvfp4 need a "
                                                        "Blackwell accelerator).")]
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


MAX_INT = 2**31 - 1  # no count capsim models (GPUs, tokens per sequence, requests, batch) comes near this


def _checked_value(value: Any, flag: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(flag, f"{value} is not a finite number", "give a finite value")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise SpecError(flag, f"{value} is beyond {MAX_INT}", "give a realistic value")
    if isinstance(value, (list, tuple)):
        for item in value:
            _checked_value(item, flag)


def _checked(callback: Callable[..., Any], flags: dict[str, str]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(**kwargs: Any) -> Any:
        for name, value in kwargs.items():
            _checked_value(value, flags.get(name, name))
        if isinstance(kwargs.get("calibration"), str) and not is_rule(kwargs["calibration"]):  # read once up front: a bad file is an input error here,
            load_calibration(kwargs["calibration"])    # not a reason repeated on every row of a study
        return callback(**kwargs)

    return run


def harden(command: Any) -> None:
    """Check every option of ``command`` and its subcommands before the command runs: floats must be finite
    (``inf`` and ``nan`` pass every ``min=`` bound), integers at most :data:`MAX_INT` in size, and a
    ``--calibration`` must load."""
    if getattr(command, "_capsim_hardened", False):
        return
    command._capsim_hardened = True
    if command.callback is not None:
        flags = {p.name: max(p.opts, key=len) if p.opts else p.name for p in command.params}
        command.callback = _checked(command.callback, flags)
    for sub in getattr(command, "commands", {}).values():
        harden(sub)


def given(name: str) -> bool:
    """Whether the user set the parameter ``name`` (its Python name) on the command line or in the environment."""
    ctx = get_current_context(silent=True)
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def inapplicable(rules: Iterable[tuple[str, bool, str]]) -> None:
    """Refuse options that do not apply: each rule is (parameter name, whether it applies, when it does)."""
    for name, applies, when in rules:
        if given(name) and not applies:
            raise SpecError(_flag(name), f"does not apply here: it is used only {when}", f"drop {_flag(name)}")


def _flag(name: str) -> str:
    ctx = get_current_context(silent=True)
    for param in ctx.command.params if ctx is not None else ():
        if param.name == name and param.opts:
            return max(param.opts, key=len)
    return "--" + name.replace("_", "-")


def _number(text: str, field: str, kind: Callable[[str], Any], low: float | None, low_open: bool,
            example: str) -> Any:
    word = "an integer" if kind is int else "a number"
    try:
        value = kind(text.strip())
    except ValueError:
        raise SpecError(field, f"{text.strip()!r} is not {word}", f"write e.g. {example}") from None
    if not math.isfinite(value):
        raise SpecError(field, f"{text.strip()!r} is not a finite number", "give a finite value")
    if kind is int and abs(value) > MAX_INT:
        raise SpecError(field, f"{value} is beyond {MAX_INT}", "give a realistic value")
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(field, f"{value:g} must be {'>' if low_open else '>='} {low:g}")
    return value


def floats(text: str, field: str, low: float | None = 0.0, low_open: bool = True) -> tuple[float, ...]:
    """A comma-separated list of finite numbers (by default each > 0), e.g. ``--rates 1,10,100``."""
    items = text.split(",")
    if not text.strip() or any(not t.strip() for t in items):
        raise SpecError(field, f"{text!r} has an empty entry", f"write a comma-separated list, e.g. {field} 1,2,4")
    return tuple(float(_number(t, field, float, low, low_open, f"{field} 1,2,4")) for t in items)


def ints(text: str, field: str, low: int = 1) -> tuple[int, ...]:
    """A comma-separated list of integers (by default each >= 1), e.g. ``--gpus 8,64,512``."""
    items = text.split(",")
    if not text.strip() or any(not t.strip() for t in items):
        raise SpecError(field, f"{text!r} has an empty entry", f"write a comma-separated list, e.g. {field} 8,64")
    return tuple(int(_number(t, field, int, low, False, f"{field} 8,64")) for t in items)


def names(text: str, field: str, choices: Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list of names, each one of ``choices`` (e.g. ``--quantizations none,int8``)."""
    allowed = list(choices)
    items = tuple(t.strip() for t in text.split(","))
    for item in items:
        if item not in allowed:
            raise SpecError(field, f"{item!r} is not one of {', '.join(allowed)}",
                            f"write a comma-separated list, e.g. {field} {','.join(allowed[:2])}")
    return items


def pairs(values: Iterable[str], field: str, canonical: Callable[[str], str], kind: Callable[[str], Any] = float,
          low: float = 0.0, low_open: bool = False) -> dict[str, Any]:
    """``NAME=VALUE`` options (e.g. ``--price h100=3.5``): each name resolved by ``canonical`` (an unknown name is an
    error), each value a finite number of ``kind`` (an integer option refuses ``2.5``) of at least ``low``."""
    out: dict[str, Any] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SpecError(field, f"{item!r} is not NAME=VALUE", f"write e.g. {field} h100=4")
        try:
            key = canonical(name.strip())
        except SpecError as err:
            raise SpecError(field, err.problem, err.fix) from None
        if key in out:
            raise SpecError(field, f"{key} is given twice", "give each name once")
        out[key] = _number(value, f"{field} {name.strip()}", kind, low, low_open, f"{field} {name.strip()}=4")
    return out


def resolve_model(model: str | None, hf_config: Path | None = None) -> ModelSpec:
    if hf_config is not None:
        if model:
            raise SpecError("--hf-config", f"both --model {model} and --hf-config {hf_config} name the model",
                            "give one of them")
        return from_hf_config(hf_config)
    if not model:
        raise SpecError("--model", "no model given", "pass --model NAME or --hf-config PATH")
    return get_model(model)


def within_context(spec: ModelSpec, tokens: int, field: str) -> int:
    """``tokens``, refused if longer than the model's context (its config's max_position_embeddings)."""
    if tokens > spec.max_seq:
        raise SpecError(field, f"{tokens} tokens exceed {spec.name}'s context of {spec.max_seq}",
                        f"use {field} <= {spec.max_seq}, or a config with a longer max_position_embeddings")
    return tokens


def check_fsdp_group(group: int | None, dp: int, cp: int, zero: int, distributed_optimizer: bool) -> None:
    """--fsdp-group must divide dp x cp and needs something sharded (--zero 1-3 or --distributed-optimizer)."""
    if group is None:
        return
    if (dp * cp) % group:
        raise SpecError("--fsdp-group", f"{group} does not divide dp x cp = {dp} x {cp} = {dp * cp}",
                        f"use a divisor of {dp * cp}")
    if not (zero or distributed_optimizer):
        raise SpecError("--fsdp-group", "a hybrid sharding group needs sharding", "add --zero 1-3")


@contextmanager
def fsdp_group_errors() -> Iterator[None]:
    """A search's error about the sharding group (the ``shard`` field) as one naming --fsdp-group."""
    try:
        yield
    except SpecError as err:
        if err.field != "shard":
            raise
        raise SpecError("--fsdp-group", err.problem, err.fix) from None


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
               precision: str, split: dict[str, object] | None = None, etp: int | None = None,
               shard_group: int | None = None) -> TrainPlan:
    gb = global_batch if global_batch is not None else dp * micro_batch * max(pp, 1)
    return TrainPlan(dp=dp, tp=tp, pp=pp, pp_interleave=v, cp=cp, ep=ep, etp=etp, sequence_parallel=sp, zero_stage=zero,
                     distributed_optimizer=dist_opt, recompute=recompute, micro_batch=micro_batch, global_batch=gb,
                     seq_len=seq_len, precision=Precision.preset(precision), shard_group=shard_group, **(split or {}))


__all__ = ["ServePlan", "click_exceptions", "get_accelerator", "infer_dp", "resolve_model", "split_options",
           "train_plan", "within_context"]


def framework_name(text: str | FrameworkName) -> FrameworkName:
    """A ``--framework`` value: a preset's name, or a release one covers as validation rows name it in their
    ``software`` column (``deepspeed-0.15.1``, ``megatron-core-0.15.0``, ``pytorch-2.3``)."""
    if isinstance(text, FrameworkName):
        return text
    key = str(text).strip().lower()
    try:
        return ALIASES.get(key) or FrameworkName(key)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(repr(f.value) for f in FrameworkName)}, nor a "
                                 "release one of them covers") from None


FrameworkOpt = Annotated[FrameworkName, typer.Option("--framework", parser=framework_name,
                                                     help="Which framework release's overlap and kernel facts to "
                                                          "assume: a preset, or a release one covers.")]
