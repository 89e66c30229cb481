"""Job states from Slurm (squeue for live jobs, sacct for finished ones) and the
submission ledger: which job last took on which unit. No torch, no submitit.

The ledger lives in the store (``<store>/slurm/jobs/<unit key>.json``), on the
shared storage every job and every login node sees, so a second ``tokbench run``
knows what is already queued and submits nothing twice.
"""

from __future__ import annotations

import getpass
import json
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tokbench.errors import TokbenchError
from tokbench.storage.store import Store, write_json_atomic

#: a job in one of these states will still run the unit (or is running it)
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED", "RESV_DEL_HOLD"}


@dataclass
class Submission:
    unit_key: str
    job_id: str
    run: str
    folder: str
    time: float


def _ledger_dir(store: Store) -> Path:
    return store.root / "slurm" / "jobs"


def record(store: Store, submission: Submission) -> None:
    write_json_atomic(_ledger_dir(store) / f"{submission.unit_key}.json", asdict(submission))


def submission(store: Store, unit_key: str) -> Submission | None:
    path = _ledger_dir(store) / f"{unit_key}.json"
    return Submission(**json.loads(path.read_text())) if path.is_file() else None


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise TokbenchError(f"{command[0]} not found: the slurm backend runs on a Slurm login node "
                            "(or start the local test cluster: sudo bash slurm/local/start.sh)") from None
    if done.returncode != 0:
        raise TokbenchError(f"`{' '.join(command)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm state of each job id (``123`` or an array task ``123_4``); UNKNOWN when Slurm forgot it."""
    if not job_ids:
        return {}
    states: dict[str, str] = {}
    for line in _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"]).splitlines():
        job, _, state = line.strip().partition("|")
        states[job] = state
    missing = sorted({j.split("_")[0] for j in job_ids if j not in states})
    if missing:
        for line in _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(missing)]).splitlines():
            job, _, state = line.strip().partition("|")
            if job and job not in states:
                states[job] = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    return {job: states.get(job, "UNKNOWN") for job in job_ids}


def is_active(state: str) -> bool:
    return state in ACTIVE


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])


def job_log_tail(folder: str, job_id: str, lines: int = 20) -> str:
    """The end of a job's stderr (submitit writes <folder>/<job>_0_log.err)."""
    path = Path(folder.replace("%j", job_id)) / f"{job_id}_0_log.err"
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(predicate, timeout_s: float | None, poll_s: float = 2.0) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` (None: forever)."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while not predicate():
        if deadline is not None and time.time() > deadline:
            return False
        time.sleep(poll_s)
    return True


def base_job_id(job_id: str) -> str:
    return re.split(r"[_.]", job_id)[0]
