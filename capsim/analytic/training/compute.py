"""Compute time of one micro-batch: each layer's forward, backward and recomputation, and the embedding and LM
head on the end stages, priced op by op from the op list (``capsim.analytic.ops``) under one calibration.

Layouts that share a layer shape (tp, cp, ep, micro-batch, sequence, SP) share these times, so they are computed
once per distinct shape and spread back over the layouts (a sweep of 10^5 layouts holds a few hundred shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from capsim.analytic.layouts import Layouts
from capsim.analytic.ops import (
    AttentionImpl,
    Op,
    OpKind,
    backward_ops,
    forward_layer_ops,
    head_ops,
    layer_shape,
)
from capsim.perf import Perf
from capsim.specs.model import Arch, ModelSpec
from capsim.specs.precision import Precision

# Attention's core: what selective recomputation replays (Korthikanti et al. 2022, Sec. 5: QK^T, softmax,
# dropout and attention over V), and what ring attention runs once per context-parallel block.
CORE_OPS = frozenset({"attn_scores", "softmax", "attn_dropout", "attn_context"})
ATTENTION_OPS = CORE_OPS | {"attention"}
# Ops outside the tensor-parallel region: with sequence parallelism they run on s/t tokens (Korthikanti Sec. 4.2.2).
SEQUENCE_OPS = frozenset({"norm_attn", "residual_attn", "norm_mlp", "residual_mlp", "norm_cross", "residual_cross",
                          "final_norm", "norm_attn_post", "norm_mlp_post"})
GEMM_OPS = frozenset({"qkv", "attn_out", "mlp_up", "mlp_down", "shared_up", "shared_down", "router",
                      "cross_qkv", "cross_out", "q_proj", "q_down", "q_up", "kv_down", "kv_up"})  # last 5: MLA
SHAPE_KEYS = ("tp", "cp", "ep", "micro_batch", "seq_len", "sp")


@dataclass(frozen=True)
class MicroBatchTimes:
    """Seconds of one micro-batch on one GPU (arrays over layouts)."""

    layer_fwd_s: np.ndarray  # one layer's forward
    layer_bwd_s: np.ndarray  # one layer's backward (data and weight gradients)
    layer_core_s: np.ndarray  # the attention core's forward (what selective recomputation replays)
    layer_gemm_fwd_s: np.ndarray  # the layer's weight GEMMs in the forward (what TP comm could hide behind)
    layer_attn_fwd_s: np.ndarray  # attention core forward (what ring-attention KV passing hides behind)
    layer_attn_bwd_s: np.ndarray  # attention core backward
    qkv_dgrad_s: np.ndarray  # the column-parallel GEMMs' backward halves (what async TP comm hides behind)
    qkv_wgrad_s: np.ndarray
    up_dgrad_s: np.ndarray
    up_wgrad_s: np.ndarray
    embed_fwd_s: np.ndarray  # embedding lookup (first stage)
    embed_bwd_s: np.ndarray
    head_fwd_s: np.ndarray  # final norm, LM head and loss (last stage)
    head_bwd_s: np.ndarray

    def take(self, index: np.ndarray) -> MicroBatchTimes:
        return MicroBatchTimes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _base(name: str) -> str:
    base = name.split(".")[0]
    return base[len("cross_"):] if base.startswith("cross_") else base


def _op_s(perf: Perf, op: Op, lay: Layouts, precision: Precision) -> np.ndarray:
    """One op's time on this layout: SP shrinks the ops outside the TP region, CP repeats attention per block."""
    base = _base(op.name)
    if base in SEQUENCE_OPS or op.name.split(".")[0] in SEQUENCE_OPS:
        shard = np.where(lay.sp, lay.tp, 1)
        op = replace(op, bytes_read=op.bytes_read / shard, bytes_written=op.bytes_written / shard,
                     flops=op.flops / shard)
    if op.kind is OpKind.GEMM and base not in CORE_OPS:
        op = replace(op, dtype=precision.compute)  # weight GEMMs run in the compute format (fp8 recipes)
    t = perf.op_s(op)
    if base in ATTENTION_OPS:
        # Ring attention: each rank's s/cp queries meet all s keys in cp blocks of the local size
        # (Liu et al. 2023, "Ring Attention", Sec. 3; causal blocks load-balanced as in Megatron-Core CP).
        t = t * lay.cp
    return np.asarray(t, float)


