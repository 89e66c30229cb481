"""Simulated features to measure what the intervals promise (coverage) and what N separates rows.

Used by tests/test_stats_coverage.py and benchmarks/bench_stats.py; the measured figures are
in docs/statistics.md. Originals are Gaussian with a decaying spectrum (variance i^-0.7 on
axis i, like the long tail of Inception features); a "tokenizer" reconstructs
``scale * x + noise * e + shift``, so its population Fréchet distance to the originals is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tokbench.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features
from tokbench.stats.bootstrap import (
    CONSTRUCTIONS,
    PERCENTILE,
    BootstrapSettings,
    interval_from_replicates,
    mean_replicates,
    wilson_interval,
)
from tokbench.stats.distances import frechet_replicates, kid_estimate, kid_replicates


@dataclass(frozen=True)
class GaussianTokenizer:
    """Reconstructions ``scale * x + noise * e + shift`` of Gaussian originals x in ``dim`` dimensions."""

    dim: int
    scale: float = 0.8
    noise: float = 0.5
    shift: float = 0.1
    decay: float = 0.7

    @property
    def spectrum(self) -> np.ndarray:
        return 1.0 / np.arange(1, self.dim + 1) ** self.decay

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(originals, reconstructions), each (n, dim)."""
        originals = rng.normal(size=(n, self.dim)) * np.sqrt(self.spectrum)
        return originals, self.scale * originals + self.noise * rng.normal(size=(n, self.dim)) + self.shift

    def reference_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Population mean and covariance of the originals (a fixed gFID-style reference)."""
        return np.zeros(self.dim), np.diag(self.spectrum)

    def population_distance(self) -> float:
        """Exact: both covariances are diagonal, so tr sqrt(S1 S2) is a sum of square roots."""
        reconstructed = self.scale**2 * self.spectrum + self.noise**2
        return float(self.dim * self.shift**2 + np.sum((np.sqrt(self.spectrum) - np.sqrt(reconstructed)) ** 2))


@dataclass
class Coverage:
    """How often intervals from independent draws contain a target, per interval construction."""

    target: float
    draws: int
    hits: dict[str, int] = field(default_factory=dict)
    widths: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, low: float, high: float) -> None:
        self.hits[name] = self.hits.get(name, 0) + int(low <= self.target <= high)
        self.widths.setdefault(name, []).append(high - low)

    def rate(self, name: str) -> float:
        return self.hits[name] / self.draws

    def width(self, name: str) -> float:
        return float(np.mean(self.widths[name]))


@dataclass
class DistanceCoverage:
    """Coverage of a distance's interval: its own mean at N (the target) and the population value."""

    population: float
    own_mean: float
    own_mean_error: float  # standard error of own_mean (Monte Carlo)
    estimator_sd: float
    own: Coverage
    of_population: Coverage


def distance_coverage(tokenizer: GaussianTokenizer, n: int, draws: int, settings: BootstrapSettings, *,
                      kind: str = "rfid", monte_carlo: int = 2000, seed: int = 0) -> DistanceCoverage:
    """Coverage of FID (``kind`` "rfid": paired reference; "gfid": fixed reference) or KID ("kid") intervals.

    The estimator's own mean at this N comes from ``monte_carlo`` independent draws; each of
    ``draws`` further draws gets its interval from ``settings.resamples`` bootstrap resamples
    (seed varied per draw) by every construction.
    """
    mu, sigma = tokenizer.reference_stats()
    estimate: Callable[[np.ndarray, np.ndarray], float]
    if kind == "rfid":
        estimate = lambda x, y: frechet_distance_from_features(y, x)  # noqa: E731
        replicates = lambda x, y, s: frechet_replicates(y, x, s, paired_reference=True)  # noqa: E731
    elif kind == "gfid":
        estimate = lambda x, y: frechet_distance(*feature_statistics(y), mu, sigma)  # noqa: E731
        replicates = lambda x, y, s: frechet_replicates(  # noqa: E731
            y, None, s, paired_reference=False, reference_stats=(mu, sigma))
    elif kind == "kid":
        estimate = lambda x, y: kid_estimate(y, x)  # noqa: E731
        replicates = lambda x, y, s: kid_replicates(y, x, s, paired_reference=True)  # noqa: E731
    else:
        raise ValueError(f"unknown kind {kind!r}; use 'rfid', 'gfid' or 'kid'")
    rng = np.random.default_rng(seed)
    values = np.array([estimate(*tokenizer.draw(rng, n)) for _ in range(monte_carlo)])
    population = tokenizer.population_distance() if kind != "kid" else float("nan")
    own = Coverage(float(values.mean()), draws)
    of_population = Coverage(population, draws)
    for index in range(draws):
        draw_settings = BootstrapSettings(settings.level, settings.resamples, settings.seed + index)
        x, y = tokenizer.draw(rng, n)
        value, reps = estimate(x, y), replicates(x, y, draw_settings)
        for name in CONSTRUCTIONS:
            interval = interval_from_replicates(value, reps, draw_settings, name)
            own.add(name, interval.low, interval.high)
            of_population.add(name, interval.low, interval.high)
    return DistanceCoverage(population, float(values.mean()), float(values.std() / np.sqrt(values.size)),
                            float(values.std()), own, of_population)


def accuracy_coverage(p: float, n: int, draws: int, settings: BootstrapSettings, seed: int = 0) -> Coverage:
    """Coverage of the true accuracy ``p`` by the Wilson and the percentile-bootstrap intervals."""
    rng = np.random.default_rng(seed)
    coverage = Coverage(p, draws)
    for index in range(draws):
        correct = (rng.random(n) < p).astype(np.float64)
        wilson = wilson_interval(int(correct.sum()), n, settings.level)
        coverage.add("wilson", wilson.low, wilson.high)
        draw_settings = BootstrapSettings(settings.level, settings.resamples, settings.seed + index)
        boot = interval_from_replicates(correct.mean(), mean_replicates(correct, draw_settings), draw_settings,
                                        PERCENTILE)
        coverage.add("bootstrap", boot.low, boot.high)
    return coverage


def mean_coverage(n: int, draws: int, settings: BootstrapSettings, seed: int = 0) -> Coverage:
    """Coverage of the population mean of skewed PSNR-like per-image values (25 dB + Gamma(2, 2))."""
    rng = np.random.default_rng(seed)
    coverage = Coverage(25.0 + 2.0 * 2.0, draws)
    for index in range(draws):
        values = 25.0 + rng.gamma(2.0, 2.0, size=n)
        draw_settings = BootstrapSettings(settings.level, settings.resamples, settings.seed + index)
        interval = interval_from_replicates(values.mean(), mean_replicates(values, draw_settings), draw_settings,
                                            PERCENTILE)
        coverage.add(PERCENTILE, interval.low, interval.high)
    return coverage
