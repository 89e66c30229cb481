"""Axial 2-D rotary position embedding, computed in bf16 exactly as VTP's checkpoints expect.

The official model keeps ``periods`` as a persistent bf16 buffer and computes the
coordinates, angles, sin and cos in bf16; q and k are cast to bf16 for the rotation
and cast back, *even when the model runs in fp32*. Replicating this is what makes
our outputs match the reference bit for bit rather than to ~1e-4.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ROPE_DTYPE = torch.bfloat16


class RopePositionEmbedding(nn.Module):
    """Per-axis RoPE over a ``H x W`` patch grid; coordinates are patch centres mapped to [-1, 1] per axis."""

    def __init__(self, head_dim: int, base: float = 100.0, dtype: torch.dtype = ROPE_DTYPE):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE head dim must be a multiple of 4, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        self.dtype = dtype
        exponents = 2 * torch.arange(head_dim // 4, dtype=dtype) / (head_dim // 2)
        self.register_buffer("periods", base**exponents, persistent=True)

    def forward(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """(sin, cos), each (H·W, head_dim) in the RoPE dtype, rows in row-major (h, w) order."""
        options = {"device": self.periods.device, "dtype": self.dtype}
        coords_h = torch.arange(0.5, height, **options) / height
        coords_w = torch.arange(0.5, width, **options) / width
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0
        # Layout over the head dim: [h-angles (D/4), w-angles (D/4)] repeated twice (rotate-half pairs).
        angles = (2 * math.pi * coords[:, :, None] / self.periods.to(self.dtype)[None, None, :]).flatten(1, 2).tile(2)
        return torch.sin(angles), torch.cos(angles)


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rope(q: Tensor, k: Tensor, sin: Tensor, cos: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate the last ``sin.shape[-2]`` tokens of q and k (B, heads, N, hd); leading (prefix) tokens
    such as CLS are left as they are. Computed in the dtype of ``sin``, returned in q's/k's dtype."""
    prefix = q.shape[-2] - sin.shape[-2]
    if prefix < 0:
        raise ValueError(f"RoPE table has {sin.shape[-2]} positions but the sequence only {q.shape[-2]} tokens")

    def rotate(t: Tensor) -> Tensor:
        original = t.dtype
        t = t.to(sin.dtype)
        body = t[:, :, prefix:, :]
        body = body * cos + rotate_half(body) * sin
        return torch.cat((t[:, :, :prefix, :], body), dim=-2).to(original)

    return rotate(q), rotate(k)
