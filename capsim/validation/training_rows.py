"""What a training validation row states beyond its layout: the model (its shape columns over the catalog's
architecture of the named model), the mixture-of-experts and FSDP columns of today's runs, the precision recipe the
row's release runs, the pipeline split its flags state, and the calibration of its accelerator.

Columns a file may leave out entirely (the 2021-22 file has none of them): ``head_dim``, ``experts``, ``top_k``,
``moe_ffn_hidden``, ``ep``, ``fsdp``, ``flags``, ``inter_node_gb_per_s`` (the run's network: GB/s per GPU between
nodes, where the source states a network other than the accelerator's usual one). Where present, every one is read.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from capsim.analytic.training import Framework, Release
from capsim.analytic.training.release import FrameworkFamily, PipelineSplit
from capsim.calibration import calibration_name
from capsim.errors import SpecError
from capsim.specs.catalog import get_model
from capsim.specs.hardware import Accelerator, Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import (
    LayerSplit,
    default_uneven,
    even,
    first_last_uneven,
    megatron,
    parse_layout,
)
from capsim.specs.precision import Precision
from capsim.validation.harness import LINE, DataError

# Megatron-Core's flags that state an uneven split by values no fixed table lists (transformer_config.py
# num_layers_in_first/last_pipeline_stage, pipeline_model_parallel_layout): flag -> the layout key it sets.
SPLIT_FLAGS = {"--decoder-first-pipeline-num-layers": "first_stage_layers",
               "--decoder-last-pipeline-num-layers": "last_stage_layers",
               "--pipeline-model-parallel-layout": "pipeline_layout"}
OPTIONAL = ("head_dim", "experts", "top_k", "moe_ffn_hidden", "ep", "fsdp", "flags", "inter_node_gb_per_s")


def cell_int(r: dict[str, str], column: str) -> int | None:
    """An integer cell; None when blank or absent from the file; a DataError naming the line when malformed."""
    text = (r.get(column) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise DataError(column, f"line {r.get(LINE, '?')}: {text!r} is not an integer", "give a whole number") from None


def _base_model(name: str) -> ModelSpec | None:
    """The catalog's model of this name (its norm, positions, biases, tied embeddings), or None."""
    try:
        return get_model(name)
    except SpecError:
        return None


def row_model(r: dict[str, str]) -> ModelSpec:
    """The model a row describes: its own shape columns, over the catalog's architecture of the model it names (or
    GPT-style defaults where the catalog does not know it). MoE rows state experts, top_k and the experts' width."""
    experts, top_k, moe_ffn = cell_int(r, "experts"), cell_int(r, "top_k"), cell_int(r, "moe_ffn_hidden")
    if (experts is None) != (moe_ffn is None) or (top_k is not None and experts is None):
        raise DataError("experts", f"line {r.get(LINE, '?')}: experts, top_k and moe_ffn_hidden go together",
                        "give all three for an MoE row, none for a dense one")
    shape = {"name": r["model"], "hidden": cell_int(r, "hidden") or 0, "layers": cell_int(r, "layers") or 0,
             "heads": cell_int(r, "heads") or 0, "kv_heads": cell_int(r, "kv_heads"),
             "head_dim": cell_int(r, "head_dim"), "mlp": r["mlp"] or "gelu", "vocab": cell_int(r, "vocab") or 0,
             "ffn_hidden": moe_ffn if experts else cell_int(r, "ffn_hidden"), "experts": experts or 1,
             "top_k": top_k or 1}
    base = _base_model(r["model"])
    if base is None:
        return ModelSpec(**shape, max_seq=cell_int(r, "seq") or 0)
    keep = {"max_seq": max(base.max_seq, cell_int(r, "seq") or 0), "aliases": ()}
    if not experts:  # a dense row of an MoE name, or the reverse, is the row's shape
        keep.update(dense_layers=(), dense_ffn_hidden=None, shared_experts=0, shared_ffn_hidden=None,
                    shared_expert_gate=False, router_bias=False)
    elif base.experts != experts:
        keep.update(dense_layers=(), dense_ffn_hidden=None)
    return replace(base, **shape, **keep)


