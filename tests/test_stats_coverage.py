"""Coverage of tokbench's intervals on simulated data (seeded; figures in docs/statistics.md).

A 95% interval should contain its target in about 95% of independent draws; the acceptance
band is 90-99% over at least 200 draws. For FID the target is the estimator's own mean at
this N (FID is biased upward at small N and comparable only at equal N); how far that mean
sits from the population distance is reported, not covered.
"""

from __future__ import annotations

import pytest

from tokbench.stats import FRECHET_INTERVAL, KID_INTERVAL, BootstrapSettings
from tokbench.stats.simulation import GaussianTokenizer, accuracy_coverage, distance_coverage, mean_coverage

DRAWS = 200
SETTINGS = BootstrapSettings(level=0.95, resamples=1000, seed=0)
TOKENIZER = GaussianTokenizer(dim=128)  # N = 32 = d / 4 (quickstart: 256 images of 2048-d features, d / 8)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rfid", "gfid"])
def test_fid_interval_covers_its_own_mean_at_n(kind: str) -> None:
    result = distance_coverage(TOKENIZER, 32, DRAWS, SETTINGS, kind=kind, monte_carlo=1000)
    assert 0.90 <= result.own.rate(FRECHET_INTERVAL) <= 0.99, result.own.hits
    # the naive percentile interval sits above the estimate (duplicates inflate FID): it fails
    assert result.own.rate("percentile") < 0.5
    # small-N bias: the mean at N = 32 is far above the population distance, so no interval covers it
    assert result.own_mean > 1.5 * result.population
    assert result.of_population.rate(FRECHET_INTERVAL) < 0.05


@pytest.mark.slow
def test_kid_interval_covers_its_own_mean_at_n() -> None:
    result = distance_coverage(TOKENIZER, 32, DRAWS, SETTINGS, kind="kid", monte_carlo=1000)
    assert 0.90 <= result.own.rate(KID_INTERVAL) <= 1.0, result.own.hits
    assert result.own.width(KID_INTERVAL) < 5 * result.estimator_sd  # conservative, not useless


def test_accuracy_intervals_cover_the_true_accuracy() -> None:
    coverage = accuracy_coverage(0.7, 300, 400, SETTINGS)
    assert 0.90 <= coverage.rate("wilson") <= 0.99
    assert 0.90 <= coverage.rate("bootstrap") <= 0.99


def test_mean_interval_covers_the_population_mean_of_psnr_like_values() -> None:
    coverage = mean_coverage(100, 400, SETTINGS)
    assert 0.90 <= coverage.rate("percentile") <= 0.99
