"""Replay of Megatron-Core's EP A2A overlap at kernel granularity, to check capsim's analytic pricing of it (issue 12).

One host thread issues one layer's kernels at a time, each after its host time (capsim.analytic.training.host), on two
CUDA streams: a kernel starts once the host has issued it, its stream is free and the node it waits on has finished.
Two schedules of a stack of identical MoE layers, steady state, seconds per layer and micro-batch:
- without the overlap: a micro-batch's forward of every layer, then another's backward (1F1B steady state), all on the
  compute stream, the host waiting for the router's counts before each forward dispatch (host.SyncPoint);
- with it: TransformerLayerSchedulePlan.run's order (megatron/core/models/common/model_chunk_schedule_plan.py
  L176-239, NVIDIA/Megatron-LM@0d8e0714): combine_bwd (comm) | attn_fwd, post_attn_fwd (comp) | mlp_bwd (comp) |
  host wait, dispatch_fwd (comm) | mlp_bwd_dw (comp, delay_wgrad_compute) | dispatch_bwd (comm) | mlp_fwd (comp) |
  combine_fwd (comm) | post_attn_bwd, attn_bwd, attn_bwd_dw (comp); each node waits for its micro-batch's previous
  node (the chunk's shared event, megatron/core/pipeline_parallel/utils.py stream_acquire_context).
``--host-scale`` multiplies every host time (a sensitivity, not a calibration).

usage: python benchmarks/ep_overlap_replay.py training_bridge_blackwell.csv 57 [--host-scale 1 2 3]
"""

from __future__ import annotations

import argparse

import numpy as np

from capsim.analytic.training import comms, host
from capsim.analytic.training.compute import EXPERT_NODE_OPS, _op_s, layer_op_lists
from capsim.analytic.training.release import CpRotate
from capsim.specs.catalog import get_accelerator
from capsim.validation import training as vt
from capsim.validation.harness import read_csv
from capsim.validation.training_rows import row_precision

_POST_ATTN = {"norm_mlp", "router", "moe_router_topk", "moe_permute"}
_COMBINE = {"moe_unpermute", "residual_mlp"}


def _node(name: str, launches: float, backward: bool) -> str:
    """The schedule node an op runs in (fine_grained_callables.build_transformer_layer_callables at 0d8e0714)."""
    base = name.split(".")[0]
    if base in _COMBINE:
        return "combine_b" if backward else "combine"
    if base in _POST_ATTN:
        return "post_attn_b" if backward else "post_attn"
    expert = base in EXPERT_NODE_OPS or base.startswith("moe_fp8") or (base == "fp8_cast" and launches > 1)
    wgrad = name.endswith(".wgrad")
    if expert:
        return ("mlp_dw" if wgrad else "mlp_b") if backward else "mlp"
    return ("attn_dw" if wgrad else "attn_b") if backward else "attn"


def row_nodes(file: str, index: int):
    """(row, {node: [(gpu_s, host_s)]}, one all-to-all's seconds) of a shipped validation row's layout."""
    r = read_csv(None, file, vt.REQUIRED)[index]
    release, fw, defaults = vt.row_release(r)
    model, acc = vt.row_model(r), get_accelerator(r["gpu"])
    cluster = vt.row_cluster(r, acc)
    perf = vt.perf_for(acc, vt.row_calibration("profile", acc.name))
    precision = row_precision(r, fw)
    published = vt.published_settings(r)
    r = vt.with_dp(r, published["cp"] or int(defaults["cp"]))
    fixed = {"tp": vt.cell_int(r, "tp"), "pp": vt.cell_int(r, "pp"), "ep": vt.row_ep(r), "etp": defaults["etp"],
             "distributed_optimizer": defaults["distributed_optimizer"], **published}
    split = {k: defaults.get(k) for k in ("account_for_embedding", "account_for_loss", *vt.SPLIT_FLAGS.values())}
    blanks = {k: defaults[k] for k, v in published.items() if v is None}
    lay, _ = vt._point(r, {**fixed, **blanks, **split}, fw, cluster, perf, precision)
    share = 1.0 if model.dense_layers else None
    _, fwd, bwd = layer_op_lists(model, lay, precision, fw.attention, fw.dropout, False, share, fw.moe_fp8_padding,
                                 fw.moe_random_routing, fw.tp_gather_quantized, fw.cp_rotate is not CpRotate.P2P,
                                 fw.norm_quantize, fw.repeat_kv, fw.eager())
    nodes: dict[str, list[tuple[float, float]]] = {}
    for ops, backward in ((fwd, False), (bwd, True)):
        for op in ops:
            g = float(np.ravel(_op_s(perf, op, lay, precision))[0])
            h = float(np.ravel(host.op_host_s(op, precision))[0])
            n = float(np.ravel(host.launches(op, precision))[0])
            if g or h:
                nodes.setdefault(_node(op.name, n, backward), []).append((g, h))
    from capsim.analytic.training.stages import LayerTimes
    t = LayerTimes.of(model, lay, precision, perf, fw).moe
    ep_f, _ = comms.ep_layer_s(perf, model, lay, precision, cluster.gpus_per_node, t, fw.with_(overlap_moe_a2a=False))
    return r, nodes, float(np.ravel(ep_f)[0]) / 2.0  # a pass's dispatch and combine, each half of the pass's time