def _sum(perf: Perf, ops: list[Op], lay: Layouts, precision: Precision, names: frozenset[str] | None = None
         ) -> np.ndarray:
    out = np.zeros(len(lay))
    for op in ops:
        if names is None or _base(op.name) in names:
            out = out + _op_s(perf, op, lay, precision)
    return out


def _layer(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, attention: AttentionImpl,
           dropout: bool, cross: bool) -> dict[str, np.ndarray]:
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    shape = layer_shape(model, tokens, lay.micro_batch, lay.tp, lay.ep, lay.sp)
    fwd = forward_layer_ops(model, shape, precision.activations, attention, dropout, cross, model.causal)
    bwd = backward_ops(fwd)
    return {"layer_fwd_s": _sum(perf, fwd, lay, precision), "layer_bwd_s": _sum(perf, bwd, lay, precision),
            "layer_core_s": _sum(perf, fwd, lay, precision, CORE_OPS),
            "layer_gemm_fwd_s": _sum(perf, fwd, lay, precision, GEMM_OPS),
            "layer_attn_fwd_s": _sum(perf, fwd, lay, precision, ATTENTION_OPS),
            "layer_attn_bwd_s": _sum(perf, bwd, lay, precision, ATTENTION_OPS),
            **{f"{short}_{half}_s": _named(perf, bwd, lay, precision, f"{name}.{half}")
               for short, name in (("qkv", "qkv"), ("up", "mlp_up")) for half in ("dgrad", "wgrad")}}


def _named(perf: Perf, ops: list[Op], lay: Layouts, precision: Precision, name: str) -> np.ndarray:
    return sum((_op_s(perf, op, lay, precision) for op in ops if op.name == name), np.zeros(len(lay)))


def _times(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf, attention: AttentionImpl,
           dropout: bool) -> MicroBatchTimes:
    out = _layer(model, lay, precision, perf, attention, dropout, cross=False)
    if model.arch is Arch.ENCODER_DECODER:  # decoder layers add cross-attention; average over the stack
        dec = _layer(model, lay, precision, perf, attention, dropout, cross=True)
        out = {k: (out[k] * model.encoder_layers + dec[k] * model.layers) / model.total_layers for k in out}
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    head = head_ops(model, tokens, lay.tp, precision.activations)
    embed, rest = [o for o in head if o.name == "embedding"], [o for o in head if o.name != "embedding"]
    out.update(embed_fwd_s=_sum(perf, embed, lay, precision), embed_bwd_s=_sum(perf, backward_ops(embed), lay,
                                                                                 precision),
               head_fwd_s=_sum(perf, rest, lay, precision), head_bwd_s=_sum(perf, backward_ops(rest), lay, precision))
    return MicroBatchTimes(**out)


def distinct(lay: Layouts, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(first index of each distinct combination of ``keys``, the combination index of every layout)."""
    code = np.zeros(len(lay), np.int64)
    for k in keys:  # one mixed-radix code per combination (each column has few distinct values)
        values, column = np.unique(np.asarray(getattr(lay, k), np.int64), return_inverse=True)
        code = code * len(values) + column.reshape(-1)
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return first, np.asarray(inverse).reshape(-1)


def micro_batch_times(model: ModelSpec, lay: Layouts, precision: Precision, perf: Perf,
                      attention: AttentionImpl = AttentionImpl.FLASH, dropout: bool = False) -> MicroBatchTimes:
    """Per-micro-batch compute times of every layout, computed once per distinct layer shape."""
    first, inverse = distinct(lay, SHAPE_KEYS)
    return _times(model, lay.take(first), precision, perf, attention, dropout).take(inverse)


__all__ = ["CORE_OPS", "MicroBatchTimes", "distinct", "micro_batch_times"]