def split_flags(flags: str, release: Release, line: object = "?") -> tuple[str, dict[str, object]]:
    """The row's flags less the ones that state an uneven split (``SPLIT_FLAGS``), and the layout keys they set.
    A Megatron-Core release takes --decoder-first/last-pipeline-num-layers where it splits unevenly at all (its
    ``uneven_pipeline`` citation: the flag from core 0.9), and --pipeline-model-parallel-layout where that
    citation names it (core 0.13 on); anywhere else the flag stays for ``Release.configure`` to reject."""
    uneven = release.framework.uneven_pipeline and release.family is FrameworkFamily.MEGATRON_CORE
    has_layout = bool(re.search(r"pipeline[-_]model[-_]parallel[-_]layout", release.cite.get("uneven_pipeline", "")))
    rest, stated = [], {}
    for token in flags.split():
        name, _, value = token.partition("=")
        key = SPLIT_FLAGS.get(name)
        if key == "pipeline_layout" and uneven and not has_layout:
            raise DataError("flags", f"line {line}: {release.name} has no {name} (Megatron-Core has it from 0.13.0: "
                            "ML@core_v0.13.0 training/arguments.py L2266)",
                            "state the split with --decoder-first/last-pipeline-num-layers, or name a later release")
        if key is None or not uneven:
            rest.append(token)
            continue
        if key == "pipeline_layout":
            stated[key] = value.strip("'\"")
            continue
        try:
            stated[key] = int(value)
        except ValueError:
            raise DataError("flags", f"line {line}: {token!r} needs a layer count", f"write {name}=N") from None
    return " ".join(rest), stated


def stated_split(model: ModelSpec, pp: int, v: int, layout: dict[str, object]) -> LayerSplit | None:
    """The split the row's split flags (``SPLIT_FLAGS`` and the account-for-embedding/loss ones) state for ``pp``
    stages of ``v`` chunks (None: they state none, or none for this pp and v); a layout string that does not place
    the model's layers is an error."""
    text = layout.get("pipeline_layout")
    if text:
        split = parse_layout(str(text), pp)
        if split.total != model.total_layers:
            raise SpecError("flags", f"--pipeline-model-parallel-layout places {split.total} decoder layers, "
                            f"the model has {model.total_layers}", "give one 't' per layer")
        return split if split.v == v else None
    first, last = layout.get("first_stage_layers"), layout.get("last_stage_layers")
    emb, loss = bool(layout.get("account_for_embedding")), bool(layout.get("account_for_loss"))
    if first is None and last is None and not (emb or loss):
        return None
    try:
        return megatron(model.total_layers, pp, v, first, last, embedding=emb, loss=loss)  # type: ignore[arg-type]
    except SpecError:
        return None


def row_ep(r: dict[str, str]) -> int:
    return cell_int(r, "ep") or 1


def check_fsdp(r: dict[str, str], fw: Framework, dp: int, cp: int) -> int | None:
    """The row's ``fsdp`` sharding group (None when blank): ZeRO/FSDP sharding by a release that has it, over the
    whole dp x cp or (hybrid sharding) a divisor of it, whose shards are replicated over the rest."""
    group = cell_int(r, "fsdp")
    if group is None:
        return None
    line = f"line {r.get(LINE, '?')}"
    if not fw.zero:
        hint = ("state Megatron-FSDP in flags (--use-megatron-fsdp --data-parallel-sharding-strategy=..., from "
                "Megatron-Core 0.14; --use-custom-fsdp from 0.12) on a release that has it, or leave fsdp blank for "
                "the distributed optimizer" if fw.distributed_optimizer else "leave fsdp blank, or name an FSDP release")
        raise DataError("fsdp", f"{line}: {fw.name} as the row's flags configure it has no FSDP sharding", hint)
    if group <= 0 or (dp * cp) % group:
        raise DataError("fsdp", f"{line}: a sharding group of {group} does not divide dp x cp = {dp * cp}",
                        f"give a divisor of {dp * cp} (dp x cp itself when not hybrid)")
    return group


def row_cluster(r: dict[str, str], acc: Accelerator) -> Cluster:
    """The row's GPUs in the accelerator's usual nodes, on the network the row states (``inter_node_gb_per_s``,
    GB/s per GPU) or the catalog's."""
    text = (r.get("inter_node_gb_per_s") or "").strip()
    if not text:
        return Cluster(acc, int(r["gpus"]))
    try:
        gbps = float(text)
    except ValueError:
        gbps = float("nan")
    if not np.isfinite(gbps) or gbps <= 0:
        raise DataError("inter_node_gb_per_s", f"line {r.get(LINE, '?')}: {text!r} is not a positive number",
                        "give the run's inter-node GB/s per GPU, or leave it blank for the catalog's")
    return Cluster(acc, int(r["gpus"]), inter_node_bw_bytes_per_s=gbps * 1e9)


def row_precision(r: dict[str, str], fw: Framework) -> Precision:
    """The row's precision preset as its release runs it (``Framework.run_precision``, the precision rule of
    ``as_released``; the row's flags configured ``fw``)."""
    return fw.run_precision(Precision.preset(r["precision"]))


