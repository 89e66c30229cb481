"""The Slurm backend: submit what is ready and return.

Units are submitted wave by wave (``Plan.waves``); the units of a wave that ask for
the same resources and wait for the same jobs go out as one job array, and a unit whose
dependencies are still queued waits for them with ``afterok`` (a failed dependency cancels it).
What is in the store is not submitted; what a live job already took on is not
submitted again (the ledger in ``slurm_state``); a unit whose job failed or was
cancelled is submitted anew. Submission holds a store lock, so two ``tokbench run``
started together still submit each unit once.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tokbench.config.resources import Resources, SlurmProfile, load_profile, submitit_parameters
from tokbench.config.suite import Suite
from tokbench.errors import TokbenchError
from tokbench.execution.launch import slurm_state
from tokbench.execution.planner import Plan, Unit
from tokbench.execution.runner import Outcome, is_done
from tokbench.storage.store import Store

SUBMIT_LOCK = "slurm-submit"


@dataclass
class SubmitReport:
    submitted: dict[str, str] = field(default_factory=dict)  # unit key -> job id
    queued: dict[str, str] = field(default_factory=dict)  # already queued by an earlier run
    cached: list[str] = field(default_factory=list)
    seconds: float = 0.0


def unit_resources(suite: Suite, unit: Unit) -> Resources:
    own = suite.tokenizers[unit.tokenizer].resources if unit.action == "prepare" else suite.tasks[unit.task_index].resources
    return (own or Resources()).over(suite.launcher.resources or Resources())


def _job_name(suite: Suite, unit: Unit) -> str:
    stage = "prepare" if unit.action == "prepare" else suite.tasks[unit.task_index].display_name
    return f"tokbench-{suite.name}-{stage}"


def _live_jobs(store: Store, plan: Plan) -> dict[str, str]:
    """Unit key -> job id of the units a queued or running job will still produce."""
    ledger = {u.key: s for u in plan.units if (s := slurm_state.submission(store, u.key)) is not None}
    states = slurm_state.job_states([s.job_id for s in ledger.values()])
    return {key: s.job_id for key, s in ledger.items() if slurm_state.is_active(states[s.job_id])}


def submit(plan: Plan, run_dir: Path, store: Store, suite: Suite, profile: SlurmProfile | None = None) -> SubmitReport:
    """Submit every unit that is neither in the store nor queued; returns at once."""
    import submitit

    from tokbench.execution.launch.executors import make_executor
    from tokbench.execution.launch.job import UnitJob

    started = time.time()
    profile = profile or load_profile(suite.launcher.profile or "")
    report = SubmitReport()
    with store.lock(SUBMIT_LOCK):
        live = _live_jobs(store, plan)
        jobs: dict[str, str] = {}  # unit key -> the job that will produce it
        for wave in plan.waves():
            groups: dict[tuple[str, str, tuple[str, ...]], list[Unit]] = defaultdict(list)
            for unit in wave:
                if is_done(store, unit):
                    report.cached.append(unit.key)
                elif unit.key in live:
                    jobs[unit.key] = report.queued[unit.key] = live[unit.key]
                else:
                    # One array per (resources, stage, dependencies): a unit waits only for its own
                    # dependencies, never for another tokenizer's training.
                    dependencies = tuple(sorted({jobs[d] for d in unit.deps if d in jobs}))
                    resources = json.dumps(unit_resources(suite, unit).model_dump(), sort_keys=True)
                    groups[(resources, _job_name(suite, unit), dependencies)].append(unit)
            for (_, _, dependencies), units in groups.items():
                params = submitit_parameters(profile, unit_resources(suite, units[0]), _job_name(suite, units[0]), list(dependencies))
                folder = run_dir / "slurm" / "%j"  # a fresh folder per run: Slurm job ids can restart
                executor = make_executor(suite.launcher, folder, params)

                try:
                    with executor.batch():
                        submitted = [executor.submit(UnitJob(str(run_dir), u.key)) for u in units]
                except submitit.core.utils.FailedJobError as error:  # sbatch refused: its message is the last line
                    reason = str(error).strip().splitlines()[-1]
                    raise TokbenchError(f"sbatch refused {_job_name(suite, units[0])} ({len(units)} unit(s)): {reason}; "
                                        f"check launcher.profile {suite.launcher.profile!r} and the resources") from None
                for unit, job in zip(units, submitted):
                    jobs[unit.key] = report.submitted[unit.key] = job.job_id
                    slurm_state.record(store, slurm_state.Submission(unit.key, job.job_id, run_dir.name, str(folder), time.time()))
    report.seconds = time.time() - started
    return report


def unit_states(plan: Plan, store: Store) -> dict[str, tuple[str, str | None, str | None]]:
    """Unit key -> (state, job id, error): done | PENDING/RUNNING/... (the job's) | not submitted."""
    ledger = {u.key: slurm_state.submission(store, u.key) for u in plan.units}
    states = slurm_state.job_states([s.job_id for s in ledger.values() if s is not None])
    result: dict[str, tuple[str, str | None, str | None]] = {}
    for unit in plan.units:
        sub = ledger[unit.key]
        if is_done(store, unit):
            result[unit.key] = ("done", sub.job_id if sub else None, None)
        elif sub is None:
            result[unit.key] = ("not submitted", None, None)
        else:
            state = states[sub.job_id]
            error = None if slurm_state.is_active(state) else _failure(store, sub, state)
            result[unit.key] = (state, sub.job_id, error)
    return result


def _failure(store: Store, sub: slurm_state.Submission, state: str) -> str:
    """Why a finished job left no result: the unit's own error, or the end of the job's log."""
    status = store.root / "runs" / sub.run / "units" / f"{sub.unit_key}.json"
    if status.is_file():
        data = json.loads(status.read_text())
        if data.get("error"):
            return data["error"]
    tail = slurm_state.job_log_tail(sub.folder, sub.job_id, 5)
    if state == "CANCELLED" and not tail:
        return f"job {sub.job_id} was cancelled (or a dependency failed)"
    return f"job {sub.job_id} ended {state} without a result" + (f"; log {sub.folder.replace('%j', sub.job_id)}:\n{tail}" if tail else "")


def wait(plan: Plan, store: Store, report: Callable[[Outcome], None] | None = None, poll_s: float = 2.0,
         timeout_s: float | None = None, cached: set[str] | frozenset[str] = frozenset()) -> list[Outcome]:
    """Block until no unit of the plan has a live job; one outcome per unit, reported as each ends."""
    report = report or (lambda outcome: None)
    reported: dict[str, Outcome] = {}
    started = time.time()

    def settled() -> bool:
        for key, (state, job, error) in unit_states(plan, store).items():
            if key in reported or slurm_state.is_active(state):
                continue
            unit = plan.unit(key)
            if state == "done":
                outcome = Outcome(key, unit.label, "cached" if key in cached else "done", time.time() - started)
            elif state == "not submitted":
                outcome = Outcome(key, unit.label, "skipped", error="not submitted")
            else:
                outcome = Outcome(key, unit.label, "failed", error=error or f"job {job} {state}")
            reported[key] = outcome
            report(outcome)
        return len(reported) == len(plan.units)

    if not slurm_state.wait_until(settled, timeout_s, poll_s):
        raise TimeoutError(f"units still queued or running after {timeout_s:.0f}s; see `tokbench status`")
    return [reported[u.key] for u in plan.units]


def cancel(plan: Plan, store: Store) -> list[str]:
    """Cancel the live jobs of the plan's units; returns their ids."""
    live = sorted(set(_live_jobs(store, plan).values()))
    slurm_state.cancel(live)
    return live
