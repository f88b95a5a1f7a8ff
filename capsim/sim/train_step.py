"""A training step of a TrainPlan on the SimPy pipeline: per-stage, per-chunk forward and backward times priced by
the analytic model's cost terms (``capsim.analytic.training``), then scheduled event by event. This is the
reference the analytic pipeline formula is checked against where stages differ (embedding on the first stage, LM
head and loss on the last, an uneven split, chunk by chunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import stage_params
from capsim.analytic.training import (
    DEFAULT_FRAMEWORK,
    Framework,
    FrameworkName,
    as_released,
    comms,
    get_framework,
    release_refusal,
    resolve_perf,
    stages,
)
from capsim.analytic.training.compute import MicroBatchTimes
from capsim.analytic.training.hybrid import check_hybrid
from capsim.analytic.training.sharded import sharded_exposed_s
from capsim.errors import InfeasibleError
from capsim.perf import Perf
from capsim.sim.pipeline import PipelineResult, simulate_pipeline
from capsim.specs.hardware import Cluster
from capsim.specs.model import ModelSpec
from capsim.specs.plans import TrainPlan
from capsim.specs.precision import Precision


@dataclass(frozen=True)
class PipelineInputs:
    """What the schedule simulation needs, for one plan."""

    forward_s: np.ndarray  # (stages, chunks): one micro-batch's forward of each model chunk, with its TP/CP/EP comm
    backward_s: np.ndarray  # (stages, chunks): backward + recomputation + comm + per-micro-batch gradient work
    micro_batches: int
    schedule: str
    p2p_s: float  # one hop
    blocking_p2p: bool
    reduce_s: np.ndarray  # (stages,): gradient reduction after the stage's last backward, the exposed part
    tail_s: float  # tied-embedding sync + optimizer + post-step parameter gather
    calibration: str
    framework: str

    def simulate(self) -> PipelineResult:
        return simulate_pipeline(self.forward_s, self.backward_s, self.micro_batches, self.schedule, self.p2p_s,
                                 self.blocking_p2p, self.reduce_s, self.tail_s)


def _per_layer(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, gpn: int, fw: Framework,
               t: MicroBatchTimes, moe: bool = True) -> dict[str, float]:
    """One layer's forward and backward with its communication (an MoE layer's all-to-alls only if ``moe``)."""
    tp_f, tp_b = comms.tp_layer_s(perf, model, lay, precision, gpn, t, fw)
    cp_f, cp_b = comms.cp_layer_s(perf, model, lay, precision, gpn, t, fw)
    ep_f, ep_b = comms.ep_layer_s(perf, model, lay, precision, gpn, t, fw) if moe else (0.0, 0.0)
    tp_embed, tp_head_f, tp_head_b = comms.tp_ends_s(perf, model, lay, precision, gpn)
    rec = np.select([lay.recompute == 2, lay.recompute == 1], [t.layer_fwd_s, t.layer_selective_s], 0.0)
    # the host's issue time beyond the GPU's, as the analytic model prices it (stages.host_waits_s)
    wait_f, wait_b = stages.host_waits_s(t, ep_f, ep_b, stages.sync_point(fw) if moe and model.is_moe else None,
                                         stages.paired_share(lay, fw) if moe and model.is_moe else 0.0)
    out = {"layer_f": t.layer_fwd_s + tp_f + cp_f + ep_f + wait_f,
           "layer_b": t.layer_bwd_s + rec + tp_b + cp_b + ep_b + wait_b,
           "layer_bwd": t.layer_bwd_s, "layer_fwd": t.layer_fwd_s, "embed_f": t.embed_fwd_s + tp_embed,
           "embed_b": t.embed_bwd_s, "head_f": t.head_fwd_s + tp_head_f, "head_b": t.head_bwd_s + tp_head_b,
           "hop": comms.p2p_hop_s(perf, model, lay, precision, gpn, fw)}
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in out.items()}


def _stage_extras(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, gpn: int, fw: Framework,
                  t: MicroBatchTimes, dp: dict[str, np.ndarray], n: int, d: int, emb: bool, head: bool,
                  end_bwd_s: float) -> tuple[float, float]:
    """(per-micro-batch gradient work added to the stage's backward, gradient reduction after its last backward)
    of one stage of ``n`` layers (``d`` of them dense-FFN layers), from its own parameters; ``t`` is the stage's
    mean layer."""
    dense, expert = stage_params(model, lay, np.array([float(n)]), emb, head, np.array([float(d)]))
    z2 = lay.zero_stage >= 2  # ZeRO-2/3 keep a shard
    grads = dense / np.where(z2, lay.shard, 1) + expert / np.where(z2, lay.expert_shard, 1)
    accumulate = comms.grad_accumulation_s(perf, grads, precision, fw)
    zero = sharded_exposed_s(lay, fw, t, np.array([float(n)]), np.array([emb]), np.array([head]), dp)
    if lay.zero_stage[0] <= 1:
        red = float(comms.grad_reduce_s(perf, dense, expert, lay, precision, gpn,
                                        zero_allreduce=fw.zero_grad_allreduce)[0])
    else:  # hybrid sharding's replica all-reduce, where the release runs it once per step
        red = 0.0 if fw.replica_reduce_every_micro_batch else float(
            comms.replica_reduce_s(perf, dense, expert, lay, precision, gpn)[0])
    if fw.overlaps_grad_reduce(lay.zero_stage[0]):  # hidden behind the stage's last backward but for the last bucket
        red = max(red - (n * float(t.layer_bwd_s[0]) + end_bwd_s), red / max(n, 1))
    return float(zero[0] + accumulate[0]), red


def pipeline_inputs(model: ModelSpec, plan: TrainPlan, cluster: Cluster, perf: Perf,
                    framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK) -> PipelineInputs:
    """Per-stage, per-chunk times of ``plan`` from the same cost terms as ``step_time``: each model chunk is
    priced on its own layers (``TrainPlan.split``), the embedding on chunk (0, 0), the LM head and loss on
    chunk (p-1, v-1). A plan ``step_time`` calls infeasible for its release (a format, feature or offloading the
    release refuses: ``release_refusal`` on the cluster's accelerator, memory aside) raises InfeasibleError with the
    same reason."""
    fw, perf = get_framework(framework), resolve_perf(perf, cluster)
    plan = as_released(model, plan, fw).check(model, cluster.num_gpus)  # as step_time prices it
    precision = plan.precision
    lay = Layouts.from_plans(model, [plan])
    why = release_refusal(model, plan, fw, cluster.accelerator)
    if why:
        raise InfeasibleError("plan", why, "pick a release that runs it, or change the plan")
    check_hybrid(fw.name, lay.dp, lay.cp, lay.shard)  # as step_time: a group below dp x cp needs HSDP
    gpn = int(min(cluster.gpus_per_node, cluster.num_gpus))
    times = stages.LayerTimes.of(model, lay, precision, perf, fw)
    c, cd = (_per_layer(model, lay, precision, perf, gpn, fw, x, moe) for x, moe in
             ((times.moe, True), (times.dense, not model.dense_layers)))
    split = plan.split(model)
    p, v = plan.pp, plan.pp_interleave
    layers = stages.StageLayers.of(model, lay)
    dp = stages.dp_costs(model, lay, precision, perf, gpn, fw, layers)
    chunks = np.array(split.chunks, float)
    dense = np.array(split.count_on_chunks(model.dense_layers), float)
    fwd = (chunks - dense) * c["layer_f"] + dense * cd["layer_f"]
    bwd, reduce = (chunks - dense) * c["layer_b"] + dense * cd["layer_b"], np.zeros(p)
    for s, n in enumerate(split.stages):
        emb, head = s == 0, s == p - 1
        d = int(dense[s].sum())
        end_bwd = (c["embed_b"] if emb else 0.0) + (c["head_b"] if head else 0.0)
        t = times.moe.mix(times.dense, d / n if n else 0.0)
        per_mb, reduce[s] = _stage_extras(model, lay, precision, perf, gpn, fw, t, dp, n, d, emb, head, end_bwd)
        weights = chunks[s] / n if n else np.full(v, 1.0 / v)  # spread over the chunks by their layers
        bwd[s, :] += per_mb * weights
    fwd[0, 0] += c["embed_f"]
    bwd[0, 0] += c["embed_b"]
    fwd[p - 1, v - 1] += c["head_f"]
    bwd[p - 1, v - 1] += c["head_b"]
    tail = stages.step_tail(lay, fw, times, layers, np.array([c["hop"]]), dp)
    tail_s = float(tail["embedding_sync_s"][0] + tail["optimizer_s"][0] + tail["param_gather_s"][0])
    return PipelineInputs(fwd, bwd, plan.micro_batches, plan.schedule.value, c["hop"], not bool(fw.overlaps_p2p(v)), reduce,
                          tail_s, perf.name, fw.name)


def simulate_step(model: ModelSpec, plan: TrainPlan, cluster: Cluster, perf: Perf,
                  framework: Framework | FrameworkName | str = DEFAULT_FRAMEWORK) -> PipelineResult:
    """One training step of ``plan``, simulated event by event."""
    return pipeline_inputs(model, plan, cluster, perf, framework).simulate()


__all__ = ["PipelineInputs", "pipeline_inputs", "simulate_step"]
