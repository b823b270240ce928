"""A small causal transformer for examples/tiny-lm.yaml: byte-level tokens (vocabulary 256),
pre-norm blocks of causal self-attention and a GELU MLP, learned positions. The spec names
``tiny_lm:make``; veritrain finds this module beside the spec and records its sha256 in the run's
manifest, so a challenger replaying with other code is told so (exit 3), never shown fraud.

Plain tensor operations only (no dropout, no fused attention kernels), so a replay on the same
torch computes the same bits."""

from __future__ import annotations

import math

import torch
from torch import nn


class Block(nn.Module):
    mask: torch.Tensor

    def __init__(self, width: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        mask = torch.full((context, context), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(w // self.heads) + self.mask[:t, :t]
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab_size: int, context: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, context) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (batch, context) to next-token logits (batch, context, vocab_size)."""
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def make(*, vocab_size: int, context: int, width: int = 128, layers: int = 6, heads: int = 4):
    """The factory the spec names: veritrain passes the corpus's vocab_size and context."""
    return TinyLM(vocab_size, context, width, layers, heads)
