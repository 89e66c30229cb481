"""Improved precision/recall through torch-fidelity, checked against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from tokbench.metrics.prdc import precision_recall


def _by_definition(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_radius = np.sort(distances(real, real), axis=1)[:, k]  # column 0 is the point itself
    fake_radius = np.sort(distances(fake, fake), axis=1)[:, k]
    precision = (distances(fake, real) <= real_radius[None, :]).any(axis=1).mean()
    recall = (distances(real, fake) <= fake_radius[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


def test_matches_the_definition_on_shifted_clouds():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 16))
    fake = rng.standard_normal((200, 16)) * 0.6 + 0.8  # narrower and shifted: precision != recall
    got = precision_recall(real, fake, block=64)  # several blocks
    expected = _by_definition(real, fake)
    assert got == pytest.approx(expected, abs=1e-6)  # torch-fidelity averages in float32
    assert got[0] != pytest.approx(got[1], abs=0.05)


def test_identical_sets_score_one_and_disjoint_sets_zero():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((50, 8))
    assert precision_recall(real, real.copy()) == pytest.approx((1.0, 1.0))
    assert precision_recall(real, real + 100.0) == pytest.approx((0.0, 0.0))


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="needs more than 3 samples"):
        precision_recall(np.zeros((3, 4)), np.zeros((10, 4)))
