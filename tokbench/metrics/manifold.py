"""Per-sample membership in the k-NN manifolds of improved precision and recall
(Kynkäänniemi et al., 2019): the per-item evidence behind the two numbers.

Each sample of a set gets a radius, the distance to its k-th nearest neighbour within its
own set. A generated sample counts for precision when it lies inside at least one real
sample's ball; a real sample counts for recall when it lies inside at least one generated
sample's ball. Precision and recall are the means of these hits (the same numbers
torch-fidelity's ``prc_features_to_metric`` reports; tested). Distances in float64, in
blocks (memory O(block · N)).
"""

from __future__ import annotations

import numpy as np
import torch


def _radii(points: torch.Tensor, k: int, block: int) -> torch.Tensor:
    radii = []
    for start in range(0, len(points), block):
        distances = torch.cdist(points[start : start + block], points)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the point itself is the first neighbour
    return torch.cat(radii)


def _inside_any(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    hits = []
    for start in range(0, len(queries), block):
        distances = torch.cdist(queries[start : start + block], centres)
        hits.append((distances <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def manifold_hits(real: np.ndarray, generated: np.ndarray, k: int = 3, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(precision hits per generated sample, recall hits per real sample), both bool."""
    real_t = torch.as_tensor(np.asarray(real, dtype=np.float64))
    fake_t = torch.as_tensor(np.asarray(generated, dtype=np.float64))
    if min(len(real_t), len(fake_t)) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} samples in each set")
    precision = _inside_any(fake_t, real_t, _radii(real_t, k, block), block)
    recall = _inside_any(real_t, fake_t, _radii(fake_t, k, block), block)
    return precision.numpy(), recall.numpy()
