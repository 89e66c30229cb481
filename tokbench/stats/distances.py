"""Bootstrap replicates of the Fréchet distance and of KID over resampled images.

Exact and cheap for N below a few thousand (the usual 256..2000 of tokbench runs): a resample
is a vector of multiplicities ``c`` (``resample_counts``), and everything is computed from
n x n Gram matrices made once, never from the d-dimensional features again.

For centred features X0 (n x d) and a resample with multiplicities c (summing to n), the
resampled mean is m + X0^T c / n and the resampled covariance (np.cov of the duplicated rows)
is S_c = X0^T (C - c c^T / n) X0 / (n - 1), C = diag(c). With A_c = diag(sqrt c) (I - 1 c^T / n) X0
/ sqrt(n - 1) we have S_c = A_c^T A_c, and the non-zero eigenvalues of S1_c S2_c are the squared
singular values of A1_c A2_c^T (rFID, both sides resampled) or the eigenvalues of
A1_c S2 A1_c^T (gFID, fixed reference): ``tr sqrt(S1 S2)`` is a nuclear norm / eigenvalue sum of
a matrix over the distinct resampled items only (about 0.63 n of them).

Above ``GRAM_LIMIT`` items the replicate falls back to the d x d form (weighted statistics and
``frechet_distance``), exact but about a second or more per resample at d = 2048.
"""

from __future__ import annotations

import numpy as np

from tokbench.metrics.frechet import _as_features, feature_statistics, frechet_distance
from tokbench.stats._blas import single_blas_thread
from tokbench.stats.bootstrap import BootstrapSettings, remove_duplication_effect, resample_counts

_BATCH_ELEMENTS = 100_000  # matrix entries per batch of resamples: small batches stay in cache (measured fastest)
GRAM_LIMIT = 4096  # items above which Fréchet replicates use the d x d form (Gram memory ~ 3 n^2 doubles)


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")


