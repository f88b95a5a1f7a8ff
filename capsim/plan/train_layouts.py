"""Search over training layouts: every structurally valid layout of a model on a cluster, priced at once by
``capsim.analytic.training.step_time``, ranked by step time.

Pipeline depths that do not divide the layers are searched too, each (pp, v) with the uneven split Megatron-Core
users state for it (``capsim.specs.pipeline_layout.default_uneven``: the embedding and loss counted as layers,
as in Megatron-Bridge's Llama-3.1-405B recipe, else balanced first/last stage counts); the split is a column.

Hybrid sharding (HSDP: the ZeRO/FSDP state sharded over a group of the dp x cp ranks, replicated over the rest) is
searched too: with a given group (``fixed={"shard": N}``) every other axis is searched around it, and for the
releases whose code has HSDP (``HYBRID_RELEASES``, each cited) the group is an axis of its own: the GPUs of a node and
the powers of two from 2 that divide dp x cp (``hybrid_groups``). The ``shard`` column is the sharding group
(dp x cp: not hybrid).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from capsim.analytic.layouts import Layouts, split_options
from capsim.analytic.training import (
    DEFAULT_FRAMEWORK,
    Framework,
    FrameworkName,
    StepTime,
    get_framework,
    step_time,
)
from capsim.analytic.training.hybrid import FSDP2_HYBRID
from capsim.analytic.training.release import PipelineSplit
from capsim.errors import SpecError, divisors
from capsim.perf import Perf
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import LayerSplit, default_uneven, parse_layout
from capsim.specs.plans import Recompute, TrainPlan
from capsim.specs.precision import Precision

# Fields a search may leave open, with the values it tries when they are (None = derived from the model/cluster).
SEARCH_AXES: dict[str, tuple[object, ...] | None] = {
    "tp": None, "pp": None, "v": None, "cp": None, "ep": (1,), "etp": (0,), "micro_batch": (1, 2, 4, 8, 16, 32),
    "recompute": (0, 1, 2), "sp": (False, True), "zero_stage": (0, 1, 2, 3), "distributed_optimizer": (False, True),
    "shard": (0,),  # the ZeRO/FSDP sharding group; 0: all of dp x cp (hybrid groups: ``hybrid_groups``)
}
COLUMNS = ("dp", "tp", "pp", "v", "cp", "ep", "etp", "micro_batch", "recompute", "sp", "zero_stage",
           "distributed_optimizer", "shard", "schedule")
# Releases whose hybrid sharding the search tries on its own: the FSDP2 ones whose code has it (cited in
# capsim.analytic.training.hybrid). Not torchtitan 1ea476e (2024-04: no data_parallel_replicate_degree yet), nor
# Megatron-Core / FSDP1 (their distributed-optimizer instances / HYBRID_SHARD group is a run's setting, --fsdp-group;
# priced when given), nor DeepSpeed (its hpZ/MiCS partitions are not read here; a group is refused).
HYBRID_RELEASES = dict(FSDP2_HYBRID)


def hybrid_groups(num_gpus: int, gpus_per_node: int) -> list[int]:
    """The sharding-group sizes a hybrid search tries: the powers of two from 2 and the GPUs of a node, below
    ``num_gpus`` (a layout keeps those that divide its dp x cp and are smaller than it)."""
    return sorted({1 << i for i in range(1, num_gpus.bit_length()) if 1 << i < num_gpus}
                  | ({gpus_per_node} if 1 < gpus_per_node < num_gpus else set()))


def searches_hybrid(framework: Framework | FrameworkName | str) -> bool:
    """Whether the search tries hybrid sharding groups for this release by itself (``HYBRID_RELEASES``)."""
    return (framework.name if isinstance(framework, Framework) else str(framework)) in HYBRID_RELEASES


def _axes(model: ModelSpec, num_gpus: int, gpus_per_node: int, fixed: Mapping[str, object],
          hybrid: bool = False) -> dict[str, list]:
    axes: dict[str, list] = {}
    tp_ok = [d for d in divisors(num_gpus) if d <= gpus_per_node and model.heads % d == 0
             and model.kv_heads % d == 0 and all(w % d == 0 for w in model.tp_widths.values())]
    # Every pp that divides the GPUs and leaves a layer per stage; v up to 8 (kept where a split exists).
    defaults = {"tp": tp_ok, "pp": [d for d in divisors(num_gpus) if d <= model.total_layers],
                "v": list(range(1, 9)), "cp": [d for d in (1, 2, 4, 8) if num_gpus % d == 0]}
    for name, values in SEARCH_AXES.items():
        given = fixed.get(name)
        axes[name] = [given] if given is not None else list(values if values is not None else defaults[name])
    if model.is_moe and fixed.get("ep") is None:
        axes["ep"] = [d for d in divisors(model.experts) if d <= num_gpus]
    if model.is_moe and fixed.get("etp") is None:
        axes["etp"] = [0, 1]  # 0: the experts split like the attention (etp = tp, Megatron-Core's default)
    if hybrid and fixed.get("shard") is None:
        axes["shard"] = [0, *hybrid_groups(num_gpus, gpus_per_node)]
    return axes


def framework_limits(framework: Framework | FrameworkName | str) -> dict[str, object]:
    """The axis values a framework cannot run, pinned (e.g. no sequence parallelism before Megatron-LM 2022)."""
    fw = get_framework(framework)
    pins: dict[str, object] = {}
    if not fw.sequence_parallel:
        pins["sp"] = False
    if not fw.distributed_optimizer:
        pins["distributed_optimizer"] = False
    if not fw.zero:
        pins["zero_stage"] = 0
    if not fw.context_parallel:
        pins["cp"] = 1
    return pins


def runs_pipeline(framework: Framework | FrameworkName | str, layers: int, pp: int, v: int) -> bool:
    """Whether the release can split ``layers`` over ``pp`` stages of ``v`` chunks at all: it interleaves only from
    its least pipeline depth (``interleave_min_pp``) and splits unevenly only if it has uneven pipelines."""
    fw = get_framework(framework)
    return (v == 1 or pp >= fw.interleave_min_pp) and (fw.uneven_pipeline or layers % (pp * v) == 0)


def layout_grid(model: ModelSpec, num_gpus: int, global_batch: int, seq_len: int, gpus_per_node: int,
                fixed: Mapping[str, object] | None = None,
                framework: Framework | FrameworkName | str | None = None, hybrid: bool = False,
                stated: Callable[[int, int], LayerSplit | None] | None = None) -> Layouts:
    """Every combination of the open axes (``fixed`` pins fields; None leaves them open) that can run; with a
    ``framework``, only the pipeline splits that release runs (``runs_pipeline``). ``hybrid``: try hybrid
    sharding groups (``hybrid_groups``) beside sharding over all of dp x cp, where ``fixed`` gives none.
    ``stated``: the split a run states for (pp, v) (None: it states none there), used instead of the default."""
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(SEARCH_AXES)
    if unknown:
        raise SpecError("fixed", f"unknown layout fields {sorted(unknown)}", f"use {', '.join(SEARCH_AXES)}")
    axes = _axes(model, num_gpus, gpus_per_node, fixed, hybrid)
    layers = model.total_layers
    pps, vs = axes.pop("pp"), axes.pop("v")
    fw = None if framework is None else get_framework(framework)
    # The split of each (pp, v) pair: the release's own (Framework.split), or Megatron-Core's options.
    splits = {(p, v): stated(p, v) if stated is not None else fw.split(layers, p, v) if fw is not None
              else default_uneven(layers, p, v) for p in pps for v in vs if v == 1 or p > 1}
    # One axis of the (pp, v) pairs that have a split (the others cannot run).
    axes["pp_v"] = [pv for pv, split in splits.items() if split and (fw is None or runs_pipeline(fw, layers, *pv))]
    if not axes["pp_v"]:
        by = "" if framework is None else f" that {get_framework(framework).name} runs"
        raise SpecError("plan.pp", f"no pipeline depth in {pps} with v in {vs} splits {model.name}'s {layers} "
                        f"layers{by}", "leave pp and pp_interleave open or pick another")
    index = np.indices([len(values) for values in axes.values()]).reshape(len(axes), -1)
    arr = {k: np.array(values, dtype=bool if k in ("sp", "distributed_optimizer") else np.int64)[index[i]]
           for i, (k, values) in enumerate(axes.items())}
    pairs = arr.pop("pp_v")
    arr["pp"], arr["v"] = pairs[:, 0], pairs[:, 1]
    arr["etp"] = np.where(arr["etp"] > 0, arr["etp"], arr["tp"])
    model_par = arr["tp"] * arr["pp"] * arr["cp"]
    arr["dp"] = np.where(num_gpus % model_par == 0, num_gpus // model_par, 0)
    per_replica = global_batch // np.maximum(arr["dp"], 1)
    m = per_replica // arr["micro_batch"]
    keep = ((arr["dp"] > 0) & (global_batch % np.maximum(arr["dp"] * arr["micro_batch"], 1) == 0)
            & ~(arr["sp"] & (arr["tp"] == 1)) & ~(arr["distributed_optimizer"] & (arr["zero_stage"] > 0))
            & ((arr["v"] == 1) | ((arr["pp"] > 1) & (m % arr["pp"] == 0)))
            & (seq_len % arr["cp"] == 0) & (arr["tp"] % arr["etp"] == 0)
            & ((arr["tp"] * arr["dp"] * arr["cp"]) % (arr["ep"] * arr["etp"]) == 0))
    if not np.any(keep):
        raise SpecError("plan", f"no layout of {model.name} fits {num_gpus} GPUs with global batch {global_batch}",
                        "change the GPU count or the global batch")
    keep = _keep_shard(arr, keep, fixed.get("shard"))
    arr = {k: v[keep] for k, v in arr.items()}
    chosen = None if stated is None and (fw is None or fw.pipeline_split is PipelineSplit.MEGATRON) else [
        splits[(int(p), int(v))] for p, v in zip(arr["pp"], arr["v"], strict=True)]
    return Layouts.build(model, splits=chosen, **arr, global_batch=global_batch, seq_len=seq_len,
                         schedule=np.where(arr["v"] > 1, 2, 1))


def _keep_shard(arr: dict[str, np.ndarray], keep: np.ndarray, given: object) -> np.ndarray:
    """``keep`` less the layouts whose sharding group cannot run: a group must divide dp x cp and shard something
    (ZeRO 1-3 or the distributed optimizer); a searched one must also be smaller than dp x cp (equal is the
    non-hybrid layout). A given group that no otherwise valid layout admits is an error."""
    dpcp, group = arr["dp"] * arr["cp"], arr["shard"]
    sharded = (arr["zero_stage"] > 0) | arr["distributed_optimizer"]
    fits = (dpcp % np.maximum(group, 1) == 0) & sharded & ((group < dpcp) | (given is not None))
    out = keep & ((group == 0) | fits)
    if given is not None and not np.any(out):
        sizes = sorted({int(x) for x in dpcp[keep & sharded]})
        raise SpecError("shard", f"a sharding group of {given} divides the dp x cp of no layout that shards its "
                        f"state (ZeRO 1-3 or the distributed optimizer; dp x cp here: {sizes or 'none'})",
                        "give a group that divides one of them" if sizes else "give no sharding group")
    return out


def rank_layouts(model: ModelSpec, cluster: Cluster, lay: Layouts, perf: Perf,
                 precision: Precision | None = None,
                 framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK) -> tuple[StepTime, np.ndarray]:
    """Price every layout; return the result and the indices of the feasible ones, fastest first."""
    result = step_time(model, lay, cluster, perf, precision, framework)
    ok = np.flatnonzero(np.asarray(result.feasible))
    return result, ok[np.argsort(np.asarray(result.step_s)[ok], kind="stable")]


def search_layouts(model: ModelSpec, cluster: Cluster, global_batch: int, seq_len: int, perf: Perf,
                   precision: Precision | None = None,
                   framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK,
                   fixed: Mapping[str, object] | None = None, top: int | None = 10,
                   hybrid: bool | None = None) -> pd.DataFrame:
    """The fastest feasible layouts as a DataFrame (layout columns, step time, MFU, memory), best first.
    ``hybrid``: search hybrid sharding groups (None: for the releases of ``HYBRID_RELEASES``); ``fixed["shard"]``
    pins one."""
    fw = get_framework(framework)
    fixed = {**framework_limits(fw), **{k: v for k, v in (fixed or {}).items() if v is not None}}
    hybrid = searches_hybrid(framework) if hybrid is None else hybrid
    lay = layout_grid(model, cluster.num_gpus, global_batch, seq_len, int(cluster.gpus_per_node), fixed, fw, hybrid)
    if (fw.attention.fused or not fw.selective_recompute) and fixed.get("recompute") is None:
        # flash attention keeps no s^2 tensors, so selective = none; older frameworks have no selective mode
        lay = lay.take(np.flatnonzero(lay.recompute != 1))
    result, order = rank_layouts(model, cluster, lay, perf, precision, framework)
    order = order if top is None else order[:top]
    frame = pd.DataFrame({k: np.asarray(getattr(lay, k))[order] for k in COLUMNS})
    frame["micro_batches"] = np.asarray(lay.micro_batches)[order]
    splits = [lay.layer_split(i) for i in order]
    frame["split"] = [sp.rule.value for sp in splits]
    frame["pipeline_layout"] = [sp.layout for sp in splits]
    for k in ("step_s", "mfu", "hfu", "tflops_per_gpu_model", "tokens_per_s", "memory_per_gpu_bytes"):
        frame[k] = np.asarray(getattr(result, k))[order]
    frame.attrs.update(calibration=result.calibration, framework=result.framework, evaluated=len(lay),
                       release_excluded=_release_excluded(model, fw, fixed, cluster.num_gpus), **_diagnostics(result))
    return frame


def _release_excluded(model: ModelSpec, fw: Framework, fixed: Mapping[str, object], num_gpus: int
                      ) -> list[tuple[int, int]]:
    """The (pp, v) splits of the model's layers the search left out because the release cannot run them."""
    pps = [fixed["pp"]] if fixed.get("pp") is not None else [d for d in divisors(num_gpus) if d <= model.total_layers]
    vs = [fixed["v"]] if fixed.get("v") is not None else range(1, 9)
    return [(int(p), int(v)) for p in pps for v in vs if (v == 1 or p > 1)
            and not runs_pipeline(fw, model.total_layers, int(p), int(v))
            and fw.split(model.total_layers, int(p), int(v)) is not None]


