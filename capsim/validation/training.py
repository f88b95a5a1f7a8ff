"""``capsim validate training``: step times of published training runs, one calibration and one code path for
every row, each priced under the framework release its ``framework`` and ``software`` columns name (``flags``,
optional, are that release's command-line flags the run stated).

A blank micro_batch, pp_interleave, recompute, seq_parallel, zero_stage or cp is a setting the run did not
publish: it takes the release's documented default (``Release.defaults``, cited there), never the fastest value.
The row's note and ``band_low``/``band_high`` give the prediction's range over every plausible value of the blanks
(the values the release offers; feasible layouts only). Where the defaults cannot run (a layout beyond the GPU's
memory), the run used other plausible values: the row is priced at the feasible layout of the band's median
prediction, neither end of it, and its note says so; a row that no plausible value runs is not priced. A row that
states no flags at all also leaves open what flags set: whether the optimizer is sharded and the experts'
tensor-parallel size. A Megatron-Core row whose layers pp x pp_interleave does not divide and that states no split
ran one of the splits Megatron-Core accepts: it is priced at ``default_uneven``'s choice and banded over the others. An
accelerator whose source gives its peaks only as a range (``Accelerator.peaks_high``) is priced at the range's lower
end, and the band reaches the upper end's predictions. An FP8 row on a part whose FP8 GEMM rate is not its own published
one is priced by GEMM role at the kernels its recipe runs (GH100, per-tensor scaling: the forward at TE's cuBLASLt
ratio, timed with fast accumulation; dgrad and wgrad, which TE and torchao accumulate in FP32, at DeepGEMM's promoted-
accumulation ratio), and the band reaches every FP8 GEMM at each published FP8/BF16 ratio
(capsim.calibration.fp8.fp8_rates, band_ends); the note names the rates.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from capsim.analytic.flops import megatron_core_model_flops, megatron_iteration_flops
from capsim.analytic.layouts import Layouts
from capsim.analytic.training import Framework, Release, StepTime, release_for
from capsim.analytic.training.release import PER_REPLICA, PipelineSplit
from capsim.analytic.training.result import BREAKDOWN
from capsim.analytic.training.step import release_sp
from capsim.calibration import perf_for
from capsim.calibration.fp8 import band_ends, fp8_rates, rates_note, split_by_role
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.plan.train_layouts import framework_limits, layout_grid, rank_layouts
from capsim.specs.catalog import get_accelerator
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import parse_layout
from capsim.specs.precision import DType, Precision
from capsim.validation.harness import (
    LINE,
    DataError,
    Report,
    Row,
    attempt,
    check_metric,
    failed_row,
    measured_value,
    read_csv,
)
from capsim.validation.training_rows import (
    OPTIONAL,
    SPLIT_FLAGS,
    cell_int,
    check_fsdp,
    row_calibration,
    row_cluster,
    row_ep,
    row_model,
    row_precision,
    row_split,
    split_flags,
    split_flags_text,
    stated_split,
    unstated_splits,
)

REQUIRED = ("source", "model", "hidden", "layers", "heads", "kv_heads", "ffn_hidden", "mlp", "seq", "vocab", "gpu",
            "gpus", "tp", "pp", "pp_interleave", "cp", "dp", "zero_stage", "global_batch", "micro_batch", "recompute",
            "seq_parallel", "precision", "metric", "value", "framework", "software")
METRICS = {"tflops_per_gpu_hw": "TFLOP/s", "tflops_per_gpu_model": "TFLOP/s", "iteration_s": "s",
           "tokens_per_s_per_gpu": "tokens/s/GPU"}
# The shipped files ``capsim validate training`` runs without --file: the 2021-22 Megatron-LM runs, today's stacks,
# torchtitan's published runs, NeMo AutoModel's other FSDP2 runs, the Megatron-Bridge tables' other rows (H100/B200 FP8,
# then Blackwell), the gpt-oss runs of Megatron-Bridge and NeMo AutoModel, the DeepSpeed runs (BLOOM-176B's
# Megatron-DeepSpeed), the Megatron-LM README's H100 weak-scaling table (Megatron-Core 0.8) and NeMo's own tables'
# other rows (last).
SHIPPED = ("training_published.csv", "training_modern.csv", "training_torchtitan.csv", "training_fsdp2.csv",
           "training_bridge.csv", "training_bridge_blackwell.csv", "training_gptoss.csv", "training_deepspeed.csv",
           "training_megatron_readme.csv", "training_nemo.csv")
RECOMPUTE = {"none": 0, "selective": 1, "full": 2}
# The layout keys that state a pipeline split: the account-for-embedding/loss flags and ``SPLIT_FLAGS``'s.
SPLIT_KEYS = ("account_for_embedding", "account_for_loss", *SPLIT_FLAGS.values())
YES, NO = ("yes", "true", "1"), ("no", "false", "0")
# Layout setting -> the CSV column that publishes it (blank = unpublished).
COLUMNS = {"micro_batch": "micro_batch", "v": "pp_interleave", "recompute": "recompute", "sp": "seq_parallel",
           "zero_stage": "zero_stage", "cp": "cp"}


def _setting(r: dict[str, str], key: str) -> object:
    """The row's published value of one layout setting, or None where the column is blank."""
    column = COLUMNS[key]
    text = r[column].strip().lower()
    if key == "recompute":
        if text and text not in RECOMPUTE:
            raise DataError(column, f"line {r.get(LINE, '?')}: unknown value {text!r}",
                            "use none, selective, full or leave blank")
        return RECOMPUTE.get(text) if text else None
    if key == "sp":
        if text and text not in YES + NO:
            raise DataError(column, f"line {r.get(LINE, '?')}: unknown value {text!r}", "use yes, no or leave blank")
        return (text in YES) if text else None
    return cell_int(r, column)


