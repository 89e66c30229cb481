"""Fréchet distance and kernel (MMD) distance between two feature sets, in float64.

Plain numpy/scipy, no torch import: features may be numpy arrays or torch tensors (moved to CPU).

The trace term tr((S1 S2)^(1/2)) is computed without ``scipy.linalg.sqrtm`` (whose
Schur-based result went complex or NaN on some SciPy/BLAS builds). Each covariance is
factored by pivoted Cholesky (LAPACK ``dpstrf``), S = A A^T with A of shape (D, rank) and the
rank cut where the remaining pivots fall below D * eps * max diag. The eigenvalues of
S1^(1/2) S2 S1^(1/2) are the squared singular values of B = A1^T A2, so

    tr((S1 S2)^(1/2)) = sum_i sqrt(eigvalsh(B B^T)_i),   B taken from the lower-rank side.

Working on the lower-rank side keeps B B^T free of structurally zero eigenvalues, whose
rounding noise (~1e-16) would otherwise become ~1e-8 each after the square root: with
2048-d features from a few images (rank-deficient covariances) a naive eigh/sqrtm path
gives FD(x, x) ~ 1e-4 to 1e-3, this one ~1e-12. It needs only a Cholesky, two matrix
products and a symmetric eigenvalue solve (no eigenvectors, no SVD, no sqrtm).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg.lapack import dpstrf

_SYMMETRY_RTOL = 1e-6  # relative asymmetry tolerated (and removed) in a covariance
_PSD_RTOL = 1e-4  # relative negative diagonal / Cholesky residual above which a covariance is not PSD


def _as_float64(array: Any, name: str) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch
        array = array.detach().cpu().double().numpy()
    result = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(result)):
        bad = int(np.size(result) - np.count_nonzero(np.isfinite(result)))
        raise ValueError(f"{name} contains {bad} NaN/inf values; check the features that produced it")
    return result


def _as_features(features: Any, name: str) -> np.ndarray:
    result = _as_float64(features, name)
    if result.ndim != 2:
        raise ValueError(f"{name} must be (N, D) features, got shape {result.shape}")
    if result.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for a covariance, got {result.shape[0]}")
    return result


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, both float64.

    Same convention as pytorch-fid / ADM: ``np.cov(features, rowvar=False)`` (divides by N-1).
    """
    array = _as_features(features, "features")
    mu = array.mean(axis=0)
    sigma = np.atleast_2d(np.cov(array, rowvar=False))
    return mu, sigma


def _check_covariance(sigma: np.ndarray, dim: int, name: str) -> np.ndarray:
    if sigma.shape != (dim, dim):
        raise ValueError(f"{name} must be ({dim}, {dim}) to match the mean, got {sigma.shape}")
    scale = float(np.max(np.abs(sigma))) if sigma.size else 0.0
    asymmetry = float(np.max(np.abs(sigma - sigma.T))) if sigma.size else 0.0
    if asymmetry > _SYMMETRY_RTOL * max(scale, np.finfo(np.float64).tiny):
        raise ValueError(
            f"{name} is not symmetric (max |S - S^T| = {asymmetry:.3g}, max |S| = {scale:.3g}); "
            "pass a covariance matrix, e.g. from feature_statistics()"
        )
    return (sigma + sigma.T) / 2


