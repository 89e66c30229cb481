"""Plan-time cost of code digests: every plugin installed here (built-in and in-repo), digested
the way ``tokbench run`` does at plan time (``tokbench.execution.planner.entry_code``).

    .venv/bin/python benchmarks/bench_code_digest.py

Figures: milliseconds to digest every registered tokenizer, task and dataset with no memo
(the worst case: a plan memoises per plugin, so a suite pays each plugin once), per plugin
with its file count and bytes, and the full ``plan_suite`` of suites/quickstart.yaml (which
uses every in-repo plugin; building its task objects imports torch, the digests do not). Best of ``--repeats`` after one warm-up (files in the page cache,
as they are on the second command of a session). Torch is never imported by the digests; the
script checks that.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to benchmarks/results/")
    args = parser.parse_args()

    from tokbench.config.suite import load_suite
    from tokbench.execution.planner import entry_code, plan_suite
    from tokbench.registry.plugins import get_registry
    from tokbench.storage.code_digest import source_files

    registry = get_registry()
    entries = [(kind, name) for kind in ("tokenizers", "tasks", "datasets") for name in getattr(registry, kind)]
    assert "torch" not in sys.modules, "loading the registry imported torch"

    def digest_everything() -> None:
        for kind, name in entries:
            entry_code(registry, kind, name)

    figures: dict = {"entries": len(entries), "all_entries_no_memo_ms": best_ms(digest_everything, args.repeats)}
    assert "torch" not in sys.modules, "a code digest imported torch"
    per_plugin: dict = {}
    for kind, name in entries:
        code = entry_code(registry, kind, name)
        if code.plugin in per_plugin:
            continue
        files = [path for package in code.packages for _, path in source_files(package)]
        per_plugin[code.plugin] = {
            "files": len(files), "kB": sum(p.stat().st_size for p in files) / 1000,
            "ms": best_ms(lambda kind=kind, name=name: entry_code(registry, kind, name), args.repeats),
        }
    figures["per_plugin"] = per_plugin
    figures["once_per_plugin_ms"] = sum(p["ms"] for p in per_plugin.values())
    figures["digests_imported_torch"] = "torch" in sys.modules  # False: asserted above
    suite = load_suite(ROOT / "suites" / "quickstart.yaml")
    figures["plan_quickstart_ms"] = best_ms(lambda: plan_suite(suite, registry), args.repeats)

    sys.path.insert(0, str(Path(__file__).parent))
    from common import record  # imports torch for the machine record: after the measurements

    record("code_digest", {"repeats": args.repeats}, figures, [], "cpu", save=not args.no_record)


if __name__ == "__main__":
    main()