def published_settings(r: dict[str, str]) -> dict[str, object]:
    """The row's layout settings by TrainPlan name (``COLUMNS``); None where the run did not publish one."""
    return {k: _setting(r, k) for k in COLUMNS}


def row_release(r: dict[str, str]) -> tuple[Release, Framework, dict[str, object]]:
    """The release a row names, its Framework under the row's flags, and the layout defaults (a DataError when the
    framework, release or a flag is blank or unknown)."""
    try:
        release = release_for(r["framework"], r["software"])
        flags, stated = split_flags(r.get("flags") or "", release, r.get(LINE, "?"))
        fw, defaults = release.configure(flags)
    except DataError:
        raise
    except SpecError as err:
        raise DataError(err.field, f"line {r.get(LINE, '?')}: {err.problem}", err.fix) from None
    defaults["recompute"] = RECOMPUTE[str(defaults["recompute"])]
    defaults.update(stated)
    pp = cell_int(r, "pp")
    if stated.get("pipeline_layout") and pp:  # the layout string gives the chunks per stage
        with contextlib.suppress(SpecError):  # else the row's split says why when it is priced
            defaults["v"] = parse_layout(str(stated["pipeline_layout"]), pp).v
    return release, fw, defaults


def with_dp(r: dict[str, str], cp: int) -> dict[str, str]:
    """The row with its dp, where blank, as every framework infers it: gpus / (tp x pp x cp)."""
    if cell_int(r, "dp") is not None:
        return r
    per = int(r["tp"]) * int(r["pp"]) * cp
    if int(r["gpus"]) % per:
        raise SpecError("dp", f"blank, and tp x pp x cp = {per} does not divide the {r['gpus']} GPUs",
                        "give the run's dp, or GPU and parallel sizes that divide")
    return {**r, "dp": str(int(r["gpus"]) // per)}


@dataclass(frozen=True)
class RowPrediction:
    """capsim's prediction for one published run, with the layout it priced and the band over its blanks."""

    value: float  # in the row's metric
    step_s: float
    memory_bytes: float  # per GPU, peak stage, by capsim's memory model
    capacity_bytes: float
    settings: dict[str, object]  # the unpublished settings, at the release's documented defaults
    band: tuple[float, float] | None  # least and greatest value over the blanks' plausible values (feasible only)
    note: str
    calibration: str


def _metric_values(r: dict[str, str], model: ModelSpec, lay: Layouts, result: StepTime) -> np.ndarray:
    """The row's metric for every layout (SC21's TFLOP/s formula counts full recomputation's extra forward; model
    TFLOP/s is Megatron-Core's logged count, capsim.analytic.flops.megatron_core_model_flops)."""
    step = np.asarray(result.step_s, float)
    if r["metric"] == "iteration_s":
        return step
    if r["metric"] == "tokens_per_s_per_gpu":  # the sources' "Tokens / sec / GPU": global batch x seq / step / gpus
        return int(r["global_batch"]) * int(r["seq"]) / step / int(r["gpus"])
    gb, seq = int(r["global_batch"]), int(r["seq"])
    full = r["metric"] == "tflops_per_gpu_hw"
    flops = np.where(full & (np.asarray(lay.recompute) == 2), megatron_iteration_flops(model, gb, seq, True),
                     megatron_core_model_flops(model, gb, seq))
    return flops / step / int(r["gpus"]) / 1e12


def _price(r: dict[str, str], fixed: dict[str, object], fw: Framework, cluster: Cluster, perf: object,
           precision: Precision, split: dict[str, object] | None = None) -> tuple[Layouts, StepTime, np.ndarray]:
    """Every layout of ``fixed`` (None = open) with the row's dp, priced; the indices of the feasible ones.
    ``split``: the row's split settings; where they state a split (``SPLIT_KEYS``), every layout runs it."""
    model = row_model(r)
    grid = {k: v for k, v in fixed.items() if k != "shard"}
    stated = {k: v for k, v in (split or {}).items() if k in SPLIT_KEYS and v}
    lay = layout_grid(model, int(r["gpus"]), int(r["global_batch"]), int(r["seq"]), int(cluster.gpus_per_node),
                      grid, fw, stated=(lambda p, v: stated_split(model, p, v, stated)) if stated else None)
    lay = lay.take(np.flatnonzero(lay.dp == int(r["dp"])))
    shard = int(fixed.get("shard") or 0)  # type: ignore[call-overload]
    if shard:  # hybrid sharding: the layouts whose dp x cp the row's sharding group divides
        lay = lay.take(np.flatnonzero((lay.dp * lay.cp) % shard == 0))
        lay = replace(lay, shard=np.full(len(lay), shard, np.int64))
    if len(lay) == 0:
        raise SpecError("dp", f"dp={r['dp']} tp={r['tp']} pp={r['pp']} does not make {r['gpus']} GPUs")
    result, order = rank_layouts(model, cluster, lay, perf, precision, fw)
    return lay, result, order


def _point(r: dict[str, str], layout: dict[str, object], fw: Framework, cluster: Cluster, perf: object,
           precision: Precision) -> tuple[Layouts, StepTime]:
    """The one layout a row names (published settings and documented defaults); step_time says why it cannot run."""
    model = row_model(r)
    split = row_split(model, int(layout["pp"]), int(layout["v"]), layout, fw)  # type: ignore[call-overload]
    shape = {k: v for k, v in layout.items()
             if k not in SPLIT_KEYS}
    lay = Layouts.build(model, splits=split, dp=cell_int(r, "dp"), global_batch=cell_int(r, "global_batch"),
                        seq_len=cell_int(r, "seq"), **shape)
    return lay, rank_layouts(model, cluster, lay, perf, precision, fw)[0]


def _band(r: dict[str, str], fixed: dict[str, object], blanks: list[str], fw: Framework, cluster: Cluster,
          perf: object, precision: Precision, split: dict[str, object]
          ) -> tuple[tuple[float, float] | None, str, dict[str, object] | None]:
    """(least, greatest) prediction over the blanks' plausible values, a note saying over what, and the blanks'
    values at the feasible layout whose prediction is the median of them (the lower middle of an even count).
    ``split``: the row's account-for-embedding/loss settings (an uneven split only where the row states one)."""
    if not blanks:
        return None, "", None
    pins = framework_limits(fw)
    open_ = {**fixed, **{k: pins.get(k) for k in blanks}}
    lay, result, ok = _price(r, open_, fw, cluster, perf, precision, split)
    runs = _runnable(row_model(r), lay, fw, split) & ((np.asarray(lay.recompute) != 1) | fw.selective_recompute)
    ok = ok[runs[ok]]
    tried = ", ".join(f"{k} in {{{','.join(str(_show(k, x)) for x in np.unique(getattr(lay, k)[runs]))}}}"
                      for k in blanks)
    if len(ok) == 0:
        return None, f"band over {tried}: no plausible layout fits", None
    values = _metric_values(r, row_model(r), lay, result)[ok]
    middle = int(ok[np.argsort(values, kind="stable")[(len(ok) - 1) // 2]])
    lo, hi = float(values.min()), float(values.max())
    return ((lo, hi), f"band over {tried}: {lo:.4g} to {hi:.4g} ({len(ok)} feasible layouts)",
            {k: np.asarray(getattr(lay, k))[middle].item() for k in blanks})


def _where_defaults_cannot_run(r: dict[str, str], layout: dict[str, object], median: dict[str, object] | None,
                               why: str, fw: Framework, cluster: Cluster, perf: Perf, precision: Precision
                               ) -> tuple[dict[str, object], Layouts, StepTime, str]:
    """A row whose blanks at the documented defaults cannot run (``why``) ran at some other plausible values: its
    blanks at the feasible layout of the band's median prediction (neither end of the band), and a note saying so;
    a row no plausible value runs is not priced."""
    if median is not None:
        lay, result = _point(r, {**layout, **median}, fw, cluster, perf, precision)
        if result.feasible[0]:
            shown = " ".join(f"{k}={_show(k, v)}" for k, v in median.items())
            return median, lay, result, (f"; the defaults cannot run ({why}): priced at the band's median "
                                         f"feasible layout, {shown}")
    raise _Unpriced(why, None, perf.name)


def _unstated_by_flags(r: dict[str, str], release: Release, fw: Framework, model: ModelSpec) -> list[str]:
    """The layout settings a run's flags set, left open where the row states no flags at all (a blank or absent
    ``flags``; a stated set of flags leaves the rest at the release's defaults): whether the optimizer is sharded
    (--use-distributed-optimizer, where the release has one) and, for an MoE model, the experts' tensor-parallel
    size (--expert-tensor-parallel-size, where the release has it; 0 in the band is etp = tp)."""
    if (r.get("flags") or "").strip():
        return []
    return (["distributed_optimizer"] if fw.distributed_optimizer else []) + (
        ["etp"] if model.is_moe and "--expert-tensor-parallel-size" in release.flags else [])


def _row_splits(r: dict[str, str], model: ModelSpec, release: Release, fw: Framework, defaults: dict[str, object],
                v: int) -> tuple[dict[str, object], list[dict[str, object]], str]:
    """The split settings the row is priced with, the other splits it may have run (its band spans them), and a
    note. A row that states no split where pp x v does not divide the layers ran one of the splits Megatron-Core
    accepts (``unstated_splits``): it is priced at default_uneven's choice and banded over the rest; where the
    release accepts none, the row's split error stands (checked first: it is the reason, not the band's search)."""
    split = {k: defaults.get(k) for k in SPLIT_KEYS}
    pp = int(r["pp"])
    try:
        row_split(model, pp, v, split, fw)
        return split, [], ""
    except SpecError:
        choices = [] if any(split.get(k) for k in SPLIT_KEYS) else unstated_splits(model, pp, v, release, fw)
        if not choices:
            raise
    shown = "; ".join(split_flags_text(c) for c in choices[1:])
    return ({**split, **choices[0]}, [{**split, **c} for c in choices[1:]],
            f"; the row states no split of its {model.total_layers} layers over pp x v = {pp * v}: priced at "
            f"{split_flags_text(choices[0])} (default_uneven's choice)" + (
                f", band over the other splits Megatron-Core accepts ({shown})" if shown else
                ", the only one of Megatron-Core's options that splits them"))


def _split_band(r: dict[str, str], fixed: dict[str, object], blanks: list[str], layout: dict[str, object],
                split: dict[str, object], fw: Framework, cluster: Cluster, perf: Perf, precision: Precision
                ) -> list[float]:
    """The predictions under another split: its band over the blanks, and its point at the row's settings where
    the split exists at their v (feasible layouts only)."""
    band = _band(r, fixed, blanks, fw, cluster, perf, precision, split)[0]
    try:
        lay, result = _point(r, {**layout, **split}, fw, cluster, perf, precision)
    except SpecError:  # the split does not exist at the layout's v (a median layout's other interleaving)
        return list(band or ())
    point = [float(_metric_values(r, row_model(r), lay, result)[0])] if result.feasible[0] else []
    return [*(band or ()), *point]


def _widen(band: tuple[float, float] | None, value: float, values: list[float]) -> tuple[float, float] | None:
    """``band`` (or the point ``value``) reaching ``values`` too; unchanged where there are none."""
    if not values:
        return band
    return (min(*(band or (value,)), value, *values), max(*(band or (value,)), value, *values))


def predict_row(r: dict[str, str], calibration: str | None = None) -> RowPrediction:
    """Price one CSV row: its published layout, each blank at the release's documented default, and the band."""
    release, fw, defaults = row_release(r)
    model, acc = row_model(r), get_accelerator(r["gpu"])
    cluster = row_cluster(r, acc)
    # step_time puts the calibration on the row's links itself (resolve_perf), so a row's own network is applied once
    perf = perf_for(acc, row_calibration(calibration, acc.name))
    precision = row_precision(r, fw)
    published = published_settings(r)
    _check_offered({**published, "pp": cell_int(r, "pp")}, fw)
    cp = published["cp"] or int(defaults["cp"])  # type: ignore[call-overload]
    r = with_dp(r, cp)
    dp = int(r["dp"])
    group = check_fsdp(r, fw, dp, cp)
    blanks = [k for k, v in published.items() if v is None]
    blanks += _unstated_by_flags(r, release, fw, model)
    fixed = {"tp": cell_int(r, "tp"), "pp": cell_int(r, "pp"), "ep": row_ep(r), "etp": defaults["etp"],
             "distributed_optimizer": defaults["distributed_optimizer"], **{k: v for k, v in published.items()},
             **({"shard": group} if group and group != dp * cp else {})}  # hybrid sharding's group
    split, others, split_note = _row_splits(r, model, release, fw, defaults, int(published["v"] or defaults["v"]))
    band, band_note, median = _band(r, fixed, blanks, fw, cluster, perf, precision, split)
    settings = {k: defaults[k] for k in blanks}
    if settings.get("micro_batch") == PER_REPLICA:
        settings["micro_batch"] = int(r["global_batch"]) // max(int(r["dp"]), 1)
    if "sp" in settings:
        settings["sp"] = release_sp(fw, int(r["tp"]), settings["sp"])  # as as_released, under the row's flags
    shown = " ".join(f"{k}={_show(k, v)}" for k, v in settings.items())
    network = "" if cluster.inter_node_bw_bytes_per_s == acc.inter_node_bw_bytes_per_s else \
        f"; network {cluster.inter_node_bw_bytes_per_s / 1e9:.4g} GB/s per GPU between nodes"
    head = f"{release.name}{' ' + r['flags'].strip() if (r.get('flags') or '').strip() else ''}{network}" + (
        f"; defaults {shown}" if shown else "") + split_note + (f"; {band_note}" if band_note else "")
    lay, result = _point(r, {**fixed, **settings, **split}, fw, cluster, perf, precision)
    if not result.feasible[0]:
        need = float(result.memory.total_bytes[0])
        why = str(result.reason[0]) + (f" ({need / 1e9:.1f} GB/GPU of {acc.memory_bytes / 1e9:.1f} GB)"
                                       if "memory" in str(result.reason[0]) else "")
        try:
            settings, lay, result, moved = _where_defaults_cannot_run(r, {**fixed, **split}, median, why, fw, cluster,
                                                                      perf, precision)
        except _Unpriced as err:
            raise _Unpriced(f"{head}; {err.problem}", band, perf.name) from None
        head += moved
    i = 0
    step, memory = float(np.asarray(result.step_s)[i]), float(result.memory.total_bytes[i])
    value = float(_metric_values(r, model, lay, result)[i])
    if band is not None:  # the documented default is one of the plausible values (even outside the searched axis)
        band = (min(band[0], value), max(band[1], value))
    for other_split in others:  # the other splits Megatron-Core accepts where the row states none
        band = _widen(band, value, _split_band(r, fixed, blanks, {**fixed, **settings}, other_split, fw, cluster,
                                               perf, precision))
    high, high_note = _at_peaks_high(r, fixed, blanks, {**fixed, **settings, **split}, fw, cluster, perf, precision)
    if high is not None:  # the part's peaks are a stated range: the band spans both ends
        band = _widen(band, value, list(high))
    other, fp8_note = _at_other_fp8_rate(r, fixed, blanks, {**fixed, **settings, **split}, fw, cluster, perf,
                                         precision)
    if other is not None:  # FP8 not measured on this part: the band spans both published FP8/BF16 ratios
        band = _widen(band, value, list(other))
    note = (f"{head}; {memory / 1e9:.1f} GB/GPU; step {step:.3f} s; bottleneck "
            f"{('first', 'middle', 'last')[int(result.bottleneck_stage[i])]} stage; "
            + ", ".join(f"{k[:-2]} {float(getattr(result, k)[i]):.3g}" for k in
                        BREAKDOWN) + high_note + fp8_note)
    return RowPrediction(value, step, memory, float(acc.memory_bytes), settings, band, note, perf.name)


def _at_peaks_high(r: dict[str, str], fixed: dict[str, object], blanks: list[str], layout: dict[str, object],
                   fw: Framework, cluster: Cluster, perf: Perf, precision: Precision
                   ) -> tuple[tuple[float, ...] | None, str]:
    """Where the row's accelerator has its peaks only as a stated range (``Accelerator.peaks_high``): the row's
    metric at the range's upper end, at its layout and over its blanks' band, and a note saying so; else (None, "")."""
    acc = cluster.accelerator
    if acc.peaks_high is None:
        return None, ""
    high = Perf(replace(perf.params, peak_flops_per_s={k: v for k, v in vars(acc.peaks_high).items() if v}))
    lay, result = _point(r, layout, fw, cluster, high, precision)  # memory does not depend on the peaks
    point = float(_metric_values(r, row_model(r), lay, result)[0])
    band = _band(r, fixed, blanks, fw, cluster, high, precision, layout)[0]
    return (point, *(band or ())), (
        f"; peaks stated only as a range: at its upper end (peaks_high, bf16 {acc.peaks_high.bf16 / 1e12:.0f} "
        f"TFLOP/s) {point:.5g}" + (f", over the blanks {band[0]:.5g} to {band[1]:.5g}" if band else ""))


def _at_other_fp8_rate(r: dict[str, str], fixed: dict[str, object], blanks: list[str], layout: dict[str, object],
                       fw: Framework, cluster: Cluster, perf: Perf, precision: Precision
                       ) -> tuple[tuple[float, ...] | None, str]:
    """Where the row's GEMMs run per-tensor FP8 and ``perf``'s FP8 rate is not measured on its accelerator
    (capsim.calibration.fp8.fp8_rates): the row's metric at each end of the FP8 band (``band_ends``: every FP8 GEMM
    at one published FP8/BF16 ratio), at its layout and over its blanks' band, and a note naming the rates; else
    (None, "")."""
    rates = fp8_rates(perf) if precision.compute is DType.FP8 else None
    if rates is None:
        return None, ""
    values: list[float] = []
    note = f"; {rates_note(rates, cluster.accelerator.name, split_by_role(perf))}"
    for words, _rate, alt in band_ends(perf, rates):
        lay, result = _point(r, layout, fw, cluster, alt, precision)
        value = float(_metric_values(r, row_model(r), lay, result)[0])
        band = _band(r, fixed, blanks, fw, cluster, alt, precision, layout)[0]
        values += [value, *(band or ())]
        note += f"{words} {value:.5g}" + (f", over the blanks {band[0]:.5g} to {band[1]:.5g}" if band else "")
    return tuple(values), note


def _check_offered(published: dict[str, object], fw: Framework) -> None:
    """A published setting the release does not offer (SP before 2022, ZeRO in Megatron, ...) cannot be priced."""
    pins = {**framework_limits(fw), **({} if fw.selective_recompute else {"recompute": "not selective"})}
    for key, pinned in pins.items():
        value = published.get(key)
        if value is not None and (value == 1 if key == "recompute" else value != pinned):
            raise SpecError(COLUMNS[key], f"{fw.name} does not offer {key}={_show(key, value)}",
                            "the row names a release that could not have run this layout")
    v, pp = published.get("v"), published.get("pp")
    if v is not None and v > 1 and pp is not None and pp < fw.interleave_min_pp:
        raise SpecError("pp_interleave", f"{fw.name} interleaves only with pp >= {fw.interleave_min_pp}, not pp={pp}",
                        "the row names a release that could not have run this layout")


def _runnable(model: ModelSpec, lay: Layouts, fw: Framework, split: dict[str, object]) -> np.ndarray:
    """Which layouts the release can run: interleaving only from its least pp, uneven splits only if it has them
    and the row states one or the release splits its own way (``row_split``: else an uneven split is an error)."""
    pp, v = np.asarray(lay.pp), np.asarray(lay.v)
    even = model.total_layers % (pp * v) == 0
    stated = any(split.get(k) for k in SPLIT_KEYS) or \
        fw.pipeline_split is not PipelineSplit.MEGATRON
    return ((v == 1) | (pp >= fw.interleave_min_pp)) & (even | (fw.uneven_pipeline and stated))


class _Unpriced(SpecError):
    """A row whose layout at the documented defaults cannot run; carries the band and calibration for its row."""

    def __init__(self, reason: str, band: tuple[float, float] | None, calibration: str) -> None:
        super().__init__("layout", reason)
        self.band, self.calibration = band, calibration


def _show(key: str, value: object) -> str:
    if key == "recompute":
        return ("none", "selective", "full")[int(value)]  # type: ignore[arg-type]
    if key == "etp" and not value:
        return "tp"
    if key in ("sp", "distributed_optimizer"):
        return "yes" if value else "no"
    return str(int(value))  # type: ignore[call-overload]


def _case(r: dict[str, str]) -> str:
    case = f"{r['model']} tp{r['tp']} pp{r['pp']} dp{r['dp']} gb{r['global_batch']} {r['recompute'] or '?'}"
    return case + ("+sp" if r["seq_parallel"].strip().lower() in YES else "")


def training_suite(path: str | Path | None = None, calibration: str | None = None) -> Report:
    """Every row of the shipped files (``SHIPPED``: the 2021-22 runs and today's stacks), or of ``path``, predicted
    under one calibration (``profile``: each row's accelerator's profile calibration where one ships, else its
    datasheet); a row capsim cannot price is reported with its reason, never dropped."""
    if path is not None:
        table = read_csv(path, SHIPPED[0], REQUIRED)
    else:
        table = [r for name in SHIPPED for r in read_csv(None, name, REQUIRED)]
    for r in table:  # the whole file is checked before any row is priced
        for column in ("gpus", "tp", "pp", "global_batch", "seq"):
            if cell_int(r, column) is None:
                raise DataError(column, f"line {r.get(LINE, '?')}: blank", "give the run's value (a whole number)")
        check_metric(r, METRICS)
        measured_value(r)
        row_release(r)
    rows, names, releases = [], set(), {}
    for r in table:
        metric, measured, unit = r["metric"], measured_value(r), METRICS[r["metric"]]
        release = row_release(r)[0]
        releases[release.name] = release
        pred, err = attempt(predict_row, r, calibration)
        if pred is None:
            band = getattr(err, "band", None) or (None, None)
            rows.append(replace(failed_row(r["source"], _case(r), metric, measured, unit, str(err)),
                                band_low=band[0], band_high=band[1]))
            continue
        names.add(pred.calibration)
        band = pred.band or (None, None)
        rows.append(Row(r["source"], _case(r), metric, measured, pred.value, unit, pred.note, *band))
    notes = tuple(f"{rel.name}: {rel.code}; release {rel.software}"
                  + (f" (covers {rel.covers[0]} to {rel.covers[1]})" if rel.covers else "")
                  for rel in releases.values())
    return Report("training", " + ".join(sorted(names)) or (calibration or "datasheet"), tuple(rows), notes)


__all__ = ["COLUMNS", "METRICS", "OPTIONAL", "REQUIRED", "SHIPPED", "RowPrediction", "predict_row", "published_settings", "row_model",
           "row_release", "training_suite"]
