"""The training code: a streaming PCA of p x p patches (the declared training boundary)."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F


def fit_basis(batches: Iterable[torch.Tensor], patch: int, components: int) -> dict[str, torch.Tensor]:
    """Mean and the ``components`` leading principal directions of every ``patch`` x ``patch``
    RGB patch of ``batches`` (uint8 (B, 3, H, W) tensors), accumulated in float64."""
    dim = 3 * patch * patch
    total = torch.zeros(dim, dtype=torch.float64)
    outer = torch.zeros(dim, dim, dtype=torch.float64)
    count = 0
    for images in batches:
        pixels = images.to(torch.float64) / 255
        rows = F.unfold(pixels, patch, stride=patch).transpose(1, 2).reshape(-1, dim)
        total += rows.sum(0)
        outer += rows.T @ rows
        count += rows.shape[0]
    if count == 0:
        raise ValueError("the fit saw no images")
    mean = total / count
    covariance = outer / count - torch.outer(mean, mean)
    values, vectors = torch.linalg.eigh(covariance)
    order = values.argsort(descending=True)[:components]
    basis = vectors[:, order]
    basis = basis * torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))  # one sign per component
    explained = values[order].sum() / values.clamp_min(0).sum()
    return {"mean": mean.float(), "basis": basis.float(), "explained_variance": explained.float()}
