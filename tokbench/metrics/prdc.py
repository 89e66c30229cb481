"""Improved precision and recall (Kynkäänniemi et al., 2019) on Inception features.

Each set's samples get a radius: the distance to their k-th nearest neighbour within the set
(k = 3, as the ADM evaluator and torch-fidelity). Precision is the fraction of generated
samples inside at least one real sample's ball; recall the fraction of real samples inside at
least one generated sample's ball. Distances in float64, in blocks (memory O(block · N)).
"""

from __future__ import annotations

import numpy as np
import torch

NEIGHBOURHOOD = 3


def _radii(features: torch.Tensor, k: int, block: int) -> torch.Tensor:
    radii = []
    for start in range(0, len(features), block):
        distances = torch.cdist(features[start : start + block], features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 0th neighbour is the point itself
    return torch.cat(radii)


def _coverage(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> float:
    inside = []
    for start in range(0, len(queries), block):
        distances = torch.cdist(queries[start : start + block], centres)
        inside.append((distances <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = NEIGHBOURHOOD, block: int = 1024) -> tuple[float, float]:
    real_t = torch.as_tensor(np.asarray(real, dtype=np.float64))
    fake_t = torch.as_tensor(np.asarray(generated, dtype=np.float64))
    if min(len(real_t), len(fake_t)) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} samples in each set")
    precision = _coverage(fake_t, real_t, _radii(real_t, k, block), block)
    recall = _coverage(real_t, fake_t, _radii(fake_t, k, block), block)
    return precision, recall
