"""The aten kernels torch runs for torchtitan's eager Llama pointwise code (and NeMo AutoModel's rotate-half RoPE), and
the bytes each moves.

Provenance of ``capsim.analytic.eager``: a ``TorchDispatchMode`` logs every aten op of the forward and the
autograd backward of torchtitan's RMSNorm (9dec370 torchtitan/models/norms.py L77-101), apply_rotary_emb
(torchtitan/models/llama/model.py L87-113) and the SwiGLU product (L253), copied below; views (an output that shares
an input's storage) move nothing; every other op reads its inputs' storage once and writes its outputs. Printed as
bytes per element of the op's output tensor (RoPE: of q and k together). Run: ``python benchmarks/eager_kernels.py``
(CPU torch is enough: the ops and autograd formulas, tools/autograd/derivatives.yaml, are the CUDA build's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _nbytes(t: torch.Tensor) -> int:
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


class _Log(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[tuple[str, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        ins = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        storages = {a.untyped_storage().data_ptr(): a for a in ins}
        if outs and all(o.untyped_storage().data_ptr() in storages for o in outs):
            return out  # a view
        self.kernels.append((str(func), sum(_nbytes(a) for a in storages.values()), sum(_nbytes(o) for o in outs)))
        return out


class RMSNorm(torch.nn.Module):
    """torchtitan 9dec370 torchtitan/models/norms.py RMSNorm."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self._norm(x.float()).type_as(x)
        return output * self.weight


def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchtitan 9dec370 torchtitan/models/llama/model.py apply_rotary_emb (reshape_for_broadcast inlined)."""
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = freqs_cis.view(1, xq.shape[1], 1, xq_.shape[-1])
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


def apply_rotary_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NeMo AutoModel 8d9bfb9 nemo_automodel/components/models/gpt_oss/layers.py L30-40 _apply_rotary_emb (also
    qwen3_moe/layers.py L132-133): the rotate-half form in the activation dtype."""
    cos = cos.unsqueeze(-2).to(x.dtype)
    sin = sin.unsqueeze(-2).to(x.dtype)
    x1, x2 = torch.chunk(x, 2, dim=-1)
    o1 = x1 * cos - x2 * sin
    o2 = x2 * cos + x1 * sin
    return torch.cat((o1, o2), dim=-1)


def _report(name: str, fn, inputs: tuple[torch.Tensor, ...], elements: int) -> None:  # noqa: ANN001
    log = _Log()
    with log:
        outs = fn(*inputs)
    fwd, log.kernels = log.kernels, []
    outs = outs if isinstance(outs, tuple) else (outs,)
    grads = [torch.randn_like(o) for o in outs]
    with log:
        torch.autograd.backward(outs, grads)
    for tag, kernels in (("forward", fwd), ("backward", log.kernels)):
        moved = sum(r + w for _, r, w in kernels) / elements
        print(f"{name} {tag}: {len(kernels)} kernels, {moved:.2f} bytes/element")
        for op, r, w in kernels:
            print(f"    {op}: read {r / elements:.2f}, write {w / elements:.2f}")


def main(tokens: int = 4096) -> None:
    bf16 = torch.bfloat16
    hidden, heads, kv_heads, head_dim, inner = 4096, 32, 8, 128, 14336  # Llama 3 8B
    x = torch.randn(1, tokens, hidden, dtype=bf16, requires_grad=True)
    _report("rmsnorm", RMSNorm(hidden).to(bf16), (x,), tokens * hidden)
    xq = torch.randn(1, tokens, heads, head_dim, dtype=bf16, requires_grad=True)
    xk = torch.randn(1, tokens, kv_heads, head_dim, dtype=bf16, requires_grad=True)
    freqs = torch.polar(torch.ones(tokens, head_dim // 2), torch.randn(tokens, head_dim // 2))
    _report("rope", lambda q, k: apply_rotary_emb(q, k, freqs), (xq, xk), tokens * (heads + kv_heads) * head_dim)
    cos, sin = torch.randn(1, tokens, head_dim // 2), torch.randn(1, tokens, head_dim // 2)  # fp32, as AutoModel's
    _report("rope_half", lambda q, k: (apply_rotary_half(q, cos, sin), apply_rotary_half(k, cos, sin)), (xq, xk),
            tokens * (heads + kv_heads) * head_dim)
    gate = torch.randn(tokens, inner, dtype=bf16, requires_grad=True)
    up = torch.randn(tokens, inner, dtype=bf16, requires_grad=True)
    _report("swiglu", lambda a, b: F.silu(a) * b, (gate, up), tokens * inner)


if __name__ == "__main__":
    main()
