"""Cost of bootstrap intervals on 2048-d features, and how many images separate two tokenizers.

    .venv/bin/python benchmarks/bench_stats.py                        # N = 256, 1000, 5000 at d = 2048
    .venv/bin/python benchmarks/bench_stats.py --separation           # + the images-needed table

Timed: ``tokbench.stats.frechet_replicates`` (rFID: reference resampled with the same indices;
gFID: fixed reference statistics) and ``kid_replicates`` for ``--resamples`` resamples. Above
``GRAM_LIMIT`` images the Fréchet replicates use the d x d form and only ``--large-resamples``
are timed, then scaled to ``--resamples``. Baseline, in the same process: the distance of the
resampled rows computed directly (``frechet_distance_from_features`` on x[idx], y[idx]: two
2048 x 2048 covariances and their trace term per resample), timed on 3 resamples and scaled.

``--separation``: two simulated tokenizers (``tokbench.stats.simulation.GaussianTokenizer``,
d = 2048) reconstruct the same originals with independent errors whose population FIDs differ
by 0.1, 0.5 and 2. At N0 images the paired bootstrap gives the standard deviation of the FID
difference; a paired test at the 5% level with 80% power needs N = N0 (2.8 sd / delta)^2
images (standard deviations of a difference shrink as 1/sqrt(N)); measured at two N0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, comparison, record  # noqa: E402

from tokbench.metrics.frechet import feature_statistics, frechet_distance_from_features  # noqa: E402
from tokbench.stats import BootstrapSettings, frechet_replicates, kid_replicates, resample_indices  # noqa: E402
from tokbench.stats.distances import GRAM_LIMIT  # noqa: E402
from tokbench.stats.simulation import GaussianTokenizer  # noqa: E402


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def replicate_costs(n: int, dim: int, resamples: int, large_resamples: int) -> tuple[dict, list]:
    rng = np.random.default_rng(0)
    originals = rng.standard_normal((n, dim))
    reconstructions = 0.8 * originals + 0.5 * rng.standard_normal((n, dim))
    reference = feature_statistics(rng.standard_normal((max(n, dim) + 1, dim)))
    timed = resamples if n <= GRAM_LIMIT else large_resamples
    settings = BootstrapSettings(resamples=timed)
    scale = resamples / timed
    rfid = seconds(lambda: frechet_replicates(reconstructions, originals, settings, paired_reference=True)) * scale
    gfid = seconds(lambda: frechet_replicates(reconstructions, None, settings, paired_reference=False,
                                              reference_stats=reference)) * scale
    kid = seconds(lambda: kid_replicates(reconstructions, originals, BootstrapSettings(resamples=resamples),
                                         paired_reference=True))
    indices = resample_indices(n, BootstrapSettings(resamples=3))
    direct = seconds(lambda: [frechet_distance_from_features(reconstructions[i], originals[i]) for i in indices])
    direct *= resamples / 3
    figures = {f"rfid_s_n{n}": rfid, f"gfid_s_n{n}": gfid, f"kid_s_n{n}": kid, f"direct_rfid_s_n{n}": direct}
    rows = [comparison(f"rFID replicates, N={n}, d={dim}, {resamples} resamples", rfid,
                       "d x d distance per resample", direct, "s")]
    print(f"N={n}: rFID {rfid:.2f} s, gFID {gfid:.2f} s, KID {kid:.2f} s, direct rFID {direct:.1f} s "
          f"(per {resamples} resamples{'' if timed == resamples else f', scaled from {timed}'})", flush=True)
    return figures, rows


def _tokenizer_with_distance(dim: int, target: float) -> GaussianTokenizer:
    low, high = 0.0, 10.0  # noise level whose population distance is `target` (bisection; FD grows with noise)
    for _ in range(60):
        middle = (low + high) / 2
        if GaussianTokenizer(dim, scale=1.0, noise=middle, shift=0.0).population_distance() < target:
            low = middle
        else:
            high = middle
    return GaussianTokenizer(dim, scale=1.0, noise=(low + high) / 2, shift=0.0)


def separation(dim: int, base: float, deltas: list[float], sizes: list[int], resamples: int) -> dict:
    settings = BootstrapSettings(resamples=resamples)
    figures = {}
    first = _tokenizer_with_distance(dim, base)
    for delta in deltas:
        second = _tokenizer_with_distance(dim, base + delta)
        for n in sizes:
            rng = np.random.default_rng(1)
            originals = rng.standard_normal((n, dim)) * np.sqrt(first.spectrum)
            rows = [originals + t.noise * rng.standard_normal((n, dim)) for t in (first, second)]
            reps = [frechet_replicates(r, originals, settings, paired_reference=True) for r in rows]
            sd = float(np.std(reps[1] - reps[0]))
            needed = n * (2.8 * sd / delta) ** 2
            figures[f"sd_diff_delta{delta}_n{n}"] = sd
            figures[f"images_needed_delta{delta}_from_n{n}"] = needed
            print(f"delta FID {delta}: at N={n} sd of paired difference {sd:.3f} -> about {needed:,.0f} images "
                  "for a 5%-level paired test with 80% power", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,1000,5000")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--large-resamples", type=int, default=5)
    parser.add_argument("--separation", action="store_true")
    parser.add_argument("--separation-sizes", default="256,1000")
    parser.add_argument("--separation-resamples", type=int, default=200)
    parser.add_argument("--base-fid", type=float, default=2.0)
    add_common_options(parser)
    args = parser.parse_args()
    figures, rows = {}, []
    for n in [int(v) for v in args.sizes.split(",")]:
        more_figures, more_rows = replicate_costs(n, args.dim, args.resamples, args.large_resamples)
        figures.update(more_figures)
        rows.extend(more_rows)
    if args.separation:
        figures.update(separation(args.dim, args.base_fid, [0.1, 0.5, 2.0],
                                  [int(v) for v in args.separation_sizes.split(",")], args.separation_resamples))
    record("stats", vars(args), figures, rows, "cpu", save=not args.no_record)


if __name__ == "__main__":
    main()