class Replay:
    """One host thread and two streams (module docstring)."""

    def __init__(self, host_scale: float):
        self.host_t, self.scale = 0.0, host_scale
        self.free = {"comp": 0.0, "comm": 0.0}
        self.done: dict[tuple, float] = {}

    def node(self, key: tuple, ops: list[tuple[float, float]], stream: str, after: tuple | None = None,
             a2a_s: float = 0.0) -> None:
        ready = self.done.get(after, 0.0) if after else 0.0
        end = self.free[stream]
        for g, h in ops + ([(a2a_s, host.EAGER_OP_S / self.scale)] if a2a_s else []):
            self.host_t += h * self.scale
            end = max(self.host_t, end, ready) + g
        self.free[stream] = self.done[key] = end

    def wait(self, key: tuple) -> None:
        self.host_t = max(self.host_t, self.done[key])


def _pair(s: Replay, n: dict, a2a: float, layer: int, f: int, b: int) -> None:
    s.node(("cb", b, layer), n.get("combine_b", []), "comm", ("in_b", b, layer), a2a)
    s.node(("af", f, layer), n["attn"], "comp", ("in_f", f, layer))
    s.node(("pf", f, layer), n["post_attn"], "comp", ("af", f, layer))
    s.node(("mb", b, layer), n["mlp_b"], "comp", ("cb", b, layer))
    s.wait(("pf", f, layer))  # the dispatcher's host wait for the routed counts
    s.node(("df", f, layer), [], "comm", ("pf", f, layer), a2a)
    s.node(("mdw", b, layer), n["mlp_dw"], "comp", ("mb", b, layer))
    s.node(("db", b, layer), [], "comm", ("mb", b, layer), a2a)
    s.node(("mf", f, layer), n["mlp"], "comp", ("df", f, layer))
    s.node(("cf", f, layer), n.get("combine", []), "comm", ("mf", f, layer), a2a)
    s.node(("pb", b, layer), n["post_attn_b"], "comp", ("db", b, layer))
    s.node(("ab", b, layer), n["attn_b"] + n["attn_dw"], "comp", ("pb", b, layer))
    s.done[("in_f", f, layer + 1)], s.done[("in_b", b, layer - 1)] = s.done[("cf", f, layer)], s.done[("ab", b, layer)]


def _alone(s: Replay, n: dict, a2a: float, layers: int, f: int, b: int) -> None:
    for layer in range(layers):
        s.node(("pf", f, layer), n["attn"] + n["post_attn"], "comp")
        s.wait(("pf", f, layer))  # the dispatcher's host wait for the routed counts
        s.node(("df", f, layer), [], "comp", a2a_s=a2a)
        s.node(("mf", f, layer), n["mlp"], "comp", a2a_s=a2a)
        s.node(("cf", f, layer), n.get("combine", []), "comp")
    for layer in reversed(range(layers)):
        s.node(("cb", b, layer), n.get("combine_b", []), "comp", a2a_s=a2a)
        s.node(("mb", b, layer), n["mlp_b"] + n["mlp_dw"], "comp", a2a_s=a2a)
        s.node(("ab", b, layer), n["post_attn_b"] + n["attn_b"] + n["attn_dw"], "comp")


def per_layer_s(n: dict, a2a: float, overlap: bool, host_scale: float = 1.0, layers: int = 12,
                micro_batches: int = 8) -> float:
    s = Replay(host_scale)
    for m in range(micro_batches):
        if overlap:
            for layer in range(layers):
                _pair(s, n, a2a, layer, m + 1, m)
        else:
            _alone(s, n, a2a, layers, m + 1, m)
    return max(s.free.values()) / (layers * micro_batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("index", type=int)
    ap.add_argument("--host-scale", type=float, nargs="*", default=[1.0])
    args = ap.parse_args()
    r, nodes, a2a = row_nodes(args.file, args.index)
    print(f"row: {r['software']} {r['model']} {r['gpu']} {r['flags']}")
    for node, ops in nodes.items():
        print(f"node {node}: gpu_ms {1e3 * sum(g for g, _ in ops):.3f} host_ms {1e3 * sum(h for _, h in ops):.3f}")
    print(f"a2a_ms: {1e3 * a2a:.3f}")
    for scale in args.host_scale:
        alone, paired = per_layer_s(nodes, a2a, False, scale), per_layer_s(nodes, a2a, True, scale)
        print(f"host x{scale:g}: without_ms {1e3 * alone:.2f} with_ms {1e3 * paired:.2f} ratio {paired / alone:.3f}")


if __name__ == "__main__":
    main()
