"""KoLeo regulariser (Kozachenko-Leonenko differential-entropy estimator, as in DINOv2).

Maximising the log distance of every feature to its nearest neighbour spreads the
features of a batch uniformly over the unit sphere. DINOv2 applies it to the student's
pre-head global CLS tokens, separately for each global crop, on the local (per-rank) batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KoLeoLoss"]


class KoLeoLoss(nn.Module):
    """``-mean_i log(||x_i - x_nn(i)|| + eps)`` on L2-normalised rows ``x_i``."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Loss for ``(B, D)`` features, ``B >= 2``; rows are L2-normalised here.

        On unit vectors the nearest neighbour is the other row with the largest dot
        product (excluding the row itself). Computed in float32 even under autocast.
        """
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"KoLeoLoss needs (B, D) features with B >= 2, got shape {tuple(features.shape)}")
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = F.normalize(features.float(), p=2, dim=-1, eps=self.eps)
            with torch.no_grad():
                dots = x @ x.T
                dots.fill_diagonal_(float("-inf"))
                nearest = dots.argmax(dim=1)
            distances = F.pairwise_distance(x, x[nearest], p=2, eps=self.eps)
            return -torch.log(distances + self.eps).mean()
