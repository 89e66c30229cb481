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


def test_hits_match_the_definition_on_shifted_clouds():
    """Brute-force distances, no blocks: precision and recall as Kynkäänniemi et al. define them."""

    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 16))
    fake = rng.standard_normal((200, 16)) * 0.6 + 0.8  # narrower and shifted: precision != recall
    real_radius = np.sort(distances(real, real), axis=1)[:, 3]  # column 0 is the point itself
    fake_radius = np.sort(distances(fake, fake), axis=1)[:, 3]
    precision_hits, recall_hits = manifold_hits(real, fake, k=3, block=64)  # several blocks
    assert (precision_hits == (distances(fake, real) <= real_radius[None, :]).any(axis=1)).all()
    assert (recall_hits == (distances(real, fake) <= fake_radius[None, :]).any(axis=1)).all()
    assert abs(precision_hits.mean() - recall_hits.mean()) > 0.05
    assert not manifold_hits(real, real + 100.0)[0].any()


def test_too_few_samples_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="needs more than 3 samples"):
        manifold_hits(np.zeros((3, 4)), np.zeros((10, 4)))
