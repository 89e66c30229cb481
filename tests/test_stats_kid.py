"""KID at small N: tokbench's estimate equals torch-fidelity's on the same features and subset
settings, and the bootstrap over images gives a real interval where the subset std is ~0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokbench.metrics.frechet import kernel_inception_distance
from tokbench.stats import KID_INTERVAL, BootstrapSettings, interval_from_replicates, kid_estimate, kid_replicates


def _torch_fidelity_kid(first: np.ndarray, second: np.ndarray, subsets: int, subset_size: int,
                        seed: int) -> tuple[float, float]:
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    result = kid_features_to_metric(torch.from_numpy(first), torch.from_numpy(second), kid_subsets=subsets,
                                    kid_subset_size=subset_size, rng_seed=seed, verbose=False)
    return float(result[KEY_METRIC_KID_MEAN]), float(result[KEY_METRIC_KID_STD])


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    originals = rng.standard_normal((83, 48))  # 83 images, as in the first-use report
    return originals, 0.9 * originals + 0.5 * rng.standard_normal((83, 48)) + 0.05


def test_kid_matches_torch_fidelity_with_subsets_smaller_than_n(features) -> None:
    first, second = features
    mean, std = kernel_inception_distance(first, second, subsets=50, subset_size=40, seed=3)
    ref_mean, ref_std = _torch_fidelity_kid(first, second, 50, 40, 3)
    assert mean == pytest.approx(ref_mean, rel=1e-9) and std == pytest.approx(ref_std, rel=1e-9)
    assert std > 1e-4  # subsets genuinely smaller than N do vary


def test_kid_on_all_images_matches_torch_fidelity_and_gets_a_real_interval(features) -> None:
    first, second = features
    ref_mean, ref_std = _torch_fidelity_kid(first, second, 5, 83, 0)
    assert kid_estimate(second, first) == pytest.approx(ref_mean, rel=1e-9)
    assert ref_std < 1e-12  # every "subset" is the whole set: the old "± 0.00"
    settings = BootstrapSettings(resamples=400)
    estimate = kid_estimate(second, first)
    replicates = kid_replicates(second, first, settings, paired_reference=True)
    interval = interval_from_replicates(estimate, replicates, settings, KID_INTERVAL, over="83 images")
    assert interval.low < estimate < interval.high
    assert interval.high - interval.low > 0.1 * abs(estimate)
