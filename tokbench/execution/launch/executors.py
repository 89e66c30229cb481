"""Executors behind one seam: ``debug`` (in-process), ``local`` (subprocesses), ``slurm``.

All go through submitit and submit two strings, ``(run_dir, unit_key)``, never a
model. ``debug`` and ``local`` run the plan here, in dependency waves (a unit whose
dependency failed is skipped with the reason); ``slurm`` submits job arrays with
``afterok`` dependencies and returns (``tokbench.execution.launch.slurm``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from tokbench.config.suite import LauncherConfig
from tokbench.errors import TokbenchError
from tokbench.execution.planner import Plan, Unit
from tokbench.execution.runner import Outcome, execute_unit, is_done
from tokbench.storage.store import Store

Reporter = Callable[[Outcome], None]


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def make_executor(launcher: LauncherConfig, folder: Path, parameters: dict | None = None):
    """The submitit executor of a backend; ``parameters`` (slurm): from ``resources.submitit_parameters``."""
    import submitit

    if launcher.backend == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if launcher.backend == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=launcher.timeout_min)
        return executor
    if launcher.backend == "slurm":
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        executor.update_parameters(**(parameters or {}))
        return executor
    raise TokbenchError(f"launcher.backend: unknown backend {launcher.backend!r}; allowed: debug, local, slurm")


def launch(
    plan: Plan, run_dir: Path, store: Store, launcher: LauncherConfig, report: Reporter | None = None, progress: bool = True
) -> list[Outcome]:
    """Run every unit of the plan that is not already in the store (debug and local backends)."""
    if launcher.backend == "slurm":
        raise TokbenchError("the slurm backend submits and returns: use tokbench.execution.launch.slurm.submit (and wait)")
    report = report or (lambda outcome: None)
    outcomes: dict[str, Outcome] = {}
    executor = None
    started = [0, sum(not is_done(store, unit) for unit in plan.units)]  # units started, units to run
    for wave in plan.waves():
        pending: list[Unit] = []
        for unit in wave:
            failed_deps = [d for d in unit.deps if outcomes.get(d) and outcomes[d].status in ("failed", "skipped")]
            if failed_deps:
                outcome = Outcome(unit.key, unit.label, "skipped", error=f"dependency {outcomes[failed_deps[0]].label} failed")
            elif is_done(store, unit):
                outcome = Outcome(unit.key, unit.label, "cached")
            else:
                pending.append(unit)
                continue
            outcomes[unit.key] = outcome
            report(outcome)
        if not pending:
            continue
        executor = executor or make_executor(launcher, run_dir / "jobs")
        for outcome in _run_wave(executor, pending, run_dir, launcher, progress, started):
            outcomes[outcome.key] = outcome
            report(outcome)
    return [outcomes[u.key] for u in plan.units]


def _announce(unit: Unit, started: list[int]) -> None:
    """Which unit the run is on, to stderr: ``[3/26] generation/vae-tiny/shapes-val``."""
    started[0] += 1
    print(f"[{started[0]}/{max(started)}] {unit.label}", file=sys.stderr, flush=True)


def _run_wave(executor, units: list[Unit], run_dir: Path, launcher: LauncherConfig, progress: bool,
              started: list[int]) -> Iterator[Outcome]:
    """The outcomes of ``units``, each as soon as its unit ends."""
    if launcher.backend == "debug":
        for unit in units:
            _announce(unit, started)
            job = executor.submit(execute_unit, str(run_dir), unit.key, None, progress)
            yield Outcome(**job.result())
        return
    threads = _threads_per_worker(launcher.max_workers)
    queue = list(units)
    running: list[tuple[Unit, object]] = []
    while queue or running:
        while queue and len(running) < launcher.max_workers:
            unit = queue.pop(0)
            _announce(unit, started)
            running.append((unit, executor.submit(execute_unit, str(run_dir), unit.key, threads, False)))
        time.sleep(0.2)
        still = []
        for unit, job in running:
            if not job.done():
                still.append((unit, job))
                continue
            try:
                yield Outcome(**job.result())
            except Exception as error:  # the worker process itself died (killed, out of memory, ...)
                yield Outcome(unit.key, unit.label, "failed", error=f"worker died: {error}".strip())
        running = still


def describe_backend(launcher: LauncherConfig) -> str:
    if launcher.backend == "slurm":
        return f"slurm (profile {launcher.profile})"
    if launcher.backend == "local":
        return f"local ({launcher.max_workers} worker(s), {_threads_per_worker(launcher.max_workers)} thread(s) each)"
    return f"{launcher.backend} (in-process, {sys.executable})"
