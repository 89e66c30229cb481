"""Improved precision and recall (Kynkäänniemi et al., 2019) on Inception features, computed by
torch-fidelity (``torch_fidelity.metric_prc.prc_features_to_metric``).

Each set's samples get a radius: the distance to their k-th nearest neighbour within the set
(k = 3, as the ADM evaluator and torch-fidelity). Precision is the fraction of generated
samples inside at least one real sample's ball; recall the fraction of real samples inside at
least one generated sample's ball. tokbench feeds torch-fidelity its own Inception pool3
features (the same network torch-fidelity uses for FID; torch-fidelity's default PRC features
would be VGG-16, which the ADM evaluator and the generation papers do not use), in float64, in
blocks (memory O(block · N)).
"""

from __future__ import annotations

import numpy as np
import torch

NEIGHBOURHOOD = 3


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = NEIGHBOURHOOD, block: int = 4096) -> tuple[float, float]:
    from torch_fidelity.metric_prc import prc_features_to_metric

    real_t = torch.as_tensor(np.asarray(real, dtype=np.float64))
    fake_t = torch.as_tensor(np.asarray(generated, dtype=np.float64))
    if min(len(real_t), len(fake_t)) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} samples in each set")
    # torch-fidelity's convention: input 1 is generated, input 2 is real
    metrics = prc_features_to_metric(fake_t, real_t, prc_neighborhood=k, prc_batch_size=block, save_cpu_ram=True,
                                     verbose=False)
    return float(metrics["precision"]), float(metrics["recall"])
