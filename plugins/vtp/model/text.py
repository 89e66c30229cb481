"""The CLIP-style text tower (OpenCLIP ``TextTransformer`` layout and key names):
causal pre-LN transformer with GELU MLPs, ``ln_final``, argmax (EOT) pooling."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameter layout (``in_proj_weight``/``in_proj_bias``/``out_proj``),
    computed with ``scaled_dot_product_attention``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        mask = attn_mask.to(q.dtype) if attn_mask is not None else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, width))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = TextAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, width))])
        )

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    """Only the residual blocks; embeddings, ``ln_final`` and the projection live on the VTP model
    (that is where the official checkpoint keys put them)."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers))

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


def causal_mask(length: int) -> Tensor:
    """Additive mask: -inf above the diagonal."""
    return torch.full((length, length), float("-inf")).triu_(1)


def eot_pool(x: Tensor, tokens: Tensor) -> Tensor:
    """Features at the end-of-text token (the largest id in every row)."""
    return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
