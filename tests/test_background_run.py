"""The test session's background run (the quickstart's first run starts with the session)."""

from __future__ import annotations

import os
import signal
import sys
import time

from background_run import BackgroundRun


def test_a_background_run_yields_the_cores_and_sees_the_hermetic_environment(tmp_path):
    probe = ("import os; print(os.sched_getscheduler(0) == os.SCHED_IDLE, os.environ['TOKBENCH_NO_PROGRESS'], "
             "os.environ['TOKBENCH_STORE'], os.environ['TOKBENCH_CACHE'])")
    run = BackgroundRun([sys.executable, "-c", probe], tmp_path / "run", env={"TOKBENCH_STORE": "s"}, cwd=tmp_path)
    done = run.result(timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1", "s", str(tmp_path / "run" / "tokbench-cache")]
    assert done.seconds > 0 and done.env["HF_HUB_OFFLINE"] == "1"


def test_stopping_a_background_run_interrupts_it(tmp_path):
    # A session started by a non-interactive shell's `&` (how CI scripts often run) ignores SIGINT,
    # and children inherit that: the run must still get the interrupt, not wait out stop()'s 30 s and die by SIGKILL.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = BackgroundRun([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"], tmp_path,
                            env={}, cwd=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 60
    while "up" not in (tmp_path / "stdout.txt").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the interrupt should reach Python's handler (KeyboardInterrupt), not the bare process
    run.stop()
    assert run.process.returncode == -signal.SIGINT, run.process.returncode  # KeyboardInterrupt, not SIGKILL
