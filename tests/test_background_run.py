"""The test session's background run (the quickstart's first run starts with the session)."""

from __future__ import annotations

import os
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


def test_stopping_a_background_run_ends_it(tmp_path):
    run = BackgroundRun([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path, env={}, cwd=tmp_path)
    started = time.time()
    run.stop()
    assert run.process.poll() is not None and time.time() - started < 60
