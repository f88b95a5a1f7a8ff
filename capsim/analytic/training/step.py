"""``step_time``: one training step of a TrainPlan (floats) or of many Layouts at once (arrays)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from capsim.analytic import mtp, recompute
from capsim.analytic.flops import training_flops_per_token
from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import TrainingMemory, layer_activation_bytes, training_memory
from capsim.analytic.ops import forward_layer_ops, layer_shape
from capsim.analytic.training import offload, stages
from capsim.analytic.training.framework import (
    DEFAULT_FRAMEWORK,
    Framework,
    FrameworkName,
    get_framework,
    get_release,
)
from capsim.analytic.training.hybrid import check_hybrid
from capsim.analytic.training.release import MoeDispatcher, PipelineSplit, default_sp
from capsim.analytic.training.result import BREAKDOWN, StepTime
from capsim.errors import SpecError
from capsim.perf import DeviceParams, Link, Perf, require_perf
from capsim.specs.hardware import Accelerator, Cluster
from capsim.specs.model import Mixer, ModelSpec
from capsim.specs.pipeline_layout import SplitRule, layout_mtp_layers
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import DType, Precision


def resolve_perf(perf: Perf, cluster: Cluster) -> Perf:
    """``perf`` on ``cluster``'s links: a cluster whose link rates override the datasheet scales that tier's
    calibrated bus bandwidth by override / datasheet (the calibration measured the datasheet links)."""
    require_perf(perf)
    acc = cluster.accelerator
    scales = {"intra": _ratio(cluster.intra_node_bw_bytes_per_s, acc.intra_node_bw_bytes_per_s),
              "inter": _ratio(cluster.inter_node_bw_bytes_per_s, acc.inter_node_bw_bytes_per_s)}
    if all(s == 1.0 for s in scales.values()):
        return perf
    params: DeviceParams = perf.params
    def scaled(link: Link | tuple[Link, ...], by: float) -> Link | tuple[Link, ...]:
        if isinstance(link, tuple):
            return tuple(Link(x.alpha_s, x.bus_bw_bytes_per_s * by) for x in link)
        return Link(link.alpha_s, link.bus_bw_bytes_per_s * by)

    links = {tier: {c: {g: scaled(lk, scales.get(tier, 1.0)) for g, lk in grp.items()} for c, grp in colls.items()}
             for tier, colls in params.comm.links.items()}
    return Perf(replace(params, comm=replace(params.comm, links=links),
                        name=params.name + f" (links x{scales['intra']:.3g}/x{scales['inter']:.3g})"))


def _ratio(override: float | None, datasheet: float | None) -> float:
    return float(override / datasheet) if override and datasheet else 1.0


def _validity(model: ModelSpec, lay: Layouts, num_gpus: int, fw: Framework) -> np.ndarray:
    """Why each layout cannot run at all ("" where it can), first reason wins; ``fw`` is the release, whose
    interleaving and uneven-split limits hold here as in the layout search."""
    m = lay.micro_batches
    uneven = np.array([len({n for row in sp.chunks for n in row}) > 1 for sp in lay.splits] or [False])
    checks = [
        (lay.num_gpus != num_gpus, f"dp*tp*pp*cp is not the cluster's {num_gpus} GPUs"),
        ((model.heads % lay.tp != 0) | (model.kv_heads % lay.tp != 0), "tp does not divide the attention heads"),
        *((width % lay.tp != 0, f"tp does not divide {field}") for field, width in model.tp_widths.items()),
        (model.is_moe & (model.ffn_hidden % lay.etp != 0), "etp does not divide the experts' ffn_hidden"),
        (lay.global_batch % (lay.dp * lay.micro_batch) != 0, "global batch does not split into dp x micro-batches"),
        (lay.split < 0, "pp x pp_interleave does not divide the layers and no Megatron-Core uneven split fits"),
        (_split_mismatch(model, lay), "the layer split does not match pp, pp_interleave or the model's layers"),
        ((lay.schedule == 2) & ((lay.v < 2) | (lay.pp < 2) | (m % np.maximum(lay.pp, 1) != 0)),
         "interleaving needs pp > 1, v > 1 and micro-batches a multiple of pp"),
        ((lay.schedule != 2) & (lay.v > 1), "only the interleaved schedule has v > 1"),
        ((lay.schedule == 2) & (lay.pp < fw.interleave_min_pp),
         f"{fw.name} interleaves only with pp >= {fw.interleave_min_pp}"),
        ((lay.split >= 0) & uneven[np.maximum(lay.split, 0)] & (not fw.uneven_pipeline),
         f"{fw.name} splits the layers only evenly over pp x pp_interleave"),
        (lay.sp & (lay.tp < 2), "sequence parallelism needs tp > 1"),
        (lay.sp & (not fw.sequence_parallel), f"{fw.name} has no sequence parallelism"),
        ((lay.cp > 1) & (not fw.context_parallel), f"{fw.name} has no context parallelism"),
        (lay.distributed_optimizer & (not fw.distributed_optimizer), f"{fw.name} has no distributed optimizer"),
        (lay.seq_len % lay.cp != 0, "cp does not divide the sequence"),
        ((lay.ep > 1) & (model.experts % lay.ep != 0), "ep does not divide the experts"),
        (lay.tp % lay.etp != 0, "etp does not divide tp"),
        ((lay.tp * lay.cp * lay.dp) % (lay.ep * lay.etp) != 0, "ep x etp does not divide tp x cp x dp"),
        (lay.distributed_optimizer & (lay.zero_stage > 0), "distributed optimizer and ZeRO together"),
        # NeMo AutoModel step_scheduler.py L53-58 @8d9bfb9 asserts the per-replica batch is a multiple of local_batch_size
        ((fw.pp_schedule_sequences > 0) & (lay.pp > 1)
         & ((lay.micro_batches * lay.micro_batch) % max(fw.pp_schedule_sequences, 1) != 0),
         f"{fw.name}'s local batch ({fw.pp_schedule_sequences} sequences, --local-batch-size) does not divide the "
         "per-replica batch (global batch / dp)"),
        ((lay.dp * lay.cp) % np.maximum(lay.shard, 1) != 0, "the sharding group does not divide dp x cp"),
        ((lay.zero_stage > 0) & (not fw.zero), f"{fw.name} has no ZeRO/FSDP sharding (Megatron-Core: its "
                                                "--use-megatron-fsdp flag, where the release has it)"),
        *_a2a_overlap_checks(model, lay, fw),
    ]
    bad = np.stack([np.broadcast_to(np.asarray(b, bool), (len(lay),)) for b, _ in checks])
    names = np.array([why for _, why in checks] + [""], dtype=object)
    return names[np.where(bad.any(axis=0), np.argmax(bad, axis=0), len(checks))]


def _reasons(model: ModelSpec, lay: Layouts, precision: Precision, num_gpus: int, fw: Framework) -> np.ndarray:
    """Why each layout cannot run under ``fw`` in ``precision`` ("" where it can), memory and offloading aside:
    ``_validity``, then a format the release does not train in (FP8 at all, or a block-scaled format it has no
    recipe for: ``Framework.block_scaled``)."""
    reason = _validity(model, lay, num_gpus, fw)
    if model.is_hybrid:  # TrainPlan.check's refusal, for layout grids too
        reason = np.where((reason == "") & (lay.cp > 1),
                          "context parallelism of Mamba-2 / Gated DeltaNet layers is not modelled", reason)
    if model.mixer_layers(Mixer.MAMBA2):  # MambaMixer: assert ngroups % tp_size == 0 (Megatron-Core core_v0.14.0
        #                                   megatron/core/ssm/mamba_mixer.py L236)
        reason = np.where((reason == "") & (model.ssm_groups % np.maximum(lay.tp, 1) != 0),
                          f"Mamba-2 layers need tp to divide their {model.ssm_groups} group(s) (Megatron-Core "
                          "MambaMixer)", reason)
    fmt = precision.compute
    if (fmt is DType.FP8 or fmt.block_scaled) and not (fw.fp8_training and (not fmt.block_scaled
                                                                              or fmt in fw.block_scaled)):
        reason = np.where(reason == "", f"{fw.name} has no {fmt.value.upper()} training", reason)
    return reason


def _refusals(model: ModelSpec, lay: Layouts, precision: Precision, num_gpus: int, fw: Framework,
              accelerator: Accelerator | None) -> np.ndarray:
    """``_reasons``, then (given the ``accelerator``) the release's offloading limits (``offload.checks``): the
    first reason each layout cannot run, memory aside."""
    reason = _reasons(model, lay, precision, num_gpus, fw)
    if accelerator is not None:
        for bad, why in offload.checks(lay, fw, accelerator, model.total_layers):
            reason = np.where((reason == "") & np.broadcast_to(np.asarray(bad, bool), (len(lay),)), why, reason)
    return reason


def release_refusal(model: ModelSpec, plan: TrainPlan,
                    framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK,
                    accelerator: Accelerator | None = None) -> str:
    """Why ``plan``, as its release runs it (``as_released``), cannot run under that release ("" where it can),
    memory aside: the reason ``step_time`` reports, for the faces that price no step (``capsim memory train``); on
    an ``accelerator``, its offloading limits too."""
    fw = get_framework(framework)
    plan = as_released(model, plan, fw)
    return str(_one(_refusals(model, Layouts.from_plans(model, [plan]), plan.precision, plan.num_gpus, fw,
                              accelerator)))


def _a2a_overlap_checks(model: ModelSpec, lay: Layouts, fw: Framework) -> list[tuple[object, str]]:
    """What Megatron-Core's EP A2A overlap refuses (TransformerConfig.__post_init__, megatron/core/transformer/
    transformer_config.py L1665-1704, NVIDIA/Megatron-LM@0d8e0714): pp > 1 without virtual stages, ep 1, the
    all-gather dispatcher, full recomputation."""
    if not (fw.overlap_moe_a2a and model.is_moe):
        return []
    why = "--overlap-moe-expert-parallel-comm "
    return [((lay.pp > 1) & (lay.v < 2), why + "needs virtual pipeline stages (pp_interleave > 1) when pp > 1"),
            (lay.ep < 2, why + "needs expert parallelism (ep > 1)"),
            (fw.moe_dispatcher is MoeDispatcher.ALLGATHER, why + "needs the alltoall or flex token dispatcher"),
            (lay.recompute == 2, why + "refuses full recomputation")]


def _split_mismatch(model: ModelSpec, lay: Layouts) -> np.ndarray:
    """Layouts whose split has another stage or chunk count, or another number of layers, than they need."""
    shape = np.array([(sp.pp, sp.v, sp.total) for sp in lay.splits] or [(0, 0, 0)], np.int64)[np.maximum(lay.split, 0)]
    return (lay.split >= 0) & ((shape[:, 0] != lay.pp) | (shape[:, 1] != lay.v) | (shape[:, 2] != model.total_layers))


def _flops(model: ModelSpec, lay: Layouts, fw: Framework) -> tuple[np.ndarray, np.ndarray]:
    """(model, hardware) FLOPs of one step: 6N + attention, and with what recomputation replays (full: the
    layers' forward, under method "block" those of the first N layers of each chunk; selective: the share of the
    layers' forward matmul FLOPs the release's policy replays, ``recompute.replayed_matmul_share``); MTP layers
    counted as Megatron counts them (``capsim.analytic.mtp.flops_per_token``)."""
    tokens = lay.global_batch * lay.seq_len
    model_f = training_flops_per_token(model, lay.seq_len) * tokens
    full = training_flops_per_token(model, lay.seq_len, recompute_full=True) * tokens
    chunks = lay.pp * lay.v
    block = recompute.full_replay_share(model.total_layers / chunks, 0, 1, fw.recompute_method, fw.recompute_layers)
    shape = layer_shape(model, lay.micro_batch * lay.seq_len, lay.micro_batch, 1, 1, False)
    share = recompute.replayed_matmul_share(model, forward_layer_ops(model, shape, attention=fw.attention),
                                            fw.selective_ac)
    hw = np.select([lay.recompute == 2, lay.recompute == 1], [model_f + block * (full - model_f),
                                                              model_f + share * (full - model_f)], model_f)
    extra = fw.mtp_layers * tokens * mtp.flops_per_token(model, lay.seq_len)
    replay = fw.mtp_layers * tokens * (mtp.flops_per_token(model, lay.seq_len, 1.0)
                                       - mtp.flops_per_token(model, lay.seq_len))
    hw = hw + extra + np.where((lay.recompute == 2) & (fw.recompute_method == "uniform"), replay, 0.0)
    return np.asarray(model_f + extra, float), np.asarray(hw, float)


def release_split(model: ModelSpec, plan: TrainPlan, fw: Framework) -> TrainPlan:
    """A plan that states no pipeline split, under a release with its own uneven one (NeMo AutoModel's
    front-loaded split), with that split stated as a layout; any other plan as it is."""
    stated = (plan.pipeline_layout, plan.layer_split, plan.first_stage_layers, plan.last_stage_layers)
    if fw.pipeline_split is PipelineSplit.MEGATRON or plan.pp == 1 or any(x is not None for x in stated) \
            or plan.account_for_embedding or plan.account_for_loss:
        return plan
    split = fw.split(model.total_layers, plan.pp, plan.pp_interleave)
    return plan if split is None or split.rule is SplitRule.EVEN else plan.with_(pipeline_layout=split.layout)


def release_sp(framework: Framework | FrameworkName | str, tp: int, default: object = None) -> bool:
    """The release's sequence-parallel default at ``tp`` (``Release.defaults['sp']``: off in every Megatron release,
    where --sequence-parallel is store_true; on wherever TP is in torchtitan's), or ``default`` where the run's
    flags configured one (``Release.configure``, as a validation row's). A Framework that is no preset's has no
    documented default: off, TrainPlan's own."""
    if default is None:
        try:
            default = get_release(get_framework(framework).name).defaults["sp"].value
        except SpecError:
            return False
    return default_sp(default, tp)


def as_released(model: ModelSpec, plan: TrainPlan, framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK
                ) -> TrainPlan:
    """``plan`` as its framework release runs it: the precision through the release's recipe
    (``Framework.run_precision``: its FP8 scaling where the plan names none, FP8 parameters, 16-bit gradients, no
    fp32 master where it keeps none), sequence parallelism at the release's default where the plan leaves it None
    (``release_sp``), and the release's own uneven split where the plan states none (``release_split``). What the
    plan states (an FP8 scaling, sequence parallelism on or off, a split) is kept. Applying it twice changes
    nothing; every face (CLI, dashboard, what-ifs, memory, Python API) prices a plan through it (``step_time``)."""
    fw = get_framework(framework)
    if plan.pipeline_layout and layout_mtp_layers(plan.pipeline_layout) != fw.mtp_layers:
        raise SpecError("plan.pipeline_layout", f"{layout_mtp_layers(plan.pipeline_layout)} MTP layer(s) ('m') with "
                        f"--mtp-num-layers={fw.mtp_layers}", "state as many 'm' as --mtp-num-layers (Megatron-Core "
                        "asserts it: pipeline_parallel_layer_layout.py L108-110 at core_v0.14.0)")
    sp = plan.sequence_parallel
    plan = plan.with_(precision=fw.run_precision(plan.precision),
                      sequence_parallel=release_sp(fw, plan.tp) if sp is None else sp)
    return release_split(model, plan, fw)


def release_memory(model: ModelSpec, plan: TrainPlan | Layouts, accelerator: Accelerator,
                   framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK,
                   precision: Precision | None = None) -> TrainingMemory:
    """Memory per GPU of ``plan`` as its release runs it (``as_released``), with the release's kernels (attention,
    dropout, selective recompute, loss copy, ZeRO-3 keep-gathered, deferred gradient sync, offloading): the memory
    ``step_time`` reports, without the timing."""
    fw = get_framework(framework)
    if isinstance(plan, TrainPlan):
        plan = as_released(model, plan, fw).check(model)
        precision, lay = plan.precision, Layouts.from_plans(model, [plan])
    else:
        precision, lay = fw.run_precision(precision or Precision()), plan
    mem = _memory(model, lay, precision, accelerator, fw)
    return _one_memory(mem) if isinstance(plan, TrainPlan) else mem


def _memory(model: ModelSpec, lay: Layouts, precision: Precision, accelerator: Accelerator,
            fw: Framework) -> TrainingMemory:
    return training_memory(model, lay, precision, accelerator, fw.attention, fw.dropout, fw.keeps_gathered(lay.pp),
                           fw.defers_grad_sync(lay.pp), fw.selective_ac, fw.moe_combine_saves,
                           fw.loss_copy_bytes(precision.activations.bytes), offload.offloaded_layers(lay, fw),
                           fw.cp_rotate, fw.repeat_kv, fw.recompute_method, fw.recompute_layers, fw.mtp_layers)


def step_time(model: ModelSpec, plan: TrainPlan | Layouts, cluster: Cluster, perf: Perf,
              precision: Precision | None = None,
              framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK,
              train_tokens: float | None = None) -> StepTime:
    """Seconds of one optimizer step, broken down, with MFU/HFU, memory, feasibility and train-N-tokens totals.

    ``plan`` is one TrainPlan (priced as its release runs it, ``as_released``; checked: a plan that cannot run
    raises SpecError; floats out) or Layouts (arrays out; a layout that cannot run is returned infeasible with its
    reason; a sharding group below dp x cp under a release without hybrid sharding raises SpecError either way,
    ``hybrid.check_hybrid``). ``precision`` (default: the plan's, or bf16 for Layouts) runs as the release runs
    it (``Framework.run_precision``). ``perf`` is the accelerator's device model (``capsim.calibration.perf_for``).
    """
    fw = get_framework(framework)
    perf = resolve_perf(perf, cluster)
    if isinstance(plan, TrainPlan):
        plan = as_released(model, plan, fw).check(model, cluster.num_gpus)
        precision = fw.run_precision(precision or plan.precision)
        lay = Layouts.from_plans(model, [plan])
    elif isinstance(plan, Layouts):
        lay = plan
        precision = fw.run_precision(precision or Precision())
    else:
        raise SpecError("plan", f"expected a TrainPlan or Layouts, got {type(plan).__name__}")
    if train_tokens is not None and not train_tokens > 0:
        raise SpecError("train_tokens", f"must be positive, got {train_tokens!r}")
    check_hybrid(fw.name, lay.dp, lay.cp, lay.shard)  # a group below dp x cp needs a release with HSDP
    gpn = int(min(cluster.gpus_per_node, cluster.num_gpus))
    times = stages.LayerTimes.of(model, lay, precision, perf, fw)
    layers = stages.StageLayers.of(model, lay, fw.mtp_layers)
    dp = stages.dp_costs(model, lay, precision, perf, gpn, fw, layers)
    costs = stages.micro_batch_costs(model, lay, precision, perf, gpn, fw, times, layers, dp)
    parts = stages.pipeline(costs, lay, fw)
    parts.update(stages.step_tail(lay, fw, times, layers, costs["_hop"]["hop_s"], dp))
    mem = _memory(model, lay, precision, cluster.accelerator, fw)
    parts["offload_s"] = np.zeros(len(lay)) if not fw.offload_layers else offload.offload_s(
        lay, fw, cluster.accelerator, layer_activation_bytes(model, lay, precision, fw.attention, fw.dropout),
        times.moe.layer_fwd_s, times.moe.layer_bwd_s)
    reason = _refusals(model, lay, precision, cluster.num_gpus, fw, cluster.accelerator)
    reason = np.where((reason == "") & ~np.asarray(mem.fits), "does not fit in memory", reason)
    model_f, hw_f = _flops(model, lay, fw)
    total = sum(parts[k] for k in BREAKDOWN)
    values = dict(parts, step_s=total, micro_batches=lay.micro_batches, num_gpus=lay.num_gpus,
                  tokens_per_step=lay.global_batch * lay.seq_len, model_flops=model_f, hw_flops=hw_f,
                  feasible=reason == "", reason=reason)
    price = cluster.price_usd_per_gpu_hour
    common = dict(peak_flops_per_s=perf.peak(precision.compute), calibration=perf.name, framework=fw.name,
                  power_w=float(cluster.accelerator.tdp_w or np.nan),
                  price_usd_per_gpu_hour=float(np.nan if price is None else price),
                  train_tokens=float(np.nan if train_tokens is None else train_tokens))
    if isinstance(plan, TrainPlan):  # one plan in, plain numbers out
        values, mem = {k: _one(v) for k, v in values.items()}, _one_memory(mem)
    return StepTime(memory=mem, **values, **common)


def _one_memory(mem: TrainingMemory) -> TrainingMemory:
    parts = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "temporary_bytes")
    return TrainingMemory(*(_one(getattr(mem, f)) for f in parts), mem.capacity_bytes, int(_one(mem.stage)),
                          int(_one(mem.pp)))


def _one(x: object) -> object:
    arr = np.asarray(x).reshape(-1)
    v = arr[0]
    return v.item() if isinstance(v, np.generic) else v


__all__ = ["as_released", "release_memory", "release_refusal", "release_sp", "release_split", "resolve_perf", "step_time"]
