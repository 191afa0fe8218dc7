"""A GPT-style decoder whose every projection is an ``nn.Linear`` (so every one can run sparse).

Token and position embeddings (kept dense by the engine: they are not Linear weights), ``layers``
pre-norm blocks of causal :class:`~sparsetime.nn.SelfAttention` (fused Q/K/V ``in_proj``,
``out_proj``) and a GELU MLP (``fc``, ``proj``), a final LayerNorm and an LM ``head``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.attention import SelfAttention


class DecoderBlock(nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then x + proj(gelu(fc(ln2(x))))."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        self.fc = nn.Linear(width, ffn)
        self.proj = nn.Linear(ffn, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), is_causal=True)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    """Causal language model: (batch, seq) token ids -> (batch, seq, vocab) logits."""

    def __init__(self, vocab: int = 4096, width: int = 512, heads: int = 8, ffn: int = 2048, layers: int = 6,
                 max_seq: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.max_seq = max_seq
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(max_seq, width)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, ffn, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.max_seq:
            raise ValueError(f"sequence of {t} tokens is longer than max_seq={self.max_seq}")
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def lm_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of ``model`` on ``tokens`` (predict tokens[:, 1:] from tokens[:, :-1])."""
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
