"""Transformer pieces shared by the vision trunk and the pixel decoder.

Module and parameter names match the official checkpoints
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.w1/w2/w3``).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokbench.nn.layers import RMSNorm
from tokbench_vtp.model.rope import apply_rope

NormKind = Literal["rmsnorm", "layernorm"]


#: VTP's RMSNorm epsilon (the checkpoints were trained with it)
RMS_EPS = 1e-5


def make_norm(kind: NormKind, dim: int) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=RMS_EPS)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=1e-6)
    raise ValueError(f"unknown norm {kind!r}; use 'rmsnorm' or 'layernorm'")


class SwiGLU(nn.Module):
    """``w3(silu(w1 x) * w2 x)``, all projections with bias."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class SelfAttention(nn.Module):
    """Fused-qkv multi-head attention through ``scaled_dot_product_attention``, RoPE on non-prefix tokens."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if qk_norm:
            self.q_norm = RMSNorm(self.head_dim, eps=RMS_EPS)
            self.k_norm = RMSNorm(self.head_dim, eps=RMS_EPS)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, k, *rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block without LayerScale.

    ``drop_rate`` is DINOv2's *sample* drop (stochastic depth per sample): in training
    the residual branch runs on a random subset of the batch and is added back scaled
    by B/kept, which saves the compute of the dropped samples.
    """

    def __init__(self, dim: int, num_heads: int, hidden: int, norm: NormKind, qk_norm: bool = False):
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = SelfAttention(dim, num_heads, qk_norm=qk_norm)
        self.norm2 = make_norm(norm, dim)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, drop_rate: float = 0.0) -> Tensor:
        def attention(t: Tensor) -> Tensor:
            return self.attn(self.norm1(t), rope)

        def feed_forward(t: Tensor) -> Tensor:
            return self.mlp(self.norm2(t))

        if self.training and drop_rate > 0.0:
            x = _sample_drop_residual(x, attention, drop_rate)
            return _sample_drop_residual(x, feed_forward, drop_rate)
        x = x + attention(x)
        return x + feed_forward(x)


def _sample_drop_residual(x: Tensor, branch: Callable[[Tensor], Tensor], drop_rate: float) -> Tensor:
    batch = x.shape[0]
    keep = max(int(batch * (1 - drop_rate)), 1)
    chosen = torch.randperm(batch, device=x.device)[:keep]
    residual = branch(x[chosen]).to(x.dtype)
    return torch.index_add(x, 0, chosen, residual, alpha=batch / keep)
