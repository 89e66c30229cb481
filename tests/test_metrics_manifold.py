"""Per-sample precision/recall hits average to torch-fidelity's improved precision and recall."""

import numpy as np

from tokbench.metrics.manifold import manifold_hits


def test_hits_average_to_torch_fidelity_precision_and_recall():
    import torch
    from torch_fidelity.metric_prc import prc_features_to_metric

    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 32))
    fake = rng.normal(loc=0.4, scale=1.3, size=(250, 32))
    precision_hits, recall_hits = manifold_hits(real, fake, k=3, block=64)
    assert precision_hits.shape == (250,) and recall_hits.shape == (300,)
    expected = prc_features_to_metric(torch.as_tensor(fake), torch.as_tensor(real), prc_neighborhood=3,
                                      prc_batch_size=128, save_cpu_ram=True, verbose=False)
    assert abs(precision_hits.mean() - float(expected["precision"])) < 1e-6  # float32 mean there; 1/N = 4e-3
    assert abs(recall_hits.mean() - float(expected["recall"])) < 1e-6
    assert 0.0 < precision_hits.mean() < 1.0 and 0.0 < recall_hits.mean() < 1.0  # the check can fail both ways


def test_identical_sets_are_fully_covered():
    points = np.random.default_rng(1).normal(size=(50, 8))
    precision_hits, recall_hits = manifold_hits(points, points.copy())
    assert precision_hits.all() and recall_hits.all()
