"""Exponential moving average of parameters (EMA decoders, DINO teachers).

One fused update over whole parameter lists (``torch._foreach_*``) instead of a Python
loop of small kernels: with hundreds of tensors the loop's launch overhead dominates.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["ema_update_"]


@torch.no_grad()
def ema_update_(target_params: Iterable[torch.Tensor], source_params: Iterable[torch.Tensor], momentum: float) -> None:
    """In place: ``t = momentum * t + (1 - momentum) * s`` for each pair, without autograd.

    ``momentum = 1`` keeps the target, ``0`` copies the source. The two iterables are paired in
    order (pass ``ema.parameters()`` and ``model.parameters()`` of the same architecture) and
    must have equal lengths and shapes.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_update_: momentum must be in [0, 1], got {momentum}")
    targets = list(target_params)
    sources = list(source_params)
    if len(targets) != len(sources):
        raise ValueError(
            f"ema_update_: {len(targets)} target tensors but {len(sources)} source tensors; "
            "pass the parameters of two copies of the same model"
        )
    for index, (target, source) in enumerate(zip(targets, sources)):
        if target.shape != source.shape:
            raise ValueError(
                f"ema_update_: tensor {index} has shape {tuple(target.shape)} in the target but "
                f"{tuple(source.shape)} in the source"
            )
    if not targets:
        return
    target_data = [t.detach() for t in targets]
    source_data = [s.detach().to(t.dtype) for t, s in zip(target_data, sources)]
    torch._foreach_mul_(target_data, momentum)
    torch._foreach_add_(target_data, source_data, alpha=1.0 - momentum)
