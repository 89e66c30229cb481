"""The ``local`` backend's workers: processes that stay up and run one unit after another.

A fresh interpreter per unit (submitit's ``LocalExecutor``) spent about 3.5 s starting (torch,
the plugins, the plan) and 1–2.6 s importing a tokenizer's libraries again, for every unit
(docs/performance.md). A worker here pays that once. What a fresh process gave each unit, it
still gets:

- its own log files (``stdout``/``stderr`` redirected at the descriptor level, so what C code
  prints lands there too), which the launcher forwards to the terminal;
- a clean start: the working directory, the environment, grad mode, the default dtype and
  torch's random state (fresh entropy, as a new interpreter draws) are reset before each unit;
- failure isolation: an exception fails its unit only (``execute_unit`` returns it as an
  outcome); a worker that dies (a crash, the out-of-memory killer) fails the unit it was running
  and is replaced; a unit past ``launcher.timeout_min`` is stopped the same way;
- Ctrl-C and ``cancel`` kill the worker. Workers ignore SIGINT themselves (the launcher decides)
  and die with the launcher (Linux), so none goes on computing unseen.

The interface is the slice of submitit's executor that :func:`~tokbench.execution.launch.executors.launch`
uses: ``submit(fn, *args)`` returning a job with ``done()``, ``result()``, ``cancel()`` and
``paths.stdout``/``paths.stderr``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: the environment variable naming the job that ran a unit (kept in its record's provenance)
JOB_ID_VARIABLE = "TOKBENCH_LOCAL_JOB_ID"


class WorkerDied(RuntimeError):
    """The process running a unit ended without returning (killed, crashed, timed out)."""


@dataclass(frozen=True)
class JobPaths:
    stdout: Path
    stderr: Path


class _Worker:
    """One worker: ``python -m tokbench.execution.launch.pool FD PARENT`` talking over an inherited
    socket. A plain interpreter, not multiprocessing's spawn: that would run the launcher's
    ``__main__`` again in every worker (a notebook's cells, a script without a main guard)."""

    def __init__(self, folder: Path) -> None:
        self.connection, child = multiprocessing.Pipe()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "workers.err", "ab") as startup_log:  # what a worker prints before its first unit
            # not a daemon: a unit may start processes of its own (data loader workers on a GPU)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tokbench.execution.launch.pool", str(child.fileno()), str(os.getpid())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=startup_log, stderr=startup_log)
        child.close()
        self.connection.send(list(sys.path))  # where the work's functions are importable from, as here
        self.busy = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, kill: bool = False) -> None:
        if kill and self.alive():
            self.process.kill()
        else:
            try:
                self.connection.send(None)
            except (OSError, ValueError):
                pass

    def wait(self) -> None:
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.connection.close()


class PoolJob:
    """One unit on one worker."""

    def __init__(self, pool: "WorkerPool", worker: _Worker, job_id: str, paths: JobPaths, timeout_s: float) -> None:
        self.pool, self.worker, self.job_id, self.paths = pool, worker, job_id, paths
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self._reply: tuple[str, Any] | None = None

    def done(self) -> bool:
        if self._reply is not None:
            return True
        worker = self.worker
        try:
            if worker.connection.poll():
                self._settle(worker.connection.recv())
                return True
        except (EOFError, OSError):
            pass  # the pipe closed: the process is gone, and says why below
        if not worker.alive() or worker.connection.closed:
            self._settle(("died", f"the worker process ended with exit code {worker.process.wait()} (its output: "
                                  f"{self.paths.stderr}; before its first unit: {self.paths.stderr.parent / 'workers.err'})"),
                         dead=True)
        elif time.monotonic() > self.deadline:
            self._settle(("died", f"timed out after {self.timeout_s / 60:g} min (launcher.timeout_min); the worker was stopped"),
                         dead=True)
        return self._reply is not None

    def result(self) -> Any:
        while not self.done():
            time.sleep(0.05)
        kind, value = self._reply  # type: ignore[misc]
        if kind == "returned":
            return value
        raise (WorkerDied if kind == "died" else RuntimeError)(value)

    def cancel(self, check: bool = False) -> None:
        if self._reply is None:
            self._settle(("died", "cancelled"), dead=True)

    def _settle(self, reply: tuple[str, Any], dead: bool = False) -> None:
        self._reply = reply
        if dead or reply[0] != "returned":
            self.pool._discard(self.worker)
        else:
            self.worker.busy = False


class WorkerPool:
    """Up to ``workers`` processes, all started at once, so they import torch side by side."""

    def __init__(self, folder: Path, workers: int, timeout_min: float = 24 * 60) -> None:
        self.folder = Path(folder)
        self.timeout_s = timeout_min * 60
        self.workers = [_Worker(self.folder) for _ in range(workers)]
        self.size = workers
        self._numbers = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any) -> PoolJob:
        for idle_but_dead in [w for w in self.workers if not w.busy and not w.alive()]:
            self._discard(idle_but_dead)
        worker = next((w for w in self.workers if not w.busy), None)
        if worker is None:
            if len(self.workers) >= self.size:
                raise RuntimeError(f"all {self.size} workers are busy")
            worker = _Worker(self.folder)
            self.workers.append(worker)
        job_id = f"{worker.process.pid}_{next(self._numbers)}"
        paths = JobPaths(self.folder / f"{job_id}_log.out", self.folder / f"{job_id}_log.err")
        worker.busy = True
        worker.connection.send((fn, args, {JOB_ID_VARIABLE: job_id}, str(paths.stdout), str(paths.stderr)))
        return PoolJob(self, worker, job_id, paths, self.timeout_s)

    def _discard(self, worker: _Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        worker.stop(kill=True)
        worker.wait()

    def shutdown(self) -> None:
        for worker in self.workers:  # all told first, then waited for: they exit side by side
            worker.stop(kill=worker.busy)
        for worker in self.workers:
            worker.wait()
        self.workers = []


def _serve(connection, parent: int) -> None:
    """A worker's loop: run what arrives, one unit at a time, until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the launcher decides
    _die_with(parent)
    import gc
    import traceback

    try:
        sys.path[:] = connection.recv()
    except (EOFError, OSError):
        return
    import torch  # once, before the first unit; every unit needs it

    from tokbench.runtime.memory import release_freed_memory

    environment, cwd = dict(os.environ), os.getcwd()
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the launcher is gone
            return
        if message is None:
            return
        fn, args, variables, stdout, stderr = message
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update({**environment, **variables})
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)
        torch.seed()
        _redirect(stdout, stderr)
        try:
            reply = ("returned", fn(*args))
        except BaseException as error:  # noqa: BLE001 - sent to the launcher as this unit's failure
            reply = ("raised", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        gc.collect()
        release_freed_memory()  # one unit's peak is not held for the next
        if torch.cuda.is_initialized():  # the next unit starts with the GPU memory a new process would see
            torch.cuda.empty_cache()
        connection.send(reply)


def _redirect(stdout: str, stderr: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for path, descriptor in ((stdout, 1), (stderr, 2)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(opened, descriptor)
        os.close(opened)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)


def _die_with(parent: int) -> None:
    """Linux: the kernel kills this worker when the launcher dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the launcher died before the line above took effect
        os._exit(1)


if __name__ == "__main__":
    from multiprocessing.connection import Connection

    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
