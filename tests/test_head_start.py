"""The test suite's head start (tests/conftest.py): a marked test's command is already running
when its test begins, writes to its own store, and its result reads like ``run_cli``'s."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import BackgroundRun, head_start, run_cli


@pytest.mark.head_start("plugins-listing", "plugins")
def test_the_command_started_at_collection_and_reads_like_run_cli(request):
    began = time.time()
    run = head_start(request)
    assert run.started < began  # started by pytest_collection_finish, before this test ran
    assert head_start(request) is run  # one run per name
    done = run.result(timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == run_cli("plugins").stdout and "vtp" in done.stdout
    assert done.seconds > 0 and (run.directory / "stdout.txt").read_text() == done.stdout


def test_an_unmarked_test_cannot_ask_for_a_head_start(request):
    with pytest.raises(RuntimeError, match="no @pytest.mark.head_start"):
        head_start(request)


def test_a_run_past_its_timeout_is_killed(tmp_path):
    sleeper = BackgroundRun([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "slow", {})
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.result(timeout=1)
    assert sleeper.process.returncode is not None  # killed, not left running
