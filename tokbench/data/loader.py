"""Batches of uint8 image tensors from an ``ImageDataset`` (the only torch module here)."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tokbench.data.base import ImageDataset

Batch = tuple[torch.Tensor, torch.Tensor, list[int]]
Item = tuple[np.ndarray, int, int]


class _IndexedImages(Dataset[Item]):
    """Position ``i`` -> (image, label, dataset index) for the chosen indices."""

    def __init__(self, dataset: ImageDataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Item:
        index = self.indices[position]
        return self.dataset.image(index), self.dataset.label(index), index


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 arrays -> contiguous uint8 tensor (B, 3, H, W)."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _collate(items: list[Item]) -> Batch:
    images, labels, indices = zip(*items)
    return _to_tensor(images), torch.tensor(labels, dtype=torch.int64), list(indices)


def iterate_batches(
    dataset: ImageDataset,
    batch_size: int,
    indices: Sequence[int] | None = None,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """Yield ``(images uint8 (B,3,H,W), labels int64 (B,), dataset indices)`` in the
    order of ``indices`` (default: all of them); the last batch may be smaller."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be non-negative, got {num_workers}")
    chosen = range(len(dataset)) if indices is None else indices
    loader = DataLoader(
        _IndexedImages(dataset, chosen),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )
    return iter(loader)


def default_workers(device: str) -> int:
    """``launcher.loader_workers: auto``: none on CPU runs (workers would take cores from the
    model), otherwise one per free core up to 8 (JPEG decoding keeps a GPU busy at about 8)."""
    if not str(device).startswith("cuda"):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


def load_images(dataset: ImageDataset, indices: Sequence[int]) -> torch.Tensor:
    """The images at ``indices`` as one uint8 tensor (N, 3, H, W), in the main process."""
    if len(indices) == 0:
        return torch.empty((0, 3, dataset.resolution, dataset.resolution), dtype=torch.uint8)
    return _to_tensor([dataset.image(int(i)) for i in indices])
