"""Neural-network layers shared by tokbench's models (VTP, LightningDiT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ImageNet channel statistics, the input normalisation of most pretrained vision encoders
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images: Tensor) -> Tensor:
    """[0, 1] images (B, 3, H, W) -> ImageNet-normalised."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def imagenet_denormalize(images: Tensor) -> Tensor:
    """The inverse of :func:`imagenet_normalize`."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return images * std + mean


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
