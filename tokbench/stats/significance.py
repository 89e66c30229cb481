"""Significance between rows of a column: paired/unpaired bootstrap, McNemar, Holm, and the column verdict.

Which test decides a tie (docs/statistics.md):
- rows that saw the same items (reconstruction, probes, zero-shot): the paired bootstrap over
  the same resample indices (``resample_indices``), or McNemar's exact test on per-example
  correctness;
- rows that saw different items (gFID: each generator's own samples): the unpaired bootstrap.
Multiple comparisons: Holm within the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tokbench.stats.bootstrap import BootstrapSettings, Interval, wilson_interval


@dataclass(frozen=True)
class Comparison:
    """Row a against row b: two-sided p-value of "no difference" and the difference a - b with its interval."""

    p_value: float
    difference: float
    interval: Interval
    test: str


def _bootstrap_comparison(difference: float, null: np.ndarray, settings: BootstrapSettings, test: str) -> Comparison:
    """Interval and two-sided p-value from bootstrap replicates of the difference.

    The replicates are re-centred on the observed difference (``"centered"`` construction, as for
    the Fréchet distance: resampling biases each side) and the p-value is the share of centred
    replicates at least as far from the observed difference as zero is, with the +1 correction.
    """
    spread = null - null.mean()
    tail = (1.0 - settings.level) / 2.0
    q_lo, q_hi = np.quantile(spread, [tail, 1.0 - tail])
    extreme = int(np.count_nonzero(np.abs(spread) >= abs(difference) - 1e-12 * max(1.0, abs(difference))))
    p_value = min(1.0, (extreme + 1) / (spread.size + 1))
    interval = Interval(low=float(difference + q_lo), high=float(difference + q_hi),
                        method=f"{settings.level:.0%} {test}, percentile interval of the difference re-centred "
                               "on the observed difference")
    return Comparison(p_value=float(p_value), difference=float(difference), interval=interval, test=test)


def _replicates(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite 1-d array of bootstrap replicates")
    return array


def paired_bootstrap_comparison(estimate_a: float, replicates_a: np.ndarray, estimate_b: float,
                                replicates_b: np.ndarray, settings: BootstrapSettings) -> Comparison:
    """Paired bootstrap: both rows' replicates come from the SAME ``resample_indices`` (same items, same draws)."""
    a, b = _replicates(replicates_a, "replicates_a"), _replicates(replicates_b, "replicates_b")
    if a.shape != b.shape:
        raise ValueError(f"paired replicates must come from the same resamples: {a.size} vs {b.size}")
    test = f"paired bootstrap over the same items ({a.size} resamples)"
    return _bootstrap_comparison(float(estimate_a) - float(estimate_b), a - b, settings, test)


def unpaired_bootstrap_comparison(estimate_a: float, replicates_a: np.ndarray, estimate_b: float,
                                  replicates_b: np.ndarray, settings: BootstrapSettings) -> Comparison:
    """Unpaired bootstrap for rows measured on different items (gFID: each row's own samples).

    The difference's distribution is every replicate of a minus every replicate of b (the
    convolution of two independent bootstraps), so the shared index draws of equal-size rows do
    not pair unrelated items.
    """
    a, b = _replicates(replicates_a, "replicates_a"), _replicates(replicates_b, "replicates_b")
    test = f"unpaired bootstrap ({a.size} x {b.size} resamples)"
    return _bootstrap_comparison(float(estimate_a) - float(estimate_b), (a[:, None] - b[None, :]).ravel(),
                                 settings, test)


def mcnemar_comparison(correct_a: np.ndarray, correct_b: np.ndarray, level: float = 0.95) -> Comparison:
    """McNemar's exact test on the same examples: binomial test of the discordant pairs.

    The difference is accuracy a - accuracy b; its interval is Newcombe's (1998) square-and-add
    interval for paired proportions (Wilson intervals of both accuracies, with the correlation
    of the pairs).
    """
    a = np.asarray(correct_a).astype(bool)
    b = np.asarray(correct_b).astype(bool)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"McNemar needs per-example correctness of both rows on the same examples, got "
                         f"shapes {a.shape} and {b.shape}")
    n = a.size
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    both = int(np.count_nonzero(a & b))
    neither = n - only_a - only_b - both
    discordant = only_a + only_b
    from scipy.stats import binomtest  # lazy: scipy.stats costs most of a second to import

    p_value = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    w1, w2 = wilson_interval(both + only_a, n, level), wilson_interval(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / np.sqrt(margins) if margins > 0 else 0.0
    d1, u1 = p1 - w1.low, w1.high - p1
    d2, u2 = p2 - w2.low, w2.high - p2
    difference = p1 - p2
    low = difference - np.sqrt(max(d1 * d1 - 2 * phi * d1 * u2 + u2 * u2, 0.0))
    high = difference + np.sqrt(max(u1 * u1 - 2 * phi * u1 * d2 + d2 * d2, 0.0))
    test = f"McNemar exact test on {n} shared examples ({only_a} vs {only_b} discordant)"
    interval = Interval(low=float(low), high=float(high),
                        method=f"{level:.0%} Newcombe interval of the paired accuracy difference over {n} examples")
    return Comparison(p_value=p_value, difference=float(difference), interval=interval, test=test)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError(f"p-values must be a 1-d sequence of numbers in [0, 1], got {list(p_values)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return [float(v) for v in adjusted]


@dataclass
class ColumnVerdict:
    """Which rows of a column are tied with its best, and each row's possible ranks."""

    best: int
    tied_with_best: list[bool]
    rank_ranges: list[tuple[int, int]]
    p_vs_best: list[float | None]


def column_verdict(estimates: Sequence[float], higher_is_better: bool, compare: Callable[[int, int], Comparison],
                   alpha: float = 0.05) -> ColumnVerdict:
    """Ties with the best and rank ranges for one column.

    ``compare(i, j)`` tests row i against row j (difference = estimate_i - estimate_j).
    ``tied_with_best``: the best row and every row whose Holm-adjusted p-value against the best
    (Holm over the k - 1 comparisons with the best) is at least ``alpha``. ``rank_ranges``: from
    all k (k - 1) / 2 pairwise tests, Holm-adjusted together; row i ranks at best 1 + (rows
    significantly better than i) and at worst k - (rows significantly worse than i).
    """
    values = [float(v) for v in estimates]
    k = len(values)
    if k == 0:
        raise ValueError("a column needs at least one row")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    sign = 1.0 if higher_is_better else -1.0
    best = max(range(k), key=lambda i: (sign * values[i], -i))
    others = [i for i in range(k) if i != best]
    adjusted_vs_best = holm_adjust([compare(best, i).p_value for i in others]) if others else []
    p_vs_best: list[float | None] = [None] * k
    for i, p in zip(others, adjusted_vs_best):
        p_vs_best[i] = p
    tied = [i == best or (p_vs_best[i] is not None and p_vs_best[i] >= alpha) for i in range(k)]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    pair_p = holm_adjust([compare(i, j).p_value for i, j in pairs]) if pairs else []
    better_than = [0] * k  # rows significantly better than row i
    worse_than = [0] * k  # rows significantly worse than row i
    for (i, j), p in zip(pairs, pair_p):
        if p >= alpha or values[i] == values[j]:
            continue
        winner, loser = (i, j) if sign * (values[i] - values[j]) > 0 else (j, i)
        better_than[loser] += 1
        worse_than[winner] += 1
    ranks = [(1 + better_than[i], k - worse_than[i]) for i in range(k)]
    return ColumnVerdict(best=best, tied_with_best=tied, rank_ranges=ranks, p_vs_best=p_vs_best)