def _psd_factor(sigma: np.ndarray, name: str) -> np.ndarray:
    """A of shape (D, rank) with sigma = A A^T (pivoted Cholesky); raises if sigma is not PSD."""
    dim = sigma.shape[0]
    scale = float(np.max(np.abs(sigma))) if sigma.size else 0.0
    diagonal = np.diag(sigma)
    not_psd = ValueError(
        f"{name} is not positive semi-definite; pass a covariance matrix, e.g. from feature_statistics()"
    )
    if dim and float(diagonal.min()) < -_PSD_RTOL * scale:
        raise not_psd
    if dim == 0 or float(diagonal.max()) <= 0.0:
        return np.zeros((dim, 0))
    factor, pivots, rank, info = dpstrf(sigma, lower=1)  # P^T sigma P = L L^T, rank-revealing
    if info < 0:
        raise RuntimeError(f"LAPACK dpstrf failed on {name} (info={info})")
    lower = np.tril(factor[:, :rank])
    order = pivots - 1
    # The leading rank x rank block and the off-diagonal block are reproduced exactly by
    # construction; what is left is the Schur complement, which must be ~0 for a PSD matrix.
    rest = order[rank:]
    if rest.size:
        schur = sigma[np.ix_(rest, rest)] - lower[rank:] @ lower[rank:].T
        if float(np.max(np.abs(schur))) > _PSD_RTOL * scale:
            raise not_psd
    result = np.empty((dim, rank))
    result[order] = lower
    return result


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD float64 matrices (see the module docstring)."""
    factor1 = _psd_factor(sigma1, "sigma1")
    factor2 = _psd_factor(sigma2, "sigma2")
    if factor1.shape[1] > factor2.shape[1]:
        factor1, factor2 = factor2, factor1
    if factor1.shape[1] == 0:
        return 0.0
    cross = factor1.T @ factor2  # (r_small, r_large)
    eigenvalues = np.linalg.eigvalsh(cross @ cross.T)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), in float64.

    Raises ``ValueError`` on NaN/inf, mismatched shapes, asymmetric or clearly non-PSD
    covariances. Rounding can make the exact-zero case come out a hair below 0; the result
    is clipped at 0.
    """
    m1 = _as_float64(mu1, "mu1")
    m2 = _as_float64(mu2, "mu2")
    if m1.ndim != 1 or m2.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of the same length, got {m1.shape} and {m2.shape}")
    dim = m1.shape[0]
    s1 = _check_covariance(_as_float64(sigma1, "sigma1"), dim, "sigma1")
    s2 = _check_covariance(_as_float64(sigma2, "sigma2"), dim, "sigma2")
    diff = m1 - m2
    distance = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(distance, 0.0)


def frechet_distance_from_features(features1: Any, features2: Any) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD^2 (Bińkowski et al. 2018): off-diagonal means of k(x,x), k(y,y), full mean of k(x,y)."""
    m = x.shape[0]
    k_xx = _polynomial_kernel(x, x, degree, gamma, coef0)
    k_yy = _polynomial_kernel(y, y, degree, gamma, coef0)
    k_xy = _polynomial_kernel(x, y, degree, gamma, coef0)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    feats1: Any,
    feats2: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> tuple[float, float]:
    """KID: mean and (population) std of the unbiased polynomial-kernel MMD^2 over random subsets.

    Kernel k(x, y) = (gamma x.y + coef0)^degree with gamma = 1/D by default. Each subset draws
    ``subset_size`` rows without replacement from each set with ``np.random.RandomState(seed)``,
    first set then second, as torch-fidelity does; ``seed=2020`` (torch-fidelity's default) and
    its defaults (100 subsets of 1000) reproduce its KID up to float32-vs-float64 rounding.
    Slightly negative values are valid (the estimator is unbiased).

    The std is the spread over subsets, not a confidence interval: with ``subset_size`` equal to
    the number of images every subset is the whole set and the std is 0. For an interval use
    the bootstrap over images, ``tokbench.stats.kid_replicates`` with ``kid_estimate`` (the
    same statistic on all images at once; see docs/statistics.md).
    """
    x = _as_features(feats1, "feats1")
    y = _as_features(feats2, "feats2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    largest = min(x.shape[0], y.shape[0])
    if not 2 <= subset_size <= largest:
        raise ValueError(
            f"subset_size={subset_size} must be between 2 and the smaller sample count "
            f"({x.shape[0]} vs {y.shape[0]}); pass subset_size={largest} or fewer"
        )
    kernel_gamma = 1.0 / x.shape[1] if gamma is None else float(gamma)
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for index in range(subsets):
        subset_x = x[rng.choice(x.shape[0], subset_size, replace=False)]
        subset_y = y[rng.choice(y.shape[0], subset_size, replace=False)]
        values[index] = _mmd2_unbiased(subset_x, subset_y, degree, kernel_gamma, coef0)
    return float(values.mean()), float(values.std())
