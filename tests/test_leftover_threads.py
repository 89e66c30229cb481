"""A session that leaves a live non-daemon thread fails with its stack instead of hanging
(tokbench.testing.leftover_threads, loaded for every run by the pytest config)."""

from __future__ import annotations

import os
import subprocess
import sys

LEAKS = '''
import threading
import time

never = threading.Event()


def test_leaves_a_stuck_thread():
    threading.Thread(target=never.wait, name="stuck-rank").start()


def test_leaves_a_thread_that_ends_soon():
    threading.Thread(target=time.sleep, args=(0.2,), name="finishing").start()
'''


def _pytest(tmp_path, *selection: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_leaks.py").write_text(LEAKS)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tokbench.testing.leftover_threads",
               "test_leaks.py", *selection]
    env = {**os.environ, "TOKBENCH_LEFTOVER_THREAD_GRACE_S": "3"}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_stuck_thread_fails_a_passing_session_and_names_the_thread(tmp_path):
    result = _pytest(tmp_path)
    assert "2 passed" in result.stdout, result.stdout
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "tests left 1 thread(s) running" in result.stderr and "'stuck-rank'" in result.stderr
    assert "in wait" in result.stderr, result.stderr  # its stack: where it waits
    assert "'finishing'" not in result.stderr


def test_a_thread_that_ends_within_the_grace_period_is_fine(tmp_path):
    result = _pytest(tmp_path, "-k", "ends_soon")
    assert result.returncode == 0 and "tests left" not in result.stderr, (result.stdout, result.stderr)