def row_split(model: ModelSpec, pp: int, v: int, layout: dict[str, object], fw: Framework | None = None
              ) -> LayerSplit:
    """The split a row runs: Megatron-Core's even split, the embedding/loss counted as layers where its flags
    say so, or the release's own uneven split (``Framework.pipeline_split``: NeMo AutoModel's front-loaded one);
    an uneven split neither the row nor its release states is an error."""
    if layout.get("pipeline_layout") or layout.get("first_stage_layers") or layout.get("last_stage_layers"):
        split = stated_split(model, pp, v, layout)
        if split is None:  # megatron() says why
            first, last = layout.get("first_stage_layers"), layout.get("last_stage_layers")
            if layout.get("pipeline_layout"):
                raise SpecError("pp_interleave", f"--pipeline-model-parallel-layout gives "
                                f"{parse_layout(str(layout['pipeline_layout']), pp).v} chunks per stage, the row v={v}",
                                "make pp_interleave match the layout (or leave it blank)")
            return megatron(model.total_layers, pp, v, first, last)  # type: ignore[arg-type]
        return split
    emb, loss = bool(layout.get("account_for_embedding")), bool(layout.get("account_for_loss"))
    if emb or loss:
        return megatron(model.total_layers, pp, v, embedding=emb, loss=loss)
    own = fw.split(model.total_layers, pp, v) if fw is not None and fw.pipeline_split is not PipelineSplit.MEGATRON \
        else None
    if own is not None:
        return own
    if model.total_layers % (pp * v):
        raise SpecError("pp", f"pp x pp_interleave = {pp * v} does not divide the {model.total_layers} layers and "
                        "the row states no layer split", "state the run's split (e.g. its recipe's "
                        "--account-for-embedding/loss-in-pipeline-split flags)")
    return even(model.total_layers, pp, v)


def unstated_splits(model: ModelSpec, pp: int, v: int, release: Release, fw: Framework) -> list[dict[str, object]]:
    """The splits a Megatron-Core run could have stated where pp x v does not divide the layers and the row states
    none (Megatron-Core asserts divisibility unless told: transformer_config.py __post_init__): the embedding and
    the loss counted as layers, together or alone, where the release has the flags (core 0.11 on), and
    --decoder-first/last-pipeline-num-layers at the lightest heaviest stage (``first_last_uneven``). The first is
    the one default_uneven prefers (the embedding and loss counted, as Megatron-Bridge's 405B recipe states; else
    the first/last counts); empty where the release splits no layers unevenly, splits them its own way, or
    Megatron-Core accepts none of these."""
    layers = model.total_layers
    if layers % (pp * v) == 0 or pp == 1 or not fw.uneven_pipeline or \
            release.family is not FrameworkFamily.MEGATRON_CORE or fw.pipeline_split is not PipelineSplit.MEGATRON:
        return []
    out: list[dict[str, object]] = []
    if "--account-for-embedding-in-pipeline-split" in release.flags:
        for emb, loss in ((True, True), (True, False), (False, True)):
            try:
                megatron(layers, pp, v, embedding=emb, loss=loss)
            except SpecError:
                continue
            out.append({"account_for_embedding": emb, "account_for_loss": loss})
    ends = first_last_uneven(layers, pp, v)
    if ends is not None:
        out.append({"first_stage_layers": ends.first, "last_stage_layers": ends.last})
    chosen = default_uneven(layers, pp, v)
    return sorted(out, key=lambda c: chosen is None or stated_split(model, pp, v, c) != chosen)


def split_flags_text(split: dict[str, object]) -> str:
    """A split's settings as the Megatron-Core flags that state it."""
    return " ".join(f"--account-for-{k[12:]}-in-pipeline-split" if isinstance(x, bool) else
                    f"--decoder-{k.split('_')[0]}-pipeline-num-layers={x}" for k, x in split.items() if x)


def row_calibration(calibration: str | None, gpu: str) -> str | None:
    """The calibration a row is priced with: ``profile`` picks the accelerator's profile calibration where one
    ships (else its datasheet), ``datasheet`` the accelerator's datasheet calibration (named as the accelerator);
    any other name is used as given, and none follows the one default rule."""
    return None if calibration is None else calibration_name(gpu, calibration)


__all__ = ["OPTIONAL", "SPLIT_FLAGS", "cell_int", "check_fsdp", "row_calibration", "row_cluster", "row_ep", "row_model",
           "row_precision", "row_split", "split_flags", "split_flags_text", "stated_split",
           "unstated_splits"]
