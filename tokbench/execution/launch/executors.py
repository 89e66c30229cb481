"""Executors behind one seam: ``debug`` (in-process), ``local`` (worker processes), ``slurm``.

``debug`` and ``slurm`` go through submitit, ``local`` through this package's
:class:`~tokbench.execution.launch.pool.WorkerPool`; all submit two strings,
``(run_dir, unit_key)``, never a model. ``debug`` and ``local`` run the plan here, each unit as soon as its dependencies
are stored and a worker is free (a unit whose dependency failed is skipped with the
reason); ``slurm`` submits job arrays with ``afterok`` dependencies, wave by wave, and
returns (``tokbench.execution.launch.slurm``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from tokbench.config.suite import LauncherConfig
from tokbench.errors import TokbenchError
from tokbench.execution.planner import Plan, Unit
from tokbench.execution.runner import Outcome, execute_unit, is_done
from tokbench.storage.store import Store

Reporter = Callable[[Outcome], None]


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def make_executor(launcher: LauncherConfig, folder: Path, parameters: dict | None = None):
    """The executor of a backend; ``parameters`` (slurm): from ``resources.submitit_parameters``."""
    import submitit

    if launcher.backend == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if launcher.backend == "local":
        from tokbench.execution.launch.pool import WorkerPool

        return WorkerPool(folder, launcher.max_workers, launcher.timeout_min)
    if launcher.backend == "slurm":
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        executor.update_parameters(**(parameters or {}))
        return executor
    raise TokbenchError(f"launcher.backend: unknown backend {launcher.backend!r}; allowed: debug, local, slurm")


def launch(
    plan: Plan, run_dir: Path, store: Store, launcher: LauncherConfig, report: Reporter | None = None, progress: bool = True
) -> list[Outcome]:
    """Run every unit of the plan that is not already in the store (debug and local backends).

    A unit starts as soon as its dependencies are in the store and a worker is free (``debug``:
    one, in this process; ``local``: ``launcher.max_workers`` subprocesses), never waiting for a
    whole wave: on two cores, one worker can train the slowest tokenizer while the other trains
    the rest and evaluates them. The lightest evaluation that needs nothing trained goes first (a
    first number within a minute); then, among ready units, those that unlock the most others go
    first, then the heaviest (``Unit.weight``), so short units fill the end of the run."""
    if launcher.backend == "slurm":
        raise TokbenchError("the slurm backend submits and returns: use tokbench.execution.launch.slurm.submit (and wait)")
    report = report or (lambda outcome: None)
    outcomes: dict[str, Outcome] = {}
    started = [0, sum(not is_done(store, unit) for unit in plan.units)]  # units started, units to run
    waiting = _by_priority(plan)
    slots = 1 if launcher.backend == "debug" else launcher.max_workers
    running: list[tuple[Unit, object, WorkerLog | None]] = []
    executor = None

    def settle(outcome: Outcome) -> None:
        outcomes[outcome.key] = outcome
        report(outcome)

    try:
        while waiting or running:
            settled_before = len(outcomes)
            ready = _ready(waiting, outcomes, store, settle)
            while ready and len(running) < slots:
                unit = ready.pop(0)
                waiting.remove(unit)
                _announce(unit, started)
                executor = executor or make_executor(launcher, run_dir / "jobs")
                if launcher.backend == "debug":
                    settle(Outcome(**executor.submit(execute_unit, str(run_dir), unit.key, None, progress).result()))
                    break  # what it stored may have readied or settled others
                job = executor.submit(execute_unit, str(run_dir), unit.key, _threads_per_worker(slots), progress)
                running.append((unit, job, WorkerLog(job, unit.label) if progress else None))
            if not running:
                if waiting and len(outcomes) == settled_before:  # nothing ran, nothing can: a cycle
                    raise RuntimeError("dependency cycle in plan: " + ", ".join(u.label for u in waiting))
                continue
            time.sleep(0.2)
            still = []
            for unit, job, log in running:
                finished = job.done()
                if log is not None:  # after done(): a finished worker's last lines are in its file
                    log.forward()
                if not finished:
                    still.append((unit, job, log))
                    continue
                try:
                    settle(Outcome(**job.result()))
                except Exception as error:  # the worker process itself died (killed, out of memory, ...)
                    settle(Outcome(unit.key, unit.label, "failed", error=f"worker died: {error}".strip()))
            running = still
    except BaseException:  # Ctrl-C (or an error here): no worker goes on computing unseen
        for _, job, _ in running:
            job.cancel(check=False)
        raise
    finally:
        if hasattr(executor, "shutdown"):
            executor.shutdown()
    return [outcomes[u.key] for u in plan.units]


def _ready(waiting: list[Unit], outcomes: dict[str, Outcome], store: Store, settle: Reporter) -> list[Unit]:
    """Settles the waiting units that need no worker (a dependency failed: skipped; already in the
    store: cached), removing them from ``waiting``; returns those ready to run, in ``waiting``'s order."""
    ready = []
    for unit in list(waiting):
        failed = [outcomes[d] for d in unit.deps if d in outcomes and outcomes[d].status in ("failed", "skipped")]
        if failed:
            waiting.remove(unit)
            settle(Outcome(unit.key, unit.label, "skipped", error=f"dependency {failed[0].label} failed"))
        elif all(d in outcomes for d in unit.deps):
            if is_done(store, unit):
                waiting.remove(unit)
                settle(Outcome(unit.key, unit.label, "cached"))
            else:
                ready.append(unit)
    return ready


