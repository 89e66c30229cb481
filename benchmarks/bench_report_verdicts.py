"""The extra cost of intervals and ties when building a report.

Times ``build_report`` three ways on the same records:

  plain   no store: values only (what the report cost before verdicts)
  cold    with the store: every interval and test computed, bootstrap replicates drawn and
          cached in the store (the first report after a run)
  warm    the same again: replicates read back from the store (every later report)

By default the records are synthetic but shaped like the quickstart's (5 tokenizers;
reconstruction on 256 images with 2048-d Inception features; zero-shot and two probes on
1,200 examples; generation with 256 samples against 256 reference images), written into a
temporary store. ``--store DIR --suite NAME`` times a real store instead, e.g. the quickstart's.

    python benchmarks/bench_report_verdicts.py
    python benchmarks/bench_report_verdicts.py --store tokbench-store --suite quickstart
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from common import add_common_options, comparison, record, setup  # noqa: E402

from tokbench.storage.store import Store  # noqa: E402
from tokbench.verdicts.evidence import distance, per_item, pointer  # noqa: E402

TOKENIZERS = ("vae", "vtp", "vqgan", "rae", "bicubic")


def _artifact(store: Store, name: str, arrays: dict[str, np.ndarray]) -> str:
    from tokbench.hashing import content_key

    key = content_key({"bench": name})

    def produce(out):
        for file, array in arrays.items():
            np.save(out / file, array)

    store.get_or_create(key, produce, kind="bench-evidence")
    return key


def synthetic_store(root: Path, images: int, examples: int, dim: int) -> tuple[Store, list[dict]]:
    from report_fixtures import record as make_record

    from tokbench.metrics.frechet import frechet_distance_from_features

    rng = np.random.default_rng(0)
    store = Store(root)
    reference = rng.normal(size=(images, dim))
    reference_ptr = pointer(_artifact(store, "reference", {"features.npy": reference}), "features.npy")
    records = []
    for i, name in enumerate(TOKENIZERS):
        recon = reference + rng.normal(scale=0.2 + 0.1 * i, size=reference.shape)
        samples = rng.normal(loc=0.05 * i, size=(images, dim))
        hits = (rng.random((examples,)) < 0.5 + 0.05 * i).astype(np.float32)
        key = _artifact(store, name, {"features.npy": recon, "psnr.npy": rng.normal(25 - i, 2, images),
                                      "ssim.npy": rng.random(images), "samples.npy": samples, "top1.npy": hits,
                                      "precision.npy": rng.random(images) < 0.3, "recall.npy": rng.random(images) < 0.2})
        recon_ptr, sample_ptr = pointer(key, "features.npy"), pointer(key, "samples.npy")
        evidence = {"psnr": per_item("mean", pointer(key, "psnr.npy")), "ssim": per_item("mean", pointer(key, "ssim.npy")),
                    "rfid": distance("frechet", recon_ptr, reference_ptr, paired=True),
                    "kid": distance("kid", recon_ptr, reference_ptr, paired=True)}
        records.append(make_record("reconstruction", "reconstruction", "rfid-v1", name, name,
                                   {"rfid": frechet_distance_from_features(reference, recon), "kid": 0.0,
                                    "psnr": 25.0 - i, "ssim": 0.5},
                                   details={"num_images": images, "evidence": evidence}, key=f"recon-{name}"))
        for task, kind, protocol in (("zero_shot", "zero_shot", "zero-shot-v1"), ("probe-latent", "linear_probe", "lp"),
                                     ("probe-dinov2", "linear_probe", "lp")):
            if task == "zero_shot" and name != "vtp":
                continue
            records.append(make_record(task, kind, protocol, name, name, {"top1": float(hits.mean())}, dataset="colours",
                                       details={"num_images": examples, "evidence": {
                                           "top1": per_item("proportion", pointer(key, "top1.npy"))}},
                                       key=f"{task}-{name}"))
        gen_evidence = {"gfid": distance("frechet", sample_ptr, reference_ptr, paired=False),
                        "kid": distance("kid", sample_ptr, reference_ptr, paired=False),
                        "precision": per_item("proportion", pointer(key, "precision.npy"), paired=False),
                        "recall": per_item("proportion", pointer(key, "recall.npy"), paired=False)}
        records.append(make_record("generation", "generation", "gfid-v1", name, name,
                                   {"gfid": frechet_distance_from_features(reference, samples), "kid": 0.0,
                                    "precision": 0.3, "recall": 0.2},
                                   details={"num_images": images, "evidence": gen_evidence}, key=f"gen-{name}"))
    return store, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser)
    parser.add_argument("--store", help="time a real store (default: a synthetic quickstart-shaped one)")
    parser.add_argument("--suite", help="with --store: only this suite's results")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--examples", type=int, default=1200)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    device = setup(args)

    from tokbench.config.suite import ReportConfig
    from tokbench.report.report import build_report

    scratch = None
    if args.store:
        store = Store(args.store)
        records = [r for r in store.results() if args.suite is None or r.get("suite", {}).get("name") == args.suite]
        cache = Path(tempfile.mkdtemp(prefix="tokbench-bench-verdicts-"))  # replicates go here, not into the real store
        shutil.copytree(store.root, cache / "store", ignore=shutil.ignore_patterns("leaderboards"))
        store = Store(cache / "store")
        scratch = cache
    else:
        scratch = Path(tempfile.mkdtemp(prefix="tokbench-bench-verdicts-"))
        store, records = synthetic_store(scratch / "store", args.images, args.examples, args.dim)
    settings = ReportConfig(resamples=args.resamples)
    try:
        timings = {}
        for name, kwargs in (("plain", {}), ("cold", {"store": store}), ("warm", {"store": store})):
            started = time.perf_counter()
            report = build_report(records, settings=settings, **kwargs)
            timings[name] = time.perf_counter() - started
        cells = sum(1 for t in report.tables for c in t.cells.values() if c.ci_low is not None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures = {"plain_seconds": timings["plain"], "cold_seconds": timings["cold"], "warm_seconds": timings["warm"],
               "extra_cold_seconds": timings["cold"] - timings["plain"],
               "extra_warm_seconds": timings["warm"] - timings["plain"], "cells_with_intervals": cells,
               "results": len(records)}
    record("report_verdicts", {"source": args.store or "synthetic quickstart-shaped", "suite": args.suite,
                               "images": args.images, "examples": args.examples, "dim": args.dim,
                               "resamples": args.resamples}, figures,
           [comparison("report with verdicts, cold", timings["cold"], "report without", timings["plain"], "s"),
            comparison("report with verdicts, warm", timings["warm"], "report without", timings["plain"], "s")],
           device, save=not args.no_record)


if __name__ == "__main__":
    main()
