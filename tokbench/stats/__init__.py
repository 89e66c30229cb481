"""Confidence intervals and significance tests for tokbench's tables (numpy + scipy; never torch).

See docs/statistics.md for what each interval means and which test decides a tie.
"""

from tokbench.stats.bootstrap import (
    BASIC,
    CENTERED,
    PERCENTILE,
    REFLECTED,
    BootstrapSettings,
    Interval,
    interval_from_replicates,
    mean_replicates,
    resample_counts,
    resample_indices,
    wilson_interval,
)
from tokbench.stats.distances import frechet_replicates, kid_estimate, kid_replicates
from tokbench.stats.significance import (
    ColumnVerdict,
    Comparison,
    column_verdict,
    holm_adjust,
    mcnemar_comparison,
    paired_bootstrap_comparison,
    unpaired_bootstrap_comparison,
)

#: The interval construction whose coverage was measured for each kind of statistic (docs/statistics.md).
FRECHET_INTERVAL = CENTERED
KID_INTERVAL = CENTERED
MEAN_INTERVAL = PERCENTILE

__all__ = [
    "BASIC", "CENTERED", "FRECHET_INTERVAL", "KID_INTERVAL", "MEAN_INTERVAL", "PERCENTILE", "REFLECTED",
    "BootstrapSettings", "ColumnVerdict", "Comparison", "Interval", "column_verdict", "frechet_replicates",
    "holm_adjust", "interval_from_replicates", "kid_estimate", "kid_replicates", "mcnemar_comparison",
    "mean_replicates", "paired_bootstrap_comparison", "resample_counts", "resample_indices",
    "unpaired_bootstrap_comparison", "wilson_interval",
]
