"""Real torch decoders for `capsim validate local`: a GPT-style block (LayerNorm, GeLU, learned positions, MHA,
biases) and a Llama-style block (RMSNorm, SwiGLU, RoPE, GQA, no biases), built from the same kernels/ops.py
functions the microbenchmarks time. Linear layers are laid out as capsim.analytic.ops prices them: one fused QKV
projection, the output projection, one (gate|up) projection, the down projection, and an untied LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels.ops import (
    causal_attention,
    decode_attention,
    gelu,
    layer_norm,
    merge_heads,
    rms_norm,
    rope,
    rope_tables,
    split_heads,
    swiglu,
)


@dataclass(frozen=True)
class DecoderConfig:
    family: str  # "gpt" or "llama"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_seq: int
    head_dim: int = 64

    @property
    def llama(self) -> bool:
        return self.family == "llama"


class Block(nn.Module):
    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.c = c
        bias = not c.llama
        q, kv = c.heads * c.head_dim, c.kv_heads * c.head_dim
        self.norm1 = nn.Parameter(torch.ones(c.hidden))
        self.norm1_b = nn.Parameter(torch.zeros(c.hidden)) if bias else None
        self.qkv = nn.Linear(c.hidden, q + 2 * kv, bias=bias)
        self.proj = nn.Linear(q, c.hidden, bias=bias)
        self.norm2 = nn.Parameter(torch.ones(c.hidden))
        self.norm2_b = nn.Parameter(torch.zeros(c.hidden)) if bias else None
        self.up = nn.Linear(c.hidden, (2 if c.llama else 1) * c.ffn, bias=bias)
        self.down = nn.Linear(c.ffn, c.hidden, bias=bias)

    def _norm(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return rms_norm(x, w) if self.c.llama else layer_norm(x, w, b)

    def forward(self, x: torch.Tensor, rot: tuple[torch.Tensor, torch.Tensor] | None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None, pos: int = 0) -> torch.Tensor:
        c = self.c
        s = x.shape[1]
        q, k, v = split_heads(self.qkv(self._norm(x, self.norm1, self.norm1_b)), c.heads, c.kv_heads, c.head_dim)
        if rot is not None:
            q, k = rope(q, *rot), rope(k, *rot)
        if cache is None:
            a = causal_attention(q, k, v)
        else:
            kc, vc = cache
            kc[:, :, pos:pos + s].copy_(k)
            vc[:, :, pos:pos + s].copy_(v)
            a = causal_attention(q, k, v) if s > 1 else decode_attention(q, kc[:, :, :pos + 1], vc[:, :, :pos + 1])
        x = x + self.proj(merge_heads(a))
        h = self.up(self._norm(x, self.norm2, self.norm2_b))
        return x + self.down(swiglu(h) if c.llama else gelu(h))


class Decoder(nn.Module):
    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab, c.hidden)
        self.pos = None if c.llama else nn.Embedding(c.max_seq, c.hidden)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = nn.Parameter(torch.ones(c.hidden))
        self.norm_b = None if c.llama else nn.Parameter(torch.zeros(c.hidden))
        self.head = nn.Linear(c.hidden, c.vocab, bias=False)
        if c.llama:
            cos, sin = rope_tables(c.max_seq, c.head_dim)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def hidden_states(self, idx: torch.Tensor, caches: list | None = None, pos: int = 0) -> torch.Tensor:
        s = idx.shape[1]
        x = self.embed(idx)
        rot = None
        if self.c.llama:
            rot = (self.cos[pos:pos + s], self.sin[pos:pos + s])
        else:
            x = x + self.pos.weight[pos:pos + s]
        for i, block in enumerate(self.blocks):
            x = block(x, rot, None if caches is None else caches[i], pos)
        return rms_norm(x, self.norm) if self.c.llama else layer_norm(x, self.norm, self.norm_b)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_states(idx))

    def new_caches(self, batch: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.c
        shape = (batch, c.kv_heads, length, c.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(c.layers)]

    def next_tokens(self, idx: torch.Tensor, caches: list, pos: int) -> torch.Tensor:
        """Serving: run ``idx`` (a prompt, or one token per sequence) from ``pos``, writing the KV caches; then the
        LM head and the softmax on the last position only: the next-token distribution, where capsim's serving op
        list (``head_ops``) ends. Drawing the token from it is the sampler's work, outside the op list."""
        h = self.hidden_states(idx, caches, pos)[:, -1]
        return torch.softmax(self.head(h), dim=-1)


def train_step(model: Decoder, opt: torch.optim.Optimizer, idx: torch.Tensor, targets: torch.Tensor) -> None:
    """Forward, cross-entropy loss, backward, Adam."""
    logits = model(idx)
    F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
