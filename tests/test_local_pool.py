"""The local backend's persistent workers: one process runs unit after unit, yet each unit
keeps what a fresh process gave it (its own logs, a clean environment, isolation from crashes)."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from tokbench.execution.launch.pool import JOB_ID_VARIABLE, WorkerDied, WorkerPool


def report_and_dirty(tag: str) -> dict:
    """Prints from Python and from the descriptor (as C code would), then leaves a mess behind."""
    import torch

    print(f"out {tag}")
    os.write(2, f"fd2 {tag}\n".encode())
    seen = {"pid": os.getpid(), "job": os.environ.get(JOB_ID_VARIABLE), "leak": os.environ.get("LEAKED"),
            "cwd": os.getcwd(), "grad": torch.is_grad_enabled(), "dtype": str(torch.get_default_dtype()),
            "draw": torch.rand(1).item()}
    os.environ["LEAKED"] = tag
    os.chdir("/")
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    return seen


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_long() -> None:
    time.sleep(60)


def raise_error() -> None:
    raise ValueError("from inside the worker")


def wait_until(job, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while not job.done():
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.05)
    return job


def test_one_worker_runs_units_one_after_another_each_with_its_own_logs_and_a_clean_start(tmp_path):
    pool = WorkerPool(tmp_path / "jobs", workers=1)
    try:
        first = wait_until(pool.submit(report_and_dirty, "a")).result()
        second_job = pool.submit(report_and_dirty, "b")
        second = wait_until(second_job).result()
    finally:
        pool.shutdown()
    assert first["pid"] == second["pid"] != os.getpid()  # the same process, not a fresh one
    assert first["job"] != second["job"] and second["job"] == second_job.job_id
    assert second["leak"] is None and second["cwd"] == first["cwd"] == os.getcwd()
    assert second["grad"] is True and second["dtype"] == "torch.float32"
    import torch

    seeded_by_the_last_unit = torch.rand(1, generator=torch.Generator().manual_seed(0)).item()
    assert second["draw"] != seeded_by_the_last_unit  # fresh entropy, as a new interpreter draws
    assert second_job.paths.stdout.read_text() == "out b\n"
    assert second_job.paths.stderr.read_text() == "fd2 b\n"


def test_a_worker_that_dies_fails_its_unit_only_and_is_replaced(tmp_path):
    pool = WorkerPool(tmp_path / "jobs", workers=1)
    try:
        dead = wait_until(pool.submit(die))
        with pytest.raises(WorkerDied, match="exit code -9"):
            dead.result()
        after = wait_until(pool.submit(report_and_dirty, "c")).result()
        assert after["pid"] != dead.job_id.split("_")[0]
        idle = pool.workers[0]
        idle.process.kill()  # a worker that dies between units is replaced before it is given one
        idle.process.wait()
        assert wait_until(pool.submit(report_and_dirty, "d")).result()["pid"] not in (after["pid"], idle.process.pid)
        with pytest.raises(RuntimeError, match="ValueError: from inside the worker"):
            wait_until(pool.submit(raise_error)).result()
    finally:
        pool.shutdown()


def test_a_unit_past_its_time_limit_is_stopped(tmp_path):
    pool = WorkerPool(tmp_path / "jobs", workers=1, timeout_min=1 / 60)
    try:
        job = pool.submit(sleep_long)
        with pytest.raises(WorkerDied, match="timed out after"):
            wait_until(job, 30).result()
        assert not job.worker.alive()
    finally:
        pool.shutdown()


def test_cancel_kills_the_worker_and_shutdown_leaves_no_process(tmp_path):
    pool = WorkerPool(tmp_path / "jobs", workers=2)
    workers = list(pool.workers)
    job = pool.submit(sleep_long)
    job.cancel()
    with pytest.raises(WorkerDied, match="cancelled"):
        job.result()
    assert not job.worker.alive()
    pool.shutdown()
    assert not any(worker.alive() for worker in workers)


def test_no_more_units_than_workers_run_at_once(tmp_path):
    pool = WorkerPool(tmp_path / "jobs", workers=1)
    try:
        pool.submit(sleep_long)
        with pytest.raises(RuntimeError, match="all 1 workers are busy"):
            pool.submit(sleep_long)
    finally:
        pool.shutdown()


def test_a_launcher_without_a_main_file_gets_workers_that_do_not_rerun_it(tmp_path):
    """A notebook, ``python -`` or a script without a main guard: the workers must not run the
    launcher's ``__main__`` again (multiprocessing's spawn would, and fail or recurse)."""
    import subprocess

    script = (
        "import os\n"
        "from tokbench.execution.launch.pool import WorkerPool\n"
        f"pool = WorkerPool({str(tmp_path)!r}, workers=1)\n"
        "print('worker pid', pool.submit(os.getpid).result(), 'launcher pid', os.getpid(), flush=True)\n"
        "pool.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("worker pid") == 1  # the script ran once, in the launcher
    worker, launcher = done.stdout.split()[2], done.stdout.split()[5]
    assert worker != launcher


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_the_launcher(tmp_path):
    import subprocess

    script = (
        "import sys, time\n"
        "from tokbench.execution.launch.pool import WorkerPool\n"
        f"pool = WorkerPool({str(tmp_path)!r}, workers=1)\n"
        "print(pool.workers[0].process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker_pid = int(launcher.stdout.readline())
    time.sleep(1.0)  # past the worker's prctl
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = open(f"/proc/{worker_pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):  # dead, waiting to be reaped by whoever adopted it
            return
        time.sleep(0.1)
    pytest.fail("the worker outlived its launcher")
