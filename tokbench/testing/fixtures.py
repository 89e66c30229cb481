"""Shared pytest fixtures for plugin test suites (import them into a ``conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def offline_one_thread(monkeypatch, tmp_path_factory):
    """Offline hub, no progress bars, a private HF_HOME, one torch thread (CI has two cores)."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKBENCH_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
