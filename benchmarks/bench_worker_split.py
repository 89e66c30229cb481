"""Two workers with half the cores each, or one with all of them: which trains faster?

    .venv/bin/python benchmarks/bench_worker_split.py                        # dit, vtp, rae-encoder, vqgan
    .venv/bin/python benchmarks/bench_worker_split.py --only dit --steps 100

For each of the quickstart's trainers (``profile_tiny_training.py``'s, as the quickstart calls
them), seconds per step of one process using every core, of one using half of them, and of two
such processes side by side (what ``launcher.backend: local`` with ``max_workers: 2`` runs). The
comparison is training throughput: two half-core processes' steps per second together against
one all-core process's. Small matrices (the tiny generators) gain most, because one op cannot
keep two cores busy; large ones gain little. Each measurement is its own interpreter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

#: trainer -> steps timed (after one warm step)
DEFAULT_STEPS = {"dit": 200, "vtp": 12, "rae-encoder": 20, "vqgan": 40}


def child(name: str, threads: int, steps: int) -> None:
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")  # as the tokbench CLI sets it
    import torch

    from tokbench.runtime.memory import keep_freed_memory

    keep_freed_memory()  # as every unit runs

    from profile_tiny_training import TRAINERS

    torch.set_num_threads(threads)
    _, warm = TRAINERS[name](1)
    _, run = TRAINERS[name](steps + 1)
    warm()
    started = time.perf_counter()
    run()
    total = time.perf_counter() - started
    started = time.perf_counter()
    _, one = TRAINERS[name](1)
    one()
    setup = time.perf_counter() - started  # building and one step: taken off the timed run
    print(f"SECONDS_PER_STEP {(total - setup) / steps:.6f}", flush=True)


def timed(name: str, threads: int, steps: int, copies: int) -> list[float]:
    command = [sys.executable, __file__, "--child", name, str(threads), str(steps)]
    env = {**os.environ, "TOKBENCH_NO_PROGRESS": "1"}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(copies)]
    seconds = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{name} at {threads} thread(s) failed ({process.returncode})")
        seconds.append(float(out.rsplit("SECONDS_PER_STEP", 1)[1].split()[0]))
    return seconds


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    from common import record

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DEFAULT_STEPS), help=f"comma-separated: {', '.join(DEFAULT_STEPS)}")
    parser.add_argument("--steps", type=int, default=0, help="steps timed per trainer (0: each trainer's default)")
    parser.add_argument("--device", default="cpu", help="cpu only: this is about sharing CPU cores")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.device != "cpu":
        raise SystemExit("bench_worker_split.py measures CPU cores shared by worker processes: --device cpu")
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    figures, comparisons = {}, []
    for name in args.only.split(","):
        steps = args.steps or DEFAULT_STEPS[name]
        alone_all = timed(name, cores, steps, 1)[0]
        alone_half = timed(name, half, steps, 1)[0]
        side_by_side = timed(name, half, steps, 2)
        figures.update({f"{name}_s_per_step_all_cores": alone_all, f"{name}_s_per_step_half_cores": alone_half,
                        f"{name}_s_per_step_two_side_by_side": side_by_side})
        comparisons.append({"what": f"{name} training throughput", "unit": "steps/s",
                            "ours": sum(1 / s for s in side_by_side),
                            "baseline": f"one process on all {cores} cores", "baseline_value": 1 / alone_all})
    record("worker_split", {"trainers": args.only, "cores": cores, "threads_per_worker": half}, figures, comparisons,
           "cpu", save=not args.no_record)


if __name__ == "__main__":
    main()
