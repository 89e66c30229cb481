"""RAE's per-element latent statistics (``stat.pt``): reading, writing and computing them.

``stat.pt`` holds ``{'mean': (C, H, W), 'var': (C, H, W)}``: one value per channel *and*
position, not per channel. Generation standardises ``z' = (z - mean) / sqrt(var + 1e-5)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

from tokbench.nn.checkpoints import CheckpointFormatError, read_checkpoint

#: RAE's ``eps`` in ``sqrt(var + eps)``
STATS_EPS = 1e-5
STATS_HINT = ("a dict {'mean': (C, H, W), 'var': (C, H, W)} as released in nyu-visionx/RAE-collections "
              "(models/stats/dinov2/wReg_base/imagenet1k/stat.pt)")


def read_stats(path: str | Path, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """(mean, std), each (1, C, H, W) float32, std = sqrt(var + 1e-5); checked against the latent shape."""
    data = read_checkpoint(path, what="latent statistics", how_to_get=STATS_HINT)
    if not isinstance(data, dict) or not {"mean", "var"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointFormatError(f"{path}: expected {STATS_HINT}; found {found}")
    mean, var = (torch.as_tensor(data[key]).float() for key in ("mean", "var"))
    for key, value in (("mean", mean), ("var", var)):
        if tuple(value.shape) != tuple(shape):
            raise CheckpointFormatError(
                f"{path}: `{key}` has shape {tuple(value.shape)} but this tokenizer's latent is {tuple(shape)} "
                "(statistics of another encoder or resolution?)"
            )
    if bool((var < 0).any()) or not bool(torch.isfinite(mean).all() and torch.isfinite(var).all()):
        raise CheckpointFormatError(f"{path}: `var` must be finite and non-negative, `mean` finite")
    return mean.unsqueeze(0), (var + STATS_EPS).sqrt().unsqueeze(0)


def compute_stats(latents: Iterable[Tensor]) -> dict[str, Tensor]:
    """Exact per-element mean and (population) variance over batches of (B, C, H, W) latents,
    accumulated in float64. (RAE's ``calculate_stat.py`` uses a BN-style running estimate with
    momentum 0.1 instead, which is not reproducible run to run.)"""
    count, total, squares = 0, None, None
    for batch in latents:
        x = batch.detach().to("cpu", torch.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        squares = x.square().sum(0) if squares is None else squares + x.square().sum(0)
        count += x.shape[0]
    if not count:
        raise ValueError("compute_stats: no latents")
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0.0)
    return {"mean": mean.float(), "var": var.float()}


def write_stats(stats: dict[str, Tensor], path: str | Path) -> Path:
    path = Path(path)
    torch.save({"mean": stats["mean"].contiguous(), "var": stats["var"].contiguous()}, path)
    return path
