"""Self-attention whose projections are ordinary ``nn.Linear`` children, so they can run sparse.

``nn.MultiheadAttention`` keeps its fused Q/K/V projection as a bare ``in_proj_weight`` and reads
``out_proj.weight`` directly inside ``F.multi_head_attention_forward``; neither can become a sparse
module. :class:`SelfAttention` computes the same function (batch-first self-attention) with
``in_proj`` (E -> 3E, the fused Q/K/V projection) and ``out_proj`` (E -> E) called as modules and
``F.scaled_dot_product_attention`` in between, so the engine can replace both by
:class:`~sparsetime.nn.SparseLinear`. :func:`replace_attention` swaps every compatible
``nn.MultiheadAttention`` of a model for one, copying the weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention on (batch, seq, embed) inputs, called like a batch-first
    ``nn.MultiheadAttention`` with ``query is key is value``; returns ``(output, weights or None)``."""

    # Read by nn.TransformerEncoder(Layer) when choosing PyTorch's fused inference path, which takes
    # ``in_proj_weight`` directly and would bypass (or crash on) sparse projections: declaring the
    # projections unfused keeps those layers on the path that calls this module.
    batch_first = True
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, float(dropout)
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias, device=device, dtype=dtype)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``attn_mask`` / ``key_padding_mask`` follow ``nn.MultiheadAttention``: boolean True (or
        a float -inf) marks a position that may not be attended to. ``is_causal`` without a mask
        masks the future (through SDPA's causal kernel when no weights or padding are asked for)."""
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise ValueError("SelfAttention computes self-attention only: pass key and value as the query "
                             "tensor itself (or leave them out)")
        b, t, e = query.shape
        h, hd = self.num_heads, e // self.num_heads
        qkv = self.in_proj(query).reshape(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
            fused_causal = key_padding_mask is None and not need_weights  # SDPA's own causal kernel
        else:
            fused_causal = False
        mask = None if fused_causal else _additive_mask(attn_mask, key_padding_mask, b, h, t, q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if fused_causal:
            ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif need_weights:
            scores = q @ k.transpose(-2, -1) / hd ** 0.5
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            ctx = F.dropout(weights, dropout, self.training) @ v
            weights = weights.mean(1) if average_attn_weights else weights
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(ctx.transpose(1, 2).reshape(b, t, e))
        return out, weights

    @property
    def in_proj_bias(self) -> torch.Tensor | None:
        """The fused projection's bias (read, like the two flags above, by PyTorch's transformer layers)."""
        return getattr(self.in_proj, "bias", None)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "SelfAttention":
        """The equivalent of a batch-first ``nn.MultiheadAttention`` (same weights, copied)."""
        reason = why_not_replaceable(mha)
        if reason is not None:
            raise ValueError(f"cannot replace this nn.MultiheadAttention: {reason}")
        w = mha.in_proj_weight
        new = cls(mha.embed_dim, mha.num_heads, mha.dropout, bias=mha.in_proj_bias is not None,
                  device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.in_proj.weight.copy_(w)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                new.in_proj.bias.copy_(mha.in_proj_bias)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.train(mha.training)


def _additive_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, b: int, h: int,
                   t: int, dtype: torch.dtype) -> torch.Tensor | None:
    """One float mask broadcastable to (b, h, t, t): 0 where allowed, -inf where masked."""
    def additive(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
        return m.to(dtype)

    mask = None
    if attn_mask is not None:
        mask = additive(attn_mask)
        mask = mask.reshape(b, h, t, t) if mask.dim() == 3 else mask
    if key_padding_mask is not None:
        pad = additive(key_padding_mask).reshape(b, 1, 1, t)
        mask = pad if mask is None else mask + pad
    return mask


def why_not_replaceable(mha: nn.Module) -> str | None:
    """None when :meth:`SelfAttention.from_mha` can replace ``mha``, else the reason."""
    if not isinstance(mha, nn.MultiheadAttention):
        return f"{type(mha).__name__} is not an nn.MultiheadAttention"
    if not mha.batch_first:
        return "batch_first=False"
    if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        return "separate key/value dims, bias_k/bias_v or add_zero_attn"
    if (mha.in_proj_bias is None) != (mha.out_proj.bias is None):
        return "a bias on only one of the two projections"
    return None


def replace_attention(model: nn.Module) -> list[str]:
    """Replace, in place, every replaceable ``nn.MultiheadAttention`` inside ``model`` by an
    equivalent :class:`SelfAttention`; returns the names replaced. Do it before building the
    optimizer and the sparsifier (the projections become new Parameters)."""
    replaced = []
    for name, module in list(model.named_modules()):
        if name and why_not_replaceable(module) is None:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, SelfAttention.from_mha(module))
            replaced.append(name)
    for module in model.modules():  # an encoder decides on nested tensors (the fused path) when built
        if isinstance(module, nn.TransformerEncoder) and any(isinstance(m, SelfAttention) for m in module.modules()):
            module.use_nested_tensor = False
    return replaced
