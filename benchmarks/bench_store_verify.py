"""Overhead of verify-on-read on a cached rerun, at the store level.

Builds a store shaped like a reconstruction + generation suite's (FID reference features
sharded as 2048-d float64, reconstruction score shards, a tokenizer checkpoint, a generator
checkpoint, result records), then times what a rerun does with it in a fresh process state:

- ``cached``: every unit found done (each record read and checked) and the results listed;
- ``recompute``: the evaluation rereads its cached artifacts (``todo``/``finalize``, every
  shard loaded, Fréchet distance computed) as when only the result record is missing.

Each is timed with verification (this tokbench) and without (the old checks: a manifest
exists, a record parses), from a cold per-process cache (first read hashes every file).

    .venv/bin/python benchmarks/bench_store_verify.py --images 2000 --repeats 5

``--suite S --store D`` times the real thing instead: ``tokbench run S --store D`` in-process on a
store where S already ran (``cached``), and with the result records removed from a copy
(``recompute``: every unit re-reads its cached artifacts), verified vs unverified.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from tokbench import hashing
from tokbench.storage.store import MANIFEST, Store


def build(root: Path, images: int, shard: int, checkpoint_mb: int) -> list[str]:
    store = Store(root)
    rng = np.random.default_rng(0)
    for key in ("reference", "recon"):
        sharded = store.sharded(key, kind="features", num_shards=-(-images // shard))
        for index in range(sharded.num_shards):
            n = min(shard, images - index * shard)
            sharded.write_shard(index, lambda d, n=n: (np.save(d / "features.npy", rng.standard_normal((n, 2048))),
                                                       np.save(d / "psnr.npy", rng.standard_normal(n))))
        sharded.finalize()
    for key in ("tokenizer-ckpt", "generator-ckpt"):
        store.get_or_create(key, lambda d: (d / "checkpoint.pt").write_bytes(rng.bytes(checkpoint_mb << 20)), kind="ckpt")
    keys = [f"unit{i}" for i in range(12)]
    for key in keys:
        store.put_result(key, {"type": "result", "metrics": {"rfid": 1.0}, "artifacts": ["reference", "recon"],
                               "inputs": ["tokenizer-ckpt", "generator-ckpt", "reference", "recon"]})
    return keys


def rerun(root: Path, keys: list[str], images: int, shard: int, recompute: bool) -> float:
    from tokbench.metrics.frechet import feature_statistics, frechet_distance

    hashing._FILE_DIGEST_CACHE.clear()  # a fresh process
    started = time.perf_counter()
    store = Store(root)
    assert all(store.has_result(k) for k in keys)
    list(store.results())
    if recompute:
        assert store.has("tokenizer-ckpt") and store.has("generator-ckpt")
        loaded = {}
        for key in ("reference", "recon"):
            sharded = store.sharded(key, kind="features", num_shards=-(-images // shard))
            assert sharded.todo() == []
            sharded.finalize()
            loaded[key] = np.concatenate([np.load(sharded.shard_dir(i) / "features.npy") for i in range(sharded.num_shards)])
        frechet_distance(*feature_statistics(loaded["reference"]), *feature_statistics(loaded["recon"]))
    store.close()
    return time.perf_counter() - started


def without_verification():
    """Patch the store back to the checks it made before verify-on-read."""
    import tokbench.storage.store as module

    saved = (Store._intact, Store._read_record)

    def intact(self, directory, memo, kind, key):
        return (directory / MANIFEST).is_file()

    def read_record(self, path, key):
        return json.loads(path.read_text()) if path.is_file() else None

    Store._intact, Store._read_record = intact, read_record
    return lambda: setattr(Store, "_intact", saved[0]) or setattr(Store, "_read_record", saved[1]) or module


def run_suite(suite: str, store: Path, repeats: int, recompute: bool) -> dict[str, float]:
    import shutil
    import tempfile

    from tokbench.cli.main import main as cli

    timings: dict[str, list[float]] = {"verified": [], "unverified": []}
    for repeat in range(repeats):
        for mode in (list(timings) if repeat % 2 else list(timings)[::-1]):  # alternate, so drift and warm-up hit both
            with tempfile.TemporaryDirectory() as scratch:
                root = store
                if recompute:
                    root = Path(scratch) / "store"
                    shutil.copytree(store, root, ignore=shutil.ignore_patterns("locks"))
                    for record in (root / "results").glob("*.json"):
                        record.unlink()
                hashing._FILE_DIGEST_CACHE.clear()
                restore = without_verification() if mode == "unverified" else (lambda: None)
                started = time.perf_counter()
                try:
                    cli(["run", suite, "--store", str(root), "--no-progress"])
                except SystemExit as exit:
                    if exit.code:
                        raise RuntimeError(f"tokbench run exited {exit.code}") from None
                finally:
                    restore()
                timings[mode].append(time.perf_counter() - started)
    best = {mode: min(values) for mode, values in timings.items()}
    return {**best, "overhead_pct": 100 * (best["verified"] / best["unverified"] - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--shard", type=int, default=500)
    parser.add_argument("--checkpoint-mb", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--suite", help="time `tokbench run SUITE` on --store (where it already ran)")
    parser.add_argument("--store", type=Path)
    args = parser.parse_args()
    if args.suite:
        import contextlib
        import io
        import sys

        with contextlib.redirect_stdout(io.StringIO()):
            results = {scenario: run_suite(args.suite, args.store, args.repeats, scenario == "recompute")
                       for scenario in ("cached", "recompute")}
        json.dump({"benchmark": "store_verify_run", "settings": {**vars(args), "store": str(args.store)},
                   "seconds_min_of_repeats": results}, sys.stdout, indent=2)
        print()
        return
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        keys = build(root, args.images, args.shard, args.checkpoint_mb)
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        results = {}
        for scenario in ("cached", "recompute"):
            timings = {}
            for mode in ("verified", "unverified"):
                restore = without_verification() if mode == "unverified" else (lambda: None)
                try:
                    runs = [rerun(root, keys, args.images, args.shard, scenario == "recompute") for _ in range(args.repeats)]
                finally:
                    restore()
                timings[mode] = min(runs)
            timings["overhead_pct"] = 100 * (timings["verified"] / timings["unverified"] - 1)
            results[scenario] = timings
        print(json.dumps({"benchmark": "store_verify", "store_mb": round(size_mb, 1), "settings": vars(args),
                          "seconds_min_of_repeats": results}, indent=2))


if __name__ == "__main__":
    main()
