"""Loaded by pytest before any test module (and torch): the same OpenMP spin limit as the
``tokbench`` command (see tokbench/cli/main.py), so tests stay fast on a CPU shared with other work."""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "3000")
