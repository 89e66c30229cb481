"""How many images separate two tokenizers, measured on a real store (e.g. the quickstart's).

For every pair of tokenizers in a column of paired Fréchet results (rFID: the same images),
the spread of the paired bootstrap difference at the run's N is measured from the stored
evidence; the difference's standard deviation shrinks as 1/sqrt(N), so the number of images
that detects a gap Δ with 80% power at the 5% level (two-sided) is

    N(Δ) = N_run · ((z_0.975 + z_0.8) · sd_run / Δ)²

Printed as a Markdown table (median and range over the pairs) for Δ = 0.1, 0.5 and 2, plus each
pair's measured difference and interval. The 1/sqrt(N) scaling ignores FID's own bias change
with N (both rows move together at equal N, which is the only comparison tokbench makes).

    python benchmarks/separation_from_store.py --store tokbench-store --metric rfid
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

GAPS = (0.1, 0.5, 2.0)
Z = 1.959964 + 0.841621  # two-sided 5% test, 80% power


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--metric", default="rfid")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    from tokbench.stats import BootstrapSettings, paired_bootstrap_comparison
    from tokbench.storage.store import Store
    from tokbench.verdicts.engine import VerdictEngine

    store = Store(Path(args.store))
    engine = VerdictEngine(store, BootstrapSettings(resamples=args.resamples))
    rows = []
    for record in store.results():
        evidence = record.get("details", {}).get("evidence", {}).get(args.metric)
        value = record.get("metrics", {}).get(args.metric)
        if evidence and value is not None and evidence.get("paired"):
            rows.append((record["tokenizer"].get("label") or record["tokenizer"]["name"], value, evidence))
    if len(rows) < 2:
        raise SystemExit(f"need two results with paired {args.metric} evidence in {store.root}, found {len(rows)}")
    needed = {gap: [] for gap in GAPS}
    print(f"| pair | {args.metric} difference | 95% interval | sd of paired difference at N |")
    print("|---|---|---|---|")
    n_run = None
    for (name_a, value_a, ev_a), (name_b, value_b, ev_b) in itertools.combinations(rows, 2):
        a, b = engine.material(ev_a, value_a), engine.material(ev_b, value_b)
        n_run = a.n
        comparison = paired_bootstrap_comparison(a.value, a.replicates, b.value, b.replicates, engine.settings)
        sd = float(np.std(a.replicates - b.replicates, ddof=1))
        print(f"| {name_a} vs {name_b} | {comparison.difference:+.2f} | [{comparison.interval.low:+.2f}, "
              f"{comparison.interval.high:+.2f}] | {sd:.2f} (N = {a.n}) |")
        for gap in GAPS:
            needed[gap].append(a.n * (Z * sd / gap) ** 2)
    print()
    print(f"| FID gap | images needed (median over pairs) | range |")
    print("|---|---|---|")
    for gap in GAPS:
        values = np.array(needed[gap])
        print(f"| {gap:g} | {np.median(values):,.0f} | {values.min():,.0f} – {values.max():,.0f} |")
    print(json.dumps({"store": str(store.root), "metric": args.metric, "n_run": n_run,
                      "images_needed_median": {str(g): float(np.median(needed[g])) for g in GAPS}}))


if __name__ == "__main__":
    main()
