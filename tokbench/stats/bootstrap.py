"""Bootstrap settings, resampling, intervals from bootstrap replicates, and the Wilson interval.

numpy/scipy only (no torch), so ``tokbench report`` can recompute intervals from stored
features, per-image values and per-example correctness without a model.

Every row with the same number of items ``n`` gets the same resample indices for a given
``seed`` (``resample_indices``), so replicates computed separately per row and cached can be
subtracted replicate by replicate: that is the paired bootstrap of
``tokbench.stats.significance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Interval constructions ``interval_from_replicates`` knows (see docs/statistics.md).
PERCENTILE = "percentile"  # [q_lo, q_hi]: fine for means (no resampling bias)
CENTERED = "centered"  # percentile shifted by the bootstrap bias: [est + q_lo - m, est + q_hi - m]
BASIC = "basic"  # reflected about the estimate: [2 est - q_hi, 2 est - q_lo] (also removes the bias once more)
REFLECTED = "reflected"  # reflected about the bootstrap mean: [est + m - q_hi, est + m - q_lo]
CONSTRUCTIONS = (PERCENTILE, CENTERED, BASIC, REFLECTED)

_DESCRIPTIONS = {
    PERCENTILE: "percentile interval",
    CENTERED: "percentile interval re-centred on the estimate (bootstrap bias removed)",
    BASIC: "basic (bias-reflected) interval",
    REFLECTED: "interval reflected about the bootstrap mean",
}


@dataclass(frozen=True)
class BootstrapSettings:
    """Confidence level, number of resamples and seed (the suite's ``report:`` section)."""

    level: float = 0.95
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"confidence level must be between 0 and 1 (e.g. 0.95), got {self.level}")
        if self.resamples < 2:
            raise ValueError(f"resamples must be at least 2 (1000 is the usual default), got {self.resamples}")

    @property
    def alpha(self) -> float:
        """Significance level matching the confidence level (0.05 at 95%)."""
        return 1.0 - self.level


@dataclass(frozen=True)
class Interval:
    """A confidence interval [low, high] in the units of the value, with how it was made."""

    low: float
    high: float
    method: str

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError("an interval needs a non-empty method description")


def resample_indices(n: int, settings: BootstrapSettings) -> np.ndarray:
    """(resamples, n) indices drawn with replacement; the same for every caller with the same (n, settings).

    The array is cached and read-only: rows of a column that saw the same n items share the draws.
    """
    if n < 1:
        raise ValueError(f"cannot resample {n} items; the metric saw no data")
    return _indices(int(n), int(settings.resamples), int(settings.seed))


@lru_cache(maxsize=32)
def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    indices = rng.integers(0, n, size=(resamples, n), dtype=np.int64)
    indices.setflags(write=False)
    return indices


def resample_counts(n: int, settings: BootstrapSettings) -> np.ndarray:
    """(resamples, n) multiplicities of each item in each resample (rows sum to n)."""
    indices = resample_indices(n, settings)
    offsets = np.arange(indices.shape[0])[:, None] * n
    counts = np.bincount((indices + offsets).ravel(), minlength=indices.shape[0] * n)
    return counts.reshape(indices.shape[0], n).astype(np.float64)


def remove_duplication_effect(replicates: np.ndarray, n: int, settings: BootstrapSettings) -> np.ndarray:
    """Replicates minus their least-squares fit on how much each resample duplicates items.

    A resample with replacement repeats some items and leaves out others (about 0.63 n distinct
    items). For a non-linear statistic such as the Fréchet distance at N below the feature
    dimension, the number of distinct items moves the replicate a lot (fewer distinct items,
    lower covariance rank, larger distance), a spread that real samples, which never repeat an
    item, do not have: the raw bootstrap standard deviation was 1.2-2.2x the estimator's true
    one in simulation. The number of distinct items and sum(c^2) are symmetric in the items (they
    say how much a resample duplicates, not which items it drew), so their fitted effect is
    removed; the replicates' mean is kept. Measured effect in docs/statistics.md.
    """
    reps = np.asarray(replicates, dtype=np.float64)
    counts = resample_counts(n, settings)
    if reps.shape != (counts.shape[0],):
        raise ValueError(f"expected {counts.shape[0]} replicates for n={n}, got shape {reps.shape}")
    regressors = np.column_stack([(counts > 0).sum(axis=1), (counts * counts).sum(axis=1)]).astype(np.float64)
    regressors -= regressors.mean(axis=0)
    if not np.any(regressors):  # n = 1: every resample is the same
        return reps
    coefficients = np.linalg.lstsq(regressors, reps - reps.mean(), rcond=None)[0]
    return reps - regressors @ coefficients


def mean_replicates(values: np.ndarray, settings: BootstrapSettings) -> np.ndarray:
    """(resamples,) bootstrap means of per-item values (PSNR per image, 0/1 correctness per example)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"per-item values must be a 1-d array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("per-item values contain NaN/inf; drop or fix those items before bootstrapping")
    return array[resample_indices(array.shape[0], settings)].mean(axis=1)


def _quantiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def interval_from_replicates(estimate: float, replicates: np.ndarray, settings: BootstrapSettings,
                             method: str, *, over: str | None = None) -> Interval:
    """Confidence interval of ``estimate`` from its bootstrap ``replicates``.

    ``method`` is the construction: ``"percentile"`` (means, accuracies), ``"centered"``
    (Fréchet distances and KID, whose replicates are biased upward by duplicated items; the
    coverage of each construction is measured in docs/statistics.md), ``"basic"`` or
    ``"reflected"``. ``over`` describes what was resampled, e.g. ``"256 images; reference
    resampled with the same indices"``; it goes into the interval's method text.
    """
    if method not in CONSTRUCTIONS:
        raise ValueError(f"unknown interval construction {method!r}; choose one of {', '.join(CONSTRUCTIONS)}")
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim != 1 or reps.size < 2:
        raise ValueError(f"replicates must be a 1-d array of at least 2 values, got shape {reps.shape}")
    if not np.all(np.isfinite(reps)):
        raise ValueError("bootstrap replicates contain NaN/inf; the statistic failed on some resample")
    est = float(estimate)
    q_lo, q_hi = _quantiles(reps, settings.level)
    mean = float(reps.mean())
    low, high = {
        PERCENTILE: (q_lo, q_hi),
        CENTERED: (est + q_lo - mean, est + q_hi - mean),
        BASIC: (2 * est - q_hi, 2 * est - q_lo),
        REFLECTED: (est + mean - q_hi, est + mean - q_lo),
    }[method]
    where = f" over {over}" if over else ""
    text = f"{settings.level:.0%} bootstrap{where} ({reps.size} resamples), {_DESCRIPTIONS[method]}"
    return Interval(low=float(low), high=float(high), method=text)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion ``successes / n`` (e.g. top-1 accuracy)."""
    if n < 1:
        raise ValueError(f"a proportion needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, got {level}")
    from scipy.special import ndtri  # lazy: keeps `import tokbench.stats` cheap

    z = float(ndtri(0.5 + level / 2.0))
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(low=float(max(0.0, centre - half)), high=float(min(1.0, centre + half)),
                    method=f"{level:.0%} Wilson score interval over {n} examples")
