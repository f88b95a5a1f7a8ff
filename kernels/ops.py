"""The torch building blocks of a decoder layer, shared by the microbenchmarks and the validation models, so that
a calibration measures exactly the kernels a model runs (and nothing is fitted to the models themselves)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's activation (tanh approximation; Hendrycks & Gimpel 2016, eq. in Sec. 2)."""
    return F.gelu(x, approximate="tanh")


def swiglu(x13: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up over a fused [gate | up] projection (Shazeer 2020, eq. 6; Llama's MLP)."""
    gate, up = x13.chunk(2, dim=-1)
    return F.silu(gate) * up


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """RMSNorm (Zhang & Sennrich 2019, eq. 4)."""
    return F.rms_norm(x, (x.shape[-1],), weight, 1e-5)


def rope_tables(positions: int, head_dim: int, dtype: torch.dtype = torch.float32,
                device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [positions, head_dim] of rotary embeddings (Su et al. 2021, eq. 34; base 10000)."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    ang = torch.outer(torch.arange(positions, device=device, dtype=torch.float32), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [..., seq, head_dim] by position (the rotate-half form of GPT-NeoX and Llama)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def split_heads(qkv: torch.Tensor, heads: int, kv_heads: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """q [b, heads, s, d], k and v [b, kv_heads, s, d] as views of a fused QKV projection [b, s, (h+2kv)d]."""
    b, s, _ = qkv.shape
    q, k, v = qkv.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
    return (q.view(b, s, heads, head_dim).transpose(1, 2), k.view(b, s, kv_heads, head_dim).transpose(1, 2),
            v.view(b, s, kv_heads, head_dim).transpose(1, 2))


def merge_heads(a: torch.Tensor) -> torch.Tensor:
    """[b, heads, s, d] -> [b, s, heads*d], the input layout of the output projection."""
    return a.transpose(1, 2).reshape(a.shape[0], a.shape[2], -1)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Fused causal attention over full sequences: q [b, heads, s, d], k/v [b, kv_heads, s, d] (GQA allowed)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=q.shape[1] != k.shape[1])


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One new query per sequence against its whole KV cache: q [b, heads, 1, d], k/v [b, kv_heads, t, d].

    The queries of a GQA group share their KV head, so they are folded into one [group, d] block per KV head and
    the cache is read once (the decode layout of FlashDecoding and vLLM's paged attention)."""
    b, heads, _, d = q.shape
    kv_heads = k.shape[1]
    out = F.scaled_dot_product_attention(q.reshape(b, kv_heads, heads // kv_heads, d), k, v)
    return out.reshape(b, heads, 1, d)


def adam_step(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avg: list[torch.Tensor],
              exp_avg_sq: list[torch.Tensor], steps: list[torch.Tensor], lr: float = 1e-4) -> None:
    """One fused Adam step (Kingma & Ba 2015, Alg. 1), as ``torch.optim.Adam(fused=True)`` runs it: count the
    step, then one fused kernel over every tensor."""
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, amsgrad=False, lr=lr, beta1=0.9,
                       beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False)
