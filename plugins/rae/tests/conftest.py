"""RAE plugin tests: offline, one torch thread (the CI machine has two cores), small models."""

from __future__ import annotations

from tokbench.testing.fixtures import offline_one_thread  # noqa: F401 - autouse fixture
