"""The LM loss's memory-bound passes over the logits, by the kernels a release runs (``LossKernel``).

The op list's head (``capsim.analytic.ops.head_ops``) prices the loss as one softmax pass each way
(``logits_softmax``: read the 16-bit logits, write an fp32 softmax). Megatron's unfused vocab-parallel
cross-entropy runs each step as its own torch op over the [tokens, vocab/t] logits (megatron/core/tensor_parallel/
cross_entropy.py, NVIDIA/Megatron-LM@core_v0.8.0 L27-113, the same at core_v0.14.0 L28-117; megatron/mpu/
cross_entropy.py L31-103 at ML@6985e58 with the caller's ``output.float()``, model/gpt_model.py L56):

- forward: ``vocab_parallel_logits.float()`` (read the 16-bit logits, write fp32), ``torch.max(..., dim=-1)``
  (read), ``vocab_parallel_logits -= logits_max`` (read, write), ``torch.exp(..., out=exp_logits)`` (read, write),
  ``exp_logits.sum(dim=-1)`` (read), ``exp_logits.div_(sum_exp_logits)`` (read, write): the fp32 softmax it saves;
- backward: ``grad_input.mul_(grad_output)`` over that softmax (read, write), and autograd's cast of the fp32
  gradient back to the logits' 16-bit dtype (the backward of ``.float()``: read fp32, write 16 bits).

The gather of the target logits and the [tokens] reductions' all-reduces are per token, not per logit: left out here
(the all-reduces are ``capsim.analytic.training.comms.tp_ends_s``).
"""

from __future__ import annotations

from enum import StrEnum

from capsim._types import Num
from capsim.analytic.primitives import Op, OpKind
from capsim.specs.precision import DType

FP32 = 4.0
LOSS_OP = "logits_softmax"  # the op list's one-pass loss, which a release's own passes replace


class LossKernel(StrEnum):
    """The kernels the LM loss runs over the [tokens, vocab/t] logits."""

    FUSED = "fused"  # one softmax pass each way: the op list's logits_softmax (a fused or single torch kernel)
    # Megatron's unfused vocab_parallel_cross_entropy on an fp32 copy of the logits: the copy, max, subtract, exp,
    # sum and divide each their own pass forward, the multiply by the loss gradient and the cast back backward
    MEGATRON_FP32 = "megatron-fp32"


FUSED_LOSS = LossKernel.FUSED


def _passes(logits_bytes: float) -> tuple[tuple[tuple[str, float, float], ...], tuple[tuple[str, float, float], ...]]:
    """(forward, backward) passes of Megatron's unfused loss: (name, bytes read, bytes written) per logit, the
    logits ``logits_bytes`` wide (module docstring)."""
    fwd = (("ce_float", logits_bytes, FP32), ("ce_max", FP32, 0.0), ("ce_sub", FP32, FP32), ("ce_exp", FP32, FP32),
           ("ce_sum", FP32, 0.0), ("ce_div", FP32, FP32))
    bwd = (("ce_mul.bwd", FP32, FP32), ("ce_cast.bwd", FP32, logits_bytes))
    return fwd, bwd


def megatron_ce_ops(logits: Num, dtype: DType) -> tuple[list[Op], list[Op]]:
    """(forward, backward) ops of Megatron's unfused cross-entropy over ``logits`` values of ``dtype`` on one GPU
    (tokens x vocab / t): each pass a plain memory-bound torch op (``capsim.perf.categories``: streaming)."""
    fwd, bwd = _passes(dtype.bytes)
    return tuple([Op(name, OpKind.ELEMENTWISE, logits, logits * r, logits * w, (logits,), DType.FP32)
                  for name, r, w in passes] for passes in (fwd, bwd))  # type: ignore[return-value]


def loss_ops(head: list[Op], kernel: LossKernel, dtype: DType) -> tuple[list[Op], list[Op] | None]:
    """The head's forward ops with the loss as ``kernel`` runs it, and the loss's backward ops (None: the
    backward of the op list's one-pass loss, ``backward_ops``)."""
    if kernel is LossKernel.FUSED:
        return head, None
    one = next((op for op in head if op.name == LOSS_OP), None)
    if one is None:
        return head, None
    fwd, bwd = megatron_ce_ops(one.shape[0], dtype)
    return [op for op in head if op.name != LOSS_OP] + fwd, bwd


__all__ = ["FUSED_LOSS", "LOSS_OP", "LossKernel", "loss_ops", "megatron_ce_ops"]
