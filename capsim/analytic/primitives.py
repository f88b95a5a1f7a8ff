"""The building blocks of the op list: an Op, its kinds and phases, a serving step's shape, and the GEMM and
memory-bound constructors that ``capsim.analytic.ops`` and ``capsim.analytic.attention`` assemble into layers.

Conventions (shared by the whole op list):
- a GEMM is C[m, n] = A[m, k] @ B[k, n]; ``flops = 2 m n k``; its shape is ``(m, n, k)``;
- attention's shape is ``(sequences, heads per rank, query tokens, key tokens, head_dim)``, token counts summed
  over the sequences;
- ``saved`` is what the forward pass keeps for the backward pass (Korthikanti et al. 2022, Sec. 4.1);
- ``count`` identical instances run in one launch (the routed experts a GPU holds); ``share`` is the fraction of the
  model's layers that run the op at all (DeepSeek's dense FFN in 3 of 61 layers, Gemma 3's global attention in 1 of
  6), so ``layers x`` a layer's ops is the whole stack exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.specs.precision import DType


class OpKind(StrEnum):
    GEMM = "gemm"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    NORM = "norm"


class Phase(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"
    PREFILL = "prefill"
    DECODE = "decode"


class AttentionImpl(StrEnum):
    FLASH = "flash"  # one fused kernel, no s^2 tensor in memory (Dao et al. 2022): the calibration's attention curve
    # torch scaled_dot_product_attention's flash backend: FlashAttention-2's kernels (PyTorch 2.2 release notes,
    # "FlashAttention-2 ... in SDPA"); fused like FLASH, priced by the calibration's rate for that kernel where it
    # holds one (``AttentionParams.kernels``)
    SDPA_FLASH = "sdpa-flash"
    UNFUSED = "unfused"  # bmm + fused scale-mask-softmax + dropout + bmm (Megatron-LM 2020-2022)

    @property
    def fused(self) -> bool:
        """One kernel that keeps no s^2 tensor."""
        return self is not AttentionImpl.UNFUSED


class Saved(StrEnum):
    """How a saved activation is sharded (Korthikanti et al. 2022, Table 2)."""

    TP = "tp"  # inside the tensor-parallel region: divided by t
    SP = "sp"  # outside it (norms, dropout, block inputs): divided by t only with sequence parallelism
    CORE = "core"  # attention's s^2 tensors: divided by t, dropped by selective recomputation


@dataclass(frozen=True)
class Op:
    """One kernel of a layer, as seen by one GPU."""

    name: str
    kind: OpKind
    flops: Num
    bytes_read: Num
    bytes_written: Num
    shape: tuple[Num, ...]
    dtype: DType = DType.BF16  # format of the math (GEMM/attention) or of the data (memory-bound ops)
    count: Num = 1  # identical instances (routed experts held by this GPU)
    saved: tuple[tuple[Saved, Num], ...] = ()  # activations kept for backward, by sharding class
    causal: bool = True
    impl: str = ""  # which variant of a memory-bound op (the model's norm or MLP activation); "" = generic
    share: Num = 1.0  # fraction of the model's layers that run this op (1 = every layer)
    # (bytes read, bytes written) of a memory-bound op's backward kernel where autograd's is not the generic one
    # (``backward_ops``); (0, 0): its backward launches nothing (the gradient of a view or a copy passes through)
    grad: tuple[Num, Num] | None = None

    @property
    def bytes(self) -> Num:
        return self.bytes_read + self.bytes_written

    @property
    def total_flops(self) -> Num:
        return self.flops * self.count * self.share

    def saved_bytes(self, tp: Num = 1, sp: Num = False, selective: Num = False) -> Num:
        """Bytes kept for backward. ``saved`` entries already carry the 1/t of TP and CORE tensors;
        SP tensors are stored whole and divided by ``tp`` here when sequence parallelism is on."""
        out: Num = 0.0
        for kind, size in self.saved:
            if kind is Saved.SP:
                out = out + np.where(sp, size / tp, size)
            elif kind is Saved.CORE:
                out = out + np.where(selective, 0.0, size)
            else:
                out = out + size
        return out * self.count * self.share


@dataclass(frozen=True)
class StepBatch:
    """Aggregate shape of the sequences in one serving engine step (vectorisable over steps).

    ``attention_pairs`` counts (query, key) pairs the causal kernel visits: a chunk of q new tokens after c
    cached ones visits q*c + q*(q+1)/2 pairs.
    """

    sequences: Num  # sequences in the step
    new_tokens: Num  # tokens whose activations are computed (prefill chunks + one per decoding sequence)
    attention_pairs: Num  # sum over sequences of causal (query, key) pairs
    kv_tokens: Num  # sum over sequences of keys attended to (cached + new): KV-cache tokens read

    @classmethod
    def prefill(cls, batch: Num, prompt_tokens: Num, cached_tokens: Num = 0) -> StepBatch:
        q, c = np.asarray(prompt_tokens, float), np.asarray(cached_tokens, float)
        return cls(batch, batch * q, batch * (q * c + q * (q + 1) / 2), batch * (c + q))

    @classmethod
    def decode(cls, batch: Num, context_tokens: Num) -> StepBatch:
        """``batch`` sequences each generating one token after ``context_tokens`` (prompt + generated)."""
        ctx = np.asarray(context_tokens, float)
        return cls(batch, batch, batch * (ctx + 1), batch * (ctx + 1))


def gemm(name: str, m: Num, n: Num, k: Num, dtype: DType, act_bytes: float, weight_bytes: float,
         saved: tuple[tuple[Saved, Num], ...] = (), count: Num = 1, share: Num = 1.0) -> Op:
    """A linear layer: activations [m, k] times weights [k, n]."""
    return Op(name, OpKind.GEMM, 2.0 * m * n * k, m * k * act_bytes + k * n * weight_bytes, m * n * act_bytes,
              (m, n, k), dtype, count, saved, share=share)


def elementwise(name: str, elements: Num, dtype: DType, reads: float = 1.0, writes: float = 1.0,
                flops_per_element: float = 1.0, saved: tuple[tuple[Saved, Num], ...] = (),
                kind: OpKind = OpKind.ELEMENTWISE, extra_write_bytes: Num = 0.0, share: Num = 1.0) -> Op:
    """A memory-bound op over ``elements`` values, reading ``reads`` and writing ``writes`` tensors of that size."""
    b = dtype.bytes
    return Op(name, kind, flops_per_element * elements, reads * elements * b,
              writes * elements * b + extra_write_bytes, (elements,), dtype, 1, saved, share=share)


def norm(name: str, elements: Num, dtype: DType, saved: tuple[tuple[Saved, Num], ...] = (),
         share: Num = 1.0) -> Op:
    """A LayerNorm/RMSNorm pass over ``elements`` values (5 FLOPs each)."""
    return elementwise(name, elements, dtype, 1, 1, 5, saved, OpKind.NORM, share=share)


def backward_ops(forward: Iterable[Op]) -> list[Op]:
    """The backward pass of forward ops, in reverse order.

    A GEMM (m, n, k) becomes its data-gradient GEMM (m, k, n) and weight-gradient GEMM (k, n, m), each with
    the forward FLOPs. Flash attention's backward recomputes QK^T: 5 matmuls against the forward's 2
    (Dao 2023, FlashAttention-2, Sec. 3.1.2). A memory-bound op y = f(x) reads dy and x and writes dx, unless it
    states its backward's traffic (``Op.grad``).
    """
    out: list[Op] = []
    for op in reversed(list(forward)):
        if op.kind is OpKind.GEMM:
            m, n, k = op.shape
            ab = op.bytes_written / np.maximum(m * n, 1e-30)
            out.append(replace(op, name=op.name + ".dgrad", shape=(m, k, n), bytes_read=m * n * ab + op.bytes_read
                               - m * k * ab, bytes_written=m * k * ab, saved=()))
            out.append(replace(op, name=op.name + ".wgrad", shape=(k, n, m), bytes_read=m * n * ab + m * k * ab,
                               bytes_written=op.bytes_read - m * k * ab, saved=()))
        elif op.kind is OpKind.ATTENTION:
            out.append(replace(op, name=op.name + ".bwd", flops=2.5 * op.flops,
                               bytes_read=op.bytes_read + 2 * op.bytes_written,
                               bytes_written=op.bytes_read, saved=()))
        elif op.grad is not None:
            read, written = op.grad
            if np.any(np.asarray(read) + np.asarray(written) > 0):
                out.append(replace(op, name=op.name + ".bwd", bytes_read=read, bytes_written=written, saved=(),
                                   grad=None))
        else:
            out.append(replace(op, name=op.name + ".bwd", bytes_read=op.bytes_read + op.bytes_written,
                               bytes_written=op.bytes_read, saved=()))
    return out


def total(ops: Iterable[Op], attr: str = "flops", kinds: Iterable[OpKind] | None = None) -> Num:
    """Sum one field over ops (times their count and layer share), optionally over some kinds only."""
    keep = set(kinds) if kinds is not None else set(OpKind)
    out: Num = 0.0
    for op in ops:
        if op.kind in keep:
            out = out + getattr(op, attr) * op.count * op.share
    return out


MATMUL_KINDS = (OpKind.GEMM, OpKind.ATTENTION)
__all__ = ["MATMUL_KINDS", "AttentionImpl", "Op", "OpKind", "Phase", "Saved", "StepBatch", "backward_ops",
           "elementwise", "gemm", "norm", "total"]
