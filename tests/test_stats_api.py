"""tokbench.stats: exact replicates, hand-checked tests (Holm, McNemar, Wilson) and column verdicts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tokbench.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features
from tokbench.stats import (
    BootstrapSettings,
    column_verdict,
    frechet_replicates,
    holm_adjust,
    interval_from_replicates,
    kid_estimate,
    kid_replicates,
    mcnemar_comparison,
    mean_replicates,
    paired_bootstrap_comparison,
    resample_indices,
    unpaired_bootstrap_comparison,
    wilson_interval,
)

SMALL = BootstrapSettings(resamples=6, seed=3)


def _features(n: int = 30, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, 0.8 * x + 0.4 * rng.normal(size=(n, d)) + 0.3


def test_import_is_torch_free() -> None:
    code = "import sys, tokbench.stats; assert 'torch' not in sys.modules and 'scipy.stats' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resample_indices_are_shared_by_equal_n_and_differ_by_seed() -> None:
    first = resample_indices(50, BootstrapSettings(resamples=10, seed=1))
    assert first.shape == (10, 50) and first.min() >= 0 and first.max() < 50
    assert np.array_equal(first, resample_indices(50, BootstrapSettings(resamples=10, seed=1)))
    assert not np.array_equal(first, resample_indices(50, BootstrapSettings(resamples=10, seed=2)))
    with pytest.raises(ValueError):
        first[0, 0] = 1  # cached draws are read-only


def test_frechet_replicates_equal_the_distance_of_the_resampled_rows() -> None:
    x, y = _features()
    indices = resample_indices(x.shape[0], SMALL)
    paired = frechet_replicates(x, y, SMALL, paired_reference=True, adjust_duplicates=False)
    direct = [frechet_distance_from_features(x[i], y[i]) for i in indices]
    np.testing.assert_allclose(paired, direct, rtol=1e-6)  # eigvalsh of M M^T: ~1e-8 relative
    mu, sigma = feature_statistics(np.random.default_rng(5).normal(size=(200, x.shape[1])))
    fixed = frechet_replicates(x, None, SMALL, paired_reference=False, reference_stats=(mu, sigma),
                               adjust_duplicates=False)
    np.testing.assert_allclose(fixed, [frechet_distance(*feature_statistics(x[i]), mu, sigma) for i in indices],
                               rtol=1e-6)
    reference = np.random.default_rng(6).normal(size=(45, x.shape[1]))
    from_features = frechet_replicates(x, reference, SMALL, paired_reference=False, adjust_duplicates=False)
    np.testing.assert_allclose(from_features, [frechet_distance_from_features(x[i], reference) for i in indices],
                               rtol=1e-6)


def test_frechet_replicates_large_n_path_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    import tokbench.stats.distances as distances

    x, y = _features()
    expected = frechet_replicates(x, y, SMALL, paired_reference=True, adjust_duplicates=False)
    monkeypatch.setattr(distances, "GRAM_LIMIT", 10)
    again = frechet_replicates(x, y, SMALL, paired_reference=True, adjust_duplicates=False)
    np.testing.assert_allclose(again, expected, rtol=1e-6)


def test_frechet_replicates_reject_bad_reference() -> None:
    x, y = _features()
    with pytest.raises(ValueError, match="one row per image"):
        frechet_replicates(x, y[:-1], SMALL, paired_reference=True)
    with pytest.raises(ValueError, match="reference"):
        frechet_replicates(x, None, SMALL, paired_reference=False)


def test_kid_replicates_equal_the_unbiased_mmd_of_the_resampled_rows() -> None:
    x, y = _features(n=25, d=8)
    indices = resample_indices(x.shape[0], SMALL)
    every = np.arange(25)

    def brute(ix: np.ndarray, iy: np.ndarray) -> float:
        # the definition, pair by pair over the resampled lists; copies of one item are never paired
        k = lambda u, v: (u @ v / x.shape[1] + 1.0) ** 3  # noqa: E731

        def within(z: np.ndarray, idx: np.ndarray) -> float:
            values = [k(z[p], z[q]) for p in idx for q in idx if p != q]
            return sum(values) / len(values)

        xy = sum(k(x[p], y[q]) for p in ix for q in iy) / (len(ix) * len(iy))
        return within(x, ix) + within(y, iy) - 2 * xy

    replicates = kid_replicates(x, y, SMALL, paired_reference=True, adjust_duplicates=False)
    np.testing.assert_allclose(replicates, [brute(i, i) for i in indices], rtol=1e-9)
    fixed = kid_replicates(x, y, SMALL, paired_reference=False, adjust_duplicates=False)
    np.testing.assert_allclose(fixed, [brute(i, every) for i in indices], rtol=1e-9)
    assert kid_estimate(x, y) == pytest.approx(brute(every, every), rel=1e-10)


def test_intervals_and_their_descriptions() -> None:
    settings = BootstrapSettings(level=0.9)
    replicates = np.arange(101, dtype=float)  # quantiles 5 and 95, mean 50
    assert interval_from_replicates(40.0, replicates, settings, "percentile").low == pytest.approx(5.0)
    centred = interval_from_replicates(40.0, replicates, settings, "centered", over="101 images")
    assert (centred.low, centred.high) == pytest.approx((-5.0, 85.0)) and "101 images" in centred.method
    basic = interval_from_replicates(40.0, replicates, settings, "basic")
    assert (basic.low, basic.high) == pytest.approx((-15.0, 75.0))
    with pytest.raises(ValueError, match="construction"):
        interval_from_replicates(40.0, replicates, settings, "bca")


def test_wilson_interval_hand_value() -> None:
    interval = wilson_interval(8, 10)
    assert (interval.low, interval.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20).low == 0.0 and wilson_interval(20, 20).high == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_holm_hand_example() -> None:
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.2, 0.9]) == pytest.approx([0.4, 0.9]) and holm_adjust([0.5, 0.9]) == [1.0, 1.0]
    assert holm_adjust([]) == []


def test_mcnemar_exact_hand_example() -> None:
    # 8 examples only a gets right, 2 only b, 40 both, 10 neither: p = 2 * P(Bin(10, 1/2) <= 2) = 112/1024
    a = np.array([1] * 8 + [0] * 2 + [1] * 40 + [0] * 10)
    b = np.array([0] * 8 + [1] * 2 + [1] * 40 + [0] * 10)
    result = mcnemar_comparison(a, b)
    assert result.p_value == pytest.approx(112 / 1024)
    assert result.difference == pytest.approx(6 / 60)
    assert result.interval.low < result.difference < result.interval.high
    assert mcnemar_comparison(a, a).p_value == 1.0


def test_identical_rows_are_tied_and_a_clearly_worse_row_is_not() -> None:
    rng = np.random.default_rng(0)
    settings = BootstrapSettings(resamples=500)
    base = 30 + rng.normal(size=300)  # PSNR-like per-image values
    rows = [base, base.copy(), base - 1.0 + 0.3 * rng.normal(size=300), base - 0.01 + 0.3 * rng.normal(size=300)]
    estimates = [float(r.mean()) for r in rows]
    replicates = [mean_replicates(r, settings) for r in rows]

    def compare(i: int, j: int):
        return paired_bootstrap_comparison(estimates[i], replicates[i], estimates[j], replicates[j], settings)

    assert compare(0, 1).p_value == 1.0 and compare(0, 1).difference == 0.0
    verdict = column_verdict(estimates, higher_is_better=True, compare=compare)
    assert verdict.tied_with_best == [True, True, False, True]
    assert verdict.rank_ranges[2] == (4, 4) and verdict.rank_ranges[0] == (1, 3)
    assert verdict.p_vs_best[verdict.best] is None and verdict.p_vs_best[2] < 0.05


def test_fid_column_verdict_with_identical_and_worse_tokenizers() -> None:
    rng = np.random.default_rng(1)
    settings = BootstrapSettings(resamples=300)
    originals = rng.normal(size=(120, 16))
    good = originals + 0.3 * rng.normal(size=originals.shape)
    bad = originals * 0.5 + 1.5 * rng.normal(size=originals.shape)
    rows = [good, good.copy(), bad]
    estimates = [frechet_distance_from_features(r, originals) for r in rows]
    replicates = [frechet_replicates(r, originals, settings, paired_reference=True) for r in rows]
    verdict = column_verdict(estimates, higher_is_better=False, compare=lambda i, j: paired_bootstrap_comparison(
        estimates[i], replicates[i], estimates[j], replicates[j], settings))
    assert verdict.tied_with_best == [True, True, False]


def test_unpaired_comparison_separates_shifted_samples_only() -> None:
    rng = np.random.default_rng(2)
    settings = BootstrapSettings(resamples=400)
    a, b, c = rng.normal(size=200), rng.normal(size=200), rng.normal(loc=0.5, size=200)
    reps = [mean_replicates(v, settings) for v in (a, b, c)]
    same = unpaired_bootstrap_comparison(a.mean(), reps[0], b.mean(), reps[1], settings)
    shifted = unpaired_bootstrap_comparison(a.mean(), reps[0], c.mean(), reps[2], settings)
    assert same.p_value > 0.05 and shifted.p_value < 0.01
    assert shifted.interval.low < shifted.difference < shifted.interval.high < 0
    assert "unpaired" in shifted.test
