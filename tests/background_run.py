"""A CLI run started when the test session starts, collected by the test that checks it.

The quickstart keeps both cores of a 2-core machine busy for 12 to 22 minutes. The rest of the
test command runs in one pytest process that leaves a core idle much of the time (interpreters
starting, the Slurm cluster's scheduling, tensors too small to split). One after the other, the two
add up. Started together, the quickstart takes only what the other tests leave: it runs under
Linux's SCHED_IDLE policy, so a test's thread that wakes up takes its core at once. (At nice 10
it does not: the tests' torch threads, woken for every small op, waited behind the quickstart's
and the other tests ran 1.6x slower.) The run is the user's command in a fresh interpreter, as
before (the policy changes when a process runs, not what it computes): only its start moves, and
the test that checks it runs last (docs/performance.md, "The test command").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def hermetic_environment(base: Path) -> dict[str, str]:
    """What every test's tokbench sees: offline, no progress bars, caches under the session's temp dir."""
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKBENCH_NO_PROGRESS": "1",
        "TOKBENCH_CACHE": str(base / "tokbench-cache"),
        "TORCH_HOME": str(base / "torch-home"),
    }


def _prepare_child() -> None:
    """In the child before it starts: SCHED_IDLE (inherited by its workers), else the lowest nice;
    and SIGINT's default action, so that :meth:`BackgroundRun.stop` interrupts it even when the test
    session ignores SIGINT (started by a non-interactive shell's ``&``, as CI scripts often are)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(frozen=True)
class FinishedRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    env: dict[str, str]


def tokbench_command(*args: str) -> list[str]:
    """The CLI in a fresh interpreter, as a user runs it."""
    return [sys.executable, "-m", "tokbench.cli.main", *args]


class BackgroundRun:
    """A command started now, its output in files (a pipe would fill and block it)."""

    def __init__(self, command: list[str], workdir: Path, env: dict[str, str], cwd: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**hermetic_environment(workdir), **env}
        self._stdout, self._stderr = workdir / "stdout.txt", workdir / "stderr.txt"
        self.started = time.time()
        with self._stdout.open("w") as out, self._stderr.open("w") as err:
            self.process = subprocess.Popen(
                command, cwd=cwd,
                env={**os.environ, **self.env}, stdout=out, stderr=err, text=True,
                preexec_fn=_prepare_child,
            )
        self.seconds: float | None = None

    def result(self, timeout: float) -> FinishedRun:
        """Wait for the run (``timeout`` seconds counted from its start), then what it printed."""
        remaining = max(1.0, timeout - (time.time() - self.started))
        try:
            returncode = self.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        if self.seconds is None:
            self.seconds = time.time() - self.started
        return FinishedRun(returncode, self._stdout.read_text(), self._stderr.read_text(), self.seconds, self.env)

    def stop(self) -> None:
        """Cancel a run still going (a session stopped early): its local workers die with it."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