def _quadratic(counts: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """c_b^T G c_b for every resample b (one matrix product, not an einsum loop)."""
    return ((counts @ gram) * counts).sum(axis=1)


def _sqrt_trace_over_resamples(matrix: np.ndarray, counts: np.ndarray, *, symmetric: bool) -> np.ndarray:
    """Per resample: tr sqrt(S1_c S2_c) from an n x n cross matrix of centred features.

    ``matrix`` is X0 Y0^T (both sides resampled: the singular values of the weighted, centred
    block, taken as square roots of the eigenvalues of M M^T) or X0 S2 X0^T (fixed reference:
    the block is symmetric PSD and its eigenvalues are those of S1_c S2). Only the distinct
    resampled items enter. Rounding of the structurally zero eigenvalues leaves ~1e-8 relative
    error, far below bootstrap noise.
    """
    n = matrix.shape[0]
    result = np.empty(counts.shape[0])
    with single_blas_thread():  # ~1000 small problems: one BLAS thread is several times faster
        start = 0
        while start < counts.shape[0]:
            width = int((counts[start] > 0).sum()) + 8
            stop = min(counts.shape[0], start + max(1, _BATCH_ELEMENTS // (width * width)))
            weights_all = counts[start:stop]
            width = int((weights_all > 0).sum(axis=1).max())
            # per resample: its distinct items first (stable), padded with zero-weight items
            order = np.argsort(weights_all == 0, axis=1, kind="stable")[:, :width]
            weights = np.take_along_axis(weights_all, order, axis=1)
            block = matrix[order[:, :, None], order[:, None, :]]
            row = np.matmul(block, weights[:, :, None])[..., 0] / n
            col = np.matmul(weights[:, None, :], block)[:, 0, :] / n
            total = (weights * row).sum(axis=1) / n
            centred = block - row[:, :, None] - col[:, None, :] + total[:, None, None]
            root = np.sqrt(weights)
            block = root[:, :, None] * centred * root[:, None, :] / (n - 1)
            if symmetric:
                square = (block + block.transpose(0, 2, 1)) / 2
            else:
                square = np.matmul(block, block.transpose(0, 2, 1))
            eigenvalues = np.linalg.eigvalsh(square)
            result[start:stop] = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum(axis=1)
            start = stop
    return result


def _paired_trace_terms(x0: np.ndarray, y0: np.ndarray,
                        counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per resample: tr S1_c, tr S2_c, tr sqrt(S1_c S2_c), and the Gram matrices' mean-shift quadratic form."""
    n = x0.shape[0]
    g1, g2, cross = x0 @ x0.T, y0 @ y0.T, x0 @ y0.T
    diff_gram = g1 - cross - cross.T + g2
    tr1 = (counts @ np.diag(g1) - _quadratic(counts, g1) / n) / (n - 1)
    tr2 = (counts @ np.diag(g2) - _quadratic(counts, g2) / n) / (n - 1)
    shift = _quadratic(counts, diff_gram) / (n * n)
    sqrt_trace = _sqrt_trace_over_resamples(cross, counts, symmetric=False)
    return tr1, tr2, sqrt_trace, shift


def _fixed_trace_terms(x0: np.ndarray, g1: np.ndarray, sigma2: np.ndarray,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample: tr S1_c and tr sqrt(S1_c S2) against a fixed covariance S2 (g1 = X0 X0^T)."""
    n = x0.shape[0]
    tr1 = (counts @ np.diag(g1) - _quadratic(counts, g1) / n) / (n - 1)
    sqrt_trace = _sqrt_trace_over_resamples(x0 @ sigma2 @ x0.T, counts, symmetric=True)
    return tr1, sqrt_trace


def _weighted_statistics(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    mean = c @ x / n
    centred = x - mean
    return mean, (centred.T * c) @ centred / (n - 1)


def _frechet_replicates_raw(features: np.ndarray, reference: np.ndarray | None, settings: BootstrapSettings, *,
                            paired_reference: bool,
                            reference_stats: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    x = _as_features(features, "features")
    n = x.shape[0]
    counts = resample_counts(n, settings)
    if paired_reference:
        if reference_stats is not None or reference is None:
            raise ValueError("paired_reference=True needs the reference features of the same images "
                             "(reference=...), not reference_stats")
        y = _as_features(reference, "reference")
        _check_pair(x, y)
        if y.shape[0] != n:
            raise ValueError(f"paired reference must have one row per image: {y.shape[0]} rows vs {n} features")
        m1, m2 = x.mean(axis=0), y.mean(axis=0)
        if n > GRAM_LIMIT:
            return np.array([frechet_distance(*_weighted_statistics(x, c), *_weighted_statistics(y, c))
                             for c in counts])
        x0, y0 = x - m1, y - m2
        delta = m1 - m2
        tr1, tr2, sqrt_trace, shift = _paired_trace_terms(x0, y0, counts)
        mean_term = delta @ delta + 2.0 * counts @ ((x0 - y0) @ delta) / n + shift
        return np.maximum(mean_term + tr1 + tr2 - 2.0 * sqrt_trace, 0.0)
    if reference_stats is not None:
        if reference is not None:
            raise ValueError("pass either reference features or reference_stats, not both")
        mu2 = np.asarray(reference_stats[0], dtype=np.float64)
        sigma2 = np.asarray(reference_stats[1], dtype=np.float64)
    elif reference is not None:
        y = _as_features(reference, "reference")
        _check_pair(x, y)
        mu2, sigma2 = feature_statistics(y)
    else:
        raise ValueError("give the reference as features (reference=...) or as reference_stats=(mu, sigma)")
    if mu2.shape != (x.shape[1],) or sigma2.shape != (x.shape[1], x.shape[1]):
        raise ValueError(f"reference statistics must be ({x.shape[1]},) and ({x.shape[1]}, {x.shape[1]}), "
                         f"got {mu2.shape} and {sigma2.shape}")
    if n > GRAM_LIMIT:
        return np.array([frechet_distance(*_weighted_statistics(x, c), mu2, sigma2) for c in counts])
    m1 = x.mean(axis=0)
    x0 = x - m1
    delta = m1 - mu2
    g1 = x0 @ x0.T
    tr1, sqrt_trace = _fixed_trace_terms(x0, g1, sigma2, counts)
    mean_term = delta @ delta + 2.0 * counts @ (x0 @ delta) / n + _quadratic(counts, g1) / n**2
    return np.maximum(mean_term + tr1 + np.trace(sigma2) - 2.0 * sqrt_trace, 0.0)


def frechet_replicates(features: np.ndarray, reference: np.ndarray | None, settings: BootstrapSettings, *,
                       paired_reference: bool,
                       reference_stats: tuple[np.ndarray, np.ndarray] | None = None,
                       adjust_duplicates: bool = True) -> np.ndarray:
    """(resamples,) Fréchet distances of the resampled ``features`` against the reference.

    ``paired_reference=True`` (rFID): ``reference`` holds the originals of the same images, row
    for row, and is resampled with the same indices. ``paired_reference=False`` (gFID): the
    reference is the dataset's fixed reference set, given as features or as
    ``reference_stats=(mu, sigma)``, and is not resampled: it is part of the metric's definition
    and shared by every row of the column, so its sampling noise never separates two rows
    (docs/statistics.md).

    ``adjust_duplicates`` (default) removes the part of the replicates explained by how many
    items each resample duplicates (``remove_duplication_effect``); ``False`` gives the exact
    distances of the resampled rows.
    """
    replicates = _frechet_replicates_raw(features, reference, settings, paired_reference=paired_reference,
                                         reference_stats=reference_stats)
    if not adjust_duplicates:
        return replicates
    return remove_duplication_effect(replicates, int(np.shape(features)[0]), settings)


def _kernel_quadratic(x: np.ndarray, y: np.ndarray, left: np.ndarray, right: np.ndarray, degree: int,
                      gamma: float, coef0: float, block: int = 1024) -> np.ndarray:
    """Per resample b: left_b^T K right_b with K = (gamma x y^T + coef0)^degree, built in row blocks."""
    result = np.zeros(left.shape[0])
    for start in range(0, x.shape[0], block):
        stop = min(start + block, x.shape[0])
        kernel = (x[start:stop] @ y.T * gamma + coef0) ** degree
        result += ((left[:, start:stop] @ kernel) * right).sum(axis=1)
    return result


def _kid_from_counts(x: np.ndarray, y: np.ndarray, counts_x: np.ndarray, counts_y: np.ndarray, degree: int,
                     gamma: float, coef0: float) -> np.ndarray:
    """Unbiased MMD^2 of the lists that repeat row i of x counts_x[b, i] times (and likewise y), per b.

    Within each set, the mean kernel runs over pairs of distinct items (weights c_i c_j, i != j):
    a duplicated image is never paired with itself, so k(x, x) never enters (with all counts 1
    this is the usual unbiased estimator).
    """
    n, m = counts_x[0].sum(), counts_y[0].sum()
    diag_x = ((x * x).sum(axis=1) * gamma + coef0) ** degree
    diag_y = ((y * y).sum(axis=1) * gamma + coef0) ** degree
    squares_x, squares_y = (counts_x * counts_x).sum(axis=1), (counts_y * counts_y).sum(axis=1)
    within_x = _kernel_quadratic(x, x, counts_x, counts_x, degree, gamma, coef0) - counts_x**2 @ diag_x
    within_y = _kernel_quadratic(y, y, counts_y, counts_y, degree, gamma, coef0) - counts_y**2 @ diag_y
    between = _kernel_quadratic(x, y, counts_x, counts_y, degree, gamma, coef0)
    return within_x / (n * n - squares_x) + within_y / (m * m - squares_y) - 2.0 * between / (n * m)


def _kid_inputs(features: np.ndarray, reference: np.ndarray,
                gamma: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    x = _as_features(features, "features")
    y = _as_features(reference, "reference")
    _check_pair(x, y)
    return x, y, 1.0 / x.shape[1] if gamma is None else float(gamma)


def kid_estimate(features: np.ndarray, reference: np.ndarray, *, degree: int = 3, gamma: float | None = None,
                 coef0: float = 1.0) -> float:
    """Unbiased MMD^2 (KID) on all images at once: ``kernel_inception_distance`` with one subset of all N.

    The point estimate that goes with ``kid_replicates`` (same statistic, no subsets).
    """
    x, y, kernel_gamma = _kid_inputs(features, reference, gamma)
    ones_x, ones_y = np.ones((1, x.shape[0])), np.ones((1, y.shape[0]))
    return float(_kid_from_counts(x, y, ones_x, ones_y, degree, kernel_gamma, coef0)[0])


def kid_replicates(features: np.ndarray, reference: np.ndarray, settings: BootstrapSettings, *,
                   paired_reference: bool, degree: int = 3, gamma: float | None = None,
                   coef0: float = 1.0, adjust_duplicates: bool = True) -> np.ndarray:
    """(resamples,) unbiased MMD^2 (KID, cubic polynomial kernel) of the resampled images against the reference.

    A resample duplicates images; its MMD^2 is the unbiased statistic of the resampled list
    (pairs of distinct positions), so a duplicated image contributes k(x, x) terms and the
    replicates sit above the estimate: use the ``"centered"`` interval construction.
    ``paired_reference=True``: reference rows are the originals of the same images, resampled
    with the same indices; otherwise the reference set is fixed (not resampled).
    ``adjust_duplicates`` as in ``frechet_replicates``.
    """
    x, y, kernel_gamma = _kid_inputs(features, reference, gamma)
    n, m = x.shape[0], y.shape[0]
    counts_x = resample_counts(n, settings)
    if paired_reference:
        if m != n:
            raise ValueError(f"paired reference must have one row per image: {m} rows vs {n} features")
        counts_y = counts_x
    else:
        counts_y = np.ones((counts_x.shape[0], m))
    replicates = _kid_from_counts(x, y, counts_x, counts_y, degree, kernel_gamma, coef0)
    return remove_duplication_effect(replicates, n, settings) if adjust_duplicates else replicates
