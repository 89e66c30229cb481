"""Neural-network layers shared by tokbench's models (VTP, LightningDiT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """``x · rsqrt(mean(x²) + eps)`` computed in fp32, cast back to the input dtype, then times the
    learned weight: the LLaMA form both VTP (eps 1e-5) and LightningDiT (eps 1e-6) were trained with."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # F.rms_norm: the same formula (bit-identical on CPU), one fused kernel on GPU
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight
