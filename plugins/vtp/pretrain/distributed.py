"""Tiny collective helpers that degrade to single-process no-ops.

The stage-1 losses (CLIP gathering, DINO/iBOT centring and Sinkhorn-Knopp) need a few
collectives. Routing them through these helpers keeps every loss usable, and testable,
in a plain single process: without an initialised ``torch.distributed`` process group
each helper behaves as if the world had exactly one rank.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

__all__ = [
    "is_distributed",
    "world_info",
    "all_gather_with_grad",
    "all_gather_no_grad",
    "all_reduce_sum_",
    "all_reduce_mean_",
    "all_reduce_max_",
]


def is_distributed() -> bool:
    """True when a default process group is initialised (even with world size 1)."""
    return dist.is_available() and dist.is_initialized()


def world_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0, keeping the autograd graph.

    Backward sums the gradients that every rank computed for each slice and hands
    each rank the slice of its own input (``torch.distributed.nn.functional.all_gather``).
    All ranks must pass tensors of the same shape. Identity in a single process.
    """
    if world_info()[1] == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated in favour of a private API (torch 2.15); still the public autograd gather.
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(t), dim=0)


def all_gather_no_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0 without gradients (same shapes required).

    In a single process ``t`` is returned as is (its graph is not cut: no copy is made).
    """
    _, world_size = world_info()
    if world_size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world_size)]
    dist.all_gather(parts, t.detach().contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks; returns ``t``. No-op without a process group."""
    if world_info()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean_(t: torch.Tensor) -> torch.Tensor:
    """In-place mean over ranks; returns ``t``. No-op without a process group."""
    world_size = world_info()[1]
    if world_size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(world_size)
    return t


def all_reduce_max_(t: torch.Tensor) -> torch.Tensor:
    """In-place element-wise maximum over ranks; returns ``t``. No-op without a process group."""
    if world_info()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t
