"""Stage-1 reconstruction loss: ``l1_weight * L1 + perceptual_weight * perceptual`` (VTP eq. 1).

VTP uses L1 + LPIPS with equal weights between the input and the decoder output, both
in the ImageNet-normalised pixel space the decoder produces. The perceptual network is
injected (not built here) so this module never downloads weights: the perceptual module
receives the same ImageNet-normalised tensors and must convert them to whatever range it
expects itself.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ReconstructionLoss"]


class ReconstructionLoss(nn.Module):
    """Weighted sum of mean absolute error and a perceptual distance."""

    def __init__(
        self,
        l1_weight: float = 1.0,
        perceptual_weight: float = 1.0,
        perceptual: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if l1_weight < 0 or perceptual_weight < 0:
            raise ValueError(
                f"loss weights must be >= 0, got l1_weight={l1_weight}, perceptual_weight={perceptual_weight}"
            )
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                f"perceptual_weight={perceptual_weight} but no perceptual module was given: pass "
                "perceptual=<module(reconstruction, target) -> distance> (e.g. an LPIPS-VGG network "
                "that accepts ImageNet-normalised images), or set perceptual_weight=0 for L1 only"
            )
        self.l1_weight = l1_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual = perceptual

    def forward(
        self, reconstruction: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, parts)``; ``parts`` holds the unweighted, detached terms for logging.

        ``parts`` has ``"l1"`` always and ``"perceptual"`` when its weight is positive.
        The perceptual module's output is averaged (it may return per-image distances).
        """
        if reconstruction.shape != target.shape:
            raise ValueError(
                f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} "
                "must have the same shape"
            )
        l1 = (reconstruction - target).abs().mean()
        total = self.l1_weight * l1
        parts = {"l1": l1.detach()}
        if self.perceptual_weight > 0 and self.perceptual is not None:
            perceptual = self.perceptual(reconstruction, target).mean()
            total = total + self.perceptual_weight * perceptual
            parts["perceptual"] = perceptual.detach()
        return total, parts
