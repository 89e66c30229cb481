"""Bootstrap replicates of improved recall (Kynkäänniemi et al., 2019) over the generated samples.

Precision is a mean over generated samples of "inside the real manifold", and the real
manifold (the reference) is fixed, so its interval is the bootstrap of a mean over the
per-sample hits (``mean_replicates``). Recall is not: it is the fraction of *real* samples
inside the *generated* manifold, whose k-NN radii depend on the whole generated set. Its
replicates therefore resample the generated samples and rebuild their manifold each time.

A resample with duplicated items would give a duplicate a k-NN radius of 0 at its copies; the
manifold is built from the distinct resampled samples instead (radii from their k nearest
other distinct samples): about 0.63 N balls, each larger. The two effects nearly cancel, and
the plain ``"percentile"`` interval is the construction whose coverage measured best
(:data:`RECALL_INTERVAL`; 300 simulated sets each: 95.3% at d = 4, N = 48 and 93.3% at d = 16,
N = 64, where ``"centered"`` gave 90.3% / 88.7%; the bootstrap's spread is 12-17% below the
true one, which is what the remaining shortfall reflects). Checked in ``tests/test_stats_manifold.py``. Distances are computed once
(N_generated x N_generated and N_real x N_generated); a resample is then selection and a
partial sort, so N of a few thousand is fine.
"""

from __future__ import annotations

import numpy as np

from tokbench.stats.bootstrap import PERCENTILE, BootstrapSettings, resample_counts

#: the interval construction for recall replicates (measured; see the module docstring)
RECALL_INTERVAL = PERCENTILE


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def recall_hits(real: np.ndarray, generated: np.ndarray, k: int = 3) -> np.ndarray:
    """Per real sample, whether it lies inside at least one generated sample's k-NN ball."""
    within = _distances(generated, generated)
    radii = np.partition(within, k, axis=1)[:, k]  # column 0 is the sample itself
    return (_distances(real, generated) <= radii[None, :]).any(axis=1)


def recall_replicates(generated: np.ndarray, real: np.ndarray, settings: BootstrapSettings, k: int = 3) -> np.ndarray:
    """(resamples,) recall of the real samples against resampled generated samples' manifolds."""
    generated = np.asarray(generated, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    n = generated.shape[0]
    if n <= k + 1:
        raise ValueError(f"recall with k = {k} needs more than {k + 1} generated samples, got {n}")
    within = _distances(generated, generated)
    across = _distances(real, generated)
    counts = resample_counts(n, settings)
    replicates = np.empty(counts.shape[0])
    for b, c in enumerate(counts):
        keep = np.flatnonzero(c)
        if keep.size <= k:
            replicates[b] = np.nan
            continue
        radii = np.partition(within[np.ix_(keep, keep)], k, axis=1)[:, k]
        replicates[b] = float((across[:, keep] <= radii[None, :]).any(axis=1).mean())
    return replicates[np.isfinite(replicates)]