def _diagnostics(result: StepTime) -> dict[str, object]:
    """Why layouts were left out: how many could run at all (memory aside), the reasons of the others, and the
    least memory any runnable layout needs."""
    reason = np.asarray(result.reason, dtype=object)
    runnable = (reason == "") | (reason == "does not fit in memory")
    bad, counts = np.unique(reason[~runnable].astype(str), return_counts=True)
    memory = np.asarray(result.memory.total_bytes, float)[runnable]
    return {"runnable": int(runnable.sum()), "reasons": dict(zip(bad.tolist(), counts.tolist(), strict=True)),
            "min_memory_bytes": float(memory.min()) if memory.size else float("nan")}


def plan_of_row(row: Mapping[str, object], global_batch: int, seq_len: int, precision: Precision | None = None
                ) -> TrainPlan:
    """A search result row as a TrainPlan, its pipeline split stated the way the search chose it."""
    pp = int(row["pp"])
    chunks = parse_layout(str(row["pipeline_layout"]), pp).chunks if row.get("pipeline_layout") else None
    split = LayerSplit(chunks, str(row.get("split") or "even")) if chunks is not None else None
    dpcp, shard = int(row["dp"]) * int(row["cp"]), int(row.get("shard") or 0)
    return TrainPlan(dp=int(row["dp"]), tp=int(row["tp"]), pp=pp, pp_interleave=int(row["v"]), cp=int(row["cp"]),
                     shard_group=shard if 0 < shard != dpcp else None,
                     ep=int(row["ep"]), etp=int(row["etp"]) if int(row.get("etp", row["tp"])) != int(row["tp"]) else None,
                     sequence_parallel=bool(row["sp"]), zero_stage=int(row["zero_stage"]),
                     distributed_optimizer=bool(row["distributed_optimizer"]),
                     recompute=list(Recompute)[int(row["recompute"])], micro_batch=int(row["micro_batch"]),
                     global_batch=global_batch, seq_len=seq_len, precision=precision or Precision(),
                     **split_options(split))


__all__ = ["HYBRID_RELEASES", "SEARCH_AXES", "framework_limits", "hybrid_groups", "searches_hybrid", "layout_grid", "plan_of_row", "rank_layouts", "runs_pipeline",
           "search_layouts"]
