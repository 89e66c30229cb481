"""The DINO/iBOT projection head (shared by CLS tokens and masked patch tokens).

MLP -> L2 normalisation -> weight-normalised linear layer onto ``out_dim`` prototypes.
The weight norm with its magnitude fixed at 1 makes the logits cosine similarities between
the bottleneck feature and each prototype, which keeps teacher temperatures meaningful.
VTP's legacy code builds the same head (not shipped in the released checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DINOHead", "cancel_last_layer_gradients"]


def _build_mlp(nlayers: int, in_dim: int, hidden_dim: int, bottleneck_dim: int) -> nn.Sequential:
    if nlayers == 1:
        return nn.Sequential(nn.Linear(in_dim, bottleneck_dim))
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
    for _ in range(nlayers - 2):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
    layers.append(nn.Linear(hidden_dim, bottleneck_dim))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """``last_layer(normalize(mlp(x)))``; input ``(..., in_dim)``, output ``(..., out_dim)``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        freeze_magnitude: bool = False,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be >= 1, got {nlayers}")
        self.mlp = _build_mlp(nlayers, in_dim, hidden_dim, bottleneck_dim)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        # The direction (original1) keeps nn.Linear's default init; only its direction matters.
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not freeze_magnitude)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        eps = 1e-6 if x.dtype in (torch.float16, torch.bfloat16) else 1e-12
        x = F.normalize(x, p=2, dim=-1, eps=eps)
        return self.last_layer(x)


def cancel_last_layer_gradients(head: DINOHead) -> None:
    """Drop the last layer's gradients (DINOv2 does this during the first epoch).

    Call between ``backward()`` and ``optimizer.step()``; with ``grad=None`` the optimiser
    skips those parameters entirely (no weight decay, no momentum update).
    """
    for parameter in head.last_layer.parameters():
        parameter.grad = None
