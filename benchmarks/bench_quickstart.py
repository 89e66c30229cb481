"""How long a new user waits: the quickstart from a fresh store (median of N runs) and, in each, how
long until the first unit's numbers were printed; then a rerun with everything in the store, and
where the first run's time went, phase by phase.

    .venv/bin/python benchmarks/bench_quickstart.py                  # suites/quickstart.yaml, 2 fresh runs (~50 min on 2 cores)
    .venv/bin/python benchmarks/bench_quickstart.py --runs 1 --no-record
    .venv/bin/python benchmarks/bench_quickstart.py --quick --no-record   # a seconds-long suite: checks the script

Each run is ``tokbench run SUITE --store <fresh temporary store>`` in a new interpreter, as a user
types it (after setup: the Inception weights conversion cache in ~/.cache/tokbench is kept, like
a second quickstart on the same machine). The breakdown sums the ``timings`` every unit records
(``tokbench.runtime.timing``) over the units of the last fresh run; the per-unit table is that run's
``leaderboards/<suite>/timings.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICK_SUITE = """
name: bench-quick
datasets:
  shapes-val: {kind: shapes, params: {split: val, num_images: 16, resolution: 32, seed: 0}}
  shapes-train: {kind: shapes, params: {split: train, num_images: 32, resolution: 32, seed: 0}}
tokenizers:
  bicubic-f4: {plugin: resample, params: {factor: 4, mode: bicubic}}
  bilinear-f4: {plugin: resample, params: {factor: 4, mode: bilinear}}
tasks:
  - kind: reconstruction
    dataset: shapes-val
    params: {batch_size: 16, metrics: [psnr, ssim]}
  - kind: linear_probe
    dataset: shapes-val
    train_dataset: shapes-train
    params: {protocol: bottleneck, latent_pool: 4, iterations: 20, batch_size: 16}
"""


FIRST_RESULT = re.compile(r"^\s+done\s+\S+ in [\d.]+s: ")  # a finished unit's line with its headline numbers


def run_suite(suite: Path, store: Path) -> tuple[float, float | None]:
    """(wall seconds, seconds until the first unit's headline numbers were printed; None: none printed)."""
    started = time.perf_counter()
    first_result, output = None, []
    with subprocess.Popen([sys.executable, "-m", "tokbench.cli.main", "run", str(suite), "--store", str(store), "--no-progress"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            output.append(line)
            if first_result is None and FIRST_RESULT.match(line):
                first_result = time.perf_counter() - started
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"tokbench run failed ({process.returncode}):\n{''.join(output)[-6000:]}")
    return seconds, first_result


def phase_totals(store: Path) -> tuple[dict[str, float], float]:
    """Seconds per phase summed over the store's results (``other``: outside every phase), and the units' sum."""
    from tokbench.report.timings import timing_rows

    records = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    totals: dict[str, float] = {}
    rows = timing_rows(records)
    for row in rows:
        for name, seconds in row["phases"].items():
            totals[name] = totals.get(name, 0.0) + seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1])), sum(row["total"] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=str(REPO / "suites" / "quickstart.yaml"))
    parser.add_argument("--runs", type=int, default=2, help="fresh-store runs (the median is reported)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long suite of built-in baselines instead")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to benchmarks/results/")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tokbench-bench-quickstart-") as tmp:
        suite = Path(args.suite)
        if args.quick:
            suite = Path(tmp) / "quick.yaml"
            suite.write_text(QUICK_SUITE)
        fresh, first_results = [], []
        for index in range(args.runs):
            store = Path(tmp) / f"store-{index}"
            seconds, first_result = run_suite(suite, store)
            fresh.append(seconds)
            first_results.append(first_result)
            print(f"fresh run {index + 1}/{args.runs}: {seconds:.1f}s, first result printed at "
                  f"{'-' if first_result is None else f'{first_result:.1f}s'}", file=sys.stderr)
        cached, _ = run_suite(suite, store)  # everything in the store (last fresh run's)
        print(f"cached rerun: {cached:.1f}s", file=sys.stderr)
        phases, units = phase_totals(store)
        table = (store / "leaderboards").glob("*/timings.md")
        print(next(table).read_text() if phases else "(no timings recorded)")

    figures = {"fresh_seconds_median": statistics.median(fresh), "fresh_seconds": fresh,
               "first_result_seconds": first_results, "cached_rerun_seconds": cached,
               "units_seconds": units, "phase_seconds": phases}
    record("quickstart", {"suite": "quick" if args.quick else str(Path(args.suite).name), "runs": args.runs}, figures, [],
           "cpu", save=not args.no_record and not args.quick)


if __name__ == "__main__":
    main()