def _by_priority(plan: Plan) -> list[Unit]:
    """The plan's units: the lightest evaluation without dependencies, then most (transitive)
    dependents first, then heaviest, then in plan order."""
    dependents: dict[str, set[str]] = {unit.key: set() for unit in plan.units}
    for unit in plan.units:
        for dep in unit.deps:
            dependents.setdefault(dep, set()).add(unit.key)

    def reach(key: str, seen: set[str]) -> set[str]:
        for child in dependents.get(key, ()):
            if child not in seen:
                seen.add(child)
                reach(child, seen)
        return seen

    unlocks = {unit.key: len(reach(unit.key, set())) for unit in plan.units}
    order = {unit.key: index for index, unit in enumerate(plan.units)}
    ranked = sorted(plan.units, key=lambda unit: (-unlocks[unit.key], -unit.weight, order[unit.key]))
    # One number early: the lightest evaluation that needs nothing trained goes first, so a new
    # user sees a complete result (interval included) in the run's first minute, not after the
    # slowest tokenizer has trained. One unit moves; the total work is the same.
    free = [unit for unit in ranked if unit.action == "evaluate" and not unit.deps]
    if free:
        first = min(free, key=lambda unit: (unit.weight, order[unit.key]))
        ranked.remove(first)
        ranked.insert(0, first)
    return ranked


def _announce(unit: Unit, started: list[int]) -> None:
    """Which unit the run is on, to stderr: ``[3/26] generation/vae-tiny/shapes-val``."""
    started[0] += 1
    print(f"[{started[0]}/{max(started)}] {unit.label}", file=sys.stderr, flush=True)


class WorkerLog:
    """Forwards what a local worker prints (its phases and their progress) to this terminal,
    each line tagged with the unit it is about, as the worker writes it."""

    def __init__(self, job: object, label: str) -> None:
        self.path = Path(job.paths.stderr)  # type: ignore[attr-defined]
        self.label = label
        self.offset = 0
        self.rest = b""

    def forward(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:  # the worker has not started yet
            return
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                print(f"  {self.label} {text.lstrip()}", file=sys.stderr, flush=True)


def describe_backend(launcher: LauncherConfig) -> str:
    if launcher.backend == "slurm":
        return f"slurm (profile {launcher.profile})"
    if launcher.backend == "local":
        return f"local ({launcher.max_workers} worker(s), {_threads_per_worker(launcher.max_workers)} thread(s) each)"
    return f"{launcher.backend} (in-process, {sys.executable})"
