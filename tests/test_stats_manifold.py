"""Recall's bootstrap over generated samples: the same number as the hits, and an interval that
covers recall's own mean at that N."""

import numpy as np

from tokbench.metrics.manifold import manifold_hits
from tokbench.stats import BootstrapSettings, interval_from_replicates
from tokbench.stats.manifold import RECALL_INTERVAL, recall_hits, recall_replicates


def test_recall_hits_equal_the_manifold_recall():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(120, 6)), rng.normal(loc=0.3, size=(100, 6))
    assert np.array_equal(recall_hits(real, fake), manifold_hits(real, fake)[1])


def test_recall_interval_covers_recall_mean_at_n():
    """200 generated sets of N = 48 from one population: the bootstrap interval of each
    set's recall covers the mean recall at N in 90-99% of them (about 10 s)."""
    rng = np.random.default_rng(1)
    dim, n, draws = 4, 48, 200
    real = rng.normal(size=(96, dim))

    def fake_set():
        return rng.normal(loc=0.2, scale=0.9, size=(n, dim))

    truth = np.mean([recall_hits(real, fake_set()).mean() for _ in range(2000)])
    settings = BootstrapSettings(resamples=300, seed=0)
    covered = 0
    for draw in range(draws):
        fake = fake_set()
        estimate = recall_hits(real, fake).mean()
        replicates = recall_replicates(fake, real, BootstrapSettings(resamples=300, seed=draw))
        interval = interval_from_replicates(estimate, replicates, settings, RECALL_INTERVAL)
        covered += interval.low <= truth <= interval.high
    assert 0.90 <= covered / draws <= 0.99, covered / draws
