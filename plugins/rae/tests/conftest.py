"""RAE plugin tests: offline, one torch thread (the CI machine has two cores), small models."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def rae_hermetic(monkeypatch, tmp_path_factory):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKBENCH_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
