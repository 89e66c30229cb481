"""A pytest plugin (``-p tokbench.testing.leftover_threads``): a test session that leaves a live
non-daemon thread fails, with the thread's stack, instead of hanging.

Python joins every non-daemon thread before the interpreter exits, so one hung thread left by a
test keeps ``pytest`` alive after its summary; CI then ends at its time limit with no verdict
(it did once: a rank thread of tests/test_ranks.py waited forever for a crashed peer).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

import pytest

GRACE_S = 30.0  # threads still finishing their work get this long, all together (TOKBENCH_LEFTOVER_THREAD_GRACE_S)
_exit_status = 0


def leftover_threads(grace_s: float) -> list[threading.Thread]:
    """Non-daemon threads other than the main one still alive after waiting up to ``grace_s`` in all."""
    deadline = time.monotonic() + grace_s
    alive = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread)
    return alive


def describe(threads: list[threading.Thread]) -> str:
    frames = sys._current_frames()
    lines = [f"tests left {len(threads)} thread(s) running, which would keep this process from exiting; stopping it:"]
    for thread in threads:
        lines.append(f"thread {thread.name!r}:")
        frame = frames.get(thread.ident)
        if frame is not None:
            lines.extend(line.rstrip() for line in traceback.format_stack(frame))
    return "\n".join(lines)


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)  # after the summary and every other plugin's cleanup
def pytest_unconfigure(config):
    alive = leftover_threads(float(os.environ.get("TOKBENCH_LEFTOVER_THREAD_GRACE_S", GRACE_S)))
    if alive:
        sys.stdout.flush()  # the summary first, then why the session stops
        print(describe(alive), file=sys.__stderr__, flush=True)
        os._exit(_exit_status or 1)
